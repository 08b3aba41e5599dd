"""The history tree on disk: one folder per object, one version per save that changed something.

::

    <root>/<app_label>.<model>/<key>/
        post.json  post.md  images/            the first version ("initial")
        updates/update_<UTC %Y-%m-%d_%H-%M-%S_%f>/
            post.json  post.md  images/        later versions: only images not stored before
        deleted.json                           present while the object is deleted

Why it is shaped like this:

* Every ``post.json`` lists *all* images of its version with their sha256 and
  the folder-relative path of the bytes (``stored``), so one file describes a
  version completely; image bytes are stored once per object and content hash,
  under ``<sha256[:16]>-<name>`` so a different image under an old name can
  never overwrite the old bytes.
* A version exists once its ``post.json`` exists: updates are built in a
  temporary folder and renamed into place; the first version's files are
  renamed into the object folder with ``post.json`` last. A crash leaves
  temporary folders that the next write removes, never a half version.
* Writers take an exclusive ``fcntl`` lock on ``<key>/.lock``, so two workers
  (processes) on the same host never interleave; version names carry
  microseconds and are bumped past the newest existing one, so two saves in
  the same second, or the same microsecond, get two versions. Versions are
  put in commit order; one that reaches the worker late is inserted at its
  place (see ``snapshot.take_snapshot``).
* Without a working lock (hosts sharing a tree on a file system whose
  ``flock`` does not reach across them) two writers still never overwrite
  each other: the first version is published with ``link(2)``, which fails
  when the name exists, and an update with a folder rename, which fails onto
  a folder that has files; the loser gets :class:`VersionTaken` and places
  its version again.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from dbs_admin.history.collect import HASH_CHUNK, ImageFile
from dbs_admin.history.errors import CorruptVersionError, HistoryError, UnsafePathError, VersionNotFoundError
from dbs_admin.sealed.atomic import fsync_directory

FORMAT = 1
INITIAL = "initial"
UPDATE_PREFIX = "update_"
TIME_FORMAT = "%Y-%m-%d_%H-%M-%S_%f"
META = "_history"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")


class VersionTaken(HistoryError):
    """Another process published a version under the name this one was about to use; place it again."""


def folder_name(key: str) -> str:
    """A single, safe path segment for an object's key (slugs stay as they are)."""
    key = str(key)
    if _SAFE_KEY.match(key) and ".." not in key:
        return key
    encoded = quote(key, safe="")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def version_time(version_id: str) -> dt.datetime | None:
    """The UTC time encoded in an update's name (None for the initial version)."""
    if not version_id.startswith(UPDATE_PREFIX):
        return None
    return dt.datetime.strptime(version_id[len(UPDATE_PREFIX):], TIME_FORMAT).replace(tzinfo=dt.UTC)


def saved_at(document: dict[str, Any]) -> dt.datetime | None:
    """When the state of a version was committed (recorded by the web process), if known."""
    meta = document.get(META) or {}
    for key in ("saved_at", "written_at"):
        if meta.get(key):
            try:
                when = dt.datetime.fromisoformat(meta[key])
            except ValueError:
                continue
            return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return None


def update_id(when: dt.datetime) -> str:
    return UPDATE_PREFIX + when.astimezone(dt.UTC).strftime(TIME_FORMAT)


@dataclass(frozen=True)
class ImageEntry:
    """One image of a version as recorded in its json."""

    name: str
    sha256: str | None
    size: int
    stored: str | None
    source: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size, "stored": self.stored,
                "source": self.source}


