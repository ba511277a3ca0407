"""Pure Block Kit renderers: plain values in, `slack_sdk.models.blocks` out. No I/O, no Slack client."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    PlainTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.audit.models import AuditRecord
from bot.audit.query import note
from bot.durations import format_age
from bot.history.query import ENDED_WORDS, PastLock
from bot.locks.facts import LockFacts, printable
from bot.locks.lockinfo import LockInfoError, describe_operation, parse_lock_info
from bot.locks.model import Answer, Store
from bot.reports.report import Figures
from bot.slack.ids import COMMAND, Action, Callback
from bot.slack.ids import Block as BlockId
from bot.slack.ids import Field as FieldId
from bot.unlock.models import RequestView, Status
from bot.unlock.policy import MAX_REASON_CHARS

MAX_LISTED = 40  # Slack allows 50 blocks a message; the rest is summarised
MAX_TEXT = 2900  # section text limit is 3000
_STORE_WORDS = {Store.TABLE.value: "DynamoDB table", Store.LOCKFILE.value: "S3 lock file"}


@dataclass(frozen=True)
class Message:
    text: str  # notification / fallback text: mrkdwn too, so untrusted words in it are escaped by the builder
    blocks: tuple[Block, ...] = ()

    def as_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "blocks": [block.to_dict() for block in self.blocks]}


def escape(text: str) -> str:
    """Slack mrkdwn control characters; everything shown from a lock or a person goes through this."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def code(text: str) -> str:
    return "`" + escape(text).replace("`", "ˋ") + "`"


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(label: str, value: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=_clip(f"*{label}*\n{value}", 1990))


def request_unlock_button(pin: str) -> ButtonElement:
    """The value is the short ID of the pinned lock (bot/unlock/pins.py): the state and the exact lock the
    person is looking at stay on the server, so a request never lands on a newer lock and any state key fits."""
    return ButtonElement(
        text=PlainTextObject(text="Request force-unlock"),
        action_id=Action.REQUEST_UNLOCK,
        value=pin,
        style="danger",
    )


def status_message(facts: LockFacts, pin: str | None = None) -> Message:
    """The in-channel answer to `/tflock status`; the button only when the lock could be pinned."""
    if facts.answer is Answer.UNKNOWN:
        lines = [f":grey_question: *Could not tell whether* {code(facts.address)} *is locked.*"]
        lines += [f"• {escape(u)}" for u in facts.unchecked]
        lines += [f"• {escape(_STORE_WORDS[c.store])} checked: not locked there" for c in facts.checked if c.ok]
        lines.append("Treat it as possibly locked; try again, or ask an operator to fix what is named above.")
        return Message(
            escape(f"{facts.address}: unknown — could not check every store"),
            (SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines)))),),
        )
    if facts.answer is Answer.NOT_HELD:
        checked = " and ".join(_STORE_WORDS[c.store] for c in facts.checked)
        lines = [f":unlock: {code(facts.address)} is not locked (checked: {escape(checked)})."]
        lines += [f":information_source: {escape(p)}" for p in facts.problems]
        return Message(
            escape(f"{facts.address} is not locked"),
            (SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines)))),),
        )
    emoji = ":warning:" if facts.stale else ":hourglass_flowing_sand:"
    fields = [
        _field("Held in", "\n".join(escape(where) for where in facts.held_in)),
        _field("Lock ID", code(facts.lock_id) if facts.lock_id else "unreadable"),
        _field("Who", escape(facts.who) if facts.who else "unknown"),
        _field("Operation", escape(facts.operation) if facts.operation else "unknown"),
        _field("Created", escape(facts.created) if facts.created else "unknown"),
        _field("Age", escape(facts.age) if facts.age else "unknown"),
        _field("Version", escape(facts.version) if facts.version else "unknown"),
        _field("Workspace", escape(facts.workspace)),
    ]
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(text=_clip(f":lock: *State lock on* {code(facts.address)}")), fields=fields
        ),
        ContextBlock(elements=[MarkdownTextObject(text=f"{emoji} *{escape(facts.verdict)}*")]),
    ]
    if facts.problems:
        problems = "\n".join(f"• {escape(p)}" for p in facts.problems)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(f":rotating_light: {problems}"))))
    if pin is not None:
        blocks.append(ActionsBlock(elements=[request_unlock_button(pin)]))
    who = facts.who or "someone"
    age = facts.age or "an unknown time"
    operation = facts.operation or "unknown operation"
    return Message(escape(f"{facts.address} is locked by {who} ({operation}) for {age}"), tuple(blocks))


