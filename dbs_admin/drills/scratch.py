"""The scratch database a drill restores into, and the clean-up of ones a crash left behind.

Why a context manager: the scratch database must be dropped whatever happens
to the drill (a failed check, an exception, a cancel). Why a lock per
scratch database: a worker killed with SIGKILL cannot drop anything, so the
next drill removes leftovers; it must tell a crashed drill's leftovers from
a drill still running on another worker:

- SQLite: the drill holds an exclusive ``flock`` on ``dbs_drill_<id>.lock``
  beside the file; the kernel releases it when the process dies.
- PostgreSQL: a live drill is connected to its database; ``DROP DATABASE``
  without ``FORCE`` refuses a database with sessions, so a live one is never
  dropped by someone else's clean-up.
- MariaDB: ``DROP DATABASE`` does not care about sessions, so a live drill
  holds a named lock (``GET_LOCK('dbs_drill_<id>_<tag>')``) on a connection
  of its own for its whole life; the server releases it when that
  connection dies, and the clean-up drops only what it can lock.

Server scratch databases are called ``dbs_drill_<id>_<tag>``: the tag is
derived from the site's own database name, so two sites (or a site and its
test run) sharing one PostgreSQL or MariaDB server never clean up each other's
drills. MariaDB scratch databases get the site database's character set and
collation, so the restore meets the same rules as the site.
"""

from __future__ import annotations

import copy
import fcntl
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.utils import load_backend

from dbs_admin.conf import dbs_settings
from dbs_admin.drills.errors import CreateDatabaseDenied, ScratchDatabaseError

log = logging.getLogger("dbs_admin.drills")

PREFIX = "dbs_drill_"
SUPPORTED_VENDORS = ("sqlite", "postgresql", "mysql")
ACCESS_DENIED = (1044, 1045)  # MariaDB: no privilege on the database, or for the user
DATABASE_EXISTS = 1007
_FILE_RE = re.compile(rf"^{PREFIX}(\d+)\.(sqlite3(-wal|-shm|-journal)?|media|download|lock)$")


@dataclass(frozen=True)
class ScratchDatabase:
    alias: str  # connection alias registered while the drill runs
    name: str  # PostgreSQL or MariaDB database name, or SQLite file path
    vendor: str  # "sqlite" | "postgresql" | "mysql"
    media_root: Path  # where the restore writes the backup's files (never the site's MEDIA_ROOT)


def drills_root() -> Path:
    """Private folder of scratch files (outside MEDIA_ROOT)."""
    root = Path(dbs_settings.PRIVATE_ROOT) / "drills"
    root.mkdir(parents=True, exist_ok=True)
    return root


def base_vendor(base_alias: str = DEFAULT_DB_ALIAS) -> str:
    vendor = connections[base_alias].vendor
    if vendor not in SUPPORTED_VENDORS:
        raise ScratchDatabaseError(
            f"restore drills support SQLite, PostgreSQL and MariaDB/MySQL; the {base_alias!r} database is {vendor}"
        )
    return vendor


def _site_tag(base_alias: str) -> str:
    name = str(connections[base_alias].settings_dict["NAME"])
    return hashlib.blake2b(name.encode(), digest_size=3).hexdigest()


def server_scratch_name(drill_id: int, base_alias: str = DEFAULT_DB_ALIAS) -> str:
    """The scratch database's name on a PostgreSQL or MariaDB server."""
    return f"{PREFIX}{drill_id}_{_site_tag(base_alias)}"


def sqlite_scratch_path(drill_id: int) -> Path:
    return drills_root() / f"{PREFIX}{drill_id}.sqlite3"


# --- connection alias ----------------------------------------------------------


def register_alias(alias: str, name: str, base_alias: str = DEFAULT_DB_ALIAS) -> None:
    """Make ``alias`` a connection to database ``name``, configured like ``base_alias``, in this thread.

    The connection is put in ``connections`` for the current thread only and
    not added to DATABASES: migrate, restore_backup, the checks and routers
    all reach it through ``connections[alias]``, while no other thread of the
    process (a web request, another task) can open it by accident. Django's
    test isolation treats it as a dynamically created connection, as it is.
    """
    settings_dict = copy.deepcopy(connections[base_alias].settings_dict)
    settings_dict.update(NAME=name, ATOMIC_REQUESTS=False, AUTOCOMMIT=True, CONN_MAX_AGE=0,
                         TEST={**settings_dict.get("TEST", {}), "NAME": name})
    backend = load_backend(settings_dict["ENGINE"])
    connections[alias] = backend.DatabaseWrapper(settings_dict, alias)


