"""Reading the audit trail: the filters managers use (docs/design.md §6), streamed in constant memory, written as a
table, CSV or JSON; the latest events for a Slack summary; a CSV file for Slack.

Rows come in the order they were recorded (`id`, which is also the hash chain's order). CSV and JSON hold
every stored field, `at` and `detail` in the canonical text the hash covers (docs/audit.md), so an
auditor can re-check each exported row's hash.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Protocol

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.chain import canonical_at, canonical_json
from bot.audit.models import RECORD_COLUMNS, AuditAction, AuditEvent, AuditRecord
from bot.db import DatabaseUnavailable, describe_error, reading
from bot.durations import parse_duration
from bot.errors import BadInput, TflockError
from bot.locks.facts import printable

STREAM_BATCH = 1000
COLUMNS = tuple(AuditRecord.__dataclass_fields__)
FORMATS = ("table", "csv", "json")

_DURATION = re.compile(r"(?:\d+[dhms])+")
_SLACK_USER = re.compile(r"<?@?([UW][A-Z0-9]{2,})(?:\|[^>]*)?>?")


class Writable(Protocol):
    """Where output goes: sys.stdout, an open text file, a StringIO."""

    def write(self, text: str, /) -> object: ...


@dataclass(frozen=True)
class AuditFilter:
    """Which events: every condition given must hold. `since` is inclusive, `until` exclusive (UTC)."""

    state: str | None = None  # a state address exactly as stored (`bucket/key`)
    actor: str | None = None  # a Slack user ID
    action: str | None = None  # an AuditAction value
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        for moment in (self.since, self.until):
            if moment is not None and moment.tzinfo is None:
                raise ValueError("filter times are aware UTC datetimes")
        if self.since is not None and self.until is not None and self.since >= self.until:
            since, until = f"{self.since:%Y-%m-%d %H:%M}", f"{self.until:%Y-%m-%d %H:%M}"
            raise BadInput(f"since ({since} UTC) must be before until ({until} UTC)")

    def conditions(self) -> list[ColumnElement[bool]]:
        # Each equality plus the `at` range is served by one index: (state_address, at), (actor, at), (action, at).
        where: list[ColumnElement[bool]] = []
        if self.state is not None:
            where.append(AuditEvent.state_address == self.state)
        if self.actor is not None:
            where.append(AuditEvent.actor == self.actor)
        if self.action is not None:
            where.append(AuditEvent.action == self.action)
        if self.since is not None:
            where.append(AuditEvent.at >= self.since)
        if self.until is not None:
            where.append(AuditEvent.at < self.until)
        return where

    def statement(self, *, newest_first: bool = False, limit: int | None = None) -> Select[Any]:
        query = (
            select(*RECORD_COLUMNS)
            .where(*self.conditions())
            .order_by(AuditEvent.id.desc() if newest_first else AuditEvent.id)
        )
        return query.limit(limit) if limit is not None else query


# -- what people type ---------------------------------------------------------------------------------
def parse_moment(text: str, now: datetime, *, what: str = "time") -> datetime:
    """`7d` (that long before now), `2026-06-01` (midnight UTC) or an ISO 8601 time (UTC unless it says so)."""
    cleaned = text.strip()
    if _DURATION.fullmatch(cleaned.lower()):
        try:
            return now - parse_duration(cleaned)
        except (ValueError, OverflowError) as exc:
            raise BadInput(f"{what} {cleaned[:40]!r}: {exc}") from None
    try:
        moment = datetime.fromisoformat(cleaned.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"{what} {cleaned[:40]!r} is neither a duration (7d, 12h, 1h30m) "
            "nor a date (2026-06-01 or 2026-06-01T12:00Z)"
        ) from None
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise BadInput(f"{what} {cleaned[:40]!r} is outside the range of dates tflock can handle") from None


def parse_action(text: str) -> str:
    try:
        return AuditAction(text.strip().lower()).value
    except ValueError:
        known = ", ".join(action.value for action in AuditAction)
        raise BadInput(f"{text[:40]!r} is not an audit action; use one of {known}") from None


def parse_actor(text: str) -> str:
    """A Slack user ID from `U0123ABCD`, `@U0123ABCD` or a mention `<@U0123ABCD|alice>`."""
    match = _SLACK_USER.fullmatch(text.strip())
    if match is None:
        raise BadInput(f"{text[:40]!r} is not a Slack user ID (U0123ABCD) or a mention of one")
    return match.group(1)


# -- reading ----------------------------------------------------------------------------------------------
def stream_events(
    sessions: sessionmaker[Session],
    where: AuditFilter,
    *,
    newest_first: bool = False,
    limit: int | None = None,
    batch: int = STREAM_BATCH,
) -> Iterator[AuditRecord]:
    """Matching events, oldest first unless asked; fetched `batch` rows at a time (a server-side cursor on
    PostgreSQL, a WAL reader on SQLite), so memory stays flat however many there are."""
    statement = where.statement(newest_first=newest_first, limit=limit).execution_options(yield_per=batch)
    try:
        with reading(sessions) as session:
            for row in session.execute(statement):
                yield AuditRecord(*row)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"could not read the audit trail: {describe_error(exc)}") from exc


def summary(sessions: sessionmaker[Session], where: AuditFilter, limit: int = 20) -> list[AuditRecord]:
    """The latest `limit` matching events, newest first (the Slack summary)."""
    return list(stream_events(sessions, where, newest_first=True, limit=limit, batch=max(limit, 1)))


class ExportTooLarge(TflockError):
    """More matching events than a chat upload should carry; the CLI streams any number."""


def export_csv(
    sessions: sessionmaker[Session], where: AuditFilter, out: BinaryIO, *, max_rows: int, max_bytes: int
) -> int:
    """Every matching event as spreadsheet-safe UTF-8 CSV into `out` (a file on disk for a Slack upload); returns
    the row count.

    Meant to be opened in a spreadsheet: cells that would start a formula are neutralised (`spreadsheet_safe`),
    so this file is not the canonical export — `tflock-bot audit query --format csv` is (docs/audit.md).

    Rows are streamed from the database to the file, so memory stays flat however large the trail. Past
    `max_rows` rows or `max_bytes` bytes it stops with ExportTooLarge, which tells the person to use the CLI.
    """
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")

    def capped(records: Iterable[AuditRecord]) -> Iterator[AuditRecord]:
        for count, record in enumerate(records, start=1):
            if count % 1000 == 0:
                text.flush()
            if count > max_rows or (count % 1000 == 0 and out.tell() > max_bytes):
                raise ExportTooLarge(
                    f"More than {max_rows:,} matching events or {max_bytes // 1_000_000} MB is too much for a file "
                    "in Slack; narrow it (since:, until:, a state, user:) or use "
                    "`tflock-bot audit query --format csv`, which streams any number."
                )
            yield record

    try:
        return _write_csv(capped(stream_events(sessions, where)), text, cell=spreadsheet_safe)
    finally:
        text.flush()
        text.detach()  # `out` stays open for the caller


def plan(sessions: sessionmaker[Session], where: AuditFilter, *, newest_first: bool = False) -> str:
    """The database's plan for `where` as stream_events runs it (on PostgreSQL through a cursor, which the
    planner treats differently), to check that an index serves it."""
    with reading(sessions) as session:
        connection = session.connection()
        compiled = where.statement(newest_first=newest_first).compile(dialect=connection.dialect)
        if connection.dialect.name == "sqlite":
            parameters: Any = tuple(compiled.params[name] for name in compiled.positiontup or ())
            rows = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", _sqlite_values(parameters))
            return "\n".join(str(row[-1]) for row in rows)
        rows = connection.exec_driver_sql(f"EXPLAIN DECLARE tflock_plan CURSOR FOR {compiled}", compiled.params)
        return "\n".join(str(row[0]) for row in rows)


def _sqlite_values(parameters: tuple[Any, ...]) -> tuple[Any, ...]:
    # The driver is given values as the UtcDateTime column stores them (naive UTC).
    return tuple(
        value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else value for value in parameters
    )


# -- writing ----------------------------------------------------------------------------------------------
def write_events(records: Iterable[AuditRecord], out: Writable, fmt: str) -> int:
    """Write records as they arrive, as `table`, `csv` or `json`; returns how many were written."""
    if fmt == "csv":
        return _write_csv(records, out)
    if fmt == "json":
        return _write_json(records, out)
    if fmt == "table":
        return _write_table(records, out)
    raise BadInput(f"{fmt[:20]!r} is not an output format; use one of {', '.join(FORMATS)}")


def as_row(record: AuditRecord) -> dict[str, Any]:
    """One record as JSON values: `at` in canonical RFC 3339 (UTC, microseconds, Z), the rest as stored."""
    row = {name: getattr(record, name) for name in COLUMNS}
    row["at"] = canonical_at(record.at)
    return row


# What a spreadsheet program reads as the start of a formula (or DDE) in a cell: OWASP's "CSV injection" list.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """A cell a spreadsheet shows as text: one that starts like a formula gets a leading `'`."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _canonical(value: Any) -> Any:
    return value


