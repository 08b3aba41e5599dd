"""``python -m dbs_admin.sealed repo-check|repo-heal DIR``: a repository checked and healed without Django.

Why here: on a bare rescue machine the repository must be checkable (and
healable) with nothing but this package, as a single ``.dbs`` file is.
Exit status as the rest of the CLI: 0 intact, 1 damaged but healable (or
healed), 2 something is lost (the objects are named), 3 wrong or missing key.
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
