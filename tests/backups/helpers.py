"""Building a site worth backing up in any alias, and reading everything back to compare."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from django.apps import apps
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.contrib.auth.management import create_permissions
from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType

from blog.models import Post
from blog.seeding import seed
from dbs_admin.backups.selection import backed_up_models, columns

from .conftest import on


def build_site(alias: str, *, posts: int = 40, images: int = 4) -> None:
    """The demo blog plus users, a group with permissions and admin log entries, in ``alias``.

    The blog's content types and permissions are re-created first, so their
    ids differ from those of a freshly migrated database: a restore that
    copied ids instead of re-linking by natural key would point at the wrong rows.
    """
    with on(alias):
        ContentType.objects.clear_cache()
        ContentType.objects.filter(app_label="blog").delete()
        ContentType.objects.clear_cache()
        create_permissions(apps.get_app_config("blog"), verbosity=0, using=alias)
        seed(posts=posts, images=images, seed=11)
        editors = Group.objects.create(name="editors")
        editors.permissions.set(Permission.objects.filter(content_type__app_label="blog"))
        alice = User.objects.create_user("alice", "alice@example.com", "pw", first_name="Älice")
        alice.groups.add(editors)
        alice.user_permissions.add(Permission.objects.get(codename="view_logentry"))
        ct = ContentType.objects.get_for_model(Post)
        for post in Post.objects.order_by("pk")[:5]:
            LogEntry.objects.create(user=alice, content_type=ct, object_id=str(post.pk), object_repr=post.title[:200],
                                    action_flag=ADDITION, change_message="[]")
        LogEntry.objects.create(user=alice, content_type=ContentType.objects.get_for_model(Group),
                                object_id=str(editors.pk), object_repr="editors", action_flag=CHANGE,
                                change_message="edited ✓")
        ContentType.objects.clear_cache()


def _natural(model, value):
    if value is None:
        return None
    if model is ContentType:
        ct = ContentType.objects.get(pk=value)
        return ("ct", ct.app_label, ct.model)
    perm = Permission.objects.select_related("content_type").get(pk=value)
    return ("perm", perm.codename, perm.content_type.app_label)


def table_contents(alias: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every backed-up model, with content type and permission keys as natural keys."""
    out = {}
    with on(alias):
        ContentType.objects.clear_cache()
        for model in backed_up_models():
            cols = columns(model)
            names = [f.attname for f in cols]
            refs = [i for i, f in enumerate(cols) if f.is_relation and f.related_model in (ContentType, Permission)]
            rows = []
            for row in model._base_manager.using(alias).order_by("pk").values_list(*names):
                row = list(row)
                for i in refs:
                    row[i] = _natural(cols[i].related_model, row[i])
                rows.append(tuple(row))
            out[model._meta.label] = rows
    return out


def fingerprint(alias: str) -> str:
    """One hash of :func:`table_contents`: every field of every row of every carried model (M2M tables too),
    in a form that does not depend on the engine (aware datetimes, Decimals, natural keys for references)."""
    digest = hashlib.sha256()
    for label, rows in sorted(table_contents(alias).items()):
        digest.update(repr((label, rows)).encode())
    return digest.hexdigest()


def media_contents(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def wipe(root: Path) -> None:
    for p in sorted(root.rglob("*"), reverse=True):
        p.unlink() if p.is_file() or p.is_symlink() else p.rmdir()


def payload_of(path: Path, identity) -> bytes:
    """The decrypted inner stream of a sealed backup."""
    from dbs_admin.sealed import open_sealed

    with open_sealed(path, identity=identity) as reader:
        return reader.read()


def frames_of(data: bytes) -> list[tuple[bytes, bytes]]:
    import io

    from dbs_admin.backups.payload import read_frames

    return list(read_frames(io.BytesIO(data)))


def reseal(
    frames: list[tuple[bytes, bytes]], manifest: dict, dest: Path, identity, *, raw: bytes | None = None
) -> Path:
    """Seal hand-made contents (a crafted or damaged backup) the way a real one is sealed."""
    from dbs_admin.backups.payload import MAGIC, frame
    from dbs_admin.sealed import seal

    data = raw if raw is not None else MAGIC + b"".join(frame(k, b) for k, b in frames)
    seal(data, dest, recipients=[identity.recipient], manifest=manifest)
    return dest
