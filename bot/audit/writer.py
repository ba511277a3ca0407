"""The one place an audit event is written. Callers pass their own session, so an event commits (or not)
together with the state change it records; the hash chain of SPEC §6 will be added here and only here."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

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
    """Append one event in the caller's transaction; flushed now so a failing database fails the caller."""
    if at.tzinfo is None:
        raise ValueError("audit times are aware UTC datetimes")
    event = AuditEvent(
        at=at.astimezone(UTC),
        action=AuditAction(action).value,
        actor=storable(actor, ACTOR_CHARS),
        state_address=storable(state_address, ADDRESS_CHARS),
        lock_id=storable(lock_id, LOCK_ID_CHARS),
        request_id=storable(request_id, REQUEST_ID_CHARS),
        channel=storable(channel, CHANNEL_CHARS),
        detail=_plain(dict(detail or {})),
    )
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
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item) for item in value]
    return storable(str(value), MAX_DETAIL_TEXT)
