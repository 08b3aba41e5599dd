"""Per-host disks, never silent: which host holds a copy, and warnings when hosts don't share a folder.

Why: a ``local`` target is a folder on the disk of the host that writes it.
With workers on several hosts, a backup written by host B's worker is not on
the web host's disk (a download there is a 404), and a drill on host A cannot
read it. So:

- every worker registers its host (:func:`register_this_host`, on start):
  its name (``DBS_ADMIN["HOST_NAME"]``), its local targets' folders and its
  ``HISTORY_ROOT``, and leaves a marker file (``.dbs-host-<name>``) in each;
- a copy on a local target records the host that wrote it
  (:func:`copy_host`), unless the target is declared ``"shared": True`` (a
  network mount every host sees);
- reading a copy on another host's disk says, in one line, where it lives
  and what to use instead (:func:`refuse_if_elsewhere`);
- :func:`per_host_warnings` (the system check, the dashboard) compares the
  markers: when a registered host's marker is missing from a folder as this
  host sees it, the hosts write to different disks under one name.

The markers make the check exact: a folder that really is shared (NFS, a
bind mount) shows every host's marker, whatever its path.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from django.utils import timezone

from dbs_admin.conf import dbs_settings
from dbs_admin.errors import DbsError
from dbs_admin.hosts import this_host
from dbs_admin.models import BackupCopy, WorkerHost

log = logging.getLogger("dbs_admin.backups")

MARKER = ".dbs-host-"
RECENT = timedelta(days=7)  # hosts registered within this long count (a host retired last month does not)


class OnAnotherHostError(DbsError):
    """The copy is on another host's own disk: this host cannot read it."""


def per_host_targets() -> dict[str, Path]:
    """Local targets not declared shared: name → folder."""
    out = {}
    for name, config in (dbs_settings.TARGETS or {}).items():
        if isinstance(config, dict) and config.get("kind", "local") == "local" and not config.get("shared"):
            if config.get("path"):
                out[name] = Path(config["path"])
    return out


def copy_host(target: str) -> str:
    """The host to record on a copy stored on ``target``: this one for a per-host folder, else blank."""
    return this_host() if target in per_host_targets() else ""


def _marker(folder: Path, host: str) -> Path:
    return folder / f"{MARKER}{host.replace('/', '_')}"


def register_this_host() -> WorkerHost:
    """Record this host's per-host folders and mark each with this host's name (a worker calls this on start)."""
    host = this_host()
    folders = {name: str(path) for name, path in per_host_targets().items()}
    history = str(dbs_settings.HISTORY_ROOT or "")
    for folder in [*folders.values(), *([history] if history else [])]:
        try:
            Path(folder).mkdir(parents=True, exist_ok=True)
            _marker(Path(folder), host).touch()
        except OSError as exc:
            log.warning("could not mark %s as used by host %s: %s", folder, host, exc)
    shared = [n for n, c in (dbs_settings.TARGETS or {}).items() if isinstance(c, dict) and c.get("shared")]
    row, _ = WorkerHost.objects.update_or_create(
        name=host, defaults={"seen_at": timezone.now(), "local_targets": folders, "history_root": history,
                             "shared": shared})
    return row


def refuse_if_elsewhere(copy: BackupCopy) -> None:
    """One line when ``copy`` lives on another host's own disk; nothing when this host can read it."""
    if copy.host and copy.host != this_host() and copy.target in per_host_targets():
        raise OnAnotherHostError(
            f"{copy.backup.name} is on host {copy.host!r}'s own disk (target {copy.target!r} is a per-host local "
            f"folder), not on this host ({this_host()!r}); run this on {copy.host!r}, or store backups on a shared "
            "or remote target (SFTP, S3, or a local folder every host mounts, marked \"shared\": True)."
        )


def _hosts_missing_from(folder: Path, hosts: list[str]) -> list[str]:
    return [h for h in hosts if not _marker(folder, h).exists()]


def per_host_warnings() -> list[str]:
    """Sentences for each per-host folder that registered hosts write on different disks under one name."""
    since = timezone.now() - RECENT
    hosts = list(WorkerHost.objects.filter(seen_at__gte=since).order_by("name"))
    if len({h.name for h in hosts}) < 2:
        return []
    found = []
    for name, folder in per_host_targets().items():
        using = [h.name for h in hosts if name in (h.local_targets or {})]
        missing = _hosts_missing_from(folder, using) if len(using) > 1 else []
        if missing:
            found.append(
                f"Workers on hosts {', '.join(using)} each write target {name!r} to their own disk "
                f"(host(s) {', '.join(missing)} not seen in {folder}): a backup is readable only on the host that "
                "made it. Use a shared or remote target (SFTP, S3, or a folder all hosts mount, marked "
                "\"shared\": True)."
            )
    history = Path(str(dbs_settings.HISTORY_ROOT or ""))
    using = [h.name for h in hosts if h.history_root]
    missing = _hosts_missing_from(history, using) if len(using) > 1 and str(history) else []
    if missing:
        found.append(
            f"Workers on hosts {', '.join(using)} keep HISTORY_ROOT on their own disks (host(s) {', '.join(missing)} "
            f"not seen in {history}): an object's versions would split between hosts. Point HISTORY_ROOT at a folder "
            "every host mounts."
        )
    return found
