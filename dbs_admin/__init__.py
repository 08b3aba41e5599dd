"""dbs_admin: a Django-admin backup console.

Sealed, self-healing, encrypted backups of the database and media; per-object
version history; restore drills that prove a backup restores. The container
format lives in :mod:`dbs_admin.sealed` and imports no Django, so a backup can
be checked and decrypted on a machine where the site is gone.
"""

from dbs_admin.version import __version__

__all__ = ["__version__", "create_backup", "restore_backup", "validate_backup", "read_manifest"]
_API = ("create_backup", "restore_backup", "validate_backup", "read_manifest")


def __getattr__(name: str):
    """``dbs_admin.create_backup`` etc., imported on first use (an eager import would break app loading)."""
    if name in _API:
        from dbs_admin.backups import api

        return getattr(api, name)
    raise AttributeError(f"module 'dbs_admin' has no attribute {name!r}")
