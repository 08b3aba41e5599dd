"""Deterministic demo content: the reference workload of every benchmark.

Speed matters (20,000 posts well under a minute), so posts are written with
``bulk_create`` and their HTML is assembled from a cache of rendered Markdown
blocks: a body is a sequence of blank-line separated blocks drawn from a
finite pool, and Markdown renders such blocks independently, so joining the
cached renderings gives exactly what ``Post.save()`` would produce (a test
holds us to that).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from datetime import timedelta

from django.core.files.base import ContentFile
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify
from PIL import Image, ImageDraw

from .models import Attachment, Category, Post, Tag
from .rendering import render_markdown

WORDS = (
    "backup restore django query index cache migration schema model field relation signal worker queue "
    "broker task schedule retention archive snapshot version history diff merge branch commit deploy server "
    "client request response template static media image upload stream buffer block parity hash cipher key "
    "token session cookie header payload manifest drill recovery latency throughput memory disk sector page "
    "python sqlite postgres redis celery admin editor markdown draft publish review release note guide tip"
).split()
CATEGORIES = (
    "Engineering", "Operations", "Databases", "Security", "Python", "Django",
    "Tutorials", "Release notes", "Meta", "Performance", "Design", "Community",
)
TAG_COUNT = 60
PARAGRAPH_POOL = 240


@dataclass
class SeedResult:
    posts: int
    images: int
    tags: int
    categories: int


class _BlockPool:
    """Markdown blocks with their rendered HTML, rendered once each."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.blocks: list[tuple[str, str]] = []
        for i in range(PARAGRAPH_POOL):
            kind = i % 8
            if kind == 0:
                md = "## " + self._sentence(3, 7).rstrip(".")
            elif kind == 5:
                md = "\n".join("- " + self._sentence(3, 9) for _ in range(rng.randint(2, 5)))
            elif kind == 7:
                md = "```python\n" + "\n".join(
                    f"{rng.choice(WORDS)}_{j} = {rng.randint(0, 999)}" for j in range(rng.randint(2, 6))
                ) + "\n```"
            else:
                md = " ".join(self._sentence(6, 18) for _ in range(rng.randint(2, 6)))
                if rng.random() < 0.3:
                    w = rng.choice(WORDS)
                    md = md.replace(f" {w} ", f" **{w}** ", 1)
            self.blocks.append((md, render_markdown(md)))

    def _sentence(self, lo: int, hi: int) -> str:
        words = [self.rng.choice(WORDS) for _ in range(self.rng.randint(lo, hi))]
        return " ".join(words).capitalize() + "."

    def body(self, count: int) -> list[tuple[str, str]]:
        """``count`` blocks; never two lists in a row (Markdown would merge them into one list)."""
        blocks: list[tuple[str, str]] = []
        while len(blocks) < count:
            md, html = self.rng.choice(self.blocks)
            if blocks and md.startswith("- ") and blocks[-1][0].startswith("- "):
                continue
            blocks.append((md, html))
        return blocks


def _make_image(rng: random.Random, index: int) -> bytes:
    """A small, distinct PNG: a gradient background with shapes and a label."""
    w, h = 480, 300
    base = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    img = Image.new("RGB", (w, h), base)
    draw = ImageDraw.Draw(img)
    for y in range(0, h, 6):
        shade = tuple((c + y // 2) % 256 for c in base)
        draw.rectangle([0, y, w, y + 5], fill=shade)
    for _ in range(6):
        x0, y0 = rng.randrange(w - 60), rng.randrange(h - 60)
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        draw.ellipse([x0, y0, x0 + rng.randint(20, 120), y0 + rng.randint(20, 120)], fill=colour)
    draw.text((12, 12), f"figure {index}", fill=(255, 255, 255))
    # A band of photographic-like noise so images weigh what real uploads do (~60 KB).
    band = 40 + index % 40
    noise = Image.frombytes("L", (w, band), rng.randbytes(w * band)).convert("RGB")
    img.paste(noise, (0, h - noise.height))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def seed(*, posts: int, images: int, seed: int = 1, batch_size: int = 2000) -> SeedResult:
    """Create categories, tags, ``images`` attachments and ``posts`` posts; deterministic for a seed."""
    rng = random.Random(seed)
    pool = _BlockPool(rng)
    now = timezone.now().replace(microsecond=0)

    with transaction.atomic():
        categories = Category.objects.bulk_create(
            [Category(name=name, slug=slugify(name)) for name in CATEGORIES]
        )
        tag_names = sorted({f"{rng.choice(WORDS)}-{rng.choice(WORDS)}" for _ in range(TAG_COUNT * 3)})
        tag_names = tag_names[:TAG_COUNT]
        tags = Tag.objects.bulk_create([Tag(name=name, slug=slugify(name)) for name in tag_names])

        attachments = []
        for i in range(images):
            att = Attachment(alt_text=f"Figure {i}", uploaded_at=now - timedelta(days=rng.randint(0, 700)))
            att.image.save(f"seed-{seed}-{i:05d}.png", ContentFile(_make_image(rng, i)), save=False)
            attachments.append(att)
        attachments = Attachment.objects.bulk_create(attachments)
        image_blocks = []
        for att in attachments:
            md = f"![{att.alt_text}]({att.image.url})"
            image_blocks.append((md, render_markdown(md)))

        through = Post.tags.through
        created = 0
        for start in range(0, posts, batch_size):
            batch, post_tags = [], []
            for i in range(start, min(posts, start + batch_size)):
                blocks = pool.body(rng.randint(3, 9))
                if image_blocks and rng.random() < 0.6:
                    for _ in range(rng.randint(1, 3)):
                        blocks.insert(rng.randrange(len(blocks) + 1), rng.choice(image_blocks))
                title = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))).capitalize()
                created_at = now - timedelta(minutes=rng.randint(0, 60 * 24 * 730))
                batch.append(Post(
                    title=title,
                    slug=f"{slugify(title)[:200]}-{seed}-{i}",
                    excerpt=pool._sentence(10, 24),
                    editor_type=Post.EditorType.MARKDOWN,
                    content_md="\n\n".join(md for md, _ in blocks),
                    content_html="\n".join(html for _, html in blocks),
                    status=Post.Status.PUBLISHED if rng.random() < 0.85 else Post.Status.DRAFT,
                    created_at=created_at,
                    updated_at=created_at + timedelta(minutes=rng.randint(0, 5000)),
                    category=rng.choice(categories),
                ))
                post_tags.append(rng.sample(tags, rng.randint(0, 4)))
            batch = Post.objects.bulk_create(batch)
            # bulk_create skips auto_now; keep the generated updated_at.
            through.objects.bulk_create(
                [through(post_id=p.pk, tag_id=t.pk) for p, ts in zip(batch, post_tags) for t in ts]
            )
            created += len(batch)
    return SeedResult(posts=created, images=len(attachments), tags=len(tags), categories=len(categories))
