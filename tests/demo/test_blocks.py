"""Everything the bot's view builders can send renders on the demo page, and mrkdwn cannot become markup.

The page server runs in-process here (no bot, no AWS): the test plays the bot, posting one message from
each builder in bot/slack/views.py and bot/slack/alerts.py through slack_sdk's WebClient, exactly as the
bot's own client posts them.
"""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from slack_sdk import WebClient

from bot.audit.models import AuditRecord
from bot.demo.slack import ALICE, CHANNEL, Workspace
from bot.history.query import PastLock
from bot.locks.address import StateAddress
from bot.locks.facts import lock_facts
from bot.locks.model import LockSnapshot, StateLock, Store
from bot.reports.report import AuditReport, Figures, LockAges, StateBlocking, Week
from bot.slack import alerts, views
from bot.unlock.models import RequestView, Status
from bot.watch.watchdog import Alert, Release
from tests.demo.conftest import TOKEN, accessibility_problems
from tests.terraform import TerraformLock, go_time

pytestmark = [pytest.mark.slow, pytest.mark.browser]

NOW = datetime.now(UTC)
ADDRESS = StateAddress("acme-tfstate", "network/terraform.tfstate")

TIMEOUT = 15_000


def _facts(problems: bool = False) -> Any:
    lock = TerraformLock(ADDRESS, who="runner@ci-7", created=go_time(NOW - timedelta(hours=3)))
    snapshot = LockSnapshot.from_raw(
        ADDRESS, Store.TABLE, "DynamoDB table terraform-locks", "terraform-locks", lock.info_json
    )
    facts = lock_facts(StateLock(ADDRESS, "default", table=snapshot), NOW, timedelta(hours=2))
    return lock, facts


def _request(lock: TerraformLock, status: Status, approvers: tuple[str, ...] = ()) -> RequestView:
    return RequestView(
        id="req-1",
        address=ADDRESS.lock_id,
        lock_id=lock.id,
        raw_info=lock.info_json,
        held_in=(Store.TABLE,),
        lockfile_etag=None,
        requester=ALICE.id,
        reason="CI job cancelled <b>really</b> & gone",
        channel=CHANNEL,
        message_ts=None,
        status=status,
        approvals_required=1,
        approvers=approvers,
        created_at=NOW,
        expires_at=NOW + timedelta(minutes=30),
        decided_at=None,
        decided_by=None,
        executing_at=None,
        finished_at=None,
        outcome="released from DynamoDB table terraform-locks" if status is Status.EXECUTED else None,
    )


def every_message() -> list[views.Message]:
    """One message of each kind the bot sends, from its own builders."""
    lock, facts = _facts()
    unlocked = lock_facts(StateLock(ADDRESS, "default"), NOW, timedelta(hours=2))
    many = [facts] * (views.MAX_LISTED + 2)
    record = AuditRecord(1, NOW, "approved", "U0BOB0002", ADDRESS.lock_id, lock.id, "req-1", CHANNEL, {}, "0", "1")
    alert = Alert(
        id=1,
        lock_key="k",
        address=ADDRESS.lock_id,
        backend="default",
        lock_id=lock.id,
        raw_info=lock.info_json,
        lock_created_at=NOW - timedelta(hours=3),
        channel=CHANNEL,
        message_ts="1.1",
        posted_at=NOW - timedelta(hours=1),
        reminded_at=None,
        released_at=None,
    )
    return [
        views.status_message(facts),
        views.status_message(unlocked),
        views.list_message(
            many, ["default: AccessDenied on dynamodb:Scan"], stale_only=False, pins={f.address: "p1" for f in many}
        ),
        views.list_message([], [], stale_only=True),
        views.help_message("Unknown command “frobnicate”."),
        views.error_message("AWS said no <to> & that"),
        views.approval_message(_request(lock, Status.PENDING), NOW),
        views.approval_message(_request(lock, Status.EXECUTED, ("U0BOB0002",)), NOW),
        views.audit_message([record], "since:7d"),
        views.audit_message([], ""),
        alerts.alert_message(facts, "U0BOB0002", stale_after=timedelta(hours=2)),
        alerts.released_message(
            alert, Release(NOW, timedelta(hours=3), _request(lock, Status.EXECUTED, ("U0BOB0002",)))
        ),
        views.history_message(str(ADDRESS), _history()),
        views.history_message(str(ADDRESS), []),
        views.report_message(_figures(), "3 charts sent to you in a direct message."),
    ]


