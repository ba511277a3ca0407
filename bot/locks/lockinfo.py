"""The `Info` JSON Terraform and OpenTofu store for a lock (`statemgr.LockInfo`), read without losing a byte.

The raw string is always kept next to the parsed fields: Python's datetime has only microseconds
and its JSON encoder differs from Go's, so nothing may ever be rebuilt from the parsed values.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
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
    "tflock-hold": "hold (taken with tflock on purpose)",
}


def go_json(values: dict[str, str]) -> str:
    """Go's json.Marshal of a LockInfo: compact, struct order, <>& and U+2028/9 escaped, other UTF-8 raw.

    Only for a lock tflock writes itself (a hold); a lock read from a store is never re-marshalled."""
    text = json.dumps({k: values[k] for k in _FIELDS}, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028")):
        text = text.replace(char, escape)
    return text.replace("\u2029", "\\u2029")


def go_time(moment: datetime) -> str:
    """time.RFC3339Nano in UTC: the fraction's trailing zeros trimmed, none at all when zero, `Z` suffix."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond * 1000:09d}".rstrip("0")
    return text + "Z"


def new_lock_id() -> str:
    """A lock ID as Terraform makes one (go-uuid.FormatUUID of 16 random bytes: 8-4-4-4-12 lowercase hex)."""
    raw = secrets.token_bytes(16).hex()
    return f"{raw[0:8]}-{raw[8:12]}-{raw[12:16]}-{raw[16:20]}-{raw[20:32]}"


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

    @property
    def hold(self) -> HoldInfo | None:
        """What this lock's Info says about the hold it is, or None when it is any other lock."""
        return read_hold(self)


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


HOLD_OPERATION = "tflock-hold"
WHO_SUFFIX = " (tflock hold)"
_INFO = re.compile(r"held with tflock by (?P<by>.+?)(?: in (?P<channel>#\S+))?: (?P<reason>.*)", re.DOTALL)


@dataclass(frozen=True)
class HoldInfo:
    """What a hold's Info says: who holds it (as shown), where it was taken, and why."""

    by: str  # "@alice" or "cli:alice"
    channel: str | None  # "#incident-42"
    reason: str


def hold_lock_info(
    path: str, *, by: str, channel: str | None, reason: str, version: str, created: datetime
) -> tuple[str, str]:
    """(lock ID, the exact Info bytes as text) for a new hold; `by` is "@alice" or "cli:alice"."""
    lock_id = new_lock_id()
    where = f" in #{channel.lstrip('#')}" if channel else ""
    raw = go_json(
        {
            "ID": lock_id,
            "Operation": HOLD_OPERATION,
            "Info": f"held with tflock by {by}{where}: {reason}",
            "Who": by.removeprefix("@") + WHO_SUFFIX,
            "Version": version,
            "Created": go_time(created),
            "Path": path,  # <bucket>/<key>, as Terraform sets it
        }
    )
    return lock_id, raw


def read_hold(info: LockInfo | None) -> HoldInfo | None:
    """The hold a lock's Info describes, or None when it is any other lock."""
    if info is None or info.operation != HOLD_OPERATION:
        return None
    match = _INFO.fullmatch(info.info)
    if match is None:
        return HoldInfo(by=info.who.removesuffix(WHO_SUFFIX), channel=None, reason=info.info)
    return HoldInfo(by=match["by"], channel=match["channel"], reason=match["reason"])
