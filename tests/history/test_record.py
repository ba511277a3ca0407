"""The lock history is written once per lock, whoever reports it and whatever their clocks say."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from bot.db import make_engine, make_sessions
from bot.history.models import Ending, LockHistory
from bot.history.query import state_history
from bot.history.record import (
    history_of_listing,
    history_of_status,
    lock_key,
    record_ended,
    record_not_held,
    record_seen,
    seen_from_raw,
)
from bot.locks.address import StateAddress
from bot.locks.directory import BackendProblem, LockListing
from bot.locks.model import LockSnapshot, StateLock, Store, Unchecked

T0 = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
STALE_AFTER = timedelta(hours=2)
NETWORK = StateAddress("acme-tfstate", "network/terraform.tfstate")
APP = StateAddress("acme-tfstate", "app/terraform.tfstate")
OTHER = StateAddress("other-tfstate", "db/terraform.tfstate")


def info(lock_id: str, created: datetime, who: str = "alice@laptop", operation: str = "OperationTypeApply") -> str:
    return json.dumps(
        {
            "ID": lock_id,
            "Operation": operation,
            "Info": "",
            "Who": who,
            "Version": "1.9.0",
            "Created": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "Path": "",
        }
    )


def held(address: StateAddress, lock_id: str, created: datetime, backend: str = "acme", **fields: Any) -> StateLock:
    table = LockSnapshot.from_raw(
        address, Store.TABLE, "DynamoDB table locks", "locks", info(lock_id, created, **fields)
    )
    return StateLock(address, backend, table=table)


def free(address: StateAddress, backend: str = "acme", unchecked: tuple[Unchecked, ...] = ()) -> StateLock:
    return StateLock(address, backend, unchecked=unchecked)


def rows(sessions: sessionmaker[Session]) -> list[LockHistory]:
    with sessions() as session:
        return list(session.scalars(select(LockHistory).order_by(LockHistory.id)))


def status(sessions: sessionmaker[Session], lock: StateLock, at: datetime) -> None:
    with sessions.begin() as session:
        history_of_status(session, lock, at, STALE_AFTER)


def listing(
    sessions: sessionmaker[Session], locks: list[StateLock], at: datetime, failed: tuple[str, ...] = ()
) -> None:
    problems = tuple(BackendProblem(name, "AccessDenied") for name in failed)
    backends = SimpleNamespace(backends=[SimpleNamespace(name="acme"), SimpleNamespace(name="other")])
    with sessions.begin() as session:
        history_of_listing(session, LockListing(tuple(locks), problems), backends, at, STALE_AFTER)  # type: ignore[arg-type]


def test_one_row_per_lock_with_its_facts(sessions: sessionmaker[Session]) -> None:
    lock = held(NETWORK, "id-1", T0 - timedelta(minutes=5), who="bob@ci", operation="OperationTypePlan")
    status(sessions, lock, T0)
    status(sessions, lock, T0 + timedelta(minutes=1))
    [row] = rows(sessions)
    assert (row.state_address, row.lock_id, row.who, row.operation) == (
        str(NETWORK),
        "id-1",
        "bob@ci",
        "OperationTypePlan",
    )
    assert row.created_at == T0 - timedelta(minutes=5)
    assert (row.first_seen_at, row.last_seen_at) == (T0, T0 + timedelta(minutes=1))
    assert (row.gone_at, row.ended, row.stale) == (None, None, False)


def test_two_replicas_with_moved_clocks_make_one_row(migrated_url: str) -> None:
    """Replica B's clock is 10 minutes behind A's; they report the same lock in turn."""
    engines: list[Engine] = [make_engine(migrated_url), make_engine(migrated_url)]
    try:
        a, b = (make_sessions(engine) for engine in engines)
        created = T0 - timedelta(hours=3)
        lock = held(NETWORK, "id-1", created)
        status(a, lock, T0)  # A sees it first
        status(b, lock, T0 - timedelta(minutes=10))  # B, behind, reports an earlier first sighting
        status(b, lock, T0 + timedelta(minutes=5))
        status(a, lock, T0 + timedelta(minutes=2))  # A's later report does not move last seen back
        [row] = rows(a)
        assert row.first_seen_at == T0 - timedelta(minutes=10)
        assert row.last_seen_at == T0 + timedelta(minutes=5)
        assert row.stale  # three hours old against STALE_AFTER of two
        # B (behind) sees it gone at a time before A last saw it: not gone on that evidence.
        status(b, free(NETWORK), T0 + timedelta(minutes=4))
        assert rows(a)[0].gone_at is None
        status(a, free(NETWORK), T0 + timedelta(minutes=7))
        status(b, free(NETWORK), T0 + timedelta(minutes=8))  # a second "gone" keeps the first time
        [row] = rows(b)
        assert (row.gone_at, row.ended) == (T0 + timedelta(minutes=7), Ending.GONE)
        assert len(state_history(a, str(NETWORK))) == 1
    finally:
        for engine in engines:
            engine.dispose()


def test_unknown_answer_ends_nothing(sessions: sessionmaker[Session]) -> None:
    status(sessions, held(NETWORK, "id-1", T0), T0)
    status(sessions, free(NETWORK, unchecked=(Unchecked(Store.LOCKFILE, "AccessDenied"),)), T0 + timedelta(minutes=1))
    assert rows(sessions)[0].gone_at is None


def test_a_new_lock_on_the_state_ends_the_old_one(sessions: sessionmaker[Session]) -> None:
    status(sessions, held(NETWORK, "id-1", T0), T0)
    status(sessions, held(NETWORK, "id-2", T0 + timedelta(minutes=3)), T0 + timedelta(minutes=4))
    old, new = rows(sessions)
    assert (old.lock_id, old.ended, old.gone_at) == ("id-1", Ending.GONE, T0 + timedelta(minutes=4))
    assert (new.lock_id, new.ended) == ("id-2", None)
    assert [past.lock_id for past in state_history(sessions, str(NETWORK))] == ["id-2", "id-1"]


def test_a_listing_ends_what_it_no_longer_sees_only_in_backends_it_read(sessions: sessionmaker[Session]) -> None:
    listing(sessions, [held(NETWORK, "n", T0), held(APP, "a", T0), held(OTHER, "o", T0, backend="other")], T0)
    assert len(rows(sessions)) == 3
    # Next scan: acme lists only NETWORK; "other" could not be read.
    listing(sessions, [held(NETWORK, "n", T0)], T0 + timedelta(minutes=1), failed=("other",))
    by_id = {row.lock_id: row for row in rows(sessions)}
    assert by_id["n"].ended is None and by_id["n"].last_seen_at == T0 + timedelta(minutes=1)
    assert (by_id["a"].ended, by_id["a"].gone_at) == (Ending.GONE, T0 + timedelta(minutes=1))
    assert by_id["o"].ended is None  # not read, so not taken as gone


def test_one_statement_records_many_locks(sessions: sessionmaker[Session]) -> None:
    many = [held(StateAddress("acme-tfstate", f"s{i}/terraform.tfstate"), f"id-{i}", T0) for i in range(1203)]
    listing(sessions, many, T0)
    listing(sessions, many, T0 + timedelta(minutes=1))
    assert len(rows(sessions)) == 1203
    assert {row.last_seen_at for row in rows(sessions)} == {T0 + timedelta(minutes=1)}


def test_force_unlock_is_recorded_with_its_request(sessions: sessionmaker[Session]) -> None:
    created = T0 - timedelta(hours=5)
    status(sessions, held(NETWORK, "id-1", created), T0)
    # A scan noticed it gone before the workflow recorded its ending: the ending is made precise.
    status(sessions, free(NETWORK), T0 + timedelta(minutes=2))
    with sessions.begin() as session:
        assert record_ended(
            session, str(NETWORK), "id-1", Ending.FORCE_UNLOCKED, at=T0 + timedelta(minutes=1), request_id="req-1"
        )
    [past] = state_history(sessions, str(NETWORK))
    assert (past.ended, past.request_id, past.gone_at) == (Ending.FORCE_UNLOCKED, "req-1", T0 + timedelta(minutes=1))
    assert past.held_for_exact and past.held_for == timedelta(hours=5, minutes=1)
    # A released hold reported later does not overwrite the force-unlock.
    with sessions.begin() as session:
        assert not record_ended(session, str(NETWORK), "id-1", Ending.RELEASED_HOLD, at=T0 + timedelta(minutes=3))


def test_ending_a_lock_never_seen_adds_it(sessions: sessionmaker[Session]) -> None:
    raw = info("id-9", T0 - timedelta(hours=1))
    lock = seen_from_raw(str(APP), "acme", raw, "id-9")
    with sessions.begin() as session:
        record_ended(
            session, str(APP), "id-9", Ending.FORCE_UNLOCKED, at=T0, request_id="req-9", raw_info=raw, lock=lock
        )
    [row] = rows(sessions)
    assert (row.lock_id, row.who, row.ended, row.request_id, row.gone_at) == (
        "id-9",
        "alice@laptop",
        Ending.FORCE_UNLOCKED,
        "req-9",
        T0,
    )


def test_a_lock_seen_again_after_gone_is_open_again(sessions: sessionmaker[Session]) -> None:
    listing(sessions, [held(NETWORK, "n", T0)], T0)
    listing(sessions, [], T0 + timedelta(minutes=1))  # an eventually consistent scan missed it
    assert rows(sessions)[0].ended == Ending.GONE
    listing(sessions, [held(NETWORK, "n", T0)], T0 + timedelta(minutes=2))
    [row] = rows(sessions)
    assert (row.ended, row.gone_at, row.last_seen_at) == (None, None, T0 + timedelta(minutes=2))


def test_gone_lock_held_for_is_at_least(sessions: sessionmaker[Session]) -> None:
    status(sessions, held(NETWORK, "id-1", T0 - timedelta(hours=1)), T0)
    status(sessions, free(NETWORK), T0 + timedelta(hours=1))
    [past] = state_history(sessions, str(NETWORK))
    assert not past.held_for_exact and past.held_for == timedelta(hours=1)


def test_not_held_without_states_writes_nothing(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        assert record_not_held(session, [], T0) == 0
        record_seen(session, [], T0)
    assert rows(sessions) == []
    assert lock_key("a/b", "x", "") != lock_key("a/b", None, "x")


def test_cli_history_prints_the_same_locks(migrated_url: str, capsys: Any, monkeypatch: Any) -> None:
    from bot.cli import main

    engine = make_engine(migrated_url)
    try:
        sessions = make_sessions(engine)
        status(sessions, held(NETWORK, "id-1", T0 - timedelta(hours=1), who="carol@ci"), T0)
        status(sessions, free(NETWORK), T0 + timedelta(minutes=30))
    finally:
        engine.dispose()
    monkeypatch.setenv("TFLOCK_DATABASE_URL", migrated_url)
    monkeypatch.setenv("TFLOCK_S3_BUCKETS", "acme-tfstate")
    assert main(["history", str(NETWORK)]) == 0
    text = capsys.readouterr().out
    assert "carol@ci" in text and "held at least 1h " in text and "gone by itself" in text
    assert main(["history", str(NETWORK), "--json"]) == 0
    [entry] = json.loads(capsys.readouterr().out)
    assert (entry["lock_id"], entry["ended"], entry["held_seconds"], entry["held_exact"]) == (
        "id-1",
        "gone",
        3600,
        False,
    )
    assert main(["history", "unknown-bucket/x.tfstate"]) == 2
