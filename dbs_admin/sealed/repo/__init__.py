"""The sealed repository: incremental, deduplicated, encrypted snapshots whose every object heals.

Pure Python, no Django (like the container it reuses). Modules, each with one job:

    store       where objects live (ObjectStore; DirectoryStore for a folder)
    objects     an object is a sealed container with a repository-derived key
    keyfile     the repository key, kept in a plain sealed ``.dbs`` file (``keys``)
    chunker     content-defined cuts: FastCDC for bytes, record-aligned for rows
    packs       chunks compressed (trained zstd dictionary), encrypted, grouped into packs
    records     index and snapshot objects (encrypted MessagePack)
    chunkindex  the in-memory chunk index, compact (sorted numpy columns)
    repository  Repository / SnapshotWriter: backup, list, read
    check       keyless and keyed validation, healing in place

The byte layout is specified in docs/FORMAT.md (part 2, the repository).
"""

from __future__ import annotations

from dbs_admin.sealed.repo.check import RepositoryCheck, check_repository, heal_repository
from dbs_admin.sealed.repo.repository import Repository, SnapshotInfo, SnapshotWriter, keyless_listing
from dbs_admin.sealed.repo.store import DirectoryStore, ObjectStore

__all__ = ["Repository", "SnapshotInfo", "SnapshotWriter", "DirectoryStore", "ObjectStore",
           "RepositoryCheck", "check_repository", "heal_repository", "keyless_listing"]
