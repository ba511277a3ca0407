"""The stale-lock watchdog: every interval, scan every backend; a lock held longer than TFLOCK_STALE_AFTER
gets one alert, one reminder after TFLOCK_WATCH_REMIND_AFTER, and its alert is updated when it goes.
A hold (taken on purpose with `/tflock hold`) is never stale: it gets one reminder instead, once it has
been held for TFLOCK_HOLD_REMIND_AFTER (the notifier renders it from `facts.hold`), and that message is
updated the same way when the hold is released.

Exactly once, however many replicas scan: the alert row is inserted before anything is posted, and
the unique `lock_key` lets only one replica's INSERT succeed. Every talk with Slack about an alert
(posting it, the reminder, the "released" update) happens under a lease on its row, taken with a
guarded `UPDATE … WHERE id = :id AND <step not done> AND <lease free or expired>` whose row count is
checked, and given back in the same UPDATE that records the step as done. A replica that fails to
post gives the lease back, so the alert is retried at the next scan; one that dies holding it loses it
when the lease runs out. Nothing here knows about Slack: it talks to an `AlertNotifier`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol, cast

from sqlalchemy import ColumnElement, CursorResult, or_, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.db import describe_error
from bot.errors import TflockError
from bot.locks.address import StateAddress
from bot.locks.directory import BackendProblem, LockDirectory
from bot.locks.facts import LockFacts, lock_facts
from bot.locks.lockinfo import raw_digest
from bot.locks.model import Answer, StateLock
from bot.metrics import Metrics
from bot.unlock.models import Approval, RequestView, Status, UnlockRequest
from bot.watch.models import BACKEND_CHARS, LEASE_OWNER_CHARS, WatchAlert

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Longer than one Slack call can take with the client's timeout and rate-limit retries.
LEASE = timedelta(minutes=5)
WHOLE_SCAN = "all"  # the backend label when the scan as a whole failed


class AlertGone(TflockError):
    """The alert's message can no longer be changed (deleted, channel archived): stop trying."""


@dataclass(frozen=True)
class Alert:
    """An alert as stored: what the notifier shows once the lock is gone, and where its message is."""

    id: int
    lock_key: str
    address: str
    backend: str
    lock_id: str | None
    raw_info: str
    lock_created_at: datetime | None
    channel: str | None
    message_ts: str | None
    posted_at: datetime | None
    reminded_at: datetime | None
    released_at: datetime | None

    @classmethod
    def of(cls, row: WatchAlert) -> Alert:
        return cls(
            id=row.id,
            lock_key=row.lock_key,
            address=row.state_address,
            backend=row.backend,
            lock_id=row.lock_id,
            raw_info=row.raw_info,
            lock_created_at=row.lock_created_at,
            channel=row.channel,
            message_ts=row.message_ts,
            posted_at=row.posted_at,
            reminded_at=row.reminded_at,
            released_at=row.released_at,
        )


@dataclass(frozen=True)
class Release:
    """How an alerted lock went away: when, after how long, and the force-unlock that released it, if any."""

    at: datetime
    held_for: timedelta | None
    request: RequestView | None


class AlertNotifier(Protocol):
    """Where alerts go (the Slack side implements it). Any exception means "not delivered, try again"."""

    def post_alert(self, alert: Alert, facts: LockFacts) -> tuple[str, str]:
        """Post the alert; returns (channel, ts) of the message so it can be updated in place."""
        ...

    def remind(self, alert: Alert, facts: LockFacts) -> None:
        """Say once more that the lock is still held (a reply to the alert); AlertGone if there is none."""
        ...

    def update_alert(self, alert: Alert, release: Release) -> None:
        """Replace the alert with how the lock went away; AlertGone if the message is no longer there."""
        ...


@dataclass(frozen=True)
class ScanReport:
    locks: int
    stale: int
    alerted: int
    reminded: int
    released: int
    problems: tuple[BackendProblem, ...]


def lock_key(lock: StateLock) -> str:
    """One lock's identity: its state and lock ID, or the raw Info when that has no readable ID."""
    primary = lock.primary
    assert primary is not None, "only held locks have a key"
    lock_id = primary.lock_id
    identity = f"id:{lock_id}" if lock_id else "raw:" + raw_digest(primary.raw_info)
    return hashlib.sha256(f"{lock.address}\n{identity}".encode("utf-8", "surrogatepass")).hexdigest()


