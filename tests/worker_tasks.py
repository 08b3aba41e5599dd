"""Tasks only the worker tests load (``celery worker -I tests.worker_tasks``)."""

from pathlib import Path

from demo_site.celery import app


@app.task(name="tests.write_marker")
def write_marker(path: str, text: str) -> None:
    """Leave a file behind, proving a real worker took the message off the broker and ran it."""
    from django.conf import settings

    Path(path).write_text(f"{text} {settings.ROOT_URLCONF}")
