"""`tflock-bot`: the bot's command line (docs/design.md §6). Exit codes: 0 success, 1 operation failed or refused,
2 bad input."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import make_url

from bot import __version__
from bot.db import grant_runtime_role, grant_statements, upgrade_to_head
from bot.errors import BadInput, ConfigurationError, TflockError
from bot.locks.address import parse_address
from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.locks.facts import LockFacts, lock_facts, render_text
from bot.locks.model import Answer
from bot.logs import configure_logging
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("tflock")

Command = Callable[[argparse.Namespace, Settings], int]
SLOW_NOTICE_SECONDS = 2.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: {message}\n")


def _directory(settings: Settings) -> LockDirectory:
    return LockDirectory(load_backends(settings))


@contextmanager
def _saying_what_is_slow(directory: LockDirectory, after: float = SLOW_NOTICE_SECONDS) -> Iterator[None]:
    """While AWS is slow, tell the person on stderr which call it is waiting for, and for how long."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(after):
            calls = [call for b in directory.backends.backends if (call := b.clients.in_flight.slowest())]
            if calls:
                what, seconds = max(calls, key=lambda call: call[1])
                print(f"tflock-bot: still waiting for AWS {what} ({seconds:.0f}s so far)…", file=sys.stderr)

    threading.Thread(target=watch, name="tflock-patience", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    directory = _directory(settings)
    with _saying_what_is_slow(directory):
        lock = directory.status(args.state)
    facts = lock_facts(lock, datetime.now(UTC), settings.stale_after)
    if args.json:
        _json_output()
        print(json.dumps(facts.as_json(), indent=2, ensure_ascii=False))
    else:
        print(render_text(facts))
    return 1 if facts.answer is Answer.UNKNOWN else 0


def _json_output() -> None:
    """A lock file's non-UTF-8 bytes are lone surrogates in `raw_info`: written as `\\udcXX`, a JSON escape that
    reads back to the same string (and bytes), instead of failing to encode."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    directory = _directory(settings)
    with _saying_what_is_slow(directory):
        listing = directory.list_locks()
    now = datetime.now(UTC)
    facts = [lock_facts(lock, now, settings.stale_after) for lock in listing.locks]
    if args.stale:
        facts = [f for f in facts if f.stale]
    if args.json:
        document = {
            "complete": listing.complete,
            "locks": [f.as_json() for f in facts],
            "problems": [{"backend": p.backend, "message": p.message, "failed": p.failed} for p in listing.problems],
        }
        _json_output()
        json.dump(document, sys.stdout, indent=2, ensure_ascii=False)  # streamed: no second copy in memory
        print()
    else:
        print(_list_table(facts, stale_only=args.stale, complete=listing.complete))
    for problem in listing.problems:
        print(f"tflock-bot: warning: could not check backend {problem.backend}: {problem.message}", file=sys.stderr)
    return 0 if listing.complete else 1


def _list_table(rows: Sequence[LockFacts], *, stale_only: bool, complete: bool = True) -> str:
    if not rows and not complete:
        what = "stale locks" if stale_only else "locks"
        return f"No {what} found in what could be checked; this list is partial (see the warnings)."
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
            f"HOLD: {f.hold.reason}" if f.hold else "STALE" if f.stale else "",
        )
        for f in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.server import serve  # noqa: PLC0415 (Bolt and waitress load only for the command that needs them)

    configure_logging(settings.log_format, os.environ.get("TFLOCK_LOG_LEVEL", "INFO"))
    # With a separate migration URL the bot's own role cannot migrate (it owns nothing): the owner role does
    # it beforehand (`tflock-bot db upgrade`, the Helm chart's migration Job).
    own_migrations = settings.migration_database_url is None
    if not own_migrations:
        logging.getLogger(__name__).info("TFLOCK_MIGRATION_DATABASE_URL is set: serve does not migrate")
    return serve(settings, migrate=own_migrations and not args.no_migrate)


def cmd_db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    upgrade_to_head(settings.migrates_with)
    print(f"tflock-bot: the database is at the newest schema ({_safe_url(settings.migrates_with)})")
    if settings.migration_database_url is not None:
        role = grant_runtime_role(settings.migration_database_url, settings.database_url)
        if role is not None:
            print(f"tflock-bot: granted the bot's role {role} what it needs (docs/install.md), and no more")
    return 0


def cmd_db_grants(args: argparse.Namespace, settings: Settings) -> int:
    for statement in grant_statements(args.role, args.schema):
        print(f"{statement};")
    return 0


def _state_filter(text: str | None, settings: Settings) -> str | None:
    """--state in any form docs/design.md §3 accepts but a lock ID (the trail outlives locks): address, s3://, alias."""
    if not text:
        return None
    return parse_address(text, load_backends(settings).aliases).lock_id


def _audit_sessions(settings: Settings) -> Any:
    from bot.db import make_engine, make_sessions  # noqa: PLC0415 (SQLAlchemy loads only when needed)

    return make_sessions(make_engine(settings.database_url))


def cmd_audit_query(args: argparse.Namespace, settings: Settings) -> int:
    from bot.audit.query import AuditFilter, parse_action, parse_actor, parse_moment, stream_events, write_events  # noqa: PLC0415

    now = datetime.now(UTC)
    where = AuditFilter(
        state=_state_filter(args.state, settings),
        actor=parse_actor(args.actor) if args.actor else None,
        action=parse_action(args.action) if args.action else None,
        since=parse_moment(args.since, now, what="--since") if args.since else None,
        until=parse_moment(args.until, now, what="--until") if args.until else None,
    )
    write_events(stream_events(_audit_sessions(settings), where), sys.stdout, args.format)
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from bot.audit.chain import verify_chain  # noqa: PLC0415

    result = verify_chain(_audit_sessions(settings))
    print(f"tflock-bot: {result.summary()}", file=sys.stdout if result.ok else sys.stderr)
    return 0 if result.ok else 1


def cmd_audit_report(args: argparse.Namespace, settings: Settings) -> int:
    from bot.audit.query import parse_moment  # noqa: PLC0415
    from bot.audit.report import build_report, render_report  # noqa: PLC0415

    now = datetime.now(UTC)
    report = build_report(
        _audit_sessions(settings),
        since=parse_moment(args.since, now, what="--since"),
        until=parse_moment(args.until, now, what="--until") if args.until else now,
        state=_state_filter(args.state, settings),
    )
    print(render_report(report))
    return 0


_CLI_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@+-]{0,59}")


