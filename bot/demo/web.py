"""The demo page's HTTP server on 127.0.0.1: the page itself, Slack's Web API and response URLs for the bot,
and the small JSON API the page uses to act as a person (type a command, click, submit, run terraform)."""

from __future__ import annotations

import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any

from bot.demo import slack, terraform, world
from bot.demo.slack import CHANNEL, Person, ResponseTarget, SlackError, Workspace, direct_channel

log = logging.getLogger(__name__)
MAX_BODY = 6 * 1024 * 1024
POLL_SECONDS = 20.0
STATIC = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/demo.css": ("demo.css", "text/css; charset=utf-8"),
    "/static/demo.js": ("demo.js", "text/javascript; charset=utf-8"),
}
_JSON_FIELDS = ("blocks", "view", "files", "attachments")


def _static(name: str) -> bytes:
    return resources.files("bot.demo").joinpath("static", name).read_bytes()


class Problem(Exception):
    """A request from the page that cannot be done; (HTTP status, message for the person)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Demo:
    """What the page's JSON API does, over the workspace and the embedded AWS."""

    def __init__(self, workspace: Workspace, aws: Callable[[str], Any], ready: Callable[[], dict[str, str]]) -> None:
        self.workspace = workspace
        self.aws = aws  # service name -> boto3 client on the embedded AWS
        self.ready = ready  # what is up: {"aws": "ready", "bot": "starting", ...}
        self.pages = {p: _static(STATIC[p][0]) for p in STATIC}  # read once: the page is served from memory

    @staticmethod
    def _person(user_id: object) -> Person:
        found = slack.person(str(user_id or ""))
        if found is None:
            raise Problem(400, "pick who you are first")
        return found

    @staticmethod
    def _channel(user: Person, channel: object) -> str:
        if channel in (CHANNEL, direct_channel(user.id)):
            return str(channel)
        raise Problem(400, "that conversation is not open for you")

    def setup(self) -> dict[str, Any]:
        return {
            "people": [{"id": p.id, "name": p.name, "real_name": p.real_name, "role": p.role} for p in slack.PEOPLE],
            "bot": {"id": slack.BOT_USER, "name": "tflock"},
            "channel": {"id": CHANNEL, "name": slack.CHANNEL_NAME},
            "groups": {slack.SRE_GROUP: slack.SRE_HANDLE},
            "states": [s.as_json() for s in world.STATES],
            "stale": world.STALE.path,
        }

    def _send(self, body: str, target: ResponseTarget | None, user: Person, channel: str, what: str) -> int:
        """Post a signed request; show what the Slack client would when the app does not answer."""
        if not self.workspace.bot_url:
            raise Problem(503, "the bot is still starting; try again in a moment")
        status, answer = slack.deliver(self.workspace, body)
        if status != 200:
            error = "dispatch_failed" if status == 0 else f"http_error (HTTP {status})"
            self.workspace.tell(user.id, channel, f"{what} failed with the error “{error}”")
            return status
        if target is not None and answer.strip():
            try:
                data = json.loads(answer)
            except ValueError:
                data = {"text": answer}  # an ack with a plain-text body
            if isinstance(data, dict):
                self.workspace.answer_inline(target, data)
        return status

    def command(self, data: dict[str, Any]) -> dict[str, Any]:
        user = self._person(data.get("user"))
        channel = self._channel(user, data.get("channel"))
        text = str(data.get("text") or "").strip()
        if not text:
            raise Problem(400, "type a message or a command")
        if len(text) > 8000:
            raise Problem(400, "that is longer than Slack allows in one message")
        if not text.startswith("/"):
            self.workspace.say(user.id, channel, text)
            return {"ok": True}
        name = text.split()[0]
        if name != "/tflock":
            self.workspace.tell(user.id, channel, f"{name} is not a valid command. The only app here is /tflock.")
            return {"ok": True}
        fields = slack.slash_command(self.workspace, user, channel, text)
        target = ResponseTarget(user.id, channel, text, None)
        status = self._send(slack.form(fields), target, user, channel, "/tflock")
        return {"ok": status == 200}

    def action(self, data: dict[str, Any]) -> dict[str, Any]:
        user = self._person(data.get("user"))
        message = self.workspace.message(str(data.get("ts") or ""))
        if message is None or message.visible_to not in (None, user.id):
            raise Problem(404, "that message is gone")
        action_id, block_id = str(data.get("action_id") or ""), str(data.get("block_id") or "")
        element = _find_element(message.blocks, block_id, action_id)
        if element is None:
            raise Problem(404, "that button is no longer on the message")
        payload = slack.block_action(self.workspace, user, message, element, block_id)
        target = ResponseTarget(user.id, message.channel, None, message.ts)
        status = self._send(slack.payload_form(payload), target, user, message.channel, "That action")
        return {"ok": status == 200}

    def submit(self, data: dict[str, Any]) -> dict[str, Any]:
        user = self._person(data.get("user"))
        opened = self.workspace.open_view(user.id)
        if opened is None or opened.id != data.get("view_id"):
            raise Problem(404, "that form is no longer open")
        values = {str(k): str(v) for k, v in (data.get("values") or {}).items()}
        payload = slack.view_submission(self.workspace, user, opened, values)
        if not self.workspace.bot_url:
            raise Problem(503, "the bot is still starting; try again in a moment")
        status, answer = slack.deliver(self.workspace, slack.payload_form(payload))
        if status != 200:
            return {"ok": False, "error": "We had some trouble connecting. Try again?"}
        response = json.loads(answer) if answer.strip() else {}
        if isinstance(response, dict) and response.get("response_action") == "errors":
            errors = {str(k): str(v) for k, v in (response.get("errors") or {}).items()}
            self.workspace.show_view(opened, opened.view, errors)
            return {"ok": False, "errors": errors}
        if isinstance(response, dict) and response.get("response_action") == "update" and response.get("view"):
            self.workspace.show_view(opened, response["view"], {})
            return {"ok": True}
        self.workspace.close_view(user.id)
        return {"ok": True}

    def close(self, data: dict[str, Any]) -> dict[str, Any]:
        self.workspace.close_view(self._person(data.get("user")).id)
        return {"ok": True}

    def terraform(self, data: dict[str, Any]) -> dict[str, Any]:
        user = self._person(data.get("user"))
        state = world.state_named(str(data.get("state") or ""))
        if state is None:
            raise Problem(400, "pick one of the demo's states")
        try:
            result = terraform.plan(
                state.backend,
                self.aws("s3"),
                self.aws("dynamodb"),
                state.address,
                who=f"{user.name}@{user.name}-laptop",
                version="1.10.6" if state.backend.tool == "OpenTofu" else "1.11.4",
                now=datetime.now(UTC),
            )
        except Exception as exc:  # the embedded AWS itself failed: say so, never pretend
            log.exception("terraform plan against the embedded AWS failed")
            raise Problem(502, f"the embedded AWS did not answer ({type(exc).__name__})") from None
        return {"ok": True, "acquired": result.acquired, "output": result.output, "state": state.path}


