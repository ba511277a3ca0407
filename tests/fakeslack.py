"""A local HTTP server that plays Slack's Web API and the `response_url` endpoint, as bolt-python's tests do.

Point `SLACK_API_URL` at `server.api_url` and put `server.response_url(...)` in signed payloads; every
call is recorded with its parsed JSON or form body so tests can assert on what a channel would see.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BOT_USER = "UBOT00001"


@dataclass
class Call:
    path: str
    body: dict[str, Any]
    at: float
    token: str | None
    status: int = 200  # what the fake answered with (429 while rate limiting)


@dataclass
class FakeSlack:
    host: str = "127.0.0.1"
    calls: list[Call] = field(default_factory=list)
    usergroups: dict[str, list[str]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail: dict[str, str] = field(default_factory=dict)  # method -> Slack error code to answer with
    # method -> a handler answering it (e.g. apps.connections.open, played by tests/faults/socket_slack.py)
    methods: dict[str, Callable[[dict[str, Any], str | None], dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Condition()
        self._ts = itertools.count(1)
        self._limited: dict[str, deque[int]] = {}  # method -> Retry-After seconds of the next 429s
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length) if length else b""
                query = urllib.parse.urlsplit(self.path).query
                if self.path.startswith("/upload/"):  # a file's bytes (a CSV, a PNG), not a form
                    body: dict[str, Any] = {"_raw": data.decode("utf-8", "replace"), "_bytes": data}
                else:
                    raw = data.decode("utf-8")
                    body = fake._parse(raw or query, self.headers.get("Content-Type", ""))
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ") if auth else body.get("token")
                path = urllib.parse.urlsplit(self.path).path
                status, headers, answer = fake._reply(path, body, token)
                payload = json.dumps(answer).encode() if isinstance(answer, dict) else answer.encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json" if isinstance(answer, dict) else "text/plain")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

        self.server = ThreadingHTTPServer((self.host, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/"

    def response_url(self, name: str = "cmd") -> str:
        return f"http://{self.host}:{self.port}/response/{name}"

    # -- assertions ---------------------------------------------------------------------------
    def wait_for(self, path: str, count: int = 1, timeout: float = 10.0) -> list[Call]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c for c in self.calls if c.path == path]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = sorted({c.path for c in self.calls})
                    raise AssertionError(f"expected {count} call(s) to {path}, got {len(found)}; saw {seen}")
                self._lock.wait(remaining)

    def calls_to(self, path: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == path]

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self.fail.clear()
            self._limited.clear()

    def rate_limit(self, method: str, times: int, retry_after: int = 1) -> None:
        """Answer the next `times` calls to `method` with HTTP 429 and `Retry-After: retry_after`."""
        with self._lock:
            self._limited.setdefault(method, deque()).extend([retry_after] * times)

    # -- behaviour ----------------------------------------------------------------------------
    @staticmethod
    def _parse(raw: str, content_type: str) -> dict[str, Any]:
        if not raw:
            return {}
        if "json" in content_type or raw.lstrip().startswith("{"):
            parsed = json.loads(raw)
            return parsed if isinstance(parsed, dict) else {"_": parsed}
        form = dict(urllib.parse.parse_qsl(raw))
        for key in ("blocks", "view", "attachments", "files"):
            if key in form:
                form[key] = json.loads(form[key])
        return form

    def _reply(
        self, path: str, body: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, str], dict[str, Any] | str]:
        method = path.removeprefix("/api/")
        with self._lock:
            limited = self._limited.get(method)
            retry_after = limited.popleft() if limited else None
            status = 200 if retry_after is None else 429
            self.calls.append(Call(path, body, time.monotonic(), token, status))
            self._lock.notify_all()
        if retry_after is not None:
            return 429, {"Retry-After": str(retry_after)}, {"ok": False, "error": "ratelimited"}
        return 200, {}, self._answer(path, body, token)

    def _answer(self, path: str, body: dict[str, Any], token: str | None) -> dict[str, Any] | str:
        if path.startswith(("/response/", "/upload/")):
            return "ok"
        method = path.removeprefix("/api/")
        if method in self.methods:
            return self.methods[method](body, token)
        if method in self.fail:
            return {"ok": False, "error": self.fail[method]}
        if not token or not str(token).startswith("xoxb-"):
            return {"ok": False, "error": "invalid_auth"}
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://acme.slack.test/",
                "team": "Acme",
                "user": "tflock",
                "team_id": "T0001",
                "user_id": BOT_USER,
                "bot_id": "B0001",
                "is_enterprise_install": False,
            }
        if method in {"chat.postMessage", "chat.update", "chat.postEphemeral"}:
            ts = body.get("ts") or f"1700000000.{next(self._ts):06d}"
            return {"ok": True, "channel": body.get("channel"), "ts": ts, "message": {"text": body.get("text", "")}}
        if method == "chat.getPermalink":
            channel, ts = str(body.get("channel")), str(body.get("message_ts"))
            return {
                "ok": True,
                "channel": channel,
                "permalink": f"https://acme.slack.test/archives/{channel}/p{ts.replace('.', '')}",
            }
        if method == "usergroups.users.list":
            group = str(body.get("usergroup"))
            if group not in self.usergroups:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": self.usergroups[group]}
        if method == "users.info":
            user = str(body.get("user"))
            return {"ok": True, "user": self.users.get(user, {"id": user, "is_bot": False, "name": user.lower()})}
        if method == "users.list":  # `self.users` in insertion order, paged by `limit` with an index cursor
            members = list(self.users.values())
            start = int(body.get("cursor") or 0)
            end = start + (int(body.get("limit") or 0) or len(members) or 1)
            next_cursor = str(end) if end < len(members) else ""
            return {"ok": True, "members": members[start:end], "response_metadata": {"next_cursor": next_cursor}}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(body.get("users", "")).split(",")[0][1:]}}
        if method == "views.open":
            return {"ok": True, "view": {"id": "V0001", **(body.get("view") or {})}}
        if method == "files.getUploadURLExternal":
            return {"ok": True, "upload_url": f"http://{self.host}:{self.port}/upload/F0001", "file_id": "F0001"}
        if method == "files.completeUploadExternal":
            return {"ok": True, "files": [{"id": "F0001"}]}
        return {"ok": True}


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """Headers Slack sends: v0 HMAC-SHA256 over `v0:{ts}:{body}`."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
    }


def slash_command_body(text: str, response_url: str, *, user: str = "U0ALICE01", channel: str = "C0INCIDENT") -> str:
    """A slash-command form body built like Slack's."""
    return urllib.parse.urlencode(
        {
            "token": "deprecated-verification-token",
            "team_id": "T0001",
            "team_domain": "acme",
            "channel_id": channel,
            "channel_name": "incident-42",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/tflock",
            "text": text,
            "api_app_id": "A0TFLOCK",
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": f"{int(time.time())}.1.abcdef",
        }
    )


def block_actions_body(payload: dict[str, Any]) -> str:
    return "payload=" + urllib.parse.quote(json.dumps(payload))
