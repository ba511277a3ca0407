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
from bot.unlock.models import HolderAnswer, RequestView, Status
from bot.unlock.notify import ApproverReach, HolderChoice, HolderMatch, HolderOutcome
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
        f"The reason was: “{escape(printable(reason))}”",
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
    if request.holder:
        lines.append(holder_line(request))
    blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines))), fields=fields)]
    if pending and request.holder_says_running:
        warning = (
            f":warning: *{mention(request.holder)}, who holds this lock, says their run is still running.* "
            "Releasing it under a live run can corrupt the state. Approve only once you are sure it is dead: "
            "*Approve anyway* asks you to confirm that."
        )
        blocks.append(SectionBlock(text=MarkdownTextObject(text=warning)))
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


def holder_line(request: RequestView) -> str:
    """What the lock's holder was asked and said, for the request message."""
    who = mention(request.holder)
    if request.holder_answer is HolderAnswer.RUNNING:
        return f":warning: Holder {who}: *my run is still running*"
    if request.holder_answer is HolderAnswer.DEAD:
        return f":skull: Holder {who}: *it's dead, go ahead*"
    return f":speech_balloon: Holder {who} was asked whether their run is still alive; no answer yet"


def approval_buttons(request: RequestView) -> list[ButtonElement]:
    if request.holder_says_running:
        return [_approve_anyway(request), *_approval_buttons(request)[1:]]
    return _approval_buttons(request)


def _approve_anyway(request: RequestView) -> ButtonElement:
    """The only way to approve once the holder said "still running": its own action and a sterner confirmation."""
    confirm = ConfirmObject(
        title="The holder says it's running",
        text=MarkdownTextObject(
            text=f"{mention(request.holder)} says the run holding lock "
            f"{code(_clip(request.lock_id or 'unreadable', 64))} is still running. Release it anyway? Only if you "
            "have checked that run is dead: a live run could corrupt the state."
        ),
        confirm="Yes, the run is dead",
        deny="No",
        style="danger",
    )
    return ButtonElement(
        text="Approve anyway", action_id=Action.APPROVE_ANYWAY, value=request.id, style="danger", confirm=confirm
    )


def _approval_buttons(request: RequestView) -> list[ButtonElement]:
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


# -- reaching approvers and the lock's holder (bot/unlock/notify.py decides who) ---------------------------------
def note_message(text: str) -> Message:
    """A one-section thread reply whose text is already safe mrkdwn (built by the functions below)."""
    return Message(_clip(text), (SectionBlock(text=MarkdownTextObject(text=_clip(text))),))


def link_to(link: str | None, words: str, request: RequestView) -> str:
    """`<permalink|words>`, or the channel when Slack gave no link."""
    if link and re.fullmatch(r"https?://[^\s<>|]+", link):
        return f"<{link}|{escape(words)}>"
    if request.channel and re.fullmatch(r"[CG][A-Z0-9]{2,20}", request.channel):
        return f"{escape(words)} in <#{request.channel}>"
    return escape(words)


def group_mention(group: str) -> str:
    return f"<!subteam^{group}>" if re.fullmatch(r"S[A-Z0-9]{2,20}", group) else escape(group)


def reach_mentions(reach: ApproverReach) -> str:
    return " ".join([*(group_mention(g) for g in reach.groups), *(mention(u) for u in reach.users)])


def approvers_call(request: RequestView, reach: ApproverReach, link: str | None) -> Message:
    """The thread reply that mentions who can approve (TFLOCK_NOTIFY=mention)."""
    text = (
        f":bell: {reach_mentions(reach)} — {mention(request.requester)} asks to force-unlock "
        f"{code(_clip(request.address, 500))}: {link_to(link, 'see the request', request)}. "
        f"{request.approvals_missing} approval(s) needed."
    )
    return Message(_clip(text), (SectionBlock(text=MarkdownTextObject(text=_clip(text))),))


def approver_dm(request: RequestView, link: str | None) -> Message:
    """A direct message to one approver (TFLOCK_NOTIFY=dm)."""
    text = (
        f":bell: {mention(request.requester)} asks to force-unlock {code(_clip(request.address, 500))} and you can "
        f"approve it: {link_to(link, 'open the request', request)}.\n"
        f"Reason: “{escape(_clip(printable(request.reason), 1500))}”"
    )
    context = f"Expires {slack_time(request.expires_at)} · {request.approvals_missing} approval(s) needed"
    return Message(
        escape(f"Force-unlock of {_clip(request.address, 500)} waiting for your approval"),
        (
            SectionBlock(text=MarkdownTextObject(text=_clip(text))),
            ContextBlock(elements=[MarkdownTextObject(text=context)]),
        ),
    )


