"""Fixtures of the sealed-container tests: cheap Argon2 (tests only) and sealed files on disk."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pytest

from dbs_admin.sealed import Argon2Params, seal

PASSPHRASE = "correct horse battery staple"
CHEAP = {"argon2": Argon2Params(time_cost=1, memory_kib=1024, parallelism=1), "allow_weak_argon2": True}


def random_bytes(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def seal_bytes(data: bytes, path: Path, **kwargs) -> Path:
    """Seal ``data`` to ``path`` with the test passphrase and cheap Argon2."""
    options = {"passphrase": PASSPHRASE, **CHEAP, **kwargs}
    seal(data, path, **options)
    return path


@pytest.fixture(scope="session")
def sealed_sample(tmp_path_factory) -> tuple[Path, bytes]:
    """One ~1.5 MiB sealed file of incompressible data (24 blocks), sealed once per session."""
    data = random_bytes(1_500_000, seed=7)
    path = tmp_path_factory.mktemp("sample") / "sample.dbs"
    seal_bytes(data, path, manifest={"rows": {"blog.post": 3}})
    return path, data


@pytest.fixture
def fresh_copy(sealed_sample, tmp_path):
    """A fresh, writable copy of the session sample for one corruption."""
    src, data = sealed_sample
    dst = tmp_path / "copy.dbs"
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o600)
    return dst, data