def _holds(settings: Settings) -> Any:
    """The hold service on the bot's database; the database must be at the newest schema (it audits)."""
    from sqlalchemy import inspect  # noqa: PLC0415 (SQLAlchemy loads only when needed)
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415

    from bot.db import DatabaseUnavailable, describe_error, make_engine, make_sessions  # noqa: PLC0415
    from bot.unlock.holds import Holds  # noqa: PLC0415

    engine = make_engine(settings.database_url)
    try:
        migrated = inspect(engine).has_table("holds")
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"the database is unreachable: {describe_error(exc)}") from exc
    if not migrated:
        raise ConfigurationError(
            f"the database ({_safe_url(settings.database_url)}) has no holds table yet: run `tflock-bot db upgrade`"
        )
    return Holds(make_sessions(engine), _directory(settings), lambda: datetime.now(UTC))


def _cli_actor(name: str) -> str:
    """`--actor NAME` as recorded: `cli:NAME` (so a CLI hold is never taken for a Slack user's)."""
    if not _CLI_NAME.fullmatch(name):
        raise BadInput(
            f"--actor {name[:80]!r} is not a name: letters, digits and _ . @ + - (up to 60), starting with a "
            "letter or digit"
        )
    return f"cli:{name}"


def _hold_json(view: Any) -> dict[str, Any]:
    return {
        "id": view.id,
        "address": view.address,
        "status": view.status.value,
        "lock_id": view.lock_id,
        "holder": view.holder,
        "reason": view.reason,
        "channel": view.channel,
        "held_in": [store.value for store in view.held_in],
        "created": view.created_at.isoformat(),
        "released": view.released_at.isoformat() if view.released_at else None,
        "released_by": view.released_by,
        "outcome": view.outcome,
        "raw_info": view.raw_info,
    }


def _refused(exc: TflockError, as_json: bool) -> int:
    if as_json:
        why = getattr(exc, "why", None)
        print(json.dumps({"ok": False, "why": str(why) if why else None, "message": str(exc)}, ensure_ascii=False))
    print(f"tflock-bot: {exc}", file=sys.stderr)
    return exc.exit_code


def cmd_hold(args: argparse.Namespace, settings: Settings) -> int:
    actor = _cli_actor(args.actor)
    holds = _holds(settings)
    channel = args.channel.lstrip("#") if args.channel else None
    try:
        with _saying_what_is_slow(holds.directory):
            view = holds.hold(args.state, " ".join(args.reason), actor, channel)
    except TflockError as exc:
        return _refused(exc, args.json)
    if args.json:
        print(json.dumps({"ok": True, "hold": _hold_json(view)}, indent=2, ensure_ascii=False))
    else:
        where = " and ".join("DynamoDB" if s == "dynamodb" else "the lock file" for s in view.held_in)
        print(f"{view.address}: held by {view.holder} ({where}), lock ID {view.lock_id}")
        print(f"  reason: {view.reason}")
        print(
            f"  terraform plan/apply on it now fail with this reason; release: tflock-bot release {view.address} "
            f"--actor {args.actor}"
        )
    return 0


