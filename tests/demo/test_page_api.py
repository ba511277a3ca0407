"""The demo's Slack Web API answers the bot as Slack does, refusals included."""

from __future__ import annotations

import json

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.demo.slack import ALICE, CHANNEL, Workspace, direct_channel
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
            lambda: client.views_open(trigger_id="made-up", view=views.reason_modal("a/b", None, None)),
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
