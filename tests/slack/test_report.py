"""`/tflock report [since:…]` through the Slack listener: auditors get the figures and three PNG charts in a
direct message; anyone else is refused (and the refusal recorded); bad `since:` values are explained."""

from __future__ import annotations

import json

import pytest
from slack_sdk.models.blocks import Block

from bot.runtime import build_runtime
from bot.settings import load_settings
from bot.slack.app import SlackBot, build_bot
from tests.fakeslack import FakeSlack
from tests.slack.test_unlock_flow import ALICE, EVE, command, events

AUDREY = "U0AUDREY1"


@pytest.fixture
def auditors(slackbot: SlackBot, monkeypatch: pytest.MonkeyPatch) -> SlackBot:
    monkeypatch.setenv("TFLOCK_AUDITORS", AUDREY)
    monkeypatch.setenv("TFLOCK_APPROVERS", ALICE)
    return build_bot(build_runtime(load_settings()))


def test_an_auditor_gets_figures_and_charts(auditors: SlackBot, slack: FakeSlack) -> None:
    command(auditors, slack, "report since:30d", user=AUDREY, name="report")
    answer = slack.wait_for("/response/report")[-1].body
    assert answer["response_type"] == "ephemeral"
    for block in answer["blocks"]:
        assert Block.parse(block) is not None
    text = json.dumps(answer, ensure_ascii=False)
    assert "Locks seen" in text and "Request → release" in text and "3 charts sent to you" in text
    uploads = slack.wait_for("/upload/F0001", 3)
    assert all(call.body["_bytes"].startswith(b"\x89PNG\r\n\x1a\n") for call in uploads)
    completed = slack.wait_for("/api/files.completeUploadExternal", 3)
    assert {call.body["channel_id"] for call in completed} == {"D0AUDREY1"}  # a DM, never the channel
    titles = [call.body["files"][0]["title"] for call in completed]
    assert titles == [
        "Stale locks and force-unlocks per week",
        "How long locks were held",
        "Time from force-unlock request to approval",
    ]


def test_anyone_else_is_refused(auditors: SlackBot, slack: FakeSlack) -> None:
    command(auditors, slack, "report", user=EVE, name="eve")
    answer = slack.wait_for("/response/eve")[-1].body
    assert answer["response_type"] == "ephemeral" and "auditors only" in json.dumps(answer)
    assert not slack.calls_to("/upload/F0001")
    assert [(e.action, e.actor, e.detail["why"]) for e in events(auditors)] == [("refused", EVE, "not_auditor")]


@pytest.mark.parametrize(
    ("argument", "said"),
    [
        ("since:soon", "is neither a duration"),
        ("since:2999-01-01", "is not in the past"),
        ("since:0001-01-01", "more than two years back"),
        ("since:1000d", "more than two years back"),
        ("since:", "is not understood"),
        ("last:90d", "is not understood"),
        ("since:90d extra", "is not understood"),
    ],
)
def test_bad_since_is_answered_clearly(auditors: SlackBot, slack: FakeSlack, argument: str, said: str) -> None:
    command(auditors, slack, f"report {argument}", user=AUDREY, name="bad")
    answer = json.dumps(slack.wait_for("/response/bad")[-1].body, ensure_ascii=False)
    assert (said in answer and "report [since:90d]" in answer) or said in answer
    assert not slack.calls_to("/upload/F0001")
