"""One pending force-unlock request per state, guaranteed by the database (migration 0005), not by a check."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.chain import verify_chain
from bot.db import make_engine, make_sessions, upgrade_to_head
from bot.unlock.models import Status, UnlockRequest
from bot.unlock.policy import RefusalCode, Refused
from bot.unlock.workflow import UnlockWorkflow
from tests.audit.test_migration import migrate
from tests.conftest import BUCKET
from tests.database import audit_trail
from tests.terraform import TerraformBackend
from tests.unlock.conftest import CHANNEL

KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"
T0 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)


def request_row(state: str, status: Status = Status.PENDING, *, created: datetime = T0) -> dict[str, object]:
    return {
        "id": str(uuid.uuid4()),
        "state_address": state,
        "lock_id": "abc",
        "raw_info": '{"ID":"abc"}',
        "in_table": True,
        "in_lockfile": False,
        "requester": "UREQUESTER",
        "reason": "stuck",
        "channel": CHANNEL,
        "status": status.value,
        "approvals_required": 1,
        "created_at": created,
        "expires_at": created + timedelta(minutes=30),
    }


def test_the_database_refuses_a_second_pending_request(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.execute(insert(UnlockRequest), [request_row(STATE), request_row(STATE, Status.EXPIRED)])
        session.execute(insert(UnlockRequest), [request_row(STATE, Status.CANCELLED), request_row("other/state")])
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.execute(insert(UnlockRequest), [request_row(STATE)])


def test_simultaneous_requests_in_threads(tf: TerraformBackend, workflow: UnlockWorkflow) -> None:
    tf.lock(KEY)
    barrier = threading.Barrier(6)
    outcomes: list[str] = []

    def ask(person: str) -> None:
        barrier.wait(timeout=10)
        try:
            outcomes.append(f"pending:{workflow.request(STATE, person, 'stuck', CHANNEL).id}")
        except Refused as refused:
            assert refused.request is not None
            outcomes.append(f"refused:{refused.why}:{refused.request.id}")

    threads = [threading.Thread(target=ask, args=(f"UASKER{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    winners = [outcome.removeprefix("pending:") for outcome in outcomes if outcome.startswith("pending:")]
    assert len(winners) == 1, outcomes
    assert sorted(outcomes) == sorted(
        [f"pending:{winners[0]}"] + [f"refused:{RefusalCode.ALREADY_REQUESTED}:{winners[0]}"] * 5
    )


def test_the_upgrade_ends_duplicates_it_finds(database_url: str) -> None:
    """A database from before 0005 may hold several pending requests for a state: the oldest stays."""
    migrate(database_url, "0004")
    engine = make_engine(database_url)
    try:
        rows = [request_row(STATE, created=T0 + timedelta(seconds=n)) for n in range(3)] + [request_row("other/state")]
        with engine.begin() as connection:
            connection.execute(insert(UnlockRequest.__table__), rows)
        upgrade_to_head(database_url)
        sessions = make_sessions(engine)
        with sessions() as session:
            statuses = {row.id: row.status for row in session.execute(select(UnlockRequest.id, UnlockRequest.status))}
        assert statuses == {
            rows[0]["id"]: "pending",
            rows[1]["id"]: "cancelled",
            rows[2]["id"]: "cancelled",
            rows[3]["id"]: "pending",
        }
        events = audit_trail(sessions)
        assert [(e.action, e.request_id, e.actor) for e in events] == [
            ("cancelled", rows[1]["id"], None),
            ("cancelled", rows[2]["id"], None),
        ]
        assert "earlier request for this state was pending" in events[0].detail["note"]
        assert verify_chain(sessions).ok
    finally:
        engine.dispose()
