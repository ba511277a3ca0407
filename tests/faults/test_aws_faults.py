"""AWS faults: a backend that hangs while others are approved, an endpoint that is down, a flood of look-ups
against a slow backend. Real `tflock-bot serve` processes reach moto's server through the fault proxy."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import BUCKET, REGION, TABLE, Aws
from tests.e2e.conftest import BotProcess, MotoServer, run_cli
from tests.fakeslack import FakeSlack
from tests.faults.conftest import (
    ALICE,
    BOB,
    BUSY,
    COULD_NOT,
    FAST_FAILURE,
    KEY,
    NOT_LOCKED,
    STATE,
    Bots,
    Posted,
    answer_text,
    approval_request_id,
    assert_acked_in_time,
    bot_env,
    click,
    dynamodb_item,
    endpoint,
    executed_count,
    is_ephemeral,
    metric,
    metric_sum,
    said,
    slash,
    wait_until,
)
from tests.faults.proxy import FaultProxy
from tests.terraform import TerraformBackend, ago, create_bucket

pytestmark = [pytest.mark.slow, pytest.mark.faults]
FAR_BUCKET = "far-tfstate"
FAR_STATE = f"{FAR_BUCKET}/{KEY}"


# -- hung backend while others approve -----------------------------------------------------------
@pytest.fixture
def hung_proxy(moto_server: MotoServer, bots: Bots) -> Iterator[FaultProxy]:
    """A second way to moto's server, for the backend that will hang."""
    port = int(moto_server.url.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port) as proxy:
        yield proxy


def test_hung_backend_does_not_hold_up_approvals_or_modals(
    database_url: str,  # first: set up before, torn down after, the bots that use it
    moto_server: MotoServer,
    remote_aws: Aws,
    hung_proxy: FaultProxy,
    slack: FakeSlack,
    bots: Callable[..., BotProcess],
    tmp_path: Path,
) -> None:
    """Eight `/tflock status` for a backend whose endpoint accepts and never answers must not delay an
    Approve on another backend, nor the reason modal's views.open (trigger_id lives 3 s)."""
    create_bucket(remote_aws.s3, FAR_BUCKET)
    near = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    far = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, FAR_BUCKET, TABLE, use_lockfile=True)
    near_lock = near.lock(KEY, created=ago(hours=6), who="ci@runner-3")
    far_lock = far.lock(KEY, created=ago(hours=1), who="ci@far-runner")
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        yaml.safe_dump(
            {
                "backends": [
                    {"name": "far", "buckets": [FAR_BUCKET], "dynamodb_table": TABLE, "region": REGION,
                     "endpoint_url": endpoint(hung_proxy)},
                    {"name": "near", "buckets": [BUCKET], "dynamodb_table": TABLE, "region": REGION,
                     "endpoint_url": moto_server.url},
                ]
            }
        )
    )  # fmt: skip
    database = database_url
    env = bot_env(moto_server.url, slack, database, TFLOCK_BACKENDS_FILE=str(backends))
    for name in ("AWS_ENDPOINT_URL", "TFLOCK_DYNAMODB_TABLE", "TFLOCK_S3_BUCKETS"):
        env.pop(name)
    # Reads of the hung backend take seconds to give up: long enough that anything queued behind them shows.
    env |= {"TFLOCK_AWS_READ_TIMEOUT": "3s", "TFLOCK_AWS_MAX_ATTEMPTS": "1"}
    bot = bots(env)

    asked = slash(bot, slack, f"unlock {STATE} runner-3 was killed by the autoscaler", "ask")
    request_id = approval_request_id(slack)

    hung_proxy.hang()
    statuses = [slash(bot, slack, f"status {FAR_STATE}", f"far{i}") for i in range(8)]

    clicked_at = time.monotonic()
    approve = click(bot, slack, "tflock_approve", request_id, BOB, "bob")
    released = wait_until(
        lambda: [c for c in slack.calls_to("/api/chat.update") if "Released" in json.dumps(c.body)],
        15,
        "the approval message to say Released",
    )
    approve_seconds = released[0].at - clicked_at

    modal_click_at = time.monotonic()
    button = json.dumps({"state": FAR_STATE, "lock": far_lock.id})
    modal = click(bot, slack, "tflock_request_unlock", button, ALICE, "modal")
    opened = slack.wait_for("/api/views.open", timeout=10)[0]
    modal_seconds = opened.at - modal_click_at

    assert_acked_in_time(asked, *statuses, approve, modal)
    assert approve_seconds < 5, f"Approve took {approve_seconds:.1f}s behind the hung backend's look-ups"
    assert modal_seconds < 3, f"views.open ran {modal_seconds:.1f}s after the click; trigger_id lives 3 s"

    # Exactly one release, of the lock that was shown.
    assert dynamodb_item(remote_aws, STATE) is None
    assert remote_aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{KEY}.tflock")["KeyCount"] == 0
    assert near_lock.id in json.dumps(released[-1].body)
    assert executed_count(database, request_id)["executed"] == 1

    # Every status for the hung backend gets one honest answer: unknown (or busy), never "not locked".
    for i, posted in enumerate(statuses):
        text = said(posted, slack, f"far{i}", timeout=30)
        assert not NOT_LOCKED.search(text), text
        assert COULD_NOT.search(text) or BUSY in text, text

    # The fault clears: the far backend answers with its lock again.
    hung_proxy.normal()
    after = slash(bot, slack, f"status {FAR_STATE}", "far-after")
    assert far_lock.id in wait_until(lambda: _answer_with(slack, "far-after", far_lock.id), 20, "the far lock")
    assert_acked_in_time(after)
    assert executed_count(database, request_id)["executed"] == 1  # still exactly one release


