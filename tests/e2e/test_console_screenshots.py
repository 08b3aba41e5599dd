"""Every console page at 1280×800, in the admin's light and dark theme: screenshots, and every column seen.

The screenshots go to ``test-artifacts/`` (git-ignored) for a person to look at. The test itself fails when a
column, label or button a page must show sits outside the 1280 px window (a list that side-scrolls hides its
Download · Restore… links), when a page scrolls sideways, or when the size chart's labels have the
background's colour (the dark theme).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from blog.models import Post
from blog.seeding import seed
from dbs_admin import create_backup
from dbs_admin.console import audit
from dbs_admin.models import AuditEvent, Backup, DrillCheck, DrillReport, HistoryVersion, Job

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True), pytest.mark.timeout(300)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "a long demo password"
WIDTH, HEIGHT = 1280, 800


@pytest.fixture
def console_data(tmp_path, settings, media_root, django_user_model):
    """Two real backups and a repository snapshot (the newest, first in the list), a running job, a drill, audit
    events, and a post with three versions."""
    from demo_site.celery import app

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "HISTORY_ROOT": str(tmp_path / "history"), "TARGETS": {
        **settings.DBS_ADMIN["TARGETS"],
        "repository": {"kind": "local", "path": str(tmp_path / "repository"), "format": "repository"}}}
    app.conf.task_always_eager, app.conf.task_eager_propagates = True, True
    boss = django_user_model.objects.create_superuser("boss", "boss@example.com", PASSWORD)
    seed(posts=12, images=2, seed=7)
    first = create_backup(target="local", passphrase="screenshot passphrase", label="before edits")
    Backup.objects.filter(name=first.name).update(created_at=timezone.now() - timedelta(days=1))
    backup = Backup.objects.get(name=create_backup(target="local", passphrase="screenshot passphrase",
                                                   label="nightly with a long label").name)
    create_backup(target=["repository", "local"], passphrase="screenshot passphrase", label="teed")
    Post.objects.filter(pk=Post.objects.order_by("pk").last().pk).update(title="edited for the snapshot")
    snapshot = Backup.objects.get(name=create_backup(target="repository", passphrase="screenshot passphrase",
                                                     label="snapshot").name)
    post = Post.objects.order_by("pk").first()
    for n in (1, 2):
        with transaction.atomic():
            post.content_md = f"{post.content_md}\n\nEdit number {n}."
            post.save()
    now = timezone.now()
    running = Job.objects.create(
        kind=Job.Kind.BACKUP, state=Job.State.RUNNING, created_by=boss, started_at=now - timedelta(seconds=40),
        heartbeat_at=now, stage="uploading to local", progress=0.8, bytes_done=12_000_000, bytes_total=40_000_000,
        params={"target": "local", "kind": "logical", "label": "screens"},
    )
    Job.objects.create(  # a finished job with a long message and its backup: the widest row of the Jobs list
        kind=Job.Kind.BACKUP, state=Job.State.SUCCEEDED, created_by=boss, started_at=now - timedelta(minutes=5),
        finished_at=now - timedelta(minutes=4), stage="done", progress=1.0, backup=backup,
        message=f"{backup.name} ({backup.size} bytes) on local. The copy on 'offsite' FAILED: connection refused.",
    )
    report = DrillReport.objects.create(backup=backup, backup_name=backup.name, passed=True, engine="sqlite",
                                        restore_seconds=2.5, total_seconds=4.0, backup_age_seconds=60,
                                        finished_at=now, job=running)
    DrillCheck.objects.create(report=report, name="row counts", passed=True, detail="all match")
    audit.record(None, "download", backup=backup, user=boss, detail="from target local")
    audit.record(None, "history-restore", user=boss, object_repr=f"blog.post {post.slug} to version initial",
                 detail="0 image file(s) written")
    yield {"backup": backup, "post": post, "running": running, "snapshot": snapshot}
    app.conf.task_always_eager, app.conf.task_eager_propagates = False, False


def _log_in(page, base: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_selector("#content-main")


def _inside(page, selector: str, *, name: str) -> None:
    """Every element matching ``selector`` is rendered and lies within the window's width."""
    boxes = page.locator(selector)
    assert boxes.count() > 0, f"{name}: nothing matches {selector}"
    for i in range(boxes.count()):
        box = boxes.nth(i).bounding_box()
        assert box is not None and box["width"] > 0, f"{name}: {selector} #{i} is not rendered"
        assert box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, (
            f"{name}: {selector} #{i} ({boxes.nth(i).inner_text()[:40]!r}) ends at "
            f"{box['x'] + box['width']:.0f} px, outside the {WIDTH} px window")


