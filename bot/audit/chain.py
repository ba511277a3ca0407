"""The audit hash chain (docs/audit.md): the canonical encoding of an event, its SHA-256, appending, and verifying.

Every event stores the previous event's hash (`prev_hash`) and its own (`hash`), a SHA-256 over the
canonical encoding of its fields and `prev_hash`. Editing a row breaks its own hash; deleting or
reordering rows breaks the `prev_hash` link of the row after them. The encoding is written down in
docs/audit.md so an auditor can re-check it in any language; changing it invalidates every stored chain.

Appends are serialised so the chain stays one line and its order is the `id` order: on PostgreSQL a
transaction-scoped advisory lock, taken before the last hash is read and before the new id is drawn
from the sequence, held until the caller commits; on SQLite the write lock the transaction took with
`BEGIN IMMEDIATE` (bot/db.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.models import RECORD_COLUMNS, AuditEvent, AuditRecord
from bot.db import DatabaseUnavailable, describe_error, reading

GENESIS = "0" * 64  # the prev_hash of the first event
CHAIN_LOCK_KEY = 0x7F10C5  # PostgreSQL advisory lock serialising appends (bot/db.py has the migrations' key)
VERIFY_BATCH = 2000

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False).encode


# -- the canonical encoding ---------------------------------------------------------------------------
def canonical_at(at: datetime) -> str:
    """RFC 3339 in UTC with exactly six fraction digits and `Z`: `2026-03-04T10:20:30.123456Z`."""
    if at.tzinfo is None:
        raise ValueError("audit times are aware UTC datetimes")
    return at.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def canonical_json(value: Any) -> str:
    """RFC 8785 (JSON Canonicalization Scheme): keys sorted, no whitespace, strings as they are (UTF-8),
    numbers as ECMAScript prints them. For the common case Python's encoder already writes exactly that."""
    return _encode(value) if _encoder_is_canonical(value) else _jcs(value)


def canonical_event(
    *,
    id: int,
    at: datetime,
    action: str,
    actor: str | None,
    state_address: str | None,
    lock_id: str | None,
    request_id: str | None,
    channel: str | None,
    detail: Mapping[str, Any],
    prev_hash: str,
) -> bytes:
    """The bytes an event's hash covers: every field but `hash` itself, as one canonical JSON object."""
    fields = {
        "id": id,
        "at": canonical_at(at),
        "action": action,
        "actor": actor,
        "state_address": state_address,
        "lock_id": lock_id,
        "request_id": request_id,
        "channel": channel,
        "detail": detail,
        "prev_hash": prev_hash,
    }
    # The fields around `detail` are integers, text and null under ASCII keys: only `detail` may need JCS.
    plain = type(detail) is dict and _encoder_is_canonical(detail)
    return (_encode(fields) if plain else _jcs(fields)).encode("utf-8")


def event_hash(**fields: Any) -> str:
    """SHA-256, lowercase hex, of `canonical_event(**fields)`."""
    return hashlib.sha256(canonical_event(**fields)).hexdigest()


def record_hash(record: AuditRecord) -> str:
    """What `record.hash` must be, recomputed from its stored fields."""
    return event_hash(
        id=record.id,
        at=record.at,
        action=record.action,
        actor=record.actor,
        state_address=record.state_address,
        lock_id=record.lock_id,
        request_id=record.request_id,
        channel=record.channel,
        detail=record.detail,
        prev_hash=record.prev_hash,
    )


def _encoder_is_canonical(value: Any) -> bool:
    """True unless `value` holds a float (printed differently) or a non-ASCII key (sorted by UTF-16 in JCS)."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii() or not _plain_json(item):
                return False
        return True
    if kind is list:
        return all(_plain_json(item) for item in value)
    return kind is not float


def _plain_json(item: Any) -> bool:
    kind = type(item)
    if kind is dict or kind is list:
        return _encoder_is_canonical(item)
    return kind is not float


def _jcs(value: Any) -> str:
    if isinstance(value, Mapping):
        keys = sorted(value, key=lambda key: str(key).encode("utf-16-be"))
        return "{" + ",".join(_encode(str(key)) + ":" + _jcs(value[key]) for key in keys) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(_jcs(item) for item in value) + "]"
    if isinstance(value, float):
        return _es_number(value)
    return _encode(value)


def _es_number(value: float) -> str:
    """A double as ECMAScript's Number.prototype.toString writes it (RFC 8785 §3.2.2.3)."""
    if not math.isfinite(value):
        raise ValueError("JSON has no NaN or Infinity")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    # repr() is the shortest text that reads back as the same double, as ECMAScript's is.
    shortest = Decimal(repr(abs(value))).normalize().as_tuple()
    digits = "".join(map(str, shortest.digits))
    k = len(digits)
    n = k + int(shortest.exponent)  # the decimal point sits after n digits
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * -n + digits
    else:
        exponent = f"e{'+' if n > 0 else '-'}{abs(n - 1)}"
        body = (digits if k == 1 else digits[0] + "." + digits[1:]) + exponent
    return sign + body


