"""``manage.py dbs_drill [FILE | --latest [--target NAME]]``: restore a backup into a scratch database and check it.

Exit status 0 only when every check passed; 1 when the drill ran and a
check failed (each check is printed, the failing ones with their detail);
2 when the command was used wrongly; 3 when there is no key to open the
backup (nothing ran, and no failed drill is recorded).

Smoke checks sample the restored objects within ``SMOKE_BUDGET_SECONDS``
(``--smoke-budget``); the seed is printed, and ``--smoke-seed N`` on the same
backup checks the same objects again. ``--full-smoke`` checks every object.
"""

from __future__ import annotations

from django.core.management.base import CommandError

from dbs_admin.conf import dbs_settings
from dbs_admin.drills.runner import run_drill
from dbs_admin.management.cli import DbsCommand
from dbs_admin.management.passphrases import get_passphrase


def seed(value: str) -> int:
    seed = int(value)
    if not 0 <= seed < 2**31:
        raise ValueError(value)
    return seed


def budget(value: str) -> float:
    budget = float(value)
    if budget < 0:
        raise ValueError(value)
    return budget


def seconds(value: float | None) -> str:
    return "-" if value is None else (f"{value:.2f} s" if value < 120 else f"{value / 60:.1f} min")


def age(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"{value / 3600:.1f} h" if value < 3 * 86400 else f"{value / 86400:.1f} days"


class Command(DbsCommand):
    help = "Restore a backup into a throw-away database, check it, and record the drill (exit 0 = passed)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", nargs="?", help="A .dbs file (or a backup name with --target).")
        parser.add_argument("--latest", action="store_true", help="Drill the newest backup of the target.")
        parser.add_argument("--target", help="Target to take the backup from (default: DEFAULT_TARGET).")
        parser.add_argument("--passphrase-file", help="File holding the passphrase (else $DBS_PASSPHRASE).")
        parser.add_argument(
            "--identity", help="Identity file for recipient-sealed backups (its passphrase in "
            "$DBS_DRILL_IDENTITY_PASSPHRASE); default DBS_ADMIN['DRILL_IDENTITY'].",
        )
        parser.add_argument("--no-mail", action="store_true", help="Do not mail ADMINS when the drill fails.")
        smoke = parser.add_mutually_exclusive_group()
        smoke.add_argument(
            "--full-smoke", action="store_true", default=None,
            help="Run every smoke check over every object, with no time budget (default: DBS_ADMIN['SMOKE_FULL']).",
        )
        smoke.add_argument(
            "--smoke-seed", type=seed, metavar="N",
            help="Sample the smoke checks' objects with this seed (a report's seed: the same objects again).",
        )
        parser.add_argument(
            "--smoke-budget", type=budget, metavar="SECONDS",
            help="Seconds for all smoke checks together (default: DBS_ADMIN['SMOKE_BUDGET_SECONDS']).",
        )

    def handle(self, *args, **options) -> None:
        if bool(options["file"]) == bool(options["latest"]):
            raise CommandError("give a backup FILE or --latest (with --target NAME for another target)")
        passphrase = get_passphrase(passphrase_file=options["passphrase_file"], no_input=True, required=False)
        identity = options["identity"]
        if passphrase is None and identity is None and not dbs_settings.DRILL_IDENTITY:
            passphrase = get_passphrase(no_input=options["no_input"], required=False)
            if passphrase is None:  # not a failed drill: nothing ran, nothing is recorded
                env = dbs_settings.DRILL_IDENTITY_PASSPHRASE_ENV
                raise CommandError(
                    "drill failed: no key to open the backup: give --passphrase-file FILE or $DBS_PASSPHRASE (a "
                    f"backup sealed with a passphrase), --identity FILE with its passphrase in ${env} (a backup "
                    "sealed to recipients), or set DBS_ADMIN['DRILL_IDENTITY'] (`manage.py dbs_keys init`)",
                    returncode=3,
                )
        target = options["target"] if (options["latest"] or options["target"]) else None
        if options["latest"] and target is None:
            target = dbs_settings.DEFAULT_TARGET
        report = run_drill(
            None if options["latest"] else options["file"], target=target, passphrase=passphrase,
            identity=identity, alert=not options["no_mail"], smoke_seed=options["smoke_seed"],
            full_smoke=options["full_smoke"], smoke_budget=options["smoke_budget"],
        )
        # How to name this backup again, for the line that reproduces the smoke sample.
        self.again = options["file"] if options["file"] else report.backup_name
        if target:
            self.again += f" --target {target}"
        self.print_report(report, verbosity=options["verbosity"])
        if not report.passed:
            raise SystemExit(1)

    def print_report(self, report, *, verbosity: int = 1) -> None:
        out = self.stdout
        out.write(f"Drill #{report.pk} of {report.backup_name} ({report.engine or '?'})")
        for check in report.checks.all():
            mark = self.style.SUCCESS("PASS") if check.passed else self.style.ERROR("FAIL")
            first, *rest = (check.detail or "").splitlines() or [""]
            out.write(f"  {mark}  {check.name:<36} {check.seconds:7.2f} s  {first}")
            if not check.passed or check.sample:  # a smoke check's sample is always shown
                for line in rest[:40]:
                    out.write(f"        {line}")
            if check.sample and verbosity >= 2:
                for s in check.sample.get("samples", []):
                    if "checked" in s:
                        out.write(f"        {s['model']} pks checked: {', '.join(map(str, s['checked']))}")
        steps = sum(c.seconds for c in report.checks.all())
        out.write(f"        {'total':<36} {report.total_seconds or 0:7.2f} s  "
                  f"(the steps above {steps:.2f} s; the rest: scratch database, records, clean-up)")
        if report.error:
            out.write(self.style.ERROR(f"  error: {report.error}"))
        if report.smoke_full:
            out.write("Smoke checks ran over every object (--full-smoke).")
        elif report.smoke_seed is not None:
            out.write(f"Smoke checks sampled with seed {report.smoke_seed}; the same objects again: "
                      f"{self.reproduce(report)}")
        verdict = self.style.SUCCESS("PASSED") if report.passed else self.style.ERROR("FAILED")
        failed = [c.name for c in report.checks.all() if not c.passed]
        out.write(
            f"{verdict}: drill took {seconds(report.total_seconds)}, restore time (RTO) "
            f"{seconds(report.restore_seconds)}, backup age (RPO) {age(report.backup_age_seconds)}"
            + (f"; failed: {', '.join(failed)}" if failed else "")
        )

    def reproduce(self, report) -> str:
        """The command that drills the same backup with the same smoke sample."""
        again = getattr(self, "again", report.backup_name)
        return f"manage.py dbs_drill {again} --smoke-seed {report.smoke_seed}"
