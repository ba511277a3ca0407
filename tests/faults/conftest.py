"""Fault-injection scenarios: real `tflock-bot serve` processes, a FaultProxy between them and moto's server,
PostgreSQL or the local Slack Web API, and the local Socket Mode server.

The processes, moto's server and request signing come from tests/e2e/conftest.py and tests/fakeslack.py;
what is added here is the wiring through proxies, short AWS/database timeouts (so a fault shows in
seconds, not minutes), and small waits-for-a-condition used by every scenario.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bot.db import make_engine, make_sessions
from tests.conftest import BUCKET, TABLE, Aws
from tests.database import audit_trail, database_url  # noqa: F401 (database_url: a fixture, SQLite and PostgreSQL)
from tests.e2e.conftest import BotProcess, MotoServer, moto_server, remote_aws, start_bot  # noqa: F401 (fixtures)
from tests.fakeslack import FakeSlack, block_actions_body, sign, slash_command_body
from tests.faults.proxy import FaultProxy
from tests.faults.socket_slack import APP_TOKEN, SocketModeSlack

SECRET = "faults-signing-secret"
KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"
ACK_SECONDS = 3.0  # Slack's patience for an ack
T = TypeVar("T")
Bots = Callable[..., BotProcess]

# Interactive AWS reads give up quickly here, so an unreachable endpoint shows within a couple of seconds.
FAST_FAILURE = {
    "TFLOCK_AWS_CONNECT_TIMEOUT": "1s",
    "TFLOCK_AWS_READ_TIMEOUT": "1s",
    "TFLOCK_AWS_MAX_ATTEMPTS": "1",
    "TFLOCK_DB_CONNECT_TIMEOUT": "1s",
    "TFLOCK_DB_STATEMENT_TIMEOUT": "2s",
}


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy; fail saying `what` was awaited."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"waited {timeout}s for {what}; last saw {last!r}")


@dataclass
class Probe:
    status: int | None  # None: no answer within the timeout
    body: str
    seconds: float


def probe(bot: BotProcess, path: str, timeout: float = 5.0) -> Probe:
    """GET a probe with a client-side timeout, so a hanging endpoint is a result, not a hung test."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{bot.url}{path}", timeout=timeout) as response:
            return Probe(response.status, response.read().decode(), time.monotonic() - started)
    except urllib.error.HTTPError as error:
        return Probe(error.code, error.read().decode(), time.monotonic() - started)
    except (TimeoutError, urllib.error.URLError) as error:
        return Probe(None, f"no answer: {error}", time.monotonic() - started)


def metric(bot: BotProcess, name: str, **labels: str) -> float | None:
    """The value of one sample on /metrics (counters by their `_total` name), or None when absent."""
    got = probe(bot, "/metrics")
    assert got.status == 200, got
    for family in text_string_to_metric_families(got.body):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def metric_sum(bot: BotProcess, name: str) -> float:
    got = probe(bot, "/metrics")
    return sum(float(s.value) for f in text_string_to_metric_families(got.body) for s in f.samples if s.name == name)


@dataclass
class Posted:
    status: int
    body: str
    seconds: float


def post(bot: BotProcess, body: str) -> Posted:
    """A signed Slack request to /slack/events, timed from send to ack."""
    started = time.monotonic()
    status, text = bot.post(body, sign(SECRET, body))
    return Posted(status, text, time.monotonic() - started)


def slash(bot: BotProcess, slack: FakeSlack, text: str, name: str, user: str = ALICE) -> Posted:
    posted = post(bot, slash_command_body(text, slack.response_url(name), user=user))
    assert posted.status == 200, posted
    return posted


def click_payload(slack: FakeSlack, action_id: str, value: str, user: str, name: str) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "user": {"id": user, "team_id": "T0001"},
        "api_app_id": "A0TFLOCK",
        "team": {"id": "T0001"},
        "channel": {"id": "C0INCIDENT"},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0INCIDENT"},
        "trigger_id": f"{int(time.time())}.2.trigger",
        "response_url": slack.response_url(name),
        "actions": [{"action_id": action_id, "value": value, "type": "button", "action_ts": str(time.time())}],
    }


def click(bot: BotProcess, slack: FakeSlack, action_id: str, value: str, user: str, name: str) -> Posted:
    posted = post(bot, block_actions_body(click_payload(slack, action_id, value, user, name)))
    assert posted.status == 200, posted
    return posted


def answer_text(slack: FakeSlack, name: str, timeout: float = 15.0) -> str:
    """Everything the person was shown at response_url `name` (text and blocks), as one string."""
    call = slack.wait_for(f"/response/{name}", timeout=timeout)[-1]
    return json.dumps(call.body, ensure_ascii=False)