def _write_csv(records: Iterable[AuditRecord], out: Writable, *, cell: Callable[[Any], Any] = _canonical) -> int:
    """RFC 4180 CSV; `cell` maps every value (canonical: unchanged, so each row's hash can be re-checked)."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    count = 0
    for r in records:
        # In COLUMNS order; None is written as an empty cell (NULL).
        at, detail = canonical_at(r.at), canonical_json(r.detail)
        row = (
            r.id,
            at,
            r.action,
            r.actor,
            r.state_address,
            r.lock_id,
            r.request_id,
            r.channel,
            detail,
            r.prev_hash,
            r.hash,
        )
        writer.writerow([cell(value) for value in row])
        count += 1
    return count


def _write_json(records: Iterable[AuditRecord], out: Writable) -> int:
    """A JSON array, one event per line."""
    count = 0
    out.write("[")
    for record in records:
        out.write(("," if count else "") + "\n" + json.dumps(as_row(record), ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


TABLE_HEADER = f"{'ID':>8}  {'AT (UTC)':<19}  {'ACTION':<16}  {'ACTOR':<11}  {'STATE':<40}  NOTE"


def _write_table(records: Iterable[AuditRecord], out: Writable) -> int:
    count = 0
    out.write(TABLE_HEADER + "\n")
    for record in records:
        out.write(table_line(record) + "\n")
        count += 1
    if not count:
        out.write("(no matching events)\n")
    return count


def table_line(record: AuditRecord) -> str:
    """One event for a terminal; untrusted text has its control characters escaped."""
    state = record.state_address or ""
    state = state if len(state) <= 40 else "…" + state[-39:]
    return printable(
        f"{record.id:>8}  {record.at:%Y-%m-%d %H:%M:%S}  {record.action:<16}  {record.actor or 'tflock':<11}  "
        f"{state:<40}  {note(record)[:80]}"
    ).rstrip()


def note(record: AuditRecord) -> str:
    """The few words that say why: a refusal's reason, a request's reason, an outcome's note."""
    detail = record.detail or {}
    for key in ("why", "reason", "note"):
        value = detail.get(key)
        if value:
            return str(value)
    return ""
