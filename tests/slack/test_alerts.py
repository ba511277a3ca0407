"""The Slack side of stale-lock alerts: who a lock's `Who` is in Slack, and the messages themselves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.locks.address import StateAddress
from bot.locks.facts import lock_facts
from bot.locks.model import LockSnapshot, StateLock, Store
from bot.slack import people
from bot.slack.alerts import alert_message, released_message
from bot.slack.people import SlackUsers, matching_members, who_user
from bot.unlock.models import RequestView, Status
from bot.watch.watchdog import Alert, Release
from tests.fakeslack import FakeSlack
from tests.terraform import TerraformLock, go_time

NOW = datetime(2026, 3, 4, 15, 12, tzinfo=UTC)
CREATED = NOW - timedelta(hours=5, minutes=12)


def member(user_id: str, name: str, **extra: Any) -> dict[str, Any]:
    profile = extra.pop("profile", {})
    return {"id": user_id, "name": name, "deleted": False, "is_bot": False, "profile": profile, **extra}


@pytest.mark.parametrize(
    ("who", "user"),
    [
        ("alice@build-agent-07", "alice"),
        ("Alice@BUILD-AGENT", "alice"),
        ("CORP\\bob<x>&@WS-01", "bob<x>&"),
        ("CORP\\Bob@WS-01", "bob"),
        ("runner@ip-10-0-1-23.ec2.internal", "runner"),
        ("carol@corp.example@laptop", "carol"),  # a UPN-style user name
        ("@jenkins-slave-3pn5c-2t2bw", None),  # user.Current() failed: no user part
        ("", None),
        ("CORP\\@WS-01", None),
    ],
)
def test_the_user_part_of_who(who: str, user: str | None) -> None:
    assert who_user(who) == user


def test_matching_is_on_name_display_name_real_name_or_email_local_part_humans_only() -> None:
    members = [
        member("U1", "alice"),
        member("U2", "b.smith", profile={"display_name": "Bob"}),
        member("U3", "carol.k", profile={"real_name": "carol"}),
        member("U4", "dave.x", profile={"email": "DAVE@acme.test"}),
        member("U5", "ci", is_bot=True),
        member("U6", "erin", deleted=True),
        member("U7", "deploy", is_app_user=True),
        member("USLACKBOT", "slackbot"),
    ]
    assert matching_members("ALICE", members) == {"U1"}
    assert matching_members("bob", members) == {"U2"}
    assert matching_members("carol", members) == {"U3"}
    assert matching_members("dave", members) == {"U4"}
    for nobody in ("ci", "erin", "deploy", "slackbot", "acme.test", "zed"):
        assert matching_members(nobody, members) == set()


def test_the_holder_is_mentioned_only_when_unambiguous(slack: FakeSlack) -> None:
    slack.users["U1"] = member("U1", "alice")
    slack.users["U2"] = member("U2", "sam", profile={"real_name": "Sam"})
    slack.users["U3"] = member("U3", "samuel", profile={"display_name": "sam"})
    users = SlackUsers(WebClient(token="xoxb-unit", base_url=slack.api_url))
    assert users.holder("alice@host") == "U1"
    assert users.holder("sam@host") is None  # two people answer to sam
    assert users.holder("@host") is None
    assert users.holder(None) is None


def test_members_are_read_page_by_page_and_cached(slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(people, "USERS_PAGE", 2)
    for n in range(5):
        slack.users[f"U{n}"] = member(f"U{n}", f"user{n}")
    now = [0.0]
    users = SlackUsers(WebClient(token="xoxb-unit", base_url=slack.api_url), clock=lambda: now[0])
    assert users.holder("user4@host") == "U4"
    pages = slack.calls_to("/api/users.list")
    assert [(c.body.get("cursor"), c.body.get("limit")) for c in pages] == [(None, "2"), ("2", "2"), ("4", "2")]
    now[0] += 599
    assert users.holder("user0@host") == "U0"
    assert len(slack.calls_to("/api/users.list")) == 3
    now[0] += 2
    users.holder("user0@host")
    assert len(slack.calls_to("/api/users.list")) == 6


def test_no_users_read_permission_means_no_mention_not_no_alert(slack: FakeSlack) -> None:
    slack.users["U1"] = member("U1", "alice")
    slack.fail["users.list"] = "missing_scope"
    assert SlackUsers(WebClient(token="xoxb-unit", base_url=slack.api_url)).holder("alice@host") is None


def _lock(who: str = "alice@build-agent-07") -> tuple[StateLock, TerraformLock]:
    address = StateAddress("acme-tfstate", "network/terraform.tfstate")
    tf_lock = TerraformLock(address, who=who, created=go_time(CREATED))
    snapshot = LockSnapshot.from_raw(
        tf_lock.address, Store.TABLE, "DynamoDB table terraform-locks", "terraform-locks", tf_lock.info_json
    )
    return StateLock(tf_lock.address, "default", table=snapshot), tf_lock


def test_the_alert_names_holder_operation_age_and_has_the_unlock_button() -> None:
    lock, tf_lock = _lock("<!channel>@evil")
    facts = lock_facts(lock, NOW, timedelta(hours=2))
    message = alert_message(facts, "U0ALICE01", stale_after=timedelta(hours=2), pin="pin-" + "a" * 28)
    shown = json.dumps(message.as_kwargs(), ensure_ascii=False)
    assert "&lt;!channel&gt;@evil (<@U0ALICE01>)" in shown and "<!channel>" not in shown
    for fact in ("acme-tfstate/network/terraform.tfstate", tf_lock.id, "apply (or destroy)", "5h 12m", "2h"):
        assert fact in shown
    actions = [b for b in message.as_kwargs()["blocks"] if b["type"] == "actions"]
    assert actions[0]["elements"][0]["value"] == "pin-" + "a" * 28  # the pinned lock's short ID
    assert message.text.endswith("<@U0ALICE01>")


def _alert(raw_info: str, lock_id: str | None) -> Alert:
    return Alert(
        id=1,
        lock_key="k",
        address="acme-tfstate/network/terraform.tfstate",
        backend="default",
        lock_id=lock_id,
        raw_info=raw_info,
        lock_created_at=CREATED,
        channel="C0WATCH001",
        message_ts="1700000000.000001",
        posted_at=CREATED + timedelta(hours=2),
        reminded_at=None,
        released_at=None,
    )


def test_the_released_alert_says_how_long_and_by_whom() -> None:
    _, tf_lock = _lock()
    alert = _alert(tf_lock.info_json, tf_lock.id)
    plain = released_message(alert, Release(NOW, NOW - CREATED, None))
    assert plain.text == "Lock on acme-tfstate/network/terraform.tfstate released after 5h 12m"
    assert "alice@build-agent-07" in json.dumps(plain.as_kwargs())
    request = RequestView(
        id="r",
        address=alert.address,
        lock_id=tf_lock.id,
        raw_info=tf_lock.info_json,
        held_in=(Store.TABLE,),
        lockfile_etag=None,
        requester="U0ALICE01",
        reason="stuck",
        channel=None,
        message_ts=None,
        status=Status.EXECUTED,
        approvals_required=2,
        approvers=("U0BOB0001", "U0CAROL01"),
        created_at=NOW,
        expires_at=NOW,
        decided_at=NOW,
        decided_by="U0CAROL01",
        executing_at=NOW,
        finished_at=NOW,
        outcome=None,
    )
    by_tflock = json.dumps(released_message(alert, Release(NOW, NOW - CREATED, request)).as_kwargs())
    assert "released after 5h 12m by tflock" in by_tflock.lower()
    assert "requested by <@U0ALICE01>, approved by <@U0BOB0001>, <@U0CAROL01>" in by_tflock
    unknown = released_message(_alert("<garbage>", None), Release(NOW, None, None))
    assert unknown.text == "Lock on acme-tfstate/network/terraform.tfstate released"
    assert "unreadable" in json.dumps(unknown.as_kwargs())
