"""The README's "Adding dbs_admin to an existing project", applied as written to a fresh ``startproject``.

The code blocks are read from README.md (never copied here): a block whose first line is
``# mysite/<file>: add ...`` is appended to that file of the new project, ``: new file`` creates it. The test
adds only what is about this machine (which database, which Redis database and queue), then migrates, runs
``check``, sets up the keys with ``dbs_keys init`` as the README says, backs up, and drills through a real
Celery worker started the README's way. A README that drifts from the code fails here.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dbs_admin.conf import _defaults
from tests import services

README = services.ROOT / "README.md"
SECTION = "## Adding dbs_admin to an existing project"
FILE_LINE = re.compile(r"^# (mysite/[\w./]+): (add|new file)")
PASSPHRASE = "readme drill identity passphrase"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n## ", start + len(title))
    return text[start:end if end != -1 else None]


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)]


def project_blocks() -> list[tuple[str, str, str]]:
    """``(path, "add" | "new file", body)`` of the blocks that belong to the new project's files."""
    found = []
    for language, body in code_blocks(section(SECTION)):
        first = body.splitlines()[0] if body else ""
        if language == "python" and (m := FILE_LINE.match(first)):
            found.append((m.group(1), m.group(2), body))
    return found


def test_the_readme_shows_how_to_set_up_every_part():
    paths = {path for path, _, _ in project_blocks()}
    assert paths == {"mysite/settings.py", "mysite/celery.py", "mysite/__init__.py", "mysite/urls.py"}
    text = section(SECTION)
    for needed in ("dbs_keys init", "DBS_DRILL_IDENTITY_PASSPHRASE", "celery -A mysite worker", "beat",
                   "HistoryAdminMixin", "HistoryUserMiddleware", "from django.urls import include"):
        assert needed in text, needed


def test_the_settings_section_names_every_key_with_its_default():
    table = section("## Settings")
    rows = {m.group(1) for m in re.finditer(r"^\| `([A-Z0-9_]+)` \| ", table, re.M)}
    assert rows == set(_defaults()), "README's Settings table and dbs_admin/conf.py disagree"


def _database(tmp: Path) -> tuple[str, str | None]:
    """Settings lines for the project's database: SQLite (startproject's), or a fresh PostgreSQL database in
    the PostgreSQL phase of the suite; and the name of that database, to drop."""
    if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
        return "", None
    url = urlsplit(services.postgres_url())
    name = f"dbs_readme_{uuid.uuid4().hex[:10]}"
    lines = (f"DATABASES = {{'default': {{'ENGINE': 'django.db.backends.postgresql', 'NAME': {name!r}, "
             f"'USER': {url.username or 'postgres'!r}, 'PASSWORD': {url.password or ''!r}, "
             f"'HOST': {url.hostname or '127.0.0.1'!r}, 'PORT': {url.port or 5432}}}}}\n")
    return lines, name


def _pg(sql: str) -> None:
    import psycopg

    with psycopg.connect(services.postgres_url(), autocommit=True) as conn:
        conn.execute(sql)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_fresh_project_built_from_the_readme_backs_up_and_drills(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(project)], check=True)
    for path, mode, body in project_blocks():
        target = project / path
        if mode == "new file":
            assert not target.exists(), f"README says {path} is new, but startproject made one"
            target.write_text(body)
        else:
            target.write_text(target.read_text() + "\n" + body)

    broker = services.redis_url_for(11)
    queue = f"dbs-readme-{uuid.uuid4().hex[:8]}"
    database, pg_name = _database(tmp_path)
    settings_py = project / "mysite" / "settings.py"
    settings_py.write_text(settings_py.read_text() + "\n# --- this machine (the test), not the README ---\n"
                           + database + f"CELERY_BROKER_URL = {broker!r}\nCELERY_TASK_DEFAULT_QUEUE = {queue!r}\n")
    if pg_name:
        _pg(f'CREATE DATABASE "{pg_name}"')
    env = {k: v for k, v in os.environ.items()
           if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL", "DBS_PASSPHRASE", "PYTHONPATH")}
    env.update(DJANGO_SETTINGS_MODULE="mysite.settings", DBS_DRILL_IDENTITY_PASSPHRASE=PASSPHRASE)

    def manage(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=project, env=env, capture_output=True,
                                text=True, timeout=300)
        if check:
            assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    worker = None
    try:
        manage("migrate", "--no-input")
        checked = manage("check")
        assert "System check identified" in checked.stdout + checked.stderr
        assert checked.stderr.count("dbs_admin.W003") == 1 and "dbs_admin.W00" not in checked.stderr.replace(
            "dbs_admin.W003", "")  # not set up yet, said once; nothing failing
        keys = manage("dbs_keys", "init").stdout
        lines = [line.strip() for line in keys.splitlines() if line.strip().startswith(('"RECIPIENTS"',
                                                                                        '"DRILL_IDENTITY"'))]
        assert len(lines) == 2 and PASSPHRASE not in keys
        settings_py.write_text(settings_py.read_text() + "DBS_ADMIN.update({" + " ".join(lines) + "})\n")
        manage("migrate", "--no-input")  # turns the daily backup and the weekly drill on
        enabled = manage("shell", "-c", "from django_celery_beat.models import PeriodicTask; print(sorted("
                         "PeriodicTask.objects.filter(enabled=True).values_list('task', flat=True)))").stdout
        enabled = enabled.strip().splitlines()[-1]
        assert "dbs_admin.drill" in enabled and "dbs_admin.scheduled_backup" in enabled

        log = tmp_path / "worker.log"
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "mysite", "worker", "--loglevel", "INFO", "--pool", "solo",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-n", f"{queue}@%h"],
            cwd=project, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        backup = manage("dbs_backup", "--no-input")  # sealed to the recipient: no passphrase anywhere
        assert "verified" in backup.stdout and "dbs_admin.W" not in backup.stderr
        drill = manage("shell", "-c", DRILL_THROUGH_THE_WORKER).stdout.strip().splitlines()[-1]
        state, message = json.loads(drill)
        assert state == "succeeded", f"{message}\n{log.read_text()[-4000:]}"
        status = manage("dbs_status")
        assert status.stdout.strip().endswith("healthy"), status.stdout
        page = manage("shell", "-c", "from django.test import Client; from django.contrib.auth import "
                      "get_user_model; u = get_user_model().objects.create_superuser('root', 'r@x.org', 'pw'); "
                      "c = Client(SERVER_NAME='localhost'); c.force_login(u); print(c.get('/dbs/status/').status_code, "
                      "c.get('/admin/dbs_admin/dashboard/').status_code)").stdout.splitlines()[-1].split()
        assert page == ["200", "200"]
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
        if pg_name:
            _pg(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')


DRILL_THROUGH_THE_WORKER = """
import json, time
from dbs_admin.jobs import launch
from dbs_admin.models import Job
job = launch.queue_drill(target="local")
deadline = time.monotonic() + 240
while not Job.objects.get(pk=job.pk).finished and time.monotonic() < deadline:
    time.sleep(0.5)
job.refresh_from_db()
print(json.dumps([job.state, job.message]))
"""
