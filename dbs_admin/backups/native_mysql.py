"""Native MariaDB/MySQL: ``mariadb-dump --single-transaction`` piped into the sealed writer; restore into a
scratch database swapped in with one atomic ``RENAME TABLE``.

Why these choices:
- The dump reads one InnoDB snapshot (``--single-transaction``) without
  locking the site, and its bytes flow from the pipe into ``seal()``: no
  plain dump ever touches the disk.
- The manifest's row counts must be of the instant the dump holds. MariaDB
  cannot hand a snapshot to another session (PostgreSQL's ``pg_dump
  --snapshot``), so writes to the counted tables are held back (``LOCK
  TABLES ... READ`` on a side connection; every read goes on) while our
  snapshot and the dump's are both opened, and let go as soon as the dump's
  output shows its snapshot is open (its first table follows it): a few
  milliseconds. The counts are then taken in our snapshot.
- Restore: MariaDB's DDL is not transactional, and a dump is DDL. It is
  loaded into a scratch database; every foreign key there is checked; the
  console's tables are carried over from the live database; then ONE
  ``RENAME TABLE`` moves every live table out and every restored table in,
  which MariaDB does atomically. Any failure before it leaves the live
  database as it was; the old tables are dropped after it.
- A dump client older than the server, or MySQL's client against MariaDB
  (and the reverse), is named and refused, as for pg_dump.
- Views, triggers, routines and events cannot move between databases with
  ``RENAME TABLE``: a database that has them is refused (a logical backup
  carries its rows).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import select
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from django.db import DatabaseError, connections

from dbs_admin.backups import logical_capture, pipes
from dbs_admin.backups.errors import BackupError, RestoreError, ToolMissingError
from dbs_admin.backups.own_tables import console_models, unlink_missing_sql
from dbs_admin.backups.selection import backed_up_models

log = logging.getLogger("dbs_admin.backups")

TOOLS = {"dump": ("mariadb-dump", "mysqldump"), "load": ("mariadb", "mysql")}
LOCK_WAIT_SECONDS = 10  # how long the dump's start may wait for running writes to the counted tables
SNAPSHOT_WAIT_SECONDS = 30  # how long writes stay held while the dump starts (it takes milliseconds)
SNAPSHOT_MARKER = b"\n-- Table structure for table "  # written only once the dump's transaction is open
SCRATCH_PREFIX = "dbs_restore_"


# --- the client tools ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientVersion:
    major: int
    minor: int
    mariadb: bool

    def __str__(self) -> str:
        return f"{'MariaDB' if self.mariadb else 'MySQL'} {self.major}.{self.minor}"


def parse_client_version(text: str) -> ClientVersion | None:
    """``mariadb-dump  Ver 10.19 Distrib 10.11.19-MariaDB, ...`` or ``mysqldump  Ver 8.0.36 for Linux ...``."""
    if m := re.search(r"Distrib (\d+)\.(\d+)\.\d+(-MariaDB)?", text):
        return ClientVersion(int(m.group(1)), int(m.group(2)), bool(m.group(3)) or "mariadb" in text.lower())
    if m := re.search(r"\bVer (\d+)\.(\d+)\.\d+", text):
        return ClientVersion(int(m.group(1)), int(m.group(2)), "mariadb" in text.lower())
    return None


def _server(alias: str) -> ClientVersion:
    connection = connections[alias]
    connection.ensure_connection()
    major, minor = connection.mysql_version[:2]
    return ClientVersion(major, minor, connection.mysql_is_mariadb)


def check_tool(role: str, alias: str) -> str:
    """The path of the dump (``role="dump"``) or load client, refusing one older than the server or of the
    other vendor (its dump would be refused, or wrong)."""
    names = TOOLS[role]
    path = next((p for p in map(shutil.which, names) if p), None)
    if path is None:
        raise ToolMissingError(f"{' or '.join(names)} is not installed or not on PATH; install the MariaDB client "
                               "tools (e.g. apt-get install mariadb-client) of your server's version")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout
    mine = parse_client_version(out)
    if mine is None:
        raise ToolMissingError(f"cannot tell the version of {path} from {out.strip()!r}")
    server = _server(alias)
    name = Path(path).name
    if mine.mariadb != server.mariadb:
        raise ToolMissingError(f"{name} is {mine}'s client but the server is {server}; install the "
                               f"{'MariaDB' if server.mariadb else 'MySQL'} client tools")
    if (mine.major, mine.minor) < (server.major, server.minor):
        raise ToolMissingError(f"{name} {mine.major}.{mine.minor} is older than the {server} server; install "
                               f"the {server.major}.{server.minor} client tools")
    return path


def _client_args(alias: str) -> tuple[list[str], dict[str, str]]:
    s = connections[alias].settings_dict
    options = s.get("OPTIONS") or {}
    args = ["--default-character-set=utf8mb4"]
    host = str(s.get("HOST") or "")
    if host.startswith("/"):
        args.append(f"--socket={host}")
    elif host:
        args.append(f"--host={host}")
    if options.get("unix_socket"):
        args.append(f"--socket={options['unix_socket']}")
    if s.get("PORT"):
        args.append(f"--port={s['PORT']}")
    if s.get("USER"):
        args.append(f"--user={s['USER']}")
    env = {k: v for k, v in os.environ.items() if k != "MYSQL_PWD"}
    if s.get("PASSWORD"):
        env["MYSQL_PWD"] = str(s["PASSWORD"])  # the child's environment only: never on a command line or disk
    return args, env


def _last_line(err) -> str:
    err.seek(0)
    lines = [ln for ln in err.read().decode(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else ""


# --- what a native backup cannot carry -----------------------------------------------------------------------


def refuse_unswappable(alias: str, *, error: type[BackupError] = BackupError, schema: str | None = None) -> None:
    """Views, triggers, routines and events: ``RENAME TABLE`` cannot move them, so no atomic native restore."""
    found = []
    queries = [
        ("view", "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = {}"),
        ("trigger", "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {}"),
        ("routine", "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {}"),
        ("event", "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {}"),
    ]
    with connections[alias].cursor() as cursor:
        for kind, sql in queries:
            if schema is None:
                cursor.execute(sql.format("DATABASE()"))
            else:
                cursor.execute(sql.format("%s"), [schema])
            found += [f"{kind} {name}" for (name,) in cursor.fetchall()]
    if found:
        raise error(f"the database has {', '.join(found[:5])}, which a native MariaDB backup cannot restore "
                    "atomically (RENAME TABLE does not move them); take a logical backup")


# --- backup ----------------------------------------------------------------------------------------------------


def _raw_connection(alias: str):
    """A connection of its own (not Django's for this thread), configured as ``alias``."""
    connection = connections[alias]
    return connection.get_new_connection(connection.get_connection_params())


@contextmanager
def _writes_held(alias: str, tables: list[str]) -> Iterator[Callable[[], None]]:
    """Hold writes to ``tables`` (reads go on) until the returned release() is called, or the block ends."""
    if not tables:
        yield lambda: None
        return
    qn = connections[alias].ops.quote_name
    side = _raw_connection(alias)
    held = [True]

    def release() -> None:
        if held[0]:
            held[0] = False
            with side.cursor() as cursor:
                cursor.execute("UNLOCK TABLES")

    try:
        with side.cursor() as cursor:
            cursor.execute(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}")
            try:
                cursor.execute("LOCK TABLES " + ", ".join(f"{qn(t)} READ" for t in tables))
            except Exception as exc:  # noqa: BLE001 - the driver's own error classes, one line either way
                raise BackupError(
                    f"could not hold writes for the few milliseconds the dump needs to start ({exc}); a write "
                    f"transaction held a table for more than {LOCK_WAIT_SECONDS} s, or the database user lacks "
                    "the LOCK TABLES privilege. Try again, or grant it"
                ) from None
        yield release
    finally:
        try:
            release()
        finally:
            side.close()


@dataclass
class Dump:
    """A running ``mariadb-dump`` whose snapshot is open: the bytes read so far, then the rest of its pipe."""

    proc: subprocess.Popen
    err: object
    tool: str = "mariadb-dump"
    head: list[bytes] = field(default_factory=list)

    def chunks(self) -> Iterator[bytes]:
        try:
            yield from self.head
            self.head = []
            while chunk := self.proc.stdout.read(1 << 20):
                yield chunk
        except BaseException:
            self.stop()
            raise
        if self.proc.wait() != 0:
            line = _last_line(self.err)
            raise BackupError(f"{self.tool} failed: {line or 'exit ' + str(self.proc.returncode)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


@contextmanager
def consistent_dump(alias: str) -> Iterator[Dump]:
    """A dump whose snapshot is the instant of this connection's snapshot (opened here; count rows inside)."""
    tool = check_tool("dump", alias)
    args, env = _client_args(alias)
    existing = set(connections[alias].introspection.table_names())
    counted = sorted({m._meta.db_table for m in backed_up_models()} & existing)
    cmd = [tool, *args, "--single-transaction", "--quick", "--hex-blob", "--skip-lock-tables", "--no-tablespaces",
           "--triggers", "--comments", "--skip-dump-date", "--", str(connections[alias].settings_dict["NAME"])]
    with tempfile.TemporaryFile() as err:
        with _writes_held(alias, counted) as release, logical_capture.snapshot(alias):
            dump = Dump(subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env), err, Path(tool).name)
            pipes.widen(dump.proc.stdout)  # the tool blocks less on a full pipe (pipes.py: why)
            try:
                _wait_for_snapshot(dump)
                release()
                yield dump
            finally:
                dump.stop()


def _wait_for_snapshot(dump: Dump) -> None:
    """Read the dump's first bytes until they show its transaction is open (or it ended).

    Unbuffered reads with a deadline: a dump stuck behind a schema change that waits for our held tables
    must not hold the site's writes for ever.
    """
    fd = dump.proc.stdout.fileno()
    deadline = time.monotonic() + SNAPSHOT_WAIT_SECONDS
    tail = b""
    while True:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise BackupError(f"mariadb-dump had not opened its snapshot after {SNAPSHOT_WAIT_SECONDS} s (a schema "
                              "change waiting on a table?); nothing was written. Try again")
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return  # the dump ended (an empty database, or an error that chunks() reports)
        dump.head.append(chunk)
        if SNAPSHOT_MARKER in tail + chunk:
            return
        tail = chunk[-len(SNAPSHOT_MARKER):]


# --- restore ---------------------------------------------------------------------------------------------------


def _scratch_names(alias: str) -> tuple[str, str]:
    live = str(connections[alias].settings_dict["NAME"])
    tag = hashlib.blake2b(live.encode(), digest_size=3).hexdigest()
    unique = uuid.uuid4().hex[:10]
    return f"{SCRATCH_PREFIX}{tag}_{unique}", f"{SCRATCH_PREFIX}{tag}_{unique}_old"


def sweep_orphan_scratch(alias: str) -> list[str]:
    """Drop the scratch databases a killed native restore of ``alias`` left; returns their names.

    A restore holds a MariaDB named lock called after its scratch database for as long as it runs, on its own
    connection, which the server releases when that connection dies (a killed worker included). A scratch
    database (or its ``_old`` partner) whose lock nobody holds belongs to no live restore.
    """
    live = str(connections[alias].settings_dict["NAME"])
    tag = hashlib.blake2b(live.encode(), digest_size=3).hexdigest()
    dropped = []
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                       [f"{SCRATCH_PREFIX}{tag}_".replace("_", "\\_") + "%"])
        names = [name for (name,) in cursor.fetchall()]
        for name in names:
            cursor.execute("SELECT IS_USED_LOCK(%s)", [name.removesuffix("_old")])
            if cursor.fetchone()[0] is None:
                dropped.append(name)
    _drop(alias, dropped)
    if dropped:
        log.warning("dropped %d scratch database(s) left by a killed native restore: %s", len(dropped),
                    ", ".join(dropped))
    return dropped


