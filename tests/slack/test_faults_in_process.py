"""Bounded work, readiness that always answers, and operators' logs — in process (tests/faults runs processes)."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from bot.logs import configure_logging
from bot.runtime import TimedCheck
from bot.slack.app import SlackBot
from bot.slack.errors import log_request
from bot.web import WebApp
from bot.work import WorkPool


@pytest.fixture
def pool() -> Iterator[WorkPool]:
    registry = CollectorRegistry()
    busy = Counter("busy", "", ["pool"], registry=registry)
    waiting = Gauge("waiting", "", ["pool"], registry=registry)
    work = WorkPool("lookups", threads=2, queue=3, busy=busy, waiting=waiting)
    work.registry = registry  # type: ignore[attr-defined]
    yield work
    work.shutdown()


def test_work_pool_turns_work_away_beyond_its_bound_and_takes_it_again_after(pool: WorkPool) -> None:
    release = threading.Event()
    started = [pool.submit(lambda: release.wait(10)) for _ in range(7)]
    assert started == [True] * 5 + [False] * 2  # 2 running + 3 queued
    registry: CollectorRegistry = pool.registry  # type: ignore[attr-defined]
    assert registry.get_sample_value("busy_total", {"pool": "lookups"}) == 2
    assert registry.get_sample_value("waiting", {"pool": "lookups"}) == 5
    release.set()
    deadline = time.monotonic() + 5
    while registry.get_sample_value("waiting", {"pool": "lookups"}) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert registry.get_sample_value("waiting", {"pool": "lookups"}) == 0
    done = threading.Event()
    assert pool.submit(done.set) and done.wait(5)


def test_a_failing_task_gives_its_place_back(pool: WorkPool) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    for _ in range(20):  # more than the capacity: each failure must release its place
        assert pool.submit(boom)
        time.sleep(0.005)


def test_readiness_answers_in_time_while_its_dependency_hangs() -> None:
    hang = threading.Event()
    calls: list[int] = []

    def database() -> None:
        calls.append(1)
        hang.wait(10)

    check = TimedCheck("database", database, timeout=0.2)
    started = time.monotonic()
    assert check() == "database: no answer within 0.2s"
    assert check() == "database: no answer within 0.2s"
    assert time.monotonic() - started < 1.0
    assert len(calls) == 1  # one probe in flight, not one thread per request
    hang.set()
    time.sleep(0.05)
    assert check() is None


def test_readiness_says_what_failed() -> None:
    def database() -> None:
        raise OSError("connection refused by 10.0.0.5:5432 as role tflock")

    assert TimedCheck("database", database)() == "database: connection refused by 10.0.0.5:5432 as role tflock"


def _readyz(web: WebApp, remote: str) -> tuple[str, dict[str, Any]]:
    seen: dict[str, str] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        seen["status"] = status

    environ = {"PATH_INFO": "/readyz", "REQUEST_METHOD": "GET", "REMOTE_ADDR": remote}
    body = b"".join(web(environ, start_response))  # type: ignore[arg-type]
    return seen["status"], json.loads(body)


def test_readyz_details_only_from_loopback(slackbot: SlackBot) -> None:
    runtime = slackbot.runtime
    runtime.readiness.append(lambda: "database: OperationalError: connection to 10.0.0.5 as role tflock failed")
    web = WebApp(runtime, None)
    status, body = _readyz(web, "10.1.2.3")
    assert status.startswith("503") and body["problems"] == ["database: unavailable"]
    status, body = _readyz(web, "127.0.0.1")
    assert status.startswith("503") and "10.0.0.5" in body["problems"][0]


def test_json_logs_carry_one_line_per_command_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    # Earlier tests in the same process may have tuned these loggers; this test is about the format.
    for name in ("tflock", "tflock.activity"):
        monkeypatch.setattr(logging.getLogger(name), "disabled", False)
        monkeypatch.setattr(logging.getLogger(name), "level", logging.NOTSET)
        monkeypatch.setattr(logging.getLogger(name), "propagate", True)
    monkeypatch.setattr(logging.root.manager, "disable", 0)
    try:
        configure_logging("json", "INFO")
        body = {"command": "/tflock", "text": "status acme-tfstate/network/terraform.tfstate", "user_id": "U0ALICE01"}
        log_request({**body, "token": "xoxb-secret"}, "ok", 0.0123)
        logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert len(lines) == 1  # Alembic's start-up noise is below INFO now
    line = lines[0]
    assert line["kind"] == "command" and line["command"] == "status" and line["user"] == "U0ALICE01"
    assert line["state"] == "acme-tfstate/network/terraform.tfstate" and line["outcome"] == "ok"
    assert line["duration_ms"] == 12.3
    assert "xoxb" not in stream.getvalue()


def test_rate_limit_retry_waits_for_retry_after_but_never_for_minutes() -> None:
    from slack_sdk.http_retry import HttpRequest, HttpResponse, RetryState

    from bot.slack.app import RateLimitRetry

    handler = RateLimitRetry(max_retry_count=3, longest=30)
    request = HttpRequest(method="POST", url="http://127.0.0.1/api/chat.postMessage", headers={})

    def can_retry(status: int, headers: dict[str, list[str]]) -> bool:
        response = HttpResponse(status_code=status, headers=headers)
        return handler.can_retry(state=RetryState(), request=request, response=response)

    assert can_retry(429, {"Retry-After": ["2"]})
    assert not can_retry(429, {"retry-after": ["120"]})  # a worker would sleep for two minutes: give up
    assert not can_retry(500, {})
