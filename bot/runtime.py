"""Everything a running bot shares: settings, the lock directory, the clock and the metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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

log = logging.getLogger(__name__)
# A status costs ~5 ms of CPU and tens of ms of AWS round trips: a few threads saturate one GIL, and
# more only add queueing and unfairness (bench/slash_latency.py measured p99 falling 4-5x at 8 vs 32).
WORK_THREADS = 8
Clock = Callable[[], datetime]
ReadinessCheck = Callable[[], str | None]  # None when ready, else what is wrong


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
    # The slow half of every Slack command (AWS, the database, Slack's Web API) runs here, off Bolt's threads.
    work: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=WORK_THREADS, thread_name_prefix="tflock-work")
    )

    def record_lookup(self, action: Literal[AuditAction.STATUS, AuditAction.LIST], **event: Any) -> None:
        """Look-ups go on the record too; one that cannot be recorded is logged and still answered."""
        try:
            record_lookup(self.sessions, action, at=self.clock(), **event)
        except TflockError as exc:
            self.metrics.audit_failures.inc()
            log.error("%s", exc)

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
        problems = []
        for check in self.readiness:
            try:
                problem = check()
            except Exception as exc:  # a readiness probe must answer, whatever broke
                problem = f"{type(exc).__name__}: {exc}"
            if problem:
                problems.append(problem)
        return problems


def build_runtime(settings: Settings) -> Runtime:
    engine = make_engine(settings.database_url)
    runtime = Runtime(
        settings=settings, directory=LockDirectory(load_backends(settings)), sessions=make_sessions(engine)
    )
    runtime.readiness.append(lambda: check_database(engine))
    aws.ERROR_HOOK = lambda code: runtime.metrics.aws_errors.labels(code=code).inc()
    return runtime
