"""DBS_ADMIN is read in one place: defaults, overrides, and typos that fail loudly."""

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from dbs_admin.conf import dbs_settings


def test_defaults_are_documented_values():
    with override_settings(DBS_ADMIN={}):
        assert dbs_settings.ARGON2 == {"time_cost": 3, "memory_kib": 65536, "parallelism": 4}
        assert dbs_settings.DOWNLOAD_LINK_TTL == 600
        assert dbs_settings.RPO == timedelta(hours=26)
        assert "sessions.Session" in dbs_settings.EXCLUDE_MODELS
        assert dbs_settings.TARGETS["local"]["kind"] == "local"


def test_override_one_key_keeps_the_others():
    with override_settings(DBS_ADMIN={"DOWNLOAD_LINK_TTL": 30}):
        assert dbs_settings.DOWNLOAD_LINK_TTL == 30
        assert dbs_settings.BATCH_SIZE == 2000


def test_unknown_key_is_an_error_naming_it():
    with override_settings(DBS_ADMIN={"RETENTON": {}}):
        with pytest.raises(ImproperlyConfigured, match="RETENTON"):
            _ = dbs_settings.RETENTION


def test_private_and_history_roots_are_outside_media_root(settings):
    from pathlib import Path

    media = Path(settings.MEDIA_ROOT).resolve()
    for root in (dbs_settings.PRIVATE_ROOT, dbs_settings.HISTORY_ROOT, dbs_settings.TARGETS["local"]["path"]):
        assert media not in Path(root).resolve().parents and Path(root).resolve() != media
