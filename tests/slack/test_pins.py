"""Request force-unlock buttons name a pinned lock (bot/unlock/pins.py): short, and exact even when the
lock's Info cannot be read."""

from __future__ import annotations

from typing import Any

from slack_bolt import BoltRequest

from bot.locks.address import StateAddress
from bot.locks.lockinfo import raw_digest
from bot.slack.app import SlackBot
from bot.unlock.models import Status
from tests.conftest import BUCKET, Aws
from tests.fakeslack import FakeSlack
from tests.pins import pin_of
from tests.slack.test_unlock_flow import ALICE, CHANNEL, KEY, click, command, reason_submission
from tests.terraform import TerraformBackend

ADDRESS = StateAddress(BUCKET, KEY)
JUNK = '{"ID": "abc", "Who": '  # truncated JSON: no readable lock ID


def status_button(bot: SlackBot, slack: FakeSlack, name: str = "status") -> str:
    command(bot, slack, f"status {BUCKET}/{KEY}", name=name)
    status = slack.wait_for(f"/response/{name}")[-1].body
    button: dict[str, Any] = next(e for b in status["blocks"] if b["type"] == "actions" for e in b["elements"])
    return str(button["value"])


def open_and_submit(bot: SlackBot, slack: FakeSlack, value: str, *, before_submit: Any = None) -> None:
    opened = len(slack.calls_to("/api/views.open"))
    click(bot, slack, "tflock_request_unlock", value, ALICE)
    view = slack.wait_for("/api/views.open", opened + 1)[-1].body["view"]
    if before_submit is not None:
        before_submit()
    submission = reason_submission(view["private_metadata"], "runner died")
    assert bot.app.dispatch(BoltRequest(body=submission, mode="socket_mode")).status == 200


def test_a_lock_with_unreadable_info_is_pinned_by_its_bytes(
    slackbot: SlackBot, slack: FakeSlack, tf: TerraformBackend
) -> None:
    tf.put_raw_table_item(ADDRESS, {"Info": {"S": JUNK}})
    value = status_button(slackbot, slack)
    pin = pin_of(slackbot.runtime.sessions, value)
    assert (pin.lock_id, pin.raw_sha256) == (None, raw_digest(JUNK))

    other = JUNK + '"mallory"'  # another unreadable lock takes the state while the reason is typed
    open_and_submit(
        slackbot, slack, value, before_submit=lambda: tf.put_raw_table_item(ADDRESS, {"Info": {"S": other}})
    )
    note = slack.wait_for("/api/chat.postEphemeral")[-1].body["text"]
    assert "not the one you were shown (a lock with unreadable info)" in note
    assert [c for c in slack.calls_to("/api/chat.postMessage") if "blocks" in c.body] == []

    value = status_button(slackbot, slack, "status-again")  # the lock held now, shown and pinned again
    open_and_submit(slackbot, slack, value)
    posted = slack.wait_for("/api/chat.postMessage")[-1].body
    assert posted["channel"] == CHANNEL
    approve = next(e for b in posted["blocks"] if b["type"] == "actions" for e in b["elements"])
    request = slackbot.workflow.find(approve["value"])
    assert request is not None and request.raw_info == other and request.status is Status.PENDING


def test_a_rewritten_lock_file_is_not_the_one_shown(
    slackbot: SlackBot, slack: FakeSlack, aws: Aws, tf_file: TerraformBackend
) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key=f"{KEY}.tflock", Body=b"\xff junk")
    value = status_button(slackbot, slack)
    assert pin_of(slackbot.runtime.sessions, value).lockfile_etag is not None
    rewrite = lambda: aws.s3.put_object(Bucket=BUCKET, Key=f"{KEY}.tflock", Body=b"\xfe junk")  # noqa: E731
    open_and_submit(slackbot, slack, value, before_submit=rewrite)
    assert "not the one you were shown" in slack.wait_for("/api/chat.postEphemeral")[-1].body["text"]


def test_an_altered_button_names_no_lock(slackbot: SlackBot, slack: FakeSlack, tf: TerraformBackend) -> None:
    tf.lock(KEY)
    value = status_button(slackbot, slack)
    forged = value[:-4] + ("aaaa" if not value.endswith("aaaa") else "bbbb")
    open_and_submit(slackbot, slack, forged)  # the form opens at once; the pin is looked up on submission
    assert "not one tflock made" in slack.wait_for("/api/chat.postEphemeral")[-1].body["text"]
    assert [c for c in slack.calls_to("/api/chat.postMessage") if "blocks" in c.body] == []
