"""``manage.py demo_seed --posts N --images M [--seed S] [--flush]``: realistic demo content.

It ends with ``dbs_history snapshot``: every seeded post gets its first version, so its original text is
there to compare with and restore after its first edit (``--no-history`` skips it, e.g. for the
benchmarks' 20,000-post workload).
"""

from __future__ import annotations

import time

from django.core.management.base import BaseCommand, CommandError

from blog import seeding
from blog.models import Attachment, Category, Post, Tag
from dbs_admin.history.api import take_baseline
from dbs_admin.suspend import history_suspended


class Command(BaseCommand):
    help = "Create deterministic demo blog content (posts, tags, categories, images)."

    def add_arguments(self, parser):
        parser.add_argument("--posts", type=int, default=200)
        parser.add_argument("--images", type=int, default=40)
        parser.add_argument("--seed", type=int, default=1, help="Same seed, same content.")
        parser.add_argument("--flush", action="store_true", help="Delete existing blog content first.")
        parser.add_argument("--no-history", action="store_true",
                            help="Do not take the history baseline of the new posts (dbs_history snapshot).")

    def handle(self, *args, posts: int, images: int, seed: int, flush: bool, no_history: bool = False, **options):
        if posts < 0 or images < 0:
            raise CommandError("--posts and --images must be zero or more.")
        if flush:
            for attachment in Attachment.objects.iterator():
                attachment.image.delete(save=False)
            with history_suspended():  # replacing demo content wholesale: no per-post delete snapshots
                for model in (Post, Attachment, Tag, Category):
                    model.objects.all().delete()
        elif Post.objects.exists() or Category.objects.exists():
            raise CommandError("The blog already has content; pass --flush to replace it.")
        started = time.perf_counter()
        result = seeding.seed(posts=posts, images=images, seed=seed)
        self.stdout.write(
            f"Seeded {result.posts} posts, {result.images} images, {result.tags} tags, "
            f"{result.categories} categories in {time.perf_counter() - started:.1f}s."
        )
        if not no_history:
            started = time.perf_counter()
            written = take_baseline([Post])
            self.stdout.write(f"History: a first version of {sum(written.values())} posts "
                              f"in {time.perf_counter() - started:.1f}s.")
