"""Who is reached about a request, the holder's answer and the one escalation — decisions and database,
no Slack (SQLite, and PostgreSQL with TFLOCK_TEST_DATABASE_URL)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.unlock.models import HolderAnswer, Status
from bot.unlock.notify import (
    HolderMatch,
    NotifyMode,
    RequestNotices,
    approvers_to_reach,
    direct_message_targets,
    holder_to_ask,
)
from bot.unlock.policy import RefusalCode, Refused
from bot.unlock.workflow import UnlockWorkflow
from tests.conftest import BUCKET
from tests.database import audit_trail
from tests.terraform import TerraformBackend
from tests.unlock.conftest import ALICE, BOB, CHANNEL, REQUESTER, Clock, MakeWorkflow

KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"


# -- decisions -----------------------------------------------------------------------------------------------
def test_mention_splits_groups_from_users_and_leaves_the_requester_out() -> None:
    reach = approvers_to_reach(["U0BOB0001", "S0SRE0001", "U0ALICE01", "S0SRE0001"], "U0ALICE01", NotifyMode.MENTION)
    assert (reach.groups, reach.users) == (("S0SRE0001",), ("U0BOB0001",))
    assert not approvers_to_reach(["U0BOB0001"], "U0ALICE01", NotifyMode.NONE).anyone
    assert not approvers_to_reach([], "U0ALICE01", NotifyMode.MENTION).anyone  # anyone may approve: nobody to call


def test_direct_messages_go_to_each_approver_once_never_the_requester_and_are_capped() -> None:
    targets, left_out = direct_message_targets(["U0BOB0001", "U0ALICE01"], ["U0BOB0001", "U0CAROL01"], "U0ALICE01")
    assert (targets, left_out) == (("U0BOB0001", "U0CAROL01"), 0)
    many = [f"U0{n:07d}" for n in range(30)]
    targets, left_out = direct_message_targets([], many, "U0ALICE01", limit=25)
    assert len(targets) == 25 and left_out == 5


@pytest.mark.parametrize(
    ("who", "matches", "expected"),
    [
        ("carol@laptop", {"U1"}, (HolderMatch.ASK, "U1")),
        ("bob@laptop", {"U1", "U2"}, (HolderMatch.AMBIGUOUS, None)),
        ("runner@ci", set(), (HolderMatch.UNMATCHED, None)),
        (None, {"U1"}, (HolderMatch.NO_WHO, None)),
    ],
)
def test_the_holder_is_asked_only_when_beyond_doubt(
    who: str | None, matches: set[str], expected: tuple[HolderMatch, str | None]
) -> None:
    choice = holder_to_ask(who, matches)
    assert (choice.match, choice.user) == expected


# -- the holder's answer and Approve anyway ------------------------------------------------------------------------
@pytest.fixture
def notices(workflow: UnlockWorkflow) -> RequestNotices:
    return RequestNotices(workflow, timedelta(minutes=10))


def test_still_running_makes_a_plain_approval_refused_and_approve_anyway_counts(
    tf: TerraformBackend, workflow: UnlockWorkflow, notices: RequestNotices, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY, who="carol@laptop")
    request = workflow.request(STATE, REQUESTER, "the runner died", CHANNEL)
    assert notices.ask_holder(request.id, ALICE) is not None
    assert notices.ask_holder(request.id, BOB) is None  # asked once
    outcome = notices.answer_as_holder(request.id, ALICE, HolderAnswer.RUNNING)
    assert outcome.request.holder_says_running and not outcome.approved
    with pytest.raises(Refused) as refused:
        workflow.approve(request.id, BOB)
    assert refused.value.why is RefusalCode.HOLDER_RUNNING
    assert workflow.approve(request.id, BOB, past_warning=True).status is Status.EXECUTED
    trail = audit_trail(sessions, request.id)
    assert [e.action for e in trail] == ["requested", "holder_answered", "refused", "approved", "executing", "executed"]
    assert trail[3].detail["past_holder_warning"] is True


def test_go_ahead_from_an_approver_is_an_approval_and_clears_the_warning(
    tf: TerraformBackend, workflow: UnlockWorkflow, notices: RequestNotices
) -> None:
    tf.lock(KEY, who="alice@laptop")
    request = workflow.request(STATE, REQUESTER, "the runner died", CHANNEL)
    notices.ask_holder(request.id, ALICE)
    notices.answer_as_holder(request.id, ALICE, HolderAnswer.RUNNING)
    outcome = notices.answer_as_holder(request.id, ALICE, HolderAnswer.DEAD)  # changed their mind
    assert outcome.approved and outcome.request.status is Status.EXECUTED and outcome.request.approvers == (ALICE,)


def test_a_dead_run_stays_dead_and_a_double_click_changes_nothing(
    tf: TerraformBackend, make_workflow: MakeWorkflow, sessions: sessionmaker[Session]
) -> None:
    workflow = make_workflow()
    notices = RequestNotices(workflow, timedelta(minutes=10))
    tf.lock(KEY, who="alice@laptop")
    request = workflow.request(STATE, ALICE, "my own run died", CHANNEL)  # the answer counts as nothing
    notices.ask_holder(request.id, ALICE)
    notices.answer_as_holder(request.id, ALICE, HolderAnswer.DEAD)
    for again in (HolderAnswer.RUNNING, HolderAnswer.DEAD):
        with pytest.raises(Refused) as refused:
            notices.answer_as_holder(request.id, ALICE, again)
        assert refused.value.why is RefusalCode.ALREADY_ANSWERED and "dead" in str(refused.value)
    current = workflow._current(request.id)
    assert current.holder_answer is HolderAnswer.DEAD and current.status is Status.PENDING
    assert [e.detail.get("why") for e in audit_trail(sessions, request.id)][-2:] == ["already_answered"] * 2


def test_the_requester_as_holder_counts_as_nothing(
    tf: TerraformBackend, make_workflow: MakeWorkflow, sessions: sessionmaker[Session]
) -> None:
    workflow = make_workflow()
    notices = RequestNotices(workflow, timedelta(minutes=10))
    tf.lock(KEY, who="alice@laptop")
    request = workflow.request(STATE, ALICE, "my own run died", CHANNEL)  # Alice is an approver, and asks
    notices.ask_holder(request.id, ALICE)
    outcome = notices.answer_as_holder(request.id, ALICE, HolderAnswer.DEAD)
    assert not outcome.approved and "asked for this force-unlock yourself" in outcome.note
    assert outcome.request.status is Status.PENDING and outcome.request.approvers == ()
    assert audit_trail(sessions, request.id)[-1].detail["counts_as_approval"] is False


def test_only_the_person_asked_may_answer(
    tf: TerraformBackend, workflow: UnlockWorkflow, notices: RequestNotices, sessions: sessionmaker[Session]
) -> None:
    tf.lock(KEY, who="alice@laptop")
    request = workflow.request(STATE, REQUESTER, "the runner died", CHANNEL)
    with pytest.raises(Refused) as nobody_asked:
        notices.answer_as_holder(request.id, ALICE, HolderAnswer.DEAD)
    assert nobody_asked.value.why is RefusalCode.NOT_ASKED
    notices.ask_holder(request.id, ALICE)
    with pytest.raises(Refused) as other:
        notices.answer_as_holder(request.id, BOB, HolderAnswer.DEAD)
    assert other.value.why is RefusalCode.NOT_ASKED
    assert audit_trail(sessions, request.id)[-1].detail["why"] == "not_asked"


# -- escalation ---------------------------------------------------------------------------------------------------
def test_due_after_the_delay_claimed_once_given_back_on_failure(
    tf: TerraformBackend, workflow: UnlockWorkflow, notices: RequestNotices, clock: Clock
) -> None:
    tf.lock(KEY)
    request = workflow.request(STATE, REQUESTER, "the runner died", CHANNEL)
    clock.advance(minutes=9, seconds=59)
    assert notices.due_for_escalation() == []
    clock.advance(seconds=1)
    assert [r.id for r in notices.due_for_escalation()] == [request.id]
    claim = notices.claim_escalation(request.id)
    assert claim is not None and claim[0].escalated_at == clock.now
    assert notices.claim_escalation(request.id) is None and notices.due_for_escalation() == []
    notices.give_back_escalation(request.id, claim[1])
    assert [r.id for r in notices.due_for_escalation()] == [request.id]
    clock.advance(minutes=30)  # expired: never escalated
    assert notices.due_for_escalation() == [] and notices.claim_escalation(request.id) is None


def test_replicas_claiming_at_the_same_moment_get_one_claim(
    tf: TerraformBackend, sessions: sessionmaker[Session], make_workflow: MakeWorkflow, clock: Clock
) -> None:
    tf.lock(KEY)
    replicas = [RequestNotices(make_workflow(), timedelta(minutes=10)) for _ in range(4)]
    request = replicas[0].workflow.request(STATE, REQUESTER, "the runner died", CHANNEL)
    clock.advance(minutes=10)
    start = threading.Barrier(len(replicas))
    claims: list[tuple[object, datetime] | None] = []
    lock = threading.Lock()

    def claim(notices: RequestNotices) -> None:
        start.wait()
        got = notices.claim_escalation(request.id)
        with lock:
            claims.append(got)

    threads = [threading.Thread(target=claim, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(claims) == len(replicas)
    assert sum(c is not None for c in claims) == 1
