"""The one error handler: known errors become a message for the person who asked; the rest are logged."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from slack_bolt import Respond

from bot.db import DatabaseUnavailable
from bot.errors import AwsAccessDenied, AwsFailure, BadInput, TflockError
from bot.runtime import Runtime
from bot.slack.views import error_message

log = logging.getLogger(__name__)


def request_label(body: dict[str, Any]) -> str:
    """A low-cardinality name for metrics: the subcommand or the action, never free text."""
    if body.get("command"):
        word = str(body.get("text", "")).split(maxsplit=1)
        sub = word[0].lower() if word else "help"
        return sub if sub in {"status", "list", "unlock", "audit", "help"} else "unknown"
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


def after_ack(runtime: Runtime, body: dict[str, Any], respond: Respond | None, work: Callable[[], None]) -> None:
    """Run a listener's slow part on the work pool, errors told to the person.

    Bolt sends the ack only once a listener thread has called ack(); keeping AWS and Slack calls off
    those threads means a slow or hung AWS never delays the acks of other commands.
    """

    def run() -> None:
        with errors_told(body, respond, runtime):
            work()

    runtime.work.submit(run)


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