def _no_side_scroll(page, name: str) -> None:
    widest = page.evaluate("""() => {
        const boxes = document.querySelectorAll('.results, .dbs-table-wrap, table, .dbs-card');
        const all = [document.scrollingElement, ...boxes];
        return Math.max(...all.map(e => e.scrollWidth - e.clientWidth));
    }""")
    if widest > 1:
        _shoot(page, f"{name.replace(' ', '-')}-overflowing", "debug")
    assert widest <= 1, f"{name}: something scrolls sideways or overflows its card by {widest} px"


def _shoot(page, name: str, scheme: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"console-{name}-{scheme}.png"))


def _luminance(css_color: str) -> float:
    r, g, b = (int(float(x)) for x in css_color[css_color.index("(") + 1:css_color.index(")")].split(",")[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def _readable(page, selector: str, *, name: str) -> None:
    """Every text of a chart stands out from the page's background (the admin's dark theme included)."""
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    fills = page.eval_on_selector_all(selector, "all => all.map(e => getComputedStyle(e).fill)")
    assert fills, f"{name}: no text"
    for fill in fills:
        assert abs(_luminance(fill) - _luminance(background)) > 0.4, f"{name}: text {fill} on {background}"


def _pages(page, base: str, data: dict, scheme: str) -> None:
    backup, post, running = data["backup"], data["post"], data["running"]

    page.goto(f"{base}{reverse('admin:dbs_admin_dashboard_changelist')}")
    page.wait_for_selector("#dbs-chart svg")
    _inside(page, "#dbs-rpo, #dbs-next-runs, #dbs-drills, #dbs-chart, #dbs-jobs th", name="dashboard")
    _inside(page, "#dbs-chart svg text", name="dashboard chart labels")
    _readable(page, "#dbs-chart svg text", name="size chart")
    assert page.locator("text=DBS_ADMIN['RECIPIENTS']").count() <= 1
    _no_side_scroll(page, "dashboard")
    _shoot(page, "dashboard", scheme)

    lists = {
        "backups": ("admin:dbs_admin_backup_changelist", ["Download", "Restore…"]),
        "jobs": ("admin:dbs_admin_job_changelist", []),
        "audit": ("admin:dbs_admin_auditevent_changelist", []),
        "drills": ("admin:dbs_admin_drillreport_changelist", []),
    }
    for name, (url, links) in lists.items():
        page.goto(f"{base}{reverse(url)}")
        page.wait_for_selector("#result_list")
        _inside(page, "#result_list thead th", name=name)
        _inside(page, "#result_list tbody tr:first-child td, #result_list tbody tr:first-child th", name=name)
        for text in links:
            _inside(page, f"#result_list tbody tr:first-child a:text-is('{text}')", name=f"{name} {text}")
        _no_side_scroll(page, name)
        if name == "drills":
            _readable(page, "#dbs-rto-trend svg > text", name="RTO chart")
        _shoot(page, name, scheme)

    page.goto(f"{base}{reverse('admin:dbs_admin_auditevent_changelist')}?q=history")
    assert page.locator("#result_list tbody tr").count() == 1  # the search covers the action
    assert "history-restore" in page.inner_text("#result_list")

    page.goto(f"{base}{reverse('admin:dbs_admin_backup_change', args=[backup.pk])}")
    page.wait_for_selector("#dbs-backup-detail")
    _inside(page, "#dbs-detail-download, #dbs-detail-validate, #dbs-detail-restore", name="backup detail buttons")
    _inside(page, "#dbs-backup-summary th, #dbs-key-slots td, #dbs-copies td, #dbs-manifest-counts td",
            name="backup detail")
    assert "KB" in page.inner_text(".dbs-size") or "MB" in page.inner_text(".dbs-size")
    assert "blog.post" in page.inner_text("#dbs-manifest-counts").lower()
    assert "{" not in page.inner_text("#dbs-backup-detail")  # no raw JSON anywhere
    _no_side_scroll(page, "backup detail")
    _shoot(page, "backup-detail", scheme)

    snapshot = data["snapshot"]
    page.goto(f"{base}{reverse('admin:dbs_admin_backup_changelist')}")
    first = page.locator("#result_list tbody tr:first-child .dbs-snapshot-size")
    assert first.inner_text().startswith("+") and "→" in first.inner_text()
    assert "repository repository" in first.get_attribute("title")
    page.goto(f"{base}{reverse('admin:dbs_admin_backup_change', args=[snapshot.pk])}")
    assert "in repository (repository" in page.inner_text(".dbs-size")
    page.click("#dbs-detail-download")
    page.wait_for_selector("#dbs-export-form")
    _inside(page, "#dbs-export-form input:not([type=hidden]), #dbs-export-submit", name="snapshot download form")
    _no_side_scroll(page, "snapshot download")
    _shoot(page, "snapshot-download", scheme)

    page.goto(f"{base}{reverse('dbs_admin:job', args=[running.pk])}")
    page.wait_for_selector(".dbs-bar")
    _inside(page, ".dbs-bar, .dbs-percent, .dbs-stage, .dbs-stage-figures, .dbs-elapsed, .dbs-eta, #dbs-cancel",
            name="running job")
    assert page.inner_text(".dbs-job-title") == f"Job #{running.pk} · Backup"
    _shoot(page, "job-running", scheme)

    page.goto(f"{base}{reverse('dbs_admin:schedules')}")
    page.fill("#id_t-local-keep_last", "-3")
    page.check("#id_t-local-enabled")  # cannot run without RECIPIENTS: a field error, the keys named once
    page.click("#dbs-schedules input[type=submit]")
    page.wait_for_selector("#dbs-schedule-errors")
    _inside(page, "#dbs-schedules th, #dbs-schedules .errorlist", name="schedules")
    assert "greater than or equal to 1" in page.inner_text("#dbs-schedules")
    assert "Cannot be switched on yet" in page.inner_text("#dbs-schedules")
    assert page.locator("text=DBS_ADMIN['RECIPIENTS']").count() <= 1  # the missing key is said once
    _no_side_scroll(page, "schedules")
    _shoot(page, "schedules-error", scheme)

    page.goto(f"{base}{reverse('admin:blog_post_history', args=[post.pk])}")
    page.wait_for_selector("#dbs-versions")
    _inside(page, "#dbs-versions th, tr.dbs-version:first-child td, tr.dbs-version:first-child .dbs-restore",
            name="history")
    versions = page.locator("tr.dbs-version td.version").all_inner_texts()
    assert versions[0] == f"version {len(versions)}" and versions[-1] == "version 1"
    when_newest = page.locator("tr.dbs-version td.when").first.inner_text()
    _no_side_scroll(page, "history")
    _shoot(page, "history", scheme)

    page.click("#dbs-compare")
    page.wait_for_selector("#dbs-compare-b")
    assert page.inner_text("#dbs-compare-b .when") == when_newest  # the same time, as the list shows it
    _inside(page, "#dbs-compare-a, #dbs-compare-b, table.dbs-diff", name="compare")
    _no_side_scroll(page, "compare")
    _shoot(page, "compare", scheme)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_fits_1280_and_reads_in_both_themes(browser, live_server, console_data, scheme):
    assert HistoryVersion.objects.filter(object_pk=str(console_data["post"].pk)).count() == 3
    context = browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, color_scheme=scheme)
    try:
        page = context.new_page()
        _log_in(page, live_server.url)
        _pages(page, live_server.url, console_data, scheme)
    finally:
        context.close()
    assert AuditEvent.objects.filter(action="history-restore").exists()
