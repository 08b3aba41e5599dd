"""When the world around a backup fails (the database, the disk): one sentence that says what and where.

Why one module: a database that refuses rows, a connection a DBA killed, or a
disk that filled up are not bugs of ours, and a user must read what happened
and what to do, not a driver's traceback. Restores and backups already roll
back or remove their partial output; these helpers only name the failure.
``--traceback`` (and the exception's ``__cause__``) keeps the original.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from django.db import DatabaseError

# No space, over a quota, or a file larger than the file system (or a ulimit) allows: all "the disk is full".
OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def database_errors(connection) -> tuple[type[BaseException], ...]:
    """Django's wrapped errors and the driver's own (a raw COPY, sqlite3 on a file, are not wrapped)."""
    driver = getattr(getattr(connection, "Database", None), "Error", None)
    return (DatabaseError, driver) if isinstance(driver, type) else (DatabaseError,)


def first_line(exc: BaseException) -> str:
    """The driver's message without its DETAIL and CONTEXT lines (which can quote whole rows)."""
    text = str(exc).strip().splitlines()
    return " ".join(text[0].split())[:300] if text else type(exc).__name__


def is_out_of_space(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE


def free_bytes(folder: Path) -> int | None:
    for probe in (folder, *folder.parents):
        try:
            return shutil.disk_usage(probe).free
        except OSError:
            continue
    return None


def out_of_space(folder: Path, doing: str, *, needed: int | None = None) -> str:
    """``no space left in FOLDER while DOING (N bytes free, M needed); ...`` for a message."""
    free = free_bytes(folder)
    amounts = [f"{free:,} bytes free" if free is not None else "", f"about {needed:,} needed" if needed else ""]
    detail = ", ".join(a for a in amounts if a)
    return f"no space left in {folder} while {doing}" + (f" ({detail})" if detail else "")