def cmd_release(args: argparse.Namespace, settings: Settings) -> int:
    actor = _cli_actor(args.actor)
    holds = _holds(settings)
    try:
        with _saying_what_is_slow(holds.directory):
            view = holds.release(args.state, actor)
    except TflockError as exc:
        return _refused(exc, args.json)
    if args.json:
        print(json.dumps({"ok": True, "hold": _hold_json(view)}, indent=2, ensure_ascii=False))
    else:
        print(f"{view.address}: released ({view.outcome or 'the hold is over'})")
    return 0


def _safe_url(url: str) -> str:

    return make_url(url).render_as_string(hide_password=True)


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535; 0 picks a free one)")
    return int(text)


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
    grants = db_sub.add_parser("grants", help="print the PostgreSQL GRANTs for the bot's runtime role")
    grants.add_argument("role", help="the role in TFLOCK_DATABASE_URL (e.g. tflock_bot)")
    grants.add_argument("--schema", default="public", help="the schema the tables are in (default: public)")
    grants.set_defaults(func=cmd_db_grants)

    audit = sub.add_parser("audit", help="the audit trail: query, verify, report")
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="COMMAND", parser_class=_Parser)
    audit_sub.required = True
    query = audit_sub.add_parser("query", help="matching events, oldest first, streamed")
    query.add_argument("--state", help="a state address (bucket/key or s3://bucket/key)")
    query.add_argument("--actor", help="a Slack user ID (U…)")
    query.add_argument("--action", help="requested, approved, refused, executed, …")
    query.add_argument("--since", help="a duration back from now (7d, 12h) or a date/time (2026-06-01)")
    query.add_argument("--until", help="as --since; exclusive")
    query.add_argument("--format", choices=("table", "csv", "json"), default="table")
    query.set_defaults(func=cmd_audit_query)
    verify = audit_sub.add_parser("verify", help="check the hash chain; exit 0 when intact")
    verify.set_defaults(func=cmd_audit_verify)
    report = audit_sub.add_parser("report", help="force-unlocks per state and month, people, ages, refusals")
    report.add_argument("--since", default="90d", help="a duration back from now or a date (default 90d)")
    report.add_argument("--until", help="as --since; default now")
    report.add_argument("--state", help="only this state")
    report.set_defaults(func=cmd_audit_report)

    demo = sub.add_parser(
        "demo",
        help="try it: embedded AWS, the bot and a page that plays Slack, on 127.0.0.1 (pip install '.[demo]')",
        description="Start moto (AWS), the real bot and a local page that plays Slack, all on 127.0.0.1. "
        "Ignores AWS_*, SLACK_* and TFLOCK_* settings; never reaches real AWS or Slack. Ctrl-C stops it.",
    )
    demo.add_argument("--port", type=_port, default=8300, help="the page's port on 127.0.0.1 (default 8300; 0: any)")
    demo.add_argument("--no-open", action="store_true", help="do not open a browser")
    demo.add_argument(
        "--database", metavar="FILE", help="keep the audit trail in this SQLite file (default: temporary)"
    )
    demo.set_defaults(func=None)

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

    hold = sub.add_parser(
        "hold",
        help="take a state's real Terraform lock on purpose, with a reason (nobody plans or applies until released)",
    )
    hold.add_argument("state", help="bucket/key, s3://bucket/key or alias")
    hold.add_argument("reason", nargs="+", help="why: shown by Terraform to anyone who tries to plan or apply")
    hold.add_argument("--actor", required=True, help="who holds it (recorded as cli:NAME); only they can release")
    hold.add_argument("--channel", help="the incident channel, shown in the lock's Info (e.g. incident-42)")
    hold.add_argument("--json", action="store_true", help="machine-readable output")
    hold.set_defaults(func=cmd_hold)

    release = sub.add_parser("release", help="release a hold you took (compare-and-delete of the exact lock written)")
    release.add_argument("state", help="bucket/key, s3://bucket/key or alias")
    release.add_argument("--actor", required=True, help="the NAME the hold was taken with (cli:NAME)")
    release.add_argument("--json", action="store_true", help="machine-readable output")
    release.set_defaults(func=cmd_release)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command | None = args.func
    try:
        if func is None:  # `demo` brings its own settings and ignores the environment's
            from bot.demo.run import run_demo  # noqa: PLC0415

            configure_logging("text", "WARNING")
            return run_demo(args)
        settings = load_settings()
        configure_logging(settings.log_format, os.environ.get("TFLOCK_LOG_LEVEL", "WARNING"))
        return func(args, settings)
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
