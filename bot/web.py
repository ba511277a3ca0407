"""The HTTP surface on TFLOCK_PORT (docs/design.md §11): /slack/events (HTTP mode), /healthz, /readyz, /metrics."""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.runtime import Runtime

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

log = logging.getLogger(__name__)
SLACK_PATH = "/slack/events"
_KNOWN_PATHS = {SLACK_PATH, "/healthz", "/readyz", "/metrics"}


class WebApp:
    """A WSGI application; Slack requests go to Bolt, probes and metrics are answered here."""

    def __init__(
        self,
        runtime: Runtime,
        slack: SlackRequestHandler | None,
        socket_connected: Callable[[], bool] | None = None,
    ) -> None:
        self.runtime = runtime
        self.slack = slack
        if socket_connected is not None:
            runtime.readiness.append(lambda: None if socket_connected() else "slack: Socket Mode is not connected")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path == SLACK_PATH and self.slack is not None:
                if method != "POST":
                    return _send(start_response, 405, {"error": "POST only"})
                return self.slack(environ, start_response)
            if path == "/healthz" and method in {"GET", "HEAD"}:
                return _send(start_response, 200, {"status": "alive"})
            if path == "/readyz" and method in {"GET", "HEAD"}:
                problems = self.runtime.not_ready()
                if problems:
                    log.warning("not ready: %s", "; ".join(problems))
                if not _from_loopback(environ):  # details (hosts, roles) go to the log, not to the network
                    problems = [f"{problem.partition(':')[0]}: unavailable" for problem in problems]
                body: dict[str, object] = (
                    {"status": "not ready", "problems": problems} if problems else {"status": "ready"}
                )
                return _send(start_response, 503 if problems else 200, body)
            if path == "/metrics" and method in {"GET", "HEAD"}:
                payload = generate_latest(self.runtime.metrics.registry)
                start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(payload)))])
                return [payload]
            return _send(start_response, 404, {"error": "not found"})
        finally:
            label = path if path in _KNOWN_PATHS else "other"
            self.runtime.metrics.http_seconds.labels(path=label).observe(time.monotonic() - started)


def _from_loopback(environ: WSGIEnvironment) -> bool:
    try:
        return ipaddress.ip_address(str(environ.get("REMOTE_ADDR", "")).split("%")[0]).is_loopback
    except ValueError:
        return False


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


def _send(start_response: StartResponse, status: int, body: dict[str, object]) -> list[bytes]:
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    start_response(f"{status} {_REASONS[status]}", headers)
    return [payload]
