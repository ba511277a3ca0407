"""Socket Mode at the listener level: Bolt skips signing for socket-mode requests, so the same
listeners must answer envelopes delivered over the socket (there is no Slack to connect to here)."""

from __future__ import annotations

from slack_bolt import BoltRequest

from bot.slack.app import SlackBot
from tests.conftest import BUCKET
from tests.fakeslack import FakeSlack
from tests.terraform import TerraformBackend, ago


def test_slash_command_over_the_socket(tf: TerraformBackend, slack: FakeSlack, slackbot: SlackBot) -> None:
    lock = tf.lock("network/terraform.tfstate", created=ago(hours=1))
    app = slackbot.app
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
