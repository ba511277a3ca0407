"""Everything a running bot shares: settings, the lock directory, the clock and the metrics."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.models import AuditAction
from bot.audit.writer import record_event, record_lookup
from bot.db import check_database, describe_error, make_engine, make_sessions
from bot.errors import TflockError
from bot.locks import aws
from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.metrics import Metrics
from bot.settings import Settings
from bot.work import WorkPool

log = logging.getLogger(__name__)
# A status costs ~5 ms of CPU and tens of ms of AWS round trips: a few threads saturate one GIL, and
# more only add queueing and unfairness (bench/slash_latency.py measured p99 falling 4-5x at 8 vs 32).
LOOKUP_THREADS = 8
CLICK_THREADS = 4
READINESS_TIMEOUT = 1.5  # each check; /readyz answers within 2 s whatever a dependency does
Clock = Callable[[], datetime]
ReadinessCheck = Callable[[], str | None]  # None when ready, else what is wrong ("database: …")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    directory: LockDirectory
    sessions: sessionmaker[Session]
    metrics: Metrics = field(default_factory=Metrics)
    clock: Clock = utc_now
    readiness: list[ReadinessCheck] = field(default_factory=list)
    # The slow half of every Slack command (AWS, the database, Slack's Web API) runs in these, off Bolt's
    # threads: look-ups and clicks apart, so approvals never wait behind look-ups (bot/work.py).
    lookups: WorkPool = field(init=False)
    clicks: WorkPool = field(init=False)
    notices: WorkPool = field(init=False)  # "busy" replies, sent off the request thread

    def __post_init__(self) -> None:
        busy, waiting = self.metrics.busy, self.metrics.work_waiting
        self.lookups = WorkPool("lookups", LOOKUP_THREADS, self.settings.lookup_queue, busy, waiting)
        self.clicks = WorkPool("clicks", CLICK_THREADS, self.settings.click_queue, busy, waiting)
        self.notices = WorkPool("notices", 1, 32, busy, waiting)

    def record_lookup(self, action: Literal[AuditAction.STATUS, AuditAction.LIST], **event: Any) -> None:
        """Look-ups go on the record too; one that cannot be recorded is logged and still answered."""
        try:
            record_lookup(self.sessions, action, at=self.clock(), **event)
        except TflockError as exc:
            self.metrics.audit_failures.inc()
            self.metrics.lookup_audit_missed.inc()
            log.error("look-up answered but not recorded in the audit trail: %s", exc)

    def record_history(self, write: Callable[[Session], object]) -> None:
        """A lock history write (bot/history) in its own transaction; one that fails is counted and logged,
        never raised: history must not cost anyone an answer."""
        try:
            with self.sessions.begin() as session:
                write(session)
        except SQLAlchemyError as exc:
            self.metrics.history_missed.inc()
            log.error("lock history not recorded: %s", describe_error(exc))

    def record_refusal(self, why: str, *, actor: str, channel: str | None, **detail: Any) -> None:
        """A refusal outside the unlock workflow (e.g. a non-auditor asking for the trail)."""
        try:
            with self.sessions.begin() as session:
                record_event(
                    session,
                    AuditAction.REFUSED,
                    at=self.clock(),
                    actor=actor,
                    channel=channel,
                    detail={"why": why, **detail},
                )
        except SQLAlchemyError as exc:
            self.metrics.audit_failures.inc()
            log.error("could not record a refusal (%s): %s", why, describe_error(exc))

    def not_ready(self) -> list[str]:
        """What keeps the bot from serving ("database: …"); each check answers within READINESS_TIMEOUT."""
        return [problem for check in self.readiness if (problem := check())]


class TimedCheck:
    """A readiness check that answers within `timeout` whatever its dependency does.

    At most one probe runs at a time: while one hangs (a blackholed database), later calls wait for the
    same one rather than start more threads.
    """

    def __init__(self, name: str, check: Callable[[], None], timeout: float = READINESS_TIMEOUT) -> None:
        self.name = name
        self.check = check
        self.timeout = timeout
        self._lock = threading.Lock()
        self._running: Future[None] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tflock-ready-{name}")

    def __call__(self) -> str | None:
        with self._lock:
            if self._running is None or self._running.done():
                self._running = self._executor.submit(self.check)
            running = self._running
        try:
            running.result(timeout=self.timeout)
        except FutureTimeout:
            return f"{self.name}: no answer within {self.timeout:g}s"
        except Exception as exc:  # a readiness probe must answer, whatever broke
            return f"{self.name}: {exc}"
        return None


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(
        settings.database_url,
        connect_timeout=settings.db_connect_timeout.total_seconds(),
        statement_timeout=settings.db_statement_timeout.total_seconds(),
    )
    runtime = Runtime(
        settings=settings, directory=LockDirectory(load_backends(settings)), sessions=make_sessions(engine)
    )
    runtime.readiness.append(TimedCheck("database", lambda: check_database(engine)))
    aws.ERROR_HOOK = lambda code: runtime.metrics.aws_errors.labels(code=code).inc()
    return runtime
