"""dbs_admin declarations of the demo blog: posts keep a version history (with their images)."""

from dbs_admin.registry import track_history

from .models import Post

track_history(Post, key_field="slug", html_fields=["content_html"], markdown_field="content_md")
