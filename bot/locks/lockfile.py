"""S3-native lock files (`use_lockfile = true`): `<state key>.tflock` beside the state, body = the Info JSON."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from botocore.exceptions import ClientError

from bot.errors import TflockError
from bot.locks.address import LOCKFILE_SUFFIX, StateAddress
from bot.locks.aws import Removal, aws_errors, gone
from bot.locks.lockinfo import raw_bytes
from bot.locks.model import AlreadyLocked, LockSnapshot, Store

# Terraform's bodies are a few hundred bytes; whatever else is there is kept whole up to this size (and a
# bigger one is still pinned by its ETag), but never buffered without bound.
MAX_BODY_BYTES = 4 * 1024 * 1024
_MISSING = {"NoSuchKey", "404", "NotFound"}
# 412: the ETag no longer matches; 409: a concurrent conditional write on the same key won.
_CHANGED = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
READ_CONCURRENCY = 32  # lock-file GETs in flight for one bucket (each a round trip of a few hundred bytes)
READ_AHEAD = 2 * READ_CONCURRENCY  # listed addresses waiting for a reader: the bound on what is held in memory


class LockFileChanged(TflockError):
    """The lock file is no longer the object a release was approved for; nothing was deleted."""


class LockFiles:
    def __init__(self, client: Any, role_arn: str | None = None) -> None:
        self.client = client
        self.role_arn = role_arn

    def read(self, address: StateAddress) -> LockSnapshot | None:
        """The lock file for this state with its ETag; None if there is none."""
        key = address.lockfile_key
        with aws_errors(f"s3://{address.bucket}/{key}", self.role_arn):
            try:
                response = self.client.get_object(Bucket=address.bucket, Key=key)
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                    return None
                raise
            body = response["Body"]
            try:
                data = body.read(MAX_BODY_BYTES + 1)
            finally:
                body.close()
        location = f"s3://{address.bucket}/{key}"
        missing: str | None = None
        if len(data) > MAX_BODY_BYTES:
            missing = f"unreadable lock info: the lock file is over {MAX_BODY_BYTES} bytes"
        try:
            raw = data.decode("utf-8")
        except UnicodeDecodeError:
            # surrogateescape is reversible: raw_bytes(raw) gives these very bytes back (bot/locks/lockinfo.py).
            raw = data.decode("utf-8", errors="surrogateescape")
            missing = missing or "unreadable lock info: the lock file is not UTF-8 text"
        return LockSnapshot.from_raw(
            address,
            Store.LOCKFILE,
            location,
            address.bucket,
            raw,
            etag=response.get("ETag"),
            last_modified=response.get("LastModified"),
            missing_reason=missing,
        )

    def delete_if_unchanged(self, address: StateAddress, etag: str) -> Removal:
        """Delete the lock file only if its ETag is still `etag` (DeleteObject with If-Match).

        DELETED, RESPONSE_LOST (a retried delete found none) or ABSENT. LockFileChanged: another object is there now.
        """
        key = address.lockfile_key
        with aws_errors(f"s3://{address.bucket}/{key}", self.role_arn):
            try:
                self.client.delete_object(Bucket=address.bucket, Key=key, IfMatch=etag)
            except ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code"))
                if code in _MISSING:
                    return gone(exc.response)
                if code in _CHANGED:
                    raise LockFileChanged(
                        f"the lock file s3://{address.bucket}/{key} changed since it was read "
                        f"(S3 answered {code} to DeleteObject If-Match its ETag); nothing was deleted there"
                    ) from None
                raise
        return Removal.DELETED

    def put_if_absent(self, address: StateAddress, raw_info: str) -> str:
        """Take the lock as Terraform does: PutObject of the Info JSON with If-None-Match: *; returns the ETag.

        AlreadyLocked (with the lock file there now, if it can be read) when one exists.
        """
        key = address.lockfile_key
        with aws_errors(f"s3://{address.bucket}/{key}", self.role_arn):
            try:
                response = self.client.put_object(
                    Bucket=address.bucket,
                    Key=key,
                    Body=raw_bytes(raw_info),
                    ContentType="application/json",
                    IfNoneMatch="*",
                )
            except ClientError as exc:
                if str(exc.response.get("Error", {}).get("Code")) not in _CHANGED:
                    raise
                holder = self.read(address)
                if holder is not None and holder.raw_info == raw_info and holder.etag:
                    return holder.etag  # a retried put whose reply was lost: the file there is the one just written
                raise AlreadyLocked(address, holder, f" (s3://{address.bucket}/{key})") from None
        return str(response["ETag"])

    def list_addresses(self, bucket: str) -> Iterator[StateAddress]:
        """States with a lock file in this bucket (paginated ListObjectsV2, keys ending `.tflock`)."""
        with aws_errors(f"bucket {bucket}", self.role_arn):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key.endswith(LOCKFILE_SUFFIX) and len(key) > len(LOCKFILE_SUFFIX):
                        yield StateAddress(bucket, key.removesuffix(LOCKFILE_SUFFIX))

    def read_many(self, addresses: Iterable[StateAddress]) -> list[LockSnapshot]:
        """Read many lock files concurrently; ones deleted since listing are simply absent.

        Reads start while `addresses` is still being produced, so with a paginated listing the lock files
        of one page are fetched while the next page is listed (docs/benchmarks.md, "list at 20 ms")."""
        found: list[LockSnapshot] = []
        pending: set[Future[LockSnapshot | None]] = set()

        def collect(done: set[Future[LockSnapshot | None]]) -> None:
            found.extend(snapshot for future in done if (snapshot := future.result()) is not None)

        with ThreadPoolExecutor(max_workers=READ_CONCURRENCY, thread_name_prefix="tflock-lockfile") as pool:
            try:
                for address in addresses:
                    if len(pending) >= READ_AHEAD:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        collect(done)
                    pending.add(pool.submit(self.read, address))
                done, pending = wait(pending)
                collect(done)
            finally:
                for future in pending:  # a failed listing or read: nothing more is started
                    future.cancel()
        return found

    def list_buckets(self) -> list[str]:
        with aws_errors("the account's buckets"):
            return [bucket["Name"] for bucket in self.client.list_buckets().get("Buckets", [])]
