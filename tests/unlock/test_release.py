"""The release: compare-and-delete of exactly the lock approved, fail closed, and reconciliation after a crash."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

import bot.unlock.workflow
from bot.audit.models import AuditAction
from bot.audit.writer import AuditUnavailable
from bot.db import DatabaseUnavailable, make_engine, make_sessions
from bot.locks.address import StateAddress
from bot.locks.directory import LockDirectory
from bot.locks.dynamodb import LockTable
from bot.locks.lockfile import LockFiles
from bot.locks.model import StateLock
from bot.unlock.models import RequestView, Status
from bot.unlock.policy import UnlockPolicy
from bot.unlock.workflow import EXECUTING_GRACE, UnlockWorkflow
from tests.awsdeny import deny
from tests.conftest import BUCKET, TABLE, Aws
from tests.database import audit_trail
from tests.locks.test_compare_and_delete import lose_first_answer
from tests.terraform import TerraformBackend, TerraformLock
from tests.unlock.conftest import ALICE, APPROVERS, CHANNEL, REQUESTER, Clock, MakeWorkflow

KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"
ADDRESS = StateAddress(BUCKET, KEY)
REASON = "CI job cancelled mid-apply; runner is gone"


class Crash(BaseException):
    """The process dying: not an Exception, so nothing in the workflow catches it."""


def read(directory: LockDirectory) -> StateLock:
    return directory.read(ADDRESS)


def actions(sessions: sessionmaker[Session], request: RequestView) -> list[str]:
    return [event.action for event in audit_trail(sessions, request.id)]


def digest_item(aws: Aws) -> dict[str, Any] | None:
    found: dict[str, Any] = aws.dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": ADDRESS.digest_id}})
    return found.get("Item")


def assert_held_exactly(directory: LockDirectory, lock: TerraformLock, *, table: bool, lockfile: bool) -> None:
    state = read(directory)
    assert (state.table is not None, state.lockfile is not None) == (table, lockfile)
    for snapshot in state.snapshots:
        assert snapshot.raw_info == lock.info_json


def test_both_stores_released_and_the_digest_survives(
    tf_both: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, aws: Aws
) -> None:
    tf_both.write_state(KEY, b'{"version":4,"serial":7}')
    digest = digest_item(aws)
    tf_both.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    etag = aws.s3.head_object(Bucket=BUCKET, Key=f"{KEY}.tflock")["ETag"]
    assert request.lockfile_etag == etag and set(request.held_in) == {"dynamodb", "s3"}
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.EXECUTED
    assert done.outcome == f"released from s3://{BUCKET}/{KEY}.tflock and DynamoDB table {TABLE}"
    assert not read(directory).held
    assert digest is not None and digest_item(aws) == digest


def test_lock_file_only(tf_file: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory) -> None:
    tf_file.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    assert request.held_in == ("s3",)
    assert workflow.approve(request.id, ALICE).status is Status.EXECUTED
    assert not read(directory).held


@pytest.mark.parametrize("backend", ["tf", "tf_file", "tf_both"])
def test_lock_replaced_before_approval_is_superseded_and_survives(
    backend: str,
    request: pytest.FixtureRequest,
    workflow: UnlockWorkflow,
    directory: LockDirectory,
    sessions: sessionmaker[Session],
) -> None:
    tf: TerraformBackend = request.getfixturevalue(backend)
    old = tf.lock(KEY)
    asked = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    tf.unlock(old)
    new = tf.lock(KEY)  # a fresh run took the lock in between
    before = read(directory)
    done = workflow.approve(asked.id, ALICE)
    assert done.status is Status.SUPERSEDED
    assert done.outcome is not None and new.id in done.outcome and "nothing was deleted" in done.outcome
    after = read(directory)
    assert [s.raw_info for s in after.snapshots] == [s.raw_info for s in before.snapshots]
    assert [s.etag for s in after.snapshots] == [s.etag for s in before.snapshots]
    assert_held_exactly(directory, new, table=tf.table is not None, lockfile=tf.use_lockfile)
    assert actions(sessions, asked) == ["requested", "approved", "superseded"]


def test_same_lock_id_with_different_info_is_superseded(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory
) -> None:
    lock = tf.lock(KEY, who="alice@laptop")
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    rewritten = TerraformLock(ADDRESS, id=lock.id, who="mallory@elsewhere", created=lock.created)
    tf.put_raw_table_item(ADDRESS, {"Info": {"S": rewritten.info_json}})
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.SUPERSEDED
    assert done.outcome is not None and "with a different Info" in done.outcome
    assert_held_exactly(directory, rewritten, table=True, lockfile=False)


def test_lock_already_released(
    tf_both: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    lock = tf_both.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    tf_both.unlock(lock)
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.ALREADY_RELEASED
    assert done.outcome == f"{STATE} is no longer locked in any store"
    assert actions(sessions, request) == ["requested", "approved", "already_released"]


def test_half_released_double_lock_releases_the_rest(
    tf_both: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, aws: Aws
) -> None:
    tf_both.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    aws.s3.delete_object(Bucket=BUCKET, Key=f"{KEY}.tflock")  # Terraform's unlock died after the file
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.EXECUTED
    assert done.outcome == (
        f"released from DynamoDB table {TABLE}; the lock file had already been released; the rest is unchanged"
    )
    assert not read(directory).held


def test_unreadable_lock_can_still_be_released_exactly(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory
) -> None:
    tf.put_raw_table_item(ADDRESS, {"Info": {"S": '{"ID": "abc", "Who": '}})
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    assert request.lock_id is None and request.raw_info == '{"ID": "abc", "Who": '
    assert workflow.approve(request.id, ALICE).status is Status.EXECUTED
    assert not read(directory).held


def replace_before(store: type[LockTable] | type[LockFiles], act: Callable[[], object], monkeypatch: Any) -> None:
    """Run `act` (another client changing the lock) just before this store's compare-and-delete."""
    original = store.delete_if_unchanged

    def racing(self: Any, address: StateAddress, expected: str) -> bool:
        act()
        return original(self, address, expected)

    monkeypatch.setattr(store, "delete_if_unchanged", racing)


