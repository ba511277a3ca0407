"""Acks never wait for AWS: a hung AWS endpoint must not stop other commands from being acknowledged."""

from __future__ import annotations

import threading
import time
from typing import Any

from slack_bolt import BoltRequest

from bot.runtime import LOOKUP_THREADS
from bot.slack.app import LISTENER_THREADS, SlackBot
from tests.fakeslack import FakeSlack


def dispatch(bot: SlackBot, slack: FakeSlack, text: str) -> tuple[int, float, str]:
    body = {
        "command": "/tflock",
        "text": text,
        "user_id": "U0ALICE01",
        "channel_id": "C0INCIDENT",
        "team_id": "T0001",
        "response_url": slack.response_url("hung"),
        "trigger_id": "1.2.3",
    }
    started = time.monotonic()
    response = bot.app.dispatch(BoltRequest(body=body, mode="socket_mode"))
    return response.status, time.monotonic() - started, response.body


def test_hung_aws_does_not_block_acks(slackbot: SlackBot, slack: FakeSlack, monkeypatch: Any) -> None:
    release = threading.Event()

    def hung(text: str) -> Any:
        release.wait(30)  # an AWS endpoint that accepts the connection and never answers
        raise TimeoutError("AWS did not answer")

    monkeypatch.setattr(slackbot.runtime.directory, "status", hung)
    capacity = LOOKUP_THREADS + slackbot.runtime.settings.lookup_queue
    try:
        many = capacity + LISTENER_THREADS
        results = [dispatch(slackbot, slack, "status acme-tfstate/a.tfstate") for _ in range(many)]
        assert all(status == 200 for status, _, _ in results)
        assert max(elapsed for _, elapsed, _ in results) < 1.0
        # Beyond the bounded queue the ack itself says so, at once, instead of an answer minutes late.
        busy = [body for _, _, body in results if "tflock is busy, try again in a moment" in body]
        assert len(busy) == many - capacity
        assert slackbot.runtime.metrics.registry.get_sample_value("tflock_busy_total", {"pool": "lookups"}) == len(busy)
        status, elapsed, body = dispatch(slackbot, slack, "help")
        assert status == 200 and "/tflock status" in body and elapsed < 1.0
    finally:
        release.set()
    answers = slack.wait_for("/response/hung", count=capacity, timeout=30)
    assert all(a.body["response_type"] == "ephemeral" for a in answers)  # each one told what went wrong
