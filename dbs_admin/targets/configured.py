"""Targets built from ``DBS_ADMIN["TARGETS"]``.

Each entry is checked when it is used, with a message naming the entry and
the key at fault, so a typo in settings fails loudly instead of, say,
silently connecting without a known_hosts file. Targets are cheap objects
(no connection is opened until an operation needs one), so they are built
on each call and always reflect the current settings.

Settings shape::

    DBS_ADMIN = {
        "TARGETS": {
            "local": {"kind": "local", "path": "/var/lib/site/dbs_backups"},
            "offsite": {
                "kind": "sftp", "host": "backup.example.org", "port": 22, "username": "site",
                "key_filename": "/etc/site/sftp_ed25519",        # a path, never the key itself
                "known_hosts": "/etc/site/sftp_known_hosts",     # the server's host key must be in it
                "path": "/srv/backups/site",
                # optional: "key_passphrase_env": "SITE_SFTP_KEY_PASSPHRASE" (the variable's name, not its value),
                # "timeout": 15, "retries": 2, "backoff": 0.5
            },
            # Any alias of Django's STORAGES (S3, GCS, Azure... through django-storages); credentials stay in
            # the storage's own settings or the environment. Optional: "prefix": "dbs/" (a folder inside it).
            "s3": {"kind": "storage", "storage": "backups"},
            # Incremental, deduplicated snapshots in a repository instead of one file per backup; on any kind
            # ("sftp" with its usual keys, or "storage" on S3 or a FileSystemStorage), plus "format".
            "nightly": {"kind": "local", "path": "/var/lib/site/dbs_repository", "format": "repository"},
        },
        "DEFAULT_TARGET": "local",
    }
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from dbs_admin.conf import dbs_settings
from dbs_admin.targets.base import Target
from dbs_admin.targets.errors import TargetConfigError
from dbs_admin.targets.local import LocalTarget


def _sftp_target(*args: Any, **kwargs: Any) -> Target:
    """Imported on first use: paramiko takes ~50 ms to import, which a site with only local targets never needs."""
    from dbs_admin.targets.sftp import SftpTarget

    return SftpTarget(*args, **kwargs)


def _storage_target(*args: Any, **kwargs: Any) -> Target:
    """Imported on first use, like SFTP: boto3 and django-storages load only for a site that has such a target."""
    from dbs_admin.targets.storage import StorageTarget

    return StorageTarget(*args, **kwargs)


# kind -> (constructor, required keys, optional keys)
_KINDS: dict[str, tuple[Callable[..., Target], set[str], set[str]]] = {
    "local": (LocalTarget, {"path"}, {"shared"}),
    "sftp": (
        _sftp_target,
        {"host", "path", "username", "key_filename", "known_hosts"},
        {"port", "key_passphrase_env", "timeout", "retries", "backoff"},
    ),
    "storage": (_storage_target, {"storage"}, {"prefix"}),
}


def _targets_setting() -> Mapping[str, Any]:
    targets = dbs_settings.TARGETS
    if not isinstance(targets, Mapping):
        raise TargetConfigError('DBS_ADMIN["TARGETS"] must be a dict of name -> {"kind": ..., ...}')
    return targets


def build_target(name: str, entry: Any) -> Target:
    """A target from one settings entry; TargetConfigError saying what is wrong with it."""
    where = f'DBS_ADMIN["TARGETS"][{name!r}]'
    if not isinstance(entry, Mapping):
        raise TargetConfigError(f"{where} must be a dict with a 'kind' key, not {type(entry).__name__}")
    kind = entry.get("kind")
    if kind not in _KINDS:
        raise TargetConfigError(f"{where} has kind {kind!r}; use one of {sorted(_KINDS)}")
    factory, required, optional = _KINDS[kind]
    options = {k: v for k, v in entry.items() if k != "kind"}
    if "format" in options:  # a repository instead of one file per backup (targets/repository.py)
        return _repository_target(name, kind, options, where)
    missing = sorted(required - set(options))
    if missing:
        raise TargetConfigError(f"{where} ({kind}) lacks {missing}")
    unknown = sorted(set(options) - required - optional)
    if unknown:
        hint = " (secrets never go in settings: name an environment variable with 'key_passphrase_env')" if any(
            "pass" in k or "secret" in k for k in unknown
        ) else ""
        raise TargetConfigError(f"{where} ({kind}) has unknown keys {unknown}; valid: {sorted(required | optional)}"
                                f"{hint}")
    bad = sorted(k for k in required if not isinstance(options[k], str) or not options[k])
    if bad:
        raise TargetConfigError(f"{where} ({kind}): {bad} must be non-empty strings")
    try:
        return factory(name, **options)
    except (TypeError, ValueError) as exc:
        raise TargetConfigError(f"{where} ({kind}) is invalid: {exc}") from None


def _repository_target(name: str, kind: str, options: dict, where: str) -> Target:
    from dbs_admin.targets.repository import local_repository, remote_repository

    fmt = options.pop("format")
    if fmt not in ("repository", "files"):
        raise TargetConfigError(f"{where} has format {fmt!r}; use 'repository' (or 'files', the default)")
    if fmt == "files":
        return build_target(name, {"kind": kind, **options})
    if kind != "local":  # the file target checks its own settings; its connection code then serves the store
        return remote_repository(name, build_target(name, {"kind": kind, **options}))
    if set(options) != {"path"} or not isinstance(options["path"], str) or not options["path"]:
        raise TargetConfigError(f"{where} (local repository) takes exactly 'path' (a non-empty string)")
    return local_repository(name, options["path"])


def get_target(name: str | None = None) -> Target:
    """The target called ``name`` (default: ``DBS_ADMIN["DEFAULT_TARGET"]``)."""
    targets = _targets_setting()
    name = name or dbs_settings.DEFAULT_TARGET
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none"
        raise TargetConfigError(f'no backup target named {name!r} in DBS_ADMIN["TARGETS"] (configured: {known})')
    return build_target(name, targets[name])


def iter_targets() -> Iterator[Target]:
    """Every configured target, in settings order."""
    for name, entry in _targets_setting().items():
        yield build_target(name, entry)
