"""Migration 0003 on a database that already has events: they are chained in id order, the columns become
NOT NULL, the triggers arrive; and back down to 0002 and up again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import Engine, insert, inspect, text

from bot.audit.chain import GENESIS, verify_chain
from bot.audit.models import AuditAction, AuditEvent
from bot.audit.writer import record_event
from bot.db import alembic_config, make_engine, make_sessions, upgrade_to_head
from tests.audit.trail import guards
from tests.database import audit_trail

T0 = datetime(2026, 1, 5, 9, 30, 0, 654321, tzinfo=UTC)


def migrate(url: str, revision: str, *, down: bool = False) -> None:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            (command.downgrade if down else command.upgrade)(config, revision)
    finally:
        engine.dispose()


def hash_columns_nullable(engine: Engine) -> tuple[bool, bool]:
    columns = {c["name"]: c for c in inspect(engine).get_columns("audit_events")}
    return bool(columns["prev_hash"]["nullable"]), bool(columns["hash"]["nullable"])


def test_existing_events_are_chained_by_the_upgrade(database_url: str) -> None:
    migrate(database_url, "0002")
    engine = make_engine(database_url)
    sessions = make_sessions(engine)
    try:
        # Rows as the 0002-era writer stored them: no hashes.
        with engine.begin() as connection:
            connection.execute(
                insert(AuditEvent.__table__),
                [
                    {
                        "at": T0 + timedelta(seconds=i),
                        "action": ("requested", "approved", "executed", "refused", "list")[i % 5],
                        "actor": f"U{i % 3}",
                        "state_address": None if i % 5 == 4 else "acme-tfstate/prod/terraform.tfstate",
                        "channel": "CINCIDENT",
                        "detail": {"i": i, "reason": "runner died — Renée 😀", "held_in": ["table"], "ok": True},
                    }
                    for i in range(12)
                ],
            )
        assert hash_columns_nullable(engine) == (True, True)

        upgrade_to_head(database_url)
        assert hash_columns_nullable(engine) == (False, False)
        assert guards(engine)
        result = verify_chain(sessions)
        assert (result.ok, result.checked) == (True, 12), result.problem
        before = audit_trail(sessions)
        assert before[0].prev_hash == GENESIS

        with sessions.begin() as session:  # the writer carries on from the backfilled head
            record_event(session, AuditAction.LIST, at=T0, actor="U9")
        assert verify_chain(sessions).checked == 13

        migrate(database_url, "0002", down=True)
        assert guards(engine) == set() and hash_columns_nullable(engine) == (True, True)
        with engine.begin() as connection:  # 0002 allowed this; 0003 recomputes every hash anyway
            connection.execute(text("UPDATE audit_events SET hash = NULL, prev_hash = NULL"))
        upgrade_to_head(database_url)
        after = audit_trail(sessions)
        assert [(e.id, e.prev_hash, e.hash) for e in after[:12]] == [(e.id, e.prev_hash, e.hash) for e in before]
        assert verify_chain(sessions).ok
    finally:
        engine.dispose()


def test_an_empty_database_upgrades_with_its_guards(database_url: str) -> None:
    upgrade_to_head(database_url)
    engine = make_engine(database_url)
    try:
        expected = (
            {"audit_events_append_only", "audit_events_no_truncate"}
            if engine.dialect.name == "postgresql"
            else {"audit_events_no_update", "audit_events_no_delete", "audit_events_no_replace"}
        )
        assert guards(engine) == expected  # a later SQLite batch migration of audit_events would drop them
        assert verify_chain(make_sessions(engine)).ok
    finally:
        engine.dispose()
