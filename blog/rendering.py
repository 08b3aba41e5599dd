"""Markdown to HTML, in one place so saves and the seed command render alike."""

from __future__ import annotations

_EXTENSIONS = ["fenced_code", "tables"]


def render_markdown(text: str) -> str:
    """Render a post body; a fresh Markdown instance keeps footnote/ref state from leaking between posts.

    Markdown is imported at the first rendering, not with the models: every process of the site (each
    ``manage.py`` command, a worker) loads them, few of them save a post."""
    import markdown as _markdown

    return _markdown.markdown(text, extensions=_EXTENSIONS, output_format="html")
