"""Everything a running bot shares: settings, the lock directory, the clock and the metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bot.locks import aws
from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.metrics import Metrics
from bot.settings import Settings

Clock = Callable[[], datetime]
ReadinessCheck = Callable[[], str | None]  # None when ready, else what is wrong


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    directory: LockDirectory
    metrics: Metrics = field(default_factory=Metrics)
    clock: Clock = utc_now
    readiness: list[ReadinessCheck] = field(default_factory=list)

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
    runtime = Runtime(settings=settings, directory=LockDirectory(load_backends(settings)))
    aws.ERROR_HOOK = lambda code: runtime.metrics.aws_errors.labels(code=code).inc()
    return runtime
