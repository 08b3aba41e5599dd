"""Early write-back while sealing: it flushes as it goes, and a failed flush fails the seal."""

from __future__ import annotations

import os

import pytest

from dbs_admin.sealed import SealedError, container, seal
from dbs_admin.sealed.atomic import EarlyWriteback

from .conftest import CHEAP, PASSPHRASE, random_bytes


def test_flushes_start_every_so_many_bytes_one_at_a_time(tmp_path, monkeypatch):
    import threading

    calls, release = [], threading.Event()

    def slow_flush(fd):
        calls.append(fd)
        release.wait(10)

    monkeypatch.setattr(os, "fdatasync", slow_flush)
    with open(tmp_path / "f", "wb") as f:
        wb = EarlyWriteback(f.fileno(), every=100)
        wb.wrote(60)
        assert calls == []  # not yet 100 bytes
        wb.wrote(60)  # 120: a flush starts
        wb.wrote(200)  # while it runs, no second one piles up
        release.set()
        wb.close()
        assert calls == [f.fileno()]
        wb.wrote(100)  # the next one starts once the first is done
        wb.close()
        assert calls == [f.fileno(), f.fileno()]


def test_a_failed_background_flush_is_raised_not_lost():
    """On Linux a write-back error is reported once per open file: the background flush may be the one to see it."""
    read, write = os.pipe()  # fdatasync refuses a pipe, as it would a failing disk
    try:
        wb = EarlyWriteback(write, every=1)
        wb.wrote(1)
        with pytest.raises(OSError):
            wb.close()
        wb.close()  # reported once, like the kernel does
    finally:
        os.close(read)
        os.close(write)


def test_a_seal_whose_background_flush_failed_publishes_nothing(tmp_path, monkeypatch):
    def failing(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(container, "EarlyWriteback", lambda fd: EarlyWriteback(fd, every=1))
    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises((OSError, SealedError)):
        seal(random_bytes(3 << 20), tmp_path / "f.dbs", passphrase=PASSPHRASE, **CHEAP)
    assert list(tmp_path.iterdir()) == []
