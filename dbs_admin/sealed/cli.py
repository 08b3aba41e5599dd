"""The rescue CLI: ``python -m dbs_admin.sealed {seal,verify,decrypt,heal,info,keygen}``.

Works without Django. Exit status: 0 intact; 1 damaged but fully healed (the
data produced is exact; ``verify`` reports it, ``heal`` writes a fresh copy); 2
unrecoverable, not authentic, not a sealed file, or (``repo-export``) no such
snapshot; 3 wrong or missing key (nothing is written to OUTPUT after 2 or 3); 64 usage error. ``manage.py
dbs_validate`` uses the same statuses. Human-readable
messages go to stderr; ``--json`` prints a machine-readable report on stdout.
Passphrase: ``--passphrase-file F``, else ``$DBS_PASSPHRASE``, else a prompt
(only when stdin is a terminal).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from dbs_admin.sealed.errors import KeySlotError, SealedError, UnrecoverableError, UsageError

EXIT_OK = 0
EXIT_HEALED = 1
EXIT_FAILED = 2
EXIT_KEY = 3
EXIT_USAGE = 64


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on bad usage, which would read as "unrecoverable": use 64 (EX_USAGE)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _emit(args: argparse.Namespace, payload: dict, message: str) -> None:
    if args.json:
        print(json.dumps(payload, indent=2, sort_keys=True, default=str))
    if message:
        print(message, file=sys.stderr)


def _read_passphrase(args: argparse.Namespace, *, confirm: bool = False, required: bool = True) -> str | None:
    """The passphrase from --passphrase-file, $DBS_PASSPHRASE or a terminal prompt."""
    path = getattr(args, "passphrase_file", None)
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise UsageError(f"cannot read passphrase file {path}: {exc.strerror}") from None
        value = text.splitlines()[0] if text.splitlines() else ""
        if not value:
            raise UsageError(f"passphrase file {path} is empty")
        return value
    env = os.environ.get("DBS_PASSPHRASE")
    if env:
        return env
    if not required:
        return None
    if sys.stdin is not None and sys.stdin.isatty():
        value = getpass.getpass("Passphrase: ")
        if confirm and getpass.getpass("Passphrase again: ") != value:
            raise UsageError("the two passphrases differ")
        if not value:
            raise UsageError("an empty passphrase is not allowed")
        return value
    raise UsageError("no passphrase given: use --passphrase-file F or set DBS_PASSPHRASE")


def _argon2(args: argparse.Namespace):
    from dbs_admin.sealed.keys import Argon2Params

    defaults = Argon2Params()
    return Argon2Params(
        time_cost=args.argon2_time_cost or defaults.time_cost,
        memory_kib=args.argon2_memory_kib or defaults.memory_kib,
        parallelism=args.argon2_parallelism or defaults.parallelism,
    )


def _key(args: argparse.Namespace) -> dict:
    """Keyword arguments (passphrase= or identity=) for opening a file."""
    from dbs_admin.sealed.keys import load_identity

    if args.identity:
        return {"identity": load_identity(args.identity, _read_passphrase(args))}
    return {"passphrase": _read_passphrase(args)}


def cmd_seal(args: argparse.Namespace) -> int:
    from dbs_admin.sealed.writer import seal

    if args.input != "-" and not os.path.isfile(args.input):
        raise UsageError(f"input {args.input} does not exist or is not a file")
    passphrase = _read_passphrase(args, confirm=True, required=not args.recipient)
    source = sys.stdin.buffer if args.input == "-" else args.input
    report = seal(source, args.output, passphrase=passphrase, recipients=args.recipient,
                  argon2=_argon2(args), allow_weak_argon2=args.allow_weak_argon2, overwrite=args.force)
    _emit(args, report.as_dict(),
          f"sealed {report.input_size} bytes into {report.path} ({report.size} bytes, "
          f"{report.block_count} blocks, verified)")
    return EXIT_OK


def _verify_message(report) -> str:
    if not report.ok:
        return f"{report.path}: FAILED: {report.error}"
    what = "decrypted and authenticated" if report.decrypted else "structure, hashes and parity checked"
    if report.intact:
        return f"{report.path}: intact ({what}; healing margin {report.healing_margin:.2f})"
    parts = []
    if report.healed_blocks:
        parts.append(f"{len(report.healed_blocks)} damaged block(s) healable: {report.healed_blocks[:20]}")
    if report.damaged_regions:
        parts.append(f"damaged metadata healable: {', '.join(report.damaged_regions)}")
    return (f"{report.path}: damaged but fully recoverable ({'; '.join(parts)}; {what}; "
            f"healing margin {report.healing_margin:.2f}). Run `heal` to write a fresh copy.")


def cmd_verify(args: argparse.Namespace) -> int:
    from dbs_admin.sealed.verify import verify

    key = _key(args) if (args.decrypt or args.identity) else {}
    report = verify(args.file, **key)
    _emit(args, report.as_dict(), _verify_message(report))
    return report.exit_code


def cmd_decrypt(args: argparse.Namespace) -> int:
    from dbs_admin.sealed.reader import open_sealed

    if args.output == "-":
        raise UsageError("decrypt writes a file, never a pipe, so nothing is output before authentication")
    key = _key(args)
    with open_sealed(args.file, **key) as reader:
        total = reader.read_all_to(args.output, overwrite=args.force)
        healed, regions = reader.healed_blocks, reader.damaged_regions
    damaged = bool(healed or regions)
    _emit(args, {"file": args.file, "output": args.output, "bytes": total, "healed_blocks": healed,
                 "damaged_regions": regions, "manifest": reader.manifest},
          f"decrypted {total} bytes to {args.output}"
          + (f" (healed blocks {healed[:20]}, damaged metadata {regions})" if damaged else ""))
    return EXIT_HEALED if damaged else EXIT_OK


def cmd_heal(args: argparse.Namespace) -> int:
    from dbs_admin.sealed.heal import heal

    report = heal(args.file, args.output, overwrite=args.force)
    _emit(args, report.as_dict(),
          f"wrote a fresh, fully redundant copy to {report.destination}"
          + (f" (healed blocks {report.healed_blocks[:20]}, metadata {report.damaged_regions})"
             if report.was_damaged else " (the input was intact)"))
    return EXIT_HEALED if report.was_damaged else EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    from dbs_admin.sealed.verify import info

    data = info(args.file)
    lines = [f"{k}: {v}" for k, v in data.items() if k not in ("regions", "key_slots")]
    lines += [f"key slot: {slot}" for slot in data["key_slots"]]
    lines += [f"region {name}: {state}" for name, state in data["regions"].items()]
    if args.json:
        _emit(args, data, "")
    else:
        print("\n".join(lines))
    damaged = any(s["copies_intact"] < 2 for s in data["regions"].values()) or data["located_by_scan"]
    return EXIT_HEALED if damaged else EXIT_OK


def cmd_keygen(args: argparse.Namespace) -> int:
    from dbs_admin.sealed.keys import generate_identity

    passphrase = _read_passphrase(args, confirm=True)
    identity = generate_identity(args.identity_file, passphrase, argon2=_argon2(args),
                                 allow_weak=args.allow_weak_argon2)
    if args.json:
        _emit(args, {"identity_file": args.identity_file, "recipient": identity.recipient}, "")
    else:
        print(identity.recipient)
        print(f"identity written to {args.identity_file}; give the recipient line above to "
              "`seal --recipient`", file=sys.stderr)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m dbs_admin.sealed",
        description="Seal, check, heal and open dbs_admin sealed backups (.dbs). Works without Django.",
        epilog=(
            "exit status: 0 intact; 1 damaged but fully healed (output exact); 2 unrecoverable, "
            "not authentic, not a sealed file, or no such snapshot; 3 wrong or missing key (nothing written to "
            "OUTPUT after 2 or 3); 64 usage error.\n"
            "passphrase: --passphrase-file F, else $DBS_PASSPHRASE, else a prompt (terminal only).\n"
            "file format: docs/FORMAT.md"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def common(p: argparse.ArgumentParser, *, key: bool = False, argon2: bool = False,
               force: bool = False) -> None:
        p.add_argument("--json", action="store_true", help="print a machine-readable report on stdout")
        if key:
            p.add_argument("--passphrase-file", metavar="F", help="the passphrase is the first line of F")
        if force:
            p.add_argument("--force", action="store_true", help="replace OUTPUT if it exists")
        if argon2:
            p.add_argument("--argon2-time-cost", type=int, metavar="T", help="Argon2id passes (default 3)")
            p.add_argument("--argon2-memory-kib", type=int, metavar="KIB",
                           help="Argon2id memory in KiB (default 65536)")
            p.add_argument("--argon2-parallelism", type=int, metavar="P", help="Argon2id lanes (default 4)")
            p.add_argument("--allow-weak-argon2", action="store_true",
                           help="accept Argon2 costs below t=3, 64 MiB (tests only)")

    p = sub.add_parser("seal", help="compress, encrypt and seal INPUT into OUTPUT")
    p.add_argument("input", metavar="INPUT", help="file to seal, or - for stdin")
    p.add_argument("output", metavar="OUTPUT", help="the sealed file to create (refused if it exists)")
    p.add_argument("--recipient", action="append", default=[], metavar="R",
                   help="public recipient (dbs1...) that may open the file; repeatable")
    common(p, key=True, argon2=True, force=True)
    p.set_defaults(func=cmd_seal)

    p = sub.add_parser("verify", help="check FILE without the key (or fully, with --decrypt)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--decrypt", action="store_true", help="also decrypt and authenticate everything")
    p.add_argument("--identity", metavar="F", help="identity file (implies --decrypt)")
    common(p, key=True)
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("decrypt", help="decrypt FILE into OUTPUT, healing on the way")
    p.add_argument("file", metavar="FILE")
    p.add_argument("output", metavar="OUTPUT")
    p.add_argument("--identity", metavar="F", help="identity file made by keygen")
    common(p, key=True, force=True)
    p.set_defaults(func=cmd_decrypt)

    p = sub.add_parser("heal", help="write a fresh, fully redundant copy of FILE (no key needed)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("output", metavar="OUTPUT")
    common(p, force=True)
    p.set_defaults(func=cmd_heal)

    p = sub.add_parser("info", help="show header, key slots, sizes and redundancy (no key needed)")
    p.add_argument("file", metavar="FILE")
    common(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("keygen", help="create an identity file and print its recipient string")
    p.add_argument("identity_file", metavar="IDENTITY_FILE")
    common(p, key=True, argon2=True)
    p.set_defaults(func=cmd_keygen)

    from dbs_admin.sealed.repo.cli import add_commands  # the repository's own commands (repo-check, repo-heal)

    add_commands(sub, common, _key, _emit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UnrecoverableError as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": str(exc), "unrecoverable_blocks": list(exc.blocks),
                              "unrecoverable_regions": list(exc.regions)}, indent=2))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (KeySlotError, SealedError) as exc:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": str(exc), "kind": type(exc).__name__}, indent=2))
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_KEY if isinstance(exc, KeySlotError) else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; nothing was published", file=sys.stderr)
        return 130
