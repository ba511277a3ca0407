"""A hold: tflock taking a state's real Terraform lock on purpose, so nobody plans or applies until released.

It is taken exactly as Terraform takes a lock (TERRAFORM_LOCKS.md §1.2, §3.1): the lock file first with
`PutObject If-None-Match: *`, then the table item with `PutItem attribute_not_exists(LockID)`; if the
second fails the first is deleted again (compare-and-delete on its ETag). The `-md5` digest item is never
addressed. The Info is Go's byte format, so Terraform and OpenTofu print it in "Error acquiring the state
lock": `Who` names the person and tflock, `Operation` is `tflock-hold`, `Info` says why and where.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import TflockError
from bot.locks.address import StateAddress
from bot.locks.backends import Backend
from bot.locks.directory import LockDirectory
from bot.locks.model import Store


@dataclass(frozen=True)
class Taken:
    """Where a hold was written; `lockfile_etag` is what a later conditional delete of the lock file names."""

    stores: tuple[Store, ...]
    locations: tuple[str, ...]
    lockfile_etag: str | None


def hold_stores(backend: Backend) -> tuple[Store, ...]:
    """Where a hold must be written to stop every client of this backend: the table when one is configured,
    the lock file unless lock files are off (with `auto`, both: some clients may use either)."""
    stores: list[Store] = []
    if backend.lockfile != "off":
        stores.append(Store.LOCKFILE)
    if backend.table is not None:
        stores.append(Store.TABLE)
    return tuple(stores)


def take_lock(directory: LockDirectory, address: StateAddress, raw_info: str) -> Taken:
    """Write the lock in every store this backend locks with, or in none.

    AlreadyLocked: a lock was there first (nothing of ours is left behind). Another TflockError: a store
    failed; what was already written has been deleted again, or the message says it could not be.
    """
    backend = directory.backends.for_address(address)
    table, lockfiles = directory.table(backend), directory.lockfiles(backend)
    stores = hold_stores(backend)
    etag: str | None = None
    locations: list[str] = []
    if Store.LOCKFILE in stores and lockfiles is not None:
        etag = lockfiles.put_if_absent(address, raw_info)
        locations.append(f"s3://{address.bucket}/{address.lockfile_key}")
    if Store.TABLE in stores and table is not None:
        try:
            table.put_if_absent(address, raw_info)
        except TflockError as exc:
            if etag is not None and lockfiles is not None:
                try:
                    lockfiles.delete_if_unchanged(address, etag)
                except TflockError as undo:
                    raise TflockError(
                        f"{exc}; and the lock file taken first could not be deleted again ({undo}): "
                        f"delete s3://{address.bucket}/{address.lockfile_key} by hand"
                    ) from exc
            raise
        locations.append(table.location)
    return Taken(stores, tuple(locations), etag)
