"""Pure Block Kit renderers: plain values in, `slack_sdk.models.blocks` out. No I/O, no Slack client."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
from bot.locks.facts import LockFacts, printable
from bot.locks.lockinfo import LockInfoError, parse_lock_info
from bot.locks.model import Answer, Store
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
    if facts.hold is not None:
        return _held_status(facts)
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


def _held_status(facts: LockFacts) -> Message:
    """`/tflock status` of a state held on purpose: a HOLD by whom, why, since when — never "stale", no button."""
    hold = facts.hold
    assert hold is not None
    where = f" in {escape(hold.channel)}" if hold.channel else ""
    fields = [
        _field("Held by", escape(hold.by) + where),
        _field("Since", escape(hold.since) if hold.since else "unknown"),
        _field("Reason", escape(hold.reason)),
        _field("Held for", escape(facts.age) if facts.age else "unknown"),
        _field("Lock ID", code(facts.lock_id) if facts.lock_id else "unreadable"),
        _field("Held in", "\n".join(escape(where) for where in facts.held_in)),
    ]
    hint = (
        "Terraform and OpenTofu refuse to plan or apply until it is released: by its holder with "
        f"`{COMMAND} release {escape(facts.address)}`, by anyone else with a two-person force-unlock."
    )
    blocks: list[Block] = [
        SectionBlock(
            text=MarkdownTextObject(text=_clip(f":octagonal_sign: *HOLD on* {code(facts.address)}")), fields=fields
        ),
        ContextBlock(elements=[MarkdownTextObject(text=_clip(hint))]),
    ]
    if facts.problems:
        problems = "\n".join(f"• {escape(p)}" for p in facts.problems)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(f":rotating_light: {problems}"))))
    return Message(escape(f"{facts.address} is on hold by {hold.by}: {_clip(hold.reason, 200)}"), tuple(blocks))


def hold_message(address: str, holder: str, reason: str, lock_id: str, held_in: Sequence[Store]) -> Message:
    """In the channel: the state is now held; Terraform will print this reason to anyone who tries."""
    stores = " and ".join(_STORE_WORDS[store.value] for store in held_in)
    lines = [
        f":octagonal_sign: *{code(address)} is on hold* — {mention(holder)}: “{escape(printable(reason))}”",
        "Nobody can `terraform plan` or `apply` it until it is released; they see this reason in "
        "*Error acquiring the state lock*.",
    ]
    context = f"Lock {code(lock_id)} in the {escape(stores)} · release: `{COMMAND} release {escape(address)}`"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines)))),
        ContextBlock(elements=[MarkdownTextObject(text=_clip(context))]),
    ]
    return Message(escape(f"{address} is on hold: {_clip(printable(reason), 200)}"), tuple(blocks))


def released_hold_message(address: str, holder: str, reason: str, held_for: str, outcome: str | None) -> Message:
    """In the channel: the hold is over and Terraform can lock the state again."""
    lines = [
        f":white_check_mark: *Hold released* on {code(address)} by {mention(holder)} after {escape(held_for)}.",
        f"It was held for: “{escape(printable(reason))}”",
    ]
    if outcome:
        lines.append(escape(outcome))
    return Message(
        escape(f"Hold on {address} released"),
        (SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines)))),),
    )


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
            if facts.hold is not None:
                marker = f":octagonal_sign: *HOLD* ({escape(_clip(facts.hold.reason, 200))}) · "
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
    f"*{COMMAND} hold <state> <reason…>* — take the state's lock on purpose: nobody plans or applies until released\n"
    f"*{COMMAND} release <state>* — release a hold you took\n"
    f"*{COMMAND} audit [state] [since:7d] [user:@x] [csv]* — the audit trail (auditors only)\n"
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
