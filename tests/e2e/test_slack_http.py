"""The Slack surface end to end: signed requests to a real `tflock-bot serve`, moto's server as AWS,
and a local HTTP server playing Slack's Web API and the response_url."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUCKET, TABLE, Aws
from tests.e2e.conftest import BotProcess, MotoServer, start_bot
from tests.fakeslack import FakeSlack, block_actions_body, sign, slash_command_body
from tests.terraform import TerraformBackend, ago, create_bucket, create_table

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SECRET = "e2e-signing-secret"
KEY = "network/terraform.tfstate"


@pytest.fixture(scope="module")
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def bot(moto_server: MotoServer, slack: FakeSlack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    workdir = tmp_path_factory.mktemp("bot")
    backends = workdir / "backends.yaml"
    backends.write_text(
        f"backends:\n  - name: main\n    buckets: [{BUCKET}]\n    dynamodb_table: {TABLE}\n"
        "    aliases: {net: acme-tfstate/network/terraform.tfstate}\n"
        "  - name: other\n    buckets: [acme-other]\n    dynamodb_table: other-locks\n"
    )
    env = {
        "AWS_ENDPOINT_URL": moto_server.url,
        "SLACK_BOT_TOKEN": "xoxb-e2e",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_BACKENDS_FILE": str(backends),
        "TFLOCK_DATABASE_URL": f"sqlite:///{workdir / 'tflock.db'}",
    }
    process = start_bot(env, workdir / "bot.log")
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture
def fresh(slack: FakeSlack, remote_aws: Aws) -> Aws:
    slack.reset()
    create_table(remote_aws.dynamodb, "other-locks")
    create_bucket(remote_aws.s3, "acme-other")
    return remote_aws


def command(bot: BotProcess, slack: FakeSlack, text: str, name: str = "cmd", **headers: str) -> tuple[int, str, float]:
    body = slash_command_body(text, slack.response_url(name))
    started = time.monotonic()
    status, answer = bot.post(body, {**sign(SECRET, body), **headers})
    return status, answer, time.monotonic() - started


def answer_of(slack: FakeSlack, name: str = "cmd") -> dict[str, Any]:
    return slack.wait_for(f"/response/{name}")[-1].body


def all_text(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def test_status_answers_in_channel_with_the_unlock_button(bot: BotProcess, slack: FakeSlack, fresh: Aws) -> None:
    tf = TerraformBackend(fresh.s3, fresh.dynamodb, BUCKET, TABLE, use_lockfile=True)
    lock = tf.lock(KEY, operation="OperationTypeApply", who="alice@build-agent-07", created=ago(hours=3, minutes=7))
    status, body, elapsed = command(bot, slack, f"status {BUCKET}/{KEY}")
    assert (status, body) == (200, "")
    assert elapsed < 1.0, "the ack must be far inside Slack's 3 seconds"
    message = answer_of(slack)
    assert message["response_type"] == "in_channel"
    text = all_text(message)
    for fact in (lock.id, "alice@build-agent-07", "apply (or destroy)", "3h 7m", "1.11.4", "probably stale"):
        assert fact in text
    assert f"lock file s3://{BUCKET}/{KEY}.tflock" in text
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons[0]["action_id"] == "tflock_request_unlock" and buttons[0]["text"]["text"] == "Request force-unlock"


def test_status_by_alias_and_lock_id_and_not_locked(bot: BotProcess, slack: FakeSlack, fresh: Aws) -> None:
    lock = TerraformBackend(fresh.s3, fresh.dynamodb, BUCKET, TABLE).lock(KEY, created=ago(minutes=2))
    command(bot, slack, "status net", "alias")
    assert lock.id in all_text(answer_of(slack, "alias"))
    assert "recent — an active run may hold it" in all_text(answer_of(slack, "alias"))
    command(bot, slack, f"status {lock.id}", "byid")
    assert f"{BUCKET}/{KEY}" in all_text(answer_of(slack, "byid"))
    command(bot, slack, f"status {BUCKET}/free/terraform.tfstate", "free")
    assert "is not locked" in all_text(answer_of(slack, "free"))


def test_list_covers_every_backend_and_never_a_digest(bot: BotProcess, slack: FakeSlack, fresh: Aws) -> None:
    main = TerraformBackend(fresh.s3, fresh.dynamodb, BUCKET, TABLE)
    other = TerraformBackend(fresh.s3, fresh.dynamodb, "acme-other", "other-locks")
    old = main.lock("a/terraform.tfstate", created=ago(hours=6))
    new = other.lock("b/terraform.tfstate", created=ago(minutes=3))
    main.write_state("a/terraform.tfstate", b"{}")
    other.write_state("b/terraform.tfstate", b"{}")
    command(bot, slack, "list")
    text = all_text(answer_of(slack))
    assert old.id in text and new.id in text
    assert text.index(old.id) < text.index(new.id)  # oldest first
    assert "-md5" not in text
    assert "2 locks held, 1 probably stale" in text
    command(bot, slack, "list stale", "stale")
    stale = all_text(answer_of(slack, "stale"))
    assert old.id in stale and new.id not in stale


def test_forged_and_replayed_requests_get_401(bot: BotProcess, slack: FakeSlack, fresh: Aws) -> None:
    body = slash_command_body("status x", slack.response_url())
    assert bot.post(body, sign("wrong-secret", body))[0] == 401
    assert bot.post(body, sign(SECRET, body, timestamp=int(time.time()) - 301))[0] == 401
    assert bot.post(body, {"Content-Type": "application/x-www-form-urlencoded"})[0] == 401
    tampered = sign(SECRET, body)
    assert bot.post(body.replace("status", "list"), tampered)[0] == 401
    assert slack.calls_to("/response/cmd") == []
    assert bot.get("/healthz")[0] == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "/tflock status &lt;state&gt;"),
        ("help", "/tflock list [stale]"),
        ("frobnicate now", "Unknown command “frobnicate”"),
        ("status", "Which state?"),
        ("status " + "x" * 10_240, "characters long"),
        ("status /acme-tfstate/a", "starts with '/'"),
        ("status acme-tfstate//a", "'//'"),
        ("status acme-tfstate/../../etc/passwd", "'..' segment"),
        ("status acme-tfstate/a\u202eb", "U+202E"),
        ("status acme-tfstate/\ufffd\ufffd", "U+FFFD"),
        ("status 'acme-tfstate/it's'", "quote"),
        ("status unknown-bucket-zz/a.tfstate", "not served by any configured backend"),
        ("list everything", "takes nothing or `stale`"),
    ],
)
def test_bad_input_gets_a_message_never_a_500(
    bot: BotProcess, slack: FakeSlack, fresh: Aws, text: str, expected: str
) -> None:
    status, body, _ = command(bot, slack, text)
    assert status == 200
    if body:  # answered in the ack itself
        shown = all_text(json.loads(body))
    else:
        message = answer_of(slack)
        assert message["response_type"] == "ephemeral"
        shown = all_text(message)
    assert expected in shown
    assert bot.get("/healthz")[0] == 200


def test_malformed_lock_info_is_shown_not_crashed(bot: BotProcess, slack: FakeSlack, fresh: Aws) -> None:
    fresh.dynamodb.put_item(TableName=TABLE, Item={"LockID": {"S": f"{BUCKET}/{KEY}"}, "Info": {"S": "<oops>"}})
    command(bot, slack, f"status {BUCKET}/{KEY}")
    text = all_text(answer_of(slack))
    assert "unreadable lock info: not JSON" in text


def test_tampered_button_value_gets_a_message(bot: BotProcess, slack: FakeSlack, fresh: Aws) -> None:
    payload = {
        "type": "block_actions",
        "user": {"id": "U0ALICE01", "username": "alice", "team_id": "T0001"},
        "api_app_id": "A0TFLOCK",
        "team": {"id": "T0001", "domain": "acme"},
        "channel": {"id": "C0INCIDENT", "name": "incident-42"},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0INCIDENT"},
        "trigger_id": "1.2.3",
        "response_url": slack.response_url("button"),
        "actions": [
            {
                "action_id": "tflock_request_unlock",
                "block_id": "b",
                "type": "button",
                "value": "../../" + "x" * 5000,
                "action_ts": "1700000000.1",
            }
        ],
    }
    body = block_actions_body(payload)
    status, _ = bot.post(body, sign(SECRET, body))
    assert status == 200
    message = slack.wait_for("/response/button")[-1].body
    assert message["response_type"] == "ephemeral"
    assert bot.get("/healthz")[0] == 200


def test_probes_and_metrics(bot: BotProcess, slack: FakeSlack, fresh: Aws) -> None:
    command(bot, slack, "status net")
    answer_of(slack)
    assert bot.get("/healthz") == (200, '{"status": "alive"}')
    assert bot.get("/readyz") == (200, '{"status": "ready"}')
    status, metrics = bot.get("/metrics")
    assert status == 200
    assert 'tflock_slack_requests_total{command="status",outcome="ok"}' in metrics
    assert 'tflock_http_request_seconds_bucket{le="0.1",path="/slack/events"}' in metrics
    assert "tflock_slack_answer_seconds_count" in metrics
    assert bot.get("/nope")[0] == 404


def test_socket_mode_serves_probes_and_metrics(moto_server: MotoServer, slack: FakeSlack, tmp_path: Path) -> None:
    slack.reset()
    env = {
        "AWS_ENDPOINT_URL": moto_server.url,
        "SLACK_BOT_TOKEN": "xoxb-e2e",
        "SLACK_APP_TOKEN": "xapp-e2e",
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_DYNAMODB_TABLE": TABLE,
        "TFLOCK_DATABASE_URL": f"sqlite:///{tmp_path / 'tflock.db'}",
    }
    bot = start_bot(env, tmp_path / "bot.log")
    try:
        assert bot.get("/healthz")[0] == 200
        status, body = bot.get("/readyz")
        assert status == 503 and "Socket Mode is not connected" in body  # no Slack to connect to here
        assert bot.get("/metrics")[0] == 200
        assert bot.post("x=1", {"Content-Type": "application/x-www-form-urlencoded"})[0] == 404  # no HTTP endpoint
        slack.wait_for("/api/apps.connections.open")
    finally:
        assert bot.stop() == 0, bot.log()


def test_bad_setting_stops_serve_with_one_line(tmp_path: Path) -> None:
    from tests.e2e.conftest import run_cli

    result = run_cli("serve", env={"SLACK_BOT_TOKEN": "xoxb-1"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "tflock-bot: SLACK_SIGNING_SECRET: required in HTTP mode (set SLACK_APP_TOKEN for Socket Mode instead)"
    )
