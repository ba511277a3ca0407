"""The one error handler: known errors become a message for the person who asked; the rest are logged."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import Respond

from bot.db import DatabaseUnavailable
from bot.errors import AwsAccessDenied, AwsFailure, BadInput, TflockError
from bot.locks.facts import printable
from bot.runtime import Runtime
from bot.slack.views import error_message
from bot.work import WorkPool

log = logging.getLogger(__name__)
activity = logging.getLogger("tflock.activity")


def request_label(body: dict[str, Any]) -> str:
    """A low-cardinality name for metrics: the subcommand or the action, never free text."""
    if body.get("command"):
        word = str(body.get("text", "")).split(maxsplit=1)
        sub = word[0].lower() if word else "help"
        return sub if sub in {"status", "list", "unlock", "hold", "release", "audit", "help"} else "unknown"
    actions = body.get("actions") or []
    if actions and isinstance(actions[0], dict):
        return str(actions[0].get("action_id", "action"))[:40]
    view = body.get("view") or {}
    return str(view.get("callback_id", body.get("type", "other")))[:40]


def outcome_of(error: Exception) -> str:
    if isinstance(error, BadInput):
        return "bad_input"
    if isinstance(error, AwsAccessDenied | AwsFailure):
        return "aws_error"
    if isinstance(error, TflockError):
        return "refused"
    return "error"


def handle_error(error: Exception, body: dict[str, Any], respond: Respond | None, context: Any) -> None:
    """Bolt's global error handler (errors before an ack, middleware errors)."""
    tell(error, body, respond, context.get("runtime") if context is not None else None)


@contextmanager
def errors_told(body: dict[str, Any], respond: Respond | None, runtime: Runtime) -> Iterator[None]:
    """Wrap a listener's work after its ack: Bolt would drop the ack if the exception reached it."""
    try:
        yield
    except Exception as error:
        tell(error, body, respond, runtime)


BUSY = "tflock is busy, try again in a moment."


def after_ack(
    runtime: Runtime,
    body: dict[str, Any],
    respond: Respond | None,
    work: Callable[[], None],
    pool: WorkPool | None = None,
    *,
    reserved: bool = False,
) -> bool:
    """Run a listener's slow part on a work pool (look-ups unless told otherwise), errors told to the person.

    Bolt sends the ack only once the listener returns; keeping AWS and Slack calls off the request
    threads means a slow or hung AWS never delays the acks of other commands. `reserved`: the caller
    already took the pool's place (to answer "busy" in its ack). Returns False when the pool was full,
    after telling the person so.
    """
    pool = pool or runtime.lookups
    if not reserved and not pool.reserve():
        tell_busy(runtime, body, respond)
        log_request(body, "busy", 0.0)
        return False
    started = time.monotonic()

    def run() -> None:
        outcome = "ok"
        try:
            work()
        except Exception as error:
            outcome = outcome_of(error)
            tell(error, body, respond, runtime)
        finally:
            log_request(body, outcome, time.monotonic() - started)

    pool.run_reserved(run)
    return True


def tell_busy(runtime: Runtime, body: dict[str, Any], respond: Respond | None) -> None:
    """Say "busy" to the clicker alone, from the small notices pool (never from the request thread)."""
    runtime.metrics.requests.labels(command=request_label(body), outcome="busy").inc()
    if respond is not None:
        runtime.notices.submit(
            lambda: respond(response_type="ephemeral", replace_original=False, **error_message(BUSY).as_kwargs())
        )


def log_request(body: dict[str, Any], outcome: str, seconds: float) -> None:
    """One line per command and click: who, what, on which state, how it ended, how long it took.
    Never a token or a request body."""
    user = str((body.get("user") or {}).get("id") or body.get("user_id") or "")[:32]
    if body.get("command"):
        words = str(body.get("text") or "").split()
        kind, state = "command", printable(words[1][:300]) if len(words) > 1 else None
    else:
        kind, state = "click", None
    activity.info(
        "%s %s by %s%s: %s in %.3fs",
        kind,
        request_label(body),
        user or "?",
        f" on {state}" if state else "",
        outcome,
        seconds,
        extra={
            "event": {
                "kind": kind,
                "command": request_label(body),
                "user": user,
                "state": state,
                "outcome": outcome,
                "duration_ms": round(seconds * 1000, 1),
            }
        },
    )


def user_message(error: Exception) -> str:
    """What the person is told: a known error's own words; for anything else (database drivers included,
    whose text names hosts and users) a reference into the log."""
    if isinstance(error, TflockError) and not isinstance(error, DatabaseUnavailable):
        log.info("told the user: %s", error)
        return str(error)
    reference = uuid.uuid4().hex[:8]
    log.error("error shown to the user as reference %s", reference, exc_info=error)
    if isinstance(error, DatabaseUnavailable):
        return f"tflock could not use its database (reference {reference}); the details are in its log."
    return f"Something went wrong on tflock's side (reference {reference}). The details are in its log."


def tell(error: Exception, body: dict[str, Any], respond: Respond | None, runtime: Runtime | None) -> None:
    if runtime is not None:
        runtime.metrics.requests.labels(command=request_label(body), outcome=outcome_of(error)).inc()
    message = user_message(error)
    if respond is None:
        return
    try:
        respond(response_type="ephemeral", replace_original=False, **error_message(message).as_kwargs())
    except Exception:
        log.exception("could not tell the user about an error")
