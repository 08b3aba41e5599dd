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
    (database, whole), = [(d, t) for s, d, t, _ in seen if s == "sizing"]  # the estimate comes first, once
    assert stages[0] == "sizing" and 0 < database < whole
    cut = 0.7 * max(database / whole, 0.02)  # the span rows and files share, divided by their bytes
    assert by_stage["rows"] <= cut + 1e-9 < by_stage["files"] <= 0.7
    assert 0.7 <= by_stage["verifying"] < by_stage["uploading to fs"]
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


@pytest.mark.django_db(transaction=True)  # a native dump shares the backup's snapshot: a real transaction
def test_a_native_dump_reports_its_bytes_against_a_total_on_every_engine(two_targets):
    """SQLite's copy has its exact size; PostgreSQL's and MariaDB's dumps are sized by the engine's own figure
    for its tables, and from the second backup on by the last dump's size (``backups.sizing``)."""
    from django.db import connection

    seed(posts=40, images=2, seed=12)
    runs = []
    for _ in range(2):
        seen: list = []
        result = create_backup(kind="native", target="local", passphrase=PASSPHRASE,
                               progress=lambda stage, done, total, seen=seen: seen.append((stage, done, total)))
        runs.append((seen, result.manifest["dump"]["size"]))
    for seen, _ in runs:
        dumps = [(done, total) for stage, done, total in seen if stage == "database"]
        assert dumps and all(total and done > 0 for done, total in dumps)  # a total, so a moving bar
        if connection.vendor == "sqlite":
            assert all(done <= total for done, total in dumps)
        files = [(done, total) for stage, done, total in seen if stage == "files"]
        assert files and files[-1][1] == sum(p.stat().st_size for p in _media_files())  # by bytes, not count
    (second, _), first_size = runs[1], runs[0][1]
    if connection.vendor != "sqlite":  # the second dump is expected to be as large as the first one was
        assert {total for stage, _, total in second if stage == "database"} == {first_size}


def _media_files():
    from pathlib import Path

    from django.conf import settings

    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def test_the_database_and_files_parts_share_their_span_by_the_estimated_bytes():
    plan = ProgressPlan("backup", uploads=1)
    assert plan.fraction("sizing", 10, 100) == 0.0  # an estimate moves nothing
    assert plan.fraction("rows", 50, 100) == pytest.approx(0.7 * 0.1 / 2)  # the database is a tenth of the bytes
    assert plan.fraction("files", 50, 100) == pytest.approx(0.07 + 0.63 / 2)  # ...the media the rest
    assert plan.fraction("verifying", 0, None) == pytest.approx(0.7)
    tiny = ProgressPlan("backup", uploads=0)
    tiny.fraction("sizing", 0, 100)  # no database bytes at all: its part still shows that it ran
    assert tiny.fraction("rows", 1, 1) == pytest.approx(0.97 * 0.02)
    unknown = ProgressPlan("backup", uploads=1)
    unknown.fraction("sizing", 5, 0)  # nothing to divide by: the fixed shares stay
    assert unknown.fraction("rows", 100, 100) == pytest.approx(0.55)
    restore = ProgressPlan("restore")
    restore.fraction("backing up the current data", 0, None)
    restore.fraction("sizing", 90, 100)
    assert restore.fraction("rows", 100, 100) == pytest.approx(0.4 * 0.7 * 0.9)  # the safety backup's estimate
    restore.fraction("restoring", 0, None)  # a new phase forgets it
    assert restore.fraction("rows", 50, 100) == pytest.approx(0.4 + 0.6 * (0.02 + 0.83 / 2))


@pytest.mark.django_db(transaction=True)
def test_a_logical_backup_and_its_restore_move_through_files_by_bytes(two_targets):
    from dbs_admin import restore_backup

    seed(posts=20, images=4, seed=13)
    media_bytes = sum(p.stat().st_size for p in _media_files())
    seen: list = []
    result = create_backup(target="local", passphrase=PASSPHRASE,
                           progress=lambda stage, done, total: seen.append((stage, done, total)))
    files = [(d, t) for s, d, t in seen if s == "files"]
    assert files[-1] == (media_bytes, media_bytes) and all(t == media_bytes for _, t in files)
    assert [(d, t) for s, d, t in seen if s == "sizing"][0][1] > media_bytes  # database + media
    seen.clear()
    restore_backup(result.name, target="local", passphrase=PASSPHRASE,
                   progress=lambda stage, done, total: seen.append((stage, done, total)))
    files = [(d, t) for s, d, t in seen if s == "files"]
    assert files and all(t == media_bytes and 0 <= d <= media_bytes for d, t in files)
    assert files[-1][0] == media_bytes


