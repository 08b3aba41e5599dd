"""One bar per job: the stages of a real backup fold into a fraction that only moves forward, uploads included,
and a finished job shows a finished stage."""

from __future__ import annotations

import pytest

from blog.seeding import seed
from dbs_admin import create_backup
from dbs_admin.jobs.job_run import JobRun
from dbs_admin.jobs.progress_plan import ProgressPlan
from dbs_admin.models import Job
from tests.factories import PASSPHRASE

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_targets(settings, tmp_path, media_root):
    """``local`` (a folder: takes the sealed file as it is) and ``fs``, a Django storage the file is uploaded to."""
    settings.STORAGES = {**settings.STORAGES, "backups_fs": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "fs")}}}
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "PRIVATE_ROOT": str(tmp_path / "private"),
                          "TARGETS": {"local": {"kind": "local", "path": str(tmp_path / "t")},
                                      "fs": {"kind": "storage", "storage": "backups_fs"}},
                          "ARGON2": {"time_cost": 1, "memory_kib": 8192, "parallelism": 1, "allow_weak": True}}


def test_a_real_backups_stages_fold_into_one_bar_that_only_moves_forward(two_targets):
    seed(posts=40, images=3, seed=11)
    plan = ProgressPlan("backup", uploads=1)  # "local" links the sealed file in place; "fs" is uploaded to
    seen: list[tuple[str, int, int | None, float]] = []

    def progress(stage: str, done: int, total: int | None) -> None:
        seen.append((stage, done, total, plan.fraction(stage, done, total)))

    create_backup(target=["local", "fs"], passphrase=PASSPHRASE, progress=progress)
    stages = [s for s, *_ in seen]
    assert {"rows", "files", "verifying", "uploading to fs"} <= set(stages), stages
    fractions = [f for *_, f in seen]
    assert fractions == sorted(fractions), seen  # never back, whatever the stage's own counter does
    by_stage = {s: f for s, _, _, f in seen}
    assert by_stage["rows"] <= 0.55 < by_stage["files"] <= 0.7 <= by_stage["verifying"] < by_stage["uploading to fs"]
    assert len(set(fractions)) >= 4 and fractions[-1] < 1.0  # 100% is the job's end, not a stage's
    uploads = [(d, t) for s, d, t, _ in seen if s == "uploading to fs"]
    assert uploads[-1][0] == uploads[-1][1] > 0  # the upload's own figures are bytes of the sealed file


def test_each_stage_takes_its_share_by_its_own_bytes_and_a_safety_backup_runs_first():
    plan = ProgressPlan("backup", uploads=2)
    assert plan.fraction("rows", 50, 100) == pytest.approx(0.275)
    assert plan.fraction("rows", 10, 100) == pytest.approx(0.275)  # a counter that restarts does not pull back
    assert plan.fraction("uploading to a", 5, 10) == pytest.approx(0.72 + 0.27 / 4)
    assert plan.fraction("uploading to b", 5, 10) == pytest.approx(0.72 + 0.27 * 3 / 4)  # the second target's half
    restore = ProgressPlan("restore")
    assert restore.fraction("backing up the current data", 0, None) == 0.0
    assert restore.fraction("rows", 100, 100) == pytest.approx(0.4 * 0.55)  # the safety backup's capture
    assert restore.fraction("restoring", 0, None) == pytest.approx(0.4 * 0.55)
    assert restore.fraction("rows", 50, 100) == pytest.approx(0.4 + 0.6 * (0.02 + 0.83 / 2))  # the restore itself
    assert ProgressPlan("validate").fraction("validating", 0, None) == 0.0  # no figures: the bar waits for the end
    local = ProgressPlan("backup", uploads=0)  # kept in a local folder only: capture takes (nearly) the whole bar
    assert local.fraction("rows", 50, 100) == pytest.approx(0.4) and local.fraction("verifying", 0, None) == 0.97


def test_a_jobs_uploads_are_its_targets_that_are_not_local_folders(two_targets):
    from dbs_admin.jobs.job_run import _uploads

    assert _uploads(Job(kind=Job.Kind.BACKUP, params={"target": "local"})) == 0
    assert _uploads(Job(kind=Job.Kind.BACKUP, params={"target": "fs", "copies": ["local", "fs"]})) == 1


@pytest.mark.django_db(transaction=True)
def test_a_finished_job_shows_done_not_the_stage_it_was_in():
    job = Job.objects.create(kind=Job.Kind.VALIDATE)
    run = JobRun(job)
    assert run.claim()
    run.stage("validating")
    run.finish(Job.State.SUCCEEDED, "Intact.")
    job.refresh_from_db()
    assert (job.stage, job.progress, str(job)) == ("done", 1.0, f"Job #{job.pk} · Validate")


def test_a_native_sqlite_dump_reports_its_bytes_against_the_copy_s_size(two_targets):
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("the SQLite copy's size is the dump's size; other engines' dumps have no size beforehand")
    seed(posts=40, images=2, seed=12)
    seen = []
    create_backup(kind="native", target="local", passphrase=PASSPHRASE,
                  progress=lambda stage, done, total: seen.append((stage, done, total)))
    dumps = [(done, total) for stage, done, total in seen if stage == "database"]
    assert dumps and all(total and 0 < done <= total for done, total in dumps)  # a total, so a moving bar


def test_an_sftp_copys_read_back_moves_the_bar_after_its_upload():
    """An SFTP copy is sent, then read back once to verify it: both move the bar, in order, within its slice."""
    plan = ProgressPlan("backup", uploads=1, read_back=("offsite",))
    size = 100 << 20
    plan.fraction("files", 1, 1)
    sent = [plan.fraction("uploading to offsite", n * (size // 4), size) for n in range(5)]
    checked = [plan.fraction("verifying on offsite", n * (size // 4), size) for n in range(5)]
    assert sent == sorted(sent) and checked == sorted(checked) and sent[-1] < checked[-1]
    assert sent[0] >= 0.7 and sent[-1] < checked[1] < checked[2] < checked[3] <= 0.99
