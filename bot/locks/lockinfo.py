"""The `Info` JSON Terraform and OpenTofu store for a lock (`statemgr.LockInfo`), read without losing a byte.

The raw string is always kept next to the parsed fields: Python's datetime has only microseconds
and its JSON encoder differs from Go's, so nothing may ever be rebuilt from the parsed values.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_FIELDS = ("ID", "Operation", "Info", "Who", "Version", "Created", "Path")
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)

OPERATION_WORDS = {
    "OperationTypePlan": "plan",
    "OperationTypeApply": "apply (or destroy)",
    "OperationTypeRefresh": "refresh",
    "OperationTypeInvalid": "a local command (import, console, graph, state show…)",
    "init": "init (creating a workspace's first state)",
    "state-mv": "state mv",
    "state-push": "state push",
    "state-rm": "state rm",
    "state-replace-provider": "state replace-provider (or workspace delete)",
    "taint": "taint",
    "untaint": "untaint",
    "workspace-new": "workspace new",
    "migration source state": "backend migration (source state)",
    "migration destination state": "backend migration (destination state)",
    "backend from plan": "apply of a saved plan (backend from plan)",
    "init is initializing state_store first time": "init (first state store set-up)",
}


def raw_bytes(raw: str) -> bytes:
    """The bytes a raw Info (or lock-file body) was read as: a lock file's non-UTF-8 bytes come back as they were."""
    try:
        return raw.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that was never a byte (not from a lock store)
        return raw.encode("utf-8", "surrogatepass")


def raw_digest(raw: str) -> str:
    """SHA-256 (hex) of the raw bytes: what pins a lock whose Info cannot be read, and what the trail records."""
    return hashlib.sha256(raw_bytes(raw)).hexdigest()


class LockInfoError(ValueError):
    """The stored Info is not the JSON Terraform writes; the message says how."""


@dataclass(frozen=True)
class LockInfo:
    id: str
    operation: str
    info: str
    who: str
    version: str
    created_text: str
    created: datetime | None
    path: str

    @property
    def operation_words(self) -> str:
        return describe_operation(self.operation)


def describe_operation(operation: str) -> str:
    if not operation:
        return "unknown (empty Operation)"
    return OPERATION_WORDS.get(operation, operation)


def parse_lock_info(raw: str) -> LockInfo:
    """Parse the stored Info string; raise LockInfoError (never anything else) when it is not readable."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise LockInfoError(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise LockInfoError(f"a JSON {type(data).__name__}, not an object")
    values: dict[str, str] = {}
    for field in _FIELDS:
        value = data.get(field, "")
        if not isinstance(value, str):
            raise LockInfoError(f"field {field} is a JSON {type(value).__name__}, not a string")
        values[field] = value
    return LockInfo(
        id=values["ID"],
        operation=values["Operation"],
        info=values["Info"],
        who=values["Who"],
        version=values["Version"],
        created_text=values["Created"],
        created=parse_go_time(values["Created"]),
        path=values["Path"],
    )


def parse_go_time(text: str) -> datetime | None:
    """Go's RFC 3339 (nanoseconds, trimmed zeros) as an aware UTC datetime; None if it is not one.

    The fraction is cut to microseconds: fine for ages, never for comparisons (keep the raw text).
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tzinfo=UTC)
    except ValueError:
        return None
    if not zulu:
        offset = timedelta(hours=int(off_h), minutes=int(off_m))
        moment = moment - offset if sign == "+" else moment + offset
    return moment
