"""Restores of hostile-but-sealed backups: refused with one line and nothing written, or restored exactly.

Who writes such a file: anyone holding a recipient's public key, or anyone who hands a user an untrusted
``.dbs`` with its passphrase. The contents are correctly sealed (the container authenticates them), so
every defence here is in how the payload is read: names, framing, and values.
"""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
from pathlib import Path

import msgpack
import pytest
from django.core.management import CommandError, call_command

from dbs_admin import create_backup
from dbs_admin.backups import payload
from dbs_admin.sealed import Argon2Params, open_sealed, seal

from .helpers import build_site, table_contents

PASSPHRASE = "hostile contents, valid key"
WEAK = Argon2Params(time_cost=1, memory_kib=1024, parallelism=1)
pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


def tree(root: Path) -> dict[str, str]:
    """Every entry under ``root``: folders, links and files (by hash), so a changed kind shows too."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture
def genuine(media_root, tmp_path):
    """A real backup of a small blog (with images) and its decrypted frames and manifest."""
    build_site("sq_a", posts=3, images=2)
    result = create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "genuine.dbs")
    with open_sealed(result.path, passphrase=PASSPHRASE) as reader:
        manifest = dict(reader.manifest)
        frames = list(payload.read_frames(io.BytesIO(reader.read())))
    (tmp_path / "pw").write_text(PASSPHRASE + "\n")
    return frames, manifest


def sealed(frames, manifest, dest: Path, *, raw: bytes | None = None) -> Path:
    data = raw if raw is not None else payload.MAGIC + b"".join(payload.frame(k, b) for k, b in frames)
    seal(data, dest, passphrase=PASSPHRASE, argon2=WEAK, allow_weak_argon2=True, manifest=manifest)
    return dest


def file_entry(name: str, content: bytes = b"x", root: str = "media") -> list[tuple[bytes, bytes]]:
    import json

    return [
        (payload.FILE, json.dumps({"root": root, "name": name, "ref": name, "size": len(content)}).encode()),
        (payload.DATA, content),
        (payload.END_DATA, json.dumps({"size": len(content), "sha256": hashlib.sha256(content).hexdigest()}).encode()),
    ]


def with_files(frames, *entries: str, rename_first: str | None = None):
    """The genuine frames with the first file renamed and/or extra file entries added before the trailer."""
    import json

    out, renamed = [], False
    for kind, body in frames:
        if kind == payload.FILE and rename_first is not None and not renamed:
            spec = json.loads(body)
            spec["name"] = rename_first
            body, renamed = json.dumps(spec).encode(), True
        if kind == payload.TRAILER:
            for name in entries:
                out += file_entry(name)
        out.append((kind, body))
    return out


def restore(path: Path, tmp_path: Path) -> str:
    """``dbs_restore`` into sq_b; returns the one line of a refusal (exit code 1 checked)."""
    with pytest.raises(CommandError) as refused:
        call_command("dbs_restore", str(path), "--database", "sq_b", "--passphrase-file", str(tmp_path / "pw"),
                     "--no-input", verbosity=0)
    assert refused.value.returncode == 1
    message = str(refused.value)
    assert "\n" not in message and "Traceback" not in message
    return message


RENAMED = [
    pytest.param(".", id="dot"),
    pytest.param("./", id="dot-slash"),
    pytest.param("uploads/.", id="folder-dot"),
    pytest.param("uploads", id="existing-folder"),
    pytest.param("uploads/", id="trailing-slash"),
    pytest.param("", id="empty"),
    pytest.param("..", id="dot-dot"),
    pytest.param("../outside.jpg", id="traversal"),
    pytest.param("uploads/../../outside.jpg", id="traversal-inside"),
    pytest.param("/tmp/absolute.jpg", id="absolute"),
    pytest.param("uploads\\evil.jpg", id="backslash"),
    pytest.param("uploads/evil\x00.jpg", id="nul"),
    pytest.param("uploads//double.jpg", id="empty-part"),
    pytest.param("uploads/new\x1b[2J.jpg", id="control-character"),
]


@pytest.mark.parametrize("name", RENAMED)
def test_a_hostile_file_name_is_refused_with_nothing_written(name, genuine, media_root, tmp_path):
    frames, manifest = genuine
    before_media, before_rows = tree(media_root), table_contents("sq_b")
    crafted = sealed(with_files(frames, rename_first=name), manifest, tmp_path / "crafted.dbs")

    message = restore(crafted, tmp_path)

    assert "refusing" in message and repr(name) in message
    assert tree(media_root) == before_media and table_contents("sq_b") == before_rows
    assert not (tmp_path / "outside.jpg").exists() and not Path("/tmp/absolute.jpg").exists()
    assert not [p for p in media_root.parent.iterdir() if p.name.startswith(".dbs-restore-")]


@pytest.mark.parametrize(("entries", "expected"), [
    pytest.param(["zz/a.jpg", "zz"], "is the folder of its entry 'zz/a.jpg'", id="folder-of-another-entry"),
    pytest.param(["zz", "zz/a.jpg"], "lies inside its file entry 'zz'", id="inside-another-entry"),
    pytest.param(["dup.jpg", "dup.jpg"], "holds the file 'dup.jpg' twice", id="twice"),
    pytest.param([unicodedata.normalize("NFC", "café.jpg"), unicodedata.normalize("NFD", "café.jpg")],
                 "twice", id="same-after-unicode-normalisation"),
])
def test_entries_that_collide_with_each_other_are_refused(entries, expected, genuine, media_root, tmp_path):
    frames, manifest = genuine
    before_media, before_rows = tree(media_root), table_contents("sq_b")
    crafted = sealed(with_files(frames, *entries), manifest, tmp_path / "crafted.dbs")

    message = restore(crafted, tmp_path)

    assert expected in message
    assert tree(media_root) == before_media and table_contents("sq_b") == before_rows


def test_an_entry_inside_an_existing_file_is_refused(genuine, media_root, tmp_path):
    frames, manifest = genuine
    (media_root / "uploads" / "not-in-the-backup.txt").write_text("a live file")
    inside = "uploads/not-in-the-backup.txt/evil.jpg"
    before = tree(media_root)

    message = restore(sealed(with_files(frames, inside), manifest, tmp_path / "crafted.dbs"), tmp_path)

    assert "inside the existing file" in message and tree(media_root) == before


def test_an_entry_through_a_symbolic_link_is_refused_and_the_link_target_untouched(genuine, media_root, tmp_path):
    frames, manifest = genuine
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (media_root / "uploads" / "linked").symlink_to(elsewhere)
    before = tree(media_root)

    message = restore(sealed(with_files(frames, "uploads/linked/evil.jpg"), manifest, tmp_path / "c.dbs"), tmp_path)

    assert "symbolic link" in message
    assert tree(media_root) == before and list(elsewhere.iterdir()) == []


def test_the_genuine_backup_still_restores_exactly(genuine, media_root, tmp_path):
    """The control: the same frames, resealed unchanged, restore (so the refusals above are about the names)."""
    frames, manifest = genuine
    call_command("dbs_restore", str(sealed(frames, manifest, tmp_path / "same.dbs")), "--database", "sq_b",
                 "--passphrase-file", str(tmp_path / "pw"), "--no-input", verbosity=0)
    assert table_contents("sq_b") == table_contents("sq_a")


# --- framing and values -------------------------------------------------------------------------------


def rows_of(frames, label: str):
    """(index of the MODEL frame, its spec, index of its first ROWS frame) for ``label``."""
    import json

    for i, (kind, body) in enumerate(frames):
        if kind == payload.MODEL and json.loads(body)["model"] == label:
            return i, json.loads(body), i + 1
    raise AssertionError(label)


def with_value(frames, label: str, column: str, value):
    """The genuine frames with ``column`` of the first row of ``label`` replaced by ``value``."""
    i, spec, r = rows_of(frames, label)
    rows = msgpack.unpackb(frames[r][1], raw=False)
    rows[0][spec["columns"].index(column)] = value
    out = list(frames)
    out[r] = (payload.ROWS, msgpack.packb(rows, use_bin_type=True, datetime=False))
    return out, rows[0][spec["columns"].index(spec["pk"])]


@pytest.mark.parametrize(("column", "value", "what"), [
    pytest.param("title", b"bytes, not text", "text", id="bytes-in-text"),
    pytest.param("title", 12345, "text", id="number-in-text"),
    pytest.param("created_at", 1700000000, "date and time", id="number-in-datetime"),
    pytest.param("created_at", "not a date", "date and time", id="garbage-in-datetime"),
    pytest.param("created_at", "2026-13-45T99:00:00", "date and time", id="impossible-datetime"),
    pytest.param("id", 2**63, "integer", id="integer-too-large"),
    pytest.param("id", "seven", "integer", id="text-in-integer"),
    pytest.param("title", msgpack.ExtType(42, b"?"), "", id="msgpack-extension-type"),
    pytest.param("title", [[[[[]]]]], "text", id="nested-list-in-text"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_model_pk_and_field(column, value, what, genuine, tmp_path):
    frames, manifest = genuine
    crafted, pk = with_value(frames, "blog.Post", column, value)
    before = table_contents("sq_b")

    message = restore(sealed(crafted, manifest, tmp_path / "crafted.dbs"), tmp_path)

    if isinstance(value, msgpack.ExtType):
        assert "extension type" in message
    else:
        assert "blog.Post" in message and f"pk {pk}" in message and column in message and what in message
    assert table_contents("sq_b") == before


def deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("where", ["model", "trailer", "head"])
def test_deeply_nested_json_is_refused_without_recursion(where, genuine, tmp_path):
    frames, manifest = genuine
    kind = {"model": payload.MODEL, "trailer": payload.TRAILER, "head": payload.HEAD}[where]
    i = next(n for n, (k, _) in enumerate(frames) if k == kind)
    crafted = list(frames)
    crafted[i] = (kind, ('{"x": ' + deep(200_000) + "}").encode())
    before = table_contents("sq_b")

    message = restore(sealed(crafted, manifest, tmp_path / "crafted.dbs"), tmp_path)

    assert "nested" in message or "not valid JSON" in message
    assert table_contents("sq_b") == before


def test_deeply_nested_rows_are_refused(genuine, tmp_path):
    frames, manifest = genuine
    _, _, r = rows_of(frames, "blog.Post")
    crafted = list(frames)
    crafted[r] = (payload.ROWS, b"\x91" * 100_000 + b"\xc0")  # an array in an array ... 100,000 deep
    message = restore(sealed(crafted, manifest, tmp_path / "crafted.dbs"), tmp_path)
    assert "rows" in message


def test_a_stream_of_very_many_tiny_frames_is_refused(genuine, tmp_path):
    """Empty rows batches by the hundred thousand, all for one table: more batches than rows is refused."""
    frames, manifest = genuine
    _, _, r = rows_of(frames, "blog.Post")
    crafted = frames[:r] + [(payload.ROWS, msgpack.packb([]))] * 200_000 + frames[r:]
    message = restore(sealed(crafted, manifest, tmp_path / "crafted.dbs"), tmp_path)
    assert "batches" in message


def test_more_rows_than_the_manifest_counts_are_refused_before_the_end(genuine, tmp_path):
    frames, manifest = genuine
    _, _, r = rows_of(frames, "blog.Post")
    crafted = frames[: r + 1] + [frames[r]] * 50 + frames[r + 1:]  # the same batch again and again
    message = restore(sealed(crafted, manifest, tmp_path / "crafted.dbs"), tmp_path)
    assert "more rows of blog.Post than its manifest counts" in message


# --- fuzzing: every mutated payload is refused in one sentence, or restored exactly ----------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dbs_admin.errors import DbsError  # noqa: E402
from dbs_admin.sealed import SealedError  # noqa: E402

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
MSGPACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=25,
)


@st.composite
def mutated(draw, frames: list):
    """The genuine frames with one to three mutations of the kinds real damage and real attackers make."""
    import json

    frames = list(frames)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(frames) - 1))
        kind, body = frames[i]
        how = draw(st.sampled_from(["flip", "truncate", "drop", "duplicate", "swap", "insert", "json", "rows",
                                    "value"]))
        if how == "flip" and body:
            at = draw(st.integers(0, len(body) - 1))
            body = body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1:]
            frames[i] = (kind, body)
        elif how == "truncate":
            frames[i] = (kind, body[: draw(st.integers(0, max(0, len(body) - 1)))])
        elif how == "drop" and len(frames) > 1:
            del frames[i]
        elif how == "duplicate":
            frames.insert(i, (kind, body))
        elif how == "swap":
            j = draw(st.integers(0, len(frames) - 1))
            frames[i], frames[j] = frames[j], frames[i]
        elif how == "insert":
            frames.insert(i, (draw(st.sampled_from(sorted(payload.KNOWN))), draw(st.binary(max_size=64))))
        elif how == "json" and kind not in (payload.ROWS, payload.DATA, payload.END):
            frames[i] = (kind, json.dumps(draw(JSON_VALUES)).encode())
        elif how == "rows" and kind == payload.ROWS:
            frames[i] = (kind, msgpack.packb(draw(st.lists(st.lists(MSGPACK_VALUES, max_size=14), max_size=3)),
                                             use_bin_type=True))
        elif how == "value" and kind == payload.ROWS:
            rows = msgpack.unpackb(body, raw=False)
            if rows and rows[0]:
                r, c = draw(st.integers(0, len(rows) - 1)), draw(st.integers(0, len(rows[0]) - 1))
                rows[r][c] = draw(MSGPACK_VALUES)
                frames[i] = (kind, msgpack.packb(rows, use_bin_type=True))
    return frames


@pytest.fixture
def genuine_frames(genuine):
    return genuine


def test_fuzzed_payloads_are_refused_in_one_sentence_or_restored_exactly(genuine_frames, media_root, tmp_path):
    from dbs_admin import restore_backup
    from dbs_admin.backups.selection import backed_up_models

    from .conftest import on

    frames, manifest = genuine_frames
    counter = iter(range(10**6))

    @settings(max_examples=int(os.environ.get("DBS_FUZZ_EXAMPLES", "60")), deadline=None,
              derandomize=not os.environ.get("DBS_FUZZ_RANDOM"),  # CI: the same examples every run
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.data_too_large])
    @given(st.data())
    def one(data):
        crafted = data.draw(mutated(frames))
        path = sealed(crafted, manifest, tmp_path / f"fuzz-{next(counter)}.dbs")
        before_rows, before_media = table_contents("sq_b"), tree(media_root)
        try:
            result = restore_backup(path, passphrase=PASSPHRASE, database="sq_b")
        except (DbsError, SealedError) as exc:
            message = str(exc)
            assert message and "Traceback" not in message
            assert table_contents("sq_b") == before_rows and tree(media_root) == before_media
        else:  # accepted: the database holds exactly the rows the restore reports, model by model
            with on("sq_b"):
                for model in backed_up_models():
                    label = model._meta.label
                    if label in result.rows:
                        assert model._base_manager.using("sq_b").count() == result.rows[label], label
        finally:
            path.unlink(missing_ok=True)

    one()


def test_on_a_file_system_that_ignores_case_two_names_differing_in_case_collide(tmp_path):
    """This machine's file systems honour case (and have no vfat); the folding itself is checked directly."""
    from dbs_admin.backups.errors import UnsafePathError
    from dbs_admin.backups.files import RestoreNames, _case_insensitive

    root = tmp_path / "Media"
    root.mkdir()
    assert _case_insensitive(root) is False
    honours, ignores = RestoreNames(), RestoreNames()
    ignores._roots[root] = (True, {}, {})  # what the probe reports on macOS or a Windows share
    for names in (honours, ignores):
        names.claim(root, "uploads/Photo.jpg")
    assert honours.claim(root, "uploads/photo.jpg") == root / "uploads" / "photo.jpg"
    with pytest.raises(UnsafePathError, match="twice"):
        ignores.claim(root, "UPLOADS/photo.JPG")
