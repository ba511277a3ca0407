"""Socket Mode at the listener level: Bolt skips signing for socket-mode requests, so the same
listeners must answer envelopes delivered over the socket (there is no Slack to connect to here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_bolt import BoltRequest

from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.runtime import Runtime
from bot.settings import load_settings
from bot.slack.app import build_app
from tests.conftest import BUCKET, TABLE
from tests.fakeslack import FakeSlack
from tests.terraform import TerraformBackend, ago


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def test_slash_command_over_the_socket(tf: TerraformBackend, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tf.lock("network/terraform.tfstate", created=ago(hours=1))
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-socket")
    monkeypatch.setenv("SLACK_APP_TOKEN", "xapp-socket")
    monkeypatch.setenv("SLACK_API_URL", slack.api_url)
    monkeypatch.setenv("TFLOCK_DYNAMODB_TABLE", TABLE)
    settings = load_settings()
    app = build_app(Runtime(settings=settings, directory=LockDirectory(load_backends(settings))))
    envelope_payload = {  # the `payload` of a slash_commands envelope
        "command": "/tflock",
        "text": f"status {BUCKET}/network/terraform.tfstate",
        "user_id": "U0ALICE01",
        "channel_id": "C0INCIDENT",
        "team_id": "T0001",
        "response_url": slack.response_url("socket"),
        "trigger_id": "1.2.3",
    }
    response = app.dispatch(BoltRequest(body=envelope_payload, mode="socket_mode"))
    assert response.status == 200
    answer = slack.wait_for("/response/socket")[-1].body
    assert answer["response_type"] == "in_channel"
    assert lock.id in str(answer["blocks"])
