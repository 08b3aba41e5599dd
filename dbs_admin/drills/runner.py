"""One restore drill, start to finish: pick the backup, restore it into a scratch database, check, record.

The order matters and each step is recorded as a check, so a failure names
the step: ``backup integrity`` (every block of the sealed file, then the
whole payload authenticated with the key), ``schema`` (the scratch database
migrated to the backup's recorded migration state), ``restore`` (through
the same ``restore_backup`` users run, into the scratch alias), then the
data checks of :mod:`.checks`, the smoke checks last, sampled within their
time budget (:mod:`.smoke`). The report keeps each step's time and the whole
drill's (``total_seconds``).

RTO is what a real recovery would take: fetching the file from its target,
building the schema and restoring rows and files. A repository snapshot is
drilled through its export (step ``export``, counted in the RTO): that reads
every chunk, as a restore straight from the repository does, and also seals a
standalone file, which such a restore does not, so for it the RTO is an upper
bound; the report says so and gives each step's time (``report.rto_words``).
RPO is the backup's age when the drill started.

Files: the restore writes MEDIA_ROOT files into the scratch folder (MEDIA_ROOT
is overridden for the drill's duration), and files of other storages (media
on S3) into folders beside it (``storage_media.redirected``), never over the
site's own media.
That override is process-wide, which is why drills run in a worker or a
command, not inside a web request.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.loader import MigrationLoader
from django.test.utils import override_settings
from django.utils.dateparse import parse_datetime

from dbs_admin import signals
from dbs_admin.backups import api, storage_media
from dbs_admin.backups.errors import CancelledError
from dbs_admin.backups.files import MEDIA, file_roots
from dbs_admin.backups.sources import fetch_verified
from dbs_admin.drills import checks
from dbs_admin.drills.alerts import alert_failure
from dbs_admin.drills.errors import DrillError, NoBackupToDrill
from dbs_admin.drills.identity import resolve_key
from dbs_admin.drills.inventory import Inventory, read_inventory
from dbs_admin.drills.report import (
    EXPORT_CAVEAT,
    EXPORT_STEP,
    finish_report,
    mark_interrupted,
    record_check,
    start_report,
)
from dbs_admin.drills.scratch import ScratchDatabase, base_vendor, cleanup_orphans, drills_root, scratch_database
from dbs_admin.drills.smoke import SmokePlan
from dbs_admin.errors import DbsError
from dbs_admin.hosts import this_host
from dbs_admin.models import Backup, DrillReport, Job
from dbs_admin.sealed import SealedError, verify
from dbs_admin.targets import get_target
from dbs_admin.targets.repository import is_repository

log = logging.getLogger("dbs_admin.drills")

Progress = Callable[[str, int, "int | None"], None]
Cancel = Callable[[], bool]


class _Stop(Exception):
    """A step failed; the remaining steps cannot run (recorded already)."""


class Drill:
    """The state of one running drill; :func:`run_drill` is the public entry point."""

    def __init__(self, report: DrillReport, *, progress: Progress | None, cancel: Cancel | None,
                 smoke: SmokePlan | None = None):
        self.report = report
        self.progress = progress or (lambda stage, done, total: None)
        self.cancel = cancel or (lambda: False)
        self.smoke = smoke or SmokePlan.from_settings()
        self.rto = 0.0

    def check_cancel(self) -> None:
        if self.cancel():
            raise CancelledError("the drill was cancelled; its scratch database was dropped")

    def step(self, name: str, func: Callable[[], Any], *, rto: bool = False) -> Any:
        """Run one step, record it as a check; a failing step stops the drill."""
        self.check_cancel()
        self.progress(name, 0, None)
        start = time.monotonic()
        try:
            detail = func()
        except CancelledError:
            raise
        except (DbsError, SealedError, DrillError) as exc:
            record_check(self.report, name, False, str(exc), time.monotonic() - start)
            raise _Stop(name) from exc
        except Exception as exc:
            record_check(self.report, name, False, _one_line(exc), time.monotonic() - start)
            log.exception("drill %s: step %s crashed", self.report.pk, name)
            raise _Stop(name) from exc
        seconds = time.monotonic() - start
        if rto:
            self.rto += seconds
        passed = not (isinstance(detail, checks.Outcome) and not detail.passed)
        text = detail.detail if isinstance(detail, checks.Outcome) else str(detail or "")
        record_check(self.report, name, passed, text, seconds)
        if not passed:
            raise _Stop(name)
        return detail


def _one_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


# --- choosing the backup --------------------------------------------------------------


def resolve_source(source: str | Path | None, target: str | None,
                   key: tuple[str | None, Any] | None = None) -> tuple[str, str | Path, str | None]:
    """``(name, source, target)``: a local path, or a name on a target.

    With no source, the newest backup of the target that ``key`` (passphrase, identity) can open, as the
    catalogue records its key slots: a drill with the drill identity skips the newest backup when it was
    sealed with a passphrase only (a manual one), instead of failing on it. Files the catalogue does not
    know are tried as they are.
    """
    if source is not None and target is None:
        path = Path(source)
        if not path.is_file():
            raise NoBackupToDrill(f"no backup file {path}; give an existing .dbs file or use --latest")
        return path.name, path, None
    t = get_target(target)
    if source is None:
        files = t.list()
        if not files:
            raise NoBackupToDrill(f"target {t.name!r} holds no backup yet; run `manage.py dbs_backup` first")
        opens = [f.name for f in files if _key_opens(key, f.name)]
        if not opens:
            raise NoBackupToDrill(
                f"none of the {len(files)} backup(s) on target {t.name!r} is sealed to the drill's key "
                f"({_key_words(key)}); drill one by name with the key that opens it, or seal backups to RECIPIENTS")
        source = opens[0]
    return str(source), str(source), t.name


def _key_opens(key: tuple[str | None, Any] | None, name: str) -> bool:
    """False only when the catalogue's key slots of ``name`` show ``key`` cannot open it."""
    if key is None:
        return True
    slots = Backup.objects.filter(name=name).values_list("key_slots", flat=True).first()
    if not slots:
        return True
    passphrase, identity = key
    if identity is not None:
        return any(s.get("type") == "recipient" and s.get("fingerprint") == identity.fingerprint for s in slots)
    return any(s.get("type") == "passphrase" for s in slots) if passphrase else True


