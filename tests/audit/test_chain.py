"""The hash chain: its documented encoding, one linear chain under concurrent writers (threads on SQLite,
two processes on PostgreSQL), `verify` catching what an attacker with database access does, and the
triggers that refuse UPDATE and DELETE."""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.chain import (
    GENESIS,
    _jcs,
    canonical_at,
    canonical_event,
    canonical_json,
    event_hash,
    record_hash,
    verify_chain,
    verify_in_background,
)
from bot.audit.models import AuditAction, AuditRecord
from bot.audit.writer import record_event
from bot.db import DatabaseUnavailable, make_engine, make_sessions, upgrade_to_head
from tests.audit.trail import append_many, fields, guards, tamper
from tests.database import audit_trail

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 3, 4, 10, 20, 30, 123456, tzinfo=UTC)


# -- the encoding ------------------------------------------------------------------------------------------
def documented_example() -> tuple[dict[str, object], str, str]:
    """The worked example in docs/audit.md: the event's fields, its canonical JSON and its hash."""
    doc = (REPO / "docs" / "audit.md").read_text(encoding="utf-8")
    encoded = re.search(r"^```json\n(\{.*\})\n```", doc, flags=re.MULTILINE)
    digest = re.search(r"^SHA-256: `([0-9a-f]{64})`", doc, flags=re.MULTILINE)
    assert encoded and digest, "docs/audit.md lost its worked example"
    return json.loads(encoded.group(1)), encoded.group(1), digest.group(1)


def test_the_documented_example_is_what_the_code_computes() -> None:
    event, encoded, digest = documented_example()
    at = datetime.fromisoformat(str(event.pop("at")).replace("Z", "+00:00"))
    assert canonical_event(at=at, **event).decode("utf-8") == encoded  # type: ignore[arg-type]
    assert event_hash(at=at, **event) == digest


def test_times_are_utc_with_microseconds_and_z() -> None:
    assert canonical_at(AT) == "2026-03-04T10:20:30.123456Z"
    assert canonical_at(AT.astimezone(timezone(timedelta(hours=-7)))) == "2026-03-04T10:20:30.123456Z"
    assert canonical_at(AT.replace(microsecond=0)) == "2026-03-04T10:20:30.000000Z"
    with pytest.raises(ValueError, match="aware"):
        canonical_at(datetime(2026, 3, 4))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 8785 §3.2.2.3 and its appendix: numbers as ECMAScript writes them.
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (-0.0, "0"),
        (5e-324, "5e-324"),
        (333333333.3333333, "333333333.3333333"),
        (9007199254740992.0, "9007199254740992"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (4.5, "4.5"),
        (2.0, "2"),
        # Keys sorted by UTF-16 code units: U+1F600 (D83D DE00) sorts before U+FB01.
        ({"\ufb01": 1, "\U0001f600": 2, "é": 3, "z": 4}, '{"z":4,"é":3,"😀":2,"ﬁ":1}'),
        ({"b": [1, None, True, 'x\ny\u2028"\\'], "a": {}}, '{"a":{},"b":[1,null,true,"x\\ny\u2028\\"\\\\"]}'),
        ("\x1f\x7f", '"\\u001f\x7f"'),
    ],
)
def test_json_is_rfc_8785(value: object, expected: str) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize("detail", [{"a": 1, "b": [True, None]}, {"ratio": 0.1}, {"é": 1}, {"n": {"x": [1.5]}}, {}])
def test_every_event_is_encoded_by_rfc_8785(detail: dict[str, object]) -> None:
    fields = {"id": 7, "action": "list", "actor": None, "state_address": "s", "lock_id": None, "request_id": None}
    fields |= {"channel": "C", "detail": detail, "prev_hash": GENESIS}
    expected = _jcs({**fields, "at": canonical_at(AT)}).encode("utf-8")
    assert canonical_event(at=AT, **fields) == expected  # type: ignore[arg-type]


def test_json_has_no_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        canonical_json({"x": float("nan")})


# -- appending -------------------------------------------------------------------------------------------------
def trail_records(sessions: sessionmaker[Session]) -> list[AuditRecord]:
    return [AuditRecord.of(event) for event in audit_trail(sessions)]


