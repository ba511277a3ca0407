"""The watchdog inside a whole SlackBot: moto AWS, a migrated database (SQLite, and PostgreSQL with
TFLOCK_TEST_DATABASE_URL), the local fake Slack Web API and a clock the test moves."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from bot.runtime import build_runtime
from bot.settings import load_settings
from bot.slack.alerts import build_watchdog
from bot.slack.app import SlackBot, build_bot
from bot.watch.watchdog import Watchdog
from tests.clock import Clock
from tests.conftest import BUCKET, TABLE, Aws
from tests.database import database_url, migrated_url, postgres_url
from tests.fakeslack import FakeSlack

__all__ = ["database_url", "migrated_url", "postgres_url"]

WATCH = "C0WATCH001"


@pytest.fixture
def clock() -> Clock:
    """Starts at the real time, so locks written now (and lock files' LastModified) start young."""
    return Clock(datetime.now(UTC).replace(microsecond=0))


MakeBot = Callable[..., SlackBot]


@pytest.fixture
def make_bot(
    aws: Aws, slack: FakeSlack, migrated_url: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[MakeBot]:
    """A SlackBot on the shared database and clock, as one replica would be; settings can be overridden."""
    base = {
        "SLACK_BOT_TOKEN": "xoxb-unit",
        "SLACK_SIGNING_SECRET": "unit-secret",
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_DYNAMODB_TABLE": TABLE,
        "TFLOCK_S3_BUCKETS": BUCKET,
        "TFLOCK_DATABASE_URL": migrated_url,
        "TFLOCK_WATCH_CHANNEL": WATCH,
        "TFLOCK_STALE_AFTER": "2h",
        "TFLOCK_WATCH_REMIND_AFTER": "4h",
    }
    engines: list[Engine] = []

    def make(**env: str) -> SlackBot:
        for name, value in {**base, **env}.items():
            monkeypatch.setenv(name, value)
        runtime = build_runtime(load_settings())
        runtime.clock = clock
        engines.append(runtime.sessions.kw["bind"])
        return build_bot(runtime)

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def bot(make_bot: MakeBot) -> SlackBot:
    return make_bot()


@pytest.fixture
def watchdog(bot: SlackBot) -> Watchdog:
    return build_watchdog(bot, WATCH)