def _history() -> list[PastLock]:
    start = NOW - timedelta(hours=6)
    return [
        PastLock(str(ADDRESS), "id-2", "runner@ci-7", "OperationTypePlan", start, start, NOW, None, None, None, True),
        PastLock(
            str(ADDRESS),
            "id-1",
            "<b>x</b>",
            "OperationTypeApply",
            None,
            start,
            start,
            NOW,
            "force_unlocked",
            "r-1",
            False,
        ),
    ]


def _figures() -> Figures:
    since = NOW - timedelta(days=90)
    report = AuditReport(
        since,
        NOW,
        None,
        {str(ADDRESS): {"2026-11": 2}},
        {ALICE.id: 2},
        {"U0BOB0002": 2},
        LockAges(0, 0, None, None, None),
        {"executed": 2},
        {"self_approval": 1},
        0,
    )
    weeks = tuple(Week(since.date() + timedelta(weeks=n), n % 2, n % 3) for n in range(13))
    blocking = (StateBlocking(str(ADDRESS), 4, 2, timedelta(hours=9)),)
    hour = timedelta(hours=1)
    return Figures(
        report, 4, 2, 1, 3, hour, 2 * hour, hour / 6, hour, blocking, weeks, (1, 2, 1, 0, 0, 0, 0, 0, 0), (hour,)
    )


def _types(value: Any, found: set[str]) -> set[str]:
    if isinstance(value, dict):
        if isinstance(value.get("type"), str):
            found.add(value["type"])
        for item in value.values():
            _types(item, found)
    elif isinstance(value, list):
        for item in value:
            _types(item, found)
    return found


def _kinds_the_bot_uses() -> set[str]:
    """The `type` of every Block Kit class the bot's Slack modules import."""
    kinds = set()
    for module in (views, alerts):
        for value in vars(module).values():
            if inspect.isclass(value) and value.__module__.startswith("slack_sdk.models.blocks"):
                kind = getattr(value, "type", None)
                if isinstance(kind, str):
                    kinds.add(kind)
    return kinds


