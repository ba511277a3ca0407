"""Stale-lock alerts in Slack: the watchdog's notifier (post, thread reminder, update in place), the pure
renderers of its messages, the Slack user behind a lock's `Who`, and the thread `serve` runs it on."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.models.blocks import ActionsBlock, Block, ContextBlock, MarkdownTextObject, SectionBlock

from bot.durations import format_age, format_duration
from bot.errors import TflockError
from bot.locks.facts import LockFacts, printable
from bot.locks.lockinfo import LockInfoError, parse_lock_info
from bot.slack.app import SlackBot
from bot.slack.messages import SlackUnavailable
from bot.slack.people import _TtlCache
from bot.slack.views import Message, _clip, _field, code, escape, mention, request_unlock_button, slack_time
from bot.unlock.pins import LockPins
from bot.watch.watchdog import Alert, AlertGone, Release, Watchdog

log = logging.getLogger(__name__)

USERS_CACHE_SECONDS = 600.0
USERS_PAGE = 200
MAX_USER_PAGES = 500  # 100,000 members: far beyond any workspace this bot is meant for
# chat.update / a thread reply can never succeed on these: the alert is given up, not retried forever.
_GONE = {"message_not_found", "cant_update_message", "channel_not_found", "is_archived", "thread_not_found"}


# -- who holds the lock, in Slack ------------------------------------------------------------------
def who_user(who: str) -> str | None:
    """The user part of Terraform's `Who`: `user@host`, `DOMAIN\\user@HOST`; None for `@host` (no user)."""
    user = who.rpartition("@")[0] if "@" in who else who
    user = user.partition("@")[0]  # a UPN-style name (`alice@corp.example@host`): its local part
    user = user.rpartition("\\")[2].strip()
    return user.casefold() or None


def matching_members(user: str, members: Iterable[Mapping[str, Any]]) -> set[str]:
    """Humans whose name, display name, real name or email local part is `user` (case-insensitive)."""
    wanted = user.casefold()
    found: set[str] = set()
    for member in members:
        user_id = str(member.get("id") or "")
        if not user_id or member.get("deleted") or member.get("is_bot") or member.get("is_app_user"):
            continue
        if user_id == "USLACKBOT":
            continue
        profile = member.get("profile") or {}
        email = str(profile.get("email") or "")
        names = (
            member.get("name"),
            profile.get("display_name"),
            profile.get("real_name"),
            email.partition("@")[0] if "@" in email else None,
        )
        if any(isinstance(name, str) and name.strip().casefold() == wanted for name in names):
            found.add(user_id)
    return found


class SlackUsers:
    """The workspace's members (`users.list`, paged), cached for ten minutes; `users:read` scope."""

    def __init__(
        self,
        client: WebClient,
        *,
        cache_seconds: float = USERS_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._cache = _TtlCache(cache_seconds, clock)

    def holder(self, who: str | None) -> str | None:
        """The Slack user ID behind a lock's Who, only when exactly one human matches."""
        user = who_user(who) if who else None
        if user is None:
            return None
        found = matching_members(user, self.members())
        return next(iter(found)) if len(found) == 1 else None

    def members(self) -> tuple[Mapping[str, Any], ...]:
        members = self._cache.get("members", self._load)
        assert isinstance(members, tuple)
        return members

    def _load(self) -> tuple[Mapping[str, Any], ...]:
        members: list[Mapping[str, Any]] = []
        cursor: str | None = None
        try:
            for _ in range(MAX_USER_PAGES):
                response = self.client.users_list(limit=USERS_PAGE, cursor=cursor)
                members.extend(response.get("members") or [])
                cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except SlackApiError as exc:
            # Alerts still go out, without a mention, until the next try in ten minutes.
            log.warning("users.list failed (%s): stale-lock alerts will not mention holders", exc.response.get("error"))
            return ()
        return tuple(members)


# -- messages (pure) ---------------------------------------------------------------------------------
def _who(who: str | None, holder: str | None) -> str:
    shown = escape(who) if who else "unknown"
    return f"{shown} ({mention(holder)})" if holder else shown


def alert_message(facts: LockFacts, holder: str | None, *, stale_after: timedelta, pin: str | None = None) -> Message:
    """The alert: who holds the lock, doing what, for how long, and the button that starts a force-unlock."""
    age = facts.age or "an unknown time"
    title = f":warning: *Stale state lock* on {code(facts.address)} — held for *{escape(age)}*"
    fields = [
        _field("Who", _who(facts.who, holder)),
        _field("Operation", escape(facts.operation) if facts.operation else "unknown"),
        _field("Held for", escape(age)),
        _field("Created", escape(facts.created) if facts.created else "unknown"),
        _field("Lock ID", code(facts.lock_id) if facts.lock_id else "unreadable"),
        _field("Held in", "\n".join(escape(where) for where in facts.held_in)),
    ]
    hint = (
        f"Held longer than {format_duration(stale_after)}, so probably stale. If the run that took it is gone, "
        "request a force-unlock: a second person must approve, and only this exact lock is deleted."
    )
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_clip(title)), fields=fields),
        ContextBlock(elements=[MarkdownTextObject(text=hint)]),
    ]
    if facts.problems:
        problems = "\n".join(f"• {escape(p)}" for p in facts.problems)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=_clip(f":rotating_light: {problems}"))))
    if pin is not None:
        blocks.append(ActionsBlock(elements=[request_unlock_button(pin)]))
    text = escape(f"Stale lock on {facts.address}: held by {facts.who or 'unknown'} for {age}")  # text is mrkdwn too
    return Message(text + (f" {mention(holder)}" if holder else ""), tuple(blocks))


