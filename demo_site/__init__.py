"""The demo blog project that shows dbs_admin at work."""

from .celery import app as celery_app

__all__ = ("celery_app",)