def _write_file(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _copy_hashing(src: Path, dst: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(HASH_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
            size += len(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest(), size


def stored_image_name(sha256: str, name: str) -> str:
    return f"{sha256[:16]}-{Path(name).name}"


class ObjectHistory:
    """The versions of one object under ``<root>/<label>/<key>/``."""

    def __init__(self, root: Path | str, label: str, key: str, basename: str) -> None:
        self.root = Path(root)
        self.label = label
        self.key = str(key)
        self.basename = basename
        self.dir = self.root / label / folder_name(self.key)

    @classmethod
    def from_folder(cls, root: Path | str, label: str, folder: str, basename: str) -> ObjectHistory:
        """The history in an existing folder (whose name may be an encoded key)."""
        history = cls(root, label, folder, basename)
        history.dir = Path(root) / label / folder
        return history

    # -- reading -------------------------------------------------------------------------------
    @property
    def json_name(self) -> str:
        return f"{self.basename}.json"

    def exists(self) -> bool:
        return (self.dir / self.json_name).is_file()

    def versions(self) -> list[str]:
        """Version ids, oldest first; only complete versions (their json exists)."""
        if not self.exists():
            return []
        ids = [INITIAL]
        updates = self.dir / "updates"
        if updates.is_dir():
            ids += sorted(
                p.name for p in updates.iterdir()
                if p.name.startswith(UPDATE_PREFIX) and (p / self.json_name).is_file()
            )
        return ids

    def version_dir(self, version_id: str) -> Path:
        if version_id == INITIAL:
            return self.dir
        if not version_id.startswith(UPDATE_PREFIX) or "/" in version_id or ".." in version_id:
            raise VersionNotFoundError(f"{version_id!r} is not a version name; use 'initial' or 'update_<time>'.")
        return self.dir / "updates" / version_id

    def relative_path(self, version_id: str) -> str:
        return self.version_dir(version_id).relative_to(self.root).as_posix()

    def read(self, version_id: str) -> dict[str, Any]:
        path = self.version_dir(version_id) / self.json_name
        if not path.is_file():
            raise VersionNotFoundError(
                f"No version {version_id!r} of {self.label} {self.key!r}; `dbs_history list` shows the versions."
            )
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CorruptVersionError(f"{path} is not readable JSON ({exc}); restore it from a backup.") from exc

    def newest(self) -> tuple[str, dict[str, Any]] | None:
        ids = self.versions()
        return (ids[-1], self.read(ids[-1])) if ids else None

    def image_path(self, stored: str) -> Path:
        """The file holding stored image bytes, refusing anything outside this object's folder."""
        path = (self.dir / stored).resolve()
        if not path.is_relative_to(self.dir.resolve()):
            raise UnsafePathError(f"Stored image path {stored!r} points outside {self.dir}; the tree was tampered with")
        return path

    def read_image(self, entry: dict[str, Any]) -> bytes:
        """The bytes of an image entry, checked against its recorded sha256."""
        if not entry.get("stored"):
            raise CorruptVersionError(f"Image {entry.get('name')!r} was missing when the version was taken.")
        data = self.image_path(entry["stored"]).read_bytes()
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise CorruptVersionError(
                f"Stored bytes of {entry['name']!r} ({entry['stored']}) do not match their sha256; "
                "the history tree is damaged — restore it from a backup."
            )
        return data

    def stored_images(self) -> dict[str, list[str]]:
        """``sha256[:16] -> [stored paths]`` of every image file kept for this object, from the folder names."""
        found: dict[str, list[str]] = {}
        dirs = [self.dir / "images"]
        updates = self.dir / "updates"
        if updates.is_dir():
            dirs += [p / "images" for p in sorted(updates.iterdir()) if p.name.startswith(UPDATE_PREFIX)]
        for folder in dirs:
            if folder.is_dir():
                for item in folder.iterdir():
                    prefix = item.name.split("-", 1)[0]
                    found.setdefault(prefix, []).append(item.relative_to(self.dir).as_posix())
        return found

    def deleted_info(self) -> dict[str, Any] | None:
        path = self.dir / "deleted.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    # -- writing -------------------------------------------------------------------------------
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive per-object lock across processes (``fcntl.flock`` on ``<key>/.lock``)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / ".lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _clean_leftovers(self) -> None:
        """Remove what crashed writers left, once it is older than any write takes (LEFTOVER_AGE): a younger
        temporary folder may be another process's write in progress (several hosts, no shared lock)."""
        self._complete_initial()
        for item in self.dir.glob(".tmp-*"):
            if _older_than(item, LEFTOVER_AGE):
                shutil.rmtree(item, ignore_errors=True)
        if not self.exists():  # a crash before the first json landed: drop its partial files
            for name in ("images", f"{self.basename}.md"):
                target = self.dir / name
                if not _older_than(target, LEFTOVER_AGE):
                    continue
                if target.is_dir():
                    shutil.rmtree(target, ignore_errors=True)
                elif target.exists():
                    target.unlink(missing_ok=True)

    def next_version_id(self, now: dt.datetime) -> str:
        """``initial`` for the first version, else an update name later than every existing one."""
        ids = self.versions()
        if not ids:
            return INITIAL
        candidate = now.astimezone(dt.UTC)
        newest = version_time(ids[-1])
        if newest is not None and candidate <= newest:
            candidate = newest + dt.timedelta(microseconds=1)
        while self.version_dir(update_id(candidate)).exists():
            candidate += dt.timedelta(microseconds=1)
        return update_id(candidate)

    def write_version(
        self,
        fields: dict[str, Any],
        images: Iterable[ImageFile],
        meta: dict[str, Any],
        markdown_text: str,
        *,
        now: dt.datetime,
        version_id: str | None = None,
    ) -> tuple[str, list[ImageEntry]]:
        """Write one version; the caller holds :meth:`lock`. Returns its id and its image entries."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._clean_leftovers()
        version_id = version_id or self.next_version_id(now)
        final_dir = self.version_dir(version_id)
        if (final_dir / self.json_name).exists():
            raise VersionTaken(f"version {version_id} of {self.dir} already exists")
        tmp = self.dir / f".tmp-{uuid.uuid4().hex}"
        (tmp / "images").mkdir(parents=True)
        prefix = "" if version_id == INITIAL else f"updates/{version_id}/"
        known = self.stored_images()
        entries: list[ImageEntry] = []
        copied: dict[str, str] = {}
        for image in images:
            entries.append(self._store_image(image, tmp, prefix, known, copied))
        document = {**fields, "images": [e.as_json() for e in entries],
                    META: {**meta, "format": FORMAT, "version": version_id}}
        _write_file(tmp / self.json_name, json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        _write_file(tmp / f"{self.basename}.md", markdown_text)
        if not any((tmp / "images").iterdir()):
            (tmp / "images").rmdir()
        if version_id == INITIAL:
            self._publish_initial(tmp)
        else:
            final_dir.parent.mkdir(exist_ok=True)
            try:
                os.rename(tmp, final_dir)  # fails onto an existing folder with files: never overwrites
            except OSError as exc:
                shutil.rmtree(tmp, ignore_errors=True)
                if (final_dir / self.json_name).exists():
                    raise VersionTaken(f"{final_dir} was written by another process") from None
                raise exc
            fsync_directory(final_dir.parent, best_effort=False)
        fsync_directory(self.dir, best_effort=False)
        return version_id, entries

    def _publish_initial(self, tmp: Path) -> None:
        """Move a first version in: images (content-addressed names), then the json by ``link(2)``, which
        fails if another process published a first version meanwhile; then its markdown.

        A crash after the link leaves the markdown in ``tmp``; :meth:`_complete_initial` moves it in (the
        two jsons are one file, hard-linked, so it is the right one).
        """
        if (tmp / "images").is_dir():
            (self.dir / "images").mkdir(exist_ok=True)
            for item in (tmp / "images").iterdir():
                os.replace(item, self.dir / "images" / item.name)
        try:
            os.link(tmp / self.json_name, self.dir / self.json_name)
        except FileExistsError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise VersionTaken(f"{self.dir} got its first version from another process") from None
        os.replace(tmp / f"{self.basename}.md", self.dir / f"{self.basename}.md")
        shutil.rmtree(tmp, ignore_errors=True)

    def _complete_initial(self) -> None:
        """The markdown of a first version whose writer died between publishing its json and its markdown."""
        published = self.dir / self.json_name
        if not published.exists() or (self.dir / f"{self.basename}.md").exists():
            return
        for tmp in self.dir.glob(".tmp-*"):
            try:
                if os.path.samefile(tmp / self.json_name, published) and (tmp / f"{self.basename}.md").exists():
                    os.replace(tmp / f"{self.basename}.md", self.dir / f"{self.basename}.md")
                    return
            except OSError:
                continue

    def _store_image(
        self, image: ImageFile, tmp: Path, prefix: str, known: dict[str, list[str]], copied: dict[str, str]
    ) -> ImageEntry:
        if image.sha256 is None:
            return ImageEntry(image.name, None, 0, None, image.source)
        for stored in known.get(image.sha256[:16], []):
            if _sha256_path(self.dir / stored) == image.sha256:
                return ImageEntry(image.name, image.sha256, image.size, stored, image.source)
        if image.sha256 in copied:
            return ImageEntry(image.name, image.sha256, image.size, copied[image.sha256], image.source)
        target = tmp / "images" / stored_image_name(image.sha256, image.name)
        try:
            sha, size = _copy_hashing(image.path, target)
        except FileNotFoundError:
            return ImageEntry(image.name, None, 0, None, image.source)
        if sha != image.sha256:  # the file changed since it was hashed: record what was actually copied
            target = target.rename(target.with_name(stored_image_name(sha, image.name)))
        stored = f"{prefix}images/{target.name}"
        copied[sha] = stored
        return ImageEntry(image.name, sha, size, stored, image.source)

    def rewrite_json(self, version_id: str, document: dict[str, Any]) -> None:
        """Atomically replace a version's json (used to refresh a summary after an insertion)."""
        path = self.version_dir(version_id) / self.json_name
        tmp = path.with_name(f".{self.json_name}.{uuid.uuid4().hex}")
        _write_file(tmp, json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        os.replace(tmp, path)

    def rewrite_markdown(self, version_id: str, text: str) -> None:
        path = self.version_dir(version_id) / f"{self.basename}.md"
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        _write_file(tmp, text)
        os.replace(tmp, path)

    def copy_as_update(self, document: dict[str, Any], markdown_text: str, version_id: str) -> None:
        """Write an existing version's document under a new update name; its image bytes stay where they are."""
        final_dir = self.version_dir(version_id)
        tmp = self.dir / f".tmp-{uuid.uuid4().hex}"
        tmp.mkdir()
        document = {**document, META: {**document.get(META, {}), "version": version_id}}
        _write_file(tmp / self.json_name, json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        _write_file(tmp / f"{self.basename}.md", markdown_text)
        final_dir.parent.mkdir(exist_ok=True)
        os.rename(tmp, final_dir)
        fsync_directory(final_dir.parent, best_effort=False)

    def replace_initial(
        self, fields: dict[str, Any], images: Iterable[ImageFile], meta: dict[str, Any], markdown_text: str
    ) -> list[ImageEntry]:
        """Put another state in the first version's place (a creation that reached the worker late).

        The old first version must have been copied to an update first; image
        files already under ``images/`` stay (other versions point at them),
        new ones are added beside them, and the json is replaced last.
        """
        tmp = self.dir / f".tmp-{uuid.uuid4().hex}"
        (tmp / "images").mkdir(parents=True)
        known, copied = self.stored_images(), {}
        entries = [self._store_image(image, tmp, "", known, copied) for image in images]
        document = {**fields, "images": [e.as_json() for e in entries],
                    META: {**meta, "format": FORMAT, "version": INITIAL}}
        _write_file(tmp / self.json_name, json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        _write_file(tmp / f"{self.basename}.md", markdown_text)
        (self.dir / "images").mkdir(exist_ok=True)
        for item in (tmp / "images").iterdir():
            os.replace(item, self.dir / "images" / item.name)
        os.replace(tmp / f"{self.basename}.md", self.dir / f"{self.basename}.md")
        os.replace(tmp / self.json_name, self.dir / self.json_name)
        shutil.rmtree(tmp, ignore_errors=True)
        fsync_directory(self.dir, best_effort=False)
        return entries

    def mark_deleted(self, info: dict[str, Any]) -> None:
        tmp = self.dir / f".deleted-{uuid.uuid4().hex}.json"
        _write_file(tmp, json.dumps(info, ensure_ascii=False, indent=2) + "\n")
        os.replace(tmp, self.dir / "deleted.json")

    def clear_deleted(self) -> None:
        (self.dir / "deleted.json").unlink(missing_ok=True)


LEFTOVER_AGE = 600.0  # seconds: far longer than writing one version takes


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except OSError:
        return False


def _sha256_path(path: Path) -> str | None:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None


def iter_objects(root: Path | str) -> Iterator[tuple[str, str, Path]]:
    """``(model label, folder name, folder)`` of every object folder in the tree."""
    root = Path(root)
    if not root.is_dir():
        return
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir() and "." in p.name and not p.name.startswith(".")):
        for obj_dir in sorted(p for p in label_dir.iterdir() if p.is_dir()):
            yield label_dir.name, obj_dir.name, obj_dir
