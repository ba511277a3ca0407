"""The local Socket Mode server against slack_sdk's own Socket Mode client (the one Bolt's handler uses)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.builtin.client import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from tests.fakeslack import FakeSlack
from tests.faults.socket_slack import APP_TOKEN, SocketModeSlack

pytestmark = [pytest.mark.slow, pytest.mark.faults]


@pytest.fixture
def socket_slack(slack: FakeSlack) -> Iterator[SocketModeSlack]:
    server = SocketModeSlack(slack).start()
    yield server
    server.stop()


@pytest.fixture
def client(slack: FakeSlack, socket_slack: SocketModeSlack) -> Iterator[SocketModeClient]:
    web = WebClient(token="xoxb-faults", base_url=slack.api_url)
    client = SocketModeClient(app_token=APP_TOKEN, web_client=web, ping_interval=0.5)
    seen: list[str] = []

    def ack(client: SocketModeClient, request: SocketModeRequest) -> None:
        seen.append(request.type)
        client.send_socket_mode_response(SocketModeResponse(request.envelope_id, payload={"text": "got it"}))

    client.socket_mode_request_listeners.append(ack)  # type: ignore[arg-type]
    yield client
    client.close()


def test_envelopes_acked_and_reconnects_after_refresh_drop_and_outage(
    socket_slack: SocketModeSlack, client: SocketModeClient, slack: FakeSlack
) -> None:
    client.connect()
    first = socket_slack.wait_connected()
    envelope = socket_slack.slash_command("status x", slack.response_url())
    ack = socket_slack.wait_ack(envelope)
    assert ack.payload == {"text": "got it"}
    assert ack.seconds < 3

    socket_slack.refresh()
    second = socket_slack.wait_connected(after=first)
    assert socket_slack.opened == 2
    assert socket_slack.wait_ack(socket_slack.slash_command("status y", slack.response_url())).payload

    socket_slack.drop()
    third = socket_slack.wait_connected(after=second)

    socket_slack.outage()
    socket_slack.wait_disconnected()
    deadline = time.monotonic() + 1.5  # the client retries; every retry is refused
    while time.monotonic() < deadline:
        assert socket_slack.connected == 0
        time.sleep(0.1)
    socket_slack.recover()
    socket_slack.wait_connected(after=third)
    assert socket_slack.wait_ack(socket_slack.interactive({"type": "block_actions", "actions": []})).seconds < 3
    assert socket_slack.duplicate_acks() == []


def test_wrong_app_token_gets_no_url(slack: FakeSlack, socket_slack: SocketModeSlack) -> None:
    web = WebClient(base_url=slack.api_url)
    with pytest.raises(SlackApiError, match="invalid_auth"):
        web.apps_connections_open(app_token="xapp-1-wrong")
    assert socket_slack.opened == 0
