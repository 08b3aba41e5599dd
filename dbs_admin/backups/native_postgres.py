"""Native PostgreSQL: ``pg_dump -Fc`` piped straight into the sealed writer; restore in one transaction.

Why these choices:
- The dump runs on a snapshot exported from our own REPEATABLE READ
  transaction (``pg_dump --snapshot``), so the row counts in the manifest are
  counted on exactly the instant the dump holds. Its bytes flow from the
  pipe into ``seal()``: no plain dump ever touches the disk.
- Restore: ``pg_restore`` turns the verified archive into SQL that ``psql
  --single-transaction`` runs between our own prelude (keep the console's
  tables, drop and recreate the schema) and postlude (put the console's
  rows back, unlink them from rows that are gone, reset sequences). Any
  error rolls the whole transaction back: the database is as before.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.core.management.color import no_style
from django.db import connections

from dbs_admin.backups import pipes
from dbs_admin.backups.errors import BackupError, RestoreError, ToolMissingError
from dbs_admin.backups.own_tables import console_models, unlink_missing_sql


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolMissingError(f"{name} is not installed or not on PATH; install the PostgreSQL client tools "
                               "(e.g. apt-get install postgresql-client) matching your server's major version")
    return path


def _major(tool: str) -> int:
    out = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False).stdout
    match = re.search(r"(\d+)(?:\.\d+)?", out)
    if match is None:
        raise ToolMissingError(f"cannot tell the version of {tool} from {out.strip()!r}")
    return int(match.group(1))


def check_tool(name: str, alias: str) -> str:
    """The tool's path, refusing one older than the server (its dump or restore would be refused or wrong)."""
    tool = _tool(name)
    connection = connections[alias]
    connection.ensure_connection()
    server = connection.pg_version // 10000
    mine = _major(tool)
    if mine < server:
        raise ToolMissingError(f"{name} {mine} is older than the PostgreSQL {server} server; install the "
                               f"version {server} client tools")
    return tool


def _conn_args(alias: str) -> tuple[list[str], dict[str, str]]:
    s = connections[alias].settings_dict
    args = ["-d", s["NAME"]]
    if s.get("HOST"):
        args += ["-h", str(s["HOST"])]
    if s.get("PORT"):
        args += ["-p", str(s["PORT"])]
    if s.get("USER"):
        args += ["-U", str(s["USER"])]
    env = dict(os.environ)
    if s.get("PASSWORD"):
        env["PGPASSWORD"] = str(s["PASSWORD"])  # the child's environment only; never logged
    return args, env


def export_snapshot(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_export_snapshot()")
        return cursor.fetchone()[0]


def dump_chunks(alias: str, snapshot_id: str) -> Iterator[bytes]:
    """The bytes of ``pg_dump -Fc`` of ``alias`` at ``snapshot_id``, read from its pipe."""
    tool = check_tool("pg_dump", alias)
    args, env = _conn_args(alias)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([tool, "-Fc", "--no-password", "--snapshot", snapshot_id, *args],
                                stdout=subprocess.PIPE, stderr=err, env=env)
        pipes.widen(proc.stdout)  # the tool blocks less on a full pipe (pipes.py: why)
        try:
            while chunk := proc.stdout.read(1 << 20):
                yield chunk
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            proc.stdout.close()
        if proc.wait() != 0:
            err.seek(0)
            message = err.read().decode(errors="replace").strip().splitlines()
            raise BackupError(f"pg_dump failed: {message[-1] if message else 'exit ' + str(proc.returncode)}")


def _prelude(alias: str) -> str:
    existing = set(connections[alias].introspection.table_names())
    lines = ["SET client_min_messages = warning;"]
    for model in console_models():
        t = model._meta.db_table
        if t in existing:
            lines.append(f'CREATE TEMP TABLE "dbs_keep_{t}" AS TABLE public."{t}";')
    lines += ["DROP SCHEMA public CASCADE;", "CREATE SCHEMA public;"]
    return "\n".join(lines) + "\n"


def _postlude(alias: str) -> str:
    connection = connections[alias]
    existing = set(connection.introspection.table_names())
    lines = ["SET search_path = public;", "SET CONSTRAINTS ALL DEFERRED;"]
    kept = []
    for model in console_models():
        t = model._meta.db_table
        lines.append(f'DELETE FROM "{t}";')
        if t in existing:
            kept.append(model)
            cols = ", ".join(f'"{f.column}"' for f in model._meta.concrete_fields)
            lines.append(f'INSERT INTO "{t}" ({cols}) SELECT {cols} FROM pg_temp."dbs_keep_{t}";')
    lines += [f"{statement};" for statement in unlink_missing_sql()]
    lines += connection.ops.sequence_reset_sql(no_style(), kept)
    lines.append("SET CONSTRAINTS ALL IMMEDIATE;")
    return "\n".join(lines) + "\n"


def restore(dump: Path, alias: str) -> None:
    """Replace the database's contents by the dump, keeping the console's tables; one transaction."""
    pg_restore = check_tool("pg_restore", alias)
    psql = _tool("psql")
    args, env = _conn_args(alias)
    prelude, postlude = _prelude(alias), _postlude(alias)
    connections[alias].close()
    with tempfile.TemporaryFile() as err, tempfile.TemporaryFile() as perr:
        sql = subprocess.Popen([psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                *args, "-f", "-"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err,
                               env=env)
        ok = True
        try:
            sql.stdin.write(prelude.encode())
            gen = subprocess.Popen([pg_restore, "--no-owner", "--no-privileges", "-f", "-", str(dump)],
                                   stdout=subprocess.PIPE, stderr=perr, env=env)
            while chunk := gen.stdout.read(1 << 20):
                sql.stdin.write(chunk)
            gen.stdout.close()
            if gen.wait() != 0:
                ok = False  # a truncated script must not commit: poison the transaction
                sql.stdin.write(b"\nSELECT 1/0 AS pg_restore_failed;\n")
            else:
                sql.stdin.write(postlude.encode())
            sql.stdin.close()
        except BrokenPipeError:
            pass
        code = sql.wait()
        if not ok:
            perr.seek(0)
            lines = perr.read().decode(errors="replace").strip().splitlines()
            raise RestoreError(f"pg_restore failed ({lines[-1] if lines else 'no message'}); nothing was changed")
        if code != 0:
            err.seek(0)
            lines = [ln for ln in err.read().decode(errors="replace").splitlines() if "ERROR" in ln]
            raise RestoreError(f"the native restore failed ({lines[0] if lines else 'psql exit ' + str(code)}); "
                               "the transaction was rolled back, nothing was changed")
