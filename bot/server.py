"""`tflock-bot serve`: the Bolt app behind waitress (HTTP mode) or over Socket Mode, plus probes and metrics,
and the background jobs: request expiry and the reconciliation of interrupted releases."""

from __future__ import annotations

import _thread
import logging
import signal
import threading
from types import FrameType

# Bolt's websocket-client adapter, not slack_sdk's built-in client: that one stalls ~3 s (its socket's receive
# timeout) when Slack asks it to refresh a connection, so the first envelope on the new one is acked at Slack's
# 3 s limit (tests/faults/test_socket_mode_faults.py::test_refresh_requested_and_abrupt_drop).
from slack_bolt.adapter.socket_mode.websocket_client import SocketModeHandler
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_bolt.error import BoltError
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from waitress.server import create_server

from bot.audit.chain import verify_in_background
from bot.db import upgrade_to_head
from bot.errors import TflockError
from bot.runtime import build_runtime
from bot.settings import Settings, SettingsError
from bot.slack.alerts import start_watchdog
from bot.slack.app import SlackBot, build_bot, build_client
from bot.web import WebApp

log = logging.getLogger(__name__)
HTTP_THREADS = 32
MAX_BODY_BYTES = 1024 * 1024  # Slack payloads are a few kB; refuse to buffer more
SWEEP_SECONDS = 30.0
START_CHECK_TIMEOUT = 5
REFUSED_TOKEN = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "not_allowed_token_type",
}


def serve(settings: Settings, *, migrate: bool = True, host: str = "0.0.0.0") -> int:  # noqa: S104
    """Serve until SIGTERM or Ctrl-C; `host` is where to listen (the demo keeps it on 127.0.0.1)."""
    settings.require_for_serve()
    if migrate:
        upgrade_to_head(settings.database_url)
    runtime = build_runtime(settings)
    try:
        bot = build_bot(runtime)
    except (BoltError, SlackApiError, SlackClientError) as exc:
        raise SettingsError(f"SLACK_BOT_TOKEN: Slack did not accept the bot token ({_slack_reason(exc)})") from None

    stop = threading.Event()
    token = SlackToken(build_client(runtime, START_CHECK_TIMEOUT, rate_limit_retries=0))
    token.check_once()  # a refused token stops here (exit 2); an unreachable Slack only makes us unready
    runtime.readiness.append(token.readiness)
    if not token.verified.is_set():
        threading.Thread(target=token.keep_trying, args=(stop,), name="tflock-slack-check", daemon=True).start()
    socket_handler: SocketModeHandler | None = None
    if settings.socket_mode:
        assert settings.slack_app_token is not None
        socket_handler = SocketModeHandler(bot.app, settings.slack_app_token.get_secret_value())
        client = socket_handler.client
        # The gauge is read from the connection at every scrape, so it drops to 0 the moment it is lost.
        runtime.metrics.socket_connected.set_function(lambda: 1.0 if client.is_connected() else 0.0)
        web = WebApp(runtime, None, socket_connected=client.is_connected)
        threading.Thread(target=_keep_connecting, args=(socket_handler, stop), daemon=True).start()
    else:
        web = WebApp(runtime, SlackRequestHandler(bot.app))
    sweeper = threading.Thread(target=_sweep, args=(bot, stop), name="tflock-sweeper", daemon=True)
    sweeper.start()
    # The chain is re-checked at every start; a broken one is logged as a warning, never blocks serving.
    threading.Thread(
        target=verify_in_background, args=(runtime.sessions, log), name="tflock-audit-verify", daemon=True
    ).start()
    watchdog = start_watchdog(bot, stop)  # None when TFLOCK_WATCH_CHANNEL is unset

    server = create_server(
        web,
        host=host,  # 0.0.0.0 by default: a container port; the pod network decides who reaches it
        port=settings.port,
        threads=HTTP_THREADS,
        max_request_body_size=MAX_BODY_BYTES,
        ident="tflock",
    )

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        # waitress's run() stops its loop and task threads on SystemExit; a token Slack refused later is 2.
        raise SystemExit(2 if token.refused else 0)

    signal.signal(signal.SIGTERM, on_sigterm)
    mode = "Socket Mode" if settings.socket_mode else "HTTP mode"
    log.info("tflock serving in %s on port %d", mode, settings.port)
    try:
        server.run()
    finally:
        stop.set()
        if socket_handler is not None:
            socket_handler.close()  # type: ignore[no-untyped-call]
        server.close()
        for pool in (runtime.lookups, runtime.clicks, runtime.notices):
            pool.shutdown()
        sweeper.join(timeout=10)
        if watchdog is not None:
            watchdog.join(timeout=10)
        log.info("tflock stopped")
    return 2 if token.refused else 0  # waitress returns from run() on SystemExit: the code is decided here


