"""Holds in the watchdog: never alerted as stale, one reminder after TFLOCK_HOLD_REMIND_AFTER, updated on release."""

from __future__ import annotations

import json
from typing import Any

import pytest
from slack_sdk.models.blocks import Block

from bot.settings import SettingsError
from bot.slack.alerts import build_watchdog
from bot.slack.app import SlackBot
from bot.unlock.holds import Holds
from tests.conftest import BUCKET, make_settings
from tests.fakeslack import FakeSlack
from tests.terraform import TerraformBackend, go_time
from tests.watch.conftest import WATCH, Clock, MakeBot

KEY = "network/terraform.tfstate"
ADDRESS = f"{BUCKET}/{KEY}"
ALICE = "U0ALICE01"
REASON = "incident 42: DNS move in progress"


def top_level(slack: FakeSlack) -> list[dict[str, Any]]:
    return [
        c.body
        for c in slack.calls_to("/api/chat.postMessage")
        if c.body.get("channel") == WATCH and not c.body.get("thread_ts")
    ]


def threaded(slack: FakeSlack) -> list[dict[str, Any]]:
    return [c.body for c in slack.calls_to("/api/chat.postMessage") if c.body.get("thread_ts")]


def shown(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def holds_of(bot: SlackBot, clock: Clock) -> Holds:
    return Holds(bot.runtime.sessions, bot.runtime.directory, clock)


def test_a_hold_is_never_alerted_as_stale_and_reminded_once(make_bot: MakeBot, slack: FakeSlack, clock: Clock) -> None:
    bot = make_bot(TFLOCK_HOLD_REMIND_AFTER="6h")
    watchdog = build_watchdog(bot, WATCH)
    slack.users[ALICE] = {"id": ALICE, "name": "alice", "is_bot": False, "deleted": False, "profile": {}}
    holds = holds_of(bot, clock)
    holds.hold(ADDRESS, REASON, ALICE, "C0INCIDENT", actor_name="alice", channel_name="incident-42")

    clock.advance(hours=5, minutes=59)  # long past TFLOCK_STALE_AFTER (2h): still no stale-lock alert
    report = watchdog.scan()
    assert (report.locks, report.stale, report.alerted, report.reminded) == (1, 0, 0, 0)
    assert top_level(slack) == []

    clock.advance(minutes=1)
    assert watchdog.scan().reminded == 1
    [reminder] = top_level(slack)
    text = shown(reminder)
    assert "Still on hold" in text and REASON in text and "@alice" in text and f"<@{ALICE}>" in text
    assert "#incident-42" in text and "/tflock release" in text
    assert "stale" not in text.lower()
    for block in reminder["blocks"]:
        assert Block.parse(block) is not None and Block.parse(block).to_dict() == block  # type: ignore[union-attr]

    for _ in range(3):
        clock.advance(hours=8)
        assert watchdog.scan().reminded == 0
    assert len(top_level(slack)) == 1 and threaded(slack) == []
    assert bot.runtime.metrics.registry.get_sample_value("tflock_watch_alerts_total", {"kind": "hold_reminder"}) == 1

    holds.release(ADDRESS, ALICE)
    assert watchdog.scan().released == 1
    [update] = [c.body for c in slack.calls_to("/api/chat.update")]
    assert "Hold released" in shown(update) and REASON in shown(update)


def test_a_terraform_lock_beside_holds_is_still_alerted(
    bot: SlackBot, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    watchdog = build_watchdog(bot, WATCH)
    holds_of(bot, clock).hold(f"{BUCKET}/other/terraform.tfstate", REASON, ALICE, None)
    tf.lock(KEY, who="bob@ci", created=go_time(clock.now))
    clock.advance(hours=3)  # TFLOCK_HOLD_REMIND_AFTER defaults to 4h
    report = watchdog.scan()
    assert (report.stale, report.alerted, report.reminded) == (1, 1, 0)
    [alert] = top_level(slack)
    assert "Stale state lock" in shown(alert) and KEY in shown(alert) and "other/terraform.tfstate" not in shown(alert)


def test_the_setting_is_a_validated_duration() -> None:
    assert make_settings(TFLOCK_HOLD_REMIND_AFTER="90m").hold_remind_after.total_seconds() == 5400
    with pytest.raises(SettingsError, match="TFLOCK_HOLD_REMIND_AFTER"):
        make_settings(TFLOCK_HOLD_REMIND_AFTER="soon")
