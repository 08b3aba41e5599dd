"""Uploaded ``.dbs`` files waiting for their restore or validate job, in a private folder; abandoned ones removed.

Why here (the jobs layer): the console's upload handler writes them, the job
that restores or checks one removes it when it ends, and the reaper removes
one whose restore form was left at step 2 (the plan expires after ten
minutes) or whose transfer broke off, once no job uses it and it has not
changed for ``ABANDONED_AFTER``: backups are large, and this folder is not watched.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

from dbs_admin.conf import dbs_settings
from dbs_admin.models import Job

ABANDONED_AFTER = timedelta(hours=1)


class UploadRefused(Exception):
    """Why an upload was refused, in words for the user."""


def upload_dir() -> Path:
    path = Path(dbs_settings.PRIVATE_ROOT) / "uploads"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def private_upload_path(name: str) -> Path:
    """Resolve a stored upload's name (from a signed plan) to its path; refuse anything else."""
    if not name or "/" in name or "\\" in name or name.startswith(".") or not name.endswith(".dbs"):
        raise UploadRefused("Unknown upload.")
    path = upload_dir() / name
    if not path.is_file():
        raise UploadRefused("The uploaded file is gone (restored or expired); upload it again.")
    return path


def purge_abandoned(max_age: timedelta = ABANDONED_AFTER) -> list[str]:
    """Delete uploads no queued or running job uses that have not changed for ``max_age``; return them."""
    folder = Path(dbs_settings.PRIVATE_ROOT) / "uploads"
    if not folder.is_dir():
        return []
    cutoff = time.time() - max_age.total_seconds()
    old = []
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < cutoff:
                old.append(path)
        except OSError:  # removed meanwhile (a restore that just finished)
            continue
    if not old:  # the usual case: the reaper also runs on every poll of a job page
        return []
    active = Job.objects.filter(state__in=[Job.State.QUEUED, Job.State.RUNNING])
    in_use = {job.params.get("upload") for job in active.only("params")}
    removed = []
    for path in old:
        if str(path) not in in_use:
            path.unlink(missing_ok=True)
            removed.append(str(path))
    return removed
