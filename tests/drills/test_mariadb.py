"""``dbs_drill`` end to end on MariaDB, whatever engine the rest of the suite runs on.

Each step is a real ``manage.py`` process against a fresh MariaDB database
(on the server of tests.services.mysql_url()): migrate, seed and back up
(logical and native, mariadb-dump), then drill both, each into a
``dbs_drill_<id>_<tag>`` scratch database that is dropped afterwards; and a
user who may not create databases gets a clear refusal, not a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests import services

PASSPHRASE = "mariadb drill passphrase"
SEED_AND_BACK_UP = """
from blog.models import Post
from blog.seeding import seed
from dbs_admin.backups.api import create_backup
import os
seed(posts=10, images=2, seed=3)
Post.objects.filter(pk=Post.objects.order_by("pk").first().pk).update(title="Drilled 🚀")
create_backup(kind="logical", target="local", passphrase=os.environ["DBS_PASSPHRASE"])
print(create_backup(kind="native", target="local", passphrase=os.environ["DBS_PASSPHRASE"]).path)
"""


def with_database(url: str, name: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc if user is None else f"{user}@{parts.netloc.rsplit('@', 1)[-1]}"
    return urlunsplit((parts.scheme, netloc, f"/{name}", "", ""))


def _admin(url: str):
    import MySQLdb

    parts = urlsplit(url)
    return MySQLdb.connect(host=parts.hostname or "127.0.0.1", port=parts.port or 3306, user=parts.username or "root",
                           password=parts.password or "", charset="utf8mb4", autocommit=True)


def _tag(name: str) -> str:
    import hashlib

    return hashlib.blake2b(name.encode(), digest_size=3).hexdigest()


@pytest.fixture
def my_site(tmp_path):
    """A fresh MariaDB database for a demo site, dropped afterwards with everything in it."""
    admin_url = services.mysql_url()
    var = Path(os.environ.get("DBS_VAR_DIR", "/tmp")).name.replace("-", "_").replace(".", "_")
    name = f"dbs_{var}_drills_{uuid.uuid4().hex[:8]}"
    user = f"dbs_nocreate_{uuid.uuid4().hex[:8]}"
    conn = _admin(admin_url)
    conn.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    env = {**os.environ, "DATABASE_URL": with_database(admin_url, name), "DBS_VAR_DIR": str(tmp_path / "var"),
           "DBS_PASSPHRASE": PASSPHRASE, "DJANGO_MEDIA_ROOT": str(tmp_path / "media")}
    env.pop("REDIS_URL", None)
    try:
        yield {"env": env, "name": name, "admin_url": admin_url, "tmp": tmp_path, "user": user, "admin": conn}
    finally:
        cursor = conn.cursor()
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s",
                       [f"dbs\\_%\\_{_tag(name)}%"])
        leftovers = [n for (n,) in cursor.fetchall()]
        conn.close()
        assert not leftovers, leftovers


def manage(env: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=services.ROOT, env=env, capture_output=True,
                          text=True, timeout=180)
    if check and proc.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_dbs_drill_passes_on_mariadb_for_both_kinds_and_refuses_without_create(my_site):
    env = my_site["env"]
    manage(env, "migrate", "--no-input", "-v", "0")
    native_path = manage(env, "shell", "-c", SEED_AND_BACK_UP).stdout.strip().splitlines()[-1]
    assert native_path.endswith("-native.dbs")

    latest = manage(env, "dbs_drill", "--latest", "--no-mail")  # the newest: the native mariadb-dump backup
    assert "PASSED" in latest.stdout and "restore time (RTO)" in latest.stdout, latest.stdout
    assert "(mysql)" in latest.stdout and "FAIL" not in latest.stdout
    for check in ("tables and columns", "row counts", "foreign keys", "file hashes", "migrations", "system checks"):
        assert f"PASS  {check}" in latest.stdout, latest.stdout

    files = sorted((my_site["tmp"] / "var" / "dbs_backups").glob("*-logical.dbs"))
    logical = manage(env, "dbs_drill", str(files[-1]), "--no-mail")
    assert "PASSED" in logical.stdout and "smoke: blog: published posts render" in logical.stdout

    cursor = my_site["admin"].cursor()
    user = my_site["user"]
    cursor.execute(f"CREATE USER '{user}'@'%'")
    cursor.execute(f"GRANT ALL ON `{my_site['name']}`.* TO '{user}'@'%'")
    limited = {**env, "DATABASE_URL": with_database(my_site["admin_url"], my_site["name"], user)}
    refused = manage(limited, "dbs_drill", "--latest", "--no-mail", check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "may not create databases" in refused.stdout and "GRANT ALL ON `dbs\\_drill\\_%`.*" in refused.stdout
    assert "Traceback" not in refused.stderr