def approval_request_id(slack: FakeSlack, timeout: float = 15.0) -> str:
    """The request ID on the newest approval message's buttons."""

    def newest() -> str | None:
        posts = [c for c in slack.calls_to("/api/chat.postMessage") if c.status == 200 and "blocks" in c.body]
        for call in reversed(posts):
            for block in call.body["blocks"]:
                if block.get("type") == "actions":
                    return str(block["elements"][0]["value"])
        return None

    return wait_until(newest, timeout, "an approval message with buttons")


def dynamodb_item(aws: Aws, lock_id: str) -> dict[str, Any] | None:
    return aws.dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": lock_id}}, ConsistentRead=True).get("Item")


def executed_count(url: str, request_id: str) -> Counter[str]:
    """How many audit events of each action one request has (read directly, around any proxy)."""
    engine = make_engine(url)
    try:
        return Counter(str(e.action) for e in audit_trail(make_sessions(engine), request_id))
    finally:
        engine.dispose()


def endpoint(proxy: FaultProxy) -> str:
    return f"http://{proxy.address}"


def bot_env(aws_endpoint: str, slack: FakeSlack, db_url: str, **extra: str) -> dict[str, str]:
    """HTTP-mode bot settings for one backend (acme-tfstate) behind `aws_endpoint`."""
    return {
        "AWS_ENDPOINT_URL": aws_endpoint,
        "SLACK_BOT_TOKEN": "xoxb-faults",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_DYNAMODB_TABLE": TABLE,
        "TFLOCK_S3_BUCKETS": BUCKET,
        "TFLOCK_DATABASE_URL": db_url,
        "TFLOCK_APPROVERS": f"{BOB},{CAROL}",
        **FAST_FAILURE,
        **extra,
    }


@pytest.fixture
def aws_proxy(moto_server: MotoServer, bots: Bots) -> Iterator[FaultProxy]:  # noqa: F811 (the imported fixture)
    """A fault proxy in front of moto's server (AWS as the bot reaches it).

    Every proxy fixture depends on `bots` so that it is torn down first: bots then stop against a link
    that resets, never against one that still hangs."""
    url = urlsplit(moto_server.url)
    with FaultProxy(url.hostname or "127.0.0.1", int(url.port or 80)) as proxy:
        yield proxy


@pytest.fixture
def slack_proxy(slack: FakeSlack, bots: Bots) -> Iterator[FaultProxy]:
    """A fault proxy in front of the local Slack Web API; `slack_api_url(proxy)` is what the bot uses."""
    with FaultProxy(slack.host, slack.port) as proxy:
        yield proxy


def slack_api_url(proxy: FaultProxy) -> str:
    return f"http://{proxy.address}/api/"


@pytest.fixture
def socket_slack(slack: FakeSlack, bots: Bots) -> Iterator[SocketModeSlack]:
    server = SocketModeSlack(slack).start()
    yield server
    server.stop()


def socket_env(env: dict[str, str]) -> dict[str, str]:
    """The same bot in Socket Mode: an app-level token instead of a signing secret."""
    return {**{k: v for k, v in env.items() if k != "SLACK_SIGNING_SECRET"}, "SLACK_APP_TOKEN": APP_TOKEN}


@pytest.fixture
def bots(tmp_path: Path) -> Iterator[Bots]:
    """Start bots with `bots(env, name)`; every one is stopped at the end and must exit 0."""
    started: list[BotProcess] = []

    def start(env: dict[str, str], name: str = "bot", *args: str) -> BotProcess:
        bot = start_bot(env, tmp_path / f"{name}.log", *args)
        started.append(bot)
        return bot

    yield start
    failures = []
    for bot in started:
        code = bot.stop()
        if code != 0:
            failures.append(f"{bot.log_path.name} exited {code}:\n{bot.log()[-4000:]}")
    assert not failures, "\n".join(failures)


def said(posted: Posted, slack: FakeSlack, name: str, timeout: float = 15.0) -> str:
    """What the person saw for one command: the ack's own message if it carried one, else the
    response_url answer (busy replies may come either way)."""
    if posted.body.strip().startswith("{") and ('"text"' in posted.body or '"blocks"' in posted.body):
        return posted.body
    return answer_text(slack, name, timeout)


def is_ephemeral(said_text: str) -> bool:
    """Slack shows a slash-command answer to the asker alone unless it says response_type in_channel
    (an ack's own message without response_type is ephemeral too)."""
    document = json.loads(said_text)
    return document.get("response_type", "ephemeral") == "ephemeral"


NOT_LOCKED = re.compile(r"is not locked|no locks held", re.IGNORECASE)
COULD_NOT = re.compile(r"could not|unknown|not checked", re.IGNORECASE)
BUSY = "tflock is busy, try again in a moment"


def assert_acked_in_time(*posted: Posted) -> None:
    slow = [round(p.seconds, 2) for p in posted if p.seconds >= ACK_SECONDS]
    assert not slow, f"acks slower than {ACK_SECONDS}s: {slow}"
