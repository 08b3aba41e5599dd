"""Where a download's export waits for its superuser, how long, and its removal.

Why: the Download of a repository snapshot is an export job (a multi-GB snapshot outlasts a web request);
the worker seals the file into ``PRIVATE_ROOT/exports/<job id>/`` (0700, never under MEDIA_ROOT) and the job
page links to it through the signed, expiring download link. The file is kept for ``DOWNLOAD_LINK_TTL``
seconds after the job ended, the life of a link: then the link refuses it and the folder goes, removed by
whoever sees it expired first (the link itself, the reaper each minute). A job that fails or dies leaves
nothing: its folder is its partial file (removed when it ends, or by the reaper when its worker is lost).

The folder is on the worker's host; the web process serving the link reads it there. With web and worker
processes on different hosts, the link says on which host the export is instead of failing obscurely.
"""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from django.utils import timezone

from dbs_admin.conf import dbs_settings
from dbs_admin.hosts import this_host
from dbs_admin.jobs.workspace import private_root
from dbs_admin.models import Job

EXPORTS = "exports"


class ExportUnavailable(Exception):
    """The export cannot be served (expired, removed, on another host, not made); the message says which."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def exports_root() -> Path:
    return private_root() / EXPORTS


def export_dir(job: Job) -> Path:
    """The job's private folder (see :func:`make_export_dir`)."""
    return exports_root() / str(job.pk)


def make_export_dir(job: Job) -> Path:
    """The job's private folder, made 0700 with its parents when missing."""
    exports_root().mkdir(parents=True, exist_ok=True, mode=0o700)
    folder = export_dir(job)
    folder.mkdir(exist_ok=True, mode=0o700)
    return folder


def expires_at(job: Job) -> datetime | None:
    """When the export of a finished job stops being served (its end plus a link's life)."""
    if job.finished_at is None:
        return None
    return job.finished_at + timedelta(seconds=int(dbs_settings.DOWNLOAD_LINK_TTL))


def served_file(job: Job) -> Path:
    """The exported file of a succeeded export job, if it may still be served; ExportUnavailable otherwise
    (an expired one is removed on the way)."""
    made = (job.params or {}).get("file")
    if job.kind != Job.Kind.EXPORT or job.state != Job.State.SUCCEEDED or not made:
        raise ExportUnavailable(f"Job #{job.pk} made no export to download.")
    if expires_at(job) <= timezone.now():
        discard(job)
        raise ExportUnavailable(f"The export of job #{job.pk} has expired and was removed; ask for a new one.",
                                expired=True)
    host = job.params.get("host")
    if host and host != this_host():
        raise ExportUnavailable(f"The export of job #{job.pk} is on host {host!r}, in its private folder; this "
                                f"is host {this_host()!r}. Open the console on {host!r}, or export again.")
    path = Path(made)
    if not path.is_file():
        raise ExportUnavailable(f"The export of job #{job.pk} is gone (removed from {path.parent}); "
                                "ask for a new one.", expired=True)
    return path


def discard(job: Job) -> None:
    shutil.rmtree(exports_root() / str(job.pk), ignore_errors=True)


def remove_expired(now: datetime | None = None) -> list[str]:
    """Remove this host's export folders whose link expired, or whose job ended without one (the reaper)."""
    root = exports_root()
    if not root.is_dir():
        return []
    now = now or timezone.now()
    folders = {p.name: p for p in root.iterdir() if p.is_dir()}
    jobs = {str(j.pk): j for j in Job.objects.filter(pk__in=[n for n in folders if n.isdigit()])}
    removed = []
    for name, folder in folders.items():
        job = jobs.get(name)
        if job is not None and not job.finished:
            continue  # being written
        if job is not None and job.state == Job.State.SUCCEEDED and expires_at(job) > now:
            continue  # its link still serves it
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(str(folder))
    return removed
