"""Real sealed files on the local target, with their Backup rows, for tests that need a backup to exist."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from django.utils import timezone

from dbs_admin.models import Backup, BackupCopy
from dbs_admin.sealed import Argon2Params, seal
from dbs_admin.targets import get_target

PASSPHRASE = "console test passphrase 4711"
FAST_ARGON2 = Argon2Params(time_cost=1, memory_kib=8192, parallelism=1)  # tests only


def make_sealed_backup(name: str | None = None, *, payload: bytes = b"hello backup\n" * 100,
                       passphrase: str = PASSPHRASE, created_at=None, status=Backup.Status.OK,
                       target: str = "local") -> Backup:
    created_at = created_at or timezone.now()
    name = name or f"dbs-{created_at:%Y%m%dT%H%M%S%f}Z-logical-test.dbs"
    folder = get_target(target).local_path(name).parent
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    seal(io.BytesIO(payload), path, passphrase=passphrase, manifest={"counts": {"blog.Post": 1}, "files": 0},
         argon2=FAST_ARGON2, allow_weak_argon2=True)
    data = path.read_bytes()
    backup = Backup.objects.create(name=name, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                                   created_at=created_at, status=status, verified_at=timezone.now())
    BackupCopy.objects.create(backup=backup, target=target, path=str(path))
    return backup


def target_path(backup: Backup) -> Path:
    return get_target(backup.copies.first().target).local_path(backup.name)
