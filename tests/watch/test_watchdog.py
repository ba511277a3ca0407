"""The stale-lock watchdog: one alert per stale lock, one reminder, the alert updated when the lock goes —
with any number of replicas on one database, and whatever one backend or Slack does."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from slack_bolt import BoltRequest
from sqlalchemy import select

from bot.locks.facts import LockFacts
from bot.locks.lockinfo import raw_digest
from bot.slack.alerts import build_watchdog, start_watchdog
from bot.slack.app import SlackBot
from bot.watch.models import WatchAlert
from bot.watch.watchdog import Alert, Release, Watchdog
from tests.awsfaults import inject_error
from tests.conftest import BUCKET, TABLE, Aws
from tests.fakeslack import FakeSlack
from tests.pins import pin_of
from tests.terraform import TerraformBackend, create_bucket, create_table, go_time
from tests.watch.conftest import WATCH, Clock, MakeBot

KEY = "network/terraform.tfstate"
ADDRESS = f"{BUCKET}/{KEY}"
ALICE, BOB, CAROL = "U0ALICE01", "U0BOB0001", "U0CAROL01"


def alerts(slack: FakeSlack) -> list[dict[str, Any]]:
    return [
        c.body
        for c in slack.calls_to("/api/chat.postMessage")
        if c.body.get("channel") == WATCH and not c.body.get("thread_ts")
    ]


def reminders(slack: FakeSlack) -> list[dict[str, Any]]:
    return [c.body for c in slack.calls_to("/api/chat.postMessage") if c.body.get("thread_ts")]


def updates(slack: FakeSlack) -> list[dict[str, Any]]:
    return [c.body for c in slack.calls_to("/api/chat.update")]


def shown(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for b in message.get("blocks", []) if b["type"] == "actions" for e in b["elements"]]


def metric(bot: SlackBot, name: str, **labels: str) -> float | None:
    return bot.runtime.metrics.registry.get_sample_value(name, labels)


def stored(watchdog: Watchdog) -> list[WatchAlert]:
    with watchdog.sessions() as session:
        return list(session.scalars(select(WatchAlert).order_by(WatchAlert.id)))


def person(user_id: str, name: str, **profile: str) -> dict[str, Any]:
    return {"id": user_id, "name": name, "is_bot": False, "deleted": False, "profile": profile}


def test_a_lock_crossing_the_threshold_gets_exactly_one_alert(
    bot: SlackBot, watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    slack.users[ALICE] = person(ALICE, "alice", real_name="Alice Liddell", email="alice@acme.test")
    slack.users[BOB] = person(BOB, "bob")
    lock = tf.lock(KEY, who="alice@build-agent-07", operation="OperationTypeApply", created=go_time(clock.now))
    clock.advance(hours=1, minutes=59)
    assert watchdog.scan().alerted == 0
    assert alerts(slack) == []
    assert metric(bot, "tflock_locks_held", backend="default") == 1
    assert metric(bot, "tflock_oldest_lock_age_seconds", backend="default") == 119 * 60

    clock.advance(minutes=2)
    assert watchdog.scan().alerted == 1
    [alert] = alerts(slack)
    for fact in (ADDRESS, lock.id, "alice@build-agent-07", "apply (or destroy)", "2h 1m", f"<@{ALICE}>"):
        assert fact in shown(alert)
    [button] = buttons(alert)
    assert (button["action_id"], button["text"]["text"]) == ("tflock_request_unlock", "Request force-unlock")
    pin = pin_of(bot.runtime.sessions, button["value"])  # the button pins the lock the alert is about
    assert (pin.address, pin.lock_id, pin.raw_sha256) == (ADDRESS, lock.id, raw_digest(lock.info_json))
    assert f"<@{BOB}>" not in shown(alert)

    for _ in range(3):
        clock.advance(minutes=30)
        assert watchdog.scan().alerted == 0
    assert len(alerts(slack)) == 1
    assert metric(bot, "tflock_watch_alerts_total", kind="alert") == 1
    assert metric(bot, "tflock_oldest_lock_age_seconds", backend="default") == (3 * 60 + 31) * 60
    assert metric(bot, "tflock_watch_scan_seconds_count") == 5


def test_a_lock_still_held_gets_exactly_one_reminder(
    watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    slack.users[ALICE] = person(ALICE, "Alice.Smith", email="asmith@acme.test")
    tf.lock(KEY, who="CORP\\asmith@WS-01", created=go_time(clock.now))
    clock.advance(hours=3)
    watchdog.scan()
    [alert] = alerts(slack)
    assert f"<@{ALICE}>" in shown(alert)  # DOMAIN\user matched on the email's local part

    clock.advance(hours=3, minutes=59)
    watchdog.scan()
    assert reminders(slack) == []
    clock.advance(minutes=2)
    watchdog.scan()
    [reminder] = reminders(slack)
    assert reminder["channel"] == WATCH and reminder["reply_broadcast"] is True
    assert reminder["thread_ts"] == stored(watchdog)[0].message_ts
    assert "7h 1m" in reminder["text"] and f"<@{ALICE}>" in reminder["text"]
    for _ in range(3):
        clock.advance(hours=5)
        watchdog.scan()
    assert len(reminders(slack)) == 1 and len(alerts(slack)) == 1


def test_the_alert_is_updated_in_place_when_the_lock_goes(
    bot: SlackBot, watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    lock = tf.lock(KEY, who="ci@runner-9", created=go_time(clock.now))
    clock.advance(hours=2, minutes=1)
    watchdog.scan()
    [alert] = stored(watchdog)
    tf.unlock(lock)
    clock.advance(hours=3, minutes=11)
    assert watchdog.scan().released == 1
    [update] = updates(slack)
    assert (update["channel"], update["ts"]) == (WATCH, alert.message_ts)
    assert "released after 5h 12m" in shown(update).lower()
    assert "by tflock" not in shown(update)
    assert lock.id in shown(update) and "ci@runner-9" in shown(update)
    assert buttons(update) == []
    for _ in range(2):
        clock.advance(hours=5)
        watchdog.scan()
    assert len(updates(slack)) == 1 and reminders(slack) == [] and len(alerts(slack)) == 1
    assert metric(bot, "tflock_watch_alerts_total", kind="released") == 1
    assert metric(bot, "tflock_locks_held", backend="default") == 0
    assert metric(bot, "tflock_oldest_lock_age_seconds", backend="default") == 0


def test_a_lock_released_by_tflock_says_who_asked_and_who_approved(
    bot: SlackBot, watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    tf.lock(KEY, created=go_time(clock.now))
    clock.advance(hours=2, minutes=30)
    watchdog.scan()
    clock.advance(hours=2, minutes=30)
    request = bot.workflow.request(ADDRESS, ALICE, "the CI job was cancelled", "C0INCIDENT")
    clock.advance(minutes=12)
    assert bot.workflow.approve(request.id, BOB).status == "executed"
    clock.advance(minutes=4)  # the next scan finds it gone
    watchdog.scan()
    [update] = updates(slack)
    text = shown(update)
    assert f"Released after 5h 12m by tflock — requested by <@{ALICE}>, approved by <@{BOB}>" in text
    assert update["text"] == f"Lock on {ADDRESS} released after 5h 12m by tflock"


def test_a_lock_replaced_by_another_is_two_locks(
    watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    first = tf.lock(KEY, created=go_time(clock.now))
    clock.advance(hours=3)
    watchdog.scan()
    tf.unlock(first)
    second = tf.lock(KEY, created=go_time(clock.now))
    watchdog.scan()
    assert len(updates(slack)) == 1 and first.id in shown(updates(slack)[0])
    clock.advance(hours=3)
    watchdog.scan()
    assert [second.id in shown(a) for a in alerts(slack)] == [False, True]


def test_unreadable_lock_files_are_alerted_by_their_raw_info(
    aws: Aws, watchdog: Watchdog, slack: FakeSlack, clock: Clock
) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key=f"{KEY}.tflock", Body=b"<not json>")
    clock.advance(hours=3)  # the age comes from the lock file's LastModified
    watchdog.scan()
    [alert] = alerts(slack)
    assert "unreadable" in shown(alert)
    pin = pin_of(watchdog.sessions, buttons(alert)[0]["value"])  # pinned by its raw bytes, not left open
    assert (pin.address, pin.lock_id, pin.raw_sha256) == (ADDRESS, None, raw_digest("<not json>"))
    watchdog.scan()
    aws.s3.put_object(Bucket=BUCKET, Key=f"{KEY}.tflock", Body=b"<other garbage>")
    watchdog.scan()
    assert len(updates(slack)) == 1 and len(alerts(slack)) == 2
    assert [a.lock_id for a in stored(watchdog)] == [None, None]


def scan_together(watchdogs: list[Watchdog]) -> None:
    """Every replica's scan started at the same instant, on threads."""
    start = threading.Barrier(len(watchdogs))
    errors: list[BaseException] = []

    def scan(watchdog: Watchdog) -> None:
        start.wait()
        try:
            watchdog.scan()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scan, args=(w,)) for w in watchdogs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []


