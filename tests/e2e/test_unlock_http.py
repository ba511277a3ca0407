"""The whole force-unlock story over real HTTP: signed requests to real `tflock-bot serve` processes,
moto's server as AWS, the local fake Slack Web API, and SQLite or PostgreSQL underneath."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.audit.models import AuditEvent
from bot.db import make_engine, make_sessions
from tests.conftest import BUCKET, TABLE, Aws
from tests.database import POSTGRES_URL, postgres_schema
from tests.e2e.conftest import BotProcess, MotoServer, start_bot
from tests.fakeslack import FakeSlack, block_actions_body, sign, slash_command_body
from tests.terraform import TerraformBackend, ago

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SECRET = "unlock-e2e-secret"
KEY = "network/terraform.tfstate"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"


def bot_env(moto: MotoServer, slack: FakeSlack, database_url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": moto.url,
        "SLACK_BOT_TOKEN": "xoxb-e2e",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_DYNAMODB_TABLE": TABLE,
        "TFLOCK_S3_BUCKETS": BUCKET,
        "TFLOCK_DATABASE_URL": database_url,
        "TFLOCK_APPROVERS": f"{BOB},{CAROL}",
    }


def slash(bot: BotProcess, slack: FakeSlack, text: str, user: str, name: str) -> None:
    body = slash_command_body(text, slack.response_url(name), user=user)
    assert bot.post(body, sign(SECRET, body))[0] == 200


def click(bot: BotProcess, slack: FakeSlack, action_id: str, request_id: str, user: str, name: str) -> int:
    payload: dict[str, Any] = {
        "type": "block_actions",
        "user": {"id": user, "team_id": "T0001"},
        "api_app_id": "A0TFLOCK",
        "team": {"id": "T0001"},
        "channel": {"id": "C0INCIDENT"},
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": "C0INCIDENT"},
        "trigger_id": "1.2.3",
        "response_url": slack.response_url(name),
        "actions": [{"action_id": action_id, "value": request_id, "type": "button", "action_ts": str(time.time())}],
    }
    body = block_actions_body(payload)
    return bot.post(body, sign(SECRET, body))[0]


def request_id_from(slack: FakeSlack, name: str, after: int = 0) -> str:
    slack.wait_for(f"/response/{name}")
    posts = [c for c in slack.calls_to("/api/chat.postMessage") if "blocks" in c.body][after:]
    buttons = [e for b in posts[0].body["blocks"] if b["type"] == "actions" for e in b["elements"]]
    return str(buttons[0]["value"])


def item(aws: Aws, lock_id: str) -> dict[str, Any] | None:
    return aws.dynamodb.get_item(TableName=TABLE, Key={"LockID": {"S": lock_id}}, ConsistentRead=True).get("Item")


def test_request_refusals_and_release_over_http(
    moto_server: MotoServer, remote_aws: Aws, slack: FakeSlack, tmp_path: Path
) -> None:
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    tf.write_state(KEY, b'{"version":4}')
    lock = tf.lock(KEY, created=ago(hours=6), who="ci@runner-3")
    database = f"sqlite:///{tmp_path / 'tflock.db'}"
    bot = start_bot(bot_env(moto_server, slack, database), tmp_path / "bot.log")
    try:
        slash(bot, slack, f"unlock {BUCKET}/{KEY} runner-3 was killed by the autoscaler", ALICE, "ask")
        request_id = request_id_from(slack, "ask")
        assert click(bot, slack, "tflock_approve", request_id, ALICE, "self") == 200
        assert "a second person must" in json.dumps(slack.wait_for("/response/self")[-1].body)
        assert click(bot, slack, "tflock_approve", request_id, "U0MALLORY", "mallory") == 200
        assert "not an approver" in json.dumps(slack.wait_for("/response/mallory")[-1].body)
        assert item(remote_aws, f"{BUCKET}/{KEY}") is not None

        assert click(bot, slack, "tflock_approve", request_id, BOB, "bob") == 200
        final = slack.wait_for("/api/chat.update")[-1].body
        assert "Released" in json.dumps(final, ensure_ascii=False)
        assert item(remote_aws, f"{BUCKET}/{KEY}") is None
        assert remote_aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{KEY}.tflock")["KeyCount"] == 0
        assert item(remote_aws, f"{BUCKET}/{KEY}-md5") is not None
        assert lock.id in json.dumps(final)
    finally:
        assert bot.stop() == 0, bot.log()
    sessions = make_sessions(make_engine(database))
    with sessions() as session:
        story = [
            (e.action, e.actor)
            for e in session.scalars(
                select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id)
            )
        ]
    assert story == [
        ("requested", ALICE),
        ("notified", None),  # approvers called, the holder looked for (docs/design.md §8)
        ("refused", ALICE),
        ("refused", "U0MALLORY"),
        ("approved", BOB),
        ("executing", BOB),
        ("executed", BOB),
    ]


def test_replaced_lock_is_never_deleted(
    moto_server: MotoServer, remote_aws: Aws, slack: FakeSlack, tmp_path: Path
) -> None:
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE)
    old = tf.lock(KEY, created=ago(hours=6))
    bot = start_bot(bot_env(moto_server, slack, f"sqlite:///{tmp_path / 'tflock.db'}"), tmp_path / "bot.log")
    try:
        slash(bot, slack, f"unlock {BUCKET}/{KEY} dead run", ALICE, "ask")
        request_id = request_id_from(slack, "ask")
        tf.unlock(old)
        new = tf.lock(KEY, created=ago(seconds=1), who="bob@laptop")  # someone else's live run
        click(bot, slack, "tflock_approve", request_id, BOB, "bob")
        final = json.dumps(slack.wait_for("/api/chat.update")[-1].body, ensure_ascii=False)
        assert "Not released" in final
        current = item(remote_aws, f"{BUCKET}/{KEY}")
        assert current is not None and current["Info"]["S"] == new.info_json
    finally:
        assert bot.stop() == 0, bot.log()


@pytest.fixture
def shared_postgres() -> Iterator[str]:
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need TFLOCK_TEST_DATABASE_URL")
    with postgres_schema(POSTGRES_URL) as url:
        yield url


def test_two_replicas_approving_at_once_release_exactly_once(
    moto_server: MotoServer, remote_aws: Aws, slack: FakeSlack, tmp_path: Path, shared_postgres: str
) -> None:
    """Two `tflock-bot serve` processes on one PostgreSQL database; two approvers click at the same
    instant, one through each replica, many times over: one deletion and one `executed` each time."""
    env = bot_env(moto_server, slack, shared_postgres)
    first = start_bot(env, tmp_path / "first.log")
    second = start_bot(env, tmp_path / "second.log", "--no-migrate")
    sessions = make_sessions(make_engine(shared_postgres))
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE)
    try:
        for round_ in range(8):
            lock = tf.lock(KEY, created=ago(hours=3))
            slack.reset()
            slash(first, slack, f"unlock {BUCKET}/{KEY} round {round_}", ALICE, "ask")
            request_id = request_id_from(slack, "ask")
            barrier = threading.Barrier(2)
            statuses: list[int] = []

            def approve(bot: BotProcess, user: str, request: str, go: threading.Barrier, seen: list[int]) -> None:
                go.wait()
                seen.append(click(bot, slack, "tflock_approve", request, user, f"{user}-{request}"))

            threads = [
                threading.Thread(target=approve, args=(bot, user, request_id, barrier, statuses))
                for bot, user in ((first, BOB), (second, CAROL))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            assert statuses == [200, 200]
            deadline = time.monotonic() + 20
            while True:
                with sessions() as session:
                    counts = dict(
                        session.execute(
                            select(AuditEvent.action, func.count())
                            .where(AuditEvent.request_id == request_id)
                            .group_by(AuditEvent.action)
                        ).all()
                    )
                if counts.get("executed") or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert counts.get("executed") == 1, counts
            assert counts.get("executing") == 1, counts
            assert counts.get("approved") == 1, counts  # the second click was refused: already decided
            assert item(remote_aws, f"{BUCKET}/{KEY}") is None, f"round {round_}: lock {lock.id} still held"
    finally:
        assert first.stop() == 0, first.log()
        assert second.stop() == 0, second.log()