def list_message(
    all_facts: Sequence[LockFacts],
    problems: Sequence[str],
    *,
    stale_only: bool,
    pins: Mapping[str, str] | None = None,
) -> Message:
    """The in-channel answer to `/tflock list [stale]`: every held lock, oldest first; `pins` by address."""
    what = "stale locks" if stale_only else "locks held"
    if not all_facts and problems:  # never "no locks" when something was not checked
        found = "stale locks" if stale_only else "locks"
        text = f":grey_question: No {found} found in what could be checked — this list is partial."
        blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=text))]
    elif not all_facts:
        text = f":white_check_mark: No {what}."
        blocks = [SectionBlock(text=MarkdownTextObject(text=text))]
    else:
        stale_count = sum(1 for f in all_facts if f.stale)
        header = f"{len(all_facts)} {what}" + ("" if stale_only else f", {stale_count} probably stale")
        blocks = [HeaderBlock(text=PlainTextObject(text=_clip(header, 150)))]
        pinned = pins or {}
        for facts in all_facts[:MAX_LISTED]:
            marker = ":warning: *stale* · " if facts.stale else ""
            line = (
                f"{marker}{code(facts.address)}\n"
                f"{escape(facts.who or 'unknown')} · {escape(facts.operation or 'unknown operation')} · "
                f"{escape(facts.age or 'age unknown')} · ID {code(facts.lock_id or 'unreadable')}"
            )
            blocks.append(
                SectionBlock(
                    text=MarkdownTextObject(text=_clip(line)),
                    accessory=request_unlock_button(pinned[facts.address])
                    if facts.stale and facts.address in pinned
                    else None,
                )
            )
        if len(all_facts) > MAX_LISTED:
            more = len(all_facts) - MAX_LISTED
            blocks.append(
                ContextBlock(elements=[MarkdownTextObject(text=f"…and {more} more: `tflock-bot list` shows them all.")])
            )
        text = header
    if problems:
        blocks.append(DividerBlock())
        listed = "\n".join(f"• could not check {escape(p)}" for p in problems[:5])
        rest = f"\n…and {len(problems) - 5} more" if len(problems) > 5 else ""
        partial = f":rotating_light: *Partial list* — not everything was checked:\n{listed}{rest}"
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(partial))))
        text += " (partial: some stores could not be checked)"
    return Message(text, tuple(blocks))


USAGE = escape(
    f"*{COMMAND} status <state>* — who holds a state's lock, since when\n"
    f"*{COMMAND} list [stale]* — every held lock, oldest first\n"
    f"*{COMMAND} unlock <state> <reason…>* — ask for a force-unlock; a second person must approve\n"
    f"*{COMMAND} history <state>* — the last locks on a state: who, how long, how each ended\n"
    f"*{COMMAND} audit [state] [since:7d] [user:@x] [csv]* — the audit trail (auditors only)\n"
    f"*{COMMAND} report [since:90d]* — lock and force-unlock figures with charts (auditors only)\n"
    f"*{COMMAND} help* — this message\n"
    "A state is `bucket/key` as Terraform prints it under `Path:`, `s3://bucket/key`, an alias, or the lock `ID:`."
)


def help_message(problem: str | None = None) -> Message:
    text = (f":grey_question: {escape(problem)}\n\n" if problem else "") + USAGE
    return Message(escape(problem or "tflock usage"), (SectionBlock(text=MarkdownTextObject(text=text)),))


def error_message(text: str) -> Message:
    return Message(escape(text), (SectionBlock(text=MarkdownTextObject(text=_clip(f":warning: {escape(text)}"))),))


