"""A fresh demo works out of the box: `scripts/demo.sh --setup-only` in an empty var folder, then nothing else.

The scheduled backup, an unattended ``dbs_backup --no-input``, ``dbs_drill --latest`` and *Run drill* pass,
and the status view answers 200, with no key typed anywhere: `make demo` made the keys (``dbs_keys init``)
and its settings read them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests import services

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CHECKS = r"""
import json
from demo_site.celery import app
app.conf.task_always_eager = True  # the tasks run here, as a worker would run them
from django.test import Client
from django.contrib.auth import get_user_model
from dbs_admin.jobs import launch
from dbs_admin.jobs.tasks import scheduled_backup
from dbs_admin.models import DrillReport, Job
from django_celery_beat.models import PeriodicTask

client = Client()
client.force_login(get_user_model().objects.get(username="admin"))
out = {"status_before": client.get("/dbs/status/").status_code,
       "enabled": sorted(PeriodicTask.objects.filter(enabled=True, task__startswith="dbs_admin.")
                         .values_list("task", flat=True))}
scheduled_backup.apply(kwargs={"target": "local"})
out["scheduled"] = [j.state for j in Job.objects.filter(kind="backup").order_by("pk")]
response = client.post("/admin/dbs_admin/drillreport/run/", {"target": "local"})
out["run_drill"] = [response.status_code, [(j.state, j.message) for j in Job.objects.filter(kind="drill")]]
out["status_after"] = client.get("/dbs/status/").json()
print(json.dumps(out))
"""


def test_make_demo_then_nothing_else(tmp_path):
    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DBS_PASSPHRASE",
                                                            "DBS_DRILL_IDENTITY_PASSPHRASE", "DBS_DEMO_KEYS")}
    env.update(DBS_VAR_DIR=str(var), PYTHONUNBUFFERED="1")

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(args, cwd=services.ROOT, env=env, capture_output=True, text=True, timeout=400)
        if check:
            assert result.returncode == 0, f"{args}: {result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result

    setup = run("scripts/demo.sh", "--setup-only")
    assert "Demo keys in" in setup.stdout and (var / "keys" / "drill.identity").is_file()
    assert oct((var / "keys" / "drill.env").stat().st_mode & 0o777) == "0o600"
    passphrase = (var / "keys" / "drill.env").read_text().split("=", 1)[1].strip()
    assert passphrase not in setup.stdout + setup.stderr  # dbs_keys init's output went nowhere

    manage = [sys.executable, "manage.py"]
    backup = run(*manage, "dbs_backup", "--no-input")
    assert "verified" in backup.stdout and "dbs_admin.W" not in backup.stderr
    drill = run(*manage, "dbs_drill", "--latest", "--no-input")
    assert "PASSED" in drill.stdout
    checks = json.loads(run(*manage, "shell", "-c", CHECKS).stdout.strip().splitlines()[-1])
    assert checks["status_before"] == 200
    assert checks["enabled"] == ["dbs_admin.drill", "dbs_admin.reap_lost_jobs", "dbs_admin.scheduled_backup"]
    assert checks["scheduled"][-1] == "succeeded", checks
    status, jobs = checks["run_drill"]
    assert status == 302 and jobs[-1][0] == "succeeded", jobs
    assert checks["status_after"]["state"] == "healthy", checks["status_after"]
    status = run(*manage, "dbs_status")
    assert status.stdout.strip().endswith("healthy")
    # a second `make demo` keeps the keys (older backups stay drillable) and still sets up cleanly
    again = run("scripts/demo.sh", "--setup-only")
    assert "Demo keys in" not in again.stdout
