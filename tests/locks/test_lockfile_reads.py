"""`LockFiles.read_many`: reads start while the listing is still running, within a bound, and fail loudly."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from bot.errors import TflockError
from bot.locks import lockfile
from bot.locks.address import StateAddress
from bot.locks.lockfile import LockFiles
from bot.locks.model import LockSnapshot, Store


class Recording(LockFiles):
    """Reads answer from memory; records how many were in flight and whether listing had finished."""

    def __init__(self, fail_on: str | None = None) -> None:
        super().__init__(client=None)
        self.lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.listing_done = threading.Event()
        self.read_before_listing_done = 0
        self.fail_on = fail_on
        self.gate = threading.Event()
        self.gate.set()

    def read(self, address: StateAddress) -> LockSnapshot | None:
        with self.lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            if not self.listing_done.is_set():
                self.read_before_listing_done += 1
        try:
            self.gate.wait(5)
            if address.key == self.fail_on:
                raise TflockError(f"s3:GetObject denied on {address.key}")
            if address.key.endswith("gone"):
                return None  # deleted between listing and reading
            return LockSnapshot(
                address=address,
                store=Store.LOCKFILE,
                location=f"s3://{address.bucket}/{address.key}.tflock",
                container=address.bucket,
                raw_info=f'{{"ID":"{address.key}"}}',
                info=None,
            )
        finally:
            with self.lock:
                self.in_flight -= 1


def test_reads_overlap_the_listing_and_stay_bounded() -> None:
    files = Recording()
    files.gate.clear()  # readers hold until the listing has run ahead as far as it may

    def addresses() -> Iterator[StateAddress]:
        for i in range(500):
            if i == 10:  # ten reads were started and are waiting: the listing ran ahead of them
                files.gate.set()
            yield StateAddress("acme-tfstate", f"s{i}" + ("gone" if i % 10 == 9 else ""))
        files.listing_done.set()

    found = files.read_many(addresses())
    assert len(found) == 450 and len({s.raw_info for s in found}) == 450
    assert files.read_before_listing_done > 0, "no read started before the listing ended"
    assert files.most_in_flight <= lockfile.READ_CONCURRENCY


def test_listing_waits_for_readers_beyond_the_read_ahead() -> None:
    files = Recording()
    files.gate.clear()
    produced = 0
    seen_at_release: list[int] = []

    def addresses() -> Iterator[StateAddress]:
        nonlocal produced
        for i in range(lockfile.READ_AHEAD * 3):
            produced = i + 1
            yield StateAddress("acme-tfstate", f"s{i}")

    releaser = threading.Timer(1.0, lambda: (seen_at_release.append(produced), files.gate.set()))
    releaser.start()
    assert len(files.read_many(addresses())) == lockfile.READ_AHEAD * 3
    # While no read could finish, the listing was held at the read-ahead bound (+1 in hand).
    assert seen_at_release and seen_at_release[0] <= lockfile.READ_AHEAD + 1


def test_a_failed_read_fails_the_bucket() -> None:
    files = Recording(fail_on="s7")
    with pytest.raises(TflockError, match="denied"):
        files.read_many(StateAddress("acme-tfstate", f"s{i}") for i in range(100))


def test_nothing_to_read() -> None:
    assert Recording().read_many(iter(())) == []