def hold_reminder_message(facts: LockFacts, holder: str | None) -> Message:
    """The one reminder about a hold still held after TFLOCK_HOLD_REMIND_AFTER: never called stale."""
    assert facts.hold is not None
    hold = facts.hold
    age = facts.age or "an unknown time"
    title = f":lock: *Still on hold:* {code(facts.address)} — held on purpose for *{escape(age)}*"
    where = f" in {escape(hold.channel)}" if hold.channel else ""
    fields = [
        _field("Held by", _who(hold.by, holder) + where),
        _field("Since", escape(hold.since) if hold.since else "unknown"),
        _field("Reason", escape(hold.reason)),
        _field("Lock ID", code(facts.lock_id) if facts.lock_id else "unreadable"),
    ]
    hint = (
        "Nobody can plan or apply this state until the hold is released: the holder with "
        f"`/tflock release {escape(facts.address)}`, anyone else with a two-person force-unlock."
    )
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_clip(title)), fields=fields),
        ContextBlock(elements=[MarkdownTextObject(text=_clip(hint))]),
    ]
    text = escape(f"{facts.address} is still on hold ({age}) by {hold.by}: {hold.reason}")
    return Message(_clip(text) + (f" {mention(holder)}" if holder else ""), tuple(blocks))


def reminder_text(facts: LockFacts, holder: str | None) -> str:
    age = escape(facts.age or "an unknown time")
    return (
        f":alarm_clock: Still locked: {code(facts.address)} has now been held for *{age}* by "
        f"{_who(facts.who, holder)}. If the run is gone, use *Request force-unlock* on the alert above."
    )


def released_message(alert: Alert, release: Release) -> Message:
    """The alert once its lock is gone: how long it was held and, when tflock released it, who asked and approved."""
    try:
        info = parse_lock_info(alert.raw_info)
    except LockInfoError:
        info = None
    after = f" after {format_age(release.held_for)}" if release.held_for is not None else ""
    request = release.request
    how = f"Released{after}"
    hold = info.hold if info else None
    if request is None and hold is not None:
        lines = [f":white_check_mark: *Hold released* on {code(alert.address)}", how + "."]
        fields = [
            _field("Held by", escape(printable(hold.by))),
            _field("Reason", escape(printable(hold.reason))),
            _field("Lock ID", code(printable(alert.lock_id)) if alert.lock_id else "unreadable"),
        ]
        section = SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines))), fields=fields)
        return Message(escape(f"Hold on {alert.address} released{after}"), (section,))
    if request is not None:
        approvers = ", ".join(mention(a) for a in request.approvers) or "nobody"
        how += f" by tflock — requested by {mention(request.requester)}, approved by {approvers}"
    lines = [f":white_check_mark: *Stale lock released* on {code(alert.address)}", how + "."]
    fields = [
        _field("Who", escape(printable(info.who)) if info else "unknown"),
        _field("Operation", escape(printable(info.operation_words)) if info else "unknown"),
        _field("Lock ID", code(printable(alert.lock_id)) if alert.lock_id else "unreadable"),
    ]
    when = f"Gone by {slack_time(release.at)}"
    if alert.posted_at is not None:
        when = f"Alerted {slack_time(alert.posted_at)} · gone by {slack_time(release.at)}"
    blocks: list[Block] = [
        SectionBlock(text=MarkdownTextObject(text=_clip("\n".join(lines))), fields=fields),
        ContextBlock(elements=[MarkdownTextObject(text=when)]),
    ]
    by = " by tflock" if request is not None else ""
    return Message(escape(f"Lock on {alert.address} released{after}{by}"), tuple(blocks))


