"""A dump tool's pipe is widened (``backups.pipes``): a real child process can write ahead of its reader."""

from __future__ import annotations

import subprocess
import sys
import time

from dbs_admin.backups import pipes

WRITER = ("import sys, time\n"
          "sys.stdout.buffer.write(b'x' * 900_000); sys.stdout.flush()\n"
          "sys.stderr.write('wrote\\n'); sys.stderr.flush()\n")


def test_a_widened_pipe_lets_the_tool_write_900_kb_before_anyone_reads():
    proc = subprocess.Popen([sys.executable, "-c", WRITER], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert pipes.widen(proc.stdout) >= pipes.WIDE_PIPE
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() == 0  # it finished writing without its reader having read a byte
        assert len(proc.stdout.read()) == 900_000
    finally:
        proc.kill()
        proc.wait()


def test_an_unwidened_pipe_blocks_the_same_tool():
    """The control: at the kernel's default 64 KiB the same write waits for a reader."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(1.0)
        assert proc.poll() is None
        assert len(proc.stdout.read()) == 900_000
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.wait()


def test_a_stream_that_is_not_a_pipe_is_left_alone(tmp_path):
    with open(tmp_path / "f", "wb") as f:
        assert pipes.widen(f) == 0
    assert pipes.widen(None) == 0
