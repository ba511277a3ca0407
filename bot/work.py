"""Bounded work pools: the slow half of Slack commands and clicks runs here, off the request threads.

Each pool has a fixed number of threads and a bounded queue. When both are full, `reserve()` says no at
once and the person is told tflock is busy, instead of getting an answer minutes later behind a backlog.
Look-ups (status, list, audit, export) and clicks (approve, reject, cancel, requests) get separate pools,
so a flood of look-ups on a slow backend never delays an approval.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter, Gauge

log = logging.getLogger(__name__)


class WorkPool:
    def __init__(self, name: str, threads: int, queue: int, busy: Counter, waiting: Gauge) -> None:
        self.name = name
        self.capacity = threads + queue
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"tflock-{name}")
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._busy = busy.labels(pool=name)
        self._waiting = waiting.labels(pool=name)

    def reserve(self) -> bool:
        """Take a place for one task, or say no (counted as busy) when the pool and its queue are full."""
        if self._slots.acquire(blocking=False):
            self._waiting.inc()
            return True
        self._busy.inc()
        log.warning("%s pool is full (%d running or queued); turning a request away", self.name, self.capacity)
        return False

    def run_reserved(self, task: Callable[[], object]) -> None:
        """Run a task in the place `reserve()` took."""

        def run() -> None:
            try:
                task()
            finally:
                self._waiting.dec()
                self._slots.release()

        try:
            self._executor.submit(run)
        except RuntimeError:  # shutting down: give the place back
            self._waiting.dec()
            self._slots.release()
            raise

    def submit(self, task: Callable[[], object]) -> bool:
        """Reserve and run; False (and nothing run) when the pool is full."""
        if not self.reserve():
            return False
        self.run_reserved(task)
        return True

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
