"""docs/PAYLOAD.md and the code agree, and the frame reader refuses malformed streams."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from dbs_admin.backups import payload
from dbs_admin.backups.errors import PayloadError

DOC = (Path(__file__).resolve().parents[2] / "docs" / "PAYLOAD.md").read_text()


def test_magic_and_frame_types_match_the_document():
    hex_bytes = re.search(r"MAGIC\s+=\s+%x([0-9A-F.]+)", DOC).group(1).split(".")
    assert bytes(int(h, 16) for h in hex_bytes) == payload.MAGIC
    documented = dict(re.findall(r"^\| `(\w)`\s+\| (\w+)\s+\|", DOC, re.M))
    assert documented == {k.decode(): n for n, k in [
        ("HEAD", payload.HEAD), ("REFS", payload.REFS), ("MODEL", payload.MODEL), ("ROWS", payload.ROWS),
        ("FILE", payload.FILE), ("DUMP", payload.DUMP), ("DATA", payload.DATA), ("END_DATA", payload.END_DATA),
        ("TRAILER", payload.TRAILER), ("END", payload.END)]}
    assert f"<= {payload.MAX_FRAME:,}" in DOC and "at most 1 MiB" in DOC and payload.DATA_CHUNK == 1 << 20


def _read(data: bytes) -> list:
    return list(payload.read_frames(io.BytesIO(data)))


@pytest.mark.parametrize(("data", "message"), [
    (b"NOTAPAYL" + payload.frame(payload.END), "does not hold a dbs_admin backup"),
    (payload.MAGIC + payload.json_frame(payload.HEAD, {}), "without their closing record"),
    (payload.MAGIC + payload.frame(b"Q", b"x") + payload.frame(payload.END), "unknown record type"),
    (payload.MAGIC + payload.frame(payload.END) + b"x", "data follows the closing record"),
    (payload.MAGIC + b"D\xff\xff\xff\xff", "exceeds the limit"),
    (payload.MAGIC + payload.frame(payload.DATA, b"abcdef")[:8], "end in the middle of a record"),
])
def test_malformed_streams_are_refused(data, message):
    with pytest.raises(PayloadError, match=message):
        _read(data)


def test_rows_round_trip_and_garbage_is_refused():
    rows = [[1, "é", None, True, 1.5, "2026-01-01T00:00:00+00:00"], [2, "", None, False, 0.0, None]]
    kind, body = _read(payload.MAGIC + payload.rows_frame(rows) + payload.frame(payload.END))[0]
    assert kind == payload.ROWS and payload.load_rows(body) == rows
    with pytest.raises(PayloadError):
        payload.load_rows(b"\xc1garbage")