def test_each_event_chains_to_the_one_before(sessions: sessionmaker[Session]) -> None:
    detail = {"reason": "runner died — Renée 😀", "ratio": 0.1, "nan": float("nan"), "when": AT, "list": (1, 2)}
    for offset in range(3):
        with sessions.begin() as session:
            record_event(session, AuditAction.REFUSED, at=AT + timedelta(seconds=offset), actor="U1", detail=detail)
    with sessions.begin() as session:  # two events in one transaction
        record_event(session, AuditAction.RECONCILED, at=AT, actor=None, state_address="", request_id="r")
        record_event(session, AuditAction.EXECUTED, at=AT, actor=None, request_id="r")
    records = trail_records(sessions)
    assert [r.prev_hash for r in records] == [GENESIS] + [r.hash for r in records[:-1]]
    assert all(record_hash(r) == r.hash for r in records)  # read back, each hash still matches its contents
    assert records[0].detail["nan"] == "nan" and records[3].state_address is None  # JSON-safe and NULL, not ""
    assert verify_chain(sessions).ok


def test_a_rolled_back_append_leaves_the_chain_intact(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        record_event(session, AuditAction.LIST, at=AT, actor="U1")

    def change_that_fails() -> None:
        with sessions.begin() as session:
            record_event(session, AuditAction.LIST, at=AT, actor="U2")
            raise RuntimeError("the caller's change failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    with sessions.begin() as session:
        record_event(session, AuditAction.LIST, at=AT, actor="U3")
    result = verify_chain(sessions)
    assert (result.ok, result.checked) == (True, 2)  # an id may be skipped on PostgreSQL; the links are what count


def test_threads_append_one_linear_chain(sessions: sessionmaker[Session]) -> None:
    """SQLite: each writer's BEGIN IMMEDIATE holds the write lock from its first statement to its commit.
    PostgreSQL: the advisory lock, from the append to the commit."""
    threads, appends = 4, 40
    start = threading.Barrier(threads)

    def append(thread: int) -> None:
        start.wait()
        for i in range(appends):
            with sessions.begin() as session:
                record_event(session, AuditAction.STATUS, at=datetime.now(UTC), actor=f"U{thread}", detail={"i": i})
                time.sleep(0.001)  # the others queue up on the lock meanwhile
            time.sleep(0.002)  # and one of them gets it next

    workers = [threading.Thread(target=append, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    result = verify_chain(sessions)
    assert (result.ok, result.checked) == (True, threads * appends), result.problem
    actors = [r.actor for r in trail_records(sessions)]
    assert sum(a != b for a, b in itertools.pairwise(actors)) > threads  # they really did interleave


@pytest.mark.postgres
def test_two_processes_append_one_linear_chain(postgres_url: str, tmp_path: Path) -> None:
    """Two replicas, three threads each: ids are drawn under the advisory lock, so id order is chain order."""
    upgrade_to_head(postgres_url)
    threads, appends = 3, 60
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.audit.append_process", postgres_url, name, str(threads), str(appends)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for name in ("A", "B")
    ]
    for replica in replicas:
        assert replica.stdout is not None and json.loads(replica.stdout.readline()) == {"ready": True}
    start = time.time() + 0.3
    for replica in replicas:
        assert replica.stdin is not None
        replica.stdin.write(f"{start}\n")
        replica.stdin.flush()
    for replica in replicas:
        out, _ = replica.communicate(timeout=60)
        assert json.loads(out) == {"done": threads * appends, "errors": []}

    engine = make_engine(postgres_url)
    try:
        sessions = make_sessions(engine)
        result = verify_chain(sessions)
        assert (result.ok, result.checked) == (True, 2 * threads * appends), result.problem
        actors = [r.actor for r in trail_records(sessions)]
        assert {"UA", "UB"} == set(actors)
        assert sum(a != b for a, b in itertools.pairwise(actors)) > 10  # the two really interleaved
    finally:
        engine.dispose()


def test_postgresql_appends_only_in_read_committed_transactions(engine: Engine) -> None:
    """A REPEATABLE READ snapshot taken before the lock would read a stale head and fork the chain."""
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL isolation levels")
    repeatable = make_sessions(engine.execution_options(isolation_level="REPEATABLE READ"))
    with (
        pytest.raises(DatabaseUnavailable, match="READ COMMITTED transactions only, not repeatable read"),
        repeatable.begin() as session,
    ):
        record_event(session, AuditAction.LIST, at=AT, actor="U1")
    assert verify_chain(make_sessions(engine)).checked == 0


# -- verify --------------------------------------------------------------------------------------------------------
@pytest.fixture
def ten(sessions: sessionmaker[Session]) -> list[AuditRecord]:
    append_many(sessions, [fields(i) for i in range(10)])
    return trail_records(sessions)


def test_an_intact_chain_verifies(sessions: sessionmaker[Session], ten: list[AuditRecord]) -> None:
    result = verify_chain(sessions, batch=3)
    assert (result.ok, result.checked, result.first_bad_id, result.problem) == (True, 10, None, None)
    assert (result.last_id, result.last_hash) == (ten[-1].id, ten[-1].hash)
    assert result.summary() == f"audit chain intact: 10 rows; last row {ten[-1].id}, hash {ten[-1].hash}"


def test_an_empty_trail_verifies(sessions: sessionmaker[Session]) -> None:
    result = verify_chain(sessions)
    assert (result.ok, result.checked, result.summary()) == (True, 0, "audit chain intact: no events yet")


EDITS = {
    "actor": "UPDATE audit_events SET actor = 'UMALLORY' WHERE id = :id",
    "action": "UPDATE audit_events SET action = 'rejected' WHERE id = :id",
    "state": "UPDATE audit_events SET state_address = NULL WHERE id = :id",
    "detail": """UPDATE audit_events SET detail = '{"n": 4, "why": "changed"}' WHERE id = :id""",
    "time by 1 µs": "UPDATE audit_events SET at = '2026-03-04 10:04:00.123457' WHERE id = :id",
}


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_verify_names_an_edited_field(
    engine: Engine, sessions: sessionmaker[Session], ten: list[AuditRecord], edit: str
) -> None:
    tamper(engine, edit, id=ten[4].id)
    result = verify_chain(sessions)
    assert (result.ok, result.first_bad_id, result.checked) == (False, ten[4].id, 5)
    assert result.problem == f"row {ten[4].id}: its hash does not match its contents (edited?)"
    assert result.summary() == f"audit chain BROKEN after 4 good rows: {result.problem}"


def test_verify_names_the_row_after_a_deleted_one(
    engine: Engine, sessions: sessionmaker[Session], ten: list[AuditRecord]
) -> None:
    tamper(engine, "DELETE FROM audit_events WHERE id = :id", id=ten[3].id)
    result = verify_chain(sessions)
    assert (result.ok, result.first_bad_id) == (False, ten[4].id)
    assert result.problem is not None and result.problem.startswith(
        f"row {ten[4].id}: prev_hash does not match row {ten[2].id}'s hash (a row before it was deleted or reordered"
    )


def test_verify_notices_the_first_rows_deleted(
    engine: Engine, sessions: sessionmaker[Session], ten: list[AuditRecord]
) -> None:
    tamper(engine, "DELETE FROM audit_events WHERE id <= :id", id=ten[1].id)
    result = verify_chain(sessions)
    assert result.first_bad_id == ten[2].id
    assert result.problem is not None and "first row but its prev_hash is not the chain's start" in result.problem


def test_verify_names_a_swapped_pair(engine: Engine, sessions: sessionmaker[Session], ten: list[AuditRecord]) -> None:
    a, b = ten[5].id, ten[6].id
    tamper(
        engine,
        "UPDATE audit_events SET id = -1 WHERE id = :a",
        "UPDATE audit_events SET id = :a WHERE id = :b",
        "UPDATE audit_events SET id = :b WHERE id = -1",
        a=a,
        b=b,
    )
    result = verify_chain(sessions)
    assert (result.ok, result.first_bad_id) == (False, a)
    assert result.problem == f"row {a}: its hash does not match its contents (edited?)"


def test_verify_notices_an_edit_that_was_re_hashed(
    engine: Engine, sessions: sessionmaker[Session], ten: list[AuditRecord]
) -> None:
    """The attacker knows the format and recomputes the edited row's hash: the next row's link breaks."""
    edited = dataclasses.replace(ten[4], actor="UMALLORY")
    tamper(
        engine,
        "UPDATE audit_events SET actor = 'UMALLORY', hash = :hash WHERE id = :id",
        hash=record_hash(edited),
        id=ten[4].id,
    )
    result = verify_chain(sessions)
    assert result.first_bad_id == ten[5].id
    assert result.problem is not None and f"or row {ten[4].id} was edited and re-hashed" in result.problem


def test_start_up_check_logs_a_warning_when_broken(
    engine: Engine, sessions: sessionmaker[Session], ten: list[AuditRecord], caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("tflock.test")
    with caplog.at_level(logging.INFO, logger="tflock.test"):
        intact = verify_in_background(sessions, log)
    assert intact is not None and intact.ok
    assert [r.levelname for r in caplog.records] == ["INFO"] and "intact: 10 rows" in caplog.text
    caplog.clear()
    tamper(engine, "DELETE FROM audit_events WHERE id = :id", id=ten[8].id)
    with caplog.at_level(logging.INFO, logger="tflock.test"):
        broken = verify_in_background(sessions, log)
    assert broken is not None and broken.first_bad_id == ten[9].id
    assert [r.levelname for r in caplog.records] == ["WARNING"] and "BROKEN" in caplog.text


def test_start_up_check_survives_a_missing_database(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'tflock.db'}")
    with caplog.at_level(logging.INFO, logger="tflock.test"):
        assert verify_in_background(make_sessions(engine), logging.getLogger("tflock.test")) is None
    assert "could not verify the audit hash chain at start-up" in caplog.text
    engine.dispose()


# -- the database refuses changes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'UMALLORY'",
        "UPDATE audit_events SET hash = hash",
        "DELETE FROM audit_events",
        "DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events)",
    ],
)
def test_the_database_refuses_updates_and_deletes(
    engine: Engine, sessions: sessionmaker[Session], ten: list[AuditRecord], statement: str
) -> None:
    refused = pytest.raises(DBAPIError, match=r"audit_events is append-only: (UPDATE|DELETE) refused")
    with refused, engine.begin() as connection:
        connection.execute(text(statement))
    assert trail_records(sessions) == ten


def test_postgresql_refuses_truncate_and_upsert(engine: Engine, ten: list[AuditRecord]) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's TRUNCATE and ON CONFLICT DO UPDATE")
    with pytest.raises(DBAPIError, match="append-only: TRUNCATE refused"), engine.begin() as connection:
        connection.execute(text("TRUNCATE audit_events"))
    upsert = (
        "INSERT INTO audit_events (id, at, action, detail, prev_hash, hash) "
        "VALUES (:id, now(), 'list', '{}', 'x', 'y') ON CONFLICT (id) DO UPDATE SET action = 'list'"
    )
    with pytest.raises(DBAPIError, match="append-only: UPDATE refused"), engine.begin() as connection:
        connection.execute(text(upsert), {"id": ten[0].id})
    assert {"audit_events_append_only", "audit_events_no_truncate"} == guards(engine)


def test_sqlite_refuses_insert_or_replace(engine: Engine, ten: list[AuditRecord]) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's INSERT OR REPLACE deletes without firing DELETE triggers")
    replace = (
        "INSERT OR REPLACE INTO audit_events (id, at, action, detail, prev_hash, hash) "
        "VALUES (:id, '2026-01-01 00:00:00.000000', 'list', '{}', 'x', 'y')"
    )
    with pytest.raises(DBAPIError, match="REPLACE of an existing row refused"), engine.begin() as connection:
        connection.execute(text(replace), {"id": ten[0].id})
    assert {"audit_events_no_update", "audit_events_no_delete", "audit_events_no_replace"} == guards(engine)
