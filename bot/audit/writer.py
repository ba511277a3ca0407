"""The one place an audit event is written. Callers pass their own session, so an event commits (or not)
together with the state change it records, chained to the event before it (bot/audit/chain.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.chain import event_hash, next_link
from bot.audit.models import (
    ACTOR_CHARS,
    ADDRESS_CHARS,
    CHANNEL_CHARS,
    LOCK_ID_CHARS,
    REQUEST_ID_CHARS,
    AuditAction,
    AuditEvent,
)
from bot.db import DatabaseUnavailable, describe_error

MAX_DETAIL_TEXT = 4000  # per string inside `detail`: enough for a reason or a raw Info, not for a flood


class AuditUnavailable(DatabaseUnavailable):
    """The audit trail could not be written, so the action it would have recorded was not taken."""


def record_event(
    session: Session,
    action: AuditAction,
    *,
    at: datetime,
    actor: str | None,
    state_address: str | None = None,
    lock_id: str | None = None,
    request_id: str | None = None,
    channel: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction; flushed now so a failing database fails the caller.

    From here until the caller's transaction ends, other appends wait (the chain is one line), so callers
    commit promptly and call no network service in between.
    """
    if at.tzinfo is None:
        raise ValueError("audit times are aware UTC datetimes")
    fields: dict[str, Any] = {
        "at": at.astimezone(UTC),
        "action": AuditAction(action).value,
        # Empty text is stored as NULL, so an empty cell in an export means exactly that.
        "actor": storable(actor, ACTOR_CHARS) or None,
        "state_address": storable(state_address, ADDRESS_CHARS) or None,
        "lock_id": storable(lock_id, LOCK_ID_CHARS) or None,
        "request_id": storable(request_id, REQUEST_ID_CHARS) or None,
        "channel": storable(channel, CHANNEL_CHARS) or None,
        "detail": _plain(dict(detail or {})),
    }
    link = next_link(session)
    event = AuditEvent(id=link.id, prev_hash=link.prev_hash, **fields)
    event.hash = event_hash(id=link.id, prev_hash=link.prev_hash, **fields)
    session.add(event)
    session.flush()
    return event


def record_lookup(
    sessions: sessionmaker[Session],
    action: Literal[AuditAction.STATUS, AuditAction.LIST],
    *,
    at: datetime,
    actor: str | None,
    channel: str | None = None,
    state_address: str | None = None,
    lock_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> None:
    """A `status` or `list` look-up, in its own transaction; AuditUnavailable if it cannot be written."""
    try:
        with sessions.begin() as session:
            record_event(
                session,
                action,
                at=at,
                actor=actor,
                channel=channel,
                state_address=state_address,
                lock_id=lock_id,
                detail=detail,
            )
    except SQLAlchemyError as exc:
        raise AuditUnavailable(f"the audit trail could not record the {action} look-up: {describe_error(exc)}") from exc


def storable(text: str | None, limit: int | None) -> str | None:
    """Untrusted text both databases accept: no NUL, no lone surrogates, at most `limit` characters."""
    if text is None:
        return None
    cleaned = text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
    return cleaned if limit is None or len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def _plain(value: Any) -> Any:
    """`detail` as JSON values only: times as ISO 8601, enums and other objects as their text, strings capped."""
    if isinstance(value, str):
        return storable(value, MAX_DETAIL_TEXT)
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {storable(str(key), MAX_DETAIL_TEXT): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return storable(str(value), MAX_DETAIL_TEXT)
