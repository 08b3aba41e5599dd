"""Fuzzing the reader: whatever happens to the file, the output is the original or an error."""

from __future__ import annotations

import shutil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dbs_admin.sealed import verify

from .conftest import random_bytes, seal_bytes
from .damage import outcome

DATA = random_bytes(150_000, seed=31)

WHERE = st.floats(0, 1, exclude_max=True)
SEED = st.integers(0, 2**32)
mutation = st.one_of(
    st.tuples(st.just("flip"), WHERE, st.integers(1, 255), st.just(0)),
    st.tuples(st.just("zero"), WHERE, st.integers(1, 4096), st.just(0)),
    st.tuples(st.just("noise"), WHERE, st.integers(1, 2048), SEED),
    st.tuples(st.just("cut"), WHERE, st.just(0), st.just(0)),
    st.tuples(st.just("move"), WHERE, st.integers(1, 8192), SEED),
)


def apply(buf: bytearray, op: tuple) -> bytearray:
    kind, where, amount, seed = op
    if not buf:
        return buf
    at = int(where * len(buf))
    if kind == "flip":
        buf[at] ^= amount
    elif kind == "zero":
        buf[at : at + amount] = bytes(len(buf[at : at + amount]))
    elif kind == "noise":
        piece = random_bytes(amount, seed)
        buf[at : at + amount] = piece[: len(buf[at : at + amount])]
    elif kind == "cut":
        del buf[at:]
    elif kind == "move":  # copy a run of bytes over another place (a misdirected write)
        src = seed % len(buf)
        run = bytes(buf[src : src + amount])
        buf[at : at + len(run)] = run[: len(buf[at : at + len(run)])]
    return buf


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(mutation, min_size=1, max_size=5))
def test_random_mutations_never_yield_different_bytes(tmp_path_factory, ops):
    base = tmp_path_factory.getbasetemp() / "fuzz-original.dbs"
    if not base.exists():
        seal_bytes(DATA, base)
    path = tmp_path_factory.mktemp("fuzz") / "f.dbs"
    shutil.copyfile(base, path)
    buf = bytearray(path.read_bytes())
    for op in ops:
        buf = apply(buf, op)
    path.write_bytes(bytes(buf))
    kind, _ = outcome(path, DATA)  # asserts: exact data, or a SealedError
    try:
        report = verify(path)
    except Exception as exc:  # noqa: BLE001 - only our own errors are acceptable
        from dbs_admin.sealed import SealedError

        assert isinstance(exc, SealedError), repr(exc)
        assert kind == "refused"
        return
    if kind == "exact":
        assert report.ok, report.error


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    hits=st.lists(
        st.tuples(
            st.sampled_from(["header", "table", "manifest", "locator"]),
            st.integers(0, 1),  # which copy (the locator has one)
            st.floats(0, 1, exclude_max=True),  # where in the record
            st.sampled_from(["flip", "zero", "noise"]),
            st.integers(1, 300),
            SEED,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_metadata_mutations_never_yield_different_bytes(tmp_path_factory, hits):
    """Damage aimed at the small metadata records (rarely hit by uniform fuzzing)."""
    from .damage import layout_of

    base = tmp_path_factory.getbasetemp() / "fuzz-original.dbs"
    if not base.exists():
        seal_bytes(DATA, base)
    locator, _, _ = layout_of(base)
    regions = {
        "header": (locator.headers, locator.header_length),
        "table": (locator.tables, locator.table_length),
        "manifest": (locator.manifests, locator.manifest_length),
        "locator": ((locator.total_size - 244, locator.total_size - 244), 244),
    }
    path = tmp_path_factory.mktemp("fuzzmeta") / "f.dbs"
    shutil.copyfile(base, path)
    buf = bytearray(path.read_bytes())
    for region, copy, where, kind, amount, seed in hits:
        offsets, length = regions[region]
        start = offsets[copy] + int(where * length)
        apply_at = start / len(buf)
        buf = apply(buf, (kind, apply_at, amount if kind != "flip" else 1 + seed % 255, seed))
    path.write_bytes(bytes(buf))
    outcome(path, DATA)
