"""Releasing exactly the lock a request was approved for, and nothing else (docs/design.md §8, step 3).

`compare` decides from a fresh read whether the lock is still the one that was seen; `delete_seen`
then deletes it with compare-and-delete in each store that holds it — the lock file first, as
Terraform's own unlock does, then the table item. The `-md5` digest item is never addressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from bot.errors import TflockError
from bot.locks.aws import Removal
from bot.locks.directory import LockDirectory
from bot.locks.dynamodb import TableItemChanged
from bot.locks.facts import printable
from bot.locks.lockfile import LockFileChanged
from bot.locks.model import LockSnapshot, StateLock, Store
from bot.unlock.models import Status


@dataclass(frozen=True)
class Seen:
    """What the requester saw: one raw Info (the same in every store holding it) and the lock file's ETag."""

    raw_info: str
    lock_id: str | None
    in_table: bool
    in_lockfile: bool
    lockfile_etag: str | None


class Finding(StrEnum):
    UNCHANGED = "unchanged"  # every store still holding a lock holds exactly the one seen
    CHANGED = "changed"
    GONE = "gone"
    UNCHECKED = "unchecked"  # a store that held the lock could not be read now: never assume it is free


@dataclass(frozen=True)
class Comparison:
    finding: Finding
    note: str


@dataclass(frozen=True)
class Deletion:
    status: Status  # executed, superseded, already_released or failed
    deleted: tuple[str, ...]  # where a lock was deleted, e.g. "DynamoDB table terraform-locks"
    note: str


def compare(seen: Seen, lock: StateLock) -> Comparison:
    """Is the lock held now the very lock that was seen? Byte-for-byte Info, and the same lock-file ETag."""
    unread = [
        where
        for where, then, store in (
            ("the table item", seen.in_table, Store.TABLE),
            ("the lock file", seen.in_lockfile, Store.LOCKFILE),
        )
        if then and store not in lock.checked
    ]
    if unread:
        reasons = "; ".join([str(u) for u in lock.unchecked] + list(lock.warnings)) or "it was not read"
        return Comparison(
            Finding.UNCHECKED, f"{' and '.join(unread)} could not be read now ({reasons}); nothing was deleted"
        )
    if not lock.held:
        return Comparison(Finding.GONE, f"{lock.address} is no longer locked in any store")
    for snapshot in lock.snapshots:
        if snapshot.raw_info != seen.raw_info:
            return Comparison(
                Finding.CHANGED,
                f"{snapshot.location} now holds {_describe(snapshot, seen)}; nothing was deleted",
            )
    if lock.table is not None and not seen.in_table:
        return Comparison(Finding.CHANGED, f"a lock item appeared in {lock.table.location} after the request")
    if lock.lockfile is not None and (not seen.in_lockfile or lock.lockfile.etag != seen.lockfile_etag):
        return Comparison(
            Finding.CHANGED,
            f"the lock file {lock.lockfile.location} was written again after the request "
            f"(ETag {seen.lockfile_etag or 'none'} then, {lock.lockfile.etag or 'none'} now)",
        )
    partly = [
        where
        for where, then, now in (
            ("the table item", seen.in_table, lock.table),
            ("the lock file", seen.in_lockfile, lock.lockfile),
        )
        if then and now is None
    ]
    note = f"{' and '.join(partly)} had already been released; the rest is unchanged" if partly else ""
    return Comparison(Finding.UNCHANGED, note)


def delete_seen(directory: LockDirectory, lock: StateLock, seen: Seen) -> Deletion:
    """Compare-and-delete in every store that holds the lock; call only after `compare` said UNCHANGED."""
    backend = directory.backends.for_address(lock.address)
    deleted: list[str] = []

    def removed(location: str, removal: Removal) -> None:
        if removal is Removal.DELETED:
            deleted.append(location)
        elif removal is Removal.RESPONSE_LOST:  # our own first attempt deleted it: the release is ours
            deleted.append(f"{location} ({Removal.RESPONSE_LOST})")

    try:
        if lock.lockfile is not None:
            lockfiles = directory.lockfiles(backend)
            if lockfiles is None or seen.lockfile_etag is None:
                raise TflockError(f"cannot delete {lock.lockfile.location} conditionally: no ETag was recorded")
            removed(lock.lockfile.location, lockfiles.delete_if_unchanged(lock.address, seen.lockfile_etag))
        if lock.table is not None:
            table = directory.table(backend)
            if table is None:
                raise TflockError(f"the lock is in {lock.table.location}, which is no longer configured")
            removed(lock.table.location, table.delete_if_unchanged(lock.address, seen.raw_info))
    except (LockFileChanged, TableItemChanged) as exc:
        return Deletion(Status.SUPERSEDED, tuple(deleted), _with_deleted(str(exc), deleted))
    except TflockError as exc:
        return Deletion(Status.FAILED, tuple(deleted), _with_deleted(f"the release failed: {exc}", deleted))
    if not deleted:
        return Deletion(
            Status.ALREADY_RELEASED, (), "the lock was released by someone else between the check and the delete"
        )
    return Deletion(Status.EXECUTED, tuple(deleted), f"released from {' and '.join(deleted)}")


def _describe(snapshot: LockSnapshot, seen: Seen) -> str:
    """Lock IDs are untrusted text (any length, NUL, control characters): shown escaped and shortened."""
    wanted = _shown(seen.lock_id) if seen.lock_id else "(unreadable)"
    if snapshot.lock_id is not None and snapshot.lock_id == seen.lock_id:
        return f"lock {wanted} with a different Info than the one approved"
    now = f"lock {_shown(snapshot.lock_id)}" if snapshot.lock_id else "an unreadable lock"
    return f"{now}, not the lock {wanted} approved"


def _shown(lock_id: str, limit: int = 200) -> str:
    text = printable(lock_id)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _with_deleted(note: str, deleted: list[str]) -> str:
    return f"{note} (already deleted: {' and '.join(deleted)})" if deleted else note
