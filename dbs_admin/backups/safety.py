"""A backup of what a restore is about to replace, so restoring the wrong backup can be undone.

Why sealed with the key the operator is restoring with: whoever can restore
the old backup can open this one too, in the same way, with nothing new to
keep (a passphrase stays a passphrase; an identity file's recipient is used
for backups sealed to recipients). Logical, so it restores across engines.
Its failure stops the restore before anything is written.
"""

from __future__ import annotations

from typing import Any

from dbs_admin.backups.errors import BackupError, CancelledError
from dbs_admin.backups.types import BackupResult
from dbs_admin.errors import DbsError
from dbs_admin.sealed import SealedError


def back_up_before_restore(
    target: str, *, database: str, passphrase: str | None, identity: Any, label: str, user: Any = None,
    progress=None, cancel=None,
) -> BackupResult:
    from dbs_admin.backups.create import create_backup

    try:
        return create_backup(
            kind="logical", target=target, label=label, database=database,
            passphrase=None if identity is not None else passphrase,
            recipients=[identity.recipient] if identity is not None else None,
            user=user, progress=progress, cancel=cancel,
        )
    except CancelledError:
        raise
    except (DbsError, SealedError) as exc:
        raise BackupError(f"Nothing was restored: the backup of the current data failed: {exc}") from exc
