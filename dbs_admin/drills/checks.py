"""The checks a drill runs against the restored scratch database.

Each check is a small function ``check(ctx) -> Outcome``: passed or not, and
a detail a human can act on (which table, which rows, which file). A check
that raises counts as failed with the exception as its detail, so one
broken check never hides the others. Smoke checks (registered by ``dbs.py``
modules) sample the restored objects within a shared time budget: see
:mod:`.smoke`.
"""

from __future__ import annotations

import hashlib
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.apps import apps
from django.core import checks as django_checks
from django.db import connections, models

from dbs_admin.backups.errors import CancelledError
from dbs_admin.backups.manifest import migration_state
from dbs_admin.drills.inventory import Inventory
from dbs_admin.drills.routing import reading_from
from dbs_admin.drills.smoke import Cancel, SmokeBudget, SmokeContext, SmokePlan, takes_context
from dbs_admin.registry import registry

MAX_LISTED = 20  # problems listed per check; the rest are counted


@dataclass
class Outcome:
    passed: bool
    detail: str = ""
    sample: dict[str, Any] | None = None  # smoke checks: the seed and the objects checked (DrillCheck.sample)


@dataclass
class DrillContext:
    alias: str  # the scratch database
    manifest: dict[str, Any]  # the backup's manifest summary
    inventory: Inventory  # what the payload itself claims
    media_root: Path  # where the restore wrote MEDIA_ROOT files
    file_roots: dict[str, Path] = field(default_factory=dict)  # root id -> folder, as restored
    restored: bool = True  # False: the restore failed; checks judge the backup's own records only


@dataclass
class CheckRun:
    name: str
    passed: bool
    detail: str
    seconds: float
    sample: dict[str, Any] | None = None


def _listing(problems: list[str], total: int | None = None) -> str:
    total = len(problems) if total is None else total
    shown = problems[:MAX_LISTED]
    more = f"\n... and {total - len(shown)} more" if total > len(shown) else ""
    return "\n".join(shown) + more


def _model(label: str) -> type[models.Model] | None:
    try:
        return apps.get_model(label)
    except (LookupError, ValueError):
        return None


def _count(alias: str, table: str) -> int:
    connection = connections[alias]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
        return int(cursor.fetchone()[0])


# --- the checks --------------------------------------------------------------------------


def tables_and_columns(ctx: DrillContext) -> Outcome:
    """Every table the backup holds rows for exists, with every column it carried."""
    connection = connections[ctx.alias]
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        expected: dict[str, set[str]] = {}
        for label in sorted(set(ctx.manifest.get("counts") or {}) | set(ctx.inventory.models)):
            model = _model(label)
            record = ctx.inventory.models.get(label)
            table = record["table"] if record else (model._meta.db_table if model else None)
            if table is None:
                expected[f"<{label}: model unknown to this code>"] = set()
                continue
            if record:
                by_attname = {f.attname: f.column for f in model._meta.concrete_fields} if model else {}
                cols = {by_attname.get(a, a) for a in record["columns"]}
            else:
                cols = {f.column for f in model._meta.concrete_fields}
            expected[table] = cols
        problems = []
        for table, cols in sorted(expected.items()):
            if table not in tables:
                problems.append(f"table {table} is missing")
                continue
            present = {c.name for c in connection.introspection.get_table_description(cursor, table)}
            if missing := sorted(cols - present):
                problems.append(f"table {table} lacks column(s) {', '.join(missing)}")
    if problems:
        return Outcome(False, _listing(problems))
    return Outcome(True, f"{len(expected)} tables with their columns present")


def row_counts(ctx: DrillContext) -> Outcome:
    """Rows per model in the scratch database equal the manifest's counts (and the payload's own)."""
    expected = dict(ctx.manifest.get("counts") or {})
    problems, total = [], 0
    for label, want in sorted(expected.items()):
        trailer = ctx.inventory.counts.get(label)
        if trailer is not None and trailer != want:
            problems.append(f"{label}: the backup holds {trailer} rows but its manifest records {want}")
        if not ctx.restored:
            continue
        model = _model(label)
        if model is None:
            problems.append(f"{label}: model unknown to this code (expected {want} rows)")
            continue
        got = _count(ctx.alias, model._meta.db_table)
        total += got
        if got != want:
            problems.append(f"{label}: {got} rows restored, the manifest records {want}")
    if problems:
        return Outcome(False, _listing(problems))
    return Outcome(True, f"{len(expected)} models, {total} rows, as in the manifest")


