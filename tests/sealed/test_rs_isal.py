"""The ISA-L parity path must give the numpy encoder's (and so reedsolo's) bytes, for every piece shape.

The sealed format does not know which engine computed a parity: a file written
through ISA-L must heal with the numpy decoder and the other way round, so the
two are held to each other byte for byte, and one of them to reedsolo.
"""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import reedsolo
from hypothesis import given, settings
from hypothesis import strategies as st

from dbs_admin.sealed import rs, rs_isal
from tests.services import ROOT, require


@pytest.fixture(scope="module")
def isal():
    require("ISA-L (libisal.so.2)", rs_isal._load() is not None, "apt-get install libisal2")
    return rs_isal


@settings(max_examples=60, deadline=None)
@given(length=st.integers(min_value=1, max_value=70_000), count=st.integers(min_value=1, max_value=4),
       seed=st.integers(min_value=0, max_value=2**32))
def test_isal_parity_equals_numpy_parity_for_any_piece_shape(isal, length, count, seed):
    buf = random.Random(seed).randbytes(length * count)
    assert isal.pieces_parity(buf, count, rs.parity_matrix()) == rs.numpy_pieces_parity(buf, count)


@pytest.mark.parametrize("length", [1, 222, 223, 224, 446, 65535, 65536, 65537, 223 * 294])
def test_isal_parity_at_the_edges_of_the_interleaving(isal, length):
    """Exactly K bytes a codeword, one over and one under, the 64 KiB block and its neighbours."""
    rng = random.Random(length)
    buf = rng.randbytes(length * 3)
    ours = isal.pieces_parity(buf, 3, rs.parity_matrix())
    assert ours == rs.numpy_pieces_parity(buf, 3)
    codec = reedsolo.RSCodec(rs.NSYM)
    n = rs.codewords_for(length)
    piece = buf[length : 2 * length] + bytes(rs.K * n - length)
    for c in range(0, n, max(1, n // 7)):
        assert bytes(codec.encode(piece[c::n])[-rs.NSYM :]) == ours[1][c::n]


def test_input_views_are_read_in_place_and_left_untouched(isal):
    data = bytearray(random.Random(9).randbytes(5 * 65536 + 17))
    before = bytes(data)
    view = memoryview(data)[17:]
    assert isal.pieces_parity(view, 5, rs.parity_matrix()) == rs.numpy_pieces_parity(bytes(view), 5)
    assert data == before


def test_a_block_damaged_after_isal_sealing_heals_with_the_numpy_decoder(isal):
    rng = random.Random(4)
    block = rng.randbytes(65536)
    parity = isal.pieces_parity(block, 1, rs.parity_matrix())[0]
    damaged = bytearray(block)
    damaged[1000:5096] = bytes(4096)  # a zeroed 4 KiB page: within the blind-correction budget
    result = rs.repair_piece(len(block), [(bytes(damaged), parity, None)])
    assert result.data == block


def _engine_in_child(engine: str) -> subprocess.CompletedProcess:
    code = "from dbs_admin.sealed import rs_isal; print(rs_isal.available())"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "DBS_RS_ENGINE": engine})


def test_the_engine_variable_chooses_numpy_or_insists_on_isal(isal):
    assert _engine_in_child("numpy").stdout.strip() == "False"
    assert _engine_in_child("auto").stdout.strip() == "True"
    assert _engine_in_child("isal").stdout.strip() == "True"


def test_insisting_on_isal_without_the_library_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(rs_isal, "_NAMES", ("libdoes-not-exist.so.9",))
    monkeypatch.setenv(rs_isal.ENGINE_VARIABLE, "isal")
    rs_isal._library.cache_clear()
    try:
        with pytest.raises(rs_isal.IsalUnavailable, match="apt-get install libisal2"):
            rs_isal.available()
        monkeypatch.setenv(rs_isal.ENGINE_VARIABLE, "auto")
        rs_isal._library.cache_clear()
        assert rs_isal.available() is False  # auto: quietly the numpy encoder
        assert rs.pieces_parity(b"x" * 1000, 1) == rs.numpy_pieces_parity(b"x" * 1000, 1)
    finally:
        monkeypatch.undo()
        rs_isal._library.cache_clear()
