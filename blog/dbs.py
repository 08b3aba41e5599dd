"""dbs_admin declarations of the demo blog: posts keep a version history (with their images)."""

from dbs_admin.registry import track_history

from .models import Post

track_history(Post, key_field="slug", html_fields=["content_html"], markdown_field="content_md")


# Restore drills: a smoke check run against the drill's scratch database.
from dbs_admin.drills.smoke import SmokeContext  # noqa: E402
from dbs_admin.registry import smoke_check  # noqa: E402


@smoke_check(name="blog: published posts render")
def published_posts_render(smoke: SmokeContext) -> str:
    """Published posts' public pages render from the restored database, title included.

    The drill samples the posts (the first, the last and a seeded random few, within its time budget;
    every one with ``dbs_drill --full-smoke``) and names the post a failure happened on.
    """
    from django.test import RequestFactory
    from django.urls import resolve, reverse
    from django.utils.html import escape

    factory = RequestFactory()
    published = Post.objects.filter(status=Post.Status.PUBLISHED).only("pk", "slug", "title")
    for post in smoke.sample(published):
        url = reverse("blog:post_detail", kwargs={"slug": post.slug})
        match = resolve(url)
        response = match.func(factory.get(url), *match.args, **match.kwargs)
        if hasattr(response, "render"):
            response.render()
        if response.status_code != 200 or escape(post.title).encode() not in response.content:
            raise AssertionError(f"{url} answered {response.status_code} without the post's title")
    return f"{smoke.checked} published post pages rendered"
