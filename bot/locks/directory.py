"""Find and read locks across every configured backend: one state, a lock ID, or all of them."""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TypeVar

from bot.errors import AwsFailure, BadInput, LockNotFound, TflockError
from bot.locks.address import LockIdRef, StateAddress, StateRef, parse_state
from bot.locks.backends import Backend, BackendSet
from bot.locks.dynamodb import LockTable
from bot.locks.lockfile import LockFiles
from bot.locks.model import LockSnapshot, StateLock, Store, Unchecked

log = logging.getLogger(__name__)
T = TypeVar("T")
SCAN_SEGMENTS = 4  # parallel Scan segments for `list`: a large table is read in a quarter of the round trips


@dataclass(frozen=True)
class BackendProblem:
    """Part of a backend that was not listed. `failed`: a read went wrong this time; otherwise the
    configuration leaves a gap (e.g. lock files in buckets nobody named), which no retry will close."""

    backend: str
    message: str
    failed: bool = True


@dataclass(frozen=True)
class LockListing:
    locks: tuple[StateLock, ...]
    problems: tuple[BackendProblem, ...]

    @property
    def complete(self) -> bool:
        """Every store that can hold a lock in every backend was listed."""
        return not self.problems

    @property
    def failures(self) -> tuple[BackendProblem, ...]:
        return tuple(p for p in self.problems if p.failed)