def sweep_default_scratch() -> list[str]:
    """:func:`sweep_orphan_scratch` of the default database when it is MariaDB/MySQL (the worker's start and
    the reaper call it); a failure is logged, never raised: the next sweep tries again."""
    from django.db import DEFAULT_DB_ALIAS

    if connections[DEFAULT_DB_ALIAS].vendor != "mysql":
        return []
    try:
        return sweep_orphan_scratch(DEFAULT_DB_ALIAS)
    except DatabaseError as exc:
        log.warning("could not look for scratch databases of killed restores: %s", exc)
        return []


def _base_tables(cursor, schema: str) -> list[str]:
    cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                   "AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME", [schema])
    return [name for (name,) in cursor.fetchall()]


def _dangling_keys(cursor, schema: str) -> list[str]:
    """Every foreign key of ``schema`` checked by query: the dump loads with checks off."""
    cursor.execute(
        "SELECT CONSTRAINT_NAME, TABLE_NAME, COLUMN_NAME, REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME, "
        "REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = %s "
        "AND REFERENCED_TABLE_NAME IS NOT NULL ORDER BY TABLE_NAME, CONSTRAINT_NAME, ORDINAL_POSITION", [schema])
    keys: dict[tuple[str, str], list[tuple]] = {}
    for name, table, column, ref_schema, ref_table, ref_column in cursor.fetchall():
        keys.setdefault((table, name), []).append((column, ref_schema, ref_table, ref_column))
    problems = []
    for (table, _name), cols in keys.items():
        ref_schema, ref_table = cols[0][1], cols[0][2]
        present = " AND ".join(f"c.`{c}` IS NOT NULL" for c, *_ in cols)
        match = " AND ".join(f"p.`{rc}` = c.`{c}`" for c, _s, _t, rc in cols)
        cursor.execute(f"SELECT COUNT(*) FROM `{schema}`.`{table}` c WHERE {present} AND NOT EXISTS "
                       f"(SELECT 1 FROM `{ref_schema}`.`{ref_table}` p WHERE {match})")
        if n := cursor.fetchone()[0]:
            problems.append(f"{table}.{','.join(c for c, *_ in cols)} -> {ref_table}: {n} row(s)")
    return problems


