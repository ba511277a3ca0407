"""The demo's Slack Web API answers the bot as Slack does, refusals included."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.demo.slack import ALICE, BOB, CHANNEL, ResponseTarget, Workspace, direct_channel
from bot.slack import views
from tests.demo.conftest import TOKEN


def test_the_web_api_refuses_what_slack_refuses(page_server: tuple[str, Workspace]) -> None:
    url, workspace = page_server
    client = WebClient(token=TOKEN, base_url=url + "/api/")
    stranger = WebClient(token="xoxb-someone-else", base_url=url + "/api/")
    for call, error in (
        (stranger.auth_test, "invalid_auth"),
        (lambda: client.chat_postMessage(channel="C0NOWHERE", text="x"), "channel_not_found"),
        (lambda: client.chat_update(channel=CHANNEL, ts="1.2", text="x"), "message_not_found"),
        (
            lambda: client.views_open(trigger_id="made-up", view=views.reason_modal("a/b", None)),
            "invalid_trigger_id",
        ),
        (lambda: client.usergroups_users_list(usergroup="S0OTHER"), "no_such_subteam"),
        (lambda: client.users_info(user="U0NOBODY"), "user_not_found"),
    ):
        with pytest.raises(SlackApiError) as raised:
            call()
        assert raised.value.response["error"] == error
    assert client.usergroups_users_list(usergroup="S0SRETEAM")["users"] == ["U0ALICE01", "U0BOB0002"]
    assert client.conversations_open(users=ALICE.id)["channel"]["id"] == direct_channel(ALICE.id)
    upload = client.files_upload_v2(channel=direct_channel(ALICE.id), content="a,b\r\n1,2\r\n", filename="x.csv")
    file_id = upload["files"][0]["id"]
    stored = workspace.file(file_id)
    assert stored is not None and stored["data"] == b"a,b\r\n1,2\r\n"
    assert json.loads(json.dumps(workspace.snapshot(ALICE.id)))["messages"][-1]["files"][0]["name"] == "x.csv"


def _post_json(url: str, body: dict[str, object]) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_response_urls_answer_as_slack_does(page_server: tuple[str, Workspace]) -> None:
    url, workspace = page_server
    client = WebClient(token=TOKEN, base_url=url + "/api/")
    source = client.chat_postMessage(channel=CHANNEL, text="a request with buttons")["ts"]

    def messages(user: str = ALICE.id) -> list[dict[str, object]]:
        return list(workspace.snapshot(user)["messages"])

    command = workspace.new_response_url(ResponseTarget(ALICE.id, CHANNEL, "/tflock list", None))
    assert _post_json(command, {"text": "just for Alice"})[0] == 200  # ephemeral is the default
    assert messages()[-1]["ephemeral"] and not any(m["text"] == "just for Alice" for m in messages(BOB.id))
    assert _post_json(command, {"response_type": "in_channel", "text": "for everyone"})[0] == 200
    shown = messages(BOB.id)[-1]
    assert (shown["text"], shown["ephemeral"], shown["command"]) == ("for everyone", False, "/tflock list")

    click = workspace.new_response_url(ResponseTarget(BOB.id, CHANNEL, None, source))
    assert _post_json(click, {"replace_original": True, "text": "replaced"})[0] == 200
    replaced = next(m for m in messages() if m["ts"] == source)
    assert (replaced["text"], replaced["edited"], replaced["rev"]) == ("replaced", True, 1)
    assert _post_json(click, {"delete_original": True})[0] == 200
    assert all(m["ts"] != source for m in messages())
    assert _post_json(url + "/demo/response/made-up", {"text": "x"}) == (404, "expired_url")


def test_what_people_type_is_sent_escaped(page_server: tuple[str, Workspace]) -> None:
    _, workspace = page_server
    workspace.say(ALICE.id, CHANNEL, "<!channel> & <https://evil.example|click>")
    assert workspace.snapshot(ALICE.id)["messages"][-1]["text"] == (
        "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"
    )
