"""Interactivity: Request force-unlock (button → reason modal), Approve / Reject / Cancel.

Button values carry only what is needed to look things up (a state address to re-parse, or a request
ID); everything that matters is read again from AWS or the database.
"""

from __future__ import annotations

import json
import logging
import time
from functools import partial
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.errors import BadInput
from bot.locks.address import StateAddress, parse_address
from bot.runtime import Runtime
from bot.slack.errors import BUSY, after_ack, log_request, outcome_of, tell, user_message
from bot.slack.ids import Action, Block, Callback, Field
from bot.slack.messages import ApprovalMessages
from bot.slack.notify import Notifier
from bot.slack.people import People
from bot.slack.views import reason_modal
from bot.unlock.models import HolderAnswer, Pin, RequestView
from bot.unlock.pins import LockPins, looks_like_pin
from bot.unlock.policy import MAX_REASON_CHARS, RefusalCode, Refused
from bot.unlock.workflow import UnlockWorkflow

log = logging.getLogger(__name__)
MAX_VALUE_CHARS = 2100  # a state address is at most ~1,100 characters


def _clicked(body: dict[str, Any]) -> tuple[str, str]:
    """The clicking user and the button's value, checked for shape."""
    user = str((body.get("user") or {}).get("id") or "")
    actions = body.get("actions") or [{}]
    value = str(actions[0].get("value") or "")
    if not user:
        raise BadInput("this click came without a user; nothing was done")
    if len(value) > MAX_VALUE_CHARS:
        raise BadInput("this button's value is not one tflock made; nothing was done")
    return user, value


def _message(body: dict[str, Any]) -> tuple[str, str] | None:
    """Where the clicked button was: (channel, message ts)."""
    container = body.get("container") or {}
    channel, ts = _channel(body), container.get("message_ts")
    return (channel, str(ts)) if channel and ts else None


def _channel(body: dict[str, Any]) -> str | None:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id")
    return str(channel) if channel else None


def request_unlock_clicked(
    ack: Ack, body: dict[str, Any], respond: Respond, runtime: Runtime, modal_client: WebClient
) -> None:
    """Open the reason modal inside the listener: one fast Slack call, while the click's trigger_id (valid
    for 3 s) is fresh. Nothing here waits on AWS or the database; refusals are told from the click pool."""
    ack()
    started = time.monotonic()
    try:
        user, value = _clicked(body)
        # A pinned lock's ID is looked up when the form is submitted, on the click pool; buttons from before
        # pins carry the state and lock ID themselves.
        pin = value if looks_like_pin(value) else None
        address, lock_id = (None, None) if pin else _pinned(value, runtime)
        if address is not None:
            runtime.directory.backends.for_address(address)
        channel = _channel(body)
        allowed = runtime.settings.allowed_channels
        if allowed and channel not in allowed:  # say so now, before the person types a reason

            def refuse() -> None:
                state = str(address) if address else None
                runtime.record_refusal("channel_not_allowed", actor=user, channel=channel, state=state, pin=pin)
                raise BadInput(
                    "Force-unlock requests are accepted only in the channels listed in TFLOCK_ALLOWED_CHANNELS "
                    f"({', '.join(allowed)}); ask there."
                )

            after_ack(runtime, body, respond, refuse, runtime.clicks)
            return
        view = reason_modal(str(address) if address else None, channel, pin=pin, lock_id=lock_id)
        modal_client.views_open(trigger_id=str(body.get("trigger_id") or ""), view=view)
    except Exception as error:
        log_request(body, outcome_of(error), time.monotonic() - started)
        runtime.notices.submit(partial(tell, error, body, respond, runtime))
        return
    runtime.metrics.requests.labels(command=Action.REQUEST_UNLOCK, outcome="ok").inc()
    log_request(body, "ok", time.monotonic() - started)


def _pinned(value: str, runtime: Runtime) -> tuple[StateAddress, str | None]:
    """A button from before pins: the state and the lock ID it showed (re-validated)."""
    try:
        data = json.loads(value)
    except ValueError:
        data = {"state": value}  # buttons posted before lock IDs were pinned carried the bare address
    if not isinstance(data, dict) or not isinstance(data.get("state"), str):
        raise BadInput("this button's value is not one tflock made; nothing was done")
    lock_id = data.get("lock")
    if lock_id is not None and (not isinstance(lock_id, str) or len(lock_id) > 128):
        raise BadInput("this button's value is not one tflock made; nothing was done")
    return parse_address(data["state"], runtime.directory.backends.aliases), lock_id