def sweep_once(bot: SlackBot) -> None:
    """End expired requests and interrupted releases, bring their messages up to date, and escalate requests
    pending longer than TFLOCK_ESCALATE_AFTER (once each, whatever the number of replicas)."""
    for request in bot.workflow.expire_due():
        bot.messages.show(request, None, "expired")
    for request in bot.workflow.reconcile():
        bot.messages.show(request, None, request.status.value)
    bot.notifier.escalate_due()


def _sweep(bot: SlackBot, stop: threading.Event) -> None:
    while not stop.is_set():  # runs once at start-up, then every SWEEP_SECONDS
        try:
            sweep_once(bot)
        except TflockError as exc:
            log.error("background sweep failed, retrying in %.0fs: %s", SWEEP_SECONDS, exc)
        except Exception:
            log.exception("background sweep failed unexpectedly")
        stop.wait(SWEEP_SECONDS)


def _keep_connecting(handler: SocketModeHandler, stop: threading.Event) -> None:
    """Connect once (the SDK's own monitor reconnects after that), retrying with backoff until it works."""
    delay = 1.0
    while not stop.is_set():
        try:
            handler.connect()  # type: ignore[no-untyped-call]
            return
        except Exception as exc:
            log.warning("Socket Mode connection failed (%s: %s); retrying in %.0fs", type(exc).__name__, exc, delay)
            stop.wait(delay)
            delay = min(delay * 2, 60.0)


class SlackToken:
    """Asks Slack (auth.test) whether the bot token works, until Slack answers.

    Unreachable: the bot stays up and unready and asks again with backoff (no exit, no crash-loop).
    Refused: that is a configuration error — at start `serve` exits 2 naming SLACK_BOT_TOKEN; found later,
    the process is stopped the same way.
    """

    def __init__(self, client: WebClient) -> None:
        self.client = client
        self.verified = threading.Event()
        self.refused = False
        self.problem = "slack: not asked yet"

    def check_once(self) -> bool:
        try:
            self.client.auth_test()
        except SlackApiError as exc:
            reason = _slack_reason(exc)
            if reason in REFUSED_TOKEN:
                self.refused = True
                raise SettingsError(f"SLACK_BOT_TOKEN: Slack did not accept the bot token ({reason})") from None
            self.problem = f"slack: auth.test failed ({reason})"
        except Exception as exc:  # unreachable, timed out, TLS, 5xx: Slack may come back
            self.problem = f"slack: not reachable ({type(exc).__name__}: {str(exc)[:200]})"
        else:
            self.verified.set()
            return True
        log.warning("%s; serving unready and asking again", self.problem)
        return False

    def keep_trying(self, stop: threading.Event) -> None:
        delay = 1.0
        while not stop.wait(delay):
            try:
                if self.check_once():
                    log.info("Slack answered; the bot token works")
                    return
            except SettingsError as exc:
                log.error("%s; stopping", exc)
                _thread.interrupt_main(signal.SIGTERM)
                return
            delay = min(delay * 2, 60.0)

    def readiness(self) -> str | None:
        return None if self.verified.is_set() else self.problem


def _slack_reason(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error", "error"))
    return str(exc).splitlines()[0][:200]
