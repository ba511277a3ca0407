"""The DynamoDB lock table (`dynamodb_table`): `LockID` + `Info`, with `-md5` digest items that are not locks."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from bot.errors import TflockError
from bot.locks.address import DIGEST_SUFFIX, StateAddress
from bot.locks.aws import Removal, aws_errors, gone
from bot.locks.model import AlreadyLocked, LockSnapshot, Store

_PROJECTION = "LockID, #info"
_NAMES = {"#info": "Info"}


class TableItemChanged(TflockError):
    """The lock item's Info is no longer the one a release was approved for; nothing was deleted."""


class LockTable:
    def __init__(self, client: Any, table: str, role_arn: str | None = None) -> None:
        self.client = client
        self.table = table
        self.role_arn = role_arn
        self.location = f"DynamoDB table {table}"

    def read(self, address: StateAddress) -> LockSnapshot | None:
        """The lock item for this state, read consistently (as Terraform's unlock does); None if absent."""
        with aws_errors(f"table {self.table}", self.role_arn):
            response = self.client.get_item(
                TableName=self.table,
                Key={"LockID": {"S": address.lock_id}},
                ConsistentRead=True,
                ProjectionExpression=_PROJECTION,
                ExpressionAttributeNames=_NAMES,
            )
        item = response.get("Item")
        return self._snapshot(address, item) if item else None

    def delete_if_unchanged(self, address: StateAddress, raw_info: str) -> Removal:
        """Delete the lock item only if its Info is still exactly `raw_info` (the raw string read earlier).

        DELETED, or RESPONSE_LOST (a retried delete found it gone), or ABSENT (there was no item to delete).
        TableItemChanged: another lock holds the state.
        Only `LockID = <bucket>/<key>` is addressed, so the `-md5` digest item is never touched.
        """
        with aws_errors(f"table {self.table}", self.role_arn):
            try:
                self.client.delete_item(
                    TableName=self.table,
                    Key={"LockID": {"S": address.lock_id}},
                    ConditionExpression="#info = :raw_info",
                    ExpressionAttributeNames=dict(_NAMES),
                    ExpressionAttributeValues={":raw_info": {"S": raw_info}},
                    # The item that failed the condition comes back, which tells "changed" from "gone".
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                if not exc.response.get("Item"):
                    return gone(exc.response)
                raise TableItemChanged(
                    f"the lock item {address.lock_id} in {self.location} changed since it was read "
                    "(DynamoDB condition Info = the Info seen failed); nothing was deleted there"
                ) from None
        return Removal.DELETED

    def put_if_absent(self, address: StateAddress, raw_info: str) -> None:
        """Take the lock as Terraform does: PutItem {LockID, Info} on condition attribute_not_exists(LockID).

        AlreadyLocked (with the holder's item) when an item is there. Only `LockID = <bucket>/<key>`
        is written, never the `-md5` digest item.
        """
        with aws_errors(f"table {self.table}", self.role_arn):
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item={"LockID": {"S": address.lock_id}, "Info": {"S": raw_info}},
                    ConditionExpression="attribute_not_exists(LockID)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                item: dict[str, Any] | None = exc.response.get("Item")  # type: ignore[assignment]
                holder = (self._snapshot(address, item) if item else None) or self.read(address)
                if holder is not None and holder.raw_info == raw_info:
                    # botocore retried a put whose reply was lost: the item there is the one just written
                    # (a hold's Info carries a fresh lock ID and time, so equal bytes are ours).
                    return
                raise AlreadyLocked(address, holder, f" ({self.location})") from None

    def scan(self, filter_lock_id: str | None = None, *, segments: int = 1) -> Iterator[LockSnapshot]:
        """Every lock item in the table (paginated); digest items are skipped.

        With `segments` > 1 the table is read as a parallel Scan: each segment pages on its own thread, so a
        large table costs a fraction of the sequential round trips (what a bot in another region feels).
        """
        if segments > 1:
            with ThreadPoolExecutor(max_workers=segments, thread_name_prefix="tflock-scan") as pool:
                parts = [pool.submit(self._scan_segment, filter_lock_id, n, segments) for n in range(segments)]
                for part in parts:
                    yield from part.result()
            return
        yield from self._scan(filter_lock_id, None, 1)

    def _scan_segment(self, filter_lock_id: str | None, segment: int, segments: int) -> list[LockSnapshot]:
        return list(self._scan(filter_lock_id, segment, segments))

    def _scan(self, filter_lock_id: str | None, segment: int | None, segments: int) -> Iterator[LockSnapshot]:
        kwargs: dict[str, Any] = {
            "TableName": self.table,
            "ProjectionExpression": _PROJECTION,
            "ExpressionAttributeNames": dict(_NAMES),
        }
        if filter_lock_id is not None:
            kwargs["FilterExpression"] = "contains(#info, :id)"
            kwargs["ExpressionAttributeValues"] = {":id": {"S": filter_lock_id}}
        if segment is not None:
            kwargs["Segment"], kwargs["TotalSegments"] = segment, segments
        with aws_errors(f"table {self.table}", self.role_arn):
            for page in self.client.get_paginator("scan").paginate(**kwargs):
                for item in page.get("Items", []):
                    snapshot = self._from_item(item)
                    if snapshot is not None:
                        yield snapshot

    def _from_item(self, item: dict[str, Any]) -> LockSnapshot | None:
        lock_id = item.get("LockID", {}).get("S")
        if not lock_id:
            return None
        if "Info" not in item and lock_id.endswith(DIGEST_SUFFIX):
            return None  # Terraform's state digest (`<LockID>-md5`, attribute Digest): never a lock
        bucket, _, key = lock_id.partition("/")
        return self._snapshot(StateAddress(bucket, key), item)

    def _snapshot(self, address: StateAddress, item: dict[str, Any]) -> LockSnapshot:
        info = item.get("Info")
        # An item at LockID blocks Terraform's PutItem whatever it contains, so it is held even if odd.
        if info is None:
            missing = "unreadable lock info: the item has no Info attribute"
        elif "S" not in info:
            missing = f"unreadable lock info: Info is DynamoDB type {next(iter(info), '?')}, not a string"
        else:
            missing = None
        return LockSnapshot.from_raw(
            address,
            Store.TABLE,
            self.location,
            self.table,
            info.get("S", "") if info else "",
            missing_reason=missing,
        )
