"""The demo's Slack: a workspace with four people, `#incident` and direct messages, playing both ends.

For the bot it is Slack's Web API (the methods tflock calls, with Slack's answers and error codes); for the
person in the browser it is the Slack client: slash commands, button clicks and modal submissions become
requests signed with the signing secret (v0 HMAC-SHA256) and posted to the bot's `/slack/events`, and
whatever the bot answers — the ack body, `response_url` posts, Web API calls — lands in the conversation.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

TEAM_ID = "T0DEMO001"
TEAM_DOMAIN = "acme-demo"
APP_ID = "A0TFLOCK1"
BOT_USER = "U0TFLOCK1"
BOT_ID = "B0TFLOCK1"
CHANNEL = "C0INCIDENT"
CHANNEL_NAME = "incident"
SRE_GROUP = "S0SRETEAM"
SRE_HANDLE = "sre"
DELIVERY_TIMEOUT = 10.0  # Slack itself gives up after 3 s; a cold bot on a busy laptop gets some slack
MAX_FILE_BYTES = 5 * 1024 * 1024
MAX_MESSAGES = 2000
MAX_URLS = 1000
TRIGGER_SECONDS = 30.0  # Slack's trigger IDs live 3 s; a demo on a loaded machine is given longer


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    real_name: str
    role: str  # shown next to the name: what this person may do

    def as_user(self) -> dict[str, Any]:
        """users.info's `user` object for a full member of the demo workspace."""
        return {
            "id": self.id,
            "team_id": TEAM_ID,
            "name": self.name,
            "real_name": self.real_name,
            "deleted": False,
            "is_bot": False,
            "is_app_user": False,
            "is_restricted": False,
            "is_ultra_restricted": False,
            "tz": "Europe/London",
            "profile": {
                "real_name": self.real_name,
                "display_name": self.name,
                "email": f"{self.name}@acme.example",
                "title": self.role,
            },
        }


ALICE = Person("U0ALICE01", "alice", "Alice Archer", "SRE · may approve")
BOB = Person("U0BOB0002", "bob", "Bob Brooks", "SRE · may approve")
MALLORY = Person("U0MALLORY", "mallory", "Mallory Moss", "Developer · may not approve")
GRACE = Person("U0GRACE01", "grace", "Grace Green", "Engineering manager · audits")
PEOPLE = (ALICE, BOB, MALLORY, GRACE)
APPROVERS = (SRE_GROUP,)  # TFLOCK_APPROVERS: the @sre user group
AUDITORS = (GRACE.id,)  # TFLOCK_AUDITORS
SRE_MEMBERS = (ALICE.id, BOB.id)


def person(user_id: str) -> Person | None:
    return next((p for p in PEOPLE if p.id == user_id), None)


def direct_channel(user_id: str) -> str:
    """The bot's direct-message conversation with one person."""
    return "D" + user_id[1:]


def sign(secret: str, body: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Slack sends with every request: v0 HMAC-SHA256 over `v0:{timestamp}:{body}`."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": f"v0={digest}",
    }


class SlackError(Exception):
    """A Web API call Slack would refuse; the message is Slack's error code."""


@dataclass
class Message:
    ts: str
    channel: str
    user: str
    text: str
    blocks: list[Any] = field(default_factory=list)
    thread_ts: str | None = None
    visible_to: str | None = None  # ephemeral: only this person sees it
    files: list[dict[str, Any]] = field(default_factory=list)
    command: str | None = None  # the slash command a person typed, shown above an in-channel answer
    rev: int = 0
    edited: bool = False

    def as_json(self) -> dict[str, Any]:
        author = person(self.user)
        return {
            "ts": self.ts,
            "channel": self.channel,
            "user": self.user,
            "author": "tflock"
            if self.user == BOT_USER
            else "Slackbot"
            if self.user == "USLACKBOT"
            else (author.real_name if author else self.user),
            "bot": self.user == BOT_USER,
            "text": self.text,
            "blocks": self.blocks,
            "thread_ts": self.thread_ts,
            "ephemeral": self.visible_to is not None,
            "files": [{k: f[k] for k in ("id", "name", "title", "size", "url")} for f in self.files],
            "command": self.command,
            "rev": self.rev,
            "edited": self.edited,
        }


