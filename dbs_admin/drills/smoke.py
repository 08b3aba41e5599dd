"""Smoke checks within a time budget: the :class:`SmokeContext` a check samples restored objects with.

A smoke check proves the site works on the restored database: its pages
render, its services answer. Proving that does not take every object, and a
check that visits every object grows with the site until the drill is too
slow to run often. So a drill hands each check a :class:`SmokeContext` whose
:meth:`~SmokeContext.sample` yields, from any queryset, the first object,
the last one and ``SMOKE_SAMPLE_SIZE`` others picked at random with a seed,
and stops yielding when the check's share of ``SMOKE_BUDGET_SECONDS`` is
spent::

    from dbs_admin.drills.smoke import SmokeContext
    from dbs_admin.registry import smoke_check

    @smoke_check(name="blog: published posts render")
    def published_posts_render(smoke: SmokeContext) -> str:
        for post in smoke.sample(Post.objects.filter(status="published")):
            ...  # raise to fail: the drill names the post (model and pk)
        return f"{smoke.checked} pages rendered"

While such a check runs, the ORM reads the scratch database (see
:mod:`.routing`), so the site's own views and managers work unchanged.

A check is handed a context when its parameter is annotated ``SmokeContext``;
a check written the older way (``def check(alias)``) gets the scratch
database alias, runs once, whole, and counts against the budget.

The drill records, per check, the seed and the primary keys sampled, and a
failure raised while an object is being checked names that object; the same
seed on the same backup samples the same objects in the same order
(``dbs_drill --smoke-seed``). ``SMOKE_FULL`` (``dbs_drill --full-smoke``) makes
:meth:`~SmokeContext.sample` yield every object instead, with no budget.
"""

from __future__ import annotations

import inspect
import random
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import models

from dbs_admin.backups.errors import CancelledError
from dbs_admin.conf import dbs_settings
from dbs_admin.drills.routing import reading_from

Cancel = Callable[[], bool]
SEED_RANGE = 1_000_000  # seeds short enough to type back
FETCH_BATCH = 500  # objects per query (well under every engine's limit of query parameters)


@dataclass(frozen=True)
class SmokePlan:
    """How one drill runs its smoke checks: sampled within a budget, or every object (``full``)."""

    seed: int | None  # None when full: nothing is picked at random
    budget: float  # seconds for all smoke checks together
    sample_size: int  # objects picked at random per sample, besides the first and the last
    full: bool = False

    @classmethod
    def from_settings(cls, *, seed: int | None = None, full: bool | None = None, budget: float | None = None,
                      sample_size: int | None = None) -> SmokePlan:
        """The settings' plan, with any argument given overriding its setting; a fresh seed unless given.

        A seed given asks for a sample: it overrides ``SMOKE_FULL`` unless ``full`` says otherwise.
        """
        if full is None:
            full = False if seed is not None else bool(dbs_settings.SMOKE_FULL)
        budget = max(0.0, float(dbs_settings.SMOKE_BUDGET_SECONDS if budget is None else budget))
        size = max(0, int(dbs_settings.SMOKE_SAMPLE_SIZE if sample_size is None else sample_size))
        if full:
            seed = None
        elif seed is None:
            seed = secrets.randbelow(SEED_RANGE)
        return cls(seed=seed, budget=budget, sample_size=size, full=full)


class SmokeBudget:
    """The budget shared by a drill's smoke checks: each check gets a fair share of what is left."""

    def __init__(self, plan: SmokePlan, checks: int, *, cancel: Cancel | None = None):
        self.plan = plan
        self.left = max(1, checks)
        self.spent = 0.0
        self.cancel = cancel or (lambda: False)

    def context(self, alias: str, check: str) -> SmokeContext:
        """The context of the next check: its deadline is now plus an equal part of the budget left."""
        share = None if self.plan.full else max(0.0, self.plan.budget - self.spent) / self.left
        return SmokeContext(alias, check=check, seed=self.plan.seed, sample_size=self.plan.sample_size,
                            full=self.plan.full, budget=share, cancel=self.cancel)

    def charge(self, seconds: float) -> None:
        self.spent += seconds
        self.left = max(1, self.left - 1)


