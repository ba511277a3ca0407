"""`/tflock hold` and `/tflock release` through the Slack listeners, and holds in `status` and `list`."""

from __future__ import annotations

import json
from typing import Any

from slack_bolt import BoltRequest
from slack_sdk.models.blocks import Block

from bot.locks.lockinfo import parse_lock_info
from bot.slack.app import SlackBot
from bot.slack.views import USAGE
from tests.conftest import BUCKET, TABLE, Aws
from tests.fakeslack import FakeSlack
from tests.terraform import TerraformBackend

KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"
ALICE, BOB = "U0ALICE01", "U0BOB0001"
CHANNEL = "C0INCIDENT"
REASON = "incident 42: moving DNS, nobody applies"


def command(bot: SlackBot, slack: FakeSlack, text: str, user: str = ALICE, name: str = "cmd") -> dict[str, Any]:
    body = {
        "command": "/tflock",
        "text": text,
        "user_id": user,
        "user_name": {ALICE: "alice", BOB: "bob"}.get(user, "someone"),
        "channel_id": CHANNEL,
        "channel_name": "incident-42",
        "team_id": "T0001",
        "response_url": slack.response_url(name),
        "trigger_id": "1.2.3",
    }
    assert bot.app.dispatch(BoltRequest(body=body, mode="socket_mode")).status == 200
    [call] = slack.wait_for(f"/response/{name}")
    return call.body


def checked(message: dict[str, Any]) -> str:
    """Every block is valid Block Kit (slack_sdk's models read it back unchanged); the whole message as text."""
    for block in message.get("blocks", []):
        parsed = Block.parse(block)
        assert parsed is not None and parsed.to_dict() == block
    return json.dumps(message, ensure_ascii=False)


def table_info(aws: Aws) -> str | None:
    item = aws.dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": STATE}}, ConsistentRead=True).get("Item")
    return item["Info"]["S"] if item else None


def test_hold_and_release_in_the_channel(slackbot: SlackBot, slack: FakeSlack, aws: Aws) -> None:
    held = command(slackbot, slack, f"hold {STATE} {REASON}", name="hold")
    assert held["response_type"] == "in_channel"
    text = checked(held)
    assert "is on hold" in text and REASON in text and f"<@{ALICE}>" in text and "/tflock release" in text
    info = parse_lock_info(table_info(aws) or "")
    assert info.who == "alice (tflock hold)" and info.info == f"held with tflock by @alice in #incident-42: {REASON}"

    status = command(slackbot, slack, f"status {STATE}", name="status")
    text = checked(status)
    assert status["response_type"] == "in_channel"
    assert "HOLD on" in text and "@alice in #incident-42" in text and REASON in text
    assert "stale" not in text.lower() and "Request force-unlock" not in text

    listed = command(slackbot, slack, "list", name="list")
    text = checked(listed)
    assert "*HOLD*" in text and REASON in text and ":warning: *stale*" not in text

    refused = command(slackbot, slack, f"release {STATE}", user=BOB, name="bob")
    assert refused["response_type"] == "ephemeral"
    assert "only they can release it" in checked(refused) and table_info(aws) is not None

    released = command(slackbot, slack, f"release {STATE}", name="release")
    assert released["response_type"] == "in_channel"
    assert "Hold released" in checked(released) and REASON in checked(released)
    assert table_info(aws) is None


def test_a_locked_state_is_refused_with_its_holder(slackbot: SlackBot, slack: FakeSlack, tf: TerraformBackend) -> None:
    lock = tf.lock(KEY, who="runner@ci-7")
    answer = command(slackbot, slack, f"hold {STATE} {REASON}")
    assert answer["response_type"] == "ephemeral"
    text = checked(answer)
    assert "already locked by runner@ci-7" in text and lock.id in text and "Nothing was taken" in text


def test_bad_input_is_told_privately(slackbot: SlackBot, slack: FakeSlack, aws: Aws) -> None:
    for name, text, expected in (
        ("no-reason", f"hold {STATE}", "Which state, and why?"),
        ("blank-reason", f"hold {STATE}    ", "Which state, and why?"),
        ("nothing", "hold", "Which state, and why?"),
        ("bad-state", "hold not-a-state because", "not-a-state"),
        ("release-nothing", "release", "Which state?"),
        ("release-none", f"release {STATE}", "There is no tflock hold"),
    ):
        answer = command(slackbot, slack, text, name=name)
        assert answer["response_type"] == "ephemeral", name
        assert expected in checked(answer), name
    assert table_info(aws) is None


def test_usage_names_hold_and_release() -> None:
    assert "/tflock hold &lt;state&gt; &lt;reason…&gt;" in USAGE and "/tflock release &lt;state&gt;" in USAGE
