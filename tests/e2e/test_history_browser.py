"""History in a real browser: three edits (text, tags, image) -> History -> compare -> restore."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import transaction

from blog.models import Category, Post, Tag
from dbs_admin.history.snapshot import object_history
from tests.history.conftest import png, put_image

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def eager_history(tmp_path, settings, media_root):
    from demo_site.celery import app

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HISTORY_ROOT": str(tmp_path / "history")}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    yield media_root
    app.conf.task_always_eager, app.conf.task_eager_propagates = False, False


def save(page) -> None:
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist .success")


def test_edit_three_times_compare_and_restore(page, live_server, django_user_model, eager_history):
    media = eager_history
    a, b = put_image(media, "a.png", png(1)), put_image(media, "b.png", png(2))
    django_user_model.objects.create_superuser("boss", "boss@example.com", "a long demo password")
    original = f"Original words of the post.\n\n{a}"
    with transaction.atomic():  # created with its tag: one first version
        post = Post.objects.create(title="Browser post", slug="browser-post", content_md=original,
                                   category=Category.objects.create(name="Meta", slug="meta"))
        post.tags.add(Tag.objects.create(name="first", slug="first"))
    extra = Tag.objects.create(name="second", slug="second")

    page.goto(f"{live_server.url}/admin/login/?next=/admin/blog/post/{post.pk}/change/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "a long demo password")
    page.click("input[type=submit]")
    page.wait_for_selector("#id_content_md")

    page.fill("#id_content_md", f"Rewritten words of the post.\n\n{a}")  # 1: text
    save(page)
    page.eval_on_selector(  # 2: tags (the autocomplete widget's <select> holds the chosen options)
        "#id_tags", "(el, [id, text]) => { el.add(new Option(text, id, true, true)); }", [str(extra.pk), "second"]
    )
    save(page)
    page.fill("#id_content_md", f"Rewritten words of the post.\n\n{b}")  # 3: one image
    save(page)

    page.click("a.historylink")
    page.wait_for_selector("#dbs-versions")
    assert page.locator("tr.dbs-version").count() == 4  # the first version plus three edits
    whats = page.locator("tr.dbs-version td.what").all_inner_texts()
    assert "image +uploads/b.png" in whats[0] and "tags +second" in whats[1] and "content_md" in whats[2]
    assert len(object_history(Post, "browser-post").versions()) == 4

    page.locator("tr.dbs-version").nth(3).locator("input[name=a]").check()  # A = the first version
    page.locator("tr.dbs-version").nth(0).locator("input[name=b]").check()  # B = the newest
    page.click("#dbs-compare")
    page.wait_for_selector("table.dbs-diff")
    assert page.locator("table.dbs-diff[data-field=content_md] del", has_text="Original").count() == 1
    assert page.locator("table.dbs-diff[data-field=content_md] ins", has_text="Rewritten").count() == 1
    assert page.locator("ul.dbs-tags li.added", has_text="second").count() == 1
    page.wait_for_function("() => [...document.querySelectorAll('img.dbs-thumb')].every(i => i.naturalWidth > 0)")
    assert page.locator(".dbs-images .added img.dbs-thumb").count() == 1
    assert page.locator(".dbs-images .removed img.dbs-thumb").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "history-compare.png"), full_page=True)

    page.click("text=Restore A…")
    page.wait_for_selector("#dbs-plan")
    assert "field content_md" in page.inner_text("#dbs-plan") and "tags -second" in page.inner_text("#dbs-plan")
    assert Post.objects.get(pk=post.pk).content_md.endswith("b.png)")  # the preview changed nothing
    page.click("#dbs-confirm-restore")
    page.wait_for_selector("#dbs-versions")
    assert "Restored" in page.inner_text(".messagelist")
    assert page.locator("tr.dbs-version").count() == 5
    assert "restored from initial" in page.locator("tr.dbs-version td.what").first.inner_text()
    restored = Post.objects.get(pk=post.pk)
    assert restored.content_md == original and [t.name for t in restored.tags.all()] == ["first"]
    page.screenshot(path=str(ARTIFACTS / "history-restored.png"), full_page=True)
