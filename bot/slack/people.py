"""Who someone is in Slack: approvers and auditors from user IDs and user groups, and whether a user is a bot.

Group membership (`usergroups.users.list`, Tier 2) and `users.info` answers are cached for a short
time, so a busy approval does not hit Slack's rate limits and a removal takes effect within minutes.
Only answers are cached: a call that fails (rate limited, Slack down, a timeout) raises SlackLookupFailed
and is asked again next time, so nobody is refused for minutes after Slack recovers, and nobody is
called a bot because Slack did not answer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.unlock.policy import BotCheck, CannotCheck

log = logging.getLogger(__name__)
CACHE_SECONDS = 120.0
USERS_CACHE_SECONDS = 600.0
USERS_PAGE = 200
MAX_USER_PAGES = 500  # 100,000 members: far beyond any workspace this bot is meant for
# Answers that are facts about the user, not failures: they count as nobody and are cached like any answer.
_NO_SUCH_USER = {"user_not_found", "user_not_visible"}
_NO_SUCH_GROUP = {"no_such_subteam", "subteam_not_found", "plan_upgrade_required"}  # the group grants nobody


class SlackLookupFailed(CannotCheck):
    """Slack could not be asked (the message names the call and Slack's error); not cached."""


def _failure(call: str, exc: Exception) -> SlackLookupFailed:
    error = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
    return SlackLookupFailed(f"{call} failed: {error}")


class _TtlCache:
    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self.seconds = seconds
        self.clock = clock
        self._values: dict[str, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[], object]) -> object:
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and self.clock() - hit[0] < self.seconds:
                return hit[1]
        value = load()  # outside the lock: a slow Slack call must not block other look-ups
        with self._lock:
            self._values[key] = (self.clock(), value)
        return value


class People:
    def __init__(
        self,
        client: WebClient,
        approvers: Sequence[str],
        auditors: Sequence[str],
        *,
        cache_seconds: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.approvers = tuple(approvers)
        self.auditors = tuple(auditors)
        self._groups = _TtlCache(cache_seconds, clock)
        self._users = _TtlCache(cache_seconds, clock)

    def is_approver(self, user_id: str) -> bool:
        """A full member of this workspace who is listed in TFLOCK_APPROVERS (empty: any full member).

        Guests, people from other organisations in shared channels and deactivated accounts never count as
        the second human, whatever the lists say.
        """
        return self.is_full_member(user_id) and (not self.approvers or self._listed(user_id, self.approvers))

    def is_auditor(self, user_id: str) -> bool:
        """TFLOCK_AUDITORS, else the approvers; with neither set, nobody (see `audit_configured`)."""
        listed = self.auditors or self.approvers
        return bool(listed) and self.is_full_member(user_id) and self._listed(user_id, listed)

    @property
    def audit_configured(self) -> bool:
        """Someone is named to read the audit trail (TFLOCK_AUDITORS or TFLOCK_APPROVERS)."""
        return bool(self.auditors or self.approvers)

    def bot_check(self, user_id: str) -> BotCheck:
        """is_bot, or the CannotCheck saying why Slack could not tell (for the workflow to refuse and record)."""
        try:
            return self.is_bot(user_id)
        except CannotCheck as exc:
            return exc

    def is_bot(self, user_id: str) -> bool:
        """SlackLookupFailed if Slack could not be asked."""
        user = self._user(user_id)
        return user is None or bool(user.get("is_bot") or user.get("is_app_user") or user_id == "USLACKBOT")

    def is_full_member(self, user_id: str) -> bool:
        user = self._user(user_id)
        if user is None or self.is_bot(user_id):
            return False
        if any(user.get(flag) for flag in ("deleted", "is_restricted", "is_ultra_restricted", "is_stranger")):
            return False
        return self._same_organisation(user)

    def _same_organisation(self, user: dict[str, object]) -> bool:
        team = user.get("team_id")
        if team is None:  # users.info always names the team; an answer without one is not ours to judge
            return True
        home = self._home()
        if team == home.get("team_id"):
            return True
        grid = user.get("enterprise_user")
        enterprise = grid.get("enterprise_id") if isinstance(grid, dict) else None
        return bool(enterprise) and enterprise == home.get("enterprise_id")

    def _home(self) -> dict[str, object]:
        def load() -> dict[str, object]:
            try:
                answer = self.client.auth_test()
            except (SlackApiError, SlackClientError) as exc:
                failure = _failure("auth.test", exc)
                log.error("%s: nobody can be checked as a member until it answers", failure)
                raise failure from None
            return {"team_id": answer.get("team_id"), "enterprise_id": answer.get("enterprise_id")}

        home = self._users.get("\x00home", load)
        assert isinstance(home, dict)
        return home

    def _user(self, user_id: str) -> dict[str, object] | None:
        """users.info, cached; None when Slack says there is no such user (which counts as nobody).

        SlackLookupFailed (not cached) when Slack could not be asked: the caller refuses, fail closed.
        """

        def load() -> dict[str, object] | None:
            try:
                user = self.client.users_info(user=user_id)["user"]
            except SlackApiError as exc:
                if exc.response.get("error") in _NO_SUCH_USER:
                    return None
                failure = _failure(f"users.info for {user_id}", exc)
                log.warning("%s; asked again next time", failure)
                raise failure from None
            except SlackClientError as exc:
                raise _failure(f"users.info for {user_id}", exc) from None
            return dict(user)

        user = self._users.get(user_id, load)
        return user if isinstance(user, dict) else None

    def group_members(self, group: str) -> frozenset[str]:
        """The users in a user group (cached); SlackLookupFailed when Slack could not be asked."""
        return self._members(group)

    def _listed(self, user_id: str, entries: Sequence[str]) -> bool:
        if user_id in entries:
            return True
        failed: CannotCheck | None = None
        for group in (entry for entry in entries if entry.startswith("S")):
            try:
                if user_id in self._members(group):
                    return True
            except CannotCheck as exc:
                failed = exc  # another group may still answer yes
        if failed is not None:
            raise failed
        return False

    def _members(self, group: str) -> frozenset[str]:
        def load() -> frozenset[str]:
            try:
                return frozenset(self.client.usergroups_users_list(usergroup=group)["users"])
            except SlackApiError as exc:
                if exc.response.get("error") in _NO_SUCH_GROUP:
                    log.error("user group %s grants nobody: %s", group, exc.response.get("error"))
                    return frozenset()
                failure = _failure(f"usergroups.users.list for {group}", exc)
                log.error("cannot read user group %s: %s", group, failure)
                raise failure from None
            except SlackClientError as exc:
                # Fail closed, but not as a fact: the next check asks Slack again.
                failure = _failure(f"usergroups.users.list for {group}", exc)
                log.error("cannot read user group %s: %s", group, failure)
                raise failure from None

        members = self._groups.get(group, load)
        assert isinstance(members, frozenset)
        return members


# -- who holds a lock, in Slack (the stale-lock alerts and the holder question) -------------------------
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
        found = self.holders(who)
        return next(iter(found)) if len(found) == 1 else None

    def holders(self, who: str | None) -> set[str]:
        """Every human whose name matches the user part of a lock's Who (none for `@host` or no Who)."""
        user = who_user(who) if who else None
        return matching_members(user, self.members()) if user is not None else set()

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
