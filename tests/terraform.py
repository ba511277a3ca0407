"""Test fixtures that take and release locks exactly the way Terraform and OpenTofu do.

Everything here follows docs/design.md §2 (read from Terraform's and OpenTofu's source): the Go
`json.Marshal` byte format of `LockInfo`, `time.RFC3339Nano` for `Created`, `go-uuid` IDs without
version bits, the `-md5` digest item, lock files written with `IfNoneMatch="*"`, and workspace keys
built by `path.Join`.
It is test code: the bot itself never writes a lock.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.locks.address import StateAddress

FIELD_ORDER = ("ID", "Operation", "Info", "Who", "Version", "Created", "Path")
OPERATIONS = (
    "OperationTypePlan",
    "OperationTypeApply",
    "OperationTypeRefresh",
    "OperationTypeInvalid",
    "init",
    "state-mv",
    "state-push",
    "state-rm",
    "state-replace-provider",
    "taint",
    "untaint",
    "workspace-new",
    "migration source state",
    "migration destination state",
    "backend from plan",
    "init is initializing state_store first time",
)


def go_json(values: dict[str, str]) -> str:
    """Go's json.Marshal of LockInfo: compact, struct order, <>& and U+2028/9 escaped, other UTF-8 raw."""
    text = json.dumps({k: values[k] for k in FIELD_ORDER}, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(char, escape)
    return text.replace("\u2029", "\\u2029")


def go_time(moment: datetime, nanos: int | None = None) -> str:
    """time.RFC3339Nano in UTC: fraction's trailing zeros trimmed, none at all when zero, `Z` suffix."""
    moment = moment.astimezone(UTC)
    fraction = nanos if nanos is not None else moment.microsecond * 1000
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def go_uuid(rng: random.Random | None = None) -> str:
    """go-uuid.FormatUUID of 16 random bytes: lowercase 8-4-4-4-12, no RFC 4122 version bits."""
    raw = (rng or random).randbytes(16).hex()
    return f"{raw[0:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:32]}"


@dataclass
class TerraformLock:
    address: StateAddress
    id: str = field(default_factory=go_uuid)
    operation: str = "OperationTypeApply"
    who: str = "runner@ip-10-0-1-23.ec2.internal"
    version: str = "1.11.4"
    created: str = field(default_factory=lambda: go_time(datetime.now(UTC)))
    info: str = ""

    @property
    def info_json(self) -> str:
        return go_json(
            {
                "ID": self.id,
                "Operation": self.operation,
                "Info": self.info,
                "Who": self.who,
                "Version": self.version,
                "Created": self.created,
                "Path": self.address.lock_id,  # Path = LockID, also in lock-file mode
            }
        )


def ago(**delta: float) -> str:
    return go_time(datetime.now(UTC) - timedelta(**delta))


class TerraformBackend:
    """One `backend "s3"` configuration: bucket, optional dynamodb_table, optional use_lockfile."""

    def __init__(
        self,
        s3: Any,
        dynamodb: Any | None,
        bucket: str,
        table: str | None,
        *,
        use_lockfile: bool = False,
        workspace_key_prefix: str = "env:",
    ) -> None:
        self.s3 = s3
        self.dynamodb = dynamodb
        self.bucket = bucket
        self.table = table
        self.use_lockfile = use_lockfile
        self.prefix = workspace_key_prefix

    def address(self, key: str, workspace: str = "default") -> StateAddress:
        return StateAddress.for_workspace(self.bucket, key, workspace, self.prefix)

    def lock(self, key: str, workspace: str = "default", **fields: Any) -> TerraformLock:
        """Terraform's Lock: the lock file first (IfNoneMatch="*"), then DynamoDB PutItem."""
        lock = TerraformLock(self.address(key, workspace), **fields)
        if self.use_lockfile:
            self.put_lockfile(lock)
        if self.table is not None:
            self.put_table_item(lock)
        return lock

    def put_lockfile(self, lock: TerraformLock) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=lock.address.lockfile_key,
            Body=lock.info_json.encode("utf-8"),
            ContentType="application/json",
            IfNoneMatch="*",
            ChecksumAlgorithm="SHA256",
        )

    def put_table_item(self, lock: TerraformLock) -> None:
        assert self.dynamodb is not None and self.table is not None
        self.dynamodb.put_item(
            TableName=self.table,
            Item={"LockID": {"S": lock.address.lock_id}, "Info": {"S": lock.info_json}},
            ConditionExpression="attribute_not_exists(LockID)",
        )

    def put_raw_table_item(self, address: StateAddress, item: dict[str, Any]) -> None:
        assert self.dynamodb is not None and self.table is not None
        self.dynamodb.put_item(TableName=self.table, Item={"LockID": {"S": address.lock_id}, **item})

    def write_state(self, key: str, body: bytes, workspace: str = "default") -> None:
        """A state upload: the object, then (with a table) the unconditional `-md5` digest PutItem."""
        address = self.address(key, workspace)
        self.s3.put_object(Bucket=self.bucket, Key=address.key, Body=body)
        if self.table is not None:
            assert self.dynamodb is not None
            self.dynamodb.put_item(
                TableName=self.table,
                Item={"LockID": {"S": address.digest_id}, "Digest": {"S": hashlib.md5(body).hexdigest()}},  # noqa: S324
            )

    def unlock(self, lock: TerraformLock) -> None:
        """Terraform's Unlock: file first, then the DynamoDB item; the digest is never touched."""
        if self.use_lockfile:
            self.s3.delete_object(Bucket=self.bucket, Key=lock.address.lockfile_key)
        if self.table is not None:
            assert self.dynamodb is not None
            self.dynamodb.delete_item(TableName=self.table, Key={"LockID": {"S": lock.address.lock_id}})


def create_table(dynamodb: Any, table: str) -> None:
    """The table shape the Terraform docs prescribe: partition key LockID (S), no sort key."""
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )


def create_bucket(s3: Any, bucket: str) -> None:
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
