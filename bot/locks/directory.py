"""Find and read locks across every configured backend: one state, a lock ID, or all of them."""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from bot.errors import AwsAccessDenied, BadInput, LockNotFound, TflockError
from bot.locks.address import LockIdRef, StateAddress, StateRef, parse_state
from bot.locks.backends import Backend, BackendSet
from bot.locks.dynamodb import LockTable
from bot.locks.lockfile import LockFiles
from bot.locks.model import LockSnapshot, StateLock, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendProblem:
    backend: str
    message: str


@dataclass(frozen=True)
class LockListing:
    locks: tuple[StateLock, ...]
    problems: tuple[BackendProblem, ...]


class LockDirectory:
    def __init__(self, backends: BackendSet) -> None:
        self.backends = backends
        self._reads = ThreadPoolExecutor(max_workers=16, thread_name_prefix="tflock-read")

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
        """Both stores for one state, read now (consistent read for the table)."""
        backend = self.backends.for_address(address)
        table, lockfiles = self.table(backend), self.lockfiles(backend)
        checked: list[Store] = []
        warnings: list[str] = []
        table_snapshot = lockfile_snapshot = None
        # Both stores at once: an answer waits for one AWS round trip, not two.
        reading_file = self._reads.submit(lockfiles.read, address) if lockfiles is not None else None
        try:
            if table is not None:
                table_snapshot = table.read(address)
                checked.append(Store.TABLE)
        finally:
            file_error: BaseException | None = None
            if reading_file is not None:
                try:
                    lockfile_snapshot = reading_file.result()
                    checked.append(Store.LOCKFILE)
                except AwsAccessDenied as exc:
                    # In `auto` mode a bot without access to lock files still answers from the table.
                    if backend.lockfile == "on" or table is None:
                        file_error = exc
                    else:
                        warnings.append(f"lock file not checked: {exc}")
        if file_error is not None:
            raise file_error
        return StateLock(
            address=address,
            backend=backend.name,
            workspace=address.workspace(backend.workspace_key_prefix),
            table=table_snapshot,
            lockfile=lockfile_snapshot,
            checked=tuple(checked),
            warnings=tuple(warnings),
        )

    def find_lock_id(self, lock_id: str) -> StateLock:
        """The state whose lock has this ID, from the tables first and then the lock-file buckets."""
        matches: dict[StateAddress, None] = {}
        for backend in self.backends.backends:
            table = self.table(backend)
            if table is not None:
                for snapshot in table.scan(filter_lock_id=lock_id):
                    if snapshot.lock_id == lock_id:
                        matches[snapshot.address] = None
        if not matches:
            for backend in self.backends.backends:
                lockfiles = self.lockfiles(backend)
                if lockfiles is None:
                    continue
                for bucket in self._buckets(backend, lockfiles, []):
                    for snapshot in lockfiles.read_many(lockfiles.list_addresses(bucket)):
                        if snapshot.lock_id == lock_id:
                            matches[snapshot.address] = None
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
        problems: list[str] = []
        checked: list[Store] = []
        table, lockfiles = self.table(backend), self.lockfiles(backend)

        def scan_table() -> dict[StateAddress, LockSnapshot]:
            if table is None:
                return {}
            try:
                found = {s.address: s for s in table.scan() if backend.serves(s.address.bucket)}
            except TflockError as exc:
                problems.append(str(exc))
                return {}
            checked.append(Store.TABLE)
            return found

        def read_lockfiles(seen: Iterable[str]) -> dict[StateAddress, LockSnapshot]:
            if lockfiles is None:
                return {}
            found: dict[StateAddress, LockSnapshot] = {}
            for bucket in self._buckets(backend, lockfiles, problems, seen):
                try:
                    found.update((s.address, s) for s in lockfiles.read_many(lockfiles.list_addresses(bucket)))
                except TflockError as exc:
                    problems.append(str(exc))
            checked.append(Store.LOCKFILE)
            return found

        if "*" in backend.bucket_patterns:  # the buckets to list come from the table's locks
            tables = scan_table()
            files = read_lockfiles({a.bucket for a in tables})
        else:  # independent: scan the table while the lock files are listed and read
            with ThreadPoolExecutor(max_workers=1) as pool:
                scanning = pool.submit(scan_table)
                files = read_lockfiles(())
                tables = scanning.result()
        locks = [
            StateLock(
                address=address,
                backend=backend.name,
                workspace=address.workspace(backend.workspace_key_prefix),
                table=tables.get(address),
                lockfile=files.get(address),
                checked=tuple(sorted(checked)),
            )
            for address in sorted(tables.keys() | files.keys())
        ]
        return locks, [BackendProblem(backend.name, message) for message in problems]

    def _buckets(
        self, backend: Backend, lockfiles: LockFiles, messages: list[str], seen: Iterable[str] = ()
    ) -> list[str]:
        """Concrete buckets to list: named ones, pattern matches when ListBuckets is allowed, and for
        a catch-all `*` the buckets the table's locks are in (never every bucket in the account)."""
        buckets = list(dict.fromkeys([*backend.named_buckets, *seen]))
        patterns = tuple(p for p in backend.bucket_patterns if p != "*")
        if "*" in backend.bucket_patterns and not buckets and backend.table is None:
            messages.append("lock files not listed: name the buckets in TFLOCK_S3_BUCKETS or the backends file")
        if patterns:
            try:
                buckets += [
                    name
                    for name in lockfiles.list_buckets()
                    if name not in buckets and any(fnmatch.fnmatchcase(name, p) for p in patterns)
                ]
            except TflockError as exc:
                messages.append(f"lock files in buckets matching {', '.join(patterns)} not listed: {exc}")
        return buckets