@dataclass
class ResponseTarget:
    """What a response_url stands for: who asked, where, and the message a click came from."""

    user: str
    channel: str
    command: str | None
    source_ts: str | None


@dataclass
class OpenView:
    id: str
    user: str
    view: dict[str, Any]
    hash: str
    errors: dict[str, str] = field(default_factory=dict)


def _bounded_put(store: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    store[key] = value
    while len(store) > limit:
        store.popitem(last=False)


class Workspace:
    """Everything Slack holds, behind one condition variable; `version` moves on every change."""

    def __init__(self, token: str, secret: str, base_url: str) -> None:
        self.token = token
        self.secret = secret
        self.base_url = base_url.rstrip("/")  # where this page is served; response_urls point here
        self.bot_url = ""  # the bot's /slack/events, set once the bot is listening
        self.version = 0
        self.messages: OrderedDict[str, Message] = OrderedDict()
        self.views: dict[str, OpenView] = {}  # by user: the modal open in front of them
        self.files: dict[str, dict[str, Any]] = {}
        self.responses: OrderedDict[str, ResponseTarget] = OrderedDict()
        self.triggers: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self.unknown_methods: list[str] = []
        self._changed = threading.Condition()
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._epoch = int(time.time())

    # -- bookkeeping --------------------------------------------------------------------------
    def _next_ts(self) -> str:
        return f"{self._epoch}.{next(self._ts):06d}"

    def _touch(self) -> None:
        self.version += 1
        self._changed.notify_all()

    def wait(self, after: int, timeout: float) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self.version != after, timeout)
            return self.version

    def _add(self, message: Message) -> Message:
        _bounded_put(self.messages, message.ts, message, MAX_MESSAGES)
        self._touch()
        return message

    def _known_channel(self, channel: str) -> bool:
        return channel == CHANNEL or any(channel == direct_channel(p.id) for p in PEOPLE)

    def new_response_url(self, target: ResponseTarget) -> str:
        token = secrets.token_urlsafe(12)
        with self._changed:
            _bounded_put(self.responses, token, target, MAX_URLS)
        return f"{self.base_url}/demo/response/{token}"

    def new_trigger(self, user: str) -> str:
        trigger = f"{int(time.time())}.{next(self._ids)}.{secrets.token_hex(8)}"
        with self._changed:
            _bounded_put(self.triggers, trigger, (user, time.monotonic()), MAX_URLS)
        return trigger

    # -- the browser's view -------------------------------------------------------------------
    def snapshot(self, user: str) -> dict[str, Any]:
        with self._changed:
            visible = [
                m.as_json()
                for m in self.messages.values()
                if (m.visible_to in (None, user)) and (m.channel == CHANNEL or m.channel == direct_channel(user))
            ]
            open_view = self.views.get(user)
            return {
                "version": self.version,
                "messages": visible,
                "view": None
                if open_view is None
                else {"id": open_view.id, "view": open_view.view, "errors": open_view.errors},
            }

    def say(self, user: str, channel: str, text: str) -> Message:
        """A person's ordinary message (not a command)."""
        if not self._known_channel(channel):
            raise SlackError("channel_not_found")
        typed = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # as Slack's client sends it
        with self._changed:
            return self._add(Message(self._next_ts(), channel, user, typed))

    def tell(self, user: str, channel: str, text: str) -> None:
        """What the Slack client itself shows someone (e.g. `/tflock failed with the error …`)."""
        with self._changed:
            self._add(Message(self._next_ts(), channel, "USLACKBOT", text, visible_to=user))

    def message(self, ts: str) -> Message | None:
        with self._changed:
            return self.messages.get(ts)

    def open_view(self, user: str) -> OpenView | None:
        with self._changed:
            return self.views.get(user)

    def show_view(self, opened: OpenView, view: dict[str, Any], errors: dict[str, str]) -> None:
        """A submission's answer: the same modal with errors under its inputs, or an updated view."""
        with self._changed:
            opened.view, opened.errors = view, errors
            self._touch()

    def close_view(self, user: str) -> None:
        with self._changed:
            if self.views.pop(user, None) is not None:
                self._touch()

    # -- Slack's Web API, for the bot ---------------------------------------------------------
    def api(self, method: str, params: dict[str, Any], token: str | None) -> dict[str, Any]:
        if token != self.token:
            return {"ok": False, "error": "invalid_auth" if token else "not_authed"}
        handler = getattr(self, "_api_" + method.replace(".", "_"), None)
        if handler is None:
            with self._changed:
                self.unknown_methods.append(method)
            return {"ok": False, "error": "unknown_method"}
        try:
            with self._changed:
                answer: dict[str, Any] = handler(params)
        except SlackError as exc:
            return {"ok": False, "error": str(exc)}
        return {"ok": True, **answer}

    def _api_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.test/",
            "team": "Acme (demo)",
            "user": "tflock",
            "team_id": TEAM_ID,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _api_users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = str(params.get("user") or "")
        if user_id == BOT_USER:
            return {"user": {"id": BOT_USER, "team_id": TEAM_ID, "name": "tflock", "is_bot": True, "deleted": False}}
        found = person(user_id)
        if found is None:
            raise SlackError("user_not_found")
        return {"user": found.as_user()}

    def _api_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"members": [p.as_user() for p in PEOPLE], "response_metadata": {"next_cursor": ""}}

    def _api_usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("usergroup") != SRE_GROUP:
            raise SlackError("no_such_subteam")
        return {"users": list(SRE_MEMBERS)}

    def _api_conversations_open(self, params: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(params.get("users") or "").split(",") if u]
        if len(users) != 1 or person(users[0]) is None:
            raise SlackError("user_not_found")
        return {"channel": {"id": direct_channel(users[0])}}

    def _message_fields(self, params: dict[str, Any]) -> tuple[str, list[Any]]:
        text = str(params.get("text") or "")
        blocks = params.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        if not text and not blocks:
            raise SlackError("no_text")
        if len(blocks) > 50:
            raise SlackError("invalid_blocks")
        return text, list(blocks)

    def _api_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not self._known_channel(channel):
            raise SlackError("channel_not_found")
        text, blocks = self._message_fields(params)
        thread = params.get("thread_ts")
        if thread and thread not in self.messages:
            raise SlackError("thread_not_found")
        message = self._add(Message(self._next_ts(), channel, BOT_USER, text, blocks, thread_ts=thread or None))
        return {"channel": channel, "ts": message.ts, "message": {"text": text, "ts": message.ts}}

    def _api_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get(str(params.get("ts") or ""))
        if message is None or message.channel != params.get("channel") or message.visible_to is not None:
            raise SlackError("message_not_found")
        if message.user != BOT_USER:
            raise SlackError("cant_update_message")
        message.text, message.blocks = self._message_fields(params)
        message.rev += 1
        message.edited = True
        self._touch()
        return {"channel": message.channel, "ts": message.ts, "text": message.text}

    def _api_chat_getPermalink(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get(str(params.get("message_ts") or ""))
        if message is None or message.channel != params.get("channel"):
            raise SlackError("message_not_found")
        link = f"https://{TEAM_DOMAIN}.slack.test/archives/{message.channel}/p{message.ts.replace('.', '')}"
        return {"channel": message.channel, "permalink": link}

    def _api_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, user = str(params.get("channel") or ""), str(params.get("user") or "")
        if not self._known_channel(channel):
            raise SlackError("channel_not_found")
        if person(user) is None:
            raise SlackError("user_not_found")
        text, blocks = self._message_fields(params)
        message = self._add(
            Message(self._next_ts(), channel, BOT_USER, text, blocks, params.get("thread_ts"), visible_to=user)
        )
        return {"message_ts": message.ts}

    def _view(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if isinstance(view, str):
            view = json.loads(view)
        if not isinstance(view, dict) or view.get("type") != "modal":
            raise SlackError("invalid_arguments")
        return view

    def _api_views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view(params)
        trigger = self.triggers.pop(str(params.get("trigger_id") or ""), None)
        if trigger is None:
            raise SlackError("invalid_trigger_id")
        user, issued = trigger
        if time.monotonic() - issued > TRIGGER_SECONDS:
            raise SlackError("expired_trigger_id")
        opened = OpenView(f"V{next(self._ids):08d}", user, view, secrets.token_hex(8))
        self.views[user] = opened
        self._touch()
        return {"view": {"id": opened.id, "hash": opened.hash, **view}}

    def _api_views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view = self._view(params)
        found = next((v for v in self.views.values() if v.id == params.get("view_id")), None)
        if found is None:
            raise SlackError("not_found")
        if params.get("hash") and params["hash"] != found.hash:
            raise SlackError("hash_conflict")
        found.view, found.hash, found.errors = view, secrets.token_hex(8), {}
        self._touch()
        return {"view": {"id": found.id, "hash": found.hash, **view}}

    def _api_files_getUploadURLExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        name = str(params.get("filename") or "")
        length = int(params.get("length") or 0)
        if not name or length <= 0:
            raise SlackError("invalid_arguments")
        if length > MAX_FILE_BYTES:
            raise SlackError("file_too_large")
        file_id = f"F{next(self._ids):08d}"
        self.files[file_id] = {"id": file_id, "name": name, "title": name, "size": length, "data": None}
        return {"upload_url": f"{self.base_url}/demo/upload/{file_id}", "file_id": file_id}

    def upload(self, file_id: str, data: bytes) -> bool:
        with self._changed:
            found = self.files.get(file_id)
            if found is None or found["data"] is not None or len(data) != found["size"]:
                return False
            found["data"] = data
            return True

    def _api_files_completeUploadExternal(self, params: dict[str, Any]) -> dict[str, Any]:
        listed = params.get("files")
        if isinstance(listed, str):
            listed = json.loads(listed)
        if not isinstance(listed, list) or not listed:
            raise SlackError("invalid_arguments")
        shared = []
        for entry in listed:
            found = self.files.get(str(entry.get("id")))
            if found is None or found["data"] is None:
                raise SlackError("file_not_found")
            found["title"] = str(entry.get("title") or found["name"])
            found["url"] = f"/demo/files/{found['id']}/{urllib.parse.quote(found['name'])}"
            shared.append(found)
        channel = str(params.get("channel_id") or "")
        if channel:
            if not self._known_channel(channel):
                raise SlackError("channel_not_found")
            comment = str(params.get("initial_comment") or "")
            self._add(
                Message(self._next_ts(), channel, BOT_USER, comment, thread_ts=params.get("thread_ts"), files=shared)
            )
        return {"files": [{"id": f["id"], "title": f["title"], "name": f["name"]} for f in shared]}

    def file(self, file_id: str) -> dict[str, Any] | None:
        with self._changed:
            found = self.files.get(file_id)
            return dict(found) if found is not None and found["data"] is not None else None

    # -- response_url -------------------------------------------------------------------------
    def respond(self, token: str, body: dict[str, Any]) -> bool:
        """A post to a response_url: ephemeral by default, in_channel, or replacing/deleting the source."""
        with self._changed:
            target = self.responses.get(token)
            if target is None:
                return False
            self._apply_response(target, body)
            return True

    def answer_inline(self, target: ResponseTarget, body: dict[str, Any]) -> None:
        """The body of an ack (the HTTP response to a slash command or click) is a response too."""
        with self._changed:
            self._apply_response(target, body)

    def _apply_response(self, target: ResponseTarget, body: dict[str, Any]) -> None:
        source = self.messages.get(target.source_ts) if target.source_ts else None
        if body.get("delete_original") and source is not None:
            del self.messages[source.ts]
            self._touch()
            return
        text = str(body.get("text") or "")
        blocks = list(body.get("blocks") or [])
        if not text and not blocks:
            return
        if body.get("replace_original") and source is not None:
            source.text, source.blocks, source.rev, source.edited = text, blocks, source.rev + 1, True
            self._touch()
            return
        in_channel = body.get("response_type") == "in_channel"
        self._add(
            Message(
                self._next_ts(),
                target.channel,
                BOT_USER,
                text,
                blocks,
                thread_ts=body.get("thread_ts"),
                visible_to=None if in_channel else target.user,
                command=target.command if in_channel else None,
            )
        )


# -- what the Slack client sends the bot ------------------------------------------------------
def slash_command(workspace: Workspace, user: Person, channel: str, text: str) -> dict[str, str]:
    command, _, argument = text.strip().partition(" ")
    url = workspace.new_response_url(ResponseTarget(user.id, channel, text.strip(), None))
    return {
        "token": "verification-token-unused",
        "team_id": TEAM_ID,
        "team_domain": TEAM_DOMAIN,
        "channel_id": channel,
        "channel_name": CHANNEL_NAME if channel == CHANNEL else "directmessage",
        "user_id": user.id,
        "user_name": user.name,
        "command": command,
        # Slack sends & < > as entities, as it does for anything a person types
        "text": argument.strip().replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": url,
        "trigger_id": workspace.new_trigger(user.id),
    }


def _user(user: Person) -> dict[str, str]:
    return {"id": user.id, "username": user.name, "name": user.name, "team_id": TEAM_ID}


def block_action(
    workspace: Workspace, user: Person, message: Message, action: dict[str, Any], block_id: str
) -> dict[str, Any]:
    url = workspace.new_response_url(ResponseTarget(user.id, message.channel, None, message.ts))
    return {
        "type": "block_actions",
        "user": _user(user),
        "api_app_id": APP_ID,
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message.ts,
            "channel_id": message.channel,
            "is_ephemeral": message.visible_to is not None,
        },
        "trigger_id": workspace.new_trigger(user.id),
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": message.channel, "name": CHANNEL_NAME if message.channel == CHANNEL else "directmessage"},
        "message": {"type": "message", "ts": message.ts, "text": message.text, "blocks": message.blocks},
        "response_url": url,
        "actions": [
            {
                "type": action.get("type", "button"),
                "action_id": action.get("action_id"),
                "block_id": block_id,
                "text": action.get("text"),
                "value": action.get("value"),
                "style": action.get("style"),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def view_submission(workspace: Workspace, user: Person, opened: OpenView, values: dict[str, str]) -> dict[str, Any]:
    """The view's state.values as Slack builds them from the inputs' block and action IDs."""
    state: dict[str, dict[str, Any]] = {}
    for block in opened.view.get("blocks", []):
        if block.get("type") != "input":
            continue
        element = block.get("element") or {}
        block_id, action_id = str(block.get("block_id")), str(element.get("action_id"))
        state[block_id] = {action_id: {"type": element.get("type"), "value": values.get(f"{block_id}/{action_id}")}}
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": TEAM_DOMAIN},
        "user": _user(user),
        "api_app_id": APP_ID,
        "token": "verification-token-unused",
        "trigger_id": workspace.new_trigger(user.id),
        "view": {
            **opened.view,
            "id": opened.id,
            "team_id": TEAM_ID,
            "hash": opened.hash,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "state": {"values": state},
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


def deliver(workspace: Workspace, body: str) -> tuple[int, str]:
    """Post a signed request to the bot's /slack/events as Slack does; (status, body), 0 when unreachable."""
    request = urllib.request.Request(  # noqa: S310 (the loopback URL run_demo built)
        workspace.bot_url, data=body.encode(), headers=sign(workspace.secret, body), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=DELIVERY_TIMEOUT) as response:  # noqa: S310 (loopback URL we built)
            return int(response.status), response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError):
        return 0, ""


def form(fields: dict[str, str]) -> str:
    return urllib.parse.urlencode(fields)


def payload_form(payload: dict[str, Any]) -> str:
    return "payload=" + urllib.parse.quote(json.dumps(payload))