def reason_submitted(
    ack: Ack,
    body: dict[str, Any],
    view: dict[str, Any],
    runtime: Runtime,
    workflow: UnlockWorkflow,
    messages: ApprovalMessages,
    people: People,
    notifier: Notifier,
) -> None:
    values = (view.get("state") or {}).get("values") or {}
    reason = str(((values.get(Block.REASON) or {}).get(Field.REASON) or {}).get("value") or "").strip()
    if not reason:
        ack(response_action="errors", errors={Block.REASON: "Say why the lock should be released."})
        return
    if len(reason) > MAX_REASON_CHARS:
        ack(response_action="errors", errors={Block.REASON: f"Keep it under {MAX_REASON_CHARS} characters."})
        return
    ack()
    user = str((body.get("user") or {}).get("id") or "")
    try:
        metadata = json.loads(view.get("private_metadata") or "{}")
        pin_id, channel, lock_id = metadata.get("pin"), metadata.get("channel"), metadata.get("lock")
        address = None if pin_id else str(metadata["address"])  # forms opened before pins carry the address
    except (ValueError, KeyError, TypeError, AttributeError):
        tell(BadInput("this form was not one tflock made; nothing was done"), body, None, runtime)
        return

    def submit() -> None:
        started = time.monotonic()
        try:
            pinned = LockPins(runtime.sessions, runtime.clock).find(str(pin_id)) if pin_id else None
            if pin_id and pinned is None:
                raise BadInput("this form was not one tflock made; nothing was done")
            open_request(
                workflow,
                messages,
                people,
                state=pinned.address if pinned else str(address),
                user=user,
                reason=reason,
                channel=channel,
                expected_lock_id=lock_id if isinstance(lock_id, str) else None,
                pinned=pinned,
                notifier=notifier,
            )
            runtime.metrics.requests.labels(command=Callback.UNLOCK_REASON, outcome="ok").inc()
            log_request(body, "ok", time.monotonic() - started)
        except Exception as error:  # a modal has no response_url: whisper in the channel instead
            tell(error, body, None, runtime)
            log_request(body, outcome_of(error), time.monotonic() - started)
            messages.whisper(channel, user, user_message(error))

    if not runtime.clicks.submit(submit):
        log_request(body, "busy", 0.0)
        runtime.notices.submit(lambda: messages.whisper(channel, user, BUSY))


def open_request(
    workflow: UnlockWorkflow,
    messages: ApprovalMessages,
    people: People,
    *,
    state: str,
    user: str,
    reason: str,
    channel: str | None,
    expected_lock_id: str | None = None,
    pinned: Pin | None = None,
    notifier: Notifier | None = None,
) -> RequestView:
    """Record the request, then post its approval message; a message that cannot be posted withdraws it.
    Then call its approvers and ask the lock's holder (best effort: the request stands whatever Slack does)."""
    if not channel:
        raise BadInput("force-unlock requests must be made in a channel")
    try:
        request = workflow.request(
            state,
            user,
            reason,
            channel,
            is_bot=people.bot_check(user),
            expected_lock_id=expected_lock_id,
            pinned=pinned,
        )
    except Refused as refused:
        raise messages.pointing_to_winner(refused) from None
    try:
        posted = messages.post(request, channel)
    except Exception:
        workflow.cancel(request.id, user)
        raise
    if notifier is not None:
        try:
            notifier.announce(posted)
        except Exception:
            log.exception("request %s: notifying approvers and the holder failed", posted.id)
    return posted


def decision_clicked(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    runtime: Runtime,
    workflow: UnlockWorkflow,
    messages: ApprovalMessages,
    people: People,
) -> None:
    ack()
    after_ack(runtime, body, respond, lambda: decide(body, action, runtime, workflow, messages, people), runtime.clicks)


def decide(
    body: dict[str, Any],
    action: dict[str, Any],
    runtime: Runtime,
    workflow: UnlockWorkflow,
    messages: ApprovalMessages,
    people: People,
) -> None:
    """Approve, Reject or Cancel, then show the outcome in place; refusals go to the clicker alone."""
    user, request_id = _clicked(body)
    action_id = str(action.get("action_id"))
    try:
        is_bot = people.bot_check(user)
        if action_id in {Action.APPROVE, Action.APPROVE_ANYWAY}:
            past_warning = action_id == Action.APPROVE_ANYWAY
            request, done = workflow.approve(request_id, user, is_bot=is_bot, past_warning=past_warning), "approved"
        elif action_id == Action.REJECT:
            request, done = workflow.reject(request_id, user, is_bot=is_bot), "rejected"
        else:
            request, done = workflow.cancel(request_id, user, is_bot=is_bot), "cancelled"
    except Exception as error:
        # A refusal carries the request as it is now: keep its message truthful (e.g. just expired).
        current = getattr(error, "request", None)
        if getattr(error, "why", None) is RefusalCode.EXPIRED and isinstance(current, RequestView):
            messages.show(current, None, current.status.value, _message(body))
        if getattr(error, "why", None) is RefusalCode.HOLDER_RUNNING and isinstance(current, RequestView):
            messages.redraw(current, _message(body))  # an old message still showed plain Approve
        raise
    messages.show(request, user, done, _message(body))
    runtime.metrics.requests.labels(command=action_id, outcome=request.status.value).inc()


def holder_clicked(
    ack: Ack,
    body: dict[str, Any],
    action: dict[str, Any],
    respond: Respond,
    runtime: Runtime,
    notifier: Notifier,
    people: People,
) -> None:
    ack()
    after_ack(runtime, body, respond, lambda: holder_answer(body, action, notifier, people), runtime.clicks)


def holder_answer(body: dict[str, Any], action: dict[str, Any], notifier: Notifier, people: People) -> None:
    """The lock's holder answered in their DM: record it, then show it on the DM, the request and its thread."""
    user, request_id = _clicked(body)
    answer = HolderAnswer.RUNNING if action.get("action_id") == Action.HOLDER_RUNNING else HolderAnswer.DEAD
    outcome = notifier.notices.answer_as_holder(request_id, user, answer, is_bot=people.bot_check(user))
    notifier.show_holder_answer(outcome, user, _message(body))


def register(app: App) -> None:
    app.action(Action.REQUEST_UNLOCK)(request_unlock_clicked)
    app.view(Callback.UNLOCK_REASON)(reason_submitted)
    for action_id in (Action.APPROVE, Action.APPROVE_ANYWAY, Action.REJECT, Action.CANCEL):
        app.action(action_id)(decision_clicked)
    for action_id in (Action.HOLDER_RUNNING, Action.HOLDER_DEAD):
        app.action(action_id)(holder_clicked)
