"""A restore's write transaction on SQLite holds the write lock from its first statement, so a write that
another connection commits between the restore's first read and its first write cannot make it fail with
"database is locked" (seen in CI as a restore failing while the job's companion thread wrote progress)."""

from __future__ import annotations

import sqlite3

import pytest
from django.db import DatabaseError, connection, transaction

from blog.models import Category
from dbs_admin.backups.write_transaction import write_transaction

pytestmark = pytest.mark.django_db(transaction=True)


def _other_writer_commits() -> bool:
    """Another connection's write, committed if it can get the lock within 0.2 s (SQLite: its own handle)."""
    other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.2)
    try:
        other.execute("UPDATE blog_category SET name = name || '!' WHERE slug = 'news'")
        other.commit()
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        other.close()


def _read_then_write(begin) -> None:
    with begin():
        assert Category.objects.filter(slug="news").exists()  # the transaction reads first...
        if connection.vendor == "sqlite":
            wrote = _other_writer_commits()  # ...someone else commits in between...
            assert wrote is (begin is plain_atomic)  # ...only when the write lock was not taken at BEGIN
        Category.objects.create(name="Restored", slug="restored")  # ...then it writes


def plain_atomic():
    return transaction.atomic()


def test_a_read_then_a_write_survives_another_connection_committing_in_between():
    Category.objects.create(name="News", slug="news")
    if connection.vendor == "sqlite":
        connection.cursor().execute("PRAGMA journal_mode=WAL")  # as a backup leaves a site's database
        with pytest.raises(DatabaseError, match="locked"):  # what a deferred BEGIN does: fails at once
            _read_then_write(plain_atomic)
        assert not Category.objects.filter(slug="restored").exists()
    _read_then_write(lambda: write_transaction("default"))
    assert Category.objects.filter(slug="restored").exists()


def test_it_is_an_atomic_block_that_rolls_back_and_leaves_the_settings_mode_alone():
    mode = getattr(connection, "transaction_mode", None)
    with pytest.raises(RuntimeError), write_transaction("default"):
        Category.objects.create(name="Gone", slug="gone")
        raise RuntimeError("halfway")
    assert not Category.objects.filter(slug="gone").exists()
    assert getattr(connection, "transaction_mode", None) == mode
    with transaction.atomic(), write_transaction("default"):  # nested: a savepoint, as atomic() makes
        Category.objects.create(name="Kept", slug="kept")
    assert Category.objects.filter(slug="kept").exists()
