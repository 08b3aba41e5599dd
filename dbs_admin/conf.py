"""The one place that reads ``settings.DBS_ADMIN``.

Every other module asks :data:`dbs_settings` instead of touching
``django.conf.settings``, so defaults are documented once, typos in the
settings dict fail loudly at start-up instead of being ignored, and tests can
override a single key with ``override_settings(DBS_ADMIN={...})``.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed


def _base_dir() -> Path:
    """Project folder for relative defaults: BASE_DIR when the project has one."""
    return Path(getattr(settings, "BASE_DIR", Path.cwd()))


def _defaults() -> dict[str, Any]:
    """Documented defaults. Each key is explained in README "Settings"."""
    var = _base_dir() / "var"
    return {
        # Named places where sealed backups live. "local" is a private folder
        # outside MEDIA_ROOT; add {"kind": "sftp", ...} or {"kind": "storage", "storage":
        # "<alias of STORAGES>"} (S3 and friends) entries for offsite copies.
        "TARGETS": {"local": {"kind": "local", "path": str(var / "dbs_backups")}},
        # Target used when a command or form names none.
        "DEFAULT_TARGET": "local",
        # Models never backed up: "app_label.ModelName", or "app_label.*" for a whole app.
        # The console's own records (jobs, audit log, backup list, history index) are
        # excluded so a restore never rewrites the log of what happened, nor the job
        # that is running the restore.
        "EXCLUDE_MODELS": ["sessions.Session", "dbs_admin.*"],
        # Which media a logical backup holds: "all" (every file of the media storage, MEDIA_ROOT or the
        # default storage, so an image named only in a post's HTML comes back too) or "fields" (only the
        # files that file and image fields hold). Native backups always hold all of it.
        "MEDIA_FILES": "all",
        # X25519 recipient strings (dbs1...) used by unattended (scheduled) backups,
        # so the server writes backups it cannot read.
        "RECIPIENTS": [],
        # Argon2id cost of passphrase slots (RFC 9106 second recommendation).
        # Lower costs are refused unless the dict also holds "allow_weak": True (tests only).
        "ARGON2": {"time_cost": 3, "memory_kib": 65536, "parallelism": 4},
        # Age of the newest verified backup beyond which health turns red.
        "RPO": timedelta(hours=26),
        # Signed download links expire after this many seconds.
        "DOWNLOAD_LINK_TTL": 600,
        # Largest .dbs upload accepted by the restore form, in bytes.
        "UPLOAD_MAX_BYTES": 2 * 1024**3,
        # Private working folder (uploads, staging); never under MEDIA_ROOT.
        "PRIVATE_ROOT": str(var / "dbs_private"),
        # Root of the per-object history tree.
        "HISTORY_ROOT": str(var / "dbs_history"),
        # Optional git remote the history tree is pushed to after each snapshot.
        "HISTORY_GIT_REMOTE": None,
        # Retention per target name; "*" applies to targets without their own entry.
        "RETENTION": {"*": {"last": 7, "daily": 7, "weekly": 4, "monthly": 12}},
        # Token that lets monitoring read the JSON status view without a login.
        "STATUS_TOKEN": None,
        # Identity file whose recipient is in RECIPIENTS: the weekly restore drill opens scheduled
        # backups with it, unattended. Its passphrase comes from the environment variable named by
        # DRILL_IDENTITY_PASSPHRASE_ENV, never from settings.
        "DRILL_IDENTITY": None,
        "DRILL_IDENTITY_PASSPHRASE_ENV": "DBS_DRILL_IDENTITY_PASSPHRASE",
        # Seconds a drill gives all its smoke checks together (each gets an equal share of what is
        # left). A check samples objects (the first, the last and SMOKE_SAMPLE_SIZE at random, seeded
        # and recorded) and stops sampling when its share is spent, so drills stay short as the site
        # grows. SMOKE_FULL (or `dbs_drill --full-smoke`) checks every object instead, with no budget.
        "SMOKE_BUDGET_SECONDS": 5.0,
        "SMOKE_SAMPLE_SIZE": 100,
        "SMOKE_FULL": False,
        # Rows fetched and written per batch by logical backups and restores.
        "BATCH_SIZE": 2000,
        # Seconds without a heartbeat after which a running job counts as lost (worker died).
        "JOB_HEARTBEAT_TIMEOUT": 60,
        # Seconds a queued job may go without a sign of life (a worker taking it, or its wait for a busy
        # target) before the reaper sends it again: its message went with a dead worker or a broker
        # restart. After a second such loss, while no job is running, it is failed as never started
        # (a job waiting behind a long one is not lost). A late duplicate message runs nothing.
        "JOB_QUEUE_TIMEOUT": 300,
        # Seconds a job waiting for a busy target keeps waiting once the job holding the target has
        # stopped giving signs of life and the reaper has not freed it (normally it does within
        # JOB_HEARTBEAT_TIMEOUT, and the waiting job then starts). A live holder is waited for as long
        # as it runs.
        "LOCK_WAIT_AFTER_LOST": 300,
        # This host's name, recorded with workers, jobs, drills and copies on a per-host (local)
        # target, so a copy on one host's disk is never looked for on another. Default: the
        # DBS_HOST_NAME environment variable, else the machine's host name.
        "HOST_NAME": os.environ.get("DBS_HOST_NAME") or socket.gethostname(),
    }


class DbsSettings:
    """Attribute access to ``DBS_ADMIN`` merged over the defaults.

    Unknown keys raise ImproperlyConfigured: a misspelt ``RETENTON`` must not
    silently leave the default retention in place.
    """

    def __init__(self) -> None:
        self._cache: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._cache is None:
            defaults = _defaults()
            user = getattr(settings, "DBS_ADMIN", {}) or {}
            unknown = sorted(set(user) - set(defaults))
            if unknown:
                raise ImproperlyConfigured(
                    f"DBS_ADMIN has unknown keys {unknown}; valid keys are {sorted(defaults)}."
                )
            self._cache = {**defaults, **user}
        return self._cache

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        values = self._load()
        try:
            return values[name]
        except KeyError:
            raise AttributeError(f"DBS_ADMIN has no setting {name!r}") from None

    def as_dict(self) -> dict[str, Any]:
        return dict(self._load())

    def reload(self) -> None:
        self._cache = None


dbs_settings = DbsSettings()


def _reload_on_change(*, setting: str, **kwargs: Any) -> None:
    if setting in {"DBS_ADMIN", "BASE_DIR"}:
        dbs_settings.reload()


setting_changed.connect(_reload_on_change)
