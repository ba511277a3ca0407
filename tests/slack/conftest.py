"""A whole SlackBot in-process: moto AWS, a migrated SQLite database and the local fake Slack Web API."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.db import upgrade_to_head
from bot.runtime import build_runtime
from bot.settings import load_settings
from bot.slack.app import SlackBot, build_bot
from tests.conftest import BUCKET, TABLE, Aws
from tests.fakeslack import FakeSlack


@pytest.fixture
def slackbot(aws: Aws, slack: FakeSlack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SlackBot:
    url = f"sqlite:///{tmp_path / 'tflock.db'}"
    for name, value in {
        "SLACK_BOT_TOKEN": "xoxb-unit",
        "SLACK_SIGNING_SECRET": "unit-secret",
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_DYNAMODB_TABLE": TABLE,
        "TFLOCK_S3_BUCKETS": BUCKET,
        "TFLOCK_DATABASE_URL": url,
    }.items():
        monkeypatch.setenv(name, value)
    upgrade_to_head(url)
    return build_bot(build_runtime(load_settings()))