def _foreign_keys() -> Iterator[tuple[type[models.Model], models.Field]]:
    for model in apps.get_models(include_auto_created=True):
        meta = model._meta
        if not meta.managed or meta.proxy or meta.swapped:
            continue
        for f in meta.local_concrete_fields:
            if f.is_relation and (f.many_to_one or f.one_to_one) and f.related_model is not None:
                yield model, f


def foreign_keys(ctx: DrillContext) -> Outcome:
    """No row points at a row that is not there (queried for every foreign key of every model)."""
    connection = connections[ctx.alias]
    qn = connection.ops.quote_name
    problems, checked = [], 0
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        for model, f in _foreign_keys():
            child, target = model._meta.db_table, f.related_model._meta.db_table
            if child not in tables or target not in tables:
                continue
            target_col = f.target_field.column
            cursor.execute(
                f"SELECT COUNT(*) FROM {qn(child)} c WHERE c.{qn(f.column)} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {qn(target)} t WHERE t.{qn(target_col)} = c.{qn(f.column)})"
            )
            dangling = int(cursor.fetchone()[0])
            checked += 1
            if dangling:
                cursor.execute(
                    f"SELECT c.{qn(f.column)} FROM {qn(child)} c WHERE c.{qn(f.column)} IS NOT NULL AND NOT EXISTS "
                    f"(SELECT 1 FROM {qn(target)} t WHERE t.{qn(target_col)} = c.{qn(f.column)}) LIMIT 5"
                )
                sample = ", ".join(str(r[0]) for r in cursor.fetchall())
                problems.append(
                    f"{child}.{f.column} -> {target}.{target_col}: {dangling} dangling row(s) (values {sample})"
                )
    if problems:
        return Outcome(False, _listing(problems))
    return Outcome(True, f"{checked} foreign keys checked, none dangling")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def file_hashes(ctx: DrillContext) -> Outcome:
    """Every file the backup holds is restored with its recorded sha256; none named by a row is missing."""
    problems: list[str] = []
    for root, name in ctx.inventory.missing_files:
        problems.append(f"{root}/{name}: named by a row but missing from the backup (absent when it was taken)")
    problems.extend(ctx.inventory.file_problems)
    if not ctx.restored:
        return Outcome(not problems, _listing(problems) or "the backup's files agree with their records")
    for entry in ctx.inventory.files:
        folder = ctx.file_roots.get(entry["root"])
        if folder is None:
            problems.append(f"{entry['root']}/{entry['name']}: restored into a folder this drill cannot see")
            continue
        path = folder / entry["name"]
        if not path.is_file():
            problems.append(f"{entry['root']}/{entry['name']}: not restored")
        elif (sha := _sha256(path)) != entry["sha256"]:
            where = f"{entry['root']}/{entry['name']}"
            problems.append(f"{where}: sha256 {sha[:12]}... differs from the recorded {entry['sha256'][:12]}...")
    problems.extend(_unbacked_file_fields(ctx))
    if problems:
        return Outcome(False, _listing(problems))
    return Outcome(True, f"{len(ctx.inventory.files)} files restored, every sha256 matches")


def _unbacked_file_fields(ctx: DrillContext) -> list[str]:
    """FileField values of restored rows whose file is not in the scratch MEDIA_ROOT (or, for a field whose
    storage is not a local folder, in the scratch folder its storage was redirected to)."""
    from django.core.files.storage import default_storage

    from dbs_admin.backups.storage_media import redirect_folder, root_for_field

    problems = []
    connection = connections[ctx.alias]
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        tables = set(connection.introspection.table_names(cursor))
        for model in apps.get_models():
            table = model._meta.db_table
            if table not in tables or model._meta.label not in (ctx.manifest.get("counts") or {}):
                continue
            for f in model._meta.concrete_fields:
                if not isinstance(f, models.FileField):
                    continue
                in_storage = root_for_field(model, f)
                folder = ctx.media_root if in_storage is None else redirect_folder(in_storage)
                if folder is None or (in_storage is None and f.storage is not default_storage):
                    continue
                cursor.execute(f"SELECT {qn(f.column)} FROM {qn(table)} WHERE {qn(f.column)} <> ''")
                for (value,) in cursor.fetchall():
                    if value and not (folder / value).is_file():
                        problems.append(f"media/{value}: named by {model._meta.label}.{f.name} but not restored")
    return problems


