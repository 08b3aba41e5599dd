"""The sealed passphrase hand-off: ciphertext only, single use, expiring, bound to its id and purpose."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection

from dbs_admin.jobs import handoff
from dbs_admin.models import HandoffSecret

pytestmark = pytest.mark.django_db
SECRET = "my very secret passphrase ü"


def test_round_trip_once_then_gone():
    ref = handoff.put(SECRET, purpose="backup")
    assert SECRET not in ref
    assert handoff.take(ref, purpose="backup") == SECRET
    with pytest.raises(handoff.HandoffError, match="already used or has expired"):
        handoff.take(ref, purpose="backup")
    assert not HandoffSecret.objects.exists()


def test_database_holds_no_plaintext():
    handoff.put(SECRET, purpose="backup")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM dbs_admin_handoffsecret")
        rows = cursor.fetchall()
    blob = b"".join(bytes(c) if isinstance(c, (bytes, memoryview)) else str(c).encode() for r in rows for c in r)
    assert SECRET.encode() not in blob and SECRET.encode("utf-16-le") not in blob


def test_expired_and_wrong_purpose_are_refused():
    ref = handoff.put(SECRET, purpose="backup", ttl=timedelta(seconds=-1))
    with pytest.raises(handoff.HandoffError, match="expired"):
        handoff.take(ref, purpose="backup")
    ref = handoff.put(SECRET, purpose="backup")
    with pytest.raises(handoff.HandoffError):
        handoff.take(ref, purpose="restore")


def test_ciphertext_moved_to_another_id_does_not_open():
    ref_a = handoff.put(SECRET, purpose="backup")
    ref_b = handoff.put("other", purpose="backup")
    blob = HandoffSecret.objects.get(id=ref_a).ciphertext
    HandoffSecret.objects.filter(id=ref_b).update(ciphertext=blob)
    with pytest.raises(handoff.HandoffError, match="cannot be opened"):
        handoff.take(ref_b, purpose="backup")


def test_another_secret_key_cannot_open_it(settings):
    ref = handoff.put(SECRET, purpose="backup")
    settings.SECRET_KEY = "a-rotated-secret-key-" + "x" * 40
    with pytest.raises(handoff.HandoffError, match="cannot be opened"):
        handoff.take(ref, purpose="backup")


def test_purge_removes_only_expired_rows():
    handoff.put(SECRET, purpose="backup", ttl=timedelta(seconds=-5))
    keep = handoff.put(SECRET, purpose="backup")
    assert handoff.purge_expired() == 1
    assert list(HandoffSecret.objects.values_list("id", flat=True)) == [keep]


def test_a_hand_off_waits_as_long_as_the_reaper_takes_to_send_a_lost_message_again(settings, redis_broker):
    """The reaper re-sends a queued job silent for JOB_QUEUE_TIMEOUT; its passphrase must still be there then,
    and for as long again for the new message (both were five minutes: a re-sent job always failed)."""
    import redis
    from django.utils import timezone

    from dbs_admin.jobs.reaper import reap_lost_jobs
    from dbs_admin.models import Job
    from tests import services

    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "JOB_QUEUE_TIMEOUT": 900}
    ref = handoff.put(SECRET, purpose="backup")
    row = HandoffSecret.objects.get(id=ref)
    assert row.expires_at >= timezone.now() + timedelta(seconds=900)  # outlives the reaper's wait
    job = Job.objects.create(kind=Job.Kind.BACKUP, params={"target": "local"},
                             dispatch={"task": "dbs_admin.backup", "kwargs": {"job_id": 0, "secret_ref": ref}})
    long_ago = timezone.now() - timedelta(seconds=901)
    Job.objects.filter(pk=job.pk).update(created_at=long_ago, touched_at=long_ago)
    HandoffSecret.objects.filter(id=ref).update(expires_at=timezone.now() + timedelta(seconds=30))  # nearly gone
    broker = redis.Redis.from_url(redis_broker)
    before = broker.llen(services.RUN_QUEUE)
    assert reap_lost_jobs() == [] and Job.objects.get(pk=job.pk).resends == 1
    assert broker.llen(services.RUN_QUEUE) == before + 1  # the message went out again...
    assert HandoffSecret.objects.get(id=ref).expires_at >= timezone.now() + timedelta(seconds=900)  # ...with time
    assert handoff.take(ref, purpose="backup") == SECRET
    broker.delete(services.RUN_QUEUE)


def test_an_expired_hand_off_is_not_revived_by_a_resend():
    ref = handoff.put(SECRET, purpose="backup", ttl=timedelta(seconds=-1))
    assert handoff.extend(ref) is False and handoff.extend(None) is False
    with pytest.raises(handoff.HandoffError, match="expired"):
        handoff.take(ref, purpose="backup")