def _load(dump: Path, alias: str, scratch: str) -> None:
    tool = check_tool("load", alias)
    args, env = _client_args(alias)
    with open(dump, "rb") as source, tempfile.TemporaryFile() as err:
        code = subprocess.run([tool, *args, "--batch", "--", scratch], stdin=source, stdout=subprocess.DEVNULL,
                              stderr=err, env=env, check=False).returncode
        if code != 0:
            raise RestoreError(f"the dump did not load ({_last_line(err) or 'exit ' + str(code)}); "
                               "nothing was changed")


def _carry_console_tables(cursor, live: str, scratch: str, scratch_tables: set[str], live_tables: set[str]) -> None:
    """The console's rows are today's, not the backup's: copied from the live tables into the scratch ones."""
    cursor.execute("SET SESSION foreign_key_checks = 0")
    try:
        for model in console_models():
            table = model._meta.db_table
            if table not in scratch_tables:
                continue
            cursor.execute(f"DELETE FROM `{scratch}`.`{table}`")
            if table in live_tables:
                cols = ", ".join(f"`{f.column}`" for f in model._meta.concrete_fields)
                cursor.execute(f"INSERT INTO `{scratch}`.`{table}` ({cols}) SELECT {cols} FROM `{live}`.`{table}`")
        for statement in unlink_missing_sql(lambda table: f"`{scratch}`.`{table}`", lambda name: f"`{name}`"):
            cursor.execute(statement)
    finally:
        cursor.execute("SET SESSION foreign_key_checks = 1")


