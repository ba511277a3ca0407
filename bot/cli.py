"""`tflock-bot`: the bot's command line (SPEC §4). Exit codes: 0 success, 1 operation failed, 2 bad input."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.engine import make_url

from bot import __version__
from bot.db import upgrade_to_head
from bot.errors import TflockError
from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.locks.facts import LockFacts, lock_facts, render_text
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("tflock")

Command = Callable[[argparse.Namespace, Settings], int]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: {message}\n")


def _directory(settings: Settings) -> LockDirectory:
    return LockDirectory(load_backends(settings))


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    lock = _directory(settings).status(args.state)
    facts = lock_facts(lock, datetime.now(UTC), settings.stale_after)
    if args.json:
        print(json.dumps(facts.as_json(), indent=2, ensure_ascii=False))
    else:
        print(render_text(facts))
    return 0


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    listing = _directory(settings).list_locks()
    now = datetime.now(UTC)
    facts = [lock_facts(lock, now, settings.stale_after) for lock in listing.locks]
    if args.stale:
        facts = [f for f in facts if f.stale]
    if args.json:
        document = {
            "locks": [f.as_json() for f in facts],
            "problems": [{"backend": p.backend, "message": p.message} for p in listing.problems],
        }
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False)  # streamed: no second copy in memory
        print()
    else:
        print(_list_table(facts, stale_only=args.stale))
    for problem in listing.problems:
        print(f"tflock-bot: warning: backend {problem.backend}: {problem.message}", file=sys.stderr)
    return 1 if listing.problems else 0


def _list_table(rows: Sequence[LockFacts], *, stale_only: bool) -> str:
    if not rows:
        return "No stale locks." if stale_only else "No locks held."
    header = ("AGE", "STATE", "WHO", "OPERATION", "LOCK ID", "")
    table = [header] + [
        (
            f.age or "?",
            f.address,
            f.who or "?",
            f.operation or "?",
            f.lock_id or "?",
            "STALE" if f.stale else "",
        )
        for f in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.server import serve  # noqa: PLC0415 (Bolt and waitress load only for the command that needs them)

    logging.getLogger().setLevel(os.environ.get("TFLOCK_LOG_LEVEL", "INFO").upper())
    return serve(settings, migrate=not args.no_migrate)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:

    upgrade_to_head(settings.database_url)
    print(f"tflock-bot: the database is at the newest schema ({_safe_url(settings.database_url)})")
    return 0


def _safe_url(url: str) -> str:

    return make_url(url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="tflock-bot",
        description="Terraform/OpenTofu S3-backend state locks: status, two-person force-unlock, audit trail.",
    )
    parser.add_argument("--version", action="version", version=f"tflock-bot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    serve = sub.add_parser("serve", help="run the Slack bot (Socket Mode if SLACK_APP_TOKEN is set, else HTTP)")
    serve.add_argument("--no-migrate", action="store_true", help="do not run pending database migrations first")
    serve.set_defaults(func=cmd_serve)

    db = sub.add_parser("db", help="the audit database")
    db_sub = db.add_subparsers(dest="db_command", metavar="COMMAND", parser_class=_Parser)
    db_sub.required = True
    upgrade = db_sub.add_parser("upgrade", help="migrate the database to the newest schema (Alembic head)")
    upgrade.set_defaults(func=cmd_db_upgrade)

    status = sub.add_parser("status", help="who holds a state's lock, since when")
    status.add_argument(
        "state", help="bucket/key as Terraform prints it under Path:, s3://bucket/key, alias or lock ID"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=cmd_status)

    list_ = sub.add_parser("list", help="every held lock across the configured backends, oldest first")
    list_.add_argument("--stale", action="store_true", help="only locks older than TFLOCK_STALE_AFTER")
    list_.add_argument("--json", action="store_true", help="machine-readable output")
    list_.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("TFLOCK_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Command = args.func
    try:
        return func(args, load_settings())
    except SettingsError as exc:
        print(f"tflock-bot: {exc}", file=sys.stderr)
        return 2
    except TflockError as exc:
        print(f"tflock-bot: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line for the person, the traceback only when asked for
        if os.environ.get("TFLOCK_DEBUG"):
            raise
        print(
            f"tflock-bot: internal error: {type(exc).__name__}: {exc} (TFLOCK_DEBUG=1 shows more)",
            file=sys.stderr,
        )
        return 1