def _replica_name() -> str:
    host = socket.gethostname()[:40]
    return f"{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:LEASE_OWNER_CHARS]


class Watchdog:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        directory: LockDirectory,
        notifier: AlertNotifier,
        metrics: Metrics,
        clock: Clock,
        *,
        stale_after: timedelta,
        remind_after: timedelta,
        hold_remind_after: timedelta | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        self.sessions = sessions
        self.directory = directory
        self.notifier = notifier
        self.metrics = metrics
        self.clock = clock
        self.stale_after = stale_after
        self.remind_after = remind_after
        self.hold_remind_after = hold_remind_after  # None: holds are not reminded
        self.lease = lease
        self.owner = _replica_name()

    # -- the loop -------------------------------------------------------------------------------
    def run(self, stop: threading.Event, interval: float) -> None:
        """Scan at once, then every `interval` seconds until `stop` is set; a failed scan never ends it."""
        while not stop.is_set():
            self.scan_safely()
            stop.wait(interval)

    def scan_safely(self) -> ScanReport | None:
        try:
            return self.scan()
        except (TflockError, SQLAlchemyError) as exc:
            why = describe_error(exc) if isinstance(exc, SQLAlchemyError) else str(exc)
            log.error("stale-lock scan failed, retrying at the next interval: %s", why)
        except Exception:
            log.exception("stale-lock scan failed unexpectedly, retrying at the next interval")
        self.metrics.watch_scan_errors.labels(backend=WHOLE_SCAN).inc()
        return None

    def scan(self) -> ScanReport:
        started = time.perf_counter()
        try:
            return self._scan()
        finally:
            self.metrics.watch_scan_seconds.observe(time.perf_counter() - started)

    # -- one scan -------------------------------------------------------------------------------
    def _scan(self) -> ScanReport:
        now = self.clock()
        listing = self.directory.list_locks()
        unseen = self._count_problems(listing.problems)
        self._measure(listing.locks, unseen, now)
        stale = [lock for lock in listing.locks if lock.is_stale(now, self.stale_after)]
        alerted = reminded = 0
        for lock in stale:
            did = self._watch(lock, now)
            alerted += did == "alert"
            reminded += did == "reminder"
        for lock in self._holds_due(listing.locks, now):
            reminded += self._watch(lock, now) == "alert"  # a hold's one message is its reminder
        released = self._close_released({lock_key(lock) for lock in listing.locks}, unseen)
        report = ScanReport(len(listing.locks), len(stale), alerted, reminded, released, listing.problems)
        if alerted or reminded or released or listing.problems:
            log.info(
                "stale-lock scan: %d locks, %d stale; %d alerted, %d reminded, %d released; %d backend problems",
                report.locks,
                report.stale,
                alerted,
                reminded,
                released,
                len(listing.problems),
            )
        return report

    def _count_problems(self, problems: Sequence[BackendProblem]) -> set[str]:
        """Backends not fully seen this time: counted once per scan, and never taken as lock-free."""
        unseen = {problem.backend for problem in problems}
        for problem in problems:
            log.warning("stale-lock scan of backend %s incomplete: %s", problem.backend, problem.message)
        for backend in unseen:
            self.metrics.watch_scan_errors.labels(backend=backend).inc()
        return unseen

    def _measure(self, locks: Sequence[StateLock], unseen: Collection[str], now: datetime) -> None:
        by_backend: dict[str, list[StateLock]] = defaultdict(list)
        for lock in locks:
            by_backend[lock.backend].append(lock)
        for backend in self.directory.backends.backends:
            if backend.name in unseen:
                continue  # keep the last complete figures rather than show a partial count
            held = by_backend.get(backend.name, [])
            ages = [age.total_seconds() for lock in held if (age := lock.age(now)) is not None]
            self.metrics.locks_held.labels(backend=backend.name).set(len(held))
            self.metrics.oldest_lock_age.labels(backend=backend.name).set(max(ages, default=0.0))

    def _holds_due(self, locks: Sequence[StateLock], now: datetime) -> list[StateLock]:
        """Holds held for at least TFLOCK_HOLD_REMIND_AFTER: each gets one message, never a stale alert."""
        if self.hold_remind_after is None:
            return []
        return [
            lock
            for lock in locks
            if lock.hold is not None and (age := lock.age(now)) is not None and age >= self.hold_remind_after
        ]

    # -- a stale lock: alert once, remind once ----------------------------------------------------
    def _watch(self, lock: StateLock, now: datetime) -> Literal["alert", "reminder"] | None:
        """What was sent about this stale lock in this scan, if anything."""
        key = lock_key(lock)
        alert = self._find(key)
        if alert is None:
            alert = self._claim(lock, key, now)
            if alert is not None:
                return "alert" if self._post(alert, lock_facts(lock, now, self.stale_after)) else None
            alert = self._find(key)  # another replica claimed it first
            if alert is None:
                return None
        if alert.released_at is not None:
            return None
        if alert.message_ts is None:  # (a hold's one message too)  # claimed but not posted: its poster failed or died
            if self._take_lease(alert.id, WatchAlert.message_ts.is_(None)):
                return "alert" if self._post(alert, lock_facts(lock, now, self.stale_after)) else None
            return None
        due = alert.posted_at is not None and now - alert.posted_at >= self.remind_after
        if (
            lock.hold is None  # a hold was reminded once, by its one message
            and due
            and alert.reminded_at is None
            and self._take_lease(alert.id, WatchAlert.reminded_at.is_(None), WatchAlert.message_ts.is_not(None))
        ):
            return "reminder" if self._remind(alert, lock_facts(lock, now, self.stale_after)) else None
        return None

    def _claim(self, lock: StateLock, key: str, now: datetime) -> Alert | None:
        """Insert the alert row, holding its lease; None when another replica's row is already there."""
        primary = lock.primary
        assert primary is not None
        row = WatchAlert(
            lock_key=key,
            state_address=str(lock.address),
            backend=lock.backend[:BACKEND_CHARS],
            lock_id=primary.lock_id,
            raw_info=primary.raw_info,
            lock_created_at=lock.created,
            claimed_at=now,
            lease_owner=self.owner,
            lease_until=self.clock() + self.lease,
        )
        try:
            with self.sessions.begin() as session:
                session.add(row)
                session.flush()
                return Alert.of(row)
        except IntegrityError:
            return None

    def _post(self, alert: Alert, facts: LockFacts) -> bool:
        try:
            channel, ts = self.notifier.post_alert(alert, facts)
        except Exception as exc:
            log.error("could not post the stale-lock alert for %s, retrying next scan: %s", alert.address, exc)
            self._let_go(alert.id)
            return False
        self._settle(alert.id, "alert", channel=channel[:64], message_ts=ts[:64], posted_at=self.clock())
        self.metrics.watch_alerts.labels(kind="hold_reminder" if facts.hold else "alert").inc()
        log.info("stale-lock alert for %s (lock %s) posted to %s", alert.address, alert.lock_id, channel)
        return True

    def _remind(self, alert: Alert, facts: LockFacts) -> bool:
        try:
            self.notifier.remind(alert, facts)
        except AlertGone as exc:
            log.warning("no reminder for %s: %s", alert.address, exc)
            self._settle(alert.id, "reminder", reminded_at=self.clock())
            return False
        except Exception as exc:
            log.error("could not remind about %s, retrying next scan: %s", alert.address, exc)
            self._let_go(alert.id)
            return False
        self._settle(alert.id, "reminder", reminded_at=self.clock())
        self.metrics.watch_alerts.labels(kind="reminder").inc()
        return True

    # -- a lock that went away: update its alert ----------------------------------------------------
    def _close_released(self, held: Collection[str], unseen: Collection[str]) -> int:
        configured = {backend.name for backend in self.directory.backends.backends}
        with self.sessions() as session:
            rows = session.scalars(
                select(WatchAlert).where(WatchAlert.released_at.is_(None)).order_by(WatchAlert.id)
            ).all()
            open_alerts = [Alert.of(row) for row in rows]
        released = 0
        for alert in open_alerts:
            if alert.lock_key in held or alert.backend in unseen or alert.backend not in configured:
                continue
            if self._still_held(alert):
                continue
            released += self._release(alert)
        return released

    def _still_held(self, alert: Alert) -> bool:
        """The scan did not list it: read that one state now (a consistent read) before calling it gone."""
        bucket, _, key = alert.address.partition("/")
        try:
            lock = self.directory.read(StateAddress(bucket, key))
        except TflockError as exc:
            log.warning("cannot tell whether %s is still locked, asking again next scan: %s", alert.address, exc)
            return True
        if lock.answer is Answer.UNKNOWN:  # a store that may hold it was not read: not "gone"
            log.warning(
                "cannot tell whether %s is still locked, asking again next scan: %s",
                alert.address,
                "; ".join(str(u) for u in lock.unchecked),
            )
            return True
        return lock.held and lock_key(lock) == alert.lock_key

    def _release(self, alert: Alert) -> bool:
        if alert.message_ts is None:  # never posted: nothing to update, just stop trying
            if self._take_lease(alert.id, WatchAlert.message_ts.is_(None)):
                self._settle(alert.id, "released", released_at=self.clock())
            return False
        if not self._take_lease(alert.id, WatchAlert.message_ts.is_not(None)):
            return False
        now = self.clock()
        request = self._released_by(alert)
        at = (request.finished_at or request.executing_at or now) if request is not None else now
        held_for = at - alert.lock_created_at if alert.lock_created_at is not None else None
        try:
            self.notifier.update_alert(alert, Release(at, held_for, request))
        except AlertGone as exc:
            log.warning("the alert for %s could not be updated: %s", alert.address, exc)
            self._settle(alert.id, "released", released_at=now)
            return False
        except Exception as exc:
            log.error("could not update the alert for %s, retrying next scan: %s", alert.address, exc)
            self._let_go(alert.id)
            return False
        self._settle(alert.id, "released", released_at=now)
        self.metrics.watch_alerts.labels(kind="released").inc()
        log.info("stale lock on %s released; alert updated", alert.address)
        return True

    def _released_by(self, alert: Alert) -> RequestView | None:
        """The tflock force-unlock that deleted exactly this lock, if that is how it went."""
        same_lock = (
            UnlockRequest.lock_id == alert.lock_id
            if alert.lock_id is not None
            else UnlockRequest.raw_info == alert.raw_info
        )
        with self.sessions() as session:
            row = session.scalars(
                select(UnlockRequest)
                .where(
                    UnlockRequest.state_address == alert.address,
                    UnlockRequest.status.in_([Status.EXECUTED, Status.EXECUTING]),
                    same_lock,
                )
                .order_by(UnlockRequest.created_at.desc())
                .limit(1)
            ).first()
            if row is None:
                return None
            approvers = session.scalars(
                select(Approval.approver).where(Approval.request_id == row.id).order_by(Approval.at, Approval.id)
            ).all()
            return RequestView.of(row, approvers)

    # -- the row ------------------------------------------------------------------------------------
    def _find(self, key: str) -> Alert | None:
        with self.sessions() as session:
            row = session.scalars(select(WatchAlert).where(WatchAlert.lock_key == key)).first()
            return Alert.of(row) if row is not None else None

    def _take_lease(self, alert_id: int, *step_not_done: ColumnElement[bool]) -> bool:
        """Claim the right to talk to Slack about this alert; False when it is done or someone else has it."""
        now = self.clock()
        with self.sessions.begin() as session:
            result = session.execute(
                update(WatchAlert)
                .where(
                    WatchAlert.id == alert_id,
                    WatchAlert.released_at.is_(None),
                    or_(WatchAlert.lease_until.is_(None), WatchAlert.lease_until <= now),
                    *step_not_done,
                )
                .values(lease_owner=self.owner, lease_until=now + self.lease)
                .execution_options(synchronize_session=False)
            )
            return cast(CursorResult[Any], result).rowcount == 1

    def _settle(self, alert_id: int, step: str, **done: Any) -> None:
        """Record the step and give the lease back, in one guarded UPDATE."""
        with self.sessions.begin() as session:
            result = session.execute(
                update(WatchAlert)
                .where(WatchAlert.id == alert_id, WatchAlert.lease_owner == self.owner)
                .values(lease_owner=None, lease_until=None, **done)
                .execution_options(synchronize_session=False)
            )
            if cast(CursorResult[Any], result).rowcount != 1:
                # Only when this replica held the lease past its end and another took it over.
                log.warning("stale-lock alert %d: the %s was sent but the lease had been taken over", alert_id, step)

    def _let_go(self, alert_id: int) -> None:
        """Give the lease back without recording anything, so the step is tried again at the next scan."""
        try:
            with self.sessions.begin() as session:
                session.execute(
                    update(WatchAlert)
                    .where(WatchAlert.id == alert_id, WatchAlert.lease_owner == self.owner)
                    .values(lease_owner=None, lease_until=None)
                    .execution_options(synchronize_session=False)
                )
        except SQLAlchemyError as exc:  # the lease then simply runs out
            log.error("could not give back the lease on stale-lock alert %d: %s", alert_id, describe_error(exc))