def test_a_validate_job_moves_through_blocks_then_decryption(two_targets):
    from dbs_admin.backups.api import validate_backup

    seed(posts=30, images=2, seed=14)
    result = create_backup(target="local", passphrase=PASSPHRASE)
    for key, kind in ((None, "validating"), (PASSPHRASE, "validating with the key")):
        plan = ProgressPlan("validate")
        plan.fraction(kind, 0, None)
        seen: list = []

        def progress(stage, done, total, seen=seen, plan=plan):
            seen.append((stage, done, total, plan.fraction(stage, done, total)))

        checked = validate_backup(result.name, target="local", passphrase=key, decrypt=key is not None,
                                  progress=progress)
        assert checked.ok
        blocks = [(d, t) for s, d, t, _ in seen if s == "checking blocks"]
        assert blocks and blocks[-1][0] == blocks[-1][1] > 0
        fractions = [f for *_, f in seen]
        assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(0.99)
        decrypting = [(d, t) for s, d, t, _ in seen if s == "decrypting"]
        if key is None:
            assert not decrypting
        else:  # rows and data bytes, against the manifest's figures for both: it ends where it said it would
            assert decrypting and decrypting[-1][0] == decrypting[-1][1]
            assert max(f for s, *_, f in seen if s == "checking blocks") <= 0.5


def test_an_sftp_copys_read_back_moves_the_bar_after_its_upload():
    """An SFTP copy is sent, then read back once to verify it: both move the bar, in order, within its slice."""
    plan = ProgressPlan("backup", uploads=1, read_back=("offsite",))
    size = 100 << 20
    plan.fraction("files", 1, 1)
    sent = [plan.fraction("uploading to offsite", n * (size // 4), size) for n in range(5)]
    checked = [plan.fraction("verifying on offsite", n * (size // 4), size) for n in range(5)]
    assert sent == sorted(sent) and checked == sorted(checked) and sent[-1] < checked[-1]
    assert sent[0] >= 0.7 and sent[-1] < checked[1] < checked[2] < checked[3] <= 0.99


def test_an_export_job_moves_through_the_snapshot_then_the_read_back(two_targets, settings, tmp_path):
    """A download's export reports the payload bytes read against the snapshot's size, then the writer's
    read-back; the bar only moves forward and stops short of done until the job ends; cancel stops it."""
    from dbs_admin.backups.errors import CancelledError
    from dbs_admin.backups.exports import EXPORTING, VERIFYING, export_for_download
    from dbs_admin.targets import get_target

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": {**settings.DBS_ADMIN["TARGETS"], "repo": {
        "kind": "local", "path": str(tmp_path / "repo"), "format": "repository"}}}
    seed(posts=30, images=2, seed=15)
    result = create_backup(target="repo", passphrase=PASSPHRASE)
    plan, seen = ProgressPlan("export"), []

    def progress(stage, done, total):
        seen.append((stage, done, total, plan.fraction(stage, done, total)))

    report = export_for_download(get_target("repo"), result.name, tmp_path / "out.dbs", passphrase=PASSPHRASE,
                                 progress=progress)
    assert report.size == (tmp_path / "out.dbs").stat().st_size
    read = [(d, t) for s, d, t, _ in seen if s == EXPORTING]
    assert read and read[-1][0] == read[-1][1] > 0, "the stage ends at its end"
    assert abs(read[0][1] - read[-1][0]) <= 0.1 * read[-1][0], "the snapshot's size announced is about what is read"
    assert [s for s, *_ in seen][-1] == VERIFYING
    fractions = [f for *_, f in seen]
    assert fractions == sorted(fractions) and 0.8 < fractions[-1] <= 0.99
    with pytest.raises(CancelledError):
        export_for_download(get_target("repo"), result.name, tmp_path / "cancelled.dbs", passphrase=PASSPHRASE,
                            cancel=lambda: True)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("out", "cancelled"))) == ["out.dbs"]
