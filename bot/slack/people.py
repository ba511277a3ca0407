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
        self._bots = _TtlCache(cache_seconds, clock)

    def is_approver(self, user_id: str) -> bool:
        """Empty TFLOCK_APPROVERS means any workspace member (the workflow still refuses the requester)."""
        return not self.approvers or self._listed(user_id, self.approvers)

    def is_auditor(self, user_id: str) -> bool:
        """TFLOCK_AUDITORS, else the approvers; with neither set, nobody is refused."""
        listed = self.auditors or self.approvers
        return not listed or self._listed(user_id, listed)

    def is_bot(self, user_id: str) -> bool:
        def load() -> bool:
            try:
                user = self.client.users_info(user=user_id)["user"]
            except SlackApiError as exc:
                log.warning(
                    "users.info for %s failed (%s); not counting them as a human", user_id, exc.response.get("error")
                )
                return True  # fail closed: someone we cannot check does not count as a second human
            return bool(user.get("is_bot") or user.get("is_app_user") or user_id == "USLACKBOT")

        return bool(self._bots.get(user_id, load))

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
