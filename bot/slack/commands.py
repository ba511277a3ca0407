"""`/tflock …`: acknowledge at once, then parse, call one service, render, answer via response_url."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.audit.models import AuditAction
from bot.durations import format_age
from bot.errors import BadInput, TflockError
from bot.history.query import state_history
from bot.history.record import history_of_listing, history_of_status
from bot.locks.address import parse_address
from bot.locks.facts import lock_facts
from bot.locks.model import StateLock
from bot.runtime import Runtime
from bot.slack.actions import open_request
from bot.slack.audit import audit
from bot.slack.errors import BUSY, after_ack, log_request
from bot.slack.ids import COMMAND
from bot.slack.messages import ApprovalMessages
from bot.slack.notify import Notifier
from bot.slack.people import People
from bot.slack.report import report as manager_report
from bot.slack.views import (
    Message,
    error_message,
    help_message,
    history_message,
    hold_message,
    list_message,
    released_hold_message,
    status_message,
)
from bot.unlock.holds import Holds
from bot.unlock.pins import LockPins
from bot.unlock.workflow import UnlockWorkflow

log = logging.getLogger(__name__)
MAX_COMMAND_TEXT = 4000


Answered = tuple[Message, bool, Callable[[], None] | None]


@dataclass(frozen=True)
class SlashCommand:
    subcommand: str
    argument: str
    user_id: str
    channel_id: str
    user_name: str = ""
    channel_name: str = ""

    @classmethod
    def parse(cls, body: dict[str, Any]) -> SlashCommand:
        # Slack sends what people typed with & < > as entities; its own markup (<@U…|name>) stays as is.
        text = str(body.get("text") or "").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()
        words = text.split(maxsplit=1)
        return cls(
            subcommand=words[0].lower() if words else "help",
            argument=words[1] if len(words) > 1 else "",
            user_id=str(body.get("user_id") or ""),
            channel_id=str(body.get("channel_id") or ""),
            user_name=str(body.get("user_name") or ""),
            channel_name=str(body.get("channel_name") or ""),
        )


def tflock_command(
    ack: Ack,
    command: dict[str, Any],
    respond: Respond,
    runtime: Runtime,
    workflow: UnlockWorkflow,
    messages: ApprovalMessages,
    people: People,
    client: WebClient,
    notifier: Notifier,
) -> None:
    started = time.monotonic()
    request = SlashCommand.parse(command)
    if len(str(command.get("text") or "")) > MAX_COMMAND_TEXT:
        ack(**help_message(f"That command is {len(command['text']):,} characters long; nothing was done.").as_kwargs())
        _count(runtime, "unknown", "bad_input")
        log_request({"command": COMMAND, "user_id": request.user_id}, "bad_input", time.monotonic() - started)
        return
    # Each gives (answer, ephemeral?, what to record once the person has the answer).
    answers: dict[str, Callable[[], Answered]] = {
        "status": lambda: _in_channel(*status(request, runtime)),
        "list": lambda: _in_channel(*list_locks(request, runtime)),
        "unlock": lambda: (unlock(request, workflow, messages, people, notifier), True, None),
        "hold": lambda: (hold(request, runtime), False, None),
        "release": lambda: (release(request, runtime), False, None),
        "history": lambda: (history(request, runtime), False, None),
        "audit": lambda: (
            audit(runtime, people, client, user=request.user_id, channel=request.channel_id, argument=request.argument),
            True,
            None,
        ),
        "report": lambda: (
            manager_report(
                runtime, people, client, user=request.user_id, channel=request.channel_id, argument=request.argument
            ),
            True,
            None,
        ),
    }
    work = answers.get(request.subcommand)
    if work is None:
        if request.subcommand == "help":
            ack(**help_message().as_kwargs())
            _count(runtime, "help", "ok")
            log_request(command, "ok", time.monotonic() - started)
        else:
            ack(**help_message(f"Unknown command “{request.subcommand[:40]}”.").as_kwargs())
            log_request(command, "bad_input", time.monotonic() - started)
            _count(runtime, "unknown", "bad_input")
        return
    # A request, a hold and a release are click-like decisions (they write); the rest are look-ups.
    pool = runtime.clicks if request.subcommand in {"unlock", "hold", "release"} else runtime.lookups
    if not pool.reserve():  # full: say so in the ack itself, at once, instead of answering minutes late
        ack(**error_message(BUSY).as_kwargs())
        _count(runtime, request.subcommand, "busy")
        log_request(command, "busy", time.monotonic() - started)
        return
    ack()

    def answer() -> None:
        message, ephemeral, record = work()
        _answer(respond, message, ephemeral=ephemeral)
        _count(runtime, request.subcommand, "ok")
        runtime.metrics.answer_seconds.labels(command=request.subcommand).observe(time.monotonic() - started)
        if record is not None:  # the audit row waits for the database, the person does not (docs/design.md §13)
            record()

    after_ack(runtime, command, respond, answer, pool, reserved=True)


def unlock(
    request: SlashCommand,
    workflow: UnlockWorkflow,
    messages: ApprovalMessages,
    people: People,
    notifier: Notifier | None = None,
) -> Message:
    state, _, reason = request.argument.partition(" ")
    if not state:
        raise BadInput(f"Which state, and why? `{COMMAND} unlock <state> <reason…>`")
    opened = open_request(
        workflow,
        messages,
        people,
        state=state,
        user=request.user_id,
        reason=reason,
        channel=request.channel_id,
        notifier=notifier,
    )
    return Message(f"Asked for approval of the force-unlock of {opened.address}.")


def hold(request: SlashCommand, runtime: Runtime) -> Message:
    state, _, reason = request.argument.strip().partition(" ")
    if not state or not reason.strip():
        raise BadInput(
            f"Which state, and why? `{COMMAND} hold <state> <reason…>` — the reason is what Terraform shows "
            "to anyone who tries to plan or apply it."
        )
    view = _holds(runtime).hold(
        state,
        reason,
        request.user_id,
        request.channel_id or None,
        actor_name=request.user_name or None,
        channel_name=_channel_name(request.channel_name),
    )
    return hold_message(view.address, view.holder, view.reason, view.lock_id, view.held_in)


def release(request: SlashCommand, runtime: Runtime) -> Message:
    state = request.argument.strip()
    if not state or " " in state:
        raise BadInput(f"Which state? `{COMMAND} release <state>` releases a hold you took.")
    view = _holds(runtime).release(state, request.user_id)
    held_for = format_age((view.released_at or runtime.clock()) - view.created_at)
    return released_hold_message(view.address, view.holder, view.reason, held_for, view.outcome)


def _holds(runtime: Runtime) -> Holds:
    return Holds(
        runtime.sessions, runtime.directory, runtime.clock, on_history_missed=runtime.metrics.history_missed.inc
    )


def _channel_name(name: str) -> str | None:
    """Slack's channel_name, when it names a channel (DMs and private groups come as placeholders)."""
    return name if name and name not in {"directmessage", "privategroup", "mpdm"} else None


