"""Buttons: Request force-unlock (and, with the unlock workflow, Approve / Reject / Cancel)."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond

from bot.runtime import Runtime
from bot.slack.ids import Action
from bot.slack.views import error_message


def request_unlock_clicked(ack: Ack, body: dict[str, Any], respond: Respond, runtime: Runtime) -> None:
    ack()
    runtime.metrics.requests.labels(command=Action.REQUEST_UNLOCK, outcome="not_enabled").inc()
    respond(
        response_type="ephemeral",
        replace_original=False,
        **error_message("Force-unlock requests are not enabled in this version of tflock yet.").as_kwargs(),
    )


def register(app: App) -> None:
    app.action(Action.REQUEST_UNLOCK)(request_unlock_clicked)
