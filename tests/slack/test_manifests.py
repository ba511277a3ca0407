"""The app manifests must declare exactly what the code registers and calls."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bot.slack.ids import COMMAND

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = {"http": ROOT / "manifests/slack-app.http.json", "socket": ROOT / "manifests/slack-app.socket-mode.json"}
# Web API methods the bot may call (as WebClient method names), and the bot scope each needs.
SCOPES = {
    "auth_test": None,
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "chat_getPermalink": None,  # needs no scope
    "chat_postEphemeral": "chat:write",
    "usergroups_users_list": "usergroups:read",
    "users_info": "users:read",
    "users_list": "users:read",  # the stale-lock alert's holder (profile.email only with users:read.email)
    "views_open": None,
    "views_update": None,
    "files_getUploadURLExternal": "files:write",
    "files_completeUploadExternal": "files:write",
    "files_upload_v2": "files:write",
    "conversations_open": "im:write",
}


def load(kind: str) -> dict[str, Any]:
    return json.loads(MANIFESTS[kind].read_text())


def called_methods() -> set[str]:
    methods: set[str] = set()
    for path in (ROOT / "bot" / "slack").rglob("*.py"):  # Slack I/O lives only in bot/slack
        methods |= set(re.findall(r"\bclient\.([a-zA-Z]+_[a-zA-Z0-9_]+)\(", path.read_text()))
    return methods


@pytest.mark.parametrize("kind", ["http", "socket"])
def test_commands_match_the_code(kind: str) -> None:
    commands = [c["command"] for c in load(kind)["features"]["slash_commands"]]
    assert commands == [COMMAND]


@pytest.mark.parametrize("kind", ["http", "socket"])
def test_every_called_method_has_its_scope(kind: str) -> None:
    scopes = set(load(kind)["oauth_config"]["scopes"]["bot"])
    assert "commands" in scopes
    for method in called_methods():
        assert method in SCOPES, f"bot/ calls client.{method}: add it (and its scope) to this test and the manifests"
        needed = SCOPES[method]
        assert needed is None or needed in scopes, f"client.{method} needs {needed}"


def test_http_manifest_points_everything_at_slack_events() -> None:
    manifest = load("http")
    assert manifest["settings"]["socket_mode_enabled"] is False
    assert manifest["settings"]["interactivity"]["is_enabled"] is True
    urls = [c["url"] for c in manifest["features"]["slash_commands"]]
    urls.append(manifest["settings"]["interactivity"]["request_url"])
    assert all(url.startswith("https://") and url.endswith("/slack/events") for url in urls)


def test_socket_manifest_has_no_urls() -> None:
    manifest = load("socket")
    assert manifest["settings"]["socket_mode_enabled"] is True
    assert manifest["settings"]["interactivity"] == {"is_enabled": True}
    assert all("url" not in c for c in manifest["features"]["slash_commands"])


def test_both_manifests_agree_apart_from_transport() -> None:
    http, socket = load("http"), load("socket")
    assert http["oauth_config"] == socket["oauth_config"]
    assert http["display_information"] == socket["display_information"]


def test_the_method_search_sees_every_call_kind() -> None:
    """The upload and chat_postMessage are called today; a search that missed them would pass vacuously."""
    expected = {"chat_postMessage", "chat_update", "conversations_open", "files_getUploadURLExternal"}
    assert expected | {"files_completeUploadExternal"} <= called_methods()


def scopes_named(text: str) -> set[str]:
    return set(re.findall(r"`(commands|[a-z]+:[a-z][a-z.:]*)`", text)) - {"connections:write"}  # app-level token


@pytest.mark.parametrize("doc", ["README.md", "docs/install.md", "docs/design.md"])
def test_docs_name_exactly_the_manifest_scopes(doc: str) -> None:
    scopes = set(load("http")["oauth_config"]["scopes"]["bot"])
    assert scopes_named((ROOT / doc).read_text(encoding="utf-8")) == scopes
