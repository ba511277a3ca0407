"""Slack look-ups that fail are not facts: not cached, recorded as `lookup_failed`, and said as such."""

from __future__ import annotations

import pytest
from slack_sdk import WebClient

from bot.runtime import build_runtime
from bot.settings import load_settings
from bot.slack.app import SlackBot, build_bot
from bot.slack.people import People, SlackLookupFailed
from bot.unlock.policy import CannotCheck
from tests.conftest import BUCKET, TABLE, Aws
from tests.fakeslack import FakeSlack
from tests.slack.test_unlock_flow import ALICE, BOB, KEY, click, command, ephemeral, events, posted_request_id
from tests.terraform import TerraformBackend, ago

GROUP = "S0SRE0001"


class Ticks:
    """A monotonic clock that moves only when told: a cache entry can never expire by itself here."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def people(slack: FakeSlack, approvers: list[str]) -> People:
    client = WebClient(token="xoxb-unit", base_url=slack.api_url)
    return People(client, approvers, [], clock=Ticks())


def test_a_failing_group_look_up_is_asked_again_once_slack_recovers(slack: FakeSlack) -> None:
    slack.usergroups[GROUP] = [BOB]
    checks = people(slack, [GROUP])
    slack.fail["usergroups.users.list"] = "internal_error"
    with pytest.raises(SlackLookupFailed, match=r"usergroups.users.list for S0SRE0001 failed: internal_error"):
        checks.is_approver(BOB)
    del slack.fail["usergroups.users.list"]
    assert checks.is_approver(BOB)  # at once: the failure was not cached for 120 s
    assert not checks.is_approver(ALICE)


def test_a_failing_users_info_is_not_a_bot(slack: FakeSlack) -> None:
    checks = people(slack, [])
    slack.fail["users.info"] = "fatal_error"
    verdict = checks.bot_check(BOB)
    assert isinstance(verdict, CannotCheck) and "users.info for U0BOB0001 failed: fatal_error" in str(verdict)
    del slack.fail["users.info"]
    assert checks.bot_check(BOB) is False
    assert checks.is_approver(BOB)


def test_a_group_slack_says_does_not_exist_grants_nobody(slack: FakeSlack) -> None:
    slack.usergroups["S0OPS0001"] = [BOB]  # S0SRE0001 does not exist: no_such_subteam is an answer, not a failure
    checks = people(slack, [GROUP, "S0OPS0001"])
    assert checks.is_approver(BOB)
    assert not checks.is_approver(ALICE)


@pytest.fixture
def group_approvers(slackbot: SlackBot, monkeypatch: pytest.MonkeyPatch) -> SlackBot:
    monkeypatch.setenv("TFLOCK_APPROVERS", GROUP)
    return build_bot(build_runtime(load_settings()))


def test_an_approver_clicking_while_slack_fails_is_told_so_and_can_approve_after(
    group_approvers: SlackBot, slack: FakeSlack, aws: Aws
) -> None:
    bot = group_approvers
    slack.usergroups[GROUP] = [BOB]
    TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE).lock(KEY, created=ago(hours=5))
    command(bot, slack, f"unlock {BUCKET}/{KEY} the CI job was cancelled")
    request_id = posted_request_id(slack)

    slack.fail["users.info"] = "internal_error"
    click(bot, slack, "tflock_approve", request_id, BOB, "info-down")
    told = ephemeral(slack, "info-down")
    assert "Slack could not be asked who you are" in told and "Bots cannot" not in told
    del slack.fail["users.info"]

    slack.fail["usergroups.users.list"] = "internal_error"
    click(bot, slack, "tflock_approve", request_id, BOB, "group-down")
    assert "Slack could not be asked who you are" in ephemeral(slack, "group-down")
    del slack.fail["usergroups.users.list"]

    click(bot, slack, "tflock_approve", request_id, BOB, "recovered")
    slack.wait_for("/api/chat.update")
    story = [(e.action, e.actor, (e.detail or {}).get("why")) for e in events(bot) if e.request_id == request_id]
    assert story[:5] == [
        ("requested", ALICE, None),
        ("notified", None, None),  # approvers called, holder looked for (tests/slack/test_notify.py)
        ("refused", BOB, "lookup_failed"),
        ("refused", BOB, "lookup_failed"),
        ("approved", BOB, None),
    ]


def test_an_auditor_asking_while_slack_fails_is_told_so(group_approvers: SlackBot, slack: FakeSlack) -> None:
    slack.usergroups[GROUP] = [BOB]
    slack.fail["usergroups.users.list"] = "internal_error"
    command(group_approvers, slack, "audit", user=BOB, name="audit")
    assert "Slack could not be asked who you are" in ephemeral(slack, "audit")
    refusal = [e for e in events(group_approvers) if e.action == "refused"][-1]
    assert refusal.actor == BOB and refusal.detail["why"] == "lookup_failed"
    del slack.fail["usergroups.users.list"]
    command(group_approvers, slack, "audit", user=BOB, name="audit-again")
    assert "Slack could not be asked" not in ephemeral(slack, "audit-again")


def test_with_no_auditors_and_no_approvers_the_trail_is_refused_with_how_to_open_it(
    slackbot: SlackBot, slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    command(slackbot, slack, "audit", user=BOB, name="audit")
    told = ephemeral(slack, "audit")
    assert "not open to anyone yet" in told and "TFLOCK_AUDITORS" in told
    refusal = [e for e in events(slackbot) if e.action == "refused"][-1]
    assert refusal.actor == BOB and refusal.detail["why"] == "audit_not_configured"
    assert not slack.calls_to("/api/users.info")  # refused before anyone is looked up

    with caplog.at_level("WARNING", logger="bot.slack.app"):
        build_bot(slackbot.runtime)
    assert "neither TFLOCK_AUDITORS nor TFLOCK_APPROVERS is set" in caplog.text
