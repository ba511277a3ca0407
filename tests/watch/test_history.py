"""The watchdog's scan keeps the lock history complete: every lock it lists, and every one it no longer
sees (in a backend it could read), with force-unlocks recorded by the workflow."""

from __future__ import annotations

from datetime import timedelta

from bot.history.models import Ending
from bot.history.query import state_history
from bot.slack.app import SlackBot
from bot.watch.watchdog import Watchdog
from tests.awsfaults import inject_error
from tests.terraform import TerraformBackend, go_time
from tests.watch.conftest import Clock
from tests.watch.test_watchdog import ADDRESS, ALICE, BOB, KEY


def test_scans_record_each_lock_once_and_see_it_go(watchdog: Watchdog, tf: TerraformBackend, clock: Clock) -> None:
    lock = tf.lock(KEY, who="ci@runner-9", created=go_time(clock.now))
    start = clock.now
    for _ in range(3):
        clock.advance(hours=1)
        watchdog.scan()
    [past] = state_history(watchdog.sessions, ADDRESS)
    assert (past.lock_id, past.who, past.ended, past.stale) == (lock.id, "ci@runner-9", None, True)
    assert (past.first_seen, past.last_seen) == (start + timedelta(hours=1), clock.now)
    tf.unlock(lock)
    clock.advance(minutes=5)
    watchdog.scan()
    [past] = state_history(watchdog.sessions, ADDRESS)
    assert (past.ended, past.gone_at) == (Ending.GONE, clock.now)
    assert not past.held_for_exact and past.held_for.total_seconds() == 3 * 3600


def test_an_unreadable_backend_ends_nothing(
    bot: SlackBot, watchdog: Watchdog, tf: TerraformBackend, clock: Clock
) -> None:
    lock = tf.lock(KEY, created=go_time(clock.now))
    watchdog.scan()
    tf.unlock(lock)
    clock.advance(minutes=1)
    [backend] = bot.runtime.directory.backends.backends
    attempts = inject_error(backend.clients.client("dynamodb"), "Scan", "AccessDeniedException", times=2)
    assert watchdog.scan().problems and attempts
    assert state_history(watchdog.sessions, ADDRESS)[0].ended is None
    clock.advance(minutes=1)
    watchdog.scan()
    assert state_history(watchdog.sessions, ADDRESS)[0].ended == Ending.GONE


def test_a_force_unlock_is_recorded_with_its_request(
    bot: SlackBot, watchdog: Watchdog, tf: TerraformBackend, clock: Clock
) -> None:
    tf.lock(KEY, created=go_time(clock.now))
    clock.advance(hours=2, minutes=30)
    watchdog.scan()
    request = bot.workflow.request(ADDRESS, ALICE, "the CI job was cancelled", "C0INCIDENT")
    clock.advance(minutes=12)
    assert bot.workflow.approve(request.id, BOB).status == "executed"
    released_at = clock.now
    clock.advance(minutes=4)
    watchdog.scan()  # finds it gone: the force-unlock stays the ending
    [past] = state_history(watchdog.sessions, ADDRESS)
    assert (past.ended, past.request_id, past.gone_at) == (Ending.FORCE_UNLOCKED, request.id, released_at)
    assert past.held_for_exact and past.held_for.total_seconds() == (2 * 60 + 42) * 60
