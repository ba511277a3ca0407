"""The one audit writer: every field, UTC times on both databases, untrusted text stored safely."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.chain import GENESIS, record_hash
from bot.audit.models import AuditAction, AuditRecord
from bot.audit.writer import AuditUnavailable, record_event, record_lookup
from bot.unlock.models import Status
from tests.database import audit_trail

AT = datetime(2026, 3, 4, 10, 20, 30, 123456, tzinfo=UTC)


def test_every_field_is_written_and_read_back(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_event(
            session,
            AuditAction.REFUSED,
            at=AT.astimezone(timezone(timedelta(hours=2))),  # any zone in, UTC out
            actor="UALICE",
            state_address="acme-tfstate/network/terraform.tfstate",
            lock_id="3f8a1c2e-5b7d-9e04-6a1f-c2d3e4f5a6b7",
            request_id="5b0c0f1e-6d2a-4f51-9d6e-2c4b8a7e1f00",
            channel="CINCIDENT",
            detail={"why": "self_approval", "status": Status.PENDING, "until": AT, "n": 2, "ok": True, "x": None},
        )
    [event] = audit_trail(sessions)
    assert event.at == AT and event.at.tzinfo is not None and event.at.utcoffset() == timedelta(0)
    assert (event.action, event.actor, event.channel) == ("refused", "UALICE", "CINCIDENT")
    assert event.state_address == "acme-tfstate/network/terraform.tfstate"
    assert event.lock_id == "3f8a1c2e-5b7d-9e04-6a1f-c2d3e4f5a6b7"
    assert event.request_id == "5b0c0f1e-6d2a-4f51-9d6e-2c4b8a7e1f00"
    assert event.detail == {
        "why": "self_approval",
        "status": "pending",
        "until": "2026-03-04T10:20:30.123456+00:00",
        "n": 2,
        "ok": True,
        "x": None,
    }
    assert event.prev_hash == GENESIS and event.hash == record_hash(AuditRecord.of(event))  # the first link


def test_events_keep_their_order(sessions: sessionmaker[Session]) -> None:
    for offset, action in enumerate([AuditAction.REQUESTED, AuditAction.APPROVED, AuditAction.EXECUTED]):
        with sessions.begin() as session:
            record_event(session, action, at=AT + timedelta(seconds=offset), actor="U1")
    assert [e.action for e in audit_trail(sessions)] == ["requested", "approved", "executed"]


def test_untrusted_text_is_stored_safely(sessions: sessionmaker[Session]) -> None:
    hostile = "a\x00b\ud800c" + "é" * 5000
    with sessions.begin() as session:
        record_event(session, AuditAction.REFUSED, at=AT, actor=hostile, channel=hostile, detail={"given": hostile})
    [event] = audit_trail(sessions)
    assert event.actor is not None and len(event.actor) == 64 and event.actor.startswith("a\\u0000b\\ud800c")
    assert event.actor.endswith("…")
    assert str(event.detail["given"]).startswith("a\\u0000b\\ud800c") and len(str(event.detail["given"])) == 4000


def test_naive_times_are_refused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session, pytest.raises(ValueError, match="aware UTC"):
        record_event(session, AuditAction.LIST, at=datetime(2026, 3, 4), actor="U1")


def test_an_event_commits_or_rolls_back_with_its_transaction(sessions: sessionmaker[Session]) -> None:
    def change_that_fails() -> None:
        with sessions.begin() as session:
            record_event(session, AuditAction.APPROVED, at=AT, actor="U1")
            raise RuntimeError("the state change failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert audit_trail(sessions) == []


def test_lookups(sessions: sessionmaker[Session]) -> None:
    record_lookup(
        sessions,
        AuditAction.STATUS,
        at=AT,
        actor="UBOB",
        channel="CINCIDENT",
        state_address="acme-tfstate/network/terraform.tfstate",
        lock_id="3f8a1c2e-5b7d-9e04-6a1f-c2d3e4f5a6b7",
        detail={"locked": True},
    )
    record_lookup(sessions, AuditAction.LIST, at=AT, actor="UBOB", detail={"stale_only": True, "count": 3})
    status, listing = audit_trail(sessions)
    assert (status.action, status.actor, status.lock_id, status.detail) == (
        "status",
        "UBOB",
        "3f8a1c2e-5b7d-9e04-6a1f-c2d3e4f5a6b7",
        {"locked": True},
    )
    assert (listing.action, listing.state_address, listing.detail) == ("list", None, {"stale_only": True, "count": 3})


def test_lookup_with_the_audit_table_gone_says_so(sessions: sessionmaker[Session], engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_events"))
    with pytest.raises(AuditUnavailable, match="could not record the status look-up"):
        record_lookup(sessions, AuditAction.STATUS, at=AT, actor="UBOB")
