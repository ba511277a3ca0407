"""The stale-lock watchdog end to end: two real `tflock-bot serve` replicas on one PostgreSQL database,
moto's server as AWS and the local fake Slack Web API — one alert, one update, a button that works."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bot.db import make_engine, make_sessions
from tests.conftest import BUCKET, TABLE, Aws
from tests.database import POSTGRES_URL, postgres_schema
from tests.e2e.conftest import BotProcess, MotoServer, start_bot
from tests.fakeslack import FakeSlack, block_actions_body, sign
from tests.pins import pin_of
from tests.terraform import TerraformBackend, ago

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.postgres]
SECRET = "e2e-watch-secret"
WATCH = "C0WATCH001"
KEY = "network/terraform.tfstate"
ALERT_TS = "1700000000.000001"  # the fake Slack numbers messages from 1; the alert is the first
SETTLE = 3.0  # seconds = three scan intervals: time enough for a second alert or update to show up


@pytest.fixture
def database() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("two replicas on one database need PostgreSQL: set TFLOCK_TEST_DATABASE_URL")
    with postgres_schema(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def replicas(
    moto_server: MotoServer, remote_aws: Aws, slack: FakeSlack, database: str, tmp_path: Path
) -> Iterator[list[BotProcess]]:
    env = {
        "AWS_ENDPOINT_URL": moto_server.url,
        "SLACK_BOT_TOKEN": "xoxb-e2e",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_DYNAMODB_TABLE": TABLE,
        "TFLOCK_S3_BUCKETS": BUCKET,
        "TFLOCK_DATABASE_URL": database,
        "TFLOCK_WATCH_CHANNEL": WATCH,
        "TFLOCK_WATCH_INTERVAL": "1s",
        "TFLOCK_STALE_AFTER": "5m",
        "TFLOCK_WATCH_REMIND_AFTER": "1d",
    }
    with ThreadPoolExecutor(2) as pool:  # started together, so their first scans race
        bots = list(pool.map(lambda n: start_bot(env, tmp_path / f"replica-{n}.log"), range(2)))
    yield bots
    for bot in bots:
        assert bot.stop() == 0, bot.log()


def alerts(slack: FakeSlack) -> list[dict[str, Any]]:
    posts = slack.calls_to("/api/chat.postMessage")
    return [c.body for c in posts if c.body.get("channel") == WATCH and not c.body.get("thread_ts")]


def metric(bot: BotProcess, name: str) -> float:
    _, text = bot.get("/metrics")
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_two_replicas_send_one_alert_and_one_update(
    replicas: list[BotProcess], slack: FakeSlack, remote_aws: Aws, database: str
) -> None:
    slack.users["U0ALICE01"] = {"id": "U0ALICE01", "name": "alice", "is_bot": False, "profile": {}}
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    lock = tf.lock(KEY, who="alice@build-agent-07", created=ago(minutes=10))

    slack.wait_for("/api/chat.postMessage", timeout=15)
    time.sleep(SETTLE)
    [alert] = alerts(slack)
    shown = json.dumps(alert, ensure_ascii=False)
    assert lock.id in shown and "alice@build-agent-07 (<@U0ALICE01>)" in shown
    [button] = [e for b in alert["blocks"] if b["type"] == "actions" for e in b["elements"]]
    engine = make_engine(database)
    try:
        pin = pin_of(make_sessions(engine), button["value"])  # what the button names, on the server
    finally:
        engine.dispose()
    assert (pin.address, pin.lock_id) == (f"{BUCKET}/{KEY}", lock.id)
    for bot in replicas:
        assert metric(bot, 'tflock_locks_held{backend="default"}') == 1
        assert metric(bot, 'tflock_oldest_lock_age_seconds{backend="default"}') >= 600
    assert sum(metric(bot, 'tflock_watch_alerts_total{kind="alert"}') for bot in replicas) == 1

    payload = {
        "type": "block_actions",
        "user": {"id": "U0BOB0001", "username": "bob", "team_id": "T0001"},
        "api_app_id": "A0TFLOCK",
        "team": {"id": "T0001", "domain": "acme"},
        "channel": {"id": WATCH, "name": "tflock-alerts"},
        "container": {"type": "message", "message_ts": ALERT_TS, "channel_id": WATCH},
        "trigger_id": "1.2.3",
        "response_url": slack.response_url("button"),
        "actions": [{"action_id": button["action_id"], "value": button["value"], "type": "button", "action_ts": "1"}],
    }
    body = block_actions_body(payload)
    assert replicas[1].post(body, sign(SECRET, body))[0] == 200
    [opened] = slack.wait_for("/api/views.open")
    assert json.loads(opened.body["view"]["private_metadata"])["pin"] == button["value"]

    tf.unlock(lock)
    [update] = slack.wait_for("/api/chat.update", timeout=15)
    time.sleep(SETTLE)
    assert len(slack.calls_to("/api/chat.update")) == 1
    assert update.body["channel"] == WATCH and "released after" in json.dumps(update.body).lower()
    assert update.body["ts"] == ALERT_TS  # the alert itself, updated in place
    assert len(alerts(slack)) == 1
    for bot in replicas:
        assert metric(bot, 'tflock_locks_held{backend="default"}') == 0
