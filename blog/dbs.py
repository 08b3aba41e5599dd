"""dbs_admin declarations of the demo blog: posts keep a version history (with their images)."""

from dbs_admin.registry import track_history

from .models import Post

track_history(Post, key_field="slug", html_fields=["content_html"], markdown_field="content_md")


# Restore drills: a smoke check run against the drill's scratch database.
from dbs_admin.registry import smoke_check  # noqa: E402


@smoke_check(name="blog: published posts render")
def published_posts_render(alias: str) -> str:
    """Every published post's public page renders from the restored database, title included."""
    from django.test import RequestFactory
    from django.urls import resolve, reverse
    from django.utils.html import escape

    from dbs_admin.drills.routing import reading_from

    factory = RequestFactory()
    with reading_from(alias):
        posts = list(Post.objects.filter(status=Post.Status.PUBLISHED).values_list("slug", "title"))
        for slug, title in posts:
            url = reverse("blog:post_detail", kwargs={"slug": slug})
            match = resolve(url)
            response = match.func(factory.get(url), *match.args, **match.kwargs)
            if hasattr(response, "render"):
                response.render()
            if response.status_code != 200 or escape(title).encode() not in response.content:
                raise AssertionError(f"{url} answered {response.status_code} without the post's title")
    return f"{len(posts)} published post pages rendered"
