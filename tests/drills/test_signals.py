"""dbs_admin.signals: other apps hear about backups, restores and drills, with the job, the backup and the outcome."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from dbs_admin import signals
from dbs_admin.backups.api import create_backup, restore_backup
from dbs_admin.backups.errors import KeyMissingError
from dbs_admin.drills.runner import run_drill
from dbs_admin.models import Backup, DrillReport, Job

ALL = ["backup_started", "backup_finished", "backup_failed", "restore_started", "restore_finished",
       "restore_failed", "drill_started", "drill_finished", "drill_failed"]


@contextmanager
def heard() -> Iterator[list[tuple[str, dict]]]:
    calls: list[tuple[str, dict]] = []
    receivers = {}
    for name in ALL:
        def receiver(sender, name=name, **kwargs):
            calls.append((name, {**kwargs, "sender": sender}))
        receivers[name] = receiver
        getattr(signals, name).connect(receiver, weak=False)
    try:
        yield calls
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)


@pytest.mark.django_db
def test_backup_restore_and_drill_signals_carry_the_backup_and_the_outcome(seeded, settings):
    with heard() as calls:
        result = create_backup(kind="logical", target="local")
    backup = Backup.objects.get(pk=result.backup_id)
    (started, s), (finished, f) = calls
    assert (started, s["outcome"], s["target"], s["kind"]) == ("backup_started", "started", "local", "logical")
    assert (finished, f["outcome"], f["backup"], f["result"].name) == ("backup_finished", "succeeded", backup,
                                                                        backup.name)
    assert s["job"] is None and s["sender"] is Backup  # not a console job

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "RECIPIENTS": []}
    with heard() as calls, pytest.raises(KeyMissingError):
        create_backup(kind="logical", target="local")
    assert [(n, k["outcome"]) for n, k in calls] == [("backup_started", "started"), ("backup_failed", "failed")]
    assert isinstance(calls[1][1]["error"], KeyMissingError) and "no key" in calls[1][1]["message"]

    with heard() as calls:
        restore_backup(backup.name, target="local", identity=seeded["identity"], dry_run=True)
    assert calls == []  # a dry run restores nothing and says nothing
    with heard() as calls:
        restore_backup(backup.name, target="local", identity=seeded["identity"])
    assert [(n, k["outcome"], k["backup"], k["database"]) for n, k in calls] == [
        ("restore_started", "started", backup, "default"), ("restore_finished", "succeeded", backup, "default")]

    with heard() as calls:
        report = run_drill(target="local")
    assert report.passed
    assert [(n, k["outcome"]) for n, k in calls] == [("drill_started", "started"), ("drill_finished", "succeeded")]
    assert calls[1][1]["report"] == report and calls[1][1]["backup"] == backup  # its restore sent no restore_*
    assert calls[1][1]["sender"] is DrillReport


@pytest.mark.django_db(transaction=True)
def test_signals_of_a_console_job_name_the_job_and_a_receiver_that_fails_changes_nothing(seeded, caplog):
    from dbs_admin.jobs.tasks import run_drill_task

    def broken(sender, **kwargs):
        raise RuntimeError("a receiver with a bug")

    create_backup(kind="logical", target="local")
    signals.drill_started.connect(broken, weak=False)
    try:
        with heard() as calls:
            run_drill_task.apply()  # what beat sends: the task makes the job
    finally:
        signals.drill_started.disconnect(broken)
    job = Job.objects.get(kind=Job.Kind.DRILL)
    assert job.state == Job.State.SUCCEEDED  # the failing receiver was logged, nothing else
    assert [(n, k["job"]) for n, k in calls] == [("drill_started", job), ("drill_finished", job)]
    assert "a receiver of a dbs_admin signal failed" in caplog.text and "a receiver with a bug" in caplog.text
    assert signals.current_job() is None  # the job ended: nothing is attributed to it any more
