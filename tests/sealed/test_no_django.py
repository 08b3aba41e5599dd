"""The container core must work where Django is not even installed (the rescue machine)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import sys, tempfile, os
sys.modules["django"] = None  # any "import django..." now raises ImportError
import dbs_admin.sealed as sealed
from dbs_admin.sealed import cli  # the CLI too

d = tempfile.mkdtemp()
path = os.path.join(d, "f.dbs")
data = os.urandom(200_000)
sealed.seal(data, path, passphrase="p", manifest={"k": 1},
            argon2=sealed.Argon2Params(1, 1024, 1), allow_weak_argon2=True)
with sealed.open_sealed(path, passphrase="p") as r:
    assert r.read() == data and r.manifest == {"k": 1}
assert sealed.verify(path).intact
loaded = [m for m in sys.modules if m == "django" or m.startswith("django.")]
assert loaded == ["django"] and sys.modules["django"] is None, loaded
print("OK")
"""


def test_sealed_works_without_django():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"