def _answer_with(slack: FakeSlack, name: str, needle: str) -> str | None:
    calls = slack.calls_to(f"/response/{name}")
    text = json.dumps([c.body for c in calls], ensure_ascii=False)
    return text if needle in text else None


# -- AWS endpoint down ---------------------------------------------------------------------------
def cli_env(aws_proxy: FaultProxy) -> dict[str, str]:
    return {"AWS_ENDPOINT_URL": endpoint(aws_proxy), "TFLOCK_DYNAMODB_TABLE": TABLE, "TFLOCK_S3_BUCKETS": BUCKET}


def test_aws_endpoint_down_is_unknown_never_unlocked(
    database_url: str,  # first: set up before, torn down after, the bots that use it
    remote_aws: Aws,
    aws_proxy: FaultProxy,
    slack: FakeSlack,
    bots: Callable[..., BotProcess],
    tmp_path: Path,
) -> None:
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    lock = tf.lock(KEY, created=ago(hours=3), who="ci@runner-9")
    env = cli_env(aws_proxy) | FAST_FAILURE
    bot = bots(bot_env(endpoint(aws_proxy), slack, database_url))

    aws_proxy.reset()  # the endpoint refuses every connection

    # CLI: three answers, never two. (The four runs go in parallel: each waits out its AWS timeouts.)
    with ThreadPoolExecutor(4) as pool:
        status, text, listed, listed_json = pool.map(
            lambda args: run_cli(*args, env=env),
            [("status", STATE, "--json"), ("status", STATE), ("list",), ("list", "--json")],
        )
    assert status.returncode == 1, status
    document = status.json()
    assert document["answer"] == "unknown"
    assert document["locked"] is None
    assert document["checked"], document
    assert all(c["ok"] is False and c["error"] for c in document["checked"]), document["checked"]
    assert {c["store"] for c in document["checked"]} <= {"dynamodb", "s3"}

    assert text.returncode == 1, text
    assert "unknown" in text.stdout.lower() and "not checked" in text.stdout.lower(), text.stdout
    assert not NOT_LOCKED.search(text.stdout), text.stdout

    assert "No locks held." not in listed.stdout, listed.stdout
    assert re.search(r"could not check|partial", listed.stdout + listed.stderr, re.IGNORECASE), listed
    assert listed_json.json()["complete"] is False, listed_json.stdout

    # Slack: the same honesty, acked at once.
    status_cmd = slash(bot, slack, f"status {STATE}", "status")
    list_cmd = slash(bot, slack, "list", "list")
    unlock_cmd = slash(bot, slack, f"unlock {STATE} the runner is gone", "unlock")
    assert_acked_in_time(status_cmd, list_cmd, unlock_cmd)
    status_text = said(status_cmd, slack, "status")
    assert COULD_NOT.search(status_text) and not NOT_LOCKED.search(status_text), status_text
    assert re.search(r"dynamodb|lock file|s3", status_text, re.IGNORECASE), status_text  # which store
    list_text = said(list_cmd, slack, "list")
    assert "No locks held" not in list_text and re.search(r"could not check|partial", list_text, re.I), list_text
    unlock_text = said(unlock_cmd, slack, "unlock")
    assert COULD_NOT.search(unlock_text), unlock_text  # refused, with the reason
    assert not [c for c in slack.calls_to("/api/chat.postMessage") if "blocks" in c.body], "an approval was posted"
    assert dynamodb_item(remote_aws, STATE) is not None
    assert metric_sum(bot, "tflock_aws_errors_total") >= 1  # what operators see

    # The endpoint is back: the truth again, everywhere.
    aws_proxy.normal()
    with ThreadPoolExecutor(2) as pool:
        recovered, recovered_list = pool.map(
            lambda args: run_cli(*args, env=env), [("status", STATE, "--json"), ("list", "--json")]
        )
    assert recovered.returncode == 0, recovered
    assert recovered.json()["answer"] == "held" and recovered.json()["lock_id"] == lock.id
    assert all(c["ok"] for c in recovered.json()["checked"])
    assert recovered_list.returncode == 0 and recovered_list.json()["complete"] is True, recovered_list
    again = slash(bot, slack, f"status {STATE}", "status-after")
    assert lock.id in answer_text(slack, "status-after")
    assert_acked_in_time(again)