def _key_words(key: tuple[str | None, Any] | None) -> str:
    passphrase, identity = key or (None, None)
    return f"identity {identity.recipient[:20]}…" if identity is not None else "a passphrase"


def _drill_key(passphrase: str | None, identity: Any) -> tuple[str | None, Any] | None:
    """The drill's key if it can be had now; None leaves the choice of backup unfiltered (the key error, if
    any, is reported where the drill opens the backup)."""
    try:
        return resolve_key(passphrase, identity)
    except (DrillError, DbsError, SealedError, OSError):
        return None


def _local_copy(report: DrillReport, source: str | Path, target: str | None, holder: dict[str, Any]) -> str:
    """A local path of the file: itself, the local target's file, or a download into the drill folder, from
    ``target``'s copy or, when that one is missing or damaged, another verified copy (the step says which)."""
    if target is None:
        holder["path"] = Path(source)
        return str(source)
    folder = drills_root() / f"dbs_drill_{report.pk}.download"
    folder.mkdir(exist_ok=True)
    repo = get_target(target)
    if is_repository(repo):
        return _export(repo, str(source), folder / Path(str(source)).name, holder)
    holder["path"], used = fetch_verified(str(source), target, folder)
    return f"{holder['path']} (the copy on target {used!r})"


def _export(repo: Any, name: str, dest: Path, holder: dict[str, Any]) -> str:
    """A snapshot of a repository target is drilled through its export: a standalone sealed file made with
    the drill's key (sealed to the identity's own recipient, or with the passphrase), then drilled as any
    file. The export is part of the RTO, and the report says what that means (``report.EXPORT_CAVEAT``)."""
    from dbs_admin.backups.repository import export_snapshot
    from dbs_admin.backups.sealing_keys import argon2_params

    passphrase, identity = holder["key"]["passphrase"], holder["key"]["identity"]
    params, allow_weak = argon2_params()
    keys = {"passphrase": passphrase} if passphrase else {"recipients": [identity.recipient]}
    report = export_snapshot(repo, name, dest, passphrase=passphrase, identity=identity,
                             keys={**keys, "argon2": params, "allow_weak_argon2": allow_weak})
    holder["path"] = dest
    return (f"snapshot {name} exported from repository target {repo.name!r} ({report.size} bytes); counted in the "
            f"RTO: {EXPORT_CAVEAT}")