@pytest.mark.parametrize("replicas", [2, 4])
def test_replicas_scanning_at_once_send_one_alert_per_lock(
    make_bot: MakeBot, slack: FakeSlack, tf: TerraformBackend, clock: Clock, replicas: int
) -> None:
    locks = [tf.lock(f"stack-{n}/terraform.tfstate", created=go_time(clock.now)) for n in range(5)]
    watchdogs = [build_watchdog(make_bot(), WATCH) for _ in range(replicas)]
    clock.advance(hours=2, minutes=5)
    for round_ in range(3):
        scan_together(watchdogs)
        if round_ == 1:
            tf.unlock(locks[0])
    posted = [pin_of(watchdogs[0].sessions, buttons(a)[0]["value"]).address for a in alerts(slack)]
    assert sorted(posted) == sorted(str(lock.address) for lock in locks)
    assert len(updates(slack)) == 1
    assert len({w.owner for w in watchdogs}) == replicas


def test_a_backend_that_denies_access_does_not_stop_the_others(
    aws: Aws, make_bot: MakeBot, slack: FakeSlack, clock: Clock, tmp_path: Path
) -> None:
    create_table(aws.dynamodb, "other-locks")
    create_bucket(aws.s3, "acme-other")
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        f"backends:\n  - name: main\n    buckets: [{BUCKET}]\n    dynamodb_table: {TABLE}\n"
        "  - name: other\n    buckets: [acme-other]\n    dynamodb_table: other-locks\n"
    )
    bot = make_bot(TFLOCK_BACKENDS_FILE=str(backends))
    watchdog = build_watchdog(bot, WATCH)
    main = TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE)
    other = TerraformBackend(aws.s3, aws.dynamodb, "acme-other", "other-locks")
    main.lock("a/terraform.tfstate", created=go_time(clock.now))
    other.lock("b/terraform.tfstate", created=go_time(clock.now))
    clock.advance(hours=3)
    watchdog.scan()
    assert len(alerts(slack)) == 2

    denied = bot.runtime.directory.backends.backends[1]
    assert denied.name == "other"
    inject_error(denied.clients.client("dynamodb"), "Scan", "AccessDeniedException")
    main.lock("c/terraform.tfstate", created=go_time(clock.now))
    clock.advance(hours=2, minutes=1)
    report = watchdog.scan()
    assert report is not None and [p.backend for p in report.problems] == ["other"]
    assert "dynamodb:Scan" in report.problems[0].message
    assert len(alerts(slack)) == 3 and "c/terraform.tfstate" in shown(alerts(slack)[2])
    assert updates(slack) == []  # not seen is not released
    assert metric(bot, "tflock_watch_scan_errors_total", backend="other") == 1
    assert metric(bot, "tflock_watch_scan_errors_total", backend="main") is None
    assert metric(bot, "tflock_locks_held", backend="main") == 2
    assert metric(bot, "tflock_locks_held", backend="other") == 1  # the last complete figure


