"""The two-person rule: every transition and every refusal, recorded in the audit trail, against moto."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.models import AuditAction
from bot.errors import BadInput, LockNotFound
from bot.locks.address import StateAddress
from bot.locks.directory import LockDirectory
from bot.locks.model import Store
from bot.unlock.models import Status
from bot.unlock.policy import RefusalCode, Refused, UnlockPolicy
from bot.unlock.workflow import UnlockWorkflow
from tests.conftest import BUCKET, TABLE, Aws
from tests.database import audit_trail
from tests.terraform import TerraformBackend
from tests.unlock.conftest import ALICE, BOB, CAROL, CHANNEL, REQUESTER, Clock, MakeWorkflow

KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"
REASON = "apply runner was killed at 09:12, checked with the owner"


def actions(sessions: sessionmaker[Session], request_id: str | None = None) -> list[str]:
    return [event.action for event in audit_trail(sessions, request_id)]


def refusal(sessions: sessionmaker[Session]) -> dict[str, object]:
    last = audit_trail(sessions)[-1]
    assert last.action == AuditAction.REFUSED
    return last.detail


def held(directory: LockDirectory) -> bool:
    return directory.read(StateAddress(BUCKET, KEY)).held


def test_request_records_the_lock_exactly_as_seen(
    tf: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session], clock: Clock
) -> None:
    lock = tf.lock(KEY)
    view = workflow.request(STATE, REQUESTER, f"  {REASON}\n", CHANNEL)
    assert view.status is Status.PENDING
    assert (view.address, view.lock_id, view.raw_info) == (STATE, lock.id, lock.info_json)
    assert view.held_in == (Store.TABLE,) and view.lockfile_etag is None
    assert (view.requester, view.reason, view.channel) == (REQUESTER, REASON, CHANNEL)
    assert view.created_at == clock.now and view.expires_at == clock.now + timedelta(minutes=30)
    assert view.approvers == () and view.approvals_missing == 1
    [event] = audit_trail(sessions, view.id)
    assert (event.action, event.actor, event.state_address, event.lock_id, event.channel) == (
        "requested",
        REQUESTER,
        STATE,
        lock.id,
        CHANNEL,
    )
    assert event.at == clock.now
    assert event.detail["reason"] == REASON and event.detail["raw_info"] == lock.info_json


def test_request_by_lock_id_and_by_address(tf: TerraformBackend, workflow: UnlockWorkflow) -> None:
    lock = tf.lock(KEY)
    assert workflow.request(lock.id, REQUESTER, REASON, CHANNEL).address == STATE
    other = tf.lock("other/terraform.tfstate")
    view = workflow.request(StateAddress(BUCKET, "other/terraform.tfstate"), REQUESTER, REASON, CHANNEL)
    assert view.lock_id == other.id


def test_one_approval_releases_the_lock(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.EXECUTED
    assert done.approvers == (ALICE,) and done.decided_by == ALICE
    assert done.outcome == f"released from DynamoDB table {TABLE}"
    assert not held(directory)
    assert actions(sessions, request.id) == ["requested", "approved", "executing", "executed"]
    assert workflow.find(request.id) == done


def test_self_approval_is_refused_and_recorded(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, ALICE, REASON, CHANNEL)  # an approver asking still needs someone else
    with pytest.raises(Refused, match="a second person must") as caught:
        workflow.approve(request.id, ALICE)
    assert caught.value.why is RefusalCode.SELF_APPROVAL
    assert caught.value.request is not None and caught.value.request.status is Status.PENDING
    assert held(directory)
    event = audit_trail(sessions, request.id)[-1]
    assert (event.action, event.actor, event.detail["why"]) == ("refused", ALICE, "self_approval")
    assert event.detail["attempted"] == "approve" and event.state_address == STATE


def test_unlisted_approver_is_refused_and_recorded(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    with pytest.raises(Refused, match="not an approver") as caught:
        workflow.approve(request.id, "UMALLORY")
    assert caught.value.why is RefusalCode.NOT_APPROVER
    assert refusal(sessions)["why"] == "not_approver"
    assert held(directory)
    assert workflow.approve(request.id, BOB).status is Status.EXECUTED


def test_bots_never_count(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY)
    with pytest.raises(Refused) as caught:
        workflow.request(STATE, "UDEPLOYBOT", REASON, CHANNEL, is_bot=True)
    assert caught.value.why is RefusalCode.BOT
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    with pytest.raises(Refused, match="Bots cannot") as caught:
        workflow.approve(request.id, ALICE, is_bot=True)  # even one on the approver list
    assert caught.value.why is RefusalCode.BOT
    assert held(directory)
    assert actions(sessions) == ["refused", "requested", "refused"]


def test_quorum_of_two_distinct_approvers(
    tf: TerraformBackend, make_workflow: MakeWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    workflow = make_workflow(approvals_required=2)
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    first = workflow.approve(request.id, ALICE)
    assert first.status is Status.PENDING and first.approvers == (ALICE,) and first.approvals_missing == 1
    assert held(directory)
    with pytest.raises(Refused, match="already approved") as caught:
        workflow.approve(request.id, ALICE)
    assert caught.value.why is RefusalCode.ALREADY_APPROVED
    assert held(directory)
    second = workflow.approve(request.id, BOB)
    assert second.status is Status.EXECUTED and second.approvers == (ALICE, BOB)
    assert not held(directory)
    with pytest.raises(Refused, match="already approved and the lock was released") as caught:
        workflow.approve(request.id, CAROL)
    assert caught.value.why is RefusalCode.ALREADY_DECIDED


def test_the_quorum_is_fixed_when_the_request_is_made(
    tf: TerraformBackend, make_workflow: MakeWorkflow, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY)
    request = make_workflow(approvals_required=2).request(STATE, REQUESTER, REASON, CHANNEL)
    assert make_workflow(approvals_required=1).approve(request.id, ALICE).status is Status.PENDING


def test_expiry_on_click(
    tf: TerraformBackend,
    workflow: UnlockWorkflow,
    directory: LockDirectory,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    clock.advance(minutes=29, seconds=59)
    assert workflow.find(request.id) == request
    clock.advance(seconds=1)
    with pytest.raises(Refused, match=r"expired at 2026-03-04 10:30 UTC \(requests last 30m\)") as caught:
        workflow.approve(request.id, ALICE)
    assert caught.value.why is RefusalCode.EXPIRED
    assert caught.value.request is not None and caught.value.request.status is Status.EXPIRED
    assert held(directory)
    assert actions(sessions, request.id) == ["requested", "expired", "refused"]
    with pytest.raises(Refused) as caught:
        workflow.approve(request.id, BOB)
    assert caught.value.why is RefusalCode.EXPIRED
    assert workflow.expire_due() == []


def test_expire_due_ends_overdue_requests_once(
    tf: TerraformBackend, make_workflow: MakeWorkflow, sessions: sessionmaker[Session], clock: Clock
) -> None:
    workflow = make_workflow(request_ttl=timedelta(minutes=15))
    tf.lock(KEY)
    tf.lock("other/terraform.tfstate")
    first = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    clock.advance(minutes=10)
    second = workflow.request(f"{BUCKET}/other/terraform.tfstate", REQUESTER, REASON, CHANNEL)
    clock.advance(minutes=5)
    [expired] = workflow.expire_due()
    assert (expired.id, expired.status, expired.decided_at) == (first.id, Status.EXPIRED, clock.now)
    assert workflow.expire_due() == []
    clock.advance(minutes=10)
    assert [view.id for view in workflow.expire_due()] == [second.id]
    expired_events = [e for e in audit_trail(sessions) if e.action == AuditAction.EXPIRED]
    assert [(e.request_id, e.actor) for e in expired_events] == [(first.id, None), (second.id, None)]


def test_reject(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    with pytest.raises(Refused, match="use Cancel") as caught:
        workflow.reject(request.id, REQUESTER)
    assert caught.value.why is RefusalCode.USE_CANCEL
    with pytest.raises(Refused) as caught:
        workflow.reject(request.id, "UMALLORY")
    assert caught.value.why is RefusalCode.NOT_APPROVER
    rejected = workflow.reject(request.id, BOB, note=" the apply is still running ")
    assert rejected.status is Status.REJECTED and rejected.decided_by == BOB
    assert rejected.outcome == "the apply is still running"
    with pytest.raises(Refused, match="already rejected") as caught:
        workflow.approve(request.id, ALICE)
    assert caught.value.why is RefusalCode.ALREADY_DECIDED
    assert held(directory)
    assert actions(sessions, request.id) == ["requested", "refused", "refused", "rejected", "refused"]


def test_cancel(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    with pytest.raises(Refused, match="Only the person who asked") as caught:
        workflow.cancel(request.id, ALICE)
    assert caught.value.why is RefusalCode.NOT_REQUESTER
    cancelled = workflow.cancel(request.id, REQUESTER)
    assert cancelled.status is Status.CANCELLED and cancelled.decided_by == REQUESTER
    with pytest.raises(Refused) as caught:
        workflow.cancel(request.id, REQUESTER)
    assert caught.value.why is RefusalCode.ALREADY_DECIDED
    assert held(directory)
    assert actions(sessions, request.id) == ["requested", "refused", "cancelled", "refused"]


def test_cancel_after_expiry_is_refused_as_expired(
    tf: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session], clock: Clock
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    clock.advance(hours=1)
    with pytest.raises(Refused) as caught:
        workflow.cancel(request.id, REQUESTER)
    assert caught.value.why is RefusalCode.EXPIRED
    assert actions(sessions, request.id) == ["requested", "expired", "refused"]


TAMPERED = [
    "not-a-request",
    str(uuid.uuid4()),  # well-formed, but no such request
    "",
    "x" * 20_000,
    "abc\x00def",
    "\ud800' OR 1=1 --",
]


def test_unknown_or_tampered_request_ids(
    tf: TerraformBackend,
    workflow: UnlockWorkflow,
    directory: LockDirectory,
    sessions: sessionmaker[Session],
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    for given in TAMPERED:
        for attempt in (workflow.approve, workflow.reject, workflow.cancel):
            with pytest.raises(Refused, match="request is unknown") as caught:
                attempt(given, ALICE)
            assert caught.value.why is RefusalCode.UNKNOWN_REQUEST and caught.value.exit_code == 2
            event = audit_trail(sessions)[-1]
            assert event.action == "refused" and event.request_id is None and event.actor == ALICE
            assert event.detail["why"] == "unknown_request"
            assert len(str(event.detail["given_request_id"])) <= 4000
    assert held(directory)
    assert workflow.find(request.id) == request


def test_requests_only_in_allowed_channels(
    tf: TerraformBackend, make_workflow: MakeWorkflow, sessions: sessionmaker[Session]
) -> None:
    workflow = make_workflow(allowed_channels=frozenset({CHANNEL}))
    tf.lock(KEY)
    for channel in ("CRANDOM", None):
        with pytest.raises(Refused, match=f"TFLOCK_ALLOWED_CHANNELS \\({CHANNEL}\\)") as caught:
            workflow.request(STATE, REQUESTER, REASON, channel)
        assert caught.value.why is RefusalCode.CHANNEL_NOT_ALLOWED
        event = audit_trail(sessions)[-1]
        assert (event.action, event.channel, event.detail["why"]) == ("refused", channel, "channel_not_allowed")
    assert workflow.request(STATE, REQUESTER, REASON, CHANNEL).status is Status.PENDING


def test_a_reason_is_required(tf: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session]) -> None:
    tf.lock(KEY)
    for reason, why, message in [
        ("", RefusalCode.MISSING_REASON, "A reason is required"),
        (" \n\t ", RefusalCode.MISSING_REASON, "A reason is required"),
        ("x" * 2001, RefusalCode.REASON_TOO_LONG, "2,001 characters long; keep it to 2,000"),
    ]:
        with pytest.raises(Refused, match=message) as caught:
            workflow.request(STATE, REQUESTER, reason, CHANNEL)
        assert caught.value.why is why and caught.value.exit_code == 2
        assert refusal(sessions)["why"] == why
    assert workflow.request(STATE, REQUESTER, "x" * 2000, CHANNEL).reason == "x" * 2000


def test_reason_text_is_kept_as_written(tf: TerraformBackend, workflow: UnlockWorkflow) -> None:
    tf.lock(KEY)
    reason = "runner died — see <https://incident/42>\nasked @alice; 'quotes' & \x00 and \ud800 too"
    view = workflow.request(STATE, REQUESTER, reason, CHANNEL)
    stored = workflow.find(view.id)
    assert stored is not None
    assert stored.reason == "runner died — see <https://incident/42>\nasked @alice; 'quotes' & \\u0000 and \\ud800 too"


def test_nothing_to_unlock_is_refused(workflow: UnlockWorkflow, aws: Aws, sessions: sessionmaker[Session]) -> None:
    with pytest.raises(Refused, match="is not locked") as caught:
        workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    assert caught.value.why is RefusalCode.NOT_LOCKED
    event = audit_trail(sessions)[-1]
    assert (event.action, event.state_address, event.detail["why"]) == ("refused", STATE, "not_locked")


def test_bad_state_is_bad_input(tf: TerraformBackend, workflow: UnlockWorkflow) -> None:
    with pytest.raises(BadInput, match=r"has a '\.' or '\.\.' segment"):
        workflow.request(f"{BUCKET}/../etc/passwd", REQUESTER, REASON, CHANNEL)


def test_stores_holding_different_locks_are_refused(
    aws: Aws, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    TerraformBackend(aws.s3, None, BUCKET, None, use_lockfile=True).lock(KEY)
    TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE).lock(KEY)
    with pytest.raises(Refused, match="hold different locks") as caught:
        workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    assert caught.value.why is RefusalCode.STORES_DISAGREE
    assert held(directory)


def test_one_pending_request_per_state(
    tf: TerraformBackend, workflow: UnlockWorkflow, sessions: sessionmaker[Session], clock: Clock
) -> None:
    tf.lock(KEY)
    first = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    with pytest.raises(Refused, match="already waiting for approval") as caught:
        workflow.request(STATE, ALICE, REASON, CHANNEL)
    assert caught.value.why is RefusalCode.ALREADY_REQUESTED
    assert caught.value.request is not None and caught.value.request.id == first.id
    clock.advance(minutes=31)  # an overdue request no longer blocks, swept or not
    assert workflow.request(STATE, ALICE, REASON, CHANNEL).status is Status.PENDING


def test_attach_message(tf: TerraformBackend, workflow: UnlockWorkflow) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    attached = workflow.attach_message(request.id, CHANNEL, "1741082400.000100")
    assert (attached.channel, attached.message_ts) == (CHANNEL, "1741082400.000100")
    assert workflow.find(request.id) == attached
    with pytest.raises(BadInput, match="no unlock request"):
        workflow.attach_message(str(uuid.uuid4()), CHANNEL, "1.2")


def test_duplicate_clicks_release_once(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    assert workflow.approve(request.id, ALICE).status is Status.EXECUTED
    relocked = tf.lock(KEY)  # someone's next run takes the lock again
    for _ in range(3):
        with pytest.raises(Refused) as caught:
            workflow.approve(request.id, ALICE)
        assert caught.value.why is RefusalCode.ALREADY_DECIDED
    now = directory.read(StateAddress(BUCKET, KEY))
    assert now.table is not None and now.table.raw_info == relocked.info_json
    assert actions(sessions, request.id).count("executed") == 1


def test_the_audit_trail_tells_the_whole_story_in_order(
    tf_both: TerraformBackend,
    make_workflow: MakeWorkflow,
    sessions: sessionmaker[Session],
    clock: Clock,
) -> None:
    workflow = make_workflow(approvals_required=2)
    lock = tf_both.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    workflow.attach_message(request.id, CHANNEL, "1741082400.000100")
    clock.advance(minutes=1)
    with pytest.raises(Refused):
        workflow.approve(request.id, REQUESTER)
    clock.advance(minutes=1)
    workflow.approve(request.id, ALICE)
    clock.advance(minutes=1)
    with pytest.raises(Refused):
        workflow.approve(request.id, ALICE)
    clock.advance(minutes=1)
    done = workflow.approve(request.id, BOB)
    story = [
        (e.action, e.actor, e.detail.get("why"), e.at - request.created_at) for e in audit_trail(sessions, request.id)
    ]
    minute = timedelta(minutes=1)
    assert story == [
        ("requested", REQUESTER, None, timedelta(0)),
        ("refused", REQUESTER, "self_approval", minute),
        ("approved", ALICE, None, 2 * minute),
        ("refused", ALICE, "already_approved", 3 * minute),
        ("approved", BOB, None, 4 * minute),
        ("executing", BOB, None, 4 * minute),
        ("executed", BOB, None, 4 * minute),
    ]
    for event in audit_trail(sessions, request.id):
        assert (event.state_address, event.lock_id, event.channel) == (STATE, lock.id, CHANNEL)
        assert event.at.tzinfo is not None and event.at.utcoffset() == timedelta(0)
    executed = audit_trail(sessions, request.id)[-1]
    assert executed.detail["deleted"] == [f"s3://{BUCKET}/{KEY}.tflock", f"DynamoDB table {TABLE}"]
    assert done.finished_at == clock.now


def test_a_naive_clock_is_a_programming_error(
    tf: TerraformBackend, sessions: sessionmaker[Session], directory: LockDirectory
) -> None:
    tf.lock(KEY)
    naive = UnlockWorkflow(sessions, directory, UnlockPolicy(is_approver=bool), lambda: datetime(2026, 3, 4, 10))
    with pytest.raises(ValueError, match="aware UTC"):
        naive.request(STATE, REQUESTER, REASON, CHANNEL)


def test_a_request_is_pinned_to_the_lock_the_person_saw(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    seen = tf.lock(KEY)
    tf.unlock(seen)
    live = tf.lock(KEY, who="bob@laptop")  # a fresh run took the state while the reason was being typed
    with pytest.raises(Refused) as caught:
        workflow.request(STATE, REQUESTER, REASON, CHANNEL, expected_lock_id=seen.id)
    assert caught.value.why is RefusalCode.LOCK_CHANGED and live.id in str(caught.value)
    assert refusal(sessions)["why"] == "lock_changed"
    with pytest.raises(LockNotFound):  # a typed lock ID names that lock only, never the one now held
        workflow.request(seen.id, REQUESTER, REASON, CHANNEL)
    assert held(directory)


def test_a_store_that_cannot_be_read_at_release_is_never_taken_as_released(
    tf_both: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    from tests.awsfaults import inject_error

    tf_both.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    inject_error(directory.backends.backends[0].clients.client("s3"), "GetObject", "AccessDenied", status=403)
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.FAILED
    assert done.outcome is not None and "could not be read now" in done.outcome
    table_item = directory.table(directory.backends.backends[0]).read(StateAddress(BUCKET, KEY))  # type: ignore[union-attr]
    assert table_item is not None  # nothing was deleted
