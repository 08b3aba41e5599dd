"""``manage.py dbs_status [--json]``: is the site recoverable? For cron and monitors.

Exit 0 when nothing is failing (healthy, or only not set up yet: the warnings
say what is missing), 1 when something is failing (see ``drills.health``).
"""

from __future__ import annotations

import json

from dbs_admin.drills.health import NOT_CONFIGURED, SETUP_LINE, health_status
from dbs_admin.management.cli import DbsCommand


class Command(DbsCommand):
    help = ("Age of the newest verified backup against the RPO, and the last restore drill (exit 1 when failing; "
            "not set up yet is a warning).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the status as JSON.")

    def handle(self, *args, **options) -> None:
        health = health_status()
        if options["json"]:
            self.stdout.write(json.dumps(health.as_dict(), indent=2, sort_keys=True))
        else:
            self.print_text(health)
        if not health.healthy:
            raise SystemExit(1)

    def print_text(self, health) -> None:
        out = self.stdout
        b = health.newest_backup
        if b:
            out.write(f"newest verified backup: {b['name']} ({b['kind']}), {b['age_seconds'] / 3600:.1f} h old "
                      f"(RPO {health.rpo_seconds / 3600:.1f} h)")
        d = health.last_drill
        if d:
            state = "passed" if d["passed"] else "FAILED"
            rto = f", restore took {d['restore_seconds']:.1f} s" if d["restore_seconds"] is not None else ""
            rto += f" (whole drill {d['total_seconds']:.1f} s)" if d.get("total_seconds") is not None else ""
            out.write(f"last drill: #{d['id']} of {d['backup_name']} {state}{rto}")
        else:
            out.write("last drill: none yet")
        for problem in health.problems:
            out.write(self.style.ERROR(f"problem: {problem}"))
        for warning in health.warnings:
            out.write(self.style.WARNING(f"not set up yet: {warning}"))
        if not health.healthy:
            out.write(self.style.ERROR("UNHEALTHY"))
        elif health.state == NOT_CONFIGURED:
            out.write(self.style.WARNING(f"not set up yet (nothing is failing). {SETUP_LINE}"
                                         if any(c != "backup_missing" for c in health.warning_codes)
                                         else "not set up yet (nothing is failing)"))
        else:
            out.write(self.style.SUCCESS("healthy"))