def test_a_failed_scan_is_counted_and_the_loop_goes_on(
    bot: SlackBot, watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    tf.lock(KEY, created=go_time(clock.now))
    clock.advance(hours=3)
    real = watchdog.directory.list_locks
    calls: list[int] = []

    def flaky() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("throttled, then some")
        return real()

    watchdog.directory.list_locks = flaky
    stop = threading.Event()
    thread = threading.Thread(target=watchdog.run, args=(stop, 0.05))
    thread.start()
    try:
        slack.wait_for("/api/chat.postMessage")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert metric(bot, "tflock_watch_scan_errors_total", backend="all") == 1
    assert len(alerts(slack)) == 1


def test_an_alert_slack_refused_is_posted_at_the_next_scan(
    watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    tf.lock(KEY, created=go_time(clock.now))
    clock.advance(hours=3)
    slack.fail["chat.postMessage"] = "not_in_channel"
    assert watchdog.scan().alerted == 0
    [row] = stored(watchdog)
    assert row.message_ts is None and row.lease_owner is None  # claimed, then let go
    slack.reset()
    assert watchdog.scan().alerted == 1
    watchdog.scan()
    assert len(alerts(slack)) == 1 and stored(watchdog)[0].message_ts


class Dies:
    """A notifier on a replica that dies while posting."""

    def post_alert(self, alert: Alert, facts: LockFacts) -> tuple[str, str]:
        raise SystemExit("killed")

    def remind(self, alert: Alert, facts: LockFacts) -> None:
        raise SystemExit("killed")

    def update_alert(self, alert: Alert, release: Release) -> None:
        raise SystemExit("killed")


def test_a_replica_dying_while_posting_hands_the_alert_over_when_its_lease_ends(
    make_bot: MakeBot, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    dying = build_watchdog(make_bot(), WATCH)
    dying.notifier = Dies()
    survivor = build_watchdog(make_bot(), WATCH)
    tf.lock(KEY, created=go_time(clock.now))
    clock.advance(hours=3)
    with pytest.raises(SystemExit):
        dying.scan()
    assert survivor.scan().alerted == 0  # the lease is still the dead replica's
    clock.advance(minutes=5)
    assert survivor.scan().alerted == 1
    survivor.scan()
    assert len(alerts(slack)) == 1


def test_a_deleted_alert_message_is_given_up_not_retried_forever(
    watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    lock = tf.lock(KEY, created=go_time(clock.now))
    clock.advance(hours=3)
    watchdog.scan()
    tf.unlock(lock)
    slack.fail["chat.update"] = "message_not_found"
    watchdog.scan()
    watchdog.scan()
    assert len(updates(slack)) == 1
    assert stored(watchdog)[0].released_at == clock.now


def test_the_alert_button_starts_the_force_unlock(
    bot: SlackBot, watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    tf.lock(KEY, created=go_time(clock.now))
    clock.advance(hours=3)
    watchdog.scan()
    [alert] = alerts(slack)
    [button] = buttons(alert)
    body = {
        "type": "block_actions",
        "user": {"id": CAROL, "team_id": "T0001"},
        "team": {"id": "T0001"},
        "channel": {"id": WATCH},
        "container": {"type": "message", "message_ts": stored(watchdog)[0].message_ts, "channel_id": WATCH},
        "trigger_id": "9.9.9",
        "response_url": slack.response_url("click"),
        "actions": [{"action_id": button["action_id"], "value": button["value"], "type": "button", "action_ts": "1"}],
    }
    assert bot.app.dispatch(BoltRequest(body=body, mode="socket_mode")).status == 200
    [opened] = slack.wait_for("/api/views.open")
    view = opened.body["view"]
    metadata = json.loads(view["private_metadata"])
    assert metadata == {"pin": button["value"], "channel": WATCH}
    assert view["title"]["text"] == "Request force-unlock"


def test_a_recent_lock_is_measured_but_not_alerted(
    bot: SlackBot, watchdog: Watchdog, slack: FakeSlack, tf: TerraformBackend, clock: Clock
) -> None:
    tf.lock("old/terraform.tfstate", created=go_time(clock.now))
    clock.advance(minutes=50)
    tf.lock("new/terraform.tfstate", created=go_time(clock.now))
    clock.advance(minutes=10)
    report = watchdog.scan()
    assert (report.locks, report.stale, report.alerted) == (2, 0, 0)
    assert metric(bot, "tflock_locks_held", backend="default") == 2
    assert metric(bot, "tflock_oldest_lock_age_seconds", backend="default") == 3600
    assert slack.calls_to("/api/chat.postMessage") == []


def test_serve_runs_no_watchdog_without_a_watch_channel(make_bot: MakeBot) -> None:
    stop = threading.Event()
    assert start_watchdog(make_bot(TFLOCK_WATCH_CHANNEL=""), stop) is None
    thread = start_watchdog(make_bot(), stop)
    assert thread is not None and thread.name == "tflock-watchdog" and thread.is_alive()
    stop.set()
    thread.join(10)
    assert not thread.is_alive()
