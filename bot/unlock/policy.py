"""Who may do what with a force-unlock request (docs/design.md §8), and the refusals people are told."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from bot.durations import format_duration
from bot.errors import TflockError
from bot.settings import Settings
from bot.unlock.models import RequestView, Status

MAX_REASON_CHARS = 2000

ApproverCheck = Callable[[str], bool]


class RefusalCode(StrEnum):
    """`detail.why` of a `refused` audit event."""

    UNKNOWN_REQUEST = "unknown_request"
    BOT = "bot"
    SELF_APPROVAL = "self_approval"
    NOT_APPROVER = "not_approver"
    NOT_REQUESTER = "not_requester"
    USE_CANCEL = "use_cancel"
    EXPIRED = "expired"
    ALREADY_DECIDED = "already_decided"
    ALREADY_APPROVED = "already_approved"
    CHANNEL_NOT_ALLOWED = "channel_not_allowed"
    MISSING_REASON = "missing_reason"
    REASON_TOO_LONG = "reason_too_long"
    NOT_LOCKED = "not_locked"
    LOCK_UNKNOWN = "lock_unknown"
    STORES_DISAGREE = "stores_disagree"
    ALREADY_REQUESTED = "already_requested"
    LOCK_CHANGED = "lock_changed"
    ALREADY_LOCKED = "already_locked"  # a hold asked for on a state someone holds already
    NOT_HOLDER = "not_holder"  # a release by someone other than the hold's holder
    NO_HOLD = "no_hold"  # a release of a state tflock holds no hold on
    HOLD_CHANGED = "hold_changed"  # the lock is no longer the exact bytes the hold wrote
    LOOKUP_FAILED = "lookup_failed"  # Slack could not say who the person is: nothing decided on a guess
    NOT_ASKED = "not_asked"  # answered a question about a run that was put to someone else
    ALREADY_ANSWERED = "already_answered"  # the holder answered once already: the first answer stands
    HOLDER_RUNNING = "holder_running"  # a plain Approve after the holder said their run is still alive


class CannotCheck(TflockError):
    """Who someone is could not be found out right now (Slack did not answer); the text says which call failed."""


BotCheck = bool | CannotCheck  # is the person a bot: yes, no, or Slack could not say (never cached as a fact)

_BAD_INPUT = {RefusalCode.UNKNOWN_REQUEST, RefusalCode.MISSING_REASON, RefusalCode.REASON_TOO_LONG}


class Refused(TflockError):
    """A person may not do this; `str(refused)` is what they are told. Recorded before it is raised."""

    def __init__(self, why: RefusalCode, message: str, request: RequestView | None = None) -> None:
        super().__init__(message)
        self.why = why
        self.request = request  # the request as it is now, so its message can be re-rendered
        self.exit_code = 2 if why in _BAD_INPUT else 1


@dataclass(frozen=True)
class UnlockPolicy:
    """The rules from settings; `is_approver` is the Slack layer's check of TFLOCK_APPROVERS (users and groups)."""

    is_approver: ApproverCheck
    approvals_required: int = 1
    request_ttl: timedelta = timedelta(minutes=30)
    allowed_channels: frozenset[str] = field(default_factory=frozenset)
    max_reason_chars: int = MAX_REASON_CHARS

    @classmethod
    def from_settings(cls, settings: Settings, is_approver: ApproverCheck) -> UnlockPolicy:
        return cls(
            is_approver=is_approver,
            approvals_required=settings.approvals_required,
            request_ttl=settings.request_ttl,
            allowed_channels=frozenset(settings.allowed_channels),
        )

    def check_requester(self, is_bot: BotCheck, channel: str | None) -> None:
        if isinstance(is_bot, CannotCheck):
            raise refuse_lookup_failed(is_bot)
        if is_bot:
            raise refuse_bot()
        if self.allowed_channels and channel not in self.allowed_channels:
            raise Refused(
                RefusalCode.CHANNEL_NOT_ALLOWED,
                "Force-unlock requests are accepted only in the channels listed in TFLOCK_ALLOWED_CHANNELS "
                f"({_listed(self.allowed_channels)}); ask there.",
            )

    def check_reason(self, reason: str) -> str:
        """The reason as stored: stripped, required, at most `max_reason_chars` characters."""
        return require_reason(
            reason, self.max_reason_chars, "say why the lock should be released (which run is dead, who checked)"
        )

    def check_approver(self, request: RequestView, approver: str, is_bot: BotCheck) -> None:
        """Bot, self-approval, approver list — what does not depend on the request's moment-to-moment state."""
        if isinstance(is_bot, CannotCheck):
            raise refuse_lookup_failed(is_bot, request)
        if is_bot:
            raise refuse_bot(request)
        refuse_if_decided(request)
        if approver == request.requester:
            raise Refused(
                RefusalCode.SELF_APPROVAL,
                "You asked for this force-unlock, so you cannot approve it: a second person must.",
                request,
            )
        self._require_approver(request, approver)

    def check_rejecter(self, request: RequestView, actor: str, is_bot: BotCheck) -> None:
        if isinstance(is_bot, CannotCheck):
            raise refuse_lookup_failed(is_bot, request)
        if is_bot:
            raise refuse_bot(request)
        refuse_if_decided(request)
        if actor == request.requester:
            raise Refused(RefusalCode.USE_CANCEL, "You made this request: use Cancel to withdraw it.", request)
        self._require_approver(request, actor)

    def check_canceller(self, request: RequestView, actor: str, is_bot: BotCheck) -> None:
        if isinstance(is_bot, CannotCheck):
            raise refuse_lookup_failed(is_bot, request)
        if is_bot:
            raise refuse_bot(request)
        refuse_if_decided(request)
        if actor != request.requester:
            raise Refused(
                RefusalCode.NOT_REQUESTER,
                "Only the person who asked can cancel this request; approvers can Reject it.",
                request,
            )

    def _require_approver(self, request: RequestView, actor: str) -> None:
        try:
            approver = self.is_approver(actor)
        except CannotCheck as exc:
            raise refuse_lookup_failed(exc, request) from None
        if not approver:
            raise Refused(
                RefusalCode.NOT_APPROVER,
                "You are not an approver for force-unlocks (TFLOCK_APPROVERS); ask someone who is.",
                request,
            )


