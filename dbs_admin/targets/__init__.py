"""Where sealed files live: a local folder, an SFTP server, or any Django storage (S3 and friends).

Every target offers the same small surface (:class:`Target`), so creating,
listing, downloading, pruning and drilling never care where the bytes are.
Nothing here holds a secret: SFTP targets name key and known_hosts files.

A local target also offers ``adopt(path, name, sha256)``: a file the caller
has just written and verified is hard-linked in rather than copied (the
default path of every backup). Callers look for it with ``getattr`` and fall
back to ``put`` plus ``verify``. A target whose ``put`` verifies the stored
copy itself says so with ``verifies_on_put = True``; one that can leave
remote leftovers of an interrupted upload offers ``discard(name)`` and
``sweep(older_than)`` (the storage target).
"""

from __future__ import annotations

from collections.abc import Iterator

from dbs_admin.targets.base import StoredFile, Target

__all__ = ["StoredFile", "Target", "get_target", "iter_targets"]


def get_target(name: str | None = None) -> Target:
    """The target called ``name`` in ``DBS_ADMIN["TARGETS"]`` (default: ``DEFAULT_TARGET``)."""
    from dbs_admin.targets.configured import get_target as _impl  # lazily: the registry imports every kind

    return _impl(name)


def iter_targets() -> Iterator[Target]:
    from dbs_admin.targets.configured import iter_targets as _impl

    return _impl()