def _find_element(blocks: list[Any], block_id: str, action_id: str) -> dict[str, Any] | None:
    for index, block in enumerate(blocks):
        if str(block.get("block_id") or f"b{index}") != block_id:
            continue
        elements = list(block.get("elements") or [])
        if block.get("accessory"):
            elements.append(block["accessory"])
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element
    return None


def parse_api_body(raw: bytes, content_type: str, query: str) -> dict[str, Any]:
    """A Web API call's arguments: query string, form or JSON body; JSON-valued form fields decoded."""
    params: dict[str, Any] = dict(urllib.parse.parse_qsl(query))
    text = raw.decode("utf-8", "replace")
    if text.strip():
        if "json" in content_type:
            body = json.loads(text)
            if isinstance(body, dict):
                params.update(body)
        else:
            params.update(urllib.parse.parse_qsl(text, keep_blank_values=True))
    for key in _JSON_FIELDS:
        if isinstance(params.get(key), str) and params[key].strip()[:1] in ("[", "{"):
            params[key] = json.loads(params[key])
    return params


def make_server(port: int, demo: Demo) -> ThreadingHTTPServer:
    """Bind 127.0.0.1:port (OSError when taken); the caller runs serve_forever."""
    allowed_hosts: set[str] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "tflock-demo"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

        def _reply(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._reply(status, json.dumps(value).encode(), "application/json; charset=utf-8")

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                raise Problem(413, "too large")
            return self.rfile.read(length) if length else b""

        def _host_ok(self) -> bool:
            # DNS rebinding: only answer requests addressed to this loopback server by name or address
            return self.headers.get("Host", "") in allowed_hosts

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if not self._host_ok():
                self._json(421, {"error": "this demo answers only to 127.0.0.1 and localhost"})
                return
            if url.path in STATIC:
                headers = {
                    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
                }
                self._reply(200, demo.pages[url.path], STATIC[url.path][1], headers)
                return
            query = dict(urllib.parse.parse_qsl(url.query))
            if url.path == "/healthz":
                parts = demo.ready()
                up = all(value == "ready" for value in parts.values())
                self._json(200 if up else 503, {"status": "alive" if up else "starting", **parts})
            elif url.path == "/demo/setup":
                self._json(200, demo.setup())
            elif url.path == "/demo/state":
                user = str(query.get("user") or "")
                after = int(query.get("after") or -1)
                if after == demo.workspace.version:
                    demo.workspace.wait(after, POLL_SECONDS)
                self._json(200, demo.workspace.snapshot(user))
            elif url.path.startswith("/demo/files/"):
                file_id = url.path.split("/")[3]
                found = demo.workspace.file(file_id)
                if found is None:
                    self._json(404, {"error": "no such file"})
                    return
                name = urllib.parse.quote(found["name"])
                kind = "text/csv; charset=utf-8" if found["name"].endswith(".csv") else "application/octet-stream"
                self._reply(200, found["data"], kind, {"Content-Disposition": f"attachment; filename*=UTF-8''{name}"})
            else:
                self._json(404, {"error": "not found"})

        def do_POST(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            try:
                raw = self._body()
                if url.path.startswith("/api/"):  # Slack's Web API, for the bot
                    params = parse_api_body(raw, self.headers.get("Content-Type", ""), url.query)
                    auth = self.headers.get("Authorization", "")
                    token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else params.get("token")
                    self._json(200, demo.workspace.api(url.path.removeprefix("/api/"), params, token))
                    return
                if url.path.startswith("/demo/response/"):
                    body = json.loads(raw or b"{}")
                    if not isinstance(body, dict):
                        raise Problem(400, "a response_url takes a JSON object")
                    found = demo.workspace.respond(url.path.rsplit("/", 1)[1], body)
                    self._reply(200 if found else 404, b"ok" if found else b"expired_url", "text/plain")
                    return
                if url.path.startswith("/demo/upload/"):
                    stored = demo.workspace.upload(url.path.rsplit("/", 1)[1], raw)
                    self._reply(200 if stored else 400, b"OK - %d" % len(raw), "text/plain")
                    return
                # The page's own API: same origin only (a custom header forces a CORS preflight we never grant)
                if not self._host_ok() or self.headers.get("X-Tflock-Demo") != "1":
                    raise Problem(403, "requests to the demo come from its own page")
                data = json.loads(raw or b"{}")
                if not isinstance(data, dict):
                    raise Problem(400, "expected a JSON object")
                handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
                    "/demo/command": demo.command,
                    "/demo/action": demo.action,
                    "/demo/submit": demo.submit,
                    "/demo/close": demo.close,
                    "/demo/terraform": demo.terraform,
                }
                handler = handlers.get(url.path)
                if handler is None:
                    raise Problem(404, "not found")
                self._json(200, handler(data))
            except Problem as problem:
                self._json(problem.status, {"ok": False, "error": str(problem)})
            except (ValueError, SlackError) as exc:
                self._json(400, {"ok": False, "error": f"bad request: {exc}"})

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = False  # a port in use must say so, not be shared

    server = Server(("127.0.0.1", port), Handler)
    bound = server.server_address[1]
    allowed_hosts.update({f"127.0.0.1:{bound}", f"localhost:{bound}"})
    return server


def serve_in_thread(server: ThreadingHTTPServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, name="tflock-demo-page", daemon=True)
    thread.start()
    return thread
