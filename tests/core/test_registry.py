"""dbs.py declarations: validated at import time, kept as plain data."""

import pytest

from blog.models import Attachment, Post
from dbs_admin.registry import FieldKind, register, registry, smoke_check


@pytest.fixture
def clean_registry():
    saved = (dict(registry.policies), dict(registry.history), dict(registry.smoke_checks))
    yield registry
    registry.policies, registry.history, registry.smoke_checks = saved


def test_register_records_field_kinds(clean_registry):
    register(Attachment, fields={"alt_text": FieldKind.EXCLUDE}, file_roots=["/srv/extra"])
    policy = registry.policy_for(Attachment)
    assert policy.fields == {"alt_text": FieldKind.EXCLUDE}
    assert policy.file_roots == ("/srv/extra",)


def test_unregistered_model_gets_default_policy(clean_registry):
    registry.policies.pop(Post, None)
    assert registry.policy_for(Post).fields == {}


def test_register_rejects_unknown_field(clean_registry):
    with pytest.raises(ValueError, match="no fields \\['titel'\\]"):
        register(Post, fields={"titel": FieldKind.VALUE})


def test_smoke_check_decorator_both_forms(clean_registry):
    @smoke_check
    def first(alias):
        return alias

    @smoke_check(name="second")
    def second(alias):
        return alias

    assert registry.smoke_checks["second"] is second
    assert any(f is first for f in registry.smoke_checks.values())
