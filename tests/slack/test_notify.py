"""Reaching people about a force-unlock request (issue 14): approvers mentioned or messaged, one escalation
(also with two replicas on one database), and the lock's holder asked in a DM — through the Slack listeners,
on SQLite and PostgreSQL, with moto AWS, the local fake Slack and a clock the test moves."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from slack_bolt import BoltRequest
from slack_sdk.models.blocks import Block
from sqlalchemy import Engine, select

from bot.audit.models import AuditEvent
from bot.locks.model import Store
from bot.runtime import build_runtime
from bot.server import sweep_once
from bot.settings import SettingsError, load_settings
from bot.slack.app import SlackBot, build_bot
from bot.slack.views import (
    approval_message,
    approver_dm,
    approvers_call,
    escalation_message,
    holder_answered,
    holder_note,
    holder_question,
    holder_reply,
)
from bot.unlock.models import HolderAnswer, RequestView, Status
from bot.unlock.notify import HolderChoice, HolderMatch, HolderOutcome, NotifyMode, approvers_to_reach
from tests.clock import Clock
from tests.conftest import BUCKET, TABLE, Aws
from tests.database import database_url, migrated_url
from tests.fakeslack import FakeSlack
from tests.terraform import TerraformBackend, go_time

__all__ = ["database_url", "migrated_url"]

KEY = "network/terraform.tfstate"
ALICE, BOB, CAROL, DAVE = "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001"
SRE = "S0SRE0001"
CHANNEL = "C0INCIDENT"
ONCALL = "C0ONCALL1"
MakeBot = Callable[..., SlackBot]


# -- fixtures -----------------------------------------------------------------------------------------------
@pytest.fixture
def clock() -> Clock:
    return Clock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def make_bot(
    aws: Aws, slack: FakeSlack, migrated_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeBot]:
    """A SlackBot on the shared database and clock, as one replica would be; settings can be overridden."""
    base = {
        "SLACK_BOT_TOKEN": "xoxb-unit",
        "SLACK_SIGNING_SECRET": "unit-secret",
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_DYNAMODB_TABLE": TABLE,
        "TFLOCK_S3_BUCKETS": BUCKET,
        "TFLOCK_DATABASE_URL": migrated_url,
        "TFLOCK_APPROVERS": f"{BOB},{SRE}",
    }
    engines: list[Engine] = []

    def make(**env: str) -> SlackBot:
        for name, value in {**base, **env}.items():
            monkeypatch.setenv(name, value)
        runtime = build_runtime(load_settings())
        runtime.clock = clock
        engines.append(runtime.sessions.kw["bind"])
        return build_bot(runtime)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def people(slack: FakeSlack) -> FakeSlack:
    """The workspace: Alice asks, Bob approves, Carol and Dave are in the SRE group."""
    for user, name in ((ALICE, "alice"), (BOB, "bob"), (CAROL, "carol"), (DAVE, "dave")):
        slack.users[user] = {"id": user, "name": name, "is_bot": False, "deleted": False, "profile": {}}
    slack.usergroups[SRE] = [CAROL, DAVE, ALICE]
    return slack


# -- helpers --------------------------------------------------------------------------------------------------
def command(bot: SlackBot, slack: FakeSlack, text: str, user: str = ALICE) -> None:
    body = {
        "command": "/tflock",
        "text": text,
        "user_id": user,
        "channel_id": CHANNEL,
        "team_id": "T0001",
        "response_url": slack.response_url("cmd"),
        "trigger_id": "1.2.3",
    }
    assert bot.app.dispatch(BoltRequest(body=body, mode="socket_mode")).status == 200


def click(
    bot: SlackBot,
    slack: FakeSlack,
    action_id: str,
    value: str,
    user: str,
    name: str,
    *,
    channel: str = CHANNEL,
    ts: str = "1700000000.000001",
) -> None:
    body = {
        "type": "block_actions",
        "user": {"id": user, "team_id": "T0001"},
        "team": {"id": "T0001"},
        "channel": {"id": channel},
        "container": {"type": "message", "message_ts": ts, "channel_id": channel},
        "trigger_id": "9.9.9",
        "response_url": slack.response_url(name),
        "actions": [{"action_id": action_id, "value": value, "type": "button", "action_ts": str(time.time())}],
    }
    assert bot.app.dispatch(BoltRequest(body=body, mode="socket_mode")).status == 200


def request_unlock(bot: SlackBot, slack: FakeSlack, user: str = ALICE) -> str:
    command(bot, slack, f"unlock {BUCKET}/{KEY} the CI job was cancelled at 14:02", user)
    slack.wait_for("/response/cmd")  # answered once the request, its message and its notifications are done
    first = slack.calls_to("/api/chat.postMessage")[0].body
    return str(buttons(first)[0]["value"])


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Clicks are answered on a worker thread: wait (bounded) until what they do shows."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the click's effect never showed"
        time.sleep(0.05)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message.get("blocks") or [] if b["type"] == "actions" for e in b["elements"]]


def shown(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def posts(slack: FakeSlack) -> list[dict[str, Any]]:
    return [valid(c.body) for c in slack.calls_to("/api/chat.postMessage")]


def thread(slack: FakeSlack) -> list[dict[str, Any]]:
    return [p for p in posts(slack) if p.get("channel") == CHANNEL and p.get("thread_ts")]


def direct(slack: FakeSlack) -> dict[str, list[dict[str, Any]]]:
    """Direct messages by the user they went to (the fake's DM channel is D + the user ID's tail)."""
    opened = {"D" + str(c.body["users"])[1:]: str(c.body["users"]) for c in slack.calls_to("/api/conversations.open")}
    found: dict[str, list[dict[str, Any]]] = {}
    for post in posts(slack):
        if post.get("channel") in opened:
            found.setdefault(opened[post["channel"]], []).append(post)
    return found


def valid(message: dict[str, Any]) -> dict[str, Any]:
    """Every message tflock sends parses back into slack_sdk's Block Kit models within Slack's limits."""
    for block in message.get("blocks") or []:
        parsed = Block.parse(block)
        assert parsed is not None, block
        parsed.to_dict()  # raises SlackObjectFormationError beyond a limit
    assert len(str(message.get("text") or "")) <= 40_000
    return message


def events(bot: SlackBot, request_id: str) -> list[AuditEvent]:
    with bot.runtime.sessions() as session:
        query = select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id)
        return list(session.scalars(query))


def actions(bot: SlackBot, request_id: str) -> list[str]:
    return [e.action for e in events(bot, request_id)]


def the_event(bot: SlackBot, request_id: str, action: str) -> AuditEvent:
    found = [e for e in events(bot, request_id) if e.action == action]
    assert len(found) == 1, [e.action for e in events(bot, request_id)]
    return found[0]


def lock_held_by(tf: TerraformBackend, clock: Clock, who: str) -> None:
    tf.lock(KEY, who=who, operation="OperationTypeApply", created=go_time(clock.now))


# -- approvers ----------------------------------------------------------------------------------------------------
def test_mention_mode_calls_the_group_and_the_users_in_the_thread_with_a_link(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot(TFLOCK_APPROVERS=f"{BOB},{SRE},{ALICE}")  # the requester is an approver too: never called
    lock_held_by(tf, clock, "ci@runner-9")
    request_id = request_unlock(bot, people)
    replies = thread(people)
    calls = [r for r in replies if "<!subteam^" in shown(r)]
    assert len(calls) == 1
    text = calls[0]["text"]
    assert f"<!subteam^{SRE}>" in text and f"<@{BOB}>" in text and f"<@{ALICE}> asks" in text
    assert text.count(f"<@{ALICE}>") == 1  # named as the one who asks, not called to approve
    assert "https://acme.slack.test/archives/C0INCIDENT/p" in text  # chat.getPermalink's link to the request
    assert people.calls_to("/api/conversations.open") == []
    notified = the_event(bot, request_id, "notified").detail
    assert notified["mode"] == "mention" and notified["mentioned"] == [SRE, BOB]


def test_dm_mode_messages_each_approver_once_never_the_requester(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot(TFLOCK_NOTIFY="dm", TFLOCK_APPROVERS=f"{BOB},{SRE},{CAROL}")
    lock_held_by(tf, clock, "ci@runner-9")
    request_id = request_unlock(bot, people)
    dms = direct(people)
    assert sorted(dms) == sorted([BOB, CAROL, DAVE])  # Alice is in the group, but she asked
    for messages in dms.values():
        assert len(messages) == 1
        assert "asks to force-unlock" in shown(messages[0]) and "/archives/C0INCIDENT/p" in shown(messages[0])
        assert "the CI job was cancelled" in shown(messages[0])
    assert not any("<!subteam^" in shown(r) for r in thread(people))
    assert sorted(the_event(bot, request_id, "notified").detail["messaged"]) == sorted([BOB, CAROL, DAVE])


def test_none_mode_calls_nobody(make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock) -> None:
    bot = make_bot(TFLOCK_NOTIFY="none")
    lock_held_by(tf, clock, "ci@runner-9")
    request_id = request_unlock(bot, people)
    assert people.calls_to("/api/conversations.open") == []
    assert not any("<!subteam^" in shown(r) or f"<@{BOB}>" in shown(r) for r in thread(people))
    assert the_event(bot, request_id, "notified").detail["mode"] == "none"


# -- escalation ---------------------------------------------------------------------------------------------------
def escalations(slack: FakeSlack) -> list[dict[str, Any]]:
    return [p for p in posts(slack) if "Still waiting" in shown(p)]


def test_one_escalation_after_the_delay_in_the_thread_and_the_channel(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot(TFLOCK_ESCALATE_CHANNEL=ONCALL)
    lock_held_by(tf, clock, "ci@runner-9")
    request_id = request_unlock(bot, people)
    clock.advance(minutes=9, seconds=59)
    sweep_once(bot)
    assert escalations(people) == []
    clock.advance(seconds=1)
    sweep_once(bot)
    sent = escalations(people)
    assert sorted((p["channel"], bool(p.get("thread_ts"))) for p in sent) == [(CHANNEL, True), (ONCALL, False)]
    assert all(f"<!subteam^{SRE}>" in p["text"] and "/archives/C0INCIDENT/p" in p["text"] for p in sent)
    assert "0 of 1 approval" in sent[0]["text"]
    clock.advance(minutes=5)
    sweep_once(bot)
    assert len(escalations(people)) == 2  # one reminder, never a second
    escalated = the_event(bot, request_id, "escalated").detail
    assert escalated["thread"] is True and escalated["channel"] == ONCALL and escalated["pending_for_seconds"] == 600


def test_no_escalation_for_a_decided_request_and_none_without_a_channel_outside_the_thread(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot()
    lock_held_by(tf, clock, "ci@runner-9")
    request_id = request_unlock(bot, people)
    clock.advance(minutes=10)
    assert bot.notifier.escalate_due() == 1
    assert [p["channel"] for p in escalations(people)] == [CHANNEL]
    assert bot.notifier.escalate_due() == 0
    click(bot, people, "tflock_cancel", request_id, ALICE, "cancel")
    people.wait_for("/api/chat.update")
    assert bot.workflow.find(request_id).status is Status.CANCELLED  # type: ignore[union-attr]


def test_a_failed_escalation_is_tried_again_at_the_next_sweep(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot()
    lock_held_by(tf, clock, "ci@runner-9")
    request_id = request_unlock(bot, people)
    clock.advance(minutes=11)
    people.fail["chat.postMessage"] = "internal_error"
    assert bot.notifier.escalate_due() == 0
    assert "escalated" not in actions(bot, request_id)
    del people.fail["chat.postMessage"]
    assert bot.notifier.escalate_due() == 1
    assert actions(bot, request_id).count("escalated") == 1


def test_two_replicas_on_one_database_send_one_escalation(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = make_bot(TFLOCK_ESCALATE_CHANNEL=ONCALL), make_bot(TFLOCK_ESCALATE_CHANNEL=ONCALL)
    lock_held_by(tf, clock, "ci@runner-9")
    request_id = request_unlock(first, people)
    clock.advance(minutes=10)
    # Both replicas have read the request as due before either claims it: only the claim decides.
    due = {id(bot): bot.notifier.notices.due_for_escalation() for bot in (first, second)}
    assert [r.id for r in due[id(first)]] == [r.id for r in due[id(second)]] == [request_id]
    for bot in (first, second):
        monkeypatch.setattr(bot.notifier.notices, "due_for_escalation", lambda bot=bot: due[id(bot)])
    sent = first.notifier.escalate_due() + second.notifier.escalate_due()
    assert sent == 1
    assert len(escalations(people)) == 2  # thread + channel, once
    assert actions(first, request_id).count("escalated") == 1


# -- the holder ------------------------------------------------------------------------------------------------------
def holder_dm(slack: FakeSlack, user: str) -> dict[str, Any]:
    messages = direct(slack).get(user) or []
    assert len(messages) == 1, direct(slack)
    return messages[0]


def answer(bot: SlackBot, slack: FakeSlack, request_id: str, user: str, action_id: str, name: str) -> None:
    click(bot, slack, action_id, request_id, user, name, channel="D" + user[1:], ts="1700000099.000001")


def test_the_holder_is_asked_and_still_running_needs_approve_anyway(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot()
    lock_held_by(tf, clock, "carol@build-agent-07")
    request_id = request_unlock(bot, people)
    question = holder_dm(people, CAROL)
    text = shown(question)
    assert f"<@{ALICE}> asks to force-unlock" in text and "the CI job was cancelled" in text
    assert "carol@build-agent-07" in text and "apply" in text
    assert [b["text"]["text"] for b in buttons(question)] == ["My run is still running", "It's dead, go ahead"]
    assert any(f"Asked <@{CAROL}>" in r["text"] for r in thread(people))
    assert the_event(bot, request_id, "notified").detail["holder"] == {"asked": CAROL}

    updates_before = len(people.calls_to("/api/chat.update"))
    answer(bot, people, request_id, CAROL, "tflock_holder_running", "carol")
    updates = people.wait_for("/api/chat.update", updates_before + 2)
    dm_update = next(valid(u.body) for u in updates if u.body["channel"] == "D" + CAROL[1:])
    assert "still running" in shown(dm_update) and buttons(dm_update) == []
    request_message = [valid(u.body) for u in updates if u.body["channel"] == CHANNEL][-1]
    assert "says their run is still running" in shown(request_message)
    assert [b["text"]["text"] for b in buttons(request_message)] == ["Approve anyway", "Reject", "Cancel"]
    assert buttons(request_message)[0]["confirm"]["title"]["text"] == "The holder says it's running"
    eventually(lambda: any("*their run is still running*" in r["text"] for r in thread(people)))
    answered = the_event(bot, request_id, "holder_answered")
    assert answered.actor == CAROL and answered.detail["answer"] == "running"

    click(bot, people, "tflock_approve", request_id, BOB, "plain")  # from a message drawn before the answer
    assert "Approve anyway" in shown(people.wait_for("/response/plain")[-1].body)
    assert bot.workflow.find(request_id).status is Status.PENDING  # type: ignore[union-attr]
    assert events(bot, request_id)[-1].detail["why"] == "holder_running"

    click(bot, people, "tflock_approve_anyway", request_id, BOB, "anyway")
    eventually(lambda: bot.workflow.find(request_id).status is Status.EXECUTED)  # type: ignore[union-attr]
    assert the_event(bot, request_id, "approved").detail["past_holder_warning"] is True


def test_the_holder_saying_go_ahead_is_an_approval_when_they_may_approve(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot()  # Carol is in the SRE group, so she may approve
    lock_held_by(tf, clock, "carol@build-agent-07")
    request_id = request_unlock(bot, people)
    holder_dm(people, CAROL)
    answer(bot, people, request_id, CAROL, "tflock_holder_dead", "carol")
    eventually(lambda: bot.workflow.find(request_id).status is Status.EXECUTED)  # type: ignore[union-attr]
    assert [e.action for e in events(bot, request_id)][-4:] == ["holder_answered", "approved", "executing", "executed"]
    assert the_event(bot, request_id, "approved").actor == CAROL
    assert the_event(bot, request_id, "holder_answered").detail["counts_as_approval"] is True
    eventually(lambda: any("counted as their approval" in r["text"] for r in thread(people)))


def test_the_holder_who_may_not_approve_is_recorded_not_counted(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot(TFLOCK_APPROVERS=BOB)
    lock_held_by(tf, clock, "dave@laptop")
    request_id = request_unlock(bot, people)
    answer(bot, people, request_id, DAVE, "tflock_holder_dead", "dave")
    people.wait_for("/api/chat.update", 2)
    assert bot.workflow.find(request_id).approvers == ()  # type: ignore[union-attr]
    detail = the_event(bot, request_id, "holder_answered").detail
    assert detail["answer"] == "dead" and detail["counts_as_approval"] is False and "not an approver" in detail["note"]


def test_the_requester_answering_as_holder_counts_as_nothing_and_is_told_so(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot(TFLOCK_APPROVERS=f"{ALICE},{BOB}")  # even an approver cannot approve her own request
    lock_held_by(tf, clock, "alice@laptop")
    request_id = request_unlock(bot, people, ALICE)
    holder_dm(people, ALICE)
    answer(bot, people, request_id, ALICE, "tflock_holder_dead", "alice")
    updates = people.wait_for("/api/chat.update", 2)
    dm_update = next(valid(u.body) for u in updates if u.body["channel"] == "D" + ALICE[1:])
    assert "not an approval" in shown(dm_update) and "asked for this force-unlock yourself" in shown(dm_update)
    eventually(lambda: any("not an approval" in r["text"] for r in thread(people)))
    request = bot.workflow.find(request_id)
    assert request is not None and request.status is Status.PENDING and request.approvers == ()
    assert the_event(bot, request_id, "holder_answered").detail["counts_as_approval"] is False
    assert "approved" not in actions(bot, request_id)


def test_only_the_holder_may_answer(make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock) -> None:
    bot = make_bot()
    lock_held_by(tf, clock, "carol@build-agent-07")
    request_id = request_unlock(bot, people)
    answer(bot, people, request_id, BOB, "tflock_holder_dead", "bob")
    assert "only they can answer" in shown(people.wait_for("/response/bob")[-1].body)
    assert events(bot, request_id)[-1].detail["why"] == "not_asked"
    assert bot.workflow.find(request_id).approvers == ()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("who", "note"),
    [("bob@host", "matches 2 Slack users"), ("runner@ci-42", "matches no Slack user"), ("@ci-42", "names no user")],
    ids=["ambiguous", "unmatched", "no-user"],
)
def test_no_dm_unless_the_holder_is_beyond_doubt(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock, who: str, note: str
) -> None:
    people.users["U0BOB0002"] = {"id": "U0BOB0002", "name": "robert", "profile": {"display_name": "Bob"}}
    bot = make_bot(TFLOCK_NOTIFY="none")
    lock_held_by(tf, clock, who)
    request_id = request_unlock(bot, people)
    assert people.calls_to("/api/conversations.open") == []
    assert any(note in r["text"] for r in thread(people))
    holder = the_event(bot, request_id, "notified").detail["holder"]
    assert holder["asked"] is None
    request = bot.workflow.find(request_id)
    assert request is not None and request.holder is None


def test_a_holder_slack_would_not_message_is_not_shown_as_asked(
    make_bot: MakeBot, people: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    bot = make_bot(TFLOCK_NOTIFY="none")
    people.fail["conversations.open"] = "cannot_dm_bot"
    lock_held_by(tf, clock, "carol@build-agent-07")
    request_id = request_unlock(bot, people)
    assert any("would not take a direct message" in r["text"] for r in thread(people))
    assert the_event(bot, request_id, "notified").detail["holder"] == {"asked": None, "why": "not_sent"}
    request = bot.workflow.find(request_id)
    assert request is not None and request.holder is None
    answer(bot, people, request_id, CAROL, "tflock_holder_dead", "carol")
    assert "only they can answer" in shown(people.wait_for("/response/carol")[-1].body)


# -- settings ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("variable", "value"),
    [("TFLOCK_NOTIFY", "loud"), ("TFLOCK_ESCALATE_AFTER", "soon"), ("TFLOCK_ESCALATE_CHANNEL", "#oncall")],
)
def test_bad_notification_settings_stop_the_start_naming_the_variable(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"^{variable}: "):
        load_settings()


def test_notification_settings_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings()
    assert (defaults.notify, defaults.escalate_after.total_seconds(), defaults.escalate_channel) == (
        "mention",
        600,
        None,
    )
    monkeypatch.setenv("TFLOCK_NOTIFY", " DM ")
    monkeypatch.setenv("TFLOCK_ESCALATE_AFTER", "15m")
    monkeypatch.setenv("TFLOCK_ESCALATE_CHANNEL", ONCALL)
    settings = load_settings()
    assert (settings.notify, settings.escalate_after.total_seconds(), settings.escalate_channel) == ("dm", 900, ONCALL)


# -- the messages themselves, at their largest ---------------------------------------------------------------------
def test_every_notification_fits_slacks_limits_with_the_longest_values() -> None:
    now = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
    who = "x" * 1000 + "@host<&>"
    info = json.dumps({"ID": "i" * 128, "Who": who, "Operation": "OperationTypeApply", "Created": go_time(now)})
    request = RequestView(
        id="6f1c2d3e-4a5b-4c6d-8e7f-8091a2b3c4d5",
        address=f"{BUCKET}/" + "k/" * 540 + "terraform.tfstate",
        lock_id="i" * 128,
        raw_info=info,
        held_in=(Store.TABLE, Store.LOCKFILE),
        lockfile_etag='"etag"',
        requester=ALICE,
        reason="<!channel> & `x` " * 125,  # 2,000 characters of mrkdwn trouble
        channel=CHANNEL,
        message_ts="1700000000.000001",
        status=Status.PENDING,
        approvals_required=10,
        approvers=tuple(f"U0{n:07d}" for n in range(9)),
        created_at=now,
        expires_at=now,
        decided_at=None,
        decided_by=None,
        executing_at=None,
        finished_at=None,
        outcome=None,
        holder=CAROL,
        holder_answer=HolderAnswer.RUNNING,
        holder_answered_at=now,
    )
    link = "https://acme.slack.test/archives/C0INCIDENT/p1700000000000001"
    reach = approvers_to_reach([f"S0{n:07d}" for n in range(20)] + [BOB], ALICE, NotifyMode.MENTION)
    outcome = HolderOutcome(request, HolderAnswer.DEAD, False, "n" * 3000)
    messages = [
        approval_message(request, now),
        approvers_call(request, reach, link),
        approver_dm(request, link),
        holder_question(request, link, now),
        holder_answered(outcome),
        escalation_message(request, now, reach, None),
    ]
    for message in messages:
        payload = valid(message.as_kwargs())
        assert "<!channel>" not in json.dumps(payload)  # a reason never pings the channel
        for block in payload["blocks"]:
            assert len(block.get("text", {}).get("text", "")) <= 3000
    for text in (
        holder_reply(outcome, CAROL),
        holder_note(HolderChoice(HolderMatch.AMBIGUOUS, None, 3), who),
        holder_note(HolderChoice(HolderMatch.ASK, CAROL, 1), who),
    ):
        assert len(text) <= 4000 and "<&>" not in text
