"""Fixtures of the backup tests: six real databases (two SQLite files, two PostgreSQL and two MariaDB databases).

The extra aliases exist only for these tests. ``sq_a``/``pg_a``/``my_a`` are
sources, ``sq_b``/``pg_b``/``my_b`` restore targets, so every test also proves
``database=`` is honoured. A router sends the ORM to the alias named by
:func:`on`, so the demo's own seeding code fills any of them. Without the
MariaDB driver (mysqlclient) the ``my_*`` aliases do not exist and the cases
that use them are skipped with the reason (with DBS_REQUIRE_SERVICES=1, the
collection fails instead).
"""

from __future__ import annotations

import contextvars
import hashlib
import importlib.util
import os
from contextlib import contextmanager
from pathlib import Path

import dj_database_url
import pytest
from django.conf import settings
from django.db import connections, router

from dbs_admin.sealed import Identity

VAR = Path(settings.VAR_DIR) if hasattr(settings, "VAR_DIR") else Path(os.environ.get("DBS_VAR_DIR", "/tmp"))
_PG_BASE = os.environ.get("DBS_TEST_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres")
# The cross-engine databases are named after this run's var folder, its name and a hash of its whole path:
# two checkouts with the default ``var/`` (two CI clones at once) must never share a database.
_PREFIX = ("dbs_" + VAR.name.replace("-", "_").replace(".", "_")[:20] + "_"
           + hashlib.blake2b(str(VAR.resolve()).encode(), digest_size=3).hexdigest())


def _pg(suffix: str) -> dict:
    cfg = dj_database_url.parse(_PG_BASE, conn_max_age=0)
    cfg["NAME"] = f"{_PREFIX}_{suffix}"
    return cfg


def _sqlite(suffix: str) -> dict:
    return {"ENGINE": "django.db.backends.sqlite3", "NAME": str(VAR / f"{suffix}.sqlite3"),
            "TEST": {"NAME": str(VAR / f"test_{suffix}.sqlite3")}, "OPTIONS": {"timeout": 30}}


MYSQL_DRIVER = importlib.util.find_spec("MySQLdb") is not None
_MY_BASE = os.environ.get("DBS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/mysql")
_NO_DRIVER = "the MariaDB driver is not installed: apt-get install libmariadb-dev pkg-config, then make install"
if not MYSQL_DRIVER and os.environ.get("DBS_REQUIRE_SERVICES") == "1":
    raise pytest.UsageError(f"DBS_REQUIRE_SERVICES=1 but {_NO_DRIVER}")


def _my(suffix: str) -> dict:
    cfg = dj_database_url.parse(_MY_BASE, conn_max_age=0)
    cfg["NAME"] = f"{_PREFIX}_my_{suffix}"
    cfg["OPTIONS"] = {"charset": "utf8mb4"}
    cfg["TEST"] = {"CHARSET": "utf8mb4"}
    return cfg


EXTRA = {"sq_a": _sqlite("sq_a"), "sq_b": _sqlite("sq_b"), "pg_a": _pg("a"), "pg_b": _pg("b")}
if MYSQL_DRIVER:
    EXTRA.update(my_a=_my("a"), my_b=_my("b"))
ALL = ["default", *EXTRA]
for _alias, _cfg in EXTRA.items():
    if _alias not in settings.DATABASES:
        settings.DATABASES[_alias] = _cfg
    connections.settings[_alias] = connections.configure_settings(
        {"default": settings.DATABASES["default"], _alias: settings.DATABASES[_alias]})[_alias]

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("dbs_test_alias", default=None)


class _AliasRouter:
    """Reads and writes go to the alias chosen with :func:`on` (else Django's usual choice)."""

    def db_for_read(self, model, **hints):
        return _current.get()

    db_for_write = db_for_read


if not any(isinstance(r, _AliasRouter) for r in router.routers):
    router.routers.insert(0, _AliasRouter())


@contextmanager
def on(alias: str):
    token = _current.set(alias)
    try:
        yield
    finally:
        _current.reset(token)


@pytest.fixture(scope="session")
def identity() -> Identity:
    return Identity.generate()


@pytest.fixture
def pg():
    """Declare that the test needs PostgreSQL (skips locally, fails in CI, when it is down)."""
    from tests import services

    services.postgres_url()


def case(*aliases: str, id: str | None = None, marks=()):
    """A pytest.param of database aliases, skipped when one is a MariaDB alias and the driver is missing."""
    marks = list(marks) if isinstance(marks, (list, tuple)) else [marks]
    if not MYSQL_DRIVER and any(a.startswith("my_") for a in aliases):
        marks.append(pytest.mark.skip(reason=_NO_DRIVER))
    return pytest.param(*aliases, id=id, marks=marks)


def needs_services(request, *aliases: str) -> None:
    """Declare the servers the aliases live on (skips locally, fails in CI, when one is down)."""
    from tests import services

    if any(a.startswith("pg_") for a in aliases):
        services.postgres_url()
    if any(a.startswith("my_") for a in aliases):
        services.mysql_url()


@pytest.fixture
def my():
    """Declare that the test needs MariaDB (skips locally, fails in CI, when it is down)."""
    from tests import services

    services.mysql_url()


@pytest.fixture
def backup_settings(tmp_path, settings):
    """Targets and private work folders per test, so tests never see each other's backups."""
    settings.DBS_ADMIN = {
        **settings.DBS_ADMIN,
        "TARGETS": {"local": {"kind": "local", "path": str(tmp_path / "target")}},
        "PRIVATE_ROOT": str(tmp_path / "private"),
        "ARGON2": {"time_cost": 1, "memory_kib": 1024, "parallelism": 1, "allow_weak": True},
    }
    yield
