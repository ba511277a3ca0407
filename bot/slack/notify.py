"""Reaching people in Slack about a force-unlock request: approvers (mentions or direct messages), the lock's
holder (a direct message with two answers), and the one escalation. Who and when is decided by
bot/unlock/notify.py; this module only talks to Slack. Every call here is best effort: the request stands
whatever Slack does, and what was sent is recorded in the audit trail (`notified`, `escalated`)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.locks.lockinfo import LockInfoError, parse_lock_info
from bot.slack.messages import ApprovalMessages
from bot.slack.people import People, SlackUsers, who_user
from bot.slack.views import (
    Message,
    approver_dm,
    approvers_call,
    escalation_message,
    holder_answered,
    holder_note,
    holder_question,
    holder_reply,
    note_message,
)
from bot.unlock.models import RequestView
from bot.unlock.notify import (
    HolderMatch,
    HolderOutcome,
    NotifyMode,
    RequestNotices,
    approvers_to_reach,
    direct_message_targets,
    holder_to_ask,
)
from bot.unlock.policy import CannotCheck

log = logging.getLogger(__name__)
_SLACK_ERRORS = (SlackApiError, SlackClientError)


def _error(exc: Exception) -> str:
    return str(exc.response.get("error", "error")) if isinstance(exc, SlackApiError) else type(exc).__name__


class Notifier:
    def __init__(
        self,
        client: WebClient,
        notices: RequestNotices,
        messages: ApprovalMessages,
        people: People,
        users: SlackUsers,
        *,
        mode: NotifyMode,
        escalate_channel: str | None,
    ) -> None:
        self.client = client
        self.notices = notices
        self.messages = messages
        self.people = people
        self.users = users
        self.mode = mode
        self.escalate_channel = escalate_channel

    # -- a new request -------------------------------------------------------------------------------------
    def announce(self, request: RequestView) -> None:
        """After the request's message is posted: call the approvers, ask the holder, record what was done."""
        link = self.messages.permalink(request)
        detail: dict[str, Any] = {"mode": self.mode.value, **self._reach_approvers(request, link)}
        detail["holder"] = self._ask_holder(request, link)
        try:
            self.notices.record_notified(request, detail)
        except Exception as exc:  # the people were reached; a missing row is logged, not fatal
            log.error("request %s: could not record who was notified: %s", request.id, exc)

    def _reach_approvers(self, request: RequestView, link: str | None) -> dict[str, Any]:
        reach = approvers_to_reach(self.people.approvers, request.requester, self.mode)
        if self.mode is NotifyMode.MENTION and reach.anyone:
            sent = self._thread(request, approvers_call(request, reach, link))
            return {"mentioned": [*reach.groups, *reach.users], "sent": sent}
        if self.mode is NotifyMode.DM:
            members: list[str] = []
            failed: list[str] = []
            for group in reach.groups:
                try:
                    members.extend(sorted(self.people.group_members(group)))
                except CannotCheck as exc:
                    log.warning("request %s: members of %s unknown, not messaged: %s", request.id, group, exc)
                    failed.append(group)
            targets, left_out = direct_message_targets(reach.users, members, request.requester)
            message = approver_dm(request, link)
            messaged = [user for user in targets if self._direct(user, message) is not None]
            detail: dict[str, Any] = {"messaged": messaged}
            if failed:
                detail["groups_unread"] = failed
            if left_out:
                detail["left_out"] = left_out
            return detail
        return {}

    def _ask_holder(self, request: RequestView, link: str | None) -> dict[str, Any]:
        try:
            info = parse_lock_info(request.raw_info)
        except LockInfoError:
            info = None
        who = info.who if info is not None else None
        try:
            matches = self.users.holders(who) if who else set()
        except Exception as exc:  # users.list failures already answer "nobody"; anything else, likewise
            log.warning("request %s: could not match the lock's Who: %s", request.id, exc)
            matches = set()
        choice = holder_to_ask(who if who and who_user(who) else None, matches)  # `@host` names nobody
        asked = None
        if choice.match is HolderMatch.ASK and choice.user is not None:
            stored = self.notices.ask_holder(request.id, choice.user)
            if stored is not None:
                asked = self._direct(choice.user, holder_question(stored, link, self.notices.workflow.clock()))
                if asked is not None:
                    self.messages.show(stored, None, "", reply=holder_note(choice, who))
                    return {"asked": choice.user}
                self.notices.forget_holder(request.id, choice.user)
            log.warning("request %s: the holder %s could not be asked", request.id, choice.user)
            self._thread(request, note_message(holder_note(choice, who, delivered=False)))
            return {"asked": None, "why": "not_sent"}
        self._thread(request, note_message(holder_note(choice, who)))
        found = {"candidates": choice.candidates} if choice.candidates else {}
        return {"asked": None, "why": choice.match.value, **found}

    # -- the holder's answer ---------------------------------------------------------------------------------
    def show_holder_answer(self, outcome: HolderOutcome, holder: str, dm: tuple[str, str] | None) -> None:
        """The DM without its buttons, the request message with the answer, and a reply in its thread."""
        if dm is not None:
            message = holder_answered(outcome)
            try:
                self.client.chat_update(channel=dm[0], ts=dm[1], **message.as_kwargs())
            except _SLACK_ERRORS as exc:
                log.warning("could not update the holder's message: %s", _error(exc))
        action = "approved" if outcome.approved else ""
        self.messages.show(outcome.request, holder, action, reply=holder_reply(outcome, holder))

    # -- escalation --------------------------------------------------------------------------------------------
    def escalate_due(self) -> int:
        """One reminder per request still pending after TFLOCK_ESCALATE_AFTER; returns how many this replica sent."""
        sent = 0
        for due in self.notices.due_for_escalation():
            claim = self.notices.claim_escalation(due.id)
            if claim is None:
                continue  # another replica has it, or it was decided meanwhile
            request, claimed_at = claim
            if self._escalate(request, claimed_at):
                sent += 1
        return sent

    def _escalate(self, request: RequestView, claimed_at: datetime) -> bool:
        now = self.notices.workflow.clock()
        reach = approvers_to_reach(self.people.approvers, request.requester, self.mode)
        if self.mode is not NotifyMode.MENTION:
            reach = approvers_to_reach((), request.requester, self.mode)
        link = self.messages.permalink(request)
        message = escalation_message(request, now, reach, link)
        in_thread = self._thread(request, message)
        in_channel = False
        if self.escalate_channel:
            try:
                self.client.chat_postMessage(channel=self.escalate_channel, **message.as_kwargs())
                in_channel = True
            except _SLACK_ERRORS as exc:
                log.error("request %s: escalation to %s failed: %s", request.id, self.escalate_channel, _error(exc))
        if not in_thread and not in_channel:
            self.notices.give_back_escalation(request.id, claimed_at)
            return False
        detail: dict[str, Any] = {
            "pending_for_seconds": int((now - request.created_at).total_seconds()),
            "approvals": len(request.approvers),
            "required": request.approvals_required,
            "thread": in_thread,
        }
        if self.escalate_channel:
            detail["channel"] = self.escalate_channel if in_channel else None
        if reach.anyone:
            detail["mentioned"] = [*reach.groups, *reach.users]
        self.notices.record_escalated(request, detail)
        log.info("request %s escalated (thread: %s, channel: %s)", request.id, in_thread, in_channel)
        return True

    # -- Slack calls --------------------------------------------------------------------------------------------
    def _thread(self, request: RequestView, message: Message) -> bool:
        if not request.channel or not request.message_ts:
            return False
        try:
            self.client.chat_postMessage(channel=request.channel, thread_ts=request.message_ts, **message.as_kwargs())
        except _SLACK_ERRORS as exc:
            log.error("request %s: could not reply in its thread: %s", request.id, _error(exc))
            return False
        return True

    def _direct(self, user: str, message: Message) -> str | None:
        """A direct message; the DM channel's ID, or None when Slack would not take it."""
        try:
            channel = str(self.client.conversations_open(users=user)["channel"]["id"])
            self.client.chat_postMessage(channel=channel, **message.as_kwargs())
        except (*_SLACK_ERRORS, KeyError, TypeError) as exc:
            log.warning("could not message %s: %s", user, exc if isinstance(exc, KeyError | TypeError) else _error(exc))
            return None
        return channel
