"""Slack's Socket Mode end, played locally over a real WebSocket (the `websockets` package).

It works with tests/fakeslack.py, which plays the Web API: `apps.connections.open` is answered here with
`{"ok": true, "url": "ws://127.0.0.1:<port>/link/?ticket=…"}` (slack_sdk connects without TLS to a
ws:// URL on a port other than 443). Each new connection gets `hello`; envelopes (slash commands,
interactive payloads) go out with an `envelope_id`; the app's acks come back and are kept with their
payloads and the time they arrived.

The WebSocket server sits behind a FaultProxy of its own, so faults happen on the wire as they would
in production: `drop()` resets live connections with a TCP RST (no close frame), `outage()` resets them
and refuses new ones (and `apps.connections.open` fails) until `recover()`. `refresh()` sends Slack's
`{"type": "disconnect", "reason": "refresh_requested"}`.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.fakeslack import FakeSlack
from tests.faults.proxy import FaultProxy

APP_TOKEN = "xapp-1-A0TFLOCK-1-faults"
APP_ID = "A0TFLOCK"


@dataclass
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    at: float  # time.monotonic() when the ack arrived
    sent_at: float  # time.monotonic() when its envelope went out

    @property
    def seconds(self) -> float:
        return self.at - self.sent_at


@dataclass
class _Connection:
    number: int
    ws: ServerConnection


@dataclass
class SocketModeSlack:
    web: FakeSlack
    app_token: str = APP_TOKEN
    acks: dict[str, Ack] = field(default_factory=dict)
    opened: int = 0  # apps.connections.open calls that handed out a URL
    hellos: int = 0  # connections that got `hello`

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._live: list[_Connection] = []
        self._sent: dict[str, float] = {}
        self._numbers = itertools.count(1)
        self._refusing = False
        self._server: Server = serve(
            self._handle, "127.0.0.1", 0, process_request=self._handshake, ping_interval=None, close_timeout=1
        )
        ws_port = int(self._server.socket.getsockname()[1])
        self.link = FaultProxy("127.0.0.1", ws_port)
        self._thread = threading.Thread(target=self._server.serve_forever, name="socket-slack", daemon=True)
        self.web.methods["apps.connections.open"] = self._open

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> SocketModeSlack:
        self.link.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self.web.methods.pop("apps.connections.open", None)
        self.link.stop()
        self._server.shutdown()
        self._thread.join(10)

    # -- the Web API half: apps.connections.open ----------------------------------------------
    def _open(self, body: dict[str, Any], token: str | None) -> dict[str, Any]:
        if token != self.app_token:
            return {"ok": False, "error": "invalid_auth"}
        if self._refusing:
            return {"ok": False, "error": "internal_error"}
        with self._cond:
            self.opened += 1
        return {"ok": True, "url": f"ws://{self.link.address}/link/?ticket={uuid.uuid4()}&app_id={APP_ID}"}

    # -- the WebSocket half -------------------------------------------------------------------
    def _handshake(self, connection: ServerConnection, request: Any) -> Any:
        if self._refusing or not str(request.path).startswith("/link/"):
            return connection.respond(503, "Slack is having an outage\n")
        return None

    def _handle(self, ws: ServerConnection) -> None:
        connection = _Connection(next(self._numbers), ws)
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {"host": "applink-local", "build_number": 1, "approximate_connection_time": 18060},
            "connection_info": {"app_id": APP_ID},
        }
        ws.send(json.dumps(hello))
        with self._cond:
            self._live.append(connection)
            self.hellos += 1
            self._cond.notify_all()
        try:
            for raw in ws:
                message = json.loads(raw)
                envelope_id = message.get("envelope_id") if isinstance(message, dict) else None
                if envelope_id:
                    with self._cond:
                        sent_at = self._sent.get(envelope_id, time.monotonic())
                        if envelope_id not in self.acks:  # the first ack counts; a second is a bug to see
                            self.acks[envelope_id] = Ack(envelope_id, message.get("payload"), time.monotonic(), sent_at)
                        else:
                            self.acks[f"{envelope_id}#duplicate"] = Ack(envelope_id, None, time.monotonic(), sent_at)
                        self._cond.notify_all()
        except (ConnectionClosed, ValueError):
            pass
        finally:
            with self._cond:
                self._live.remove(connection)
                self._cond.notify_all()

    # -- what tests do ------------------------------------------------------------------------
    @property
    def connected(self) -> int:
        with self._cond:
            return len(self._live)

    def wait_connected(self, after: int = 0, timeout: float = 20.0) -> int:
        """Wait for a live connection numbered above `after` (a new one); return its number."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                newer = [c.number for c in self._live if c.number > after]
                if newer:
                    return max(newer)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no Socket Mode connection after #{after} within {timeout}s")
                self._cond.wait(remaining)

    def wait_disconnected(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._live:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{len(self._live)} Socket Mode connection(s) still live after {timeout}s")
                self._cond.wait(remaining)

    def send(self, kind: str, payload: dict[str, Any], *, accepts_response_payload: bool = False) -> str:
        """Send an envelope on the newest live connection; returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        with self._cond:
            if not self._live:
                raise AssertionError("no live Socket Mode connection to send an envelope on")
            newest = max(self._live, key=lambda c: c.number)
            self._sent[envelope_id] = time.monotonic()
        newest.ws.send(json.dumps(envelope))
        return envelope_id

    def slash_command(
        self, text: str, response_url: str, *, user: str = "U0ALICE01", channel: str = "C0INCIDENT"
    ) -> str:
        payload = {
            "token": "deprecated-verification-token",
            "team_id": "T0001",
            "team_domain": "acme",
            "channel_id": channel,
            "channel_name": "incident-42",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/tflock",
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{int(time.time())}.1.abcdef",
        }
        return self.send("slash_commands", payload, accepts_response_payload=True)

    def interactive(self, payload: dict[str, Any]) -> str:
        return self.send("interactive", payload, accepts_response_payload=payload.get("type") == "view_submission")

    def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> Ack:
        deadline = time.monotonic() + timeout
        with self._cond:
            while envelope_id not in self.acks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"envelope {envelope_id} was not acked within {timeout}s")
                self._cond.wait(remaining)
            return self.acks[envelope_id]

    def duplicate_acks(self) -> list[str]:
        with self._cond:
            return [key for key in self.acks if key.endswith("#duplicate")]

    def refresh(self) -> None:
        """What Slack sends before it recycles a connection: the app should open a new one."""
        message = {"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "applink-local"}}
        with self._cond:
            live = list(self._live)
        for connection in live:
            connection.ws.send(json.dumps(message))

    def drop(self) -> None:
        """Break every live connection abruptly: a TCP RST on the wire, no close frame."""
        self.link.drop()

    def outage(self) -> None:
        """Slack is down: live connections reset, new ones refused, apps.connections.open fails."""
        self._refusing = True
        self.link.reset()

    def recover(self) -> None:
        self._refusing = False
        self.link.normal()