def refuse_bot(request: RequestView | None = None) -> Refused:
    return Refused(RefusalCode.BOT, "Bots cannot request, approve or reject a force-unlock; a person must.", request)


def refuse_lookup_failed(cause: CannotCheck, request: RequestView | None = None) -> Refused:
    return Refused(
        RefusalCode.LOOKUP_FAILED,
        f"Slack could not be asked who you are right now ({cause}), so nothing was changed; try again in a minute.",
        request,
    )


def refuse_holder_running(request: RequestView) -> Refused:
    return Refused(
        RefusalCode.HOLDER_RUNNING,
        "The person who holds this lock says their run is still running, so a plain Approve is not enough: the "
        "request now shows *Approve anyway*. Use it only once you are sure that run is dead.",
        request,
    )


def refuse_if_decided(request: RequestView) -> None:
    if request.status is Status.EXPIRED:
        raise refuse_expired(request)
    if request.status is not Status.PENDING:
        raise Refused(RefusalCode.ALREADY_DECIDED, already_decided(request), request)


def already_decided(request: RequestView) -> str:
    words = {
        Status.APPROVED: "approved and is being released",
        Status.EXECUTING: "approved and is being released",
        Status.EXECUTED: "approved and the lock was released",
        Status.REJECTED: "rejected",
        Status.CANCELLED: "cancelled by the requester",
        Status.SUPERSEDED: "approved, but the lock had changed, so nothing was deleted",
        Status.ALREADY_RELEASED: "approved, but the lock had already been released",
        Status.FAILED: "approved, but the release failed",
    }
    return f"This request was already {words.get(request.status, request.status.value)}; nothing was changed."


def refuse_expired(request: RequestView) -> Refused:
    lifetime = format_duration(request.expires_at - request.created_at)
    return Refused(
        RefusalCode.EXPIRED,
        f"This request expired at {request.expires_at:%Y-%m-%d %H:%M} UTC (requests last {lifetime}); "
        "ask again if the lock still needs releasing.",
        request,
    )


def _listed(channels: Iterable[str]) -> str:
    return ", ".join(sorted(channels))


def require_reason(reason: str, max_chars: int, what_to_say: str) -> str:
    """A reason a person gave (force-unlock, hold): stripped, required, at most `max_chars` characters."""
    cleaned = reason.strip()
    if not cleaned:
        raise Refused(RefusalCode.MISSING_REASON, f"A reason is required: {what_to_say}.")
    if len(cleaned) > max_chars:
        raise Refused(
            RefusalCode.REASON_TOO_LONG,
            f"The reason is {len(cleaned):,} characters long; keep it to {max_chars:,} "
            "(link to the incident for the details).",
        )
    return cleaned
