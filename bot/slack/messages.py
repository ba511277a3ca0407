"""The narrow port through which the bot writes to channels: post, update in place, reply in thread, whisper."""

from __future__ import annotations

import logging

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.errors import TflockError
from bot.slack.views import approval_message, decision_reply, escape
from bot.unlock.models import RequestView
from bot.unlock.policy import RefusalCode, Refused
from bot.unlock.workflow import UnlockWorkflow

log = logging.getLogger(__name__)


class SlackUnavailable(TflockError):
    """Slack refused or could not take a message; the text says why."""


class ApprovalMessages:
    def __init__(self, client: WebClient, workflow: UnlockWorkflow) -> None:
        self.client = client
        self.workflow = workflow

    def post(self, request: RequestView, channel: str) -> RequestView:
        """Post the approval message and remember channel + ts so every later state replaces it in place."""
        message = approval_message(request, self.workflow.clock())
        try:
            response = self.client.chat_postMessage(channel=channel, **message.as_kwargs())
        except SlackApiError as exc:
            error = exc.response.get("error", "error")
            hint = (
                " — invite the bot to the channel (/invite @tflock)"
                if error in {"not_in_channel", "channel_not_found"}
                else ""
            )
            raise SlackUnavailable(f"Slack would not post the request in this channel ({error}){hint}.") from None
        return self.workflow.attach_message(request.id, str(response["channel"]), str(response["ts"]))

    def show(
        self,
        request: RequestView,
        actor: str | None,
        action: str,
        clicked_on: tuple[str, str] | None = None,
        *,
        reply: str | None = None,
    ) -> None:
        """Replace the approval message with the request's current state and add a thread reply.

        `clicked_on` (channel, ts of the message a button was on) is used only when the stored location
        is not there yet: a click can arrive before the post's ts has been saved. `reply` (safe mrkdwn)
        replaces the usual reply about a decision.
        """
        channel, ts = request.channel, request.message_ts
        if (not channel or not ts) and clicked_on is not None:
            channel, ts = clicked_on
        if not channel or not ts:
            log.warning("request %s has no stored message to update", request.id)
            return
        message = approval_message(request, self.workflow.clock())
        try:
            self.client.chat_update(channel=channel, ts=ts, **message.as_kwargs())
            text = reply if reply is not None else decision_reply(request, actor, action)
            self.client.chat_postMessage(channel=channel, thread_ts=ts, text=text)
        except SlackApiError as exc:
            # The database is the record; a message that could not be updated is logged, not fatal.
            log.error("could not update the message of request %s: %s", request.id, exc.response.get("error"))

    def redraw(self, request: RequestView, clicked_on: tuple[str, str] | None = None) -> None:
        """Replace the approval message with the request's current state, without a thread reply."""
        channel, ts = request.channel or (clicked_on or ("", ""))[0], request.message_ts or (clicked_on or ("", ""))[1]
        if not channel or not ts:
            return
        message = approval_message(request, self.workflow.clock())
        try:
            self.client.chat_update(channel=channel, ts=ts, **message.as_kwargs())
        except SlackApiError as exc:
            log.error("could not update the message of request %s: %s", request.id, exc.response.get("error"))

    def permalink(self, request: RequestView) -> str | None:
        """A link to the request's approval message, or None when it has none yet or Slack will not say."""
        if not request.channel or not request.message_ts:
            return None
        try:
            answer = self.client.chat_getPermalink(channel=request.channel, message_ts=request.message_ts)
            return str(answer["permalink"])
        except (SlackApiError, KeyError) as exc:
            log.info("no permalink for the message of request %s (%s)", request.id, exc)
            return None

    def pointing_to_winner(self, refused: Refused) -> Refused:
        """A refusal because another request for the state is pending, with a link to that request's message."""
        waiting = refused.request
        if refused.why is not RefusalCode.ALREADY_REQUESTED or waiting is None:
            return refused
        link = self.permalink(waiting)
        where = f" It is here: {link}" if link else " Its message has not been posted yet; look in the channel."
        return Refused(refused.why, f"{refused}{where}", waiting)

    def whisper(self, channel: str | None, user: str, text: str) -> None:
        """A note to one person where there is no response_url (modal submissions): ephemeral in the
        channel, or a direct message when the bot cannot post there."""
        safe = f":warning: {escape(text)}"
        try:
            if channel:
                self.client.chat_postEphemeral(channel=channel, user=user, text=safe)
                return
        except SlackApiError as exc:
            log.info("ephemeral note to %s failed (%s); sending a direct message", user, exc.response.get("error"))
        try:
            direct = self.client.conversations_open(users=user)["channel"]["id"]
            self.client.chat_postMessage(channel=direct, text=safe)
        except SlackApiError as exc:
            log.error("could not tell %s: %s (%s)", user, text, exc.response.get("error"))