def _created_at(backup: Backup | None, manifest: dict[str, Any]) -> datetime | None:
    if backup is not None:
        return backup.created_at
    value = manifest.get("created_at")
    return parse_datetime(value) if isinstance(value, str) else None


# --- the steps --------------------------------------------------------------------------


def _integrity(path: Path, key: dict[str, Any], holder: dict[str, Any]) -> str:
    report = verify(path)
    if not report.ok:
        blocks = report.unrecoverable_blocks[:20]
        regions = report.unrecoverable_regions
        raise DrillError(
            "the backup is damaged beyond repair: "
            + (f"unrecoverable blocks {blocks}" if blocks else "")
            + (f" regions {regions}" if regions else "")
            + (f" ({report.error})" if report.error else "")
        )
    inv: Inventory = read_inventory(path, **key)
    holder["manifest"], holder["inventory"] = inv.manifest, inv
    state = "intact" if report.intact else f"healed {len(report.healed_blocks)} damaged block(s)"
    return (
        f"{state}, {report.block_count} blocks, payload authenticated "
        f"({len(inv.models)} models, {len(inv.files)} files; healing margin {report.healing_margin:.2f})"
    )


def _migration_targets(alias: str, recorded: list[list[str]]) -> list[tuple[str, str]] | None:
    """Per-app migration targets reproducing ``recorded``; None when it is simply every migration of the code."""
    loader = MigrationLoader(connections[alias], ignore_no_migrations=True)
    replaced = {k for m in loader.replacements.values() for k in m.replaces}
    nodes = set(loader.graph.nodes) - replaced
    wanted = {tuple(m) for m in recorded} - replaced
    if unknown := sorted(wanted - nodes):
        raise DrillError(
            "the backup was made with migrations this code does not have: "
            + ", ".join(f"{a}.{n}" for a, n in unknown[:20])
        )
    if wanted == nodes:
        return None
    targets = []
    for app in sorted({a for a, _ in nodes}):
        mine = [k for k in wanted if k[0] == app]
        if not mine:
            targets.append((app, "zero"))
            continue
        leaf = max(mine, key=lambda k: len(loader.graph.forwards_plan(k)))
        targets.append(leaf)
    return targets


def _schema(scratch: ScratchDatabase, manifest: dict[str, Any]) -> str:
    recorded = manifest.get("migrations") or []
    targets = _migration_targets(scratch.alias, recorded)
    if targets is None:
        call_command("migrate", database=scratch.alias, interactive=False, verbosity=0)
        return f"migrated to the code's {len(recorded)} migrations (as recorded)"
    for app, name in targets:
        call_command("migrate", app, name, database=scratch.alias, interactive=False, verbosity=0)
    return f"migrated to the recorded state: {len(recorded)} migrations over {len(targets)} apps"


