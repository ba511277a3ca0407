"""Holds: taken with an audit row first, released only by the holder with compare-and-delete (moto; SQLite and PG)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import bot.unlock.holds
from bot.audit.models import AuditAction
from bot.audit.writer import AuditUnavailable
from bot.errors import BadInput
from bot.history.models import Ending
from bot.history.query import state_history
from bot.locks.address import StateAddress
from bot.locks.directory import LockDirectory
from bot.locks.lockinfo import parse_lock_info
from bot.locks.model import Store
from bot.unlock.holds import Holds
from bot.unlock.models import HoldStatus
from bot.unlock.policy import RefusalCode, Refused
from tests.conftest import BUCKET, TABLE, Aws
from tests.database import audit_trail
from tests.terraform import TerraformBackend
from tests.unlock.conftest import ALICE, BOB, CHANNEL, Clock

KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"
ADDRESS = StateAddress(BUCKET, KEY)
REASON = "incident 42: DNS is being moved, nobody applies to network"


@pytest.fixture
def holds(sessions: sessionmaker[Session], directory: LockDirectory, clock: Clock) -> Holds:
    return Holds(sessions, directory, clock, version="tflock test")


def actions(sessions: sessionmaker[Session]) -> list[str]:
    return [event.action for event in audit_trail(sessions)]


def stored(aws: Aws) -> tuple[str | None, bytes | None]:
    item = aws.dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": ADDRESS.lock_id}}, ConsistentRead=True)
    try:
        body = aws.s3.get_object(Bucket=BUCKET, Key=f"{KEY}.tflock")["Body"].read()
    except aws.s3.exceptions.NoSuchKey:
        body = None
    info = item.get("Item", {}).get("Info", {}).get("S")
    return info, body


def test_hold_takes_both_stores_with_the_reason_and_audits_first(
    holds: Holds, aws: Aws, sessions: sessionmaker[Session], clock: Clock
) -> None:
    view = holds.hold(STATE, f"  {REASON}\n", ALICE, CHANNEL, actor_name="alice", channel_name="incident-42")
    assert view.status is HoldStatus.HELD and view.holder == ALICE and view.reason == REASON
    assert set(view.held_in) == {Store.TABLE, Store.LOCKFILE} and view.created_at == clock.now
    info, body = stored(aws)
    assert info == view.raw_info and body == view.raw_info.encode()
    parsed = parse_lock_info(view.raw_info)
    assert parsed.id == view.lock_id and parsed.who == "alice (tflock hold)"
    assert parsed.info == f"held with tflock by @alice in #incident-42: {REASON}"
    assert view.lockfile_etag == aws.s3.head_object(Bucket=BUCKET, Key=f"{KEY}.tflock")["ETag"]
    [event] = audit_trail(sessions)
    assert (event.action, event.actor, event.state_address, event.lock_id, event.channel) == (
        "held",
        ALICE,
        STATE,
        view.lock_id,
        CHANNEL,
    )
    assert event.detail["reason"] == REASON and event.detail["hold_id"] == view.id
    assert holds.active(STATE) == view and holds.active_holds() == [view]


def test_a_state_locked_by_terraform_is_refused_with_its_holder(
    holds: Holds, tf: TerraformBackend, aws: Aws, sessions: sessionmaker[Session]
) -> None:
    lock = tf.lock(KEY, who="bob@ci-runner-7")
    with pytest.raises(Refused, match=r"already locked by bob@ci-runner-7 \(apply \(or destroy\), lock ID") as caught:
        holds.hold(STATE, REASON, ALICE, CHANNEL)
    assert caught.value.why is RefusalCode.ALREADY_LOCKED and caught.value.exit_code == 1
    assert stored(aws) == (lock.info_json, None)
    assert actions(sessions) == ["refused"]
    assert audit_trail(sessions)[-1].detail["why"] == "already_locked"
    assert holds.active(STATE) is None


def test_a_second_hold_is_refused_naming_the_first(holds: Holds, sessions: sessionmaker[Session]) -> None:
    first = holds.hold(STATE, REASON, ALICE, CHANNEL, actor_name="alice")
    with pytest.raises(Refused, match="already held with tflock by @alice"):
        holds.hold(STATE, "another reason", BOB, CHANNEL)
    assert holds.active(STATE) == first
    assert actions(sessions) == ["held", "refused"]


def test_a_lock_taken_between_the_check_and_the_write_is_refused_and_nothing_left(
    holds: Holds, tf: TerraformBackend, aws: Aws, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    original = bot.unlock.holds.take_lock

    def terraform_first(directory: LockDirectory, address: StateAddress, raw: str) -> Any:
        tf.lock(KEY, who="carol@laptop")  # Terraform wins the race for the table item
        return original(directory, address, raw)

    monkeypatch.setattr(bot.unlock.holds, "take_lock", terraform_first)
    with pytest.raises(Refused, match="already locked by carol@laptop"):
        holds.hold(STATE, REASON, ALICE, CHANNEL)
    info, body = stored(aws)
    assert info is not None and "carol@laptop" in info and body is None  # our lock file was taken back
    assert actions(sessions) == ["held", "refused"]
    assert holds.active(STATE) is None


def test_reason_and_state_are_checked(holds: Holds, sessions: sessionmaker[Session], aws: Aws) -> None:
    with pytest.raises(Refused, match="A reason is required") as caught:
        holds.hold(STATE, "   ", ALICE, CHANNEL)
    assert caught.value.exit_code == 2
    with pytest.raises(BadInput):
        holds.hold("not a state", REASON, ALICE, CHANNEL)
    with pytest.raises(BadInput, match="not a lock ID"):
        holds.hold("3f8a1c2e-5b7d-9e04-6a1f-c2d3e4f5a6b7", REASON, ALICE, CHANNEL)
    assert stored(aws) == (None, None)


def test_only_the_holder_releases(holds: Holds, aws: Aws, sessions: sessionmaker[Session], clock: Clock) -> None:
    view = holds.hold(STATE, REASON, ALICE, CHANNEL)
    with pytest.raises(Refused, match=r"only they can release it.*/tflock unlock") as caught:
        holds.release(STATE, BOB)
    assert caught.value.why is RefusalCode.NOT_HOLDER and caught.value.exit_code == 1
    assert stored(aws) == (view.raw_info, view.raw_info.encode())
    clock.advance(hours=3)
    released = holds.release(STATE, ALICE)
    assert released.status is HoldStatus.RELEASED and released.released_by == ALICE
    assert released.released_at == clock.now
    assert stored(aws) == (None, None)
    assert actions(sessions) == ["held", "refused", "released"]
    assert audit_trail(sessions)[-1].detail["hold_id"] == view.id
    assert holds.active(STATE) is None


def test_release_without_a_hold_points_at_the_force_unlock(
    holds: Holds, tf: TerraformBackend, sessions: sessionmaker[Session]
) -> None:
    with pytest.raises(Refused, match="There is no tflock hold"):
        holds.release(STATE, ALICE)
    tf.lock(KEY)
    with pytest.raises(Refused, match="not by a tflock hold; release it with the two-person force-unlock") as caught:
        holds.release(STATE, ALICE)
    assert caught.value.why is RefusalCode.NO_HOLD


def test_release_refuses_when_the_bytes_changed(holds: Holds, aws: Aws, sessions: sessionmaker[Session]) -> None:
    view = holds.hold(STATE, REASON, ALICE, CHANNEL)
    changed = view.raw_info.replace(REASON, "someone rewrote it")
    aws.dynamodb.put_item(TableName=TABLE, Item={"LockID": {"S": ADDRESS.lock_id}, "Info": {"S": changed}})
    with pytest.raises(Refused, match="not the one your hold wrote") as caught:
        holds.release(STATE, ALICE)
    assert caught.value.why is RefusalCode.HOLD_CHANGED
    assert stored(aws) == (changed, view.raw_info.encode())  # nothing deleted anywhere
    assert holds.active(STATE) is not None


def test_release_after_a_force_unlock_ends_the_hold(
    holds: Holds, aws: Aws, tf_both: TerraformBackend, sessions: sessionmaker[Session]
) -> None:
    holds.hold(STATE, REASON, ALICE, CHANNEL)
    aws.s3.delete_object(Bucket=BUCKET, Key=f"{KEY}.tflock")
    aws.dynamodb.delete_item(TableName=TABLE, Key={"LockID": {"S": ADDRESS.lock_id}})
    ended = holds.release(STATE, ALICE)
    assert ended.status is HoldStatus.RELEASED and ended.outcome is not None and "already gone" in ended.outcome
    assert actions(sessions) == ["held", "released"]


def test_a_force_unlocked_hold_does_not_block_the_next_one(
    holds: Holds, aws: Aws, sessions: sessionmaker[Session]
) -> None:
    first = holds.hold(STATE, REASON, ALICE, CHANNEL)
    aws.s3.delete_object(Bucket=BUCKET, Key=f"{KEY}.tflock")  # two people force-unlocked it
    aws.dynamodb.delete_item(TableName=TABLE, Key={"LockID": {"S": ADDRESS.lock_id}})
    second = holds.hold(STATE, "incident 43", BOB, CHANNEL)
    assert second.status is HoldStatus.HELD and second.holder == BOB
    assert holds.active(STATE) == second
    ended = holds.find(first.id)
    assert ended is not None and ended.status is HoldStatus.RELEASED
    assert ended.outcome is not None and "gone" in ended.outcome
    assert actions(sessions) == ["held", "released", "held"]
    assert stored(aws) == (second.raw_info, second.raw_info.encode())


def test_a_hold_still_in_force_is_not_ended_by_a_new_request(
    holds: Holds, aws: Aws, sessions: sessionmaker[Session]
) -> None:
    first = holds.hold(STATE, REASON, ALICE, CHANNEL)
    with pytest.raises(Refused) as refused:
        holds.hold(STATE, "incident 43", BOB, CHANNEL)
    assert refused.value.why is RefusalCode.ALREADY_LOCKED
    assert holds.active(STATE) == first and stored(aws) == (first.raw_info, first.raw_info.encode())


def test_audit_trail_down_nothing_is_taken(holds: Holds, aws: Aws, engine: Engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_events"))
    with pytest.raises(AuditUnavailable, match="NOT locked"):
        holds.hold(STATE, REASON, ALICE, CHANNEL)
    assert stored(aws) == (None, None)


def fail_on(action: AuditAction, monkeypatch: pytest.MonkeyPatch) -> None:
    original = bot.unlock.holds.record_event

    def record(session: Session, what: AuditAction, **fields: Any) -> Any:
        if what is action:
            raise OperationalError("INSERT INTO audit_events", {}, Exception("disk full"))
        return original(session, what, **fields)

    monkeypatch.setattr(bot.unlock.holds, "record_event", record)


def test_release_not_recorded_means_nothing_deleted(
    holds: Holds, aws: Aws, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    view = holds.hold(STATE, REASON, ALICE, CHANNEL)
    fail_on(AuditAction.RELEASED, monkeypatch)
    with pytest.raises(AuditUnavailable, match="hold was NOT released"):
        holds.release(STATE, ALICE)
    assert stored(aws) == (view.raw_info, view.raw_info.encode())
    still = holds.active(STATE)
    assert still is not None and still.status is HoldStatus.HELD
    monkeypatch.undo()
    assert holds.release(STATE, ALICE).status is HoldStatus.RELEASED
    assert stored(aws) == (None, None)


def test_the_hold_event_not_recorded_means_nothing_taken(
    holds: Holds, aws: Aws, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_on(AuditAction.HELD, monkeypatch)
    with pytest.raises(AuditUnavailable, match="NOT locked"):
        holds.hold(STATE, REASON, ALICE, CHANNEL)
    assert stored(aws) == (None, None)
    assert holds.active(STATE) is None


def test_a_hold_enters_the_lock_history_and_ends_there_as_released(
    holds: Holds, sessions: sessionmaker[Session], clock: Clock
) -> None:
    view = holds.hold(STATE, REASON, ALICE, CHANNEL, actor_name="alice")
    [past] = state_history(sessions, STATE)
    assert (past.lock_id, past.who, past.operation) == (view.lock_id, "alice (tflock hold)", "tflock-hold")
    assert past.ended is None
    assert past.first_seen == clock.now and not past.stale
    clock.advance(hours=5)
    with pytest.raises(Refused):
        holds.release(STATE, BOB)
    assert state_history(sessions, STATE)[0].ended is None
    holds.release(STATE, ALICE)
    [past] = state_history(sessions, STATE)
    assert past.ended == Ending.RELEASED_HOLD and past.gone_at == clock.now
    assert past.held_for_exact and past.held_for.total_seconds() == 5 * 3600


def test_history_unavailable_never_stops_a_hold_or_its_release(
    holds: Holds, aws: Aws, sessions: sessionmaker[Session], engine: Engine
) -> None:
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE lock_history"))
    missed: list[int] = []
    holds.on_history_missed = lambda: missed.append(1)
    view = holds.hold(STATE, REASON, ALICE, CHANNEL)
    assert view.status is HoldStatus.HELD and stored(aws) == (view.raw_info, view.raw_info.encode())
    assert holds.release(STATE, ALICE).status is HoldStatus.RELEASED and stored(aws) == (None, None)
    assert len(missed) == 2
    assert actions(sessions) == ["held", "released"]
