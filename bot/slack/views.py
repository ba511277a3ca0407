"""Pure Block Kit renderers: plain values in, `slack_sdk.models.blocks` out. No I/O, no Slack client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.locks.facts import LockFacts
from bot.slack.ids import COMMAND, Action

MAX_LISTED = 40  # Slack allows 50 blocks a message; the rest is summarised
MAX_TEXT = 2900  # section text limit is 3000


@dataclass(frozen=True)
class Message:
    text: str  # notification / fallback text
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


def request_unlock_button(address: str) -> ButtonElement:
    return ButtonElement(
        text=PlainTextObject(text="Request force-unlock"),
        action_id=Action.REQUEST_UNLOCK,
        value=address,
        style="danger",
    )


def status_message(facts: LockFacts) -> Message:
    """The in-channel answer to `/tflock status`."""
    if not facts.locked:
        lines = [f":unlock: {code(facts.address)} is not locked."]
        lines += [f":information_source: {escape(p)}" for p in facts.problems]
        return Message(
            f"{facts.address} is not locked", (SectionBlock(text=MarkdownTextObject(text="\n".join(lines))),)
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
    blocks.append(ActionsBlock(elements=[request_unlock_button(facts.address)]))
    who = facts.who or "someone"
    age = facts.age or "an unknown time"
    return Message(
        f"{facts.address} is locked by {who} ({facts.operation or 'unknown operation'}) for {age}", tuple(blocks)
    )


def list_message(all_facts: Sequence[LockFacts], problems: Sequence[str], *, stale_only: bool) -> Message:
    """The in-channel answer to `/tflock list [stale]`: every held lock, oldest first."""
    what = "stale locks" if stale_only else "locks held"
    if not all_facts:
        text = f":white_check_mark: No {what}."
        blocks: list[Block] = [SectionBlock(text=MarkdownTextObject(text=text))]
    else:
        stale_count = sum(1 for f in all_facts if f.stale)
        header = f"{len(all_facts)} {what}" + ("" if stale_only else f", {stale_count} probably stale")
        blocks = [HeaderBlock(text=PlainTextObject(text=_clip(header, 150)))]
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
                    accessory=request_unlock_button(facts.address) if facts.stale else None,
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
        listed = "\n".join(f"• {escape(p)}" for p in problems[:5])
        blocks.append(
            SectionBlock(text=MarkdownTextObject(text=_clip(f":rotating_light: Not everything was checked:\n{listed}")))
        )
        text += " (some backends could not be checked)"
    return Message(text, tuple(blocks))


USAGE = escape(
    f"*{COMMAND} status <state>* — who holds a state's lock, since when\n"
    f"*{COMMAND} list [stale]* — every held lock, oldest first\n"
    f"*{COMMAND} unlock <state> <reason…>* — ask for a force-unlock; a second person must approve\n"
    f"*{COMMAND} audit [state] [since:7d] [user:@x] [csv]* — the audit trail (auditors only)\n"
    f"*{COMMAND} help* — this message\n"
    "A state is `bucket/key` as Terraform prints it under `Path:`, `s3://bucket/key`, an alias, or the lock `ID:`."
)


def help_message(problem: str | None = None) -> Message:
    text = (f":grey_question: {escape(problem)}\n\n" if problem else "") + USAGE
    return Message(problem or "tflock usage", (SectionBlock(text=MarkdownTextObject(text=text)),))


def error_message(text: str) -> Message:
    return Message(text, (SectionBlock(text=MarkdownTextObject(text=_clip(f":warning: {escape(text)}"))),))