def _refuse_live_roots(inventory: Inventory) -> None:
    """Only MEDIA_ROOT is redirected into the scratch folder; never let a drill overwrite live files elsewhere."""
    roots = sorted({str(f["root"]) for f in inventory.files} - {MEDIA}
                   - {str(f["root"]) for f in inventory.files if storage_media.is_storage_root(f["root"])})
    if roots:
        raise DrillError(
            f"the backup holds files under {', '.join(roots)} (outside MEDIA_ROOT); a drill cannot restore them "
            "without overwriting the live ones, so it stops here. Restore such backups into a staging site."
        )


def _restore(drill: Drill, scratch: ScratchDatabase, source: str | Path, target: str | None,
             key: dict[str, Any]) -> str:
    with signals.muted():  # part of the drill (drill_* signals), not a restore of the site
        result = api.restore_backup(
            source, target=target, database=scratch.alias, progress=drill.progress, cancel=drill.cancel, **key,
        )
    rows = sum(result.rows.values())
    healed = f", healed {result.healed_blocks} block(s)" if result.healed_blocks else ""
    return f"{rows} rows in {len(result.rows)} models, {result.files} files{healed}"


# --- the entry point -------------------------------------------------------------------


def run_drill(
    source: str | Path | None = None,
    *,
    target: str | None = None,
    passphrase: str | None = None,
    identity: Any = None,
    job: Job | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    alert: bool = True,
    smoke_seed: int | None = None,
    full_smoke: bool | None = None,
    smoke_budget: float | None = None,
) -> DrillReport:
    """Drill ``source`` (a path, a name on ``target``, or the newest backup of ``target``).

    Smoke checks sample within ``SMOKE_BUDGET_SECONDS`` (``smoke_budget``)
    with a fresh seed, or ``smoke_seed`` to check the objects an earlier
    drill of the same backup checked; ``full_smoke`` (default
    ``SMOKE_FULL``) checks every object. Always returns the recorded report
    (a drill that could not even start is a failed report with the reason in
    ``error``); mails ADMINS on failure.
    """
    started = time.monotonic()
    engine = connections[DEFAULT_DB_ALIAS].vendor
    plan = SmokePlan.from_settings(seed=smoke_seed, full=full_smoke, budget=smoke_budget)
    smoke = {"smoke_seed": plan.seed, "smoke_full": plan.full}
    try:
        key = _drill_key(passphrase, identity) if source is None else None
        if key is not None:
            passphrase, identity = key
        name, source, target = resolve_source(source, target, key)
    except (DrillError, DbsError) as exc:
        report = start_report(backup_name="(none)", job=job, engine=engine, **smoke)
        signals.send(signals.drill_started, DrillReport, outcome=signals.STARTED, report=report)
        return _finish(report, str(exc), alert, started)
    backup = Backup.objects.filter(name=name).first()
    report = start_report(backup_name=name, backup=backup, job=job, engine=engine, **smoke)
    worker = (job.worker if job is not None and job.worker else "") or this_host()
    DrillReport.objects.filter(pk=report.pk).update(worker=worker[:255])
    report.worker = worker
    signals.send(signals.drill_started, DrillReport, outcome=signals.STARTED, backup=backup, report=report)
    drill = Drill(report, progress=progress, cancel=cancel, smoke=plan)
    error = ""
    try:
        base_vendor()  # a clear error for engines drills do not support
        _clean_up_after_crashed_drills(report)
        passphrase, identity = resolve_key(passphrase, identity)
        key = {"passphrase": passphrase, "identity": identity}
        with scratch_database(report.pk) as scratch:
            report.scratch_database = scratch.name
            report.save(update_fields=["scratch_database"])
            _run_steps(drill, scratch, source, target, backup, key)
    except _Stop as stop:
        log.warning("drill %s of %s failed at %s", report.pk, name, stop)
    except CancelledError as exc:  # the user asked for it: recorded, not alerted
        finish_report(report, error=str(exc), total_seconds=time.monotonic() - started)
        signals.send(signals.drill_failed, DrillReport, outcome=signals.CANCELLED, backup=report.backup,
                     report=report, error=exc, message=str(exc))
        return report
    except (DrillError, DbsError, SealedError) as exc:  # a known condition with a message saying what to do
        log.warning("drill %s of %s could not run: %s", report.pk, name, exc)
        error = str(exc)
    except Exception as exc:  # recorded in the report and mailed; the scratch database is gone already
        log.exception("drill %s of %s could not run", report.pk, name)
        error = _one_line(exc)
    return _finish(report, error, alert, started)


