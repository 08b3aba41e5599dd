"""``manage.py dbs_status [--json]``: is the site recoverable? Exit 0 healthy, 1 not (for cron and monitors)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from dbs_admin.drills.health import health_status


class Command(BaseCommand):
    help = "Age of the newest verified backup against the RPO, and the last restore drill (exit 1 when unhealthy)."

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
        out.write(self.style.SUCCESS("healthy") if health.healthy else self.style.ERROR("UNHEALTHY"))