class LockDirectory:
    def __init__(self, backends: BackendSet) -> None:
        self.backends = backends
        self._reads = ThreadPoolExecutor(max_workers=16, thread_name_prefix="tflock-read")
        self._slots = {b.name: threading.BoundedSemaphore(b.limits.concurrency) for b in backends.backends}

    # -- stores -------------------------------------------------------------------------------
    def table(self, backend: Backend) -> LockTable | None:
        if backend.table is None:
            return None
        return LockTable(backend.clients.client("dynamodb"), backend.table, backend.role_arn)

    def lockfiles(self, backend: Backend) -> LockFiles | None:
        if backend.lockfile == "off":
            return None
        return LockFiles(backend.clients.client("s3"), backend.role_arn)

    # -- one state ----------------------------------------------------------------------------
    def resolve(self, text: str) -> StateAddress:
        """What the person typed, as a state address (searching for a lock ID when one was given)."""
        ref: StateRef = parse_state(text, self.backends.aliases)
        if isinstance(ref, LockIdRef):
            return self.find_lock_id(ref.lock_id).address
        self.backends.for_address(ref)  # unknown bucket -> BadInput before any AWS call
        return ref

    def status(self, text: str) -> StateLock:
        ref = parse_state(text, self.backends.aliases)
        if isinstance(ref, LockIdRef):
            return self.find_lock_id(ref.lock_id)
        return self.read(ref)

    def read(self, address: StateAddress) -> StateLock:
        """Both stores for one state, read now (consistent read for the table).

        A store that can hold this state's lock but could not be read is recorded in `unchecked` with the
        reason; it never counts as "not held" (see `StateLock.answer`).
        """
        backend = self.backends.for_address(address)
        table, lockfiles = self.table(backend), self.lockfiles(backend)
        checked: list[Store] = []
        unchecked: list[Unchecked] = []
        table_snapshot = lockfile_snapshot = None
        if table is None and backend.table_may_hold:
            unchecked.append(Unchecked(Store.TABLE, backend.no_table_reason))
        # Both stores at once: an answer waits for one AWS round trip, not two.
        reading_file = (
            self._reads.submit(self._with_slot, backend, lambda: lockfiles.read(address))
            if lockfiles is not None
            else None
        )
        if table is not None:
            try:
                table_snapshot = self._with_slot(backend, lambda: table.read(address))
                checked.append(Store.TABLE)
            except TflockError as exc:
                unchecked.append(Unchecked(Store.TABLE, str(exc)))
        if reading_file is not None:
            try:
                lockfile_snapshot = reading_file.result()
                checked.append(Store.LOCKFILE)
            except TflockError as exc:
                unchecked.append(Unchecked(Store.LOCKFILE, str(exc)))
        return StateLock(
            address=address,
            backend=backend.name,
            workspace=address.workspace(backend.workspace_key_prefix),
            table=table_snapshot,
            lockfile=lockfile_snapshot,
            checked=tuple(checked),
            unchecked=tuple(unchecked),
        )

    def _with_slot(self, backend: Backend, read: Callable[[], T]) -> T:
        """Run one AWS read within the backend's concurrency cap, so one slow backend cannot take every
        worker; when the cap stays full for `backend_wait`, the read is not attempted and says why."""
        slots = self._slots[backend.name]
        if not slots.acquire(timeout=backend.limits.slot_wait):
            raise AwsFailure(
                f"backend {backend.name} is answering slowly: {backend.limits.concurrency} look-ups are "
                "already waiting on it (TFLOCK_BACKEND_CONCURRENCY)"
            )
        try:
            return read()
        finally:
            slots.release()

    def find_lock_id(self, lock_id: str) -> StateLock:
        """The state whose lock has this ID, from the tables first and then the lock-file buckets.

        "No such lock" is said only when every place that can hold one was searched; otherwise the
        answer names what could not be searched.
        """
        matches: dict[StateAddress, None] = {}
        unsearched: list[BackendProblem] = []
        for backend in self.backends.backends:
            table = self.table(backend)
            if table is None:
                if backend.table_may_hold:
                    unsearched.append(BackendProblem(backend.name, f"DynamoDB: {backend.no_table_reason}", False))
                continue
            try:
                found = self._with_slot(backend, partial(_scan_all, table, lock_id))
            except TflockError as exc:
                unsearched.append(BackendProblem(backend.name, f"DynamoDB table {table.table}: {exc}"))
                continue
            matches.update((s.address, None) for s in found if s.lock_id == lock_id)
        if not matches:
            for backend in self.backends.backends:
                lockfiles = self.lockfiles(backend)
                if lockfiles is None:
                    continue
                for bucket in self._buckets(backend, lockfiles, unsearched):
                    try:
                        files = self._with_slot(backend, partial(_read_bucket, lockfiles, bucket))
                    except TflockError as exc:
                        unsearched.append(BackendProblem(backend.name, f"lock files in bucket {bucket}: {exc}"))
                        continue
                    matches.update((s.address, None) for s in files if s.lock_id == lock_id)
        if not matches and unsearched:
            missed = "; ".join(f"{p.backend}: {p.message}" for p in unsearched)
            raise LockNotFound(
                f"no lock with ID {lock_id} was found, but not everything could be searched ({missed}); "
                "give the state address instead"
            )
        if not matches:
            raise LockNotFound(
                f"no lock with ID {lock_id} is held in any configured table or lock-file bucket; "
                "it may have been released already"
            )
        if len(matches) > 1:
            where = ", ".join(str(a) for a in matches)
            raise BadInput(f"lock ID {lock_id} is held on several states ({where}); give the state address")
        return self.read(next(iter(matches)))

    # -- everything ---------------------------------------------------------------------------
    def list_locks(self) -> LockListing:
        """Every held lock in every backend, oldest first; a failing backend is reported, not fatal."""
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(self.backends.backends)))) as pool:
            results = list(pool.map(self._list_backend, self.backends.backends))
        locks = [lock for found, _ in results for lock in found]
        problems = [problem for _, found_problems in results for problem in found_problems]
        far_future = datetime.max.replace(tzinfo=UTC)
        locks.sort(key=lambda lock: (lock.created or far_future, lock.address))
        return LockListing(tuple(locks), tuple(problems))

    def _list_backend(self, backend: Backend) -> tuple[list[StateLock], list[BackendProblem]]:
        problems: list[BackendProblem] = []
        table, lockfiles = self.table(backend), self.lockfiles(backend)
        table_read = lockfiles_read = False
        if table is None and backend.table_may_hold:
            problems.append(BackendProblem(backend.name, f"DynamoDB: {backend.no_table_reason}", failed=False))

        def scan_table() -> dict[StateAddress, LockSnapshot]:
            nonlocal table_read
            if table is None:
                return {}
            try:
                found = self._with_slot(
                    backend,
                    lambda: {
                        s.address: s for s in table.scan(segments=SCAN_SEGMENTS) if backend.serves(s.address.bucket)
                    },
                )
            except TflockError as exc:
                problems.append(BackendProblem(backend.name, f"DynamoDB table {table.table}: {exc}"))
                return {}
            table_read = True
            return found

        def read_lockfiles(seen: Iterable[str]) -> dict[StateAddress, LockSnapshot]:
            nonlocal lockfiles_read
            if lockfiles is None:
                return {}
            found: dict[StateAddress, LockSnapshot] = {}
            complete = True
            for bucket in self._buckets(backend, lockfiles, problems, seen):
                try:
                    found.update(
                        (s.address, s) for s in self._with_slot(backend, partial(_read_bucket, lockfiles, bucket))
                    )
                except TflockError as exc:
                    complete = False
                    problems.append(BackendProblem(backend.name, f"lock files in bucket {bucket}: {exc}"))
            lockfiles_read = complete
            return found

        if "*" in backend.bucket_patterns:  # the buckets to list come from the table's locks
            tables = scan_table()
            files = read_lockfiles({a.bucket for a in tables})
        else:  # independent: scan the table while the lock files are listed and read
            with ThreadPoolExecutor(max_workers=1) as pool:
                scanning = pool.submit(scan_table)
                files = read_lockfiles(())
                tables = scanning.result()
        checked = tuple(store for store, read in ((Store.TABLE, table_read), (Store.LOCKFILE, lockfiles_read)) if read)
        locks = [
            StateLock(
                address=address,
                backend=backend.name,
                workspace=address.workspace(backend.workspace_key_prefix),
                table=tables.get(address),
                lockfile=files.get(address),
                checked=checked,
            )
            for address in sorted(tables.keys() | files.keys())
        ]
        return locks, problems

    def _buckets(
        self, backend: Backend, lockfiles: LockFiles, problems: list[BackendProblem], seen: Iterable[str] = ()
    ) -> list[str]:
        """Concrete buckets to list: named ones, pattern matches when ListBuckets is allowed, and for
        a catch-all `*` the buckets the table's locks are in (never every bucket in the account)."""
        buckets = list(dict.fromkeys([*backend.named_buckets, *seen]))
        patterns = tuple(p for p in backend.bucket_patterns if p != "*")
        if "*" in backend.bucket_patterns:
            # Lock files in buckets no lock item points at cannot be found without naming the buckets.
            covered = f" beyond {', '.join(buckets)}" if buckets else ""
            problems.append(
                BackendProblem(
                    backend.name,
                    f"lock files in other buckets{covered} not listed: name the buckets in "
                    + ("the backends file" if backend.from_file else "TFLOCK_S3_BUCKETS")
                    + " (or turn lock files off)",
                    failed=False,
                )
            )
        if patterns:
            try:
                buckets += [
                    name
                    for name in lockfiles.list_buckets()
                    if name not in buckets and any(fnmatch.fnmatchcase(name, p) for p in patterns)
                ]
            except TflockError as exc:
                problems.append(
                    BackendProblem(backend.name, f"lock files in buckets matching {', '.join(patterns)}: {exc}")
                )
        return buckets


def _scan_all(table: LockTable, lock_id: str | None) -> list[LockSnapshot]:
    return list(table.scan(filter_lock_id=lock_id))


def _read_bucket(lockfiles: LockFiles, bucket: str) -> list[LockSnapshot]:
    return lockfiles.read_many(lockfiles.list_addresses(bucket))
