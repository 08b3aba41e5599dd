"""A real Celery worker (a separate process, not eager mode) runs a task sent through each broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery

from tests import services


def _run_worker_until(marker: Path, env: dict[str, str], queue: str, send) -> str:
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "demo_site", "worker", "-I", "tests.worker_tasks",
         "--pool", "solo", "--queues", queue, "--loglevel", "WARNING", "--without-gossip", "--without-mingle"],
        cwd=services.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        send()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not marker.exists():
            assert worker.poll() is None, f"worker exited early:\n{worker.stdout.read()}"
            time.sleep(0.2)
        assert marker.exists(), "the worker did not run the task within 60 s"
        return marker.read_text()
    finally:
        worker.terminate()
        try:
            worker.wait(10)
        except subprocess.TimeoutExpired:
            worker.kill()


def _base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env["DBS_VAR_DIR"] = str(tmp_path / "var")
    return env


def test_worker_runs_task_through_filesystem_broker(tmp_path):
    env = _base_env(tmp_path)
    broker = tmp_path / "var" / "broker"
    for sub in ("queue", "processed", "control"):
        (broker / sub).mkdir(parents=True)
    client = Celery(broker="filesystem://")
    client.conf.broker_transport_options = {
        "data_folder_in": str(broker / "queue"),
        "data_folder_out": str(broker / "queue"),
        "processed_folder": str(broker / "processed"),
        "control_folder": str(broker / "control"),
    }
    marker, queue = tmp_path / "ran.txt", f"q-{uuid.uuid4().hex[:8]}"
    text = _run_worker_until(
        marker, env, queue, lambda: client.send_task("tests.write_marker", args=[str(marker), "fs"], queue=queue)
    )
    assert text == "fs demo_site.urls"


def test_worker_runs_task_through_redis(tmp_path):
    url = services.redis_url()
    env = {**_base_env(tmp_path), "REDIS_URL": url}
    client = Celery(broker=url)
    marker, queue = tmp_path / "ran.txt", f"q-{uuid.uuid4().hex[:8]}"
    text = _run_worker_until(
        marker, env, queue, lambda: client.send_task("tests.write_marker", args=[str(marker), "redis"], queue=queue)
    )
    assert text == "redis demo_site.urls"


def test_settings_pick_broker_from_environment(tmp_path):
    """REDIS_URL selects Redis; without it the filesystem transport gets one existing folder in and out."""
    code = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE']='demo_site.settings'; django.setup();"
        "from django.conf import settings as s; import json, os.path as p;"
        "o=getattr(s,'CELERY_BROKER_TRANSPORT_OPTIONS',{});"
        "print(json.dumps([s.CELERY_BROKER_URL, o.get('data_folder_in')==o.get('data_folder_out'),"
        " p.isdir(o.get('data_folder_in') or ''), p.isdir(o.get('control_folder') or '')]))"
    )
    env = _base_env(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], cwd=services.ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == '["filesystem://", true, true, true]', out.stderr
    env["REDIS_URL"] = "redis://127.0.0.1:6379/3"
    out = subprocess.run([sys.executable, "-c", code], cwd=services.ROOT, env=env, capture_output=True, text=True)
    assert out.stdout.strip() == '["redis://127.0.0.1:6379/3", true, false, false]', out.stderr


@pytest.mark.django_db
def test_beat_uses_database_scheduler(settings):
    assert settings.CELERY_BEAT_SCHEDULER == "django_celery_beat.schedulers:DatabaseScheduler"