def restore(dump: Path, alias: str) -> None:
    """Replace the database's tables by the dump's, keeping the console's rows; the live database changes in
    one atomic RENAME TABLE, or not at all."""
    connection = connections[alias]
    if connection.in_atomic_block:
        raise RestoreError("a native MariaDB restore cannot run inside a transaction (its DDL would commit it)")
    live = str(connection.settings_dict["NAME"])
    sweep_orphan_scratch(alias)
    scratch, old = _scratch_names(alias)
    charset = _charset(alias)
    created: list[str] = []
    with connection.cursor() as cursor:  # held while this restore lives: sweep_orphan_scratch leaves it alone
        cursor.execute("SELECT GET_LOCK(%s, 0)", [scratch])
    try:
        with connection.cursor() as cursor:
            for name in (scratch, old):
                try:
                    cursor.execute(f"CREATE DATABASE `{name}` {charset}")
                except DatabaseError as exc:
                    raise RestoreError(f"cannot create the scratch database {name} ({exc}); the database user "
                                       f"needs CREATE and DROP on `{SCRATCH_PREFIX}%`.*; nothing was changed") from exc
                created.append(name)
        _load(dump, alias, scratch)
        with connection.cursor() as cursor:
            refuse_unswappable(alias, error=RestoreError, schema=scratch)
            if problems := _dangling_keys(cursor, scratch):
                raise RestoreError(f"the backup's database has broken foreign keys ({'; '.join(problems[:3])}); "
                                   "nothing was changed")
            scratch_tables, live_tables = set(_base_tables(cursor, scratch)), set(_base_tables(cursor, live))
            _carry_console_tables(cursor, live, scratch, scratch_tables, live_tables)
            moves = [f"`{live}`.`{t}` TO `{old}`.`{t}`" for t in sorted(live_tables)]
            moves += [f"`{scratch}`.`{t}` TO `{live}`.`{t}`" for t in sorted(scratch_tables)]
            try:
                cursor.execute("RENAME TABLE " + ", ".join(moves))
            except DatabaseError as exc:
                raise RestoreError(f"MariaDB refused to swap the restored tables in ({exc}); nothing was changed") \
                    from exc
    finally:
        _drop(alias, created)
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT RELEASE_LOCK(%s)", [scratch])
        except DatabaseError:  # the connection is gone: the server released the lock with it
            pass


def _charset(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                       "WHERE SCHEMA_NAME = DATABASE()")
        charset, collation = cursor.fetchone()
    return f"CHARACTER SET {charset} COLLATE {collation}"


def _drop(alias: str, names: list[str]) -> None:
    for name in names:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        except DatabaseError as exc:
            log.warning("could not drop the scratch database %s (%s); drop it by hand", name, exc)
