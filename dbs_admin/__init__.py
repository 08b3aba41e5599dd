"""dbs_admin: a Django-admin backup console.

Sealed, self-healing, encrypted backups of the database and media; per-object
version history; restore drills that prove a backup restores. The container
format lives in :mod:`dbs_admin.sealed` and imports no Django, so a backup can
be checked and decrypted on a machine where the site is gone.
"""

__version__ = "0.1.0"