# -- flood beyond the queue ----------------------------------------------------------------------
FLOOD = 24


def test_flood_beyond_the_queue_gets_busy_replies(
    database_url: str,  # first: set up before, torn down after, the bots that use it
    remote_aws: Aws,
    aws_proxy: FaultProxy,
    slack: FakeSlack,
    bots: Callable[..., BotProcess],
    tmp_path: Path,
) -> None:
    """More look-ups than a slow backend's workers and queue hold: the excess are told at once that tflock
    is busy (ephemeral, counted), the rest are answered truthfully, and every ack stays under 3 s."""
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    lock = tf.lock(KEY, created=ago(minutes=20))
    env = bot_env(
        endpoint(aws_proxy),
        slack,
        database_url,
        TFLOCK_BACKEND_CONCURRENCY="2",
        TFLOCK_LOOKUP_QUEUE="4",
        TFLOCK_AWS_READ_TIMEOUT="5s",
    )
    bot = bots(env)
    aws_proxy.delay(0.5)  # every AWS round trip takes half a second more

    posted: list[Posted] = [slash(bot, slack, f"status {STATE}", f"flood{i}") for i in range(FLOOD)]
    assert_acked_in_time(*posted)
    answers = [said(p, slack, f"flood{i}", timeout=60) for i, p in enumerate(posted)]
    busy = [a for a in answers if BUSY in a]
    real = [a for a in answers if BUSY not in a]
    assert busy, "no look-up was turned away although the queue was full"
    assert all(is_ephemeral(a) for a in busy), busy[0]
    # The rest are answered truthfully: the lock, or "unknown" when the backend's cap kept them waiting.
    assert all(lock.id in a or COULD_NOT.search(a) for a in real), real
    assert not [a for a in real if NOT_LOCKED.search(a)], real
    assert any(lock.id in a for a in real), "no look-up got through to the slow backend"
    for i in range(FLOOD):  # exactly one answer per command
        assert len(slack.calls_to(f"/response/flood{i}")) <= 1
    assert metric_sum(bot, "tflock_busy_total") == len(busy)

    aws_proxy.normal()  # the backlog drains; a new look-up is answered, not turned away
    after = slash(bot, slack, f"status {STATE}", "after")
    assert lock.id in said(after, slack, "after")
    assert metric_sum(bot, "tflock_busy_total") == len(busy)


# -- the watchdog while AWS is down --------------------------------------------------------------
WATCH = "C0WATCH001"


def test_watchdog_never_calls_a_lock_released_while_aws_is_down(
    remote_aws: Aws, aws_proxy: FaultProxy, slack: FakeSlack, bots: Bots, tmp_path: Path, database_url: str
) -> None:
    """A stale lock's alert stays an alert while scans fail: a scan that could not read is not "released"."""
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    lock = tf.lock(KEY, created=ago(minutes=10), who="ci@runner-5")
    env = bot_env(
        endpoint(aws_proxy),
        slack,
        database_url,
        TFLOCK_WATCH_CHANNEL=WATCH,
        TFLOCK_WATCH_INTERVAL="1s",
        TFLOCK_STALE_AFTER="5m",
        TFLOCK_WATCH_REMIND_AFTER="1d",
    )
    bot = bots(env)
    [alert] = slack.wait_for("/api/chat.postMessage", timeout=20)
    assert alert.body["channel"] == WATCH and lock.id in json.dumps(alert.body)

    aws_proxy.reset()
    errors_before = metric_sum(bot, "tflock_watch_scan_errors_total")
    wait_until(
        lambda: metric_sum(bot, "tflock_watch_scan_errors_total") >= errors_before + 2, 20, "two failed watchdog scans"
    )
    assert slack.calls_to("/api/chat.update") == [], "an alert was updated from a scan that could not read AWS"
    assert metric(bot, "tflock_locks_held", backend="default") == 1  # the last clean scan's figure, kept

    aws_proxy.normal()
    tf.unlock(lock)
    [update] = slack.wait_for("/api/chat.update", timeout=20)
    assert "released" in json.dumps(update.body).lower(), update.body
    assert len(slack.calls_to("/api/chat.update")) == 1
    assert len([c for c in slack.calls_to("/api/chat.postMessage") if c.body.get("channel") == WATCH]) == 1
