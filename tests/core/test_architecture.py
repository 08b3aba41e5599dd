"""The layers of DESIGN.md hold: import-linter's contracts pass, catch an upward import, and cover every package.

Why tests as well as ``make lint``: the contracts are only as good as their
list of layers, so these tests pin that list to the tree (a new package cannot
sit outside the rules), prove on a copy of the package that an upward import
(a function-level one included) or Django in the container core breaks the
build, and check what import-linter cannot express: no cycle through a
package and its own modules, no web or command-line code in the services.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "dbs_admin"
LINT = Path(sys.executable).with_name("lint-imports")

LAYERS = [
    "dbs_admin.console | dbs_admin.management",
    "dbs_admin.jobs",
    "dbs_admin.drills | dbs_admin.history",
    "dbs_admin.backups",
    "dbs_admin.targets",
    "dbs_admin.sealed",
]
# Outside the layers: the records and settings every layer reads (they import no layer: a contract says so),
# and the entry points Django and Celery look for by name (admin.py, tasks.py, urls.py, apps.py).
FOUNDATIONS = {"models", "migrations", "conf", "registry", "notify", "suspend", "humanize", "errors", "version",
               "signals", "hosts"}
ENTRY_POINTS = {"admin", "tasks", "urls", "apps", "templates", "static"}
SERVICES = ["backups", "history", "drills", "targets"]
WEB_OR_CLI = ("django.http", "django.shortcuts", "django.views", "django.contrib.admin", "django.template.response",
              "django.core.management.base", "django_htmx", "argparse", "getpass")


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", "--no-logo", str(root / "pyproject.toml")], cwd=root,
                          capture_output=True, text=True, timeout=120, env={"PYTHONPATH": str(root), "PATH": ""})


def test_the_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_layer_contract_lists_every_layer_in_order():
    layers = [c for c in contracts() if c["type"] == "layers"]
    assert len(layers) == 1 and layers[0]["layers"] == LAYERS


def test_every_package_and_module_is_in_a_layer_or_named_as_a_foundation():
    in_layers = {name.split(".")[1] for layer in LAYERS for name in layer.split(" | ")}
    present = {p.stem for p in PACKAGE.iterdir() if (p.is_dir() and not p.name.startswith("__")) or p.suffix == ".py"}
    present.discard("__init__")
    assert present - in_layers - FOUNDATIONS - ENTRY_POINTS == set(), "a new package needs a place in the layers"


def test_no_import_cycles_between_modules_function_level_imports_included():
    """acyclic_siblings misses a package importing its own module that imports the package back: check all."""
    graph = grimp.build_graph("dbs_admin", cache_dir=None)
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules if m.startswith("dbs_admin")}
    cycles = strongly_connected(edges)
    assert cycles == [], f"import cycles: {cycles}"


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components of more than one module, or a module importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in edges:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in edges.get(node, ()):
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", SERVICES)
def test_services_and_targets_hold_no_web_or_command_line_code(package):
    offenders = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if any(n == w or n.startswith(w + ".") for w in WEB_OR_CLI)]
    assert offenders == []


@pytest.fixture
def copy_of_the_package(tmp_path) -> Path:
    skip = shutil.ignore_patterns("__pycache__", "templates", "static")
    shutil.copytree(PACKAGE, tmp_path / "dbs_admin", ignore=skip)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_to(module: Path, code: str) -> None:
    module.write_text(module.read_text() + "\n\n" + code + "\n")


def test_a_function_level_upward_import_breaks_the_layers(copy_of_the_package):
    assert lint(copy_of_the_package).returncode == 0
    add_to(copy_of_the_package / "dbs_admin/backups/retention.py",
           "def _sneaky():\n    from dbs_admin.jobs import launch\n\n    return launch")
    result = lint(copy_of_the_package)
    assert result.returncode != 0
    assert "Layers: console and commands > jobs" in result.stdout and "BROKEN" in result.stdout
    assert "dbs_admin.backups.retention -> dbs_admin.jobs.launch" in result.stdout


def test_django_in_the_container_core_breaks_its_contract(copy_of_the_package):
    add_to(copy_of_the_package / "dbs_admin/sealed/layout.py", "def _sneaky():\n    import django.conf")
    result = lint(copy_of_the_package)
    assert result.returncode != 0 and "The container core imports no Django" in result.stdout


def test_celery_below_the_jobs_layer_breaks_its_contract(copy_of_the_package):
    add_to(copy_of_the_package / "dbs_admin/history/signals.py", "from celery import shared_task  # noqa")
    result = lint(copy_of_the_package)
    assert result.returncode != 0 and "Celery is imported by the jobs layer only" in result.stdout


def test_architecture_md_maps_every_module():
    """docs/ARCHITECTURE.md lists each module under its package's heading, and nothing that is gone."""
    text = (ROOT / "docs/ARCHITECTURE.md").read_text()
    sections = {}
    for chunk in text.split("\n### ")[1:]:
        heading, _, body = chunk.partition("\n")
        package = "" if heading.startswith("Package root") else heading.split("/")[0].strip()
        sections[package] = body
    missing, stale = [], []
    for package in ["", "console", "management", "jobs", "backups", "history", "drills", "targets", "sealed"]:
        folder = PACKAGE / package
        files = {p.name for p in folder.glob("*.py") if p.name != "__init__.py" or not package}
        body = sections.get(package, "")
        missing += [f"{package}/{name}" for name in sorted(files) if f"`{name}`" not in body]
        named = set(re.findall(r"`([a-z_]+\.py)`", body))
        stale += [f"{package}/{name}" for name in sorted(named - files)]
    commands = {p.stem for p in (PACKAGE / "management/commands").glob("dbs_*.py")}
    missing += [c for c in sorted(commands) if f"`{c}`" not in sections["management"]]
    assert missing == [] and stale == [], f"not in the map: {missing}; in the map but gone: {stale}"