# -- the notifier ----------------------------------------------------------------------------------------
class SlackAlerts:
    """The watchdog's `AlertNotifier` over the Slack Web API."""

    def __init__(
        self,
        client: WebClient,
        channel: str,
        users: SlackUsers,
        *,
        stale_after: timedelta,
        pins: LockPins | None = None,
    ) -> None:
        self.client = client
        self.channel = channel
        self.users = users
        self.stale_after = stale_after
        self.pins = pins

    def post_alert(self, alert: Alert, facts: LockFacts) -> tuple[str, str]:
        if facts.hold is not None:
            message = hold_reminder_message(facts, self.users.holder(facts.hold.by.removeprefix("@")))
        else:
            pin = self._pin(alert)
            message = alert_message(facts, self.users.holder(facts.who), stale_after=self.stale_after, pin=pin)
        try:
            response = self.client.chat_postMessage(channel=self.channel, **message.as_kwargs())
        except SlackApiError as exc:
            error = exc.response.get("error", "error")
            invite = error in {"not_in_channel", "channel_not_found"}
            hint = " — invite the bot to it (/invite @tflock)" if invite else ""
            raise SlackUnavailable(
                f"Slack would not post in TFLOCK_WATCH_CHANNEL {self.channel} ({error}){hint}"
            ) from None
        return str(response["channel"]), str(response["ts"])

    def _pin(self, alert: Alert) -> str | None:
        """The alert's lock, pinned by the raw Info the watchdog saw; no button when that cannot be stored."""
        if self.pins is None:
            return None
        try:
            pins = self.pins.pin_seen([(alert.address, alert.lock_id, alert.raw_info, None)])
        except TflockError as exc:
            log.error("alert for %s goes out without a Request force-unlock button: %s", alert.address, exc)
            return None
        return pins.get(alert.address)

    def remind(self, alert: Alert, facts: LockFacts) -> None:
        channel, ts = self._where(alert)
        text = reminder_text(facts, self.users.holder(facts.who))
        # Also shown in the channel: a reminder only the thread's followers see would be easy to miss.
        self._call(
            "remind",
            lambda: self.client.chat_postMessage(channel=channel, thread_ts=ts, text=text, reply_broadcast=True),
        )

    def update_alert(self, alert: Alert, release: Release) -> None:
        channel, ts = self._where(alert)
        message = released_message(alert, release)
        self._call("update", lambda: self.client.chat_update(channel=channel, ts=ts, **message.as_kwargs()))

    @staticmethod
    def _where(alert: Alert) -> tuple[str, str]:
        if not alert.channel or not alert.message_ts:
            raise AlertGone("the alert was never posted")
        return alert.channel, alert.message_ts

    @staticmethod
    def _call(what: str, call: Callable[[], object]) -> None:
        try:
            call()
        except SlackApiError as exc:
            error = str(exc.response.get("error", "error"))
            if error in _GONE:
                raise AlertGone(f"Slack cannot {what} the alert message any more ({error})") from None
            raise SlackUnavailable(f"Slack would not {what} the alert message ({error})") from None


# -- in `serve` --------------------------------------------------------------------------------------------
def build_watchdog(bot: SlackBot, channel: str) -> Watchdog:
    runtime = bot.runtime
    settings = runtime.settings
    notifier = SlackAlerts(
        bot.app.client,
        channel,
        SlackUsers(bot.app.client),
        stale_after=settings.stale_after,
        pins=LockPins(runtime.sessions, runtime.clock),
    )
    return Watchdog(
        runtime.sessions,
        runtime.directory,
        notifier,
        runtime.metrics,
        runtime.clock,
        stale_after=settings.stale_after,
        remind_after=settings.watch_remind_after,
        hold_remind_after=settings.hold_remind_after,
    )


def start_watchdog(bot: SlackBot, stop: threading.Event) -> threading.Thread | None:
    """The stale-lock watchdog on a daemon thread until `stop` is set; None when TFLOCK_WATCH_CHANNEL is unset."""
    settings = bot.runtime.settings
    if settings.watch_channel is None:
        return None
    if settings.allowed_channels and settings.watch_channel not in settings.allowed_channels:
        log.warning(
            "TFLOCK_WATCH_CHANNEL %s is not in TFLOCK_ALLOWED_CHANNELS: its alerts' Request force-unlock "
            "buttons will be refused there; add it to TFLOCK_ALLOWED_CHANNELS",
            settings.watch_channel,
        )
    watchdog = build_watchdog(bot, settings.watch_channel)
    interval = settings.watch_interval.total_seconds()
    thread = threading.Thread(target=watchdog.run, args=(stop, interval), name="tflock-watchdog", daemon=True)
    thread.start()
    log.info(
        "stale-lock watchdog: alerts in %s every %s for locks older than %s",
        settings.watch_channel,
        format_duration(settings.watch_interval),
        format_duration(settings.stale_after),
    )
    return thread
