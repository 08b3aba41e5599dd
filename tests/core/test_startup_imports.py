"""Start-up stays light: setting Django up (the admin's autodiscovery imports the console) and loading a
command do not import the sealed container's codec (numpy), the Celery tasks module, the services behind
it, or what only the console's pages use (the dashboard, the drill form, deletion, the health summary, which a
system check imports when it runs, not when it is registered). Speed itself is measured by bench/stages.py;
this holds the import graph that makes it possible."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ["numpy", "reedsolo", "dbs_admin.jobs.tasks", "dbs_admin.backups.create", "dbs_admin.sealed.writer",
         "dbs_admin.sealed.reader", "dbs_admin.drills.runner",
         # what only the console's pages use (the admin's autodiscovery imports the console at every start)
         "dbs_admin.console.dashboard", "dbs_admin.console.drill_views", "dbs_admin.console.deletion",
         "dbs_admin.drills.health", "dbs_admin.jobs.reaper",
         # what only one console page or action uses: validating from the list (the job launcher, Celery's
         # sending side, the hand-off's cryptography), comparing and restoring versions of an object
         "dbs_admin.jobs.launch", "dbs_admin.jobs.handoff", "dbs_admin.history.revert", "dbs_admin.history.diff",
         # what only sealing or opening a file uses (Argon2, the AEAD), and what only saving a post uses
         "dbs_admin.sealed.keys", "argon2", "markdown"]

PROBE = """
import json, sys
import django
django.setup()
from django.core.management import load_command_class
load_command_class("dbs_admin", "dbs_backup")
from dbs_admin.sealed import SealedError  # the package's errors alone stay cheap
print(json.dumps(sorted(m for m in %r if m in sys.modules)))
"""


def test_django_setup_and_a_command_import_none_of_the_heavy_modules(tmp_path):
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="demo_site.settings", DBS_VAR_DIR=str(tmp_path))
    env.pop("DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", PROBE % (HEAVY,)], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_lazy_names_of_the_sealed_package_resolve_to_the_real_functions():
    import dbs_admin.sealed as sealed
    from dbs_admin.sealed import writer

    assert sealed.seal is writer.seal
    assert set(sealed.__all__) <= set(dir(sealed))
    for name in sealed.__all__:
        assert getattr(sealed, name) is not None


SHADOWED = """
import json
from dbs_admin.sealed.repo import check  # imports the modules sealed.verify and sealed.heal by name
from dbs_admin.sealed.verify import info  # and another module's own import of one of them
from dbs_admin.sealed import heal, verify
import dbs_admin.sealed as sealed
print(json.dumps([type(heal).__name__, type(verify).__name__, type(sealed.verify).__name__, callable(info)]))
"""


def test_verify_and_heal_stay_functions_when_their_modules_of_the_same_name_are_imported_first():
    """Lazy names share their names with modules: importing ``sealed.verify`` must not make ``verify`` a module
    (it did once the repository's checker imported it first, and dbs_validate crashed)."""
    out = subprocess.run([sys.executable, "-c", SHADOWED], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["function", "function", "function", True]


CHECKS_PROBE = """
import json
import django
django.setup()
from django.core import checks
from django.core.management import call_command
ran = []
@checks.register(checks.Tags.urls)  # as the URL check, the costly one
def probe(app_configs=None, **kwargs):
    ran.append(1)
    return []
call_command("dbs_list", "--skip-checks")  # still accepted, as before
call_command("dbs_list", skip_checks=False)
after_dbs_list = len(ran)
call_command("check")
print(json.dumps([after_dbs_list, len(ran)]))
"""


def test_the_dbs_commands_run_no_system_checks_and_manage_py_check_still_does(tmp_path):
    """The checks (the URL check imports every console page) cost a command ~0.2 s at each start and guard the
    web site, not a backup: the commands skip them, still accepting --skip-checks; ``check`` runs them all."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="demo_site.settings", DBS_VAR_DIR=str(tmp_path))
    env.pop("DATABASE_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run([sys.executable, "-c", CHECKS_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == [0, 1]


FREEZE_PROBE = """
import gc, json
import django
django.setup()
from django.core.management import call_command
from dbs_admin.management.cli import DbsCommand
seen = []
class Probe(DbsCommand):
    def handle(self, *args, **options):
        seen.append(gc.get_freeze_count())
call_command(Probe())  # a caller whose process goes on (a worker, the tests)
called = seen[-1]
Probe().run_from_argv(["manage.py", "probe"])  # the command line, whose process ends with the command
print(json.dumps([called, seen[-1], len(gc.get_objects())]))
"""


def test_the_command_line_freezes_what_start_up_made_and_call_command_leaves_the_heap_alone(tmp_path):
    """Frozen, the start-up objects are skipped by every later collection and by the interpreter's teardown
    (bench/backup.py measures the time); a process that goes on after ``call_command`` keeps a normal heap."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="demo_site.settings", DBS_VAR_DIR=str(tmp_path))
    env.pop("DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", FREEZE_PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         check=True)
    called, from_argv, left = json.loads(out.stdout.strip().splitlines()[-1])
    assert called == 0
    assert from_argv > 10_000  # Django and the apps: tens of thousands of objects
    assert left < from_argv / 2  # what the collector still walks after the command is a small part


BACKUP_PROBE = """
import json, sys
import django
django.setup()
import dbs_admin.backups.create, dbs_admin.backups.restore
print(json.dumps(sorted(m for m in %r if m in sys.modules)))
"""
OTHER_PATHS = ["dbs_admin.backups.repository", "dbs_admin.sealed.repo", "pyfastcdc", "dbs_admin.backups.native_mysql",
               "dbs_admin.backups.native_postgres"]


def test_backing_up_and_restoring_a_file_import_neither_repositories_nor_other_engines_code(tmp_path):
    """Each command pays for the code it runs: the repository's and the other engines' modules are imported where
    a repository target or that engine is used, not by every backup and restore."""
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="demo_site.settings", DBS_VAR_DIR=str(tmp_path))
    env.pop("DATABASE_URL", None)
    out = subprocess.run([sys.executable, "-c", BACKUP_PROBE % (OTHER_PATHS,)], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
