"""``manage.py dbs_export --target T NAME|--latest OUTPUT.dbs``: a repository snapshot as a standalone sealed file.

Why: a snapshot lives inside a repository, which a rescue machine, another
site or an auditor may not have; the export is an ordinary ``.dbs`` backup
(restores, verifies and heals on its own, ``python -m dbs_admin.sealed``
included). It is sealed with the key that opened the repository (the
passphrase), or, opened with ``--identity``, with ``--recipient``s or the
configured ``DBS_ADMIN["RECIPIENTS"]``; ``--recipient`` adds recipients to a
passphrase. OUTPUT appears only once whole and verified; an existing OUTPUT,
an unknown snapshot or a wrong key is one line and a non-zero exit (3 for a
key) with nothing written.
"""

from __future__ import annotations

from pathlib import Path

from django.core.management import CommandError, CommandParser

from dbs_admin.backups.errors import BackupError
from dbs_admin.backups.repository import export_snapshot
from dbs_admin.backups.sealing_keys import sealing_keys
from dbs_admin.backups.sources import latest_name
from dbs_admin.management.cli import DbsCommand, add_key_arguments, failures, read_key
from dbs_admin.targets import get_target
from dbs_admin.targets.repository import is_repository


class Command(DbsCommand):
    help = "Export a snapshot of a repository target to a standalone sealed .dbs file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="+", metavar="NAME OUTPUT",
                            help="The snapshot's name (see dbs_list; or --latest) and the .dbs file to create.")
        parser.add_argument("--target", required=True, help="The repository target holding the snapshot.")
        parser.add_argument("--latest", action="store_true", help="Export the newest snapshot.")
        parser.add_argument("--recipient", action="append", default=[], metavar="R",
                            help="Also seal the export to this public recipient (dbs1...); repeatable.")
        add_key_arguments(parser, identity=True)

    def handle(self, *args, **options) -> None:
        names = options["names"]
        if len(names) != (1 if options["latest"] else 2):
            raise CommandError("give NAME OUTPUT, or --latest OUTPUT")
        output = Path(names[-1])
        if output.exists() or output.is_symlink():
            raise CommandError(f"{output} already exists; an export never overwrites a file")
        if not output.parent.is_dir():
            raise CommandError(f"{output.parent} is not a folder")
        with failures("export"):
            target = get_target(options["target"])
            if not is_repository(target):
                raise BackupError(f"target {target.name!r} holds sealed files, not a repository: copy the file "
                                  "itself (dbs_list shows where)")
            name = latest_name(target.name) if options["latest"] else names[0]
            key = read_key(options, source=name, target=target.name)
            keys = sealing_keys(key["passphrase"], options["recipient"] or None).as_writer_options()
            report = export_snapshot(target, name, output, passphrase=key["passphrase"], identity=key["identity"],
                                     keys=keys)
        self.stdout.write(f"exported {name} from {target.name!r} to {output} ({report.size} bytes, verified; "
                          f"sha256 {report.sha256})")
