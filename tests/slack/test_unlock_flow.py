"""The two-person force-unlock through the Slack listeners (socket-mode requests skip signing; the
HTTP path is covered end to end in tests/e2e). AWS is moto, the database a migrated SQLite file."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from slack_bolt import BoltRequest
from sqlalchemy import select

from bot.audit.models import AuditEvent
from bot.runtime import build_runtime
from bot.settings import load_settings
from bot.slack.app import SlackBot, build_bot
from tests.conftest import BUCKET, TABLE, Aws
from tests.fakeslack import FakeSlack
from tests.pins import pin_of
from tests.terraform import TerraformBackend, ago

KEY = "network/terraform.tfstate"
ALICE, BOB, EVE, ROBOT = "U0ALICE01", "U0BOB0001", "U0EVE0001", "U0ROBOT01"
CHANNEL = "C0INCIDENT"


def command(bot: SlackBot, slack: FakeSlack, text: str, user: str = ALICE, name: str = "cmd") -> None:
    body = {
        "command": "/tflock",
        "text": text,
        "user_id": user,
        "channel_id": CHANNEL,
        "team_id": "T0001",
        "response_url": slack.response_url(name),
        "trigger_id": "1.2.3",
    }
    assert bot.app.dispatch(BoltRequest(body=body, mode="socket_mode")).status == 200


def click(bot: SlackBot, slack: FakeSlack, action_id: str, value: str, user: str, name: str = "click") -> None:
    body = {
        "type": "block_actions",
        "user": {"id": user, "team_id": "T0001"},
        "team": {"id": "T0001"},
        "channel": {"id": CHANNEL},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": CHANNEL},
        "trigger_id": "9.9.9",
        "response_url": slack.response_url(name),
        "actions": [{"action_id": action_id, "value": value, "type": "button", "action_ts": str(time.time())}],
    }
    assert bot.app.dispatch(BoltRequest(body=body, mode="socket_mode")).status == 200


def reason_submission(private_metadata: str, reason: str, user: str = ALICE) -> dict[str, Any]:
    """The view_submission Slack sends when the reason modal is submitted."""
    return {
        "type": "view_submission",
        "user": {"id": user, "team_id": "T0001"},
        "team": {"id": "T0001"},
        "view": {
            "id": "V1",
            "type": "modal",
            "callback_id": "tflock_unlock_reason",
            "private_metadata": private_metadata,
            "state": {"values": {"reason": {"reason_input": {"type": "plain_text_input", "value": reason}}}},
        },
    }


def posted_request_id(slack: FakeSlack) -> str:
    slack.wait_for("/response/cmd")  # the requester is told once the request and its message are stored
    message = slack.wait_for("/api/chat.postMessage")[0].body
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["text"]["text"] for b in buttons] == ["Approve", "Reject", "Cancel"]
    assert buttons[0]["confirm"]["title"]["text"] == "Release this lock?"
    return str(buttons[0]["value"])


def ephemeral(slack: FakeSlack, name: str) -> str:
    answer = slack.wait_for(f"/response/{name}")[-1].body
    assert answer["response_type"] == "ephemeral"
    return json.dumps(answer, ensure_ascii=False)


def events(bot: SlackBot) -> list[AuditEvent]:
    with bot.runtime.sessions() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


@pytest.fixture
def approvers(slackbot: SlackBot, monkeypatch: pytest.MonkeyPatch) -> SlackBot:
    monkeypatch.setenv("TFLOCK_APPROVERS", f"{BOB},S0SRE0001")
    return build_bot(build_runtime(load_settings()))


def test_the_whole_story(approvers: SlackBot, slack: FakeSlack, aws: Aws) -> None:
    bot = approvers
    tf = TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    tf.write_state(KEY, b'{"version":4}')
    lock = tf.lock(KEY, created=ago(hours=5), who="ci@runner-9")
    command(bot, slack, f"unlock {BUCKET}/{KEY} the CI job was cancelled at 14:02")
    request_id = posted_request_id(slack)
    posted = slack.calls_to("/api/chat.postMessage")[0].body
    assert posted["channel"] == CHANNEL and lock.id in json.dumps(posted) and "ci@runner-9" in json.dumps(posted)

    click(bot, slack, "tflock_approve", request_id, ALICE, "self")
    assert "cannot approve it: a second person must" in ephemeral(slack, "self")
    click(bot, slack, "tflock_approve", request_id, EVE, "eve")
    assert "not an approver" in ephemeral(slack, "eve")
    assert aws.dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": f"{BUCKET}/{KEY}"}}).get("Item")

    click(bot, slack, "tflock_approve", request_id, BOB, "bob")
    update = slack.wait_for("/api/chat.update")[-1].body
    assert "Released" in json.dumps(update, ensure_ascii=False)
    assert all(b["type"] != "actions" for b in update["blocks"])  # buttons gone
    assert f"<@{ALICE}>" in json.dumps(update) and f"<@{BOB}>" in json.dumps(update)
    reply = slack.wait_for("/api/chat.postMessage", 2)[-1].body
    assert reply["thread_ts"] == update["ts"]

    assert "Item" not in aws.dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": f"{BUCKET}/{KEY}"}})
    assert aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{KEY}.tflock").get("KeyCount") == 0
    digest = aws.dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": f"{BUCKET}/{KEY}-md5"}})
    assert "Item" in digest  # the digest item is never touched

    story = [(e.action, e.actor, (e.detail or {}).get("why")) for e in events(bot) if e.request_id == request_id]
    assert story == [
        ("requested", ALICE, None),
        ("notified", None, None),  # approvers called, holder looked for (tests/slack/test_notify.py)
        ("refused", ALICE, "self_approval"),
        ("refused", EVE, "not_approver"),
        ("approved", BOB, None),
        ("executing", BOB, None),
        ("executed", BOB, None),
    ]


def test_approver_from_a_user_group(approvers: SlackBot, slack: FakeSlack, tf: TerraformBackend) -> None:
    slack.usergroups["S0SRE0001"] = ["U0CAROL01"]
    tf.lock(KEY, created=ago(hours=3))
    command(approvers, slack, f"unlock {BUCKET}/{KEY} stuck apply")
    click(approvers, slack, "tflock_approve", posted_request_id(slack), "U0CAROL01")
    assert "Released" in json.dumps(slack.wait_for("/api/chat.update")[-1].body, ensure_ascii=False)
    assert slack.calls_to("/api/usergroups.users.list")[0].body["usergroup"] == "S0SRE0001"


def test_bots_never_count(slackbot: SlackBot, slack: FakeSlack, tf: TerraformBackend) -> None:
    slack.users[ROBOT] = {"id": ROBOT, "is_bot": True}
    tf.lock(KEY)
    command(slackbot, slack, f"unlock {BUCKET}/{KEY} cleanup")
    click(slackbot, slack, "tflock_approve", posted_request_id(slack), ROBOT, "robot")
    assert "Bots cannot" in ephemeral(slack, "robot")


def test_reject_and_cancel(slackbot: SlackBot, slack: FakeSlack, tf: TerraformBackend) -> None:
    tf.lock(KEY)
    command(slackbot, slack, f"unlock {BUCKET}/{KEY} first try")
    first = posted_request_id(slack)
    click(slackbot, slack, "tflock_cancel", first, BOB, "notyours")
    assert "Only the person who asked can cancel" in ephemeral(slack, "notyours")
    click(slackbot, slack, "tflock_reject", first, BOB)
    assert "Rejected" in json.dumps(slack.wait_for("/api/chat.update")[-1].body, ensure_ascii=False)
    click(slackbot, slack, "tflock_approve", first, EVE, "late")
    assert "already rejected" in ephemeral(slack, "late")
    slack.reset()
    command(slackbot, slack, f"unlock {BUCKET}/{KEY} second try")
    second = posted_request_id(slack)
    click(slackbot, slack, "tflock_cancel", second, ALICE)
    assert "Cancelled" in json.dumps(slack.wait_for("/api/chat.update")[-1].body, ensure_ascii=False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"unlock {BUCKET}/{KEY}", "A reason is required"),
        ("unlock", "Which state, and why?"),
        (f"unlock {BUCKET}/free/terraform.tfstate because", "not locked"),
        ("unlock /etc/passwd because", "starts with '/'"),
    ],
)
def test_bad_unlock_commands(
    slackbot: SlackBot, slack: FakeSlack, tf: TerraformBackend, text: str, message: str
) -> None:
    tf.lock(KEY)
    command(slackbot, slack, text)
    assert message in ephemeral(slack, "cmd")
    assert slack.calls_to("/api/chat.postMessage") == []


@pytest.mark.parametrize("value", ["not-a-request", "00000000-0000-4000-8000-000000000000", "x" * 5000, ""])
def test_tampered_request_ids(slackbot: SlackBot, slack: FakeSlack, aws: Aws, value: str) -> None:
    click(slackbot, slack, "tflock_approve", value, BOB, "tampered")
    assert ephemeral(slack, "tampered")
    assert slack.calls_to("/api/chat.update") == []


def test_request_button_opens_the_reason_modal_and_submission_posts(
    slackbot: SlackBot, slack: FakeSlack, tf: TerraformBackend
) -> None:
    tf.lock(KEY, created=ago(hours=4))
    click(slackbot, slack, "tflock_request_unlock", f"{BUCKET}/{KEY}", ALICE)
    view = slack.wait_for("/api/views.open")[0].body["view"]
    assert view["callback_id"] == "tflock_unlock_reason"
    submission = reason_submission(view["private_metadata"], "runner died")
    assert slackbot.app.dispatch(BoltRequest(body=submission, mode="socket_mode")).status == 200
    posted = slack.wait_for("/api/chat.postMessage")[0].body
    assert posted["channel"] == CHANNEL and "runner died" in json.dumps(posted)
    empty = json.loads(json.dumps(submission))
    empty["view"]["state"]["values"]["reason"]["reason_input"]["value"] = "   "
    response = slackbot.app.dispatch(BoltRequest(body=empty, mode="socket_mode"))
    assert json.loads(response.body)["response_action"] == "errors"


def test_a_request_from_a_button_is_pinned_to_the_lock_shown(
    slackbot: SlackBot, slack: FakeSlack, tf: TerraformBackend, aws: Aws
) -> None:
    shown = tf.lock(KEY, created=ago(hours=6))
    command(slackbot, slack, f"status {BUCKET}/{KEY}", name="status")
    status = slack.wait_for("/response/status")[-1].body
    button = next(e for b in status["blocks"] if b["type"] == "actions" for e in b["elements"])
    assert pin_of(slackbot.runtime.sessions, button["value"]).lock_id == shown.id
    click(slackbot, slack, "tflock_request_unlock", button["value"], ALICE)
    view = slack.wait_for("/api/views.open")[0].body["view"]
    tf.unlock(shown)
    live = tf.lock(KEY, who="bob@laptop")  # someone's fresh run, while Alice types her reason
    submission = reason_submission(view["private_metadata"], "runner died")
    assert slackbot.app.dispatch(BoltRequest(body=submission, mode="socket_mode")).status == 200
    note = slack.wait_for("/api/chat.postEphemeral")[-1].body
    assert "not the one you were shown" in note["text"] and live.id in note["text"]
    assert [c for c in slack.calls_to("/api/chat.postMessage") if "blocks" in c.body] == []


@pytest.mark.parametrize(
    "profile",
    [
        {"is_restricted": True},  # a multi-channel guest
        {"is_ultra_restricted": True},  # a single-channel guest
        {"is_stranger": True},  # someone from another organisation in a shared channel
        {"team_id": "T0OTHER01"},  # a Slack Connect user of another workspace
        {"deleted": True},
    ],
)
def test_guests_and_outsiders_are_never_the_second_human(
    slackbot: SlackBot, slack: FakeSlack, tf: TerraformBackend, profile: dict[str, Any]
) -> None:
    slack.users[EVE] = {"id": EVE, "is_bot": False, "team_id": "T0001", **profile}
    tf.lock(KEY)
    command(slackbot, slack, f"unlock {BUCKET}/{KEY} cleanup")
    click(slackbot, slack, "tflock_approve", posted_request_id(slack), EVE, "guest")
    assert "not an approver" in ephemeral(slack, "guest")
    assert slack.calls_to("/api/chat.update") == []


def test_a_second_request_is_pointed_at_the_first(slackbot: SlackBot, slack: FakeSlack, aws: Aws) -> None:
    TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE).lock(KEY, created=ago(hours=5))
    command(slackbot, slack, f"unlock {BUCKET}/{KEY} the CI job was cancelled")
    first = slackbot.workflow.find(posted_request_id(slack))
    assert first is not None and first.message_ts is not None
    command(slackbot, slack, f"unlock {BUCKET}/{KEY} me too", user=BOB, name="second")
    told = ephemeral(slack, "second")
    assert "already waiting for approval" in told
    assert f"https://acme.slack.test/archives/{CHANNEL}/p{first.message_ts.replace('.', '')}" in told