# -- force-unlock requests -------------------------------------------------------------------------
_USER_ID = re.compile(r"[UW][A-Z0-9]{2,20}")
_FINAL = {
    Status.EXECUTED: ":white_check_mark: *Released*",
    Status.SUPERSEDED: ":no_entry: *Not released — the lock changed since the request*",
    Status.ALREADY_RELEASED: ":information_source: *Nothing to release — the lock was already gone*",
    Status.FAILED: ":x: *Release failed*",
    Status.REJECTED: ":no_entry_sign: *Rejected*",
    Status.CANCELLED: ":leftwards_arrow_with_hook: *Cancelled by the requester*",
    Status.EXPIRED: ":hourglass: *Expired without enough approvals*",
    Status.APPROVED: ":gear: *Approved — releasing…*",
    Status.EXECUTING: ":gear: *Approved — releasing…*",
}


def mention(user_id: str | None) -> str:
    if user_id is None:
        return "tflock"
    return f"<@{user_id}>" if _USER_ID.fullmatch(user_id) else escape(user_id)


def slack_time(moment: datetime) -> str:
    """Shown in each reader's own time zone, with a UTC fallback for clients that cannot."""
    fallback = moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"


def approval_message(request: RequestView, now: datetime) -> Message:
    """The request as the channel sees it: lock facts, who asked and why, approvals, and buttons while pending."""
    try:
        info = parse_lock_info(request.raw_info)
    except LockInfoError:
        info = None
    held = {Store.TABLE: "DynamoDB table", Store.LOCKFILE: "S3 lock file"}
    age = format_age(now - info.created) if info is not None and info.created is not None else "unknown"
    fields = [
        _field("Lock ID", code(request.lock_id) if request.lock_id else "unreadable"),
        _field("Who", escape(printable(info.who)) if info else "unknown"),
        _field("Operation", escape(printable(info.operation_words)) if info else "unknown"),
        _field("Held for", escape(age)),
        _field("Held in", escape(", ".join(held[s] for s in request.held_in))),
        _field("Approvals", f"{len(request.approvers)} of {request.approvals_required}"),
    ]
    pending = request.status is Status.PENDING
    title = (
        ":rotating_light: *Force-unlock requested* for " + code(request.address)
        if pending
        else f"{_FINAL.get(request.status, escape(request.status.value))} · force-unlock of {code(request.address)}"
    )
    lines = [title, f"Requested by {mention(request.requester)}: “{escape(printable(request.reason))}”"]
    if request.approvers:
        lines.append("Approved by " + ", ".join(mention(a) for a in request.approvers))
    if request.status in {Status.REJECTED, Status.CANCELLED} and request.decided_by:
        lines.append(f"{request.status.value.capitalize()} by {mention(request.decided_by)}")
    if request.outcome:
        lines.append(escape(request.outcome))
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines))), fields=fields)]
    if pending:
        blocks.append(
            ContextBlock(
                elements=[
                    MarkdownTextObject(
                        text=f"Expires {slack_time(request.expires_at)} · a second person must approve · "
                        f"only this exact lock will be deleted"
                    )
                ]
            )
        )
        blocks.append(ActionsBlock(elements=approval_buttons(request)))
    summary = "requested" if pending else request.status.value.replace("_", " ")
    return Message(escape(f"Force-unlock of {request.address}: {summary}"), tuple(blocks))


def approval_buttons(request: RequestView) -> list[ButtonElement]:
    confirm = ConfirmObject(
        title="Release this lock?",
        text=MarkdownTextObject(  # Slack allows 300 characters here: the address is in the message itself
            text=f"tflock will delete lock {code(_clip(request.lock_id or 'unreadable', 64))} only if it is still "
            "exactly the lock that was requested. A run that still holds it could corrupt the state."
        ),
        confirm="Approve and release",
        deny="Not yet",
        style="danger",
    )
    return [
        ButtonElement(text="Approve", action_id=Action.APPROVE, value=request.id, style="primary", confirm=confirm),
        ButtonElement(text="Reject", action_id=Action.REJECT, value=request.id, style="danger"),
        ButtonElement(text="Cancel", action_id=Action.CANCEL, value=request.id),
    ]


