"""Markdown to HTML, in one place so saves and the seed command render alike."""

from __future__ import annotations

import markdown as _markdown

_EXTENSIONS = ["fenced_code", "tables"]


def render_markdown(text: str) -> str:
    """Render a post body; a fresh Markdown instance keeps footnote/ref state from leaking between posts."""
    return _markdown.markdown(text, extensions=_EXTENSIONS, output_format="html")
