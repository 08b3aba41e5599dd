"""``dbs_drill`` end to end on PostgreSQL, whatever engine the rest of the suite runs on.

Each step is a real ``manage.py`` process against a fresh PostgreSQL
database (from tests.services.postgres_url()): migrate, seed and back up
(logical and native, pg_dump), then drill both; and a role without
CREATEDB gets a clear refusal, not a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from tests import services

PASSPHRASE = "postgres drill passphrase"
SEED_AND_BACK_UP = """
from blog.seeding import seed
from dbs_admin.backups.api import create_backup
import os
seed(posts=10, images=2, seed=3)
create_backup(kind="logical", target="local", passphrase=os.environ["DBS_PASSPHRASE"])
print(create_backup(kind="native", target="local", passphrase=os.environ["DBS_PASSPHRASE"]).path)
"""


def with_database(url: str, name: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rsplit('@', 1)[-1]}"
    return urlunsplit((parts.scheme, netloc, f"/{name}", "", ""))


@pytest.fixture
def pg_site(tmp_path):
    """A fresh PostgreSQL database for a demo site, dropped afterwards with everything in it."""
    admin_url = services.postgres_url()
    name = f"dbs_drills_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    env = {**os.environ, "DATABASE_URL": with_database(admin_url, name), "DBS_VAR_DIR": str(tmp_path / "var"),
           "DBS_PASSPHRASE": PASSPHRASE, "DJANGO_MEDIA_ROOT": str(tmp_path / "media")}
    env.pop("REDIS_URL", None)
    try:
        yield {"env": env, "name": name, "admin_url": admin_url, "tmp": tmp_path}
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            leftovers = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'dbs\\_drill\\_%'").fetchall()
            conn.execute("DROP ROLE IF EXISTS dbs_drills_nocreatedb")
        assert not [d for (d,) in leftovers if d.endswith("_" + _tag(name))], leftovers


def _tag(name: str) -> str:
    import hashlib

    return hashlib.blake2b(name.encode(), digest_size=3).hexdigest()


def manage(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=services.ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_dbs_drill_passes_on_postgresql_for_both_kinds_and_refuses_without_createdb(pg_site):
    env = pg_site["env"]
    manage(env, "migrate", "--no-input", "-v", "0")
    native_path = manage(env, "shell", "-c", SEED_AND_BACK_UP).stdout.strip().splitlines()[-1]
    assert native_path.endswith("-native.dbs")

    latest = manage(env, "dbs_drill", "--latest", "--no-mail")  # the newest: the native pg_dump backup
    assert "PASSED" in latest.stdout and "restore time (RTO)" in latest.stdout, latest.stdout
    assert "(postgresql)" in latest.stdout and "FAIL" not in latest.stdout

    files = sorted((pg_site["tmp"] / "var" / "dbs_backups").glob("*-logical.dbs"))
    logical = manage(env, "dbs_drill", str(files[-1]), "--no-mail")
    assert "PASSED" in logical.stdout and "smoke: blog: published posts render" in logical.stdout

    with psycopg.connect(with_database(pg_site["admin_url"], pg_site["name"]), autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS dbs_drills_nocreatedb")
        conn.execute("CREATE ROLE dbs_drills_nocreatedb LOGIN NOCREATEDB")
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO dbs_drills_nocreatedb")
        conn.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO dbs_drills_nocreatedb")
    limited = {**env, "DATABASE_URL": with_database(pg_site["admin_url"], pg_site["name"], "dbs_drills_nocreatedb")}
    refused = manage(limited, "dbs_drill", "--latest", "--no-mail", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "lacks CREATEDB" in refused.stdout and "ALTER ROLE dbs_drills_nocreatedb CREATEDB" in refused.stdout
    assert "Traceback" not in refused.stderr