def test_table_lock_replaced_at_the_moment_of_delete(
    tf: TerraformBackend,
    workflow: UnlockWorkflow,
    directory: LockDirectory,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    replaced: list[TerraformLock] = []
    replace_before(LockTable, lambda: (tf.unlock(old), replaced.append(tf.lock(KEY))), monkeypatch)
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.SUPERSEDED
    assert done.outcome is not None and "DynamoDB condition" in done.outcome
    assert_held_exactly(directory, replaced[0], table=True, lockfile=False)
    assert actions(sessions, request) == ["requested", "approved", "executing", "superseded"]


def test_lock_file_replaced_at_the_moment_of_delete(
    tf_file: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tf_file.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    replaced: list[TerraformLock] = []
    replace_before(LockFiles, lambda: (tf_file.unlock(old), replaced.append(tf_file.lock(KEY))), monkeypatch)
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.SUPERSEDED
    assert done.outcome is not None and "PreconditionFailed" in done.outcome
    assert_held_exactly(directory, replaced[0], table=False, lockfile=True)


def test_lock_released_by_someone_else_at_the_moment_of_delete(
    tf_both: TerraformBackend, workflow: UnlockWorkflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = tf_both.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    replace_before(LockFiles, lambda: tf_both.unlock(lock), monkeypatch)
    assert workflow.approve(request.id, ALICE).status is Status.ALREADY_RELEASED


def test_aws_refusing_the_delete_fails_the_request_and_says_why(
    tf_both: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    lock = tf_both.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    deny(directory.backends.backends[0].clients.client("dynamodb"), "DeleteItem", "AccessDeniedException")
    done = workflow.approve(request.id, ALICE)
    assert done.status is Status.FAILED
    assert done.outcome == (
        f"the release failed: AWS denied dynamodb:DeleteItem on table {TABLE}: grant it to the bot's role "
        f"(already deleted: s3://{BUCKET}/{KEY}.tflock)"
    )
    assert_held_exactly(directory, lock, table=True, lockfile=False)
    assert actions(sessions, request) == ["requested", "approved", "executing", "failed"]


# -- fail closed --------------------------------------------------------------------------------------


def test_audit_table_gone_at_approval_nothing_is_deleted(
    tf: TerraformBackend,
    workflow: UnlockWorkflow,
    directory: LockDirectory,
    engine: Engine,
) -> None:
    lock = tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE audit_events"))
    with pytest.raises(AuditUnavailable, match="nothing was changed") as caught:
        workflow.approve(request.id, ALICE)
    assert caught.value.exit_code == 1
    assert_held_exactly(directory, lock, table=True, lockfile=False)
    still = workflow.find(request.id)
    assert still is not None and still.status is Status.PENDING and still.approvers == ()


def test_database_unreachable_at_approval_nothing_is_deleted(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, clock: Clock, tmp_path: Any
) -> None:
    lock = tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    down = make_engine(f"sqlite:///{tmp_path / 'no-such-directory' / 'tflock.db'}")
    cut_off = UnlockWorkflow(make_sessions(down), directory, workflow.policy, clock)
    with pytest.raises(DatabaseUnavailable, match="unable to open database file"):
        cut_off.approve(request.id, ALICE)
    assert_held_exactly(directory, lock, table=True, lockfile=False)


def fail_on(action: AuditAction, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit database refuses exactly the event for `action` (e.g. the disk filled up right then)."""
    original = bot.unlock.workflow.record_event

    def record(session: Session, what: AuditAction, **fields: Any) -> Any:
        if what is action:
            raise OperationalError("INSERT INTO audit_events", {}, Exception("disk full"))
        return original(session, what, **fields)

    monkeypatch.setattr(bot.unlock.workflow, "record_event", record)


def test_attempt_not_recorded_means_nothing_deleted(
    tf_both: TerraformBackend,
    workflow: UnlockWorkflow,
    directory: LockDirectory,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    lock = tf_both.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    fail_on(AuditAction.EXECUTING, monkeypatch)
    with pytest.raises(AuditUnavailable, match=r"so the lock was NOT released \(Exception: disk full\)"):
        workflow.approve(request.id, ALICE)
    assert_held_exactly(directory, lock, table=True, lockfile=True)
    stuck = workflow.find(request.id)
    assert stuck is not None and stuck.status is Status.APPROVED and stuck.approvers == (ALICE,)
    assert actions(sessions, request) == ["requested", "approved"]
    monkeypatch.undo()
    clock.advance(minutes=11)
    [ended] = workflow.reconcile()
    assert ended.status is Status.FAILED
    assert ended.outcome is not None and "before this release started" in ended.outcome
    assert_held_exactly(directory, lock, table=True, lockfile=True)  # reconciliation never deletes


# -- a crash mid-release, reconciled at the next start ------------------------------------------------


def crash_at_delete(monkeypatch: pytest.MonkeyPatch, *, after_deleting: bool) -> None:
    original = LockTable.delete_if_unchanged

    def crash(self: LockTable, address: StateAddress, raw_info: str) -> bool:
        if after_deleting:
            original(self, address, raw_info)
        raise Crash

    monkeypatch.setattr(LockTable, "delete_if_unchanged", crash)


def restart(migrated_url: str, directory: LockDirectory, clock: Clock) -> UnlockWorkflow:
    """A new process: its own engine on the same database."""
    policy = UnlockPolicy(is_approver=lambda user: user in APPROVERS)
    return UnlockWorkflow(make_sessions(make_engine(migrated_url)), directory, policy, clock)


def test_crash_before_the_delete_is_reconciled_as_failed(
    tf: TerraformBackend,
    workflow: UnlockWorkflow,
    directory: LockDirectory,
    sessions: sessionmaker[Session],
    migrated_url: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    lock = tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    crash_at_delete(monkeypatch, after_deleting=False)
    with pytest.raises(Crash):
        workflow.approve(request.id, ALICE)
    monkeypatch.undo()
    stuck = workflow.find(request.id)
    assert stuck is not None and stuck.status is Status.EXECUTING
    restarted = restart(migrated_url, directory, clock)
    clock.advance(seconds=EXECUTING_GRACE.total_seconds() - 1)
    assert restarted.reconcile() == []  # a live replica might still be inside this release
    clock.advance(seconds=1)
    [ended] = restarted.reconcile()
    assert ended.status is Status.FAILED
    assert ended.outcome == (
        "the bot stopped in the middle of this release and the lock is still held unchanged; nothing was "
        "deleted by reconciliation — ask again if it should still be released"
    )
    assert_held_exactly(directory, lock, table=True, lockfile=False)
    trail = audit_trail(sessions, request.id)
    assert [e.action for e in trail] == ["requested", "approved", "executing", "reconciled", "failed"]
    assert trail[3].detail["found"] == "unchanged" and trail[3].actor is None
    assert trail[4].detail["reconciled"] is True
    assert restarted.reconcile() == []
    assert restarted.request(STATE, REQUESTER, REASON, CHANNEL).status is Status.PENDING  # people can ask again


def test_crash_after_the_delete_is_reconciled_as_executed_once(
    tf: TerraformBackend,
    workflow: UnlockWorkflow,
    directory: LockDirectory,
    sessions: sessionmaker[Session],
    migrated_url: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    crash_at_delete(monkeypatch, after_deleting=True)
    with pytest.raises(Crash):
        workflow.approve(request.id, ALICE)
    monkeypatch.undo()
    assert not read(directory).held
    clock.advance(minutes=30)
    [ended] = restart(migrated_url, directory, clock).reconcile()
    assert ended.status is Status.EXECUTED
    assert ended.outcome is not None and ended.outcome.startswith("the bot stopped in the middle of this release")
    assert actions(sessions, request) == ["requested", "approved", "executing", "reconciled", "executed"]


def test_lock_replaced_while_the_bot_was_down_is_reconciled_as_superseded(
    tf: TerraformBackend,
    workflow: UnlockWorkflow,
    directory: LockDirectory,
    migrated_url: str,
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    old = tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    crash_at_delete(monkeypatch, after_deleting=False)
    with pytest.raises(Crash):
        workflow.approve(request.id, ALICE)
    monkeypatch.undo()
    tf.unlock(old)
    new = tf.lock(KEY)
    clock.advance(hours=2)
    [ended] = restart(migrated_url, directory, clock).reconcile()
    assert ended.status is Status.SUPERSEDED
    assert_held_exactly(directory, new, table=True, lockfile=False)


def test_release_that_outlives_reconciliation_records_what_really_happened(
    tf: TerraformBackend,
    make_workflow: MakeWorkflow,
    directory: LockDirectory,
    sessions: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    clock: Clock,
) -> None:
    slow, other_replica = make_workflow(), make_workflow()
    tf.lock(KEY)
    request = slow.request(STATE, REQUESTER, REASON, CHANNEL)

    def reconcile_elsewhere() -> None:
        clock.advance(minutes=11)  # AWS took longer than the grace period
        assert [view.status for view in other_replica.reconcile()] == [Status.FAILED]

    replace_before(LockTable, reconcile_elsewhere, monkeypatch)
    done = slow.approve(request.id, ALICE)
    assert done.status is Status.FAILED
    assert not read(directory).held
    trail = audit_trail(sessions, request.id)
    assert [e.action for e in trail][-3:] == ["reconciled", "failed", "reconciled"]
    assert trail[-1].detail["late_outcome"] == "executed" and trail[-1].actor == ALICE
    assert trail[-1].detail["deleted"] == [f"DynamoDB table {TABLE}"]


def test_a_delete_whose_answer_was_lost_is_recorded_as_executed_by_tflock(
    tf: TerraformBackend, workflow: UnlockWorkflow, directory: LockDirectory, sessions: sessionmaker[Session]
) -> None:
    """botocore retries a DeleteItem whose first attempt deleted the item: the release is still ours."""
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, REASON, CHANNEL)
    attempts = lose_first_answer(directory.backends.backends[0].clients.client("dynamodb"), "DeleteItem")
    done = workflow.approve(request.id, ALICE)
    assert attempts == [1, 2]
    assert done.status is Status.EXECUTED
    assert done.outcome == f"released from DynamoDB table {TABLE} (response lost, confirmed gone)"
    assert not read(directory).held
    events = audit_trail(sessions, request.id)
    assert [e.action for e in events] == ["requested", "approved", "executing", "executed"]
    assert events[-1].actor == ALICE and events[-1].detail["deleted"] == [
        f"DynamoDB table {TABLE} (response lost, confirmed gone)"
    ]
