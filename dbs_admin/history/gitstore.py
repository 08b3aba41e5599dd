"""Optional: the history tree as a git repository, each version a commit, pushed to ``HISTORY_GIT_REMOTE``.

Off unless ``DBS_ADMIN["HISTORY_GIT_REMOTE"]`` names a remote (a URL or a
path git understands). Then the history root is made a repository on first
use, every stored version, deletion (``deleted.json``) and recovery is
committed with a message saying what and who, and the branch is pushed. The
git CLI does the work (no home-made git); one ``fcntl`` lock on the root
serialises commits from several workers. A failed push never fails the
snapshot: the commit stays local and goes out with the next successful push.
"""

from __future__ import annotations

import fcntl
import logging
import subprocess
from pathlib import Path

from dbs_admin.conf import dbs_settings
from dbs_admin.history.errors import HistoryError
from dbs_admin.history.store import META, ObjectHistory

logger = logging.getLogger("dbs_admin.history")
BRANCH = "main"
IGNORE = ".lock\n.tmp-*\n.deleted-*\n.git-lock\n"
_IDENTITY = ["-c", "user.name=dbs_admin history", "-c", "user.email=dbs-admin@localhost", "-c", "commit.gpgsign=false"]


class GitStoreError(HistoryError):
    """git failed on the history tree; the message carries git's own output."""


def _git(root: Path, *args: str) -> str:
    result = subprocess.run(["git", *_IDENTITY, *args], cwd=root, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise GitStoreError(f"git {' '.join(args)} failed in {root}: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def ensure_repository(root: Path, remote: str) -> None:
    if not (root / ".git").is_dir():
        _git(root, "init", "-q", "-b", BRANCH)
        (root / ".gitignore").write_text(IGNORE)
    remotes = _git(root, "remote").split()
    if "origin" not in remotes:
        _git(root, "remote", "add", "origin", remote)
    elif _git(root, "remote", "get-url", "origin").strip() != remote:
        _git(root, "remote", "set-url", "origin", remote)


def commit_version(history: ObjectHistory, version_id: str) -> str | None:
    """Commit the object's folder after a new version; push when a remote is configured. Returns the commit id."""
    if not dbs_settings.HISTORY_GIT_REMOTE:
        return None
    meta = history.read(version_id).get(META, {})
    return _commit(history, version_id, meta.get("username") or "")


def commit_change(history: ObjectHistory, what: str, username: str = "") -> str | None:
    """Commit a change of the object's state without a new version: ``deleted`` (deleted.json written) or
    ``recovered`` (removed), so the remote knows a post is gone, or back, as soon as the site does."""
    if not dbs_settings.HISTORY_GIT_REMOTE:
        return None
    return _commit(history, what, username)


def _commit(history: ObjectHistory, what: str, username: str) -> str | None:
    remote = dbs_settings.HISTORY_GIT_REMOTE
    root = history.root
    try:
        with open(root / ".git-lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            ensure_repository(root, str(remote))
            _git(root, "add", "-A", "--", ".gitignore", history.dir.relative_to(root).as_posix())
            message = f"{history.label}/{history.dir.name}: {what}"
            if username:
                message += f" by {username}"
            _git(root, "commit", "-q", "--allow-empty", "-m", message)
            commit = _git(root, "rev-parse", "HEAD").strip()
            try:
                _git(root, "push", "-q", "origin", f"HEAD:{BRANCH}")
            except GitStoreError:
                logger.warning("history: push of %s to %s failed; it goes with the next push", commit, remote,
                               exc_info=True)
            return commit
    except (GitStoreError, OSError, subprocess.SubprocessError):
        logger.exception("history: git commit of %s %s failed (the tree itself is written)", history.key, what)
        return None