def test_every_block_the_bot_sends_renders(page_server: tuple[str, Workspace], chromium: Any, artifacts: Path) -> None:
    url, workspace = page_server
    client = WebClient(token=TOKEN, base_url=url + "/api/")
    messages = every_message()
    used = _types([m.as_kwargs()["blocks"] for m in messages], set())
    used |= _types(views.reason_modal(ADDRESS.lock_id, CHANNEL).to_dict(), set())
    missing = _kinds_the_bot_uses() - used
    assert not missing, f"add a message using {missing} to every_message()"

    posted = [client.chat_postMessage(channel=CHANNEL, **m.as_kwargs())["ts"] for m in messages]
    client.chat_postMessage(channel=CHANNEL, thread_ts=posted[6], text=":ballot_box_with_check: <@U0BOB0002> approved")
    client.chat_postEphemeral(channel=CHANNEL, user=ALICE.id, text=":warning: only for Alice")
    client.views_open(
        trigger_id=workspace.new_trigger(ALICE.id), view=views.reason_modal(ADDRESS.lock_id, CHANNEL, lock_id="id-1")
    )

    page = chromium.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{url}/?as=alice")
    dialog = page.get_by_role("dialog", name="Request force-unlock")
    dialog.wait_for()
    assert dialog.get_by_label("Why is this lock stale?").get_attribute("maxlength")
    assert dialog.get_by_role("button", name="Request").is_visible()
    page.screenshot(path=str(artifacts / "modal.png"))
    assert accessibility_problems(page) == []
    dialog.get_by_role("button", name="Cancel").click()
    dialog.wait_for(state="hidden")

    page.locator("#messages > li.message").nth(len(messages)).wait_for()
    page.screenshot(path=str(artifacts / "every-block.png"), full_page=True)
    assert page.locator("[data-unsupported]").count() == 0, page.locator("[data-unsupported]").first.inner_text()
    assert accessibility_problems(page) == []
    assert page.locator("#messages > li.message").count() == len(messages) + 1  # + the ephemeral note
    for ts, message in zip(posted, messages, strict=True):
        shown = page.locator(f'li.message[data-ts="{ts}"]')
        assert shown.inner_text().strip(), f"{message.text} rendered nothing"
    assert page.locator('#messages [role="heading"]').count() >= 1  # header block
    assert page.locator("#messages hr.divider").count() >= 1
    assert page.locator(".fields .field").count() >= 8
    assert page.locator(".section > .btn.danger").count() >= 1  # a section accessory
    assert page.locator(".context").count() >= 3
    assert page.locator(f'li.message[data-ts="{posted[6]}"] .thread li.message').count() == 1
    assert page.locator("li.message.ephemeral", has_text="only for Alice").count() == 1
    assert page.locator(f'li.message[data-ts="{posted[6]}"] .btn.primary', has_text="Approve").count() == 1
    assert page.locator("#messages time").count() >= 1  # <!date^…> rendered in the reader's time zone

    # The Approve button's confirm object is a dialog; Not yet closes it without sending anything.
    page.locator(f'li.message[data-ts="{posted[6]}"]').get_by_role("button", name="Approve").click()
    confirm = page.get_by_role("alertdialog", name="Release this lock?")
    confirm.wait_for()
    assert "only if it is still exactly the lock that was requested" in confirm.inner_text()
    confirm.get_by_role("button", name="Not yet").click()
    confirm.wait_for(state="hidden")

    # Someone else does not see Alice's ephemeral note.
    page.get_by_label("You are").select_option("U0BOB0002")
    page.wait_for_function("new URL(location.href).searchParams.get('as') === 'bob'")
    page.locator(f'li.message[data-ts="{posted[0]}"]').wait_for()
    assert page.locator("li.message.ephemeral").count() == 0
    page.close()


HOSTILE = (
    '<script>window.__pwned = 1</script> &lt;img src=x onerror="window.__pwned=2"&gt; '
    "*bold* _italic_ ~struck~ `co<de>` <https://example.com/a?b=1&amp;c=2|a link> <javascript:alert(1)|bad link> "
    "<@U0BOB0002> <!subteam^S0SRETEAM> <#C0INCIDENT> snake_case_name 3*4*5 :warning: :no_such_emoji:"
)


def test_mrkdwn_renders_and_everything_else_is_text(page_server: tuple[str, Workspace], chromium: Any) -> None:
    url, _ = page_server
    client = WebClient(token=TOKEN, base_url=url + "/api/")
    ts = client.chat_postMessage(channel=CHANNEL, text=HOSTILE)["ts"]
    page = chromium.new_page()
    page.set_default_timeout(TIMEOUT)
    page.goto(f"{url}/?as=alice")
    shown = page.locator(f'li.message[data-ts="{ts}"] .body')
    shown.wait_for()
    assert page.evaluate("window.__pwned") is None
    assert shown.locator("script, img, iframe").count() == 0
    assert shown.locator("strong").inner_text() == "bold"
    assert shown.locator("em").inner_text() == "italic"
    assert shown.locator("s").inner_text() == "struck"
    assert shown.locator("code").inner_text() == "co<de>"
    link = shown.locator("a")
    assert link.count() == 1
    assert (link.get_attribute("href"), link.inner_text()) == ("https://example.com/a?b=1&c=2", "a link")
    text = shown.inner_text()
    assert "<script>window.__pwned = 1</script>" in text  # shown as the text it is
    assert '<img src=x onerror="window.__pwned=2">' in text
    assert "<javascript:alert(1)|bad link>" in text
    assert "@Bob Brooks" in text and "@sre" in text and "#incident" in text
    assert "snake_case_name" in text and "3*4*5" in text  # no formatting inside words
    assert "⚠️" in text and ":no_such_emoji:" in text
    page.close()