def decision_reply(request: RequestView, actor: str | None, action: str) -> str:
    """The thread reply for one decision, in plain text with mentions."""
    who = mention(actor)
    if action == "approved" and request.status is Status.PENDING:
        return f":ballot_box_with_check: {who} approved ({len(request.approvers)} of {request.approvals_required})."
    final = _FINAL.get(request.status, request.status.value)
    outcome = f" {escape(request.outcome)}" if request.outcome else ""
    by = f" ({who})" if actor else ""
    return f"{final}{by}.{outcome}"


def reason_modal(
    address: str | None, channel: str | None, *, pin: str | None = None, lock_id: str | None = None
) -> View:
    """Asks for the reason when someone clicks Request force-unlock. The pinned lock's short ID travels in
    private_metadata (the address itself could exceed its 3,000 characters); a button from before pins
    gives the address and lock ID instead."""
    what = f"the lock on {code(address)}" if address else "the lock you were shown"
    return View(
        type="modal",
        callback_id=Callback.UNLOCK_REASON,
        title=PlainTextObject(text="Request force-unlock"),
        submit=PlainTextObject(text="Request"),
        close=PlainTextObject(text="Cancel"),
        private_metadata=json.dumps(
            {"pin": pin, "channel": channel} if pin else {"address": address, "lock": lock_id, "channel": channel}
        ),
        blocks=[
            SectionBlock(
                text=MarkdownTextObject(
                    text=_clip(
                        f"Ask for {what} to be released. A second person must approve, and only the lock "
                        "you were shown will be deleted."
                    )
                )
            ),
            InputBlock(
                block_id=BlockId.REASON,
                label=PlainTextObject(text="Why is this lock stale?"),
                element=PlainTextInputElement(
                    action_id=FieldId.REASON,
                    multiline=True,
                    min_length=1,
                    max_length=MAX_REASON_CHARS,
                    placeholder=PlainTextObject(text="The CI job that held it was cancelled at 14:02 (link)…"),
                ),
            ),
        ],
    )


def audit_message(records: Sequence[AuditRecord], asked: str) -> Message:
    """The latest matching audit events, newest first, for an auditor's eyes only."""
    if not records:
        return Message(
            "No matching audit events.", (SectionBlock(text=MarkdownTextObject(text="No matching audit events.")),)
        )
    lines = []
    for record in records:
        where = f" on {code(record.state_address)}" if record.state_address else ""
        why = note(record)
        lines.append(
            f"`{record.at:%Y-%m-%d %H:%M}` *{escape(record.action)}* by {mention(record.actor)}{where}"
            + (f" — {escape(why[:150])}" if why else "")
        )
    header = f"Latest {len(records)} audit events" + (f" for `{escape(asked[:100])}`" if asked.strip() else "")
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=_clip(header)))]
    chunk: list[str] = []
    for line in lines:  # sections hold 3,000 characters: split the list across several
        if sum(len(item) + 1 for item in chunk) + len(line) > MAX_TEXT:
            blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(chunk))))
            chunk = []
        chunk.append(line)
    blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(chunk)))))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text="Add `csv` for every matching event as a file.")]))
    return Message(header, tuple(blocks))


# -- lock history --------------------------------------------------------------------------------
def held_for_text(past: PastLock) -> str:
    """`3h 7m` when tflock knows it exactly, `at least 3h 7m` otherwise."""
    age = format_age(past.held_for)
    return age if past.held_for_exact else f"at least {age}"


def ended_text(past: PastLock) -> str:
    if past.ended is None:
        return f"still held when last seen ({slack_time(past.last_seen)})"
    words = ENDED_WORDS.get(past.ended, escape(past.ended))
    if past.request_id:
        words += f" (request {code(past.request_id)})"
    return f"{words}, {slack_time(past.gone_at)}" if past.gone_at is not None else words


