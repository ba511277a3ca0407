"""Slack faults in HTTP mode: Slack unreachable when `serve` starts, a bad token, a 429 storm."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest

from tests.conftest import BUCKET, TABLE, Aws
from tests.e2e.conftest import MotoServer, free_port, run_cli, start_bot
from tests.fakeslack import FakeSlack
from tests.faults.conftest import (
    BOB,
    KEY,
    STATE,
    Bots,
    answer_text,
    approval_request_id,
    assert_acked_in_time,
    bot_env,
    click,
    dynamodb_item,
    executed_count,
    probe,
    slack_api_url,
    slash,
    wait_until,
)
from tests.faults.proxy import FaultProxy
from tests.terraform import TerraformBackend, ago

pytestmark = [pytest.mark.slow, pytest.mark.faults]


def test_slack_unreachable_at_start_keeps_serving_unready_then_ready(
    database_url: str,  # first: set up before, torn down after, the bots that use it
    moto_server: MotoServer,
    remote_aws: Aws,
    slack: FakeSlack,
    slack_proxy: FaultProxy,
    bots: Bots,
    tmp_path: Path,
) -> None:
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    lock = tf.lock(KEY, created=ago(minutes=30))
    slack_proxy.reset()  # every connection to Slack's Web API is refused
    env = bot_env(moto_server.url, slack, database_url, SLACK_API_URL=slack_api_url(slack_proxy))
    bot = bots(env)  # waits for /healthz: the process did not exit

    wait_until(lambda: slack_proxy.refused >= 2, 20, "auth.test to be retried")
    assert bot.process.poll() is None, bot.log()
    assert probe(bot, "/healthz").status == 200
    unready = probe(bot, "/readyz")
    assert unready.status == 503 and "slack" in unready.body.lower(), unready
    assert unready.seconds < 2, unready

    slack_proxy.normal()
    wait_until(lambda: probe(bot, "/readyz").status == 200, 60, "/readyz to say ready once Slack answers")
    assert slack.calls_to("/api/auth.test"), "ready without Slack having accepted the token"
    asked = slash(bot, slack, f"status {STATE}", "status")
    assert lock.id in answer_text(slack, "status")
    assert_acked_in_time(asked)


def test_bad_token_still_exits_2_naming_the_variable(
    moto_server: MotoServer, slack: FakeSlack, tmp_path: Path, database_url: str
) -> None:
    slack.fail["auth.test"] = "invalid_auth"
    env = bot_env(moto_server.url, slack, database_url, TFLOCK_PORT=str(free_port()))
    result = run_cli("serve", env=env | {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    assert result.returncode == 2, result
    assert "SLACK_BOT_TOKEN" in result.stderr + result.stdout, result
    assert "Traceback" not in result.stderr, result.stderr


def test_token_refused_once_slack_comes_back_exits_2(
    moto_server: MotoServer, slack: FakeSlack, slack_proxy: FaultProxy, tmp_path: Path, database_url: str
) -> None:
    """Unreachable at start, then Slack answers and refuses the token: the same exit 2 as at start."""
    slack_proxy.reset()
    slack.fail["auth.test"] = "invalid_auth"
    env = bot_env(moto_server.url, slack, database_url, SLACK_API_URL=slack_api_url(slack_proxy))
    bot = start_bot(env, tmp_path / "refused.log")
    try:
        wait_until(lambda: slack_proxy.refused >= 1, 20, "auth.test to be tried")
        slack_proxy.normal()
        code = wait_until(lambda: bot.process.poll() is not None and [bot.process.returncode], 30, "serve to exit")
        assert code == [2], bot.log()
        assert "SLACK_BOT_TOKEN" in bot.log(), bot.log()
    finally:
        bot.stop()


STORM = 3  # 429s in a row, each with Retry-After: 1: a burst the bot waits out
ENDLESS = 30  # a storm it must give up on, in words, rather than wait out for minutes


def test_429_storm_on_post_message_is_waited_out_and_posts_once(
    moto_server: MotoServer, remote_aws: Aws, slack: FakeSlack, bots: Bots, tmp_path: Path, database_url: str
) -> None:
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    tf.lock(KEY, created=ago(hours=6))
    database = database_url
    bot = bots(bot_env(moto_server.url, slack, database))

    # A storm longer than anyone should wait: the request is withdrawn and the person told why.
    slack.rate_limit("chat.postMessage", ENDLESS, retry_after=1)
    gave_up = slash(bot, slack, f"unlock {STATE} runner-3 was killed", "endless")
    told = answer_text(slack, "endless", timeout=60)
    assert re.search(r"rate.?limit", told, re.IGNORECASE), told
    tries = slack.calls_to("/api/chat.postMessage")
    assert 1 < len(tries) < ENDLESS and all(c.status == 429 for c in tries), [c.status for c in tries]
    slack.reset()

    # A burst: waited out, Retry-After honoured, the approval message posted exactly once.
    slack.rate_limit("chat.postMessage", STORM, retry_after=1)
    asked = slash(bot, slack, f"unlock {STATE} runner-3 was killed", "ask")
    request_id = approval_request_id(slack, timeout=30)
    # The approval message's tries; its thread replies (approvers called, the holder looked for) come after.
    attempts = [c for c in slack.calls_to("/api/chat.postMessage") if not c.body.get("thread_ts")]
    assert [c.status for c in attempts] == [429] * STORM + [200], [c.status for c in attempts]
    gaps = [later.at - earlier.at for earlier, later in itertools.pairwise(attempts)]
    assert all(gap >= 0.9 for gap in gaps), f"Retry-After: 1 not honoured: gaps {gaps}"
    assert "Asked for approval" in answer_text(slack, "ask")

    approve = click(bot, slack, "tflock_approve", request_id, BOB, "bob")
    wait_until(
        lambda: [c for c in slack.calls_to("/api/chat.update") if "Released" in json.dumps(c.body)],
        20,
        "the approval message to say Released",
    )
    assert dynamodb_item(remote_aws, STATE) is None
    assert executed_count(database, request_id)["executed"] == 1
    posted = [c for c in slack.calls_to("/api/chat.postMessage") if c.status == 200 and "tflock_approve" in str(c.body)]
    assert len(posted) == 1, "the approval message was posted more than once"
    assert_acked_in_time(gave_up, asked, approve)
