"""The human-readable twin of each version: ``<model>.md`` with a YAML front matter.

The json is what restores read; the Markdown file is for people (and for git
diffs): the short fields in the front matter, the long Markdown body below.
"""

from __future__ import annotations

from typing import Any

import yaml

from dbs_admin.registry import HistoryOptions

FRONT_MATTER_SKIP_TYPES = (dict,)
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml when available: ~10x faster


def render(options: HistoryOptions, fields: dict[str, Any], image_names: list[str], version_id: str) -> str:
    """Front matter (every short field, tags, images, version) and the Markdown (or first HTML) body."""
    body_field = options.markdown_field or (options.html_fields[0] if options.html_fields else None)
    long_fields = {options.markdown_field, *options.html_fields}
    front: dict[str, Any] = {
        name: value for name, value in fields.items()
        if name not in long_fields and not isinstance(value, FRONT_MATTER_SKIP_TYPES)
    }
    front["images"] = image_names
    front["version"] = version_id
    header = yaml.dump(front, Dumper=_Dumper, allow_unicode=True, sort_keys=False, default_flow_style=False)
    body = (fields.get(body_field) or "") if body_field else ""
    return f"---\n{header}---\n\n{body.rstrip()}\n"


def parse(text: str) -> tuple[dict[str, Any], str]:
    """Front matter and body of a file written by :func:`render` (used by tests and the importer)."""
    if not text.startswith("---\n"):
        return {}, text
    header, _, body = text[4:].partition("\n---\n")
    return yaml.safe_load(header) or {}, body.lstrip("\n")
