"""The audit database stops answering, then comes back.

PostgreSQL: the bot reaches it through the fault proxy, which blackholes every connection (nothing read,
nothing answered: a frozen server or a partition) and then heals. SQLite: another process holds the
write lock (what a stuck writer or a backup tool does to a database file); reads still work there.
Either way look-ups are still answered, /readyz answers within 2 s, an unlock is refused with a clear
message and deletes nothing, and after recovery the same request is approved and released once.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import BUCKET, TABLE, Aws
from tests.database import NEEDS_POSTGRES, POSTGRES_URL, postgres_schema
from tests.e2e.conftest import BotProcess, MotoServer
from tests.fakeslack import FakeSlack
from tests.faults.conftest import (
    ALICE,
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
    metric_sum,
    probe,
    slash,
    wait_until,
)
from tests.faults.proxy import FaultProxy
from tests.terraform import TerraformBackend, ago

pytestmark = [pytest.mark.slow, pytest.mark.faults]
READY_SECONDS = 2.0


@dataclass
class FaultyDatabase:
    kind: str
    bot_url: str  # what the bot is given
    direct_url: str  # what the test checks the trail with, around any fault
    fail: Callable[[], None]
    heal: Callable[[], None]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path, bots: Bots) -> Iterator[FaultyDatabase]:
    if request.param == "sqlite":
        path = tmp_path / "tflock.db"
        url = f"sqlite:///{path}"
        holder: list[sqlite3.Connection] = []

        def take_write_lock() -> None:
            connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            connection.execute("BEGIN EXCLUSIVE")
            holder.append(connection)

        def release_write_lock() -> None:
            for connection in holder:
                connection.execute("ROLLBACK")
                connection.close()
            holder.clear()

        yield FaultyDatabase("sqlite", url, url, take_write_lock, release_write_lock)
        release_write_lock()
        return
    if not POSTGRES_URL:
        pytest.skip(NEEDS_POSTGRES)
    with postgres_schema(POSTGRES_URL) as direct:
        parsed = make_url(direct)
        with FaultProxy(parsed.host or "127.0.0.1", parsed.port or 5432) as proxy:
            through = parsed.set(host=proxy.host, port=proxy.port).render_as_string(hide_password=False)
            yield FaultyDatabase("postgresql", through, direct, proxy.blackhole, proxy.normal)
            proxy.normal()


def test_database_stops_answering_and_comes_back(
    moto_server: MotoServer,
    remote_aws: Aws,
    slack: FakeSlack,
    bots: Callable[..., BotProcess],
    database: FaultyDatabase,
) -> None:
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    lock = tf.lock(KEY, created=ago(hours=6), who="ci@runner-3")
    # On SQLite the statement timeout is also the wait for the write lock (docs/design.md §13).
    bot = bots(bot_env(moto_server.url, slack, database.bot_url, TFLOCK_DB_STATEMENT_TIMEOUT="4s"))
    asked = slash(bot, slack, f"unlock {STATE} runner-3 was killed", "ask")
    request_id = approval_request_id(slack)
    assert probe(bot, "/readyz").status == 200

    database.fail()
    # A look-up, an Approve and a new request, all at once (each waits out the database on its own worker).
    status = slash(bot, slack, f"status {STATE}", "status")
    approve = click(bot, slack, "tflock_approve", request_id, BOB, "bob")
    another = slash(bot, slack, f"unlock {STATE} second attempt", "again", user=ALICE)

    # Readiness answers quickly whatever the database does; on PostgreSQL it says the database is out.
    ready = probe(bot, "/readyz")
    assert ready.status is not None and ready.seconds < READY_SECONDS, ready
    if database.kind == "postgresql":
        # From loopback (these tests) the problem comes with its detail; elsewhere "database: unavailable".
        assert ready.status == 503 and '"database: ' in ready.body, ready

    # Look-ups are still answered after at most one database wait (the pins for the button; the audit row is
    # attempted after the answer is sent); the audit row they could not write is counted.
    assert lock.id in answer_text(slack, "status", timeout=4 + 8)
    assert metric_sum(bot, "tflock_lookup_audit_missed_total") == 0, "the answer waited for the audit row"
    assert wait_until(lambda: metric_sum(bot, "tflock_lookup_audit_missed_total"), 10, "a counted missed audit row")
    assert metric_sum(bot, "tflock_audit_write_failures_total") >= 1

    # Unlocks fail closed: refused in words, nothing deleted.
    refused = answer_text(slack, "bob", timeout=30)
    assert "database" in refused.lower(), refused
    assert "database" in answer_text(slack, "again", timeout=30).lower()
    assert dynamodb_item(remote_aws, STATE) is not None
    assert remote_aws.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{KEY}.tflock")["KeyCount"] == 1
    assert not [c for c in slack.calls_to("/api/chat.update") if "Released" in json.dumps(c.body)]

    database.heal()

    wait_until(lambda: probe(bot, "/readyz").status == 200, 30, "/readyz to say ready again")
    retry = click(bot, slack, "tflock_approve", request_id, BOB, "bob-again")
    wait_until(
        lambda: [c for c in slack.calls_to("/api/chat.update") if "Released" in json.dumps(c.body)],
        20,
        "the approval message to say Released",
    )
    assert dynamodb_item(remote_aws, STATE) is None
    assert executed_count(database.direct_url, request_id)["executed"] == 1
    assert_acked_in_time(asked, status, approve, another, retry)