def _clean_up_after_crashed_drills(report: DrillReport) -> None:
    """Remove scratch databases that killed drills left behind, and close their reports."""
    try:
        cleaned = cleanup_orphans(report.pk)
    except Exception:  # a failed clean-up must not stop this drill; the next one tries again
        log.warning("could not clean up the scratch databases of earlier drills", exc_info=True)
        return
    if cleaned:
        mark_interrupted(cleaned, by=report)


def _run_steps(drill: Drill, scratch: ScratchDatabase, source, target, backup, key) -> None:
    report = drill.report
    holder: dict[str, Any] = {}
    fetched: dict[str, Any] = {"path": Path(source), "key": key}
    if target:
        copy_step = EXPORT_STEP if is_repository(get_target(target)) else "fetch"
        drill.step(copy_step, lambda: _local_copy(report, source, target, fetched), rto=True)
    local_path = Path(fetched["path"])
    drill.step("backup integrity", lambda: _integrity(local_path, key, holder))
    manifest, inventory = holder["manifest"], holder["inventory"]
    created = _created_at(backup, manifest)
    if created is not None:
        report.backup_age_seconds = max(0.0, (report.started_at - created).total_seconds())
        report.save(update_fields=["backup_age_seconds"])
    with override_settings(MEDIA_ROOT=str(scratch.media_root)), \
            storage_media.redirected(scratch.media_root / ".storages"):  # removed with the scratch folder
        in_storages = {f["root"] for f in inventory.files if storage_media.is_storage_root(f["root"])}
        ctx = checks.DrillContext(
            alias=scratch.alias, manifest=manifest, inventory=inventory, media_root=scratch.media_root,
            file_roots={**file_roots(), **{r: storage_media.redirect_folder(r) for r in in_storages}},
        )

        def restore() -> str:
            _refuse_live_roots(inventory)
            return _restore(drill, scratch, local_path, None, key)

        drill.step("schema", lambda: _schema(scratch, manifest), rto=True)
        try:
            drill.step("restore", restore, rto=True)
        except _Stop:
            ctx.restored = False
            _run_checks(drill, ctx, checks.diagnosis_checks(), only_failures=True)
            raise
        report.restore_seconds = round(drill.rto, 3)
        report.save(update_fields=["restore_seconds"])
        _run_checks(drill, ctx, checks.data_checks(drill.smoke, cancel=drill.cancel))


def _run_checks(drill: Drill, ctx: checks.DrillContext, todo, *, only_failures: bool = False) -> None:
    for i, (name, func) in enumerate(todo):
        drill.check_cancel()
        drill.progress(f"check: {name}", i, len(todo))
        run = checks.run_check(name, func, ctx)
        if run.passed and only_failures:
            continue
        record_check(drill.report, run.name, run.passed, run.detail, run.seconds, sample=run.sample)


def _finish(report: DrillReport, error: str, alert: bool, started: float) -> DrillReport:
    finish_report(report, error=error, total_seconds=time.monotonic() - started)
    if not report.passed and alert:
        alert_failure(report)
    if report.passed:
        signals.send(signals.drill_finished, DrillReport, outcome=signals.SUCCEEDED, backup=report.backup,
                     report=report)
    else:
        failed = [c.name for c in report.checks.all() if not c.passed]
        message = report.error or ("failed checks: " + ", ".join(failed))
        signals.send(signals.drill_failed, DrillReport, outcome=signals.FAILED, backup=report.backup, report=report,
                     error=None, message=message)
    return report

