from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from dbs_admin.targets import get_target, iter_targets
from dbs_admin.targets.errors import TargetConfigError, TargetError
from dbs_admin.targets.local import LocalTarget
from dbs_admin.targets.sftp import SftpTarget

SFTP = {"kind": "sftp", "host": "backup.example", "username": "u", "key_filename": "/k", "known_hosts": "/kh",
        "path": "/b"}


def configure(settings, targets, default="local"):
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "TARGETS": targets, "DEFAULT_TARGET": default}


def test_targets_are_built_from_settings(settings, tmp_path):
    configure(settings, {"local": {"kind": "local", "path": str(tmp_path)}, "offsite": SFTP})
    default = get_target()
    assert isinstance(default, LocalTarget) and default.path == tmp_path and default.name == "local"
    offsite = get_target("offsite")
    assert isinstance(offsite, SftpTarget) and offsite.port == 22 and offsite.url == "sftp://u@backup.example:22/b"
    assert [t.name for t in iter_targets()] == ["local", "offsite"]


def test_unknown_target_names_the_configured_ones(settings, tmp_path):
    configure(settings, {"local": {"kind": "local", "path": str(tmp_path)}})
    with pytest.raises(TargetConfigError, match=r"no backup target named 'nope'.*configured: local") as info:
        get_target("nope")
    assert isinstance(info.value, ImproperlyConfigured) and isinstance(info.value, TargetError)


@pytest.mark.parametrize(("entry", "message"), [
    ("/var/backups", "must be a dict"),
    ({"path": "/x"}, "kind None"),
    ({"kind": "s3", "path": "/x"}, "kind 's3'"),
    ({"kind": "local"}, r"lacks \['path'\]"),
    ({**SFTP, "password": "hunter2"}, "secrets never go in settings"),
    ({**SFTP, "hots": "x"}, r"unknown keys \['hots'\]"),
    ({**SFTP, "host": ""}, "must be non-empty strings"),
    ({**SFTP, "port": "ssh"}, "is invalid"),
])
def test_bad_entries_are_refused_with_what_is_wrong(settings, entry, message):
    configure(settings, {"broken": entry}, default="broken")
    with pytest.raises(TargetConfigError, match=message):
        get_target()