def unregister_alias(alias: str) -> None:
    try:
        conn = getattr(connections._connections, alias)
    except AttributeError:
        return
    conn.close()
    delattr(connections._connections, alias)


# --- lock files (SQLite files and media folders of every vendor) ---------------


def _lock_path(drill_id: int) -> Path:
    return drills_root() / f"{PREFIX}{drill_id}.lock"


def _hold_lock(drill_id: int) -> int:
    fd = os.open(_lock_path(drill_id), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fd


def _lock_is_free(drill_id: int) -> bool:
    """True when no live process holds the drill's lock (it crashed or finished)."""
    path = _lock_path(drill_id)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # closing releases the probe's own lock
    return True


def _remove_files(drill_id: int) -> list[str]:
    removed = []
    root = drills_root()
    for entry in root.iterdir():
        m = _FILE_RE.match(entry.name)
        if not m or int(m.group(1)) != drill_id or entry.name.endswith(".lock"):
            continue
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink(missing_ok=True)
        removed.append(str(entry))
    _lock_path(drill_id).unlink(missing_ok=True)
    return removed


# --- PostgreSQL and MariaDB --------------------------------------------------------


def _server_execute(sql: str, params: list | None = None, base_alias: str = DEFAULT_DB_ALIAS) -> list[tuple]:
    """Run ``sql`` on a connection of its own to the server (no database), outside any transaction."""
    with connections[base_alias]._nodb_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _pg_create(name: str, base_alias: str) -> None:
    from psycopg import errors as pg_errors

    quoted = connections[base_alias].ops.quote_name(name)
    try:
        _server_execute(f"CREATE DATABASE {quoted}", base_alias=base_alias)
    except DatabaseError as exc:
        if isinstance(exc.__cause__, pg_errors.InsufficientPrivilege):
            role = connections[base_alias].settings_dict.get("USER") or "the configured role"
            raise CreateDatabaseDenied(
                f"cannot create the scratch database {name}: PostgreSQL role {role!r} lacks CREATEDB. "
                f"Grant it (ALTER ROLE {role} CREATEDB) or run drills with a role that has it."
            ) from exc
        raise ScratchDatabaseError(f"cannot create the scratch database {name}: {exc}") from exc


def _pg_drop(name: str, base_alias: str, *, force: bool) -> bool:
    """Drop ``name``; without ``force`` a database with sessions is left alone (False)."""
    quoted = connections[base_alias].ops.quote_name(name)
    try:
        _server_execute(f"DROP DATABASE IF EXISTS {quoted}{' WITH (FORCE)' if force else ''}", base_alias=base_alias)
    except DatabaseError as exc:
        if force:
            raise ScratchDatabaseError(f"cannot drop the scratch database {name}: {exc}") from exc
        log.info("scratch database %s is in use; left alone (%s)", name, exc)
        return False
    return True


def _my_create(name: str, base_alias: str) -> None:
    quoted = connections[base_alias].ops.quote_name(name)
    rows = _server_execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                           "WHERE SCHEMA_NAME = %s", [connections[base_alias].settings_dict["NAME"]], base_alias)
    charset = f" CHARACTER SET {rows[0][0]} COLLATE {rows[0][1]}" if rows else ""
    try:
        try:
            _server_execute(f"CREATE DATABASE {quoted}{charset}", base_alias=base_alias)
        except DatabaseError as exc:
            if getattr(exc.__cause__, "args", (None,))[0] != DATABASE_EXISTS:
                raise
            _my_drop(name, base_alias)  # a leftover of the same id; its lock is ours now
            _server_execute(f"CREATE DATABASE {quoted}{charset}", base_alias=base_alias)
    except DatabaseError as exc:
        if getattr(exc.__cause__, "args", (None,))[0] in ACCESS_DENIED:
            user = connections[base_alias].settings_dict.get("USER") or "the configured user"
            raise CreateDatabaseDenied(
                f"cannot create the scratch database {name}: MariaDB user {user!r} may not create databases. "
                f"Grant it (GRANT ALL ON `dbs\\_drill\\_%`.* TO {user!r}@'<host>') or run drills with a user "
                "that may."
            ) from exc
        raise ScratchDatabaseError(f"cannot create the scratch database {name}: {exc}") from exc


def _my_drop(name: str, base_alias: str) -> None:
    quoted = connections[base_alias].ops.quote_name(name)
    try:
        _server_execute(f"DROP DATABASE IF EXISTS {quoted}", base_alias=base_alias)
    except DatabaseError as exc:
        raise ScratchDatabaseError(f"cannot drop the scratch database {name}: {exc}") from exc