def status(request: SlashCommand, runtime: Runtime) -> tuple[Message, Callable[[], None]]:
    if not request.argument:
        raise BadInput(f"Which state? Try `{COMMAND} status bucket/path/to/terraform.tfstate`.")
    lock = runtime.directory.status(request.argument)
    now = runtime.clock()
    facts = lock_facts(lock, now, runtime.settings.stale_after)
    message = status_message(facts, _pins(runtime, [lock]).get(facts.address))

    def record() -> None:  # the audit row first: it is the one with a promise (docs/design.md §13)
        runtime.record_lookup(
            AuditAction.STATUS,
            actor=request.user_id,
            channel=request.channel_id,
            state_address=facts.address,
            lock_id=facts.lock_id,
            detail={"answer": facts.answer.value, "locked": facts.locked, "age_seconds": facts.age_seconds},
        )
        runtime.record_history(lambda session: history_of_status(session, lock, now, runtime.settings.stale_after))

    return message, record


def list_locks(request: SlashCommand, runtime: Runtime) -> tuple[Message, Callable[[], None]]:
    argument = request.argument.strip().lower()
    if argument not in {"", "stale"}:
        raise BadInput(f"`{COMMAND} list` takes nothing or `stale`, not “{request.argument[:40]}”.")
    started = runtime.clock()  # the history's time: a lock recorded while the listing ran is not ended by it
    listing = runtime.directory.list_locks()
    now = runtime.clock()
    facts = [lock_facts(lock, now, runtime.settings.stale_after) for lock in listing.locks]
    if argument == "stale":
        facts = [f for f in facts if f.stale]
    problems = [f"{p.backend}: {p.message}" for p in listing.problems]
    stale = {f.address for f in facts if f.stale}
    pins = _pins(runtime, [lock for lock in listing.locks if str(lock.address) in stale])
    message = list_message(facts, problems, stale_only=argument == "stale", pins=pins)

    def record() -> None:
        runtime.record_lookup(
            AuditAction.LIST,
            actor=request.user_id,
            channel=request.channel_id,
            detail={
                "locks": len(facts),
                "stale_only": argument == "stale",
                "problems": len(problems),
                "complete": listing.complete,
            },
        )
        runtime.record_history(
            lambda session: history_of_listing(
                session, listing, runtime.directory.backends, started, runtime.settings.stale_after
            )
        )

    return message, record


def history(request: SlashCommand, runtime: Runtime) -> Message:
    """The last locks seen on one state; for everyone, like status (the facts are the channel's already)."""
    words = request.argument.split()
    if len(words) != 1:
        raise BadInput(f"Which state? Try `{COMMAND} history bucket/path/to/terraform.tfstate`.")
    address = parse_address(words[0], runtime.directory.backends.aliases)
    runtime.directory.backends.for_address(address)  # an unknown bucket is bad input, said as such
    return history_message(str(address), state_history(runtime.sessions, str(address)))


def _pins(runtime: Runtime, locks: list[StateLock]) -> dict[str, str]:
    """Pinned locks for the Request force-unlock buttons; without the database, an answer without buttons."""
    try:
        return LockPins(runtime.sessions, runtime.clock).pin_many(locks)
    except TflockError as exc:
        log.error("answering without Request force-unlock buttons: %s", exc)
        return {}


def _in_channel(message: Message, record: Callable[[], None]) -> Answered:
    return message, False, record


def _answer(respond: Respond, message: Message, *, ephemeral: bool = False) -> None:
    kind = "ephemeral" if ephemeral else "in_channel"
    respond(response_type=kind, replace_original=False, **message.as_kwargs())


def _count(runtime: Runtime, command: str, outcome: str) -> None:
    runtime.metrics.requests.labels(command=command, outcome=outcome).inc()


def register(app: App) -> None:
    app.command(COMMAND)(tflock_command)
