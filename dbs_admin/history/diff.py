"""Differences between two versions: text side by side with word-level marks, related names and images +/-.

Lines are matched with difflib; inside a changed pair of lines the words are
matched again, so a one-word edit in a long paragraph shows as one word. The
output is plain data (rows of escaped HTML fragments) for the compare page,
and :func:`unified_text` gives the same as a unified diff for the terminal.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Any

from django.utils.html import escape

from dbs_admin.history.store import META

_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")
CONTEXT_LINES = 3


@dataclass(frozen=True)
class Row:
    """One side-by-side row: ``kind`` is equal, replace, delete, insert or skip (collapsed equal lines)."""

    kind: str
    left: str
    right: str


@dataclass
class FieldChange:
    name: str
    old: Any
    new: Any
    rows: list[Row]


@dataclass
class VersionDiff:
    fields: list[FieldChange] = field(default_factory=list)
    related: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    images_added: list[dict[str, Any]] = field(default_factory=list)
    images_removed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.fields or self.related or self.images_added or self.images_removed)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def word_diff(old: str, new: str) -> tuple[str, str]:
    """Two escaped HTML strings with removed words in ``<del>`` and added words in ``<ins>``."""
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    left, right = [], []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        old_part, new_part = escape("".join(a[i1:i2])), escape("".join(b[j1:j2]))
        if op == "equal":
            left.append(old_part)
            right.append(new_part)
            continue
        if old_part:
            left.append(f"<del>{old_part}</del>")
        if new_part:
            right.append(f"<ins>{new_part}</ins>")
    return "".join(left), "".join(right)


def text_rows(old: str, new: str, context: int = CONTEXT_LINES) -> list[Row]:
    a, b = old.splitlines(), new.splitlines()
    rows: list[Row] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            lines = a[i1:i2]
            if len(lines) > 2 * context + 1:
                rows += [Row("equal", escape(x), escape(x)) for x in lines[:context]]
                rows.append(Row("skip", f"{len(lines) - 2 * context} unchanged lines", ""))
                rows += [Row("equal", escape(x), escape(x)) for x in lines[-context:]]
            else:
                rows += [Row("equal", escape(x), escape(x)) for x in lines]
            continue
        olds, news = a[i1:i2], b[j1:j2]
        for k in range(max(len(olds), len(news))):
            if k < len(olds) and k < len(news):
                rows.append(Row("replace", *word_diff(olds[k], news[k])))
            elif k < len(olds):
                rows.append(Row("delete", f"<del>{escape(olds[k])}</del>", ""))
            else:
                rows.append(Row("insert", "", f"<ins>{escape(news[k])}</ins>"))
    return rows


def diff_documents(old: dict[str, Any], new: dict[str, Any], related_names: set[str] | frozenset = frozenset()
                   ) -> VersionDiff:
    """What changed from ``old`` to ``new`` (two version documents); ``related_names`` are the m2m fields."""
    result = VersionDiff()
    for name in [k for k in new if k not in (META, "images")] + [k for k in old if k not in new and k != META]:
        if name == "images":
            continue
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if name in related_names:
            b, a = set(before or []), set(after or [])
            result.related[name] = {"added": sorted(a - b), "removed": sorted(b - a)}
        else:
            result.fields.append(FieldChange(name, before, after, text_rows(_as_text(before), _as_text(after))))
    old_images = {(i["name"], i.get("sha256")): i for i in old.get("images") or []}
    new_images = {(i["name"], i.get("sha256")): i for i in new.get("images") or []}
    result.images_added = [new_images[k] for k in new_images if k not in old_images]
    result.images_removed = [old_images[k] for k in old_images if k not in new_images]
    return result


def unified_text(old: dict[str, Any], new: dict[str, Any], related_names: set[str] | frozenset = frozenset(),
                 labels: tuple[str, str] = ("a", "b")) -> str:
    """The same differences as a unified diff, for ``dbs_history diff``."""
    diff = diff_documents(old, new, related_names)
    out: list[str] = []
    for change in diff.fields:
        out += difflib.unified_diff(
            _as_text(change.old).splitlines(), _as_text(change.new).splitlines(),
            f"{labels[0]}/{change.name}", f"{labels[1]}/{change.name}", lineterm="",
        )
    for name, delta in diff.related.items():
        out += [f"{name}: +{t}" for t in delta["added"]] + [f"{name}: -{t}" for t in delta["removed"]]
    out += [f"image: +{i['name']} ({(i.get('sha256') or 'missing')[:12]})" for i in diff.images_added]
    out += [f"image: -{i['name']} ({(i.get('sha256') or 'missing')[:12]})" for i in diff.images_removed]
    return "\n".join(out) + ("\n" if out else "")
