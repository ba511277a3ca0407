"""Poison lock data: NUL bytes, 300-character lock IDs, invalid UTF-8, a 1 MiB Info. Each is stored exactly,
shown escaped and compared exactly — never reported as the database being unavailable."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import insert, select
from sqlalchemy.orm import Session, sessionmaker

from bot.db import escape_text, unescape_text
from bot.locks.address import StateAddress
from bot.locks.directory import LockDirectory
from bot.locks.facts import printable
from bot.locks.lockinfo import raw_bytes, raw_digest
from bot.unlock.models import Status, UnlockRequest
from bot.unlock.workflow import UnlockWorkflow
from tests.conftest import BUCKET, Aws
from tests.database import audit_trail
from tests.terraform import TerraformBackend, ago
from tests.unlock.conftest import ALICE, CHANNEL, REQUESTER, Clock, MakeWorkflow

KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"
ADDRESS = StateAddress(BUCKET, KEY)
REASON = "the runner died"


def info(lock_id: str = "1f0c7a2e", **extra: str) -> str:
    return json.dumps(
        {"ID": lock_id, "Operation": "OperationTypeApply", "Who": "ci@runner", "Created": ago(hours=3)} | extra
    )


def put_lockfile(aws: Aws, body: bytes, key: str = KEY) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key=f"{key}.tflock", Body=body)


def lockfile(aws: Aws) -> bytes | None:
    try:
        body: bytes = aws.s3.get_object(Bucket=BUCKET, Key=f"{KEY}.tflock")["Body"].read()
    except aws.s3.exceptions.NoSuchKey:
        return None
    return body


def released_exactly(workflow: UnlockWorkflow, sessions: sessionmaker[Session], raw: str) -> None:
    """Request, check what was stored, approve: the very lock is released and the trail pins its bytes."""
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    stored = workflow.find(request.id)
    assert stored is not None and stored.raw_info == raw  # exactly, after a round trip through the database
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.EXECUTED, done.outcome
    requested = audit_trail(sessions, request.id)[0]
    assert requested.detail["raw_info_sha256"] == raw_digest(raw)


def test_nul_in_the_table_items_info(
    tf: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session]
) -> None:
    raw = info(Info="a\x00b")
    tf.put_raw_table_item(ADDRESS, {"Info": {"S": raw}})
    released_exactly(workflow, sessions, raw)


def test_nul_in_a_lock_file(
    aws: Aws, tf_file: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session]
) -> None:
    body = info(Who="x\x00y").encode()
    put_lockfile(aws, body)
    released_exactly(workflow, sessions, body.decode())
    assert lockfile(aws) is None


def test_a_300_character_lock_id(
    tf: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session]
) -> None:
    lock_id = "L" * 299 + "\x00"
    raw = info(lock_id)
    tf.put_raw_table_item(ADDRESS, {"Info": {"S": raw}})
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL, expected_lock_id=lock_id)
    assert request.lock_id == lock_id
    assert workflow.approve(request.id, ALICE).status is Status.EXECUTED
    events = audit_trail(sessions, request.id)
    assert events[0].lock_id == printable(lock_id)  # the trail: escaped, whole


def test_invalid_utf8_in_a_lock_file(
    aws: Aws, tf_file: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session]
) -> None:
    body = b'{"ID":"\xff\xfe", "Who": "\xc3\x28"}'
    put_lockfile(aws, body)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    stored = workflow.find(request.id)
    assert stored is not None and raw_bytes(stored.raw_info) == body
    assert workflow.approve(request.id, ALICE).status is Status.EXECUTED
    assert lockfile(aws) is None


def test_a_1_mib_info(
    aws: Aws, tf_file: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session]
) -> None:
    body = info(Info="x" * (1024 * 1024)).encode()
    put_lockfile(aws, body)
    released_exactly(workflow, sessions, body.decode())


def test_a_poison_lock_replacing_the_requested_one_is_said_and_recorded(
    tf: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session]
) -> None:
    tf.put_raw_table_item(ADDRESS, {"Info": {"S": info("good")}})
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    poison = "P" * 150 + "\x00\x1b[31m"
    tf.put_raw_table_item(ADDRESS, {"Info": {"S": info(poison, Info="\x00")}})
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.SUPERSEDED
    assert done.outcome is not None and "\x00" not in done.outcome and "\\u0000" in done.outcome
    assert [e.action for e in audit_trail(sessions, request.id)] == ["requested", "approved", "superseded"]


def test_the_sweep_goes_on_past_a_request_it_cannot_end(
    tf: TerraformBackend,
    make_workflow: MakeWorkflow,
    directory: LockDirectory,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workflow = make_workflow()
    failures: list[int] = []
    workflow.on_reconcile_failure = lambda: failures.append(1)
    stuck = []
    for key in ("a/terraform.tfstate", "b/terraform.tfstate"):
        tf.put_raw_table_item(StateAddress(BUCKET, key), {"Info": {"S": info(key)}})
        request = workflow.request(f"{BUCKET}/{key}", REQUESTER, REASON, CHANNEL)
        monkeypatch.setattr(workflow, "_release", lambda request, actor: request)  # the bot "stops" here
        workflow.approve(request.id, ALICE)
        monkeypatch.undo()
        stuck.append(request.id)
    clock.advance(minutes=11)
    original = directory.read

    def read(address: StateAddress) -> Any:
        if address.key.startswith("a/"):
            raise RuntimeError("a bug met while reading this one")
        return original(address)

    monkeypatch.setattr(directory, "read", read)
    ended = workflow.reconcile()
    assert [request.id for request in ended] == [stuck[1]] and failures == [1]
    first = workflow.find(stuck[0])
    assert first is not None and first.status is Status.APPROVED  # tried again at the next sweep


# -- any bytes ------------------------------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_survive_the_escape_and_show_escaped(body: bytes) -> None:
    raw = body.decode("utf-8", "surrogateescape")
    stored = escape_text(raw)
    assert "\x00" not in stored
    stored.encode("utf-8")  # valid UTF-8 for either database
    assert raw_bytes(unescape_text(stored)) == body
    shown = printable(raw)
    shown.encode("utf-8")
    assert not any(0xD800 <= ord(c) <= 0xDFFF or c in "\x00\x1b\r\n" for c in shown)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=()), max_size=100))
def test_any_string_survives_the_escape(text: str) -> None:
    assert unescape_text(escape_text(text)) == text


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=st.binary(max_size=200), second=st.binary(max_size=200))
def test_any_bytes_are_stored_and_compared_exactly(
    sessions: sessionmaker[Session], clock: Clock, first: bytes, second: bytes
) -> None:
    """Through the database (SQLite and PostgreSQL): stored whole, read back exactly, equal only when equal."""
    rows = []
    for body in (first, second):
        rows.append(
            {
                "id": f"row-{len(rows)}",
                "state_address": STATE,
                "lock_id": body.decode("utf-8", "surrogateescape")[:50],
                "raw_info": body.decode("utf-8", "surrogateescape"),
                "in_table": False,
                "in_lockfile": True,
                "requester": REQUESTER,
                "reason": REASON,
                "status": Status.CANCELLED.value,
                "approvals_required": 1,
                "created_at": clock.now,
                "expires_at": clock.now + timedelta(minutes=1),
            }
        )
    with sessions.begin() as session:
        session.execute(UnlockRequest.__table__.delete().where(UnlockRequest.state_address == STATE))
        session.execute(insert(UnlockRequest), rows)
    with sessions() as session:
        for row, body in zip(rows, (first, second), strict=True):
            stored = session.get(UnlockRequest, row["id"], populate_existing=True)
            assert stored is not None and raw_bytes(stored.raw_info) == body
            matching = session.scalars(select(UnlockRequest.id).where(UnlockRequest.raw_info == row["raw_info"])).all()
            assert set(matching) == {r["id"] for r, b in zip(rows, (first, second), strict=True) if b == body}
