"""The dashboard: RPO light, reaper before rendering, newest drill, size chart per target."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from dbs_admin.console.dashboard import rpo_light, size_chart
from dbs_admin.models import Backup, BackupCopy, DrillReport, Job

pytestmark = pytest.mark.django_db


def backup(name, age, status=Backup.Status.OK, size=1000, targets=("local",)):
    b = Backup.objects.create(name=name, created_at=timezone.now() - age, status=status, size=size)
    for t in targets:
        BackupCopy.objects.create(backup=b, target=t, path=name)
    return b


@pytest.mark.parametrize(("age_hours", "color"), [(1, "green"), (22, "amber"), (30, "red")])
def test_rpo_light_follows_the_newest_verified_backup(settings, age_hours, color):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RPO": timedelta(hours=26)}
    backup("a.dbs", timedelta(hours=age_hours))
    backup("newer-but-damaged.dbs", timedelta(minutes=1), status=Backup.Status.DAMAGED)
    light = rpo_light()
    assert light.color == color and light.backup.name == "a.dbs"


def test_no_backup_is_red():
    assert rpo_light().color == "red" and "No verified backup" in rpo_light().text


def test_chart_has_a_line_per_target_and_escapes_names():
    backup("a.dbs", timedelta(days=2), size=1000, targets=("local", "off<site>"))
    backup("b.dbs", timedelta(days=1), size=3000, targets=("local",))
    svg = str(size_chart())
    assert svg.startswith("<svg") and svg.count("<polyline") == 2
    assert "off&lt;site&gt;" in svg and "off<site>" not in svg


def test_dashboard_reaps_lost_jobs_and_shows_jobs_and_drill(su_client, settings):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_HEARTBEAT_TIMEOUT": 60}
    stale = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING,
                               heartbeat_at=timezone.now() - timedelta(minutes=5), worker="w1")
    DrillReport.objects.create(backup_name="x.dbs", passed=False, error="row counts differ")
    page = su_client.get(reverse("admin:dbs_admin_dashboard_changelist")).content.decode()
    stale.refresh_from_db()
    assert stale.state == Job.State.LOST
    assert "Failed (worker lost)" in page and "of x.dbs: failed" in page and "row counts differ" in page


def test_jobs_card_refreshes_itself_only_while_a_job_runs(su_client):
    url = reverse("admin:dbs_admin_dashboard_changelist")
    job = Job.objects.create(kind=Job.Kind.BACKUP, state=Job.State.RUNNING, heartbeat_at=timezone.now())
    page = su_client.get(url).content.decode()
    assert "?partial=jobs" in page and 'hx-trigger="every 2s"' in page
    card = su_client.get(url + "?partial=jobs", HTTP_HX_REQUEST="true").content.decode()
    assert card.lstrip().startswith('<section class="dbs-card dbs-wide" id="dbs-jobs"') and "Running" in card
    Job.objects.filter(pk=job.pk).update(state=Job.State.SUCCEEDED)
    card = su_client.get(url + "?partial=jobs", HTTP_HX_REQUEST="true").content.decode()
    assert "Succeeded" in card and "every 2s" not in card
