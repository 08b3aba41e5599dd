"""The history tree committed to git and pushed to a remote (a local bare repository)."""

from __future__ import annotations

import subprocess

import pytest

from blog.models import Post

pytestmark = pytest.mark.django_db


def git(*args, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def test_each_version_is_committed_and_pushed(eager, make_post, settings, tmp_path,
                                              django_capture_on_commit_callbacks):
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote))
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HISTORY_GIT_REMOTE": str(remote)}
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(tags=("git",))
    with django_capture_on_commit_callbacks(execute=True):
        post.title = "Second title"
        post.save()
    log = git("--git-dir", str(remote), "log", "--format=%s", "main").splitlines()
    assert len(log) == 2 and log[1] == "blog.post/hello-world: initial" and "update_" in log[0]
    files = git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main").split()
    assert "blog.post/hello-world/post.json" in files and "blog.post/hello-world/post.md" in files
    assert not [f for f in files if f.endswith(".lock")]
    clone = tmp_path / "clone"
    git("clone", "-q", str(remote), str(clone))
    assert Post.objects.get().title == "Second title"
    assert '"title": "Second title"' in next((clone / "blog.post/hello-world/updates").glob("*/post.json")).read_text()


def test_an_unreachable_remote_never_fails_the_snapshot(eager, make_post, settings, tmp_path,
                                                         django_capture_on_commit_callbacks):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HISTORY_GIT_REMOTE": str(tmp_path / "missing.git")}
    with django_capture_on_commit_callbacks(execute=True):
        make_post()
    root = tmp_path / "history"
    assert (root / "blog.post/hello-world/post.json").is_file()
    assert git("log", "--format=%s", cwd=root).strip() == "blog.post/hello-world: initial"  # committed locally


def test_a_deletion_and_a_recovery_are_committed_and_pushed(eager, make_post, settings, tmp_path,
                                                            django_capture_on_commit_callbacks):
    """deleted.json reaches the remote with the deletion, and its removal with the recovery, even when the
    state itself is no new version."""
    from dbs_admin.history.revert import restore

    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", "-b", "main", str(remote))
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HISTORY_GIT_REMOTE": str(remote)}
    with django_capture_on_commit_callbacks(execute=True):
        post = make_post(tags=("git",))
    with django_capture_on_commit_callbacks(execute=True):
        Post.objects.get(pk=post.pk).delete()

    def remote_files() -> list[str]:
        return git("--git-dir", str(remote), "ls-tree", "-r", "--name-only", "main").split()

    log = git("--git-dir", str(remote), "log", "--format=%s", "main").splitlines()
    assert log[0] == "blog.post/hello-world: deleted" and "blog.post/hello-world/deleted.json" in remote_files()
    with django_capture_on_commit_callbacks(execute=True):
        restore(Post, "hello-world")
    log = git("--git-dir", str(remote), "log", "--format=%s", "main").splitlines()
    assert log[0] == "blog.post/hello-world: recovered" and "blog.post/hello-world/deleted.json" not in remote_files()
