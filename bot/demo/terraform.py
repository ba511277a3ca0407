"""The demo's Terraform: write and take locks byte for byte the way Terraform and OpenTofu do.

The same bytes as tests/terraform.py writes: Go's `json.Marshal` of `LockInfo` (compact, struct order,
`<>&` escaped), `time.RFC3339Nano` for `Created`, go-uuid IDs without version bits, the lock file put with
`If-None-Match: *` before the conditional DynamoDB `PutItem`, the `-md5` digest item after every state
upload, and Terraform's `Error acquiring the state lock` text when the lock is taken (with the lock's `Info`,
which for a `/tflock hold` is its reason). This is only the demo's stand-in for a person running
`terraform plan`; the bot writes a lock only for a hold (bot/locks/hold.py).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import textwrap
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from bot.locks.address import StateAddress

FIELD_ORDER = ("ID", "Operation", "Info", "Who", "Version", "Created", "Path")
WRAP = 75  # Terraform wraps diagnostic text for a 78-column terminal; lines starting with a space never wrap


def go_json(values: dict[str, str]) -> str:
    """Go's json.Marshal of LockInfo: compact, struct order, <>& and U+2028/9 escaped, other UTF-8 raw."""
    text = json.dumps({k: values[k] for k in FIELD_ORDER}, separators=(",", ":"), ensure_ascii=False)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(char, escaped)
    return text.replace("\u2029", "\\u2029")


def go_time(moment: datetime, nanos: int | None = None) -> str:
    """time.RFC3339Nano in UTC: the fraction's trailing zeros trimmed, none at all when zero, `Z` suffix."""
    moment = moment.astimezone(UTC)
    fraction = nanos if nanos is not None else moment.microsecond * 1000
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += "." + f"{fraction:09d}".rstrip("0")
    return text + "Z"


def go_time_string(created: str) -> str:
    """Go's time.Time.String() of an RFC3339Nano UTC time: `2025-03-04 10:20:30.123456789 +0000 UTC`."""
    if not created.endswith("Z") or "T" not in created:
        return created
    return created[:-1].replace("T", " ", 1) + " +0000 UTC"


def go_uuid() -> str:
    """go-uuid.FormatUUID of 16 random bytes: lowercase 8-4-4-4-12, no RFC 4122 version bits."""
    raw = secrets.token_bytes(16).hex()
    return f"{raw[0:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:32]}"


def lock_info_json(address: StateAddress, *, lock_id: str, operation: str, who: str, version: str, created: str) -> str:
    return go_json(
        {
            "ID": lock_id,
            "Operation": operation,
            "Info": "",
            "Who": who,
            "Version": version,
            "Created": created,
            "Path": address.lock_id,  # Path = LockID, in lock-file mode too
        }
    )


@dataclass(frozen=True)
class Backend:
    """One `backend "s3"` block: the bucket, and which locking it uses."""

    bucket: str
    table: str | None
    use_lockfile: bool
    tool: str = "Terraform"  # or "OpenTofu": only the wording of the error paragraph differs

    def lock(self, s3: Any, dynamodb: Any, address: StateAddress, info: str) -> None:
        """Terraform's Lock: the lock file first (If-None-Match: *), then the conditional PutItem; a failed
        PutItem releases the lock file again. Raises botocore's ClientError as the SDK would."""
        if self.use_lockfile:
            s3.put_object(
                Bucket=self.bucket,
                Key=address.lockfile_key,
                Body=info.encode("utf-8"),
                ContentType="application/json",
                IfNoneMatch="*",
                ChecksumAlgorithm="SHA256",
            )
        if self.table is not None:
            try:
                dynamodb.put_item(
                    TableName=self.table,
                    Item={"LockID": {"S": address.lock_id}, "Info": {"S": info}},
                    ConditionExpression="attribute_not_exists(LockID)",
                )
            except ClientError:
                if self.use_lockfile:
                    s3.delete_object(Bucket=self.bucket, Key=address.lockfile_key)
                raise

    def unlock(self, s3: Any, dynamodb: Any, address: StateAddress) -> None:
        """Terraform's Unlock: the file first, then the DynamoDB item; the digest item is never touched."""
        if self.use_lockfile:
            s3.delete_object(Bucket=self.bucket, Key=address.lockfile_key)
        if self.table is not None:
            dynamodb.delete_item(TableName=self.table, Key={"LockID": {"S": address.lock_id}})

    def write_state(self, s3: Any, dynamodb: Any, address: StateAddress, body: bytes) -> None:
        """A state upload: the object, then (with a table) the unconditional `-md5` digest PutItem."""
        s3.put_object(Bucket=self.bucket, Key=address.key, Body=body)
        if self.table is not None:
            dynamodb.put_item(
                TableName=self.table,
                Item={"LockID": {"S": address.digest_id}, "Digest": {"S": hashlib.md5(body).hexdigest()}},  # noqa: S324 (Terraform's own digest)
            )

    def current_info(self, s3: Any, dynamodb: Any, address: StateAddress, failed_in_table: bool) -> str | None:
        """What Terraform reads after a refused lock: the item (consistent GetItem) or the lock file."""
        try:
            if failed_in_table and self.table is not None:
                item = dynamodb.get_item(
                    TableName=self.table,
                    Key={"LockID": {"S": address.lock_id}},
                    ConsistentRead=True,
                    ProjectionExpression="LockID, Info",
                ).get("Item")
                return str(item["Info"]["S"]) if item and "Info" in item else None
            body = s3.get_object(Bucket=self.bucket, Key=address.lockfile_key)["Body"].read()
            return str(body.decode("utf-8", "replace"))
        except ClientError:
            return None


