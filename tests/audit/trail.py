"""Building and attacking audit trails in tests: many chained rows at once, and the triggers an attacker
with database access would drop before editing rows."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.chain import event_hash, next_link
from bot.audit.models import AuditEvent

T0 = datetime(2026, 3, 4, 10, 0, 0, 123456, tzinfo=UTC)


def fields(i: int, **overrides: Any) -> dict[str, Any]:
    """Event fields as the writer stores them: the i-th of a varied trail."""
    values: dict[str, Any] = {
        "at": T0 + timedelta(minutes=i),
        "action": ("status", "requested", "approved", "executed", "refused")[i % 5],
        "actor": f"U{i % 3}",
        "state_address": f"acme-tfstate/svc-{i % 4}/terraform.tfstate",
        "lock_id": f"lock-{i}",
        "request_id": None,
        "channel": "CINCIDENT",
        "detail": {"n": i, "why": "self_approval" if i % 5 == 4 else None},
    }
    values.update(overrides)
    return values


def append_many(sessions: sessionmaker[Session], events: Iterable[Mapping[str, Any]]) -> int:
    """Chain and insert many events in one transaction (quicker than one record_event each); returns how many."""
    with sessions.begin() as session:
        link = next_link(session)
        next_id, prev_hash = link.id, link.prev_hash
        rows = []
        for event in events:
            own = event_hash(id=next_id, prev_hash=prev_hash, **event)
            rows.append({"id": next_id, "prev_hash": prev_hash, "hash": own, **event})
            next_id, prev_hash = next_id + 1, own
        if rows:
            session.execute(insert(AuditEvent), rows)
            if session.get_bind().dialect.name == "postgresql":
                sequence = func.pg_get_serial_sequence(AuditEvent.__tablename__, "id")
                session.execute(select(func.setval(sequence, next_id - 1)))
        return len(rows)


def guards(engine: Engine) -> set[str]:
    """The triggers on audit_events."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            query = "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass AND NOT tgisinternal"
        else:
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'"
        return {str(name) for name in connection.execute(text(query)).scalars()}


def drop_guards(engine: Engine) -> None:
    """What an attacker with database access does first."""
    names = guards(engine)
    assert names, "no triggers to drop"
    with engine.begin() as connection:
        for name in names:
            on = " ON audit_events" if engine.dialect.name == "postgresql" else ""
            connection.execute(text(f"DROP TRIGGER {name}{on}"))


def tamper(engine: Engine, *statements: str, **parameters: Any) -> None:
    """Drop the guards, then change rows behind the bot's back."""
    drop_guards(engine)
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), parameters)
