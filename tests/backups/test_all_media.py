"""All media: a logical backup holds every file of the media storage, so an image named only in a post's HTML
(not held by any file field) comes back with a full restore; ``MEDIA_FILES = "fields"`` limits it to fields."""

from __future__ import annotations

import pytest

from blog.models import Post
from dbs_admin import create_backup, restore_backup
from dbs_admin.backups.errors import BackupError

from .conftest import on
from .helpers import media_contents, wipe

pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]

INLINE = b"\x89PNG\r\n\x1a\n an image uploaded through the editor, named only in the HTML"


def _post_with_an_html_only_image(media_root) -> None:
    (media_root / "editor").mkdir()
    (media_root / "editor" / "inline.png").write_bytes(INLINE)
    with on("sq_a"):
        Post.objects.create(title="Inline", slug="inline", content_md="![x](/media/editor/inline.png)",
                            content_html='<p><img src="/media/editor/inline.png"></p>')


def test_an_image_only_the_html_names_survives_a_full_restore(media_root, identity):
    _post_with_an_html_only_image(media_root)
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    assert ["media", "editor/inline.png"] in [f[:2] for f in result.manifest["file_sha256"]]
    assert result.manifest["files"] == len(result.manifest["file_sha256"]) >= 1

    wipe(media_root)
    restored = restore_backup(result.name, target="local", identity=identity, database="sq_b")
    assert (media_root / "editor" / "inline.png").read_bytes() == INLINE
    assert restored.files == result.manifest["files"]
    with on("sq_b"):
        assert Post.objects.get(slug="inline").content_html.count("/media/editor/inline.png") == 1


def test_fields_only_leaves_such_files_out_and_an_unknown_choice_is_refused(media_root, identity, settings):
    _post_with_an_html_only_image(media_root)
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "MEDIA_FILES": "fields"}
    result = create_backup(database="sq_a", recipients=[identity.recipient])
    assert result.manifest["file_sha256"] == [] and result.manifest["files"] == 0
    wipe(media_root)
    restore_backup(result.name, target="local", identity=identity, database="sq_b")
    assert media_contents(media_root) == {}

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "MEDIA_FILES": "everything"}
    with pytest.raises(BackupError, match=r"MEDIA_FILES'\] is 'everything'; use \"all\" or \"fields\""):
        create_backup(database="sq_a", recipients=[identity.recipient])
