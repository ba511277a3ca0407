"""The facts a person sees about a lock, computed once and rendered by the CLI and by Slack alike."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.durations import format_age, format_duration
from bot.locks.model import Answer, StateLock, Store

RECENT_VERDICT = "recent — an active run may hold it"
UNKNOWN_VERDICT = "unknown — could not check every store that can hold this lock"


@dataclass(frozen=True)
class StoreCheck:
    """One store that can hold the state's lock: read (ok) or not, and why not."""

    store: str  # "dynamodb" or "s3"
    ok: bool
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"store": self.store, "ok": self.ok, "error": self.error}


@dataclass(frozen=True)
class HoldFacts:
    """A hold taken with tflock: by whom, where, why, since when (all from its Info, shown escaped)."""

    by: str
    channel: str | None
    reason: str
    since: str | None  # "2025-03-04 10:20:30 UTC"

    def as_json(self) -> dict[str, Any]:
        return {"by": self.by, "channel": self.channel, "reason": self.reason, "since": self.since}


@dataclass(frozen=True)
class LockFacts:
    address: str
    backend: str
    workspace: str
    answer: Answer
    checked: tuple[StoreCheck, ...]
    held_in: tuple[str, ...]
    lock_id: str | None
    who: str | None
    operation: str | None
    operation_raw: str | None
    created: str | None  # "2025-03-04 10:20:30 UTC"
    created_raw: str | None
    age: str | None  # "3h 7m"
    age_seconds: int | None
    version: str | None
    stale: bool
    verdict: str
    problems: tuple[str, ...]
    raw_info: tuple[str, ...]
    hold: HoldFacts | None = None

    @property
    def locked(self) -> bool:
        """Held for certain. Not the same as "not held": see `answer` (unknown is neither)."""
        return self.answer is Answer.HELD

    @property
    def unchecked(self) -> tuple[str, ...]:
        """ "DynamoDB not checked: …" for every store that could not be read."""
        return tuple(
            f"{'DynamoDB' if c.store == Store.TABLE else 'lock file'} not checked: {c.error}"
            for c in self.checked
            if not c.ok
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "backend": self.backend,
            "workspace": self.workspace,
            "answer": self.answer.value,
            "locked": None if self.answer is Answer.UNKNOWN else self.locked,
            "checked": [check.as_json() for check in self.checked],
            "held_in": list(self.held_in),
            "lock_id": self.lock_id,
            "who": self.who,
            "operation": self.operation,
            "operation_raw": self.operation_raw,
            "created": self.created_raw,
            "age": self.age,
            "age_seconds": self.age_seconds,
            "version": self.version,
            "stale": self.stale,
            "verdict": self.verdict,
            "problems": list(self.problems),
            "raw_info": list(self.raw_info),
            "hold": self.hold.as_json() if self.hold is not None else None,
        }


