"""Which backups to keep: the last N plus one per day, ISO week and month (GFS).

Planning is a pure function of the file names, the policy, "now" and the
names known to have verified, so the plan is deterministic and can be shown
(``dbs_prune --dry-run``) before anything is deleted. Rules:

- a backup is dated by its name (``dbs-<UTC stamp>Z-...``), never by mtime,
  which changes when a file is copied; files whose name carries no date were
  not made by us and are never deleted;
- ``last``: the N newest backups;
- ``daily`` / ``weekly`` / ``monthly``: for each of the D most recent calendar
  days (W ISO weeks, M months) counting back from today, the newest backup
  made in it. Days, weeks and months are those of the site's TIME_ZONE, so a
  backup taken at 00:30 in Auckland belongs to that local day, not to the UTC
  one before;
- the newest backup that verified is always kept, however old, so pruning
  can never leave only damaged or unchecked files.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from dbs_admin.targets.base import StoredFile
from dbs_admin.targets.errors import TargetConfigError
from dbs_admin.targets.naming import parse_backup_file_name

RULES = ("last", "daily", "weekly", "monthly")
# Leftovers of interrupted uploads (incomplete multipart uploads, unpublished objects) older than this are removed
# after pruning: longer than any job may run (6 hours), so an upload still in progress is never touched.
STALE_UPLOAD_AGE = timedelta(days=1)


@dataclass(frozen=True)
class RetentionPolicy:
    last: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], where: str = "retention policy") -> RetentionPolicy:
        """Checked policy from a settings entry such as ``{"last": 7, "daily": 7, "weekly": 4, "monthly": 12}``."""
        if not isinstance(data, Mapping):
            raise TargetConfigError(f"{where} must be a dict with keys among {list(RULES)}")
        unknown = sorted(set(data) - set(RULES))
        if unknown:
            raise TargetConfigError(f"{where} has unknown keys {unknown}; valid keys are {list(RULES)}")
        for key, value in data.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise TargetConfigError(f"{where}[{key!r}] must be a whole number >= 0, not {value!r}")
        policy = cls(**dict(data))
        if not any(getattr(policy, rule) for rule in RULES):
            raise TargetConfigError(f"{where} keeps nothing and would delete every backup; set at least 'last'")
        return policy

    @classmethod
    def for_target(cls, target_name: str) -> RetentionPolicy:
        """``DBS_ADMIN["RETENTION"][target_name]``, else its ``"*"`` entry."""
        from dbs_admin.conf import dbs_settings

        policies = dbs_settings.RETENTION or {}
        for key in (target_name, "*"):
            if key in policies:
                return cls.from_mapping(policies[key], f'DBS_ADMIN["RETENTION"][{key!r}]')
        raise TargetConfigError(
            f'no retention policy for target {target_name!r}: add DBS_ADMIN["RETENTION"][{target_name!r}] '
            'or a "*" default'
        )

    def describe(self) -> str:
        return ", ".join(f"{rule} {getattr(self, rule)}" for rule in RULES)


@dataclass(frozen=True)
class RetentionPlan:
    keep: tuple[str, ...]  # newest first
    delete: tuple[str, ...]  # newest first
    reasons: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # why each name is kept or deleted


def _month_back(day: date, months: int) -> tuple[int, int]:
    index = day.year * 12 + (day.month - 1) - months
    return index // 12, index % 12 + 1


def _windows(policy: RetentionPolicy, today: date) -> dict[str, set[Any]]:
    """The period keys each GFS rule keeps one backup for, counting back from ``today``."""
    return {
        "daily": {today - timedelta(days=k) for k in range(policy.daily)},
        "weekly": {(today - timedelta(weeks=k)).isocalendar()[:2] for k in range(policy.weekly)},
        "monthly": {_month_back(today, k) for k in range(policy.monthly)},
    }


def _period(rule: str, local: datetime) -> Any:
    if rule == "daily":
        return local.date()
    if rule == "weekly":
        return local.isocalendar()[:2]
    return (local.year, local.month)


def _label(rule: str, key: Any) -> str:
    if rule == "daily":
        return f"daily {key.isoformat()}"
    if rule == "weekly":
        return f"weekly {key[0]}-W{key[1]:02d}"
    return f"monthly {key[0]}-{key[1]:02d}"


def plan_retention(
    files: Iterable[StoredFile | str],
    policy: RetentionPolicy | Mapping[str, int],
    *,
    now: datetime,
    verified_names: Collection[str] = (),
    tz: tzinfo | None = None,
) -> RetentionPlan:
    """Split ``files`` into those to keep and those to delete under ``policy`` (see the module docstring).

    ``tz`` defaults to the site's TIME_ZONE; ``now`` must be aware.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not isinstance(policy, RetentionPolicy):
        policy = RetentionPolicy.from_mapping(policy)
    if tz is None:
        from django.utils import timezone

        tz = timezone.get_default_timezone()
    reasons: dict[str, list[str]] = {}
    dated: list[tuple[datetime, str]] = []
    for item in files:
        name = item if isinstance(item, str) else item.name
        parsed = parse_backup_file_name(name)
        if parsed is None:
            reasons[name] = ["name carries no backup date (not made by dbs_admin): never pruned"]
        else:
            dated.append((parsed[0], name))
            reasons[name] = []
    dated.sort(reverse=True)  # newest first; equal stamps ordered by name, so the plan is deterministic

    for position, (_, name) in enumerate(dated[: policy.last], start=1):
        reasons[name].append(f"last {policy.last} (#{position})")
    windows = _windows(policy, now.astimezone(tz).date())
    for rule, window in windows.items():
        taken: set[Any] = set()
        for created_at, name in dated:
            key = _period(rule, created_at.astimezone(tz))
            if key in window and key not in taken:
                taken.add(key)
                reasons[name].append(_label(rule, key))
    verified = set(verified_names)
    for _, name in dated:
        if name in verified:
            reasons[name].append("newest verified backup")
            break

    order = [name for _, name in dated] + sorted(n for n in reasons if parse_backup_file_name(n) is None)
    keep = tuple(n for n in order if reasons[n])
    delete = tuple(n for n in order if not reasons[n])
    for name in delete:
        reasons[name] = ["outside every retention rule"]
    return RetentionPlan(keep=keep, delete=delete, reasons={n: tuple(r) for n, r in reasons.items()})