def holder_question(request: RequestView, link: str | None, now: datetime) -> Message:
    """The holder's DM: who asks, why, the lock's facts, and the two answers."""
    try:
        info = parse_lock_info(request.raw_info)
    except LockInfoError:
        info = None
    age = format_age(now - info.created) if info is not None and info.created is not None else "unknown"
    text = (
        f":wave: {mention(request.requester)} asks to force-unlock {code(_clip(request.address, 500))}, and the lock "
        f"there carries your name. Is the run that took it still alive? ({link_to(link, 'the request', request)})\n"
        f"Reason: “{escape(_clip(printable(request.reason), 1500))}”"
    )
    fields = [
        _field("Who", escape(printable(info.who)) if info else "unknown"),
        _field("Operation", escape(printable(info.operation_words)) if info else "unknown"),
        _field("Lock ID", code(request.lock_id) if request.lock_id else "unreadable"),
        _field("Held for", escape(age)),
    ]
    dead_confirm = ConfirmObject(
        title="Your run is dead?",
        text=MarkdownTextObject(text="If the run still holds this lock, releasing it can corrupt the state."),
        confirm="It's dead",
        deny="Not sure",
    )
    buttons = ActionsBlock(
        elements=[
            ButtonElement(text="My run is still running", action_id=Action.HOLDER_RUNNING, value=request.id),
            ButtonElement(
                text="It's dead, go ahead",
                action_id=Action.HOLDER_DEAD,
                value=request.id,
                style="danger",
                confirm=dead_confirm,
            ),
        ]
    )
    return Message(
        escape(f"Is your run on {_clip(request.address, 500)} still alive? Someone asks to force-unlock it"),
        (SectionBlock(text=MarkdownTextObject(text=_clip(text)), fields=fields), buttons),
    )


def holder_answered(outcome: HolderOutcome) -> Message:
    """The holder's DM once answered: what they said and what it did (buttons gone)."""
    request = outcome.request
    said = "your run is still running" if outcome.answer is HolderAnswer.RUNNING else "your run is dead"
    if outcome.answer is HolderAnswer.RUNNING:
        did = "Approvers now see a warning and must confirm past it."
    elif outcome.approved:
        did = "That counts as your approval."
    else:
        did = f"That is recorded, but not an approval: {escape(outcome.note)}."
    text = f":memo: You said {said} — for the force-unlock of {code(_clip(request.address, 500))}. {did}"
    return Message(_clip(text), (SectionBlock(text=MarkdownTextObject(text=_clip(text))),))


def holder_reply(outcome: HolderOutcome, holder: str) -> str:
    """The request thread's reply about the holder's answer."""
    who = mention(holder)
    if outcome.answer is HolderAnswer.RUNNING:
        return (
            f":warning: {who}, who holds this lock, says *their run is still running*. Approving now needs "
            "*Approve anyway*."
        )
    if outcome.approved:
        return f":skull: {who}, who holds this lock, says *it's dead, go ahead* — counted as their approval."
    return f":skull: {who}, who holds this lock, says *it's dead, go ahead* — not an approval: {escape(outcome.note)}."


def holder_note(choice: HolderChoice, who: str | None, *, delivered: bool = True) -> str:
    """The request thread's note on whether the lock's holder was asked, and why not."""
    shown = code(_clip(printable(who), 200)) if who else "nobody"
    if choice.match is HolderMatch.ASK and not delivered:
        return (
            f":grey_question: The lock's Who, {shown}, is {mention(choice.user)}, but Slack would not take a direct "
            "message to them, so they were not asked whether their run is alive."
        )
    if choice.match is HolderMatch.ASK:
        return f":speech_balloon: Asked {mention(choice.user)} (the lock's Who, {shown}) whether their run is alive."
    if choice.match is HolderMatch.AMBIGUOUS:
        return (
            f":grey_question: The lock's Who, {shown}, matches {choice.candidates} Slack users, so nobody was asked "
            "whether the run is alive."
        )
    if choice.match is HolderMatch.UNMATCHED:
        return f":grey_question: The lock's Who, {shown}, matches no Slack user, so nobody was asked about the run."
    return ":grey_question: The lock names no user, so nobody was asked whether the run is alive."


def escalation_message(request: RequestView, now: datetime, reach: ApproverReach, link: str | None) -> Message:
    """The one reminder about a request still pending, for its thread and TFLOCK_ESCALATE_CHANNEL."""
    waited = format_age(now - request.created_at)
    calls = f"{reach_mentions(reach)} " if reach.anyone else ""
    text = (
        f":alarm_clock: {calls}Still waiting after {escape(waited)}: {mention(request.requester)}'s force-unlock of "
        f"{code(_clip(request.address, 500))} has {len(request.approvers)} of {request.approvals_required} "
        f"approval(s) — {link_to(link, 'see the request', request)}. It expires {slack_time(request.expires_at)}."
    )
    return Message(_clip(text), (SectionBlock(text=MarkdownTextObject(text=_clip(text))),))


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
