"""What a lock store returned, byte for byte, and one view of a state that may be held in two stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cached_property

from bot.errors import TflockError
from bot.locks.address import StateAddress
from bot.locks.lockinfo import HoldInfo, LockInfo, LockInfoError, parse_lock_info


class Store(StrEnum):
    TABLE = "dynamodb"
    LOCKFILE = "s3"

    @property
    def label(self) -> str:
        return "DynamoDB" if self is Store.TABLE else "lock file"


class Answer(StrEnum):
    """Every look-up ends in one of three answers; "not held" only when every store that can hold it was read."""

    HELD = "held"
    NOT_HELD = "not_held"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Unchecked:
    """A store that can hold this state's lock but was not read, and why (said to the person as is)."""

    store: Store
    reason: str

    def __str__(self) -> str:
        return f"{self.store.label} not checked: {self.reason}"


@dataclass(frozen=True)
class LockSnapshot:
    """One lock as read from one store. `raw_info` is the exact stored text; `etag` is the lock file's."""

    address: StateAddress
    store: Store
    location: str  # "DynamoDB table terraform-locks" or "s3://bucket/key.tflock"
    container: str  # the table name or the bucket: what a delete is addressed to
    raw_info: str
    info: LockInfo | None
    info_error: str | None = None
    etag: str | None = None
    last_modified: datetime | None = None

    @classmethod
    def from_raw(
        cls,
        address: StateAddress,
        store: Store,
        location: str,
        container: str,
        raw_info: str,
        *,
        etag: str | None = None,
        last_modified: datetime | None = None,
        missing_reason: str | None = None,
    ) -> LockSnapshot:
        info: LockInfo | None = None
        error = missing_reason
        if error is None:
            try:
                info = parse_lock_info(raw_info)
            except LockInfoError as exc:
                error = f"unreadable lock info: {exc}"
        return cls(address, store, location, container, raw_info, info, error, etag, last_modified)

    @property
    def lock_id(self) -> str | None:
        return self.info.id if self.info else None


@dataclass(frozen=True)
class StateLock:
    """A state and whatever holds it: the table item, the lock file, both, or neither."""

    address: StateAddress
    backend: str
    workspace: str = "default"
    table: LockSnapshot | None = None
    lockfile: LockSnapshot | None = None
    checked: tuple[Store, ...] = field(default=(Store.TABLE, Store.LOCKFILE))
    warnings: tuple[str, ...] = ()
    unchecked: tuple[Unchecked, ...] = ()

    @property
    def held(self) -> bool:
        return self.table is not None or self.lockfile is not None

    @property
    def answer(self) -> Answer:
        """Held if any store holds a lock; not held only if no store that can hold one went unread."""
        if self.held:
            return Answer.HELD
        return Answer.UNKNOWN if self.unchecked else Answer.NOT_HELD

    @property
    def snapshots(self) -> tuple[LockSnapshot, ...]:
        return tuple(s for s in (self.table, self.lockfile) if s is not None)

    @cached_property
    def primary(self) -> LockSnapshot | None:
        """The snapshot whose facts are shown: a readable one first, the table before the lock file."""
        ordered = sorted(self.snapshots, key=lambda s: s.info is None)
        return ordered[0] if ordered else None

    @property
    def info(self) -> LockInfo | None:
        primary = self.primary
        return primary.info if primary else None

    @property
    def lock_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.lock_id for s in self.snapshots if s.lock_id is not None))

    @property
    def stores_disagree(self) -> bool:
        """Both stores hold a lock but not the same one (a mixed-version or interrupted double lock)."""
        return len(self.lock_ids) > 1

    @property
    def created(self) -> datetime | None:
        info = self.info
        if info is not None and info.created is not None:
            return info.created
        # Unreadable Info: the lock file's server-side time is the next best thing.
        modified = [s.last_modified for s in self.snapshots if s.last_modified is not None]
        return min(modified) if modified else None

    def age(self, now: datetime) -> timedelta | None:
        created = self.created
        if created is None:
            return None
        return max(now - created, timedelta(0))

    @property
    def hold(self) -> HoldInfo | None:
        """A hold taken with tflock on purpose (its Info says so): shown as a hold, never called stale."""
        info = self.info
        return info.hold if info is not None else None

    def is_stale(self, now: datetime, stale_after: timedelta) -> bool:
        if self.hold is not None:
            return False
        age = self.age(now)
        return age is not None and age >= stale_after


class AlreadyLocked(TflockError):
    """The state is locked already (by Terraform, or another hold); `holder` is that lock as read."""

    def __init__(self, address: StateAddress, holder: LockSnapshot | None, note: str = "") -> None:
        self.address = address
        self.holder = holder
        super().__init__(f"{address} is already locked{note}")
