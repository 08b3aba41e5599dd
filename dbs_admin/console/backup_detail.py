"""The backup detail page: what a backup is and holds, as tables a person reads, with its buttons.

Why a page of its own: the admin's read-only change form showed the manifest and key slots as raw JSON
and the size in bytes. Here the size is human, each key slot and copy is a row, the manifest is counts
per model, and the healing margin is said in words; Download · Validate · Restore… act on it.
"""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from dbs_admin.humanize import human_size
from dbs_admin.models import Backup


def margin_words(margin: float | None) -> str:
    """The healing margin (``sealed.reports.VerifyReport``) in words."""
    if margin is None:
        return "not measured yet (validate the backup)"
    if margin >= 1.0:
        return "full: both copies of every block are intact"
    if margin >= 0.5:
        return f"{margin:.0%}: somewhere only one intact copy is left (Reed-Solomon parity still protects it)"
    return f"{margin:.0%}: somewhere no intact copy is left; only Reed-Solomon repair holds the data"


def key_slot_rows(slots: list) -> list[dict]:
    rows = []
    for slot in slots or []:
        kind = slot.get("type", "?")
        if kind == "passphrase":
            what = (f"Argon2id, t={slot.get('time_cost')}, m={human_size((slot.get('memory_kib') or 0) * 1024)}, "
                    f"p={slot.get('parallelism')}")
        elif kind == "recipient":
            what = f"X25519 recipient, fingerprint {slot.get('fingerprint', '?')}"
        else:
            what = ", ".join(f"{k}={v}" for k, v in slot.items() if k != "type")
        rows.append({"kind": kind, "what": what})
    return rows


def size_words(backup: Backup) -> str:
    """The backup's size, truthful for snapshots: a snapshot alone costs what it added to its repository (the
    row's size), shown with the repository's total once it was added; a backup that is also a sealed file
    shows the file's size, then what its snapshot added."""
    figures = (backup.manifest or {}).get("repositories") or {}
    only_snapshots = bool(figures) and not backup.sha256
    parts = [] if only_snapshots else [human_size(backup.size or 0)]
    for target, numbers in sorted(figures.items()):
        total = numbers.get("total")
        parts.append(f"+{human_size(numbers.get('added') or 0)} in {target}"
                     + (f" (repository {human_size(total)})" if total is not None else ""))
    return ", ".join(parts)


def context(request: HttpRequest, backup: Backup) -> dict:
    manifest = backup.manifest or {}
    counts = sorted((manifest.get("counts") or {}).items())
    versions = manifest.get("versions") or {}
    return {
        "backup": backup,
        "size": size_words(backup),
        "key_slots": key_slot_rows(backup.key_slots),
        "copies": sorted(backup.copies.all(), key=lambda c: c.target),
        "counts": counts,
        "rows": manifest.get("rows", sum(n for _, n in counts)),
        "files": manifest.get("files"),
        "missing_files": len(manifest.get("missing_files") or []),
        "migrations": len(manifest.get("migrations") or []),
        "versions": [(k, versions[k]) for k in ("django", "dbs_admin", "python") if k in versions],
        "margin": margin_words(backup.healing_margin),
        "download_url": reverse("dbs_admin:download_link", args=[backup.pk]),
        "validate_url": reverse("dbs_admin:backup_validate", args=[backup.pk]),
        "restore_url": reverse("dbs_admin:restore") + f"?backup={backup.pk}",
    }