def history_message(state: str, past: Sequence[PastLock]) -> Message:
    """The last locks seen on one state, newest first: who, what, how long, how it ended."""
    header = f"Lock history of {code(printable(state))}"
    if not past:
        text = (
            f"{header}: no lock seen yet. tflock records the locks it sees through status, list and its "
            "stale-lock watchdog."
        )
        return Message(f"No lock history for {escape(printable(state))}.", (_section(text),))
    lines = []
    for lock in past:
        who = code(printable(lock.who)) if lock.who else "someone (unreadable Info)"
        operation = escape(printable(describe_operation(lock.operation))) if lock.operation is not None else "?"
        stale = " :hourglass: stale" if lock.stale else ""
        created = f"since {slack_time(lock.created)}" if lock.created else f"first seen {slack_time(lock.first_seen)}"
        lines.append(f"• {who} — {operation}, {created}; held *{held_for_text(lock)}*{stale}; {ended_text(lock)}")
    blocks: list[Block] = [_section(f"*{header}* — the last {len(past)} lock(s), newest first")]
    chunk: list[str] = []
    for line in lines:
        if sum(len(item) + 1 for item in chunk) + len(line) > MAX_TEXT:
            blocks.append(_section("\n".join(chunk)))
            chunk = []
        chunk.append(_clip(line, 1000))
    blocks.append(_section("\n".join(chunk)))
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text="“At least”: tflock saw the lock held that long; it went some time before it was seen gone."
                )
            ]
        )
    )
    return Message(f"Lock history of {escape(printable(state))}: {len(past)} lock(s)", tuple(blocks))


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=_clip(text)))


# -- the report --------------------------------------------------------------------------------------
def _p50_p95(p50: timedelta | None, p95: timedelta | None) -> str:
    if p50 is None or p95 is None:
        return "none in this period"
    return f"p50 {format_age(p50)} · p95 {format_age(p95)}"


def _people(counts: Mapping[str, int], limit: int = 5) -> str:
    shown = [f"{mention(person)} {count}" for person, count in list(counts.items())[:limit]]
    return ", ".join(shown) or "none"


def report_message(figures: Figures, charts_note: str) -> Message:
    """The report's headline figures for an auditor (definitions: docs/audit.md, "The report")."""
    report = figures.force_unlock
    period = f"{figures.since:%Y-%m-%d %H:%M} to {figures.until:%Y-%m-%d %H:%M} UTC"
    outcomes = ", ".join(f"{escape(k)} {v}" for k, v in report.outcomes.items()) or "none"
    fields = [
        _field("Locks seen", f"{figures.locks_seen}"),
        _field("Stale locks", f"{figures.stale_locks}"),
        _field("Holds released", f"{figures.holds}"),
        _field("Force-unlock requests", f"{figures.requests} made · {report.executed} executed"),
        _field("How requests ended", outcomes),
        _field("Refusals", f"{figures.refusals}"),
        _field("Request → release", _p50_p95(figures.release_p50, figures.release_p95)),
        _field("Request → approval", _p50_p95(figures.approval_p50, figures.approval_p95)),
    ]
    blocking = [
        f"• {code(printable(b.state))}: {b.locks} lock(s), {b.stale} stale, held at least {format_age(b.held)}"
        for b in figures.blocking[:5]
    ]
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text="tflock report")),
        ContextBlock(elements=[MarkdownTextObject(text=period)]),
        SectionBlock(fields=fields),
        _section("*States that block most*\n" + ("\n".join(blocking) or "No lock seen in this period.")),
        SectionBlock(
            fields=[
                _field("Top requesters (executed)", _people(report.requesters)),
                _field("Top approvers (executed)", _people(report.approvers)),
            ]
        ),
        ContextBlock(
            elements=[
                MarkdownTextObject(
                    text=_clip(
                        f"{escape(charts_note)} Every figure is defined in docs/audit.md; "
                        "`tflock-bot audit report --format csv` gives them all.",
                        1990,
                    )
                )
            ]
        ),
    ]
    text = (
        f"tflock report {period}: {figures.locks_seen} locks seen, {figures.stale_locks} stale, "
        f"{report.executed} force-unlocks"
    )
    return Message(text, tuple(blocks))
