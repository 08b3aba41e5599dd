"""Celery application of the demo site.

The broker is Redis when ``REDIS_URL`` is set, otherwise kombu's filesystem
transport under ``var/broker`` so ``make demo`` needs no server at all
(settings.py builds both). Tasks are found in every installed app's tasks.py.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")

app = Celery("demo_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