def _pk(value: Any) -> Any:
    """A primary key as JSON keeps it (int and str as they are, anything else as text)."""
    return value if isinstance(value, (int, str)) else str(value)


@dataclass
class Sample:
    """One :meth:`SmokeContext.sample` call: what was picked from which queryset, and what was checked."""

    model: str  # app_label.ModelName
    total: int  # objects the queryset holds
    picked: int  # objects chosen (every one when full)
    checked: list[Any] = field(default_factory=list)  # pks yielded, in order (not kept when full)
    checked_count: int = 0
    stopped_by_budget: bool = False

    def record(self, *, full: bool) -> dict[str, Any]:
        data: dict[str, Any] = {"model": self.model, "total": self.total, "picked": self.picked,
                                "checked_count": self.checked_count, "stopped_by_budget": self.stopped_by_budget}
        if not full:
            data["checked"] = self.checked
        return data


class SmokeContext:
    """What a smoke check is handed: the scratch alias, and :meth:`sample` for the objects to check.

    ``alias`` is the scratch database; ``seed`` and ``sample_size`` say what
    :meth:`sample` picks; ``full`` is True when every object is to be
    checked; ``budget`` is this check's share of the smoke budget in seconds,
    counted from now (None: no budget), and ``deadline`` its end on
    ``time.monotonic()``. ``checked`` counts the objects yielded.
    """

    def __init__(self, alias: str, *, check: str = "", seed: int | None = 0, sample_size: int = 100,
                 full: bool = False, budget: float | None = None, cancel: Cancel | None = None):
        self.alias = alias
        self.check = check
        self.seed = seed
        self.sample_size = sample_size
        self.full = full
        self.budget = None if full else budget
        self.deadline = None if self.budget is None else time.monotonic() + self.budget
        self.cancel = cancel or (lambda: False)
        self.samples: list[Sample] = []
        self.current: models.Model | None = None  # the object being checked (set while the check has it)

    # --- time -------------------------------------------------------------------------

    @property
    def time_left(self) -> float | None:
        """Seconds left of this check's budget (never negative); None without a budget."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    @property
    def out_of_time(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    @property
    def checked(self) -> int:
        """Objects yielded so far by every :meth:`sample` of this check."""
        return sum(s.checked_count for s in self.samples)

    @property
    def stopped_by_budget(self) -> bool:
        return any(s.stopped_by_budget for s in self.samples)

    # --- sampling ---------------------------------------------------------------------

    def sample(self, queryset: models.QuerySet | models.Manager | type[models.Model], *,
               size: int | None = None) -> Iterator[models.Model]:
        """The objects to check, read from the scratch database.

        Sampled: the first and the last object (in the queryset's ordering, by
        pk when it has none), then ``size`` (default ``sample_size``) others
        picked at random with this drill's seed, in queryset order. The same
        seed over the same rows picks the same objects. Yielding stops once
        this check's budget is spent, but the first object is always
        yielded. Full: every object, in queryset order, with no budget.
        """
        qs = _queryset(queryset).using(self.alias)
        if not qs.ordered:
            qs = qs.order_by("pk")
        self.current = None
        record = Sample(model=qs.model._meta.label, total=0, picked=0)
        self.samples.append(record)
        pks = list(qs.values_list("pk", flat=True))
        record.total = len(pks)
        if self.full:
            record.picked = len(pks)
            step = len(pks) if qs.query.is_sliced else FETCH_BATCH  # a batch at a time: no cursor left open
            for start in range(0, len(pks), max(1, step)):
                batch = pks[start:start + step]
                found = self._fetch(qs, batch)
                for pk in batch:
                    if (obj := found.get(pk)) is not None:
                        yield self._hand_over(obj, record, keep=False)
                        self.current = None
            return
        chosen = self._pick(pks, self.sample_size if size is None else size, record.model)
        record.picked = len(chosen)
        found = self._fetch(qs, chosen)
        for i, pk in enumerate(chosen):
            if i and self.out_of_time:
                record.stopped_by_budget = True
                return
            if (obj := found.get(pk)) is not None:
                yield self._hand_over(obj, record, keep=True)
                self.current = None

    def _pick(self, pks: list[Any], size: int, label: str) -> list[Any]:
        """First, last, then ``size`` of the rest at random (in queryset order); all of them when few."""
        if len(pks) <= size + 2:
            return list(pks) if len(pks) < 2 else [pks[0], pks[-1], *pks[1:-1]]
        rng = random.Random(f"{self.seed}:{self.check}:{label}:{len(self.samples)}")
        middle = sorted(rng.sample(range(1, len(pks) - 1), size))
        return [pks[0], pks[-1], *(pks[i] for i in middle)]

    @staticmethod
    def _fetch(qs: models.QuerySet, pks: list[Any]) -> dict[Any, models.Model]:
        """The chosen objects by pk, as the queryset builds them (its select_related, only(), prefetches)."""
        if not pks:
            return {}
        if qs.query.is_sliced:  # cannot be filtered further; it is bounded already
            wanted = set(pks)
            return {o.pk: o for o in qs if o.pk in wanted}
        found: dict[Any, models.Model] = {}
        for start in range(0, len(pks), FETCH_BATCH):
            found.update((o.pk, o) for o in qs.filter(pk__in=pks[start:start + FETCH_BATCH]))
        return found

    def _hand_over(self, obj: models.Model, record: Sample, *, keep: bool) -> models.Model:
        if self.cancel():
            raise CancelledError("the drill was cancelled; its scratch database was dropped")
        self.current = obj
        record.checked_count += 1
        if keep:
            record.checked.append(_pk(obj.pk))
        return obj

    # --- what the report says -----------------------------------------------------------

    def record(self, *, failed: models.Model | None = None) -> dict[str, Any]:
        """The check's sample as the report keeps it (JSON): seed, budget, every sample, the failing object."""
        data: dict[str, Any] = {"seed": self.seed, "full": self.full, "budget_seconds": self.budget,
                                "samples": [s.record(full=self.full) for s in self.samples]}
        if failed is not None:
            data["failed"] = {"model": failed._meta.label, "pk": _pk(failed.pk)}
        return data

    def summary(self) -> str:
        """One line per sample: how many of how many objects were checked, and how they were picked."""
        lines = []
        for s in self.samples:
            if self.full:
                lines.append(f"checked all {s.checked_count} {s.model}")
                continue
            how = f"first, last and {max(0, s.picked - 2)} at random" if s.picked < s.total else "all of them"
            line = f"sampled {s.picked} of {s.total} {s.model} ({how}; seed {self.seed})"
            if s.stopped_by_budget:
                line += f"; the time budget ran out after {s.checked_count} of them"
            elif s.checked_count < s.picked:
                line += f"; it stopped after {s.checked_count} of them"
            lines.append(line)
        return "\n".join(lines)

    def describe(self, obj: models.Model) -> str:
        """``app_label.Model pk=N («str»)``: the object a failure is about."""
        try:
            with reading_from(self.alias):  # a __str__ that queries reads the scratch database too
                text = str(obj)
        except Exception:  # an object whose __str__ breaks is still named by its pk
            text = ""
        text = f" ({text[:80]!r})" if text else ""
        return f"{obj._meta.label} pk={obj.pk!r}{text}"


def _queryset(value: Any) -> models.QuerySet:
    if isinstance(value, models.QuerySet):
        return value
    if isinstance(value, models.Manager):
        return value.all()
    if isinstance(value, type) and issubclass(value, models.Model):
        return value._default_manager.all()
    raise TypeError(f"sample() takes a queryset, a manager or a model, not {type(value).__name__}")


def takes_context(func: Callable[..., Any]) -> bool:
    """True when the check's first parameter is annotated ``SmokeContext`` (else it gets the alias)."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params:
        return False
    annotation = params[0].annotation
    if annotation is SmokeContext:
        return True
    return isinstance(annotation, str) and annotation.rsplit(".", 1)[-1] == "SmokeContext"
