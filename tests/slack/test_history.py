"""`/tflock history <state>` through the Slack listener: what status and a force-unlock left in the history."""

from __future__ import annotations

import json
import time

from slack_sdk.models.blocks import Block

from bot.history.query import state_history
from bot.slack.app import SlackBot
from tests.conftest import BUCKET, TABLE, Aws
from tests.fakeslack import FakeSlack
from tests.slack.test_unlock_flow import ALICE, BOB, KEY, approvers, click, command, posted_request_id
from tests.terraform import TerraformBackend, ago

__all__ = ["approvers"]


def answer(slack: FakeSlack, name: str) -> dict[str, object]:
    body = slack.wait_for(f"/response/{name}")[-1].body
    for block in body.get("blocks", []):
        assert Block.parse(block) is not None  # valid Block Kit, as slack_sdk models it
    return dict(body)


def seen_by_status(bot: SlackBot, timeout: float = 10.0) -> None:
    """The history row is written just after the answer is sent."""
    deadline = time.monotonic() + timeout
    while not state_history(bot.runtime.sessions, f"{BUCKET}/{KEY}"):
        assert time.monotonic() < deadline, "status did not record the lock in the history"
        time.sleep(0.02)


def test_history_shows_a_lock_seen_and_how_it_was_force_unlocked(
    approvers: SlackBot, slack: FakeSlack, aws: Aws
) -> None:
    bot = approvers
    tf = TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    tf.write_state(KEY, b'{"version":4}')
    tf.lock(KEY, created=ago(hours=5), who="ci@runner-9")
    command(bot, slack, f"status {BUCKET}/{KEY}", name="status")
    slack.wait_for("/response/status")
    seen_by_status(bot)
    command(bot, slack, f"history {BUCKET}/{KEY}", name="before")
    before = json.dumps(answer(slack, "before"), ensure_ascii=False)
    assert "ci@runner-9" in before and "still held when last seen" in before and "at least 5h" in before

    command(bot, slack, f"unlock {BUCKET}/{KEY} the CI job was cancelled")
    request_id = posted_request_id(slack)
    click(bot, slack, "tflock_approve", request_id, BOB, "bob")
    slack.wait_for("/api/chat.update")

    command(bot, slack, f"history s3://{BUCKET}/{KEY}", user=BOB, name="after")
    after = answer(slack, "after")
    text = json.dumps(after, ensure_ascii=False)
    assert after["response_type"] == "in_channel"  # lock facts are the channel's already
    assert "force-unlocked through tflock" in text and request_id in text
    assert "held *5h" in text  # exact: Created to the release tflock made itself
    assert text.count("ci@runner-9") == 1  # one lock, one row, however often it was seen


def test_history_with_nothing_seen_and_bad_input(slackbot: SlackBot, slack: FakeSlack) -> None:
    command(slackbot, slack, f"history {BUCKET}/never/terraform.tfstate", user=ALICE, name="empty")
    assert "no lock seen yet" in json.dumps(answer(slack, "empty"))
    command(slackbot, slack, "history", name="none")
    assert "Which state?" in json.dumps(slack.wait_for("/response/none")[-1].body)
    command(slackbot, slack, "history nobody-serves-this/x.tfstate", name="bucket")
    assert "not served by any configured backend" in json.dumps(slack.wait_for("/response/bucket")[-1].body)
