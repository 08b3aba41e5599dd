"""``python -m dbs_admin.sealed repo-check|repo-heal|repo-list DIR``, ``repo-export DIR SNAPSHOT OUTPUT``.

Why here: on a bare rescue machine the repository must be checkable (and
healable) with nothing but this package, as a single ``.dbs`` file is, and a
snapshot exportable to a standalone ``.dbs`` that restores anywhere.
Exit status as the rest of the CLI: 0 intact, 1 damaged but healable (or
healed), 2 something is lost (the objects are named) or no snapshot has the name asked for (one line naming
it), 3 wrong or missing key, 64 a usage error (an OUTPUT that exists, a missing option).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from dbs_admin.sealed.errors import UsageError

EXIT_OK, EXIT_HEALED, EXIT_FAILED = 0, 1, 2


def _store(path: str):
    from dbs_admin.sealed.repo.store import DirectoryStore

    folder = Path(path)
    if not (folder / "keys").is_file():
        raise UsageError(f"{folder} is not a repository (it has no keys object)")
    return DirectoryStore(folder)


def cmd_repo_check(args: argparse.Namespace, key: Callable[[argparse.Namespace], dict],
                   emit: Callable[[argparse.Namespace, dict, str], None]) -> int:
    from dbs_admin.sealed.repo.check import check_repository
    from dbs_admin.sealed.repo.repository import Repository

    store = _store(args.dir)
    repo = Repository.open(store, **key(args)) if (args.read_data or args.identity) else None
    report = check_repository(store, repo=repo, read_data=args.read_data)
    if not report.ok:
        problems = "; ".join(f"{name}: {why}" for name, why in list(report.errors.items())[:10])
        emit(args, report.as_dict(), f"{args.dir}: FAILED: {problems}")
        return EXIT_FAILED
    what = f"{report.objects} objects" + (f", {report.chunks_read} chunks decrypted" if args.read_data else "")
    if report.damaged:
        emit(args, report.as_dict(), f"{args.dir}: damaged but healable ({what}): {', '.join(report.damaged)}; "
                                     "run repo-heal")
        return EXIT_HEALED
    emit(args, report.as_dict(), f"{args.dir}: intact ({what})")
    return EXIT_OK


def cmd_repo_heal(args: argparse.Namespace, emit: Callable[[argparse.Namespace, dict, str], None]) -> int:
    from dbs_admin.sealed.repo.check import heal_repository

    result = heal_repository(_store(args.dir))  # UnrecoverableError (exit 2) names the lost objects
    message = f"healed {len(result.healed)} object(s): {', '.join(result.healed)}" if result.healed else "intact"
    emit(args, {"healed": result.healed}, f"{args.dir}: {message}")
    return EXIT_HEALED if result.healed else EXIT_OK


def cmd_repo_list(args: argparse.Namespace, emit: Callable[[argparse.Namespace, dict, str], None]) -> int:
    from dbs_admin.sealed.repo.repository import keyless_listing

    listing = keyless_listing(_store(args.dir))
    running, rows = 0, []
    for name, added in listing:
        running += added
        rows.append({"name": name, "added": added, "total": running})
    if args.json:
        emit(args, {"snapshots": rows}, "")
    else:
        for row in rows:
            print(f"{row['name']}  {row['added']} bytes added, total {row['total']}")
    return EXIT_OK


def cmd_repo_export(args: argparse.Namespace, key: Callable[[argparse.Namespace], dict],
                    emit: Callable[[argparse.Namespace, dict, str], None]) -> int:
    """The export is sealed with the passphrase that opened the repository (and any --recipient); opened
    with --identity, it is sealed to the --recipient(s) only (the passphrase read is the identity file's)."""
    from dbs_admin.sealed.repo.export import export_snapshot
    from dbs_admin.sealed.repo.repository import Repository

    if Path(args.output).exists() and not args.force:
        raise UsageError(f"{args.output} already exists; use --force to replace it")
    if args.identity and not args.recipient:
        raise UsageError("opened with --identity, the export needs --recipient R to be sealed to")
    store = _store(args.dir)
    opened = key(args)
    repo = Repository.open(store, **opened)  # a wrong key: exit 3, nothing written
    report = export_snapshot(repo, args.snapshot, args.output, passphrase=opened.get("passphrase"),
                             recipients=args.recipient, overwrite=args.force)
    emit(args, report.as_dict(), f"exported snapshot {args.snapshot} to {report.path} ({report.size} bytes, "
                                 "verified)")
    return EXIT_OK


def add_commands(sub, common, key, emit) -> None:
    """Register the repository commands on the container CLI's sub-parsers."""
    p = sub.add_parser("repo-check", help="check a repository folder without the key (or every chunk, --read-data)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--read-data", action="store_true", help="also decrypt every chunk and check its id")
    p.add_argument("--identity", metavar="F", help="identity file (with --read-data)")
    common(p, key=True)
    p.set_defaults(func=lambda args: cmd_repo_check(args, key, emit))
    p = sub.add_parser("repo-heal", help="heal every damaged object of a repository folder in place (no key)")
    p.add_argument("dir", metavar="DIR")
    common(p)
    p.set_defaults(func=lambda args: cmd_repo_heal(args, emit))
    p = sub.add_parser("repo-list", help="list a repository folder's snapshots with bytes added and total (no key)")
    p.add_argument("dir", metavar="DIR")
    common(p)
    p.set_defaults(func=lambda args: cmd_repo_list(args, emit))
    p = sub.add_parser("repo-export", help="export a snapshot to a standalone sealed file OUTPUT")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("snapshot", metavar="SNAPSHOT")
    p.add_argument("output", metavar="OUTPUT")
    p.add_argument("--identity", metavar="F", help="identity file that opens the repository")
    p.add_argument("--recipient", action="append", default=[], metavar="R",
                   help="also seal the export to this public recipient (dbs1...); repeatable")
    common(p, key=True, force=True)
    p.set_defaults(func=lambda args: cmd_repo_export(args, key, emit))
