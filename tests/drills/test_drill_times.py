"""Each step's time and the whole drill's: recorded, printed by dbs_drill, shown by the report page, the RTO
trend and the dashboard's drill card."""

from __future__ import annotations

import re

import pytest
from django.core.management import call_command
from django.urls import reverse

from dbs_admin.backups.api import create_backup
from dbs_admin.models import DrillReport


@pytest.mark.django_db
def test_report_command_and_pages_show_each_step_time_and_the_total(big_blog, client, superuser, capsys):
    create_backup(kind="logical", target="local")
    call_command("dbs_drill", "--latest", "--no-mail")
    out = capsys.readouterr().out
    report = DrillReport.objects.latest("pk")
    steps = list(report.checks.all())
    assert report.passed and report.total_seconds >= sum(c.seconds for c in steps) >= report.restore_seconds
    for check in steps:
        assert re.search(rf"PASS  {re.escape(check.name)}\s+{check.seconds:.2f} s", out)
    assert re.search(rf"total\s+{report.total_seconds:.2f} s", out)
    assert f"PASSED: drill took {report.total_seconds:.2f} s, restore time (RTO) {report.restore_seconds:.2f} s" in out
    assert f"Smoke checks sampled with seed {report.smoke_seed}" in out

    client.force_login(superuser)
    page = client.get(reverse("admin:dbs_admin_drillreport_change", args=[report.pk])).content.decode()
    assert "Drill time (total)" in page and f"{report.total_seconds:.1f} s" in page
    assert "Time of the steps" in page and f"seed {report.smoke_seed}" in page
    assert f"--smoke-seed {report.smoke_seed}" in page
    [sample] = report.checks.get(name="smoke: blog: published posts render").sample["samples"]
    assert ", ".join(map(str, sample["checked"])) in page  # the sampled posts, by pk

    listing = client.get(reverse("admin:dbs_admin_drillreport_changelist")).content.decode()
    assert "dbs-series-restore_seconds" in listing and "dbs-series-total_seconds" in listing
    assert "whole drill" in listing and f"{report.total_seconds:.1f} s" in listing

    dashboard = client.get(reverse("admin:dbs_admin_dashboard_changelist")).content.decode()
    assert re.search(r"restore \(RTO\) took \d+\.\d s", dashboard)
    assert re.search(r"whole drill \d+\.\d s", dashboard)


@pytest.mark.django_db
def test_the_trend_charts_rto_and_total_and_skips_totals_never_measured():
    from datetime import timedelta

    from django.utils import timezone

    from dbs_admin.console.rto_chart import rto_chart
    from dbs_admin.drills.report import finish_report, record_check, start_report

    old = DrillReport.objects.create(backup_name="old.dbs", passed=True, restore_seconds=2.0,
                                     started_at=timezone.now() - timedelta(days=7))  # before totals were kept
    report = start_report(backup_name="new.dbs")
    record_check(report, "restore", True, seconds=1.5)
    DrillReport.objects.filter(pk=report.pk).update(restore_seconds=1.5)
    finish_report(report, total_seconds=4.25)
    assert report.total_seconds == 4.25 and old.total_seconds is None
    svg = str(rto_chart())
    assert svg.count("restore (RTO) ") == 2 and "restore time (RTO)</text>" in svg  # two points, the legend
    assert svg.count("whole drill 4.2 s") == 1 and "whole drill" in svg.split("<polyline")[0]
    assert 'aria-label="Restore time (RTO) and whole drill time of the last 2 drills"' in svg