# -- appending ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    """Where the next event goes: its id and the hash it chains to."""

    id: int
    prev_hash: str


def next_link(session: Session) -> Link:
    """Serialise on the chain for the rest of the caller's transaction, then read its head.

    The new id is drawn after the lock is held, so ids grow in commit order and the `id` order is the
    chain order. PostgreSQL: the caller's transaction must be READ COMMITTED (the default), so the head
    is read after the lock is granted rather than from a snapshot taken before it; any other isolation
    level is refused (DatabaseUnavailable) instead of forking the chain.
    """
    last = select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CHAIN_LOCK_KEY})
        head = select(
            func.nextval(func.pg_get_serial_sequence(AuditEvent.__tablename__, "id")),
            last.with_only_columns(AuditEvent.hash).scalar_subquery(),
            func.current_setting("transaction_isolation"),
        )
        new_id, prev, isolation = session.execute(head).one()
        if isolation != "read committed":
            raise DatabaseUnavailable(f"audit events are appended in READ COMMITTED transactions only, not {isolation}")
        return Link(int(new_id), prev if prev is not None else GENESIS)
    # SQLite: this transaction began with BEGIN IMMEDIATE, so it alone may write until it ends; rows are
    # never deleted (a trigger refuses it), so the next rowid is the last one plus one.
    row = session.execute(last).first()
    return Link(row.id + 1, row.hash) if row is not None else Link(1, GENESIS)


# -- verifying ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int  # rows read, the first bad one included
    first_bad_id: int | None
    problem: str | None  # one sentence naming the row and what is wrong with it
    last_id: int | None  # the head of the chain: keep it elsewhere to notice rows cut off the end
    last_hash: str | None

    def summary(self) -> str:
        if not self.ok:
            return f"audit chain BROKEN after {self.checked - 1:,} good rows: {self.problem}"
        if self.last_id is None:
            return "audit chain intact: no events yet"
        return f"audit chain intact: {self.checked:,} rows; last row {self.last_id}, hash {self.last_hash}"


def verify_chain(sessions: sessionmaker[Session], *, batch: int = VERIFY_BATCH) -> VerifyResult:
    """Walk every event in id order, in constant memory, and stop at the first one that does not fit.

    Gaps in ids are not tampering (a rolled-back append leaves one on PostgreSQL); the links decide.
    """
    checked = 0
    previous: AuditRecord | None = None
    try:
        for record in _records_in_id_order(sessions, batch):
            checked += 1
            problem = _problem(record, previous)
            if problem is not None:
                return VerifyResult(False, checked, record.id, problem, None, None)
            previous = record
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"could not read the audit trail: {describe_error(exc)}") from exc
    last_id, last_hash = (previous.id, previous.hash) if previous is not None else (None, None)
    return VerifyResult(True, checked, None, None, last_id, last_hash)


def verify_in_background(sessions: sessionmaker[Session], log: logging.Logger) -> VerifyResult | None:
    """The start-up check, for a background thread: logs the outcome (a warning if broken), never raises."""
    try:
        result = verify_chain(sessions)
    except Exception as exc:
        log.warning("could not verify the audit hash chain at start-up: %s", exc)
        return None
    if result.ok:
        log.info("%s", result.summary())
    else:
        log.warning("%s; run `tflock-bot audit verify` and see docs/audit.md", result.summary())
    return result


def _records_in_id_order(sessions: sessionmaker[Session], batch: int) -> Iterator[AuditRecord]:
    with reading(sessions) as session:
        rows = session.execute(select(*RECORD_COLUMNS).order_by(AuditEvent.id).execution_options(yield_per=batch))
        for row in rows:
            yield AuditRecord(*row)


def _problem(record: AuditRecord, previous: AuditRecord | None) -> str | None:
    if record_hash(record) != record.hash:
        return f"row {record.id}: its hash does not match its contents (edited?)"
    if previous is None:
        if record.prev_hash != GENESIS:
            return (
                f"row {record.id}: it is the first row but its prev_hash is not the chain's start "
                "(rows before it were deleted?)"
            )
        return None
    if record.prev_hash != previous.hash:
        return (
            f"row {record.id}: prev_hash does not match row {previous.id}'s hash (a row before it was deleted "
            f"or reordered, or row {previous.id} was edited and re-hashed)"
        )
    return None
