"""Socket Mode, the chart's default, above the socket: a real `tflock-bot serve` connects over a real
WebSocket to the local Socket Mode server, and the connection is refreshed, dropped, and lost in an outage.

`tflock_socket_mode_connected` must follow the real connection (0 while disconnected, 1 again after
reconnecting), /readyz must say so, and envelopes sent after reconnecting must be acked within 3 s."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import BUCKET, TABLE, Aws
from tests.e2e.conftest import BotProcess, MotoServer
from tests.fakeslack import FakeSlack
from tests.faults.conftest import (
    KEY,
    STATE,
    answer_text,
    bot_env,
    metric,
    probe,
    slack_api_url,
    socket_env,
    wait_until,
)
from tests.faults.proxy import FaultProxy
from tests.faults.socket_slack import SocketModeSlack
from tests.terraform import TerraformBackend, TerraformLock, ago

pytestmark = [pytest.mark.slow, pytest.mark.faults]
GAUGE = "tflock_socket_mode_connected"
# Slack's 3 s covers the trip over the internet too; an envelope acked locally in 2.9 s is late in production.
# (slack_sdk's built-in client stalled ~3 s, its socket receive timeout, while it closed a refreshed connection,
# so the first envelope on the new one was acked at Slack's limit; `serve` uses the websocket-client one.)
SOCKET_ACK_SECONDS = 2.0
RECONNECT_SECONDS = 30.0  # the SDK's monitor notices a dead session every few seconds; retries back off


def gauge(bot: BotProcess) -> float | None:
    return metric(bot, GAUGE)


def status_acked_and_answered(socket_slack: SocketModeSlack, slack: FakeSlack, lock: TerraformLock, name: str) -> None:
    envelope = socket_slack.slash_command(f"status {STATE}", slack.response_url(name))
    ack = socket_slack.wait_ack(envelope)
    assert ack.seconds < SOCKET_ACK_SECONDS, f"{name}: envelope acked after {ack.seconds:.2f}s"
    assert lock.id in answer_text(slack, name)


def connected_bot(
    bots: Callable[..., BotProcess], env: dict[str, str], socket_slack: SocketModeSlack
) -> tuple[BotProcess, int]:
    bot = bots(socket_env(env), "socket-bot")
    number = socket_slack.wait_connected()
    wait_until(lambda: gauge(bot) == 1, 10, f"{GAUGE} to be 1")
    wait_until(lambda: probe(bot, "/readyz").status == 200, 10, "/readyz to say ready")
    return bot, number


@pytest.fixture
def lock(remote_aws: Aws) -> TerraformLock:
    tf = TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE, use_lockfile=True)
    return tf.lock(KEY, created=ago(hours=1))


def test_refresh_requested_and_abrupt_drop(
    database_url: str,  # first: set up before, torn down after, the bots that use it
    moto_server: MotoServer,
    lock: TerraformLock,
    slack: FakeSlack,
    socket_slack: SocketModeSlack,
    bots: Callable[..., BotProcess],
    tmp_path: Path,
) -> None:
    env = bot_env(moto_server.url, slack, database_url)
    bot, first = connected_bot(bots, env, socket_slack)
    status_acked_and_answered(socket_slack, slack, lock, "before")

    # Slack recycles the connection: the app opens a new one and carries on.
    socket_slack.refresh()
    second = socket_slack.wait_connected(after=first, timeout=RECONNECT_SECONDS)
    wait_until(lambda: gauge(bot) == 1, 10, f"{GAUGE} to be 1 after the refresh")
    status_acked_and_answered(socket_slack, slack, lock, "after-refresh")

    # The connection breaks without a close frame, and reconnecting fails for a while.
    socket_slack.link.reset()
    socket_slack.wait_disconnected()
    wait_until(lambda: gauge(bot) == 0, RECONNECT_SECONDS, f"{GAUGE} to fall to 0 while disconnected")
    unready = probe(bot, "/readyz")
    assert unready.status == 503 and "Socket Mode is not connected" in unready.body, unready
    assert unready.seconds < 2, unready

    socket_slack.link.normal()
    socket_slack.wait_connected(after=second, timeout=RECONNECT_SECONDS)
    wait_until(lambda: gauge(bot) == 1, 10, f"{GAUGE} back to 1 after reconnecting")
    wait_until(lambda: probe(bot, "/readyz").status == 200, 10, "/readyz to say ready again")
    status_acked_and_answered(socket_slack, slack, lock, "after-drop")
    assert socket_slack.duplicate_acks() == []


def test_slack_outage_during_socket_mode(
    database_url: str,  # first: set up before, torn down after, the bots that use it
    moto_server: MotoServer,
    lock: TerraformLock,
    slack: FakeSlack,
    slack_proxy: FaultProxy,
    socket_slack: SocketModeSlack,
    bots: Callable[..., BotProcess],
    tmp_path: Path,
) -> None:
    """All of Slack goes away (the socket and the Web API), then comes back."""
    env = bot_env(moto_server.url, slack, database_url, SLACK_API_URL=slack_api_url(slack_proxy))
    bot, first = connected_bot(bots, env, socket_slack)
    status_acked_and_answered(socket_slack, slack, lock, "before")

    socket_slack.outage()
    slack_proxy.reset()
    socket_slack.wait_disconnected()
    wait_until(lambda: gauge(bot) == 0, RECONNECT_SECONDS, f"{GAUGE} to fall to 0 during the outage")
    unready = wait_until(
        lambda: (p := probe(bot, "/readyz")).status == 503 and p, 10, "/readyz to say not ready during the outage"
    )
    assert unready.seconds < 2 and "Socket Mode is not connected" in unready.body, unready
    assert bot.process.poll() is None, bot.log()
    assert socket_slack.connected == 0

    socket_slack.recover()
    slack_proxy.normal()
    socket_slack.wait_connected(after=first, timeout=RECONNECT_SECONDS)
    wait_until(lambda: gauge(bot) == 1, 10, f"{GAUGE} back to 1 after the outage")
    wait_until(lambda: probe(bot, "/readyz").status == 200, 10, "/readyz to say ready after the outage")
    status_acked_and_answered(socket_slack, slack, lock, "after")
    assert socket_slack.duplicate_acks() == []