@dataclass(frozen=True)
class PlanResult:
    acquired: bool
    output: str


def sdk_error_text(error: ClientError) -> str:
    """The aws-sdk-go-v2 form Terraform ≥1.6 prints for a refused PutItem / PutObject."""
    meta = error.response.get("ResponseMetadata", {})
    service = "DynamoDB" if error.operation_name == "PutItem" else "S3"
    code = str(error.response.get("Error", {}).get("Code", "Unknown"))
    message = str(error.response.get("Error", {}).get("Message", ""))
    status = meta.get("HTTPStatusCode", "?")
    request_id = meta.get("RequestId", "")
    host_id = f", HostID: {meta['HostId']}" if service == "S3" and meta.get("HostId") else ""
    api = f"api error {code}: {message}" if service == "S3" else f"{code}: {message}"
    return (
        f"operation error {service}: {error.operation_name}, https response error StatusCode: {status}, "
        f"RequestID: {request_id}{host_id}, {api}"
    )


def lock_info_block(raw: str) -> list[str] | None:
    """LockInfo.String(): values aligned at column 14; None when the stored Info does not decode."""
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    value = {k: str(data.get(k, "")) for k in FIELD_ORDER}
    return [
        "Lock Info:",
        f"  ID:        {value['ID']}",
        f"  Path:      {value['Path']}",
        f"  Operation: {value['Operation']}",
        f"  Who:       {value['Who']}",
        f"  Version:   {value['Version']}",
        f"  Created:   {go_time_string(value['Created'])}",
        f"  Info:      {value['Info']}",
    ]


def lock_error_text(tool: str, error: ClientError, current: str | None) -> str:
    """`Error acquiring the state lock` as Terraform's diagnostic renderer draws it (with the box)."""
    detail = [f"Error message: {sdk_error_text(error)}"]
    block = lock_info_block(current) if current is not None else None
    if block is not None:
        detail += block
    elif current is None:
        detail.append("unexpected end of JSON input")  # the lock vanished between the write and the read
    else:
        detail.append(f"(the stored lock Info is not JSON {tool} can decode: {current[:80]!r})")
    paragraph = (
        f"{tool} acquires a state lock to protect the state from being written by multiple users at the "
        "same time. Please resolve the issue above and try again. For most commands, you can disable locking "
        'with the "-lock=false" flag, but this is not recommended.'
    )
    lines = ["Error: Error acquiring the state lock", ""]
    for line in detail:
        lines += [line] if line.startswith(" ") else textwrap.wrap(line, WRAP, break_on_hyphens=False) or [""]
    lines += ["", "", *textwrap.wrap(paragraph, WRAP)]
    return "╷\n" + "\n".join(("│ " + line) if line else "│" for line in lines) + "\n╵"


def plan(
    backend: Backend, s3: Any, dynamodb: Any, address: StateAddress, *, who: str, version: str, now: datetime
) -> PlanResult:
    """`terraform plan`'s locking: take the lock exactly as Terraform does; on success release it again."""
    lock_id = go_uuid()
    info = lock_info_json(
        address, lock_id=lock_id, operation="OperationTypePlan", who=who, version=version, created=go_time(now)
    )
    command = "tofu plan" if backend.tool == "OpenTofu" else "terraform plan"
    try:
        backend.lock(s3, dynamodb, address, info)
    except ClientError as error:
        failed_in_table = error.operation_name == "PutItem"
        current = backend.current_info(s3, dynamodb, address, failed_in_table)
        return PlanResult(False, f"$ {command}\n{lock_error_text(backend.tool, error, current)}")
    backend.unlock(s3, dynamodb, address)
    ways = []
    if backend.use_lockfile:
        ways.append(f"lock file {address.lockfile_key} (PutObject If-None-Match: *)")
    if backend.table is not None:
        ways.append(f"DynamoDB item {address.lock_id} (PutItem attribute_not_exists(LockID))")
    said = [
        f"The state lock was free: {backend.tool} took it ({'; '.join(ways)}), ID {lock_id}.",
        f"(Here {backend.tool} would refresh and plan; the demo stops at the lock.)",
        "The state lock was released again.",
    ]
    return PlanResult(True, "\n".join([f"$ {command}", *(line for s in said for line in textwrap.wrap(s, WRAP))]))
