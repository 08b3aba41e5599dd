"""The demo blog: categories, tags, posts written in Markdown or HTML, uploaded images."""
