"""Who someone is in Slack: approvers and auditors from user IDs and user groups, and whether a user is a bot.

Group membership (`usergroups.users.list`, Tier 2) and `users.info` answers are cached for a short
time, so a busy approval does not hit Slack's rate limits and a removal takes effect within minutes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

log = logging.getLogger(__name__)
CACHE_SECONDS = 120.0


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
        """TFLOCK_AUDITORS, else the approvers; with neither set, any full member."""
        listed = self.auditors or self.approvers
        return self.is_full_member(user_id) and (not listed or self._listed(user_id, listed))

    def is_bot(self, user_id: str) -> bool:
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
            except SlackApiError as exc:
                log.error("auth.test failed (%s): nobody can be checked as a member", exc.response.get("error"))
                return {}
            return {"team_id": answer.get("team_id"), "enterprise_id": answer.get("enterprise_id")}

        home = self._users.get("\x00home", load)
        assert isinstance(home, dict)
        return home

    def _user(self, user_id: str) -> dict[str, object] | None:
        """users.info, cached; None when Slack would not say (which counts as nobody: fail closed)."""

        def load() -> dict[str, object] | None:
            try:
                user = self.client.users_info(user=user_id)["user"]
            except SlackApiError as exc:
                log.warning("users.info for %s failed (%s); they count as nobody", user_id, exc.response.get("error"))
                return None
            return dict(user)

        user = self._users.get(user_id, load)
        return user if isinstance(user, dict) else None

    def _listed(self, user_id: str, entries: Sequence[str]) -> bool:
        if user_id in entries:
            return True
        return any(user_id in self._members(group) for group in entries if group.startswith("S"))

    def _members(self, group: str) -> frozenset[str]:
        def load() -> frozenset[str]:
            try:
                return frozenset(self.client.usergroups_users_list(usergroup=group)["users"])
            except SlackApiError as exc:
                # Fail closed: an unreadable group grants nobody (plan_upgrade_required, no_such_subteam…).
                log.error("cannot read user group %s: %s", group, exc.response.get("error"))
                return frozenset()

        members = self._groups.get(group, load)
        assert isinstance(members, frozenset)
        return members