def migrations(ctx: DrillContext) -> Outcome:
    """``django_migrations`` of the scratch database equals the state the backup recorded."""
    recorded = {tuple(m) for m in ctx.manifest.get("migrations") or []}
    restored = {tuple(m) for m in migration_state(connections[ctx.alias])}
    only_backup, only_scratch = sorted(recorded - restored), sorted(restored - recorded)
    if not recorded:
        return Outcome(False, "the manifest records no migration state")
    if only_backup or only_scratch:
        problems = [f"recorded but not applied: {a}.{n}" for a, n in only_backup]
        problems += [f"applied but not recorded: {a}.{n}" for a, n in only_scratch]
        return Outcome(False, _listing(problems))
    return Outcome(True, f"{len(recorded)} migrations, as recorded")


def system_checks(ctx: DrillContext) -> Outcome:
    """Django's system checks (database checks included) report no error against the scratch database."""
    messages = django_checks.run_checks(databases=[ctx.alias], include_deployment_checks=False)
    serious = [m for m in messages if m.is_serious() and not m.is_silenced()]
    if serious:
        return Outcome(False, _listing([str(m) for m in serious]))
    return Outcome(True, f"no errors ({len(messages)} lesser messages)")


def smoke_check(name: str, func: Callable[..., Any], budget: SmokeBudget | None = None
                ) -> Callable[[DrillContext], Outcome]:
    """A registered smoke check as a drill check: handed a :class:`SmokeContext` (or the alias), within budget.

    A check taking a context runs with the ORM routed to the scratch
    database; a failure raised while it holds a sampled object names that
    object, and the outcome carries the sample (seed and pks) for the report.
    """
    budget = budget or SmokeBudget(SmokePlan.from_settings(), 1)
    sampled = takes_context(func)

    def run(ctx: DrillContext) -> Outcome:
        smoke = budget.context(ctx.alias, name)
        start = time.monotonic()
        try:
            if sampled:
                with reading_from(ctx.alias):
                    result = func(smoke)
            else:
                result = func(ctx.alias)
        except CancelledError:
            raise
        except Exception as exc:
            return _smoke_failure(smoke, _one_line(exc), smoke.current)
        finally:
            budget.charge(time.monotonic() - start)
        if not sampled:
            note = "(not sampled: the check takes the database alias, not a SmokeContext, and runs whole)"
            return Outcome(result is not False, f"{_smoke_result(result)}\n{note}", {"sampled": False})
        if result is False:
            return _smoke_failure(smoke, "the smoke check returned False", smoke.current)
        summary = smoke.summary()
        return Outcome(True, _smoke_result(result) + (f"\n{summary}" if summary else ""), smoke.record())

    run.__name__ = name
    return run


def _smoke_result(result: Any) -> str:
    if result is False:
        return "the smoke check returned False"
    return str(result) if result not in (None, True) else "passed"


def _smoke_failure(smoke: SmokeContext, why: str, obj: models.Model | None) -> Outcome:
    """A failed smoke check's detail: the object it failed on first (model and pk), then the sample."""
    lines = [f"{smoke.describe(obj)}: {why}" if obj is not None else why]
    if summary := smoke.summary():
        lines.append(summary)
    return Outcome(False, "\n".join(lines), smoke.record(failed=obj))


def _one_line(exc: BaseException) -> str:
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def diagnosis_checks() -> list[tuple[str, Callable[[DrillContext], Outcome]]]:
    """Checks that judge the backup's own records when the restore refused it, to name the cause."""
    return [("row counts", row_counts), ("file hashes", file_hashes)]


def data_checks(smoke: SmokePlan | None = None, *, cancel: Cancel | None = None,
                ) -> list[tuple[str, Callable[[DrillContext], Outcome]]]:
    """The checks run after a successful restore, in order; registered smoke checks last, sharing one budget."""
    plan = smoke or SmokePlan.from_settings()
    budget = SmokeBudget(plan, len(registry.smoke_checks), cancel=cancel)
    return [
        ("tables and columns", tables_and_columns),
        ("row counts", row_counts),
        ("foreign keys", foreign_keys),
        ("file hashes", file_hashes),
        ("migrations", migrations),
        ("system checks", system_checks),
        *((f"smoke: {name}", smoke_check(name, func, budget)) for name, func in registry.smoke_checks.items()),
    ]


def run_check(name: str, func: Callable[[DrillContext], Outcome], ctx: DrillContext) -> CheckRun:
    start = time.monotonic()
    try:
        outcome = func(ctx)
    except CancelledError:
        raise
    except Exception as exc:  # a crashing check is a failed check, and the others still run
        outcome = Outcome(False, _one_line(exc))
    return CheckRun(name, outcome.passed, outcome.detail, time.monotonic() - start, outcome.sample)