def _my_hold(name: str, base_alias: str):
    """A connection of its own holding the named lock ``name`` (None: someone else holds it)."""
    base = connections[base_alias]
    conn = base.get_new_connection(base.get_connection_params())
    with conn.cursor() as cursor:
        cursor.execute("SELECT GET_LOCK(%s, 0)", [name])
        if cursor.fetchone()[0] == 1:
            return conn
    conn.close()
    return None


def server_scratch_databases(base_alias: str = DEFAULT_DB_ALIAS) -> dict[int, str]:
    """This site's scratch databases on its PostgreSQL or MariaDB server: drill id -> database name."""
    tag = _site_tag(base_alias)
    if connections[base_alias].vendor == "mysql":
        sql = "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s"
    else:
        sql = "SELECT datname FROM pg_database WHERE datname LIKE %s"
    rows = _server_execute(sql, [f"{PREFIX}%_{tag}"], base_alias=base_alias)
    pattern = re.compile(rf"^{PREFIX}(\d+)_{tag}$")
    return {int(m.group(1)): name for (name,) in rows if (m := pattern.match(name))}


# --- the public surface ------------------------------------------------------------


@contextmanager
def scratch_database(drill_id: int, *, base_alias: str = DEFAULT_DB_ALIAS) -> Iterator[ScratchDatabase]:
    """An empty database of the site's engine, reachable as alias ``dbs_drill_<id>``; always dropped."""
    vendor = base_vendor(base_alias)
    alias = f"{PREFIX}{drill_id}"
    lock_fd = _hold_lock(drill_id)
    media_root = drills_root() / f"{PREFIX}{drill_id}.media"
    name = ""
    holder = None  # MariaDB: the connection whose named lock says this drill is alive
    try:
        if vendor == "sqlite":
            path = sqlite_scratch_path(drill_id)
            path.unlink(missing_ok=True)
            path.touch(mode=0o600)
            name = str(path)
        elif vendor == "mysql":
            wanted = server_scratch_name(drill_id, base_alias)
            holder = _my_hold(wanted, base_alias)
            if holder is None:
                raise ScratchDatabaseError(f"the scratch database {wanted} is held by a drill still running")
            _my_create(wanted, base_alias)
            name = wanted
        else:
            name = server_scratch_name(drill_id, base_alias)
            _pg_create(name, base_alias)
        media_root.mkdir(mode=0o700)
        register_alias(alias, name, base_alias)
        yield ScratchDatabase(alias=alias, name=name, vendor=vendor, media_root=media_root)
    finally:
        unregister_alias(alias)
        try:
            if vendor == "postgresql" and name:
                _pg_drop(name, base_alias, force=True)
            elif vendor == "mysql" and name:
                _my_drop(name, base_alias)
        finally:
            if holder is not None:
                holder.close()  # releases the named lock
            _remove_files(drill_id)
            os.close(lock_fd)


def scratch_exists(drill_id: int, *, base_alias: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether anything of drill ``drill_id``'s scratch database is still around (for tests and status)."""
    if base_vendor(base_alias) != "sqlite" and drill_id in server_scratch_databases(base_alias):
        return True
    return any(
        (m := _FILE_RE.match(p.name)) and int(m.group(1)) == drill_id and not p.name.endswith(".lock")
        for p in drills_root().iterdir()
    )


def _drop_orphan(name: str, vendor: str, base_alias: str) -> bool:
    """Drop a scratch database no live drill holds (False: one does, or it could not be dropped)."""
    if vendor == "postgresql":
        return _pg_drop(name, base_alias, force=False)
    holder = _my_hold(name, base_alias)
    if holder is None:
        log.info("scratch database %s is held by a running drill; left alone", name)
        return False
    try:
        _my_drop(name, base_alias)
    finally:
        holder.close()
    return True


def cleanup_orphans(current_id: int, *, base_alias: str = DEFAULT_DB_ALIAS) -> list[int]:
    """Remove scratch databases and files of drills older than ``current_id`` that no live process holds.

    Returns the ids of the drills whose leftovers were removed.
    """
    vendor = base_vendor(base_alias)
    ids: set[int] = set()
    for entry in drills_root().iterdir():
        if (m := _FILE_RE.match(entry.name)) and int(m.group(1)) < current_id:
            ids.add(int(m.group(1)))
    on_server = server_scratch_databases(base_alias) if vendor != "sqlite" else {}
    ids.update(i for i in on_server if i < current_id)
    cleaned = []
    for drill_id in sorted(ids):
        if not _lock_is_free(drill_id):
            continue
        if drill_id in on_server and not _drop_orphan(on_server[drill_id], vendor, base_alias):
            continue
        _remove_files(drill_id)
        log.warning("removed the scratch database of interrupted drill %s", drill_id)
        cleaned.append(drill_id)
    return cleaned
