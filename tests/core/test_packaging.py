"""What ``pip install dbs-admin`` gets: the sdist and the wheel hold the license, the templates and the metadata.

Built offline (``python -m build --no-isolation``) from a copy of the checkout's files, so the checkout gets
no build output.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import zipfile
from email.parser import Parser

import pytest

from tests import services

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    source = tmp_path_factory.mktemp("source")
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=services.ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        if (services.ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(services.ROOT / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir",
                             str(out), str(source)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return sdist, wheel


def test_the_license_ships_in_the_sdist_and_the_wheel(built):
    sdist, wheel = built
    license_text = (services.ROOT / "LICENSE").read_text()
    assert "BSD 3-Clause" in license_text
    with tarfile.open(sdist) as tar:
        [member] = [m for m in tar.getmembers() if m.name.endswith("/LICENSE")]
        assert tar.extractfile(member).read().decode() == license_text
    with zipfile.ZipFile(wheel) as whl:
        [name] = [n for n in whl.namelist() if n.endswith("LICENSE") and ".dist-info/" in n]
        assert whl.read(name).decode() == license_text
        assert any(n.startswith("dbs_admin/templates/dbs_admin/") for n in whl.namelist())
        assert any(n.startswith("dbs_admin/static/dbs_admin/") for n in whl.namelist())
        assert not any(n.startswith(("tests/", "blog/", "demo_site/")) for n in whl.namelist())


def test_the_metadata_says_what_it_needs_and_where_it_lives(built):
    _, wheel = built
    with zipfile.ZipFile(wheel) as whl:
        [name] = [n for n in whl.namelist() if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(whl.read(name).decode())
    assert meta["License-Expression"] == "BSD-3-Clause"
    requires = meta.get_all("Requires-Dist")
    assert any(r.replace(" ", "").startswith("django-htmx<2,>=1.23") or r.replace(" ", "").startswith(
        "django-htmx>=1.23") for r in requires), requires
    classifiers = meta.get_all("Classifier")
    assert "Framework :: Django :: 5.2" in classifiers and "Topic :: System :: Archiving :: Backup" in classifiers
    assert {u.split(",")[0] for u in meta.get_all("Project-URL")} >= {"Homepage", "Changelog", "Issues"}
