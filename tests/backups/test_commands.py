"""The commands and the API's promises: keys, exit codes, --database, names, cancel, validation."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from blog.models import Post
from dbs_admin import create_backup, restore_backup, validate_backup
from dbs_admin.backups import create as create_mod
from dbs_admin.backups.errors import BackupExistsError, CancelledError, KeyMissingError, ToolMissingError
from dbs_admin.management.passphrases import get_passphrase
from dbs_admin.models import Backup

from .conftest import case, needs_services, on
from .helpers import build_site, table_contents

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "tr0ub4dor & 3 horses"
pytestmark = [pytest.mark.usefixtures("backup_settings"), pytest.mark.django_db(databases=["default", "sq_a", "sq_b"])]


def _manage(*args: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("DBS_PASSPHRASE", "DATABASE_URL")}
    full_env.update({"DBS_VAR_DIR": str(tmp_path / "var"), **env})
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, stdin=subprocess.DEVNULL, timeout=120)


def test_wrong_passphrase_exits_non_zero_with_one_clear_line(media_root, tmp_path):
    build_site("sq_a", posts=5, images=1)
    result = create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "b.dbs")
    (tmp_path / "wrong").write_text("not the passphrase\n")

    proc = _manage("dbs_restore", str(result.path), "--passphrase-file", str(tmp_path / "wrong"), "--no-input",
                   env={}, tmp_path=tmp_path)

    assert proc.returncode == 3
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["CommandError: restore failed: wrong passphrase: it opens none of this file's key slots"]
    assert "not the passphrase" not in proc.stderr + proc.stdout


def test_no_input_without_a_key_fails_at_once(tmp_path):
    proc = _manage("dbs_backup", "--no-input", "--output", str(tmp_path / "never.dbs"), env={}, tmp_path=tmp_path)
    assert proc.returncode != 0
    assert "--passphrase-file" in proc.stderr and "--recipient" in proc.stderr
    assert not (tmp_path / "never.dbs").exists()


def test_restore_command_honours_database_and_reads_the_environment(media_root, tmp_path, monkeypatch):
    build_site("sq_a", posts=8, images=1)
    with on("default"):
        Post.objects.create(title="lives in default", slug="lives-in-default")
    default_before = table_contents("default")
    monkeypatch.setenv("DBS_PASSPHRASE", PASSPHRASE)
    call_command("dbs_backup", "--database", "sq_a", "--label", "cli run", "--no-input", verbosity=0)
    backup = Backup.objects.get()
    assert backup.name.endswith("-logical-cli-run.dbs") and backup.key_slots[0]["type"] == "passphrase"

    call_command("dbs_restore", "--latest", "--database", "sq_b", "--no-input", verbosity=0)

    assert table_contents("sq_b") == table_contents("sq_a")
    assert table_contents("default") == default_before


def test_wrong_key_through_call_command_is_a_command_error(media_root, tmp_path, monkeypatch):
    build_site("sq_a", posts=3, images=0)
    create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "k.dbs")
    monkeypatch.setenv("DBS_PASSPHRASE", "nope")
    with pytest.raises(CommandError, match="wrong passphrase") as caught:
        call_command("dbs_restore", str(tmp_path / "k.dbs"), "--database", "sq_b", "--no-input")
    assert caught.value.returncode == 3


def test_existing_names_are_never_overwritten(media_root, identity, tmp_path, monkeypatch):
    build_site("sq_a", posts=3, images=0)
    existing = tmp_path / "taken.dbs"
    existing.write_bytes(b"someone else's file")
    with pytest.raises(BackupExistsError):
        create_backup(database="sq_a", recipients=[identity.recipient], output=existing)
    assert existing.read_bytes() == b"someone else's file"

    frozen = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    monkeypatch.setattr(create_mod.timezone, "now", lambda: frozen)
    first = create_backup(database="sq_a", recipients=[identity.recipient])
    stored = first.path.read_bytes()
    with pytest.raises(BackupExistsError, match="never overwritten"):
        create_backup(database="sq_a", recipients=[identity.recipient])
    assert first.path.read_bytes() == stored and Backup.objects.count() == 1


def test_cancel_removes_partial_output(media_root, identity, tmp_path, settings):
    build_site("sq_a", posts=30, images=2)
    settings.DBS_ADMIN = {**settings.DBS_ADMIN, "BATCH_SIZE": 5}
    polls = []

    def cancel() -> bool:
        polls.append(1)
        return len(polls) > 3

    with pytest.raises(CancelledError):
        create_backup(database="sq_a", recipients=[identity.recipient], cancel=cancel)
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and "media" not in p.parts]
    assert leftovers == [] and Backup.objects.count() == 0


def test_validation_without_and_with_the_key_and_healing(media_root, identity, tmp_path):
    build_site("sq_a", posts=10, images=2)
    result = create_backup(database="sq_a", recipients=[identity.recipient], output=tmp_path / "v.dbs")
    plain = validate_backup(result.path)
    assert plain.ok and not plain.decrypted and plain.healing_margin == 1.0 and plain.manifest is None
    full = validate_backup(result.path, identity=identity, decrypt=True)
    assert full.ok and full.decrypted and full.manifest["counts"]["blog.Post"] == 10
    with pytest.raises(KeyMissingError):
        validate_backup(result.path, decrypt=True)

    damaged = bytearray(result.path.read_bytes())
    middle = len(damaged) // 3
    for i in range(middle, middle + 4096):  # a torn page in the first copy of the data
        damaged[i] ^= 0xA5
    (tmp_path / "d.dbs").write_bytes(bytes(damaged))
    healed = validate_backup(tmp_path / "d.dbs", identity=identity, decrypt=True)
    assert healed.ok and healed.healed_blocks
    restored = restore_backup(tmp_path / "d.dbs", identity=identity, database="sq_b")
    assert restored.healed_blocks > 0 and table_contents("sq_b") == table_contents("sq_a")


@pytest.mark.django_db(databases=["default", "pg_a"])
def test_native_postgres_without_pg_dump_says_so(pg, identity, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissingError, match="pg_dump is not installed"):
        create_backup(kind="native", database="pg_a", recipients=[identity.recipient])


@pytest.mark.django_db(databases=["default", "pg_a"])
def test_native_postgres_with_a_pg_dump_older_than_the_server_says_so(pg, identity, monkeypatch, tmp_path):
    """An old pg_dump would refuse the newer server (or write a dump pg_restore misreads): named, not run."""
    from django.db import connections

    old = tmp_path / "pg_dump"
    old.write_text("#!/bin/sh\necho 'pg_dump (PostgreSQL) 9.6.24'\n")
    old.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    server = connections["pg_a"].pg_version // 10000
    with pytest.raises(ToolMissingError, match=f"pg_dump 9 is older than the PostgreSQL {server} server"):
        create_backup(kind="native", database="pg_a", recipients=[identity.recipient], output=tmp_path / "n.dbs")
    assert not (tmp_path / "n.dbs").exists()


def test_passphrase_sources_in_order(tmp_path, monkeypatch):
    (tmp_path / "pp").write_text("from the file\n")
    monkeypatch.setenv("DBS_PASSPHRASE", "from the environment")
    assert get_passphrase(passphrase_file=str(tmp_path / "pp"), no_input=True) == "from the file"
    assert get_passphrase(no_input=True) == "from the environment"
    monkeypatch.delenv("DBS_PASSPHRASE")
    with pytest.raises(KeyMissingError, match="--passphrase-file"):
        get_passphrase(no_input=True)
    assert get_passphrase(no_input=True, required=False) is None


def _pair(a: str, b: str, name: str):
    return case(a, b, id=name, marks=pytest.mark.django_db(transaction=True, databases=["default", a, b]))


@pytest.mark.parametrize(("source", "dest"), [_pair("sq_a", "sq_b", "sqlite"), _pair("pg_a", "pg_b", "postgresql"),
                                              _pair("my_a", "my_b", "mariadb")])
def test_reset_rebuilds_a_broken_schema_after_confirmation(source, dest, media_root, tmp_path, monkeypatch, request):
    from django.contrib.auth.models import User
    from django.db import connections

    from dbs_admin.backups.errors import RestoreError

    needs_services(request, dest)

    build_site(source, posts=10, images=1)
    result = create_backup(database=source, passphrase=PASSPHRASE, output=tmp_path / "r.dbs")
    with on(dest):
        bob = User.objects.create_user("bob", id=999)  # an id the backup does not have
        Backup.objects.create(name="record-of-the-past.dbs", created_by=bob)
    with connections[dest].cursor() as cursor:
        cursor.execute("DROP TABLE blog_post_tags")  # a schema that no longer matches its migrations
    with pytest.raises(RestoreError, match="--reset"):
        restore_backup(result.path, passphrase=PASSPHRASE, database=dest)

    monkeypatch.setenv("DBS_PASSPHRASE", PASSPHRASE)
    with pytest.raises(CommandError, match="--yes"):
        call_command("dbs_restore", str(result.path), "--reset", "--no-input", "--database", dest)
    call_command("dbs_restore", str(result.path), "--reset", "--yes", "--no-input", "--database", dest, verbosity=0)

    assert table_contents(dest) == table_contents(source)
    kept = Backup.objects.using(dest).get()  # the console's record survived the reset...
    assert kept.name == "record-of-the-past.dbs" and kept.created_by_id is None  # ...unlinked from the gone user


def test_restore_command_can_back_up_what_it_replaces_first(media_root, tmp_path):
    """``--safety-backup``: the data a restore replaces is kept, sealed with the same key, and restores back."""
    import io
    import re

    build_site("sq_a", posts=4, images=1)
    result = create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "old.dbs")
    with on("sq_b"):
        Post.objects.create(title="only in b", slug="only-in-b")
    (tmp_path / "pw").write_text(PASSPHRASE + "\n")
    out = io.StringIO()

    call_command("dbs_restore", str(result.path), "--database", "sq_b", "--passphrase-file", str(tmp_path / "pw"),
                 "--safety-backup", "local", "--no-input", stdout=out)

    with on("sq_b"):
        assert not Post.objects.filter(slug="only-in-b").exists() and Post.objects.count() == 4
    name = re.search(r"backed up the current data first: (\S+) on 'local'", out.getvalue()).group(1)
    restore_backup(name, target="local", passphrase=PASSPHRASE, database="sq_b")
    with on("sq_b"):
        assert list(Post.objects.values_list("slug", flat=True)) == ["only-in-b"]


def test_a_refused_restore_makes_no_safety_backup(media_root, tmp_path):
    """A wrong passphrase is found before the current data is backed up: the refusal leaves no extra backup."""
    build_site("sq_a", posts=2, images=0)
    result = create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "old.dbs")
    (tmp_path / "pw").write_text("not the passphrase\n")
    before = table_contents("sq_b")

    with pytest.raises(CommandError, match="passphrase"):
        call_command("dbs_restore", str(result.path), "--database", "sq_b", "--passphrase-file",
                     str(tmp_path / "pw"), "--safety-backup", "local", "--no-input")

    target = tmp_path / "target"
    assert not target.exists() or not any(target.iterdir())
    assert table_contents("sq_b") == before


def test_a_terminal_gets_a_progress_bar_and_a_log_gets_quiet_lines(identity, tmp_path):
    """The same backup, stderr on a pseudo-terminal and then on a pipe, in real processes."""
    import pty
    import select

    env = {k: v for k, v in os.environ.items() if k not in ("DBS_PASSPHRASE", "DATABASE_URL")}
    env["DBS_VAR_DIR"] = str(tmp_path / "var")
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], env=env, cwd=ROOT, check=True, timeout=120)
    backup = [*manage, "dbs_backup", "--recipient", identity.recipient, "--no-input", "--output"]

    controller, terminal = pty.openpty()
    proc = subprocess.Popen([*backup, str(tmp_path / "tty.dbs")], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=terminal)
    os.close(terminal)
    drawn = b""
    while True:  # read as it comes, so a full terminal buffer never blocks the command
        if select.select([controller], [], [], 0.2)[0]:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the command closed its end
                chunk = b""
            drawn += chunk
            if not chunk and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    os.close(controller)
    assert proc.wait(timeout=120) == 0
    bar = drawn.decode()
    assert "\r" in bar and "[" in bar and "#" in bar and "/" in bar  # a bar redrawn in place: [####....] n/total

    logged = subprocess.run([*backup, str(tmp_path / "log.dbs")], env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=120)
    assert logged.returncode == 0
    stages = [ln for ln in logged.stderr.splitlines() if ln.endswith("...")]
    assert "\r" not in logged.stderr and "#" not in logged.stderr
    assert len(stages) >= 2 and len(stages) == len(set(stages))  # one line per stage, none repeated


def test_dbs_validate_says_ok_healed_or_what_failed(media_root, tmp_path):
    """The rescue CLI's statuses: 0 intact, 1 damaged but healed, 2 unrecoverable, 3 wrong key."""
    import io

    build_site("sq_a", posts=6, images=1)
    good = create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "good.dbs").path
    (tmp_path / "pw").write_text(PASSPHRASE + "\n")
    (tmp_path / "wrong").write_text("not it\n")

    def validate(path, *extra, status: int = 0) -> str:
        out = io.StringIO()
        try:
            call_command("dbs_validate", str(path), "--no-input", *extra, stdout=out)
            code = 0
        except SystemExit as exc:
            code = exc.code
        assert code == status, out.getvalue()
        return out.getvalue()

    assert validate(good).startswith("OK: intact: every block of both copies verified")
    decrypted = validate(good, "--decrypt", "--passphrase-file", str(tmp_path / "pw"))
    assert "decrypted and checked: " in decrypted and " 1 files" in decrypted
    assert "decrypted and checked" in validate(good, "--passphrase-file", str(tmp_path / "pw"))  # a key: decrypt

    data = bytearray(good.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 4096):  # one copy torn: healed, still OK
        data[i] ^= 0xFF
    (tmp_path / "torn.dbs").write_bytes(bytes(data))
    torn = validate(tmp_path / "torn.dbs", "--decrypt", "--passphrase-file", str(tmp_path / "pw"), status=1)
    assert "damaged block(s) recoverable" in torn and "decrypted and checked" in torn

    (tmp_path / "half.dbs").write_bytes(good.read_bytes()[: len(data) // 2])  # copy A is whole: still readable
    half = validate(tmp_path / "half.dbs", status=1)
    assert half.startswith("OK: healed: ") and "end is missing (truncated?)" in half and "margin 0.5" in half
    assert "truncated" not in validate(tmp_path / "torn.dbs", status=1)  # torn inside: damage, not a cut
    rescue = subprocess.run([sys.executable, "-m", "dbs_admin.sealed", "verify", str(tmp_path / "torn.dbs")],
                            capture_output=True, cwd=ROOT)
    assert rescue.returncode == 1  # the same status as the rescue CLI's
    (tmp_path / "short.dbs").write_bytes(good.read_bytes()[: len(data) // 3])
    (tmp_path / "foreign.dbs").write_bytes(os.urandom(200_000))
    for bad in ("short.dbs", "foreign.dbs"):
        with pytest.raises(CommandError, match="validation failed") as caught:
            validate(tmp_path / bad)
        assert caught.value.returncode != 0 and "\n" not in str(caught.value)
    with pytest.raises(CommandError, match="wrong passphrase") as caught:
        validate(good, "--decrypt", "--passphrase-file", str(tmp_path / "wrong"))
    assert caught.value.returncode == 3


def test_key_errors_name_the_flag_that_fits_the_backups_slots(media_root, identity, tmp_path, monkeypatch):
    """A recipient-only backup (a scheduled one) without a key points to --identity, never to a passphrase; an
    identity given for a passphrase-only backup is told to leave it out; --identity implies decryption."""
    from dbs_admin.sealed import Argon2Params, generate_identity

    build_site("sq_a", posts=3, images=0)
    sealed_to_recipient = create_backup(database="sq_a", recipients=[identity.recipient],
                                        output=tmp_path / "r.dbs").path
    with_passphrase = create_backup(database="sq_a", passphrase=PASSPHRASE, output=tmp_path / "p.dbs").path
    monkeypatch.delenv("DBS_PASSPHRASE", raising=False)
    for command in ("dbs_restore", "dbs_validate"):
        extra = ["--decrypt"] if command == "dbs_validate" else ["--database", "sq_b"]
        with pytest.raises(CommandError) as caught:
            call_command(command, str(sealed_to_recipient), "--noinput", *extra)
        assert caught.value.returncode == 3 and "--identity FILE" in str(caught.value)
        assert "recipient keys only" in str(caught.value)
        with pytest.raises(CommandError) as caught:
            call_command(command, str(with_passphrase), "--noinput", *extra)
        assert "--passphrase-file FILE or $DBS_PASSPHRASE: the backup is sealed with a passphrase only" in str(
            caught.value)
    monkeypatch.setenv("DBS_PASSPHRASE", PASSPHRASE)
    with pytest.raises(CommandError) as caught:  # a passphrase for a recipient-only backup
        call_command("dbs_restore", str(sealed_to_recipient), "--noinput", "--database", "sq_b")
    assert caught.value.returncode == 3 and "no passphrase slot" in str(caught.value)
    assert "(use --identity FILE" in str(caught.value)
    other = generate_identity(tmp_path / "other.identity", PASSPHRASE, argon2=Argon2Params(1, 1024, 1),
                              allow_weak=True)
    assert other.recipient != identity.recipient
    with pytest.raises(CommandError) as caught:  # an identity for a passphrase-only backup; it implies --decrypt
        call_command("dbs_validate", str(with_passphrase), "--noinput", "--identity", str(tmp_path / "other.identity"))
    assert caught.value.returncode == 3 and "leave out --identity" in str(caught.value)


@pytest.mark.parametrize("command", ["dbs_backup", "dbs_restore", "dbs_validate", "dbs_list", "dbs_prune",
                                     "dbs_drill", "dbs_status", "dbs_history", "dbs_keys"])
def test_every_command_accepts_no_input_both_ways(command):
    from django.core.management import load_command_class

    parser = load_command_class("dbs_admin", command).create_parser("manage.py", command)
    subcommand = {"dbs_history": ["reindex"], "dbs_keys": ["init"], "dbs_validate": ["b.dbs"]}.get(command, [])
    for flag in ("--no-input", "--noinput"):
        assert parser.parse_args([*subcommand, flag]).no_input is True
        if subcommand:  # before the sub-command too
            assert parser.parse_args([flag, *subcommand]).no_input is True
    assert parser.parse_args(subcommand).no_input is False
