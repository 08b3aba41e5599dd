"""The dump read ahead on a thread (``backups.dump_ahead``): every byte in order, the tool's failure raised where
the payload reaches the dump, memory bounded while nobody reads, and an abandoned dump's tool killed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from dbs_admin.backups.dump_ahead import DumpAhead
from dbs_admin.backups.errors import BackupError


def tool_chunks(script: str, record: list | None = None):
    """The bytes a real child process writes to its pipe, read as the dump readers read them (1 MiB at a time),
    killing it when abandoned; a failed exit raises, as ``pg_dump``'s and ``mariadb-dump``'s do."""
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if record is not None:
        record.append(proc)
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
        raise BackupError(f"the tool failed: exit {proc.returncode}")


WRITER = "import sys\nfor i in range({n}):\n    sys.stdout.buffer.write(bytes([i % 251]) * (1 << 20))\n{tail}"


def test_every_byte_comes_through_in_order_after_the_caller_did_other_work_first():
    ahead = DumpAhead(tool_chunks(WRITER.format(n=12, tail="")))
    time.sleep(0.3)  # the media is sealed first meanwhile
    data = b"".join(ahead)
    ahead.close()
    assert data == b"".join(bytes([i % 251]) * (1 << 20) for i in range(12))


def test_a_tool_that_fails_raises_its_error_where_the_dump_is_read():
    ahead = DumpAhead(tool_chunks(WRITER.format(n=3, tail="sys.exit(3)")))
    with pytest.raises(BackupError, match="exit 3"):
        for _ in ahead:
            pass
    ahead.close()


def test_nobody_reading_stops_the_thread_at_its_bound_and_the_tool_waits_on_its_pipe():
    procs: list = []
    produced = [0]

    def counted():
        for chunk in tool_chunks(WRITER.format(n=200, tail=""), procs):
            produced[0] += 1
            yield chunk

    ahead = DumpAhead(counted(), pieces=4)
    time.sleep(1.0)
    assert 4 <= produced[0] <= 6  # the queue's bound (+ the piece waiting to be queued): not 200 MiB in memory
    assert procs[0].poll() is None  # the tool is blocked on its full pipe, not finished
    assert sum(len(c) for c in ahead) == 200 << 20  # and it all still comes through
    ahead.close()


def test_an_abandoned_dump_kills_its_tool_and_ends_the_thread():
    procs: list = []
    ahead = DumpAhead(tool_chunks("import sys, time\nwhile True:\n    sys.stdout.buffer.write(b'x' * 65536)\n", procs),
                      pieces=2)
    next(iter(ahead))  # the payload failed after its first piece of dump (a full disk, a cancel...)
    ahead.close()
    assert not ahead._thread.is_alive()
    assert procs[0].wait(timeout=10) != 0  # killed, not left writing into a pipe nobody reads