def prune(
    target_name: str | None = None,
    *,
    dry_run: bool = False,
    policy: RetentionPolicy | Mapping[str, int] | None = None,
) -> RetentionPlan:
    """Apply a retention policy to a target: delete files, sidecars and their records.

    ``policy`` defaults to ``DBS_ADMIN["RETENTION"]`` for the target (callers
    with their own, e.g. a schedule's, pass it). The ``BackupCopy`` row of
    each deleted file goes; the ``Backup`` row goes too once no copy of it
    remains anywhere. Every deletion is audited.
    """
    from django.utils import timezone

    from dbs_admin.models import Backup
    from dbs_admin.targets import get_target
    from dbs_admin.targets.errors import StoredFileMissingError, TargetError

    target = get_target(target_name)
    if policy is None:
        policy = RetentionPolicy.for_target(target.name)
    elif not isinstance(policy, RetentionPolicy):
        policy = RetentionPolicy.from_mapping(policy, f"retention policy of target {target.name!r}")
    files = target.list()
    verified = set(
        Backup.objects.filter(status__in=[Backup.Status.OK, Backup.Status.HEALED]).values_list("name", flat=True)
    )
    plan = plan_retention(files, policy, now=timezone.now(), verified_names=verified)
    if dry_run:
        return plan
    for done, name in enumerate(plan.delete):
        try:
            target.delete(name)
        except StoredFileMissingError:
            pass  # already gone (another prune, or an operator): the records still have to follow
        except TargetError as exc:
            raise TargetError(
                f"pruning target {target.name!r} stopped after deleting {done} of {len(plan.delete)} files: {exc}"
            ) from exc
        _forget_copy(name, target.name, policy)
    _sweep(target)
    return plan


def _sweep(target: Any) -> None:
    """Remove what interrupted uploads left on the target (storage targets; see ``STALE_UPLOAD_AGE``)."""
    import logging

    sweep = getattr(target, "sweep", None)
    if sweep is None:
        return
    removed = sweep(STALE_UPLOAD_AGE)
    if removed:
        logging.getLogger("dbs_admin.backups").info(
            "removed %d leftover(s) of interrupted uploads from target %s", len(removed), target.name)


def _forget_copy(name: str, target_name: str, policy: RetentionPolicy) -> None:
    """Drop the records of a pruned copy, and the backup's row when it was the last copy."""
    from django.db import transaction

    from dbs_admin.backups.catalog import describe_what_remains
    from dbs_admin.models import AuditEvent, Backup, BackupCopy

    with transaction.atomic():
        backup = Backup.objects.filter(name=name).first()
        AuditEvent.objects.create(
            action="prune",
            backup=backup,
            object_repr=name[:300],
            detail=f"deleted from target {target_name!r} by retention ({policy.describe()})",
        )
        if backup is None:
            return
        removed, _ = BackupCopy.objects.filter(backup=backup, target=target_name).delete()
        # Without a copy row for this target we cannot know where else it lives: keep the record. Copies that
        # failed when the backup was made hold nothing, so they do not keep it alive.
        if removed and not backup.copies.filter(state=BackupCopy.State.STORED).exists():
            backup.delete()
        elif removed:
            describe_what_remains(backup, target_name)  # a mixed backup's row: the size of what is left