def lock_facts(lock: StateLock, now: datetime, stale_after: timedelta) -> LockFacts:
    info = lock.info
    age = lock.age(now)
    stale = lock.is_stale(now, stale_after)
    problems = [s.info_error for s in lock.snapshots if s.info_error]
    if lock.stores_disagree:
        problems.append("the table and the lock file hold different locks: " + ", ".join(lock.lock_ids))
    if info is not None and info.created is not None and info.created > now + timedelta(minutes=1):
        problems.append("Created is in the future: the holder's clock is ahead")
    problems.extend(lock.warnings)
    problems.extend(str(u) for u in lock.unchecked)
    answer = lock.answer
    if answer is Answer.UNKNOWN:
        verdict = UNKNOWN_VERDICT
    elif answer is Answer.NOT_HELD:
        verdict = "not locked"
    elif lock.hold is not None:
        verdict = f"held on purpose with tflock by {printable(lock.hold.by)}: {printable(lock.hold.reason)}"
    elif age is None:
        verdict = "age unknown — check with the holder"
    elif stale:
        verdict = f"probably stale (held longer than {format_duration(stale_after)})"
    else:
        verdict = RECENT_VERDICT
    return LockFacts(
        address=str(lock.address),
        backend=lock.backend,
        workspace=lock.workspace,
        answer=answer,
        checked=tuple(
            [StoreCheck(store.value, True) for store in lock.checked]
            + [StoreCheck(u.store.value, False, printable(u.reason)) for u in lock.unchecked]
        ),
        held_in=tuple(_where(s.store, s.location) for s in lock.snapshots),
        lock_id=printable(info.id) if info else None,
        who=printable(info.who) if info else None,
        operation=printable(info.operation_words) if info else None,
        operation_raw=printable(info.operation) if info else None,
        created=lock.created.strftime("%Y-%m-%d %H:%M:%S UTC") if lock.created else None,
        created_raw=printable(info.created_text) if info else None,
        age=format_age(age) if age is not None else None,
        age_seconds=int(age.total_seconds()) if age is not None else None,
        version=printable(info.version) if info else None,
        stale=stale,
        verdict=verdict,
        problems=tuple(printable(p) for p in problems),
        raw_info=tuple(s.raw_info for s in lock.snapshots),  # exact bytes, for --json
        hold=_hold_facts(lock),
    )


def _hold_facts(lock: StateLock) -> HoldFacts | None:
    hold = lock.hold
    if hold is None:
        return None
    return HoldFacts(
        by=printable(hold.by),
        channel=printable(hold.channel) if hold.channel else None,
        reason=printable(hold.reason),
        since=lock.created.strftime("%Y-%m-%d %H:%M:%S UTC") if lock.created else None,
    )


def printable(text: str) -> str:
    """Untrusted text made safe to show: control and invisible characters become visible escapes."""
    if text.isprintable():  # the common case: printable text has none of the categories below
        return text
    return "".join(
        f"\\u{ord(c):04x}" if unicodedata.category(c) in {"Cc", "Cf", "Co", "Cs", "Zl", "Zp"} else c for c in text
    )


def _store_words(store: str) -> str:
    return "DynamoDB table" if store == Store.TABLE else "S3 lock file"


def _where(store: Store, location: str) -> str:
    return location if store is Store.TABLE else f"lock file {location}"


def render_text(facts: LockFacts) -> str:
    """The terminal form of one state's lock."""
    if facts.answer is Answer.UNKNOWN:
        lines = [f"{facts.address}: unknown — could not tell whether it is locked"]
        lines += [f"  {u}" for u in facts.unchecked]
        lines += [f"  checked: {_store_words(c.store)}, not locked there" for c in facts.checked if c.ok]
        return "\n".join(lines)
    if facts.answer is Answer.NOT_HELD:
        lines = [f"{facts.address}: not locked"]
        lines += [f"  checked: {', '.join(_store_words(c.store) for c in facts.checked)}"]
        lines += [f"  note: {p}" for p in facts.problems]
        return "\n".join(lines)
    rows: list[tuple[str, str]] = []
    if facts.hold is not None:
        where = f" in {facts.hold.channel}" if facts.hold.channel else ""
        rows += [
            ("HOLD", f"held with tflock by {facts.hold.by}{where} since {facts.hold.since or '?'}"),
            ("Reason", facts.hold.reason),
        ]
    rows += [
        ("State", facts.address),
        ("Workspace", facts.workspace),
        ("Held in", "; ".join(facts.held_in)),
        ("Lock ID", facts.lock_id or "—"),
        ("Who", facts.who if facts.who is not None else "—"),
        ("Operation", f"{facts.operation} ({facts.operation_raw})" if facts.operation else "—"),
        ("Created", facts.created or "—"),
        ("Age", facts.age or "unknown"),
        ("Version", facts.version or "—"),
        ("Verdict", facts.verdict),
    ]
    rows += [("Problem", p) for p in facts.problems]
    if facts.problems:
        rows += [("Raw Info", printable(raw)) for raw in facts.raw_info]
    return "\n".join(f"{label + ':':<11}{value}" for label, value in rows)
