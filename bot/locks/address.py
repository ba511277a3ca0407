"""State addresses: the one place that turns what a person typed into a bucket and key (docs/design.md §3).

Accepted: the `Path:` Terraform prints (`bucket/key`, workspaces as `env:/<ws>/key` or a custom
`workspace_key_prefix`), `s3://bucket/key`, an alias from the backends file, or a lock ID (`ID:`).
Everything else raises BadInput with a message that says what was wrong.
"""

from __future__ import annotations

import posixpath
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from bot.errors import BadInput

LOCKFILE_SUFFIX = ".tflock"
DIGEST_SUFFIX = "-md5"
DEFAULT_WORKSPACE_PREFIX = "env:"
MAX_KEY_BYTES = 1024  # S3's limit on an object key
MAX_INPUT_CHARS = 2048
USAGE_HINT = (
    "give the state as Terraform prints it under `Path:` (bucket/key), as s3://bucket/key, "
    "as an alias from the backends file, or as the lock `ID:`"
)

_LOCK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE)
_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_IPV4 = re.compile(r"\d{1,3}(\.\d{1,3}){3}")
_QUOTES = {'"': '"', "'": "'", "`": "`", "“": "”", "‘": "’"}
_ALIAS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}")


@dataclass(frozen=True, order=True)
class StateAddress:
    """A Terraform state in an S3 backend: `<bucket>/<key>`, which is also the DynamoDB `LockID`."""

    bucket: str
    key: str

    @classmethod
    def for_workspace(
        cls, bucket: str, key: str, workspace: str = "default", prefix: str = DEFAULT_WORKSPACE_PREFIX
    ) -> StateAddress:
        """The key Terraform's `(*Backend).path` builds: `key` as is for default, else Go's path.Join."""
        if workspace == "default":
            return cls(bucket, key)
        parts = [part for part in (prefix, workspace, key) if part]
        return cls(bucket, posixpath.normpath("/".join(parts)).lstrip("/"))

    @property
    def lock_id(self) -> str:
        return f"{self.bucket}/{self.key}"

    @property
    def digest_id(self) -> str:
        return self.lock_id + DIGEST_SUFFIX

    @property
    def lockfile_key(self) -> str:
        return self.key + LOCKFILE_SUFFIX

    def workspace(self, prefix: str = DEFAULT_WORKSPACE_PREFIX) -> str:
        """The workspace encoded in the key, `default` when the key is not under `<prefix>/<ws>/`."""
        if not prefix:
            return "default"
        head = prefix + "/"
        if self.key.startswith(head):
            workspace, sep, rest = self.key[len(head) :].partition("/")
            if sep and workspace and rest:
                return workspace
        return "default"

    def __str__(self) -> str:
        return self.lock_id


@dataclass(frozen=True)
class LockIdRef:
    """A lock ID typed instead of an address; resolved by searching the configured stores."""

    lock_id: str


StateRef = StateAddress | LockIdRef


def parse_state(text: str, aliases: Mapping[str, StateAddress] | None = None) -> StateRef:
    """Parse one state reference, or raise BadInput saying exactly what is wrong with it."""
    if len(text) > MAX_INPUT_CHARS:
        raise BadInput(
            f"that state reference is {len(text):,} characters long; a state address is at most "
            f"about 1,100 (63-character bucket, 1,024-byte key). {USAGE_HINT}"
        )
    cleaned = _unwrap(text.strip())
    if not cleaned:
        raise BadInput(f"no state given: {USAGE_HINT}")
    _check_characters(cleaned)
    if _LOCK_ID.fullmatch(cleaned):
        return LockIdRef(cleaned.lower())
    if aliases and cleaned in aliases:
        return aliases[cleaned]
    if cleaned.lower().startswith("s3://"):
        return _parse_bucket_key(cleaned[5:], shown=cleaned)
    if cleaned.startswith("/"):
        raise BadInput(f"{_show(cleaned)} starts with '/'; write bucket/key with no leading slash")
    if "/" not in cleaned:
        known = ", ".join(sorted(aliases)[:10]) if aliases else ""
        raise BadInput(
            f"{_show(cleaned)} is not a state address (no bucket/key), a lock ID or a known alias"
            + (f" (aliases: {known})" if known else "")
            + f"; {USAGE_HINT}"
        )
    return _parse_bucket_key(cleaned, shown=cleaned)


def parse_address(text: str, aliases: Mapping[str, StateAddress] | None = None) -> StateAddress:
    """Like parse_state, for places that need an address and cannot search by lock ID."""
    ref = parse_state(text, aliases)
    if isinstance(ref, LockIdRef):
        raise BadInput(f"{ref.lock_id} is a lock ID; give the state address here. {USAGE_HINT}")
    return ref


def validate_alias(name: str) -> str:
    if not _ALIAS.fullmatch(name) or _LOCK_ID.fullmatch(name):
        raise ValueError(f"{name!r} is not a usable alias (letters, digits, _ . : @ -; not a lock ID)")
    return name


def _unwrap(text: str) -> str:
    # Slack wraps links as <url|label>; people wrap things in quotes or backticks.
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].split("|", 1)[0].strip()
    for _ in range(3):
        if len(text) >= 2 and _QUOTES.get(text[0]) == text[-1]:
            text = text[1:-1].strip()
    return text


def _check_characters(text: str) -> None:
    for position, char in enumerate(text, start=1):
        code = f"U+{ord(char):04X}"
        if "\ud800" <= char <= "\udfff":
            raise BadInput(f"the state reference has bytes that are not valid UTF-8 (at character {position})")
        if char == "\ufffd":
            raise BadInput(
                f"the state reference has U+FFFD at character {position}: text that was not valid UTF-8 "
                "was pasted; copy the address again from Terraform's output"
            )
        if char.isspace():
            raise BadInput(f"the state reference has whitespace at character {position}; give one state")
        category = unicodedata.category(char)
        if category in {"Cc", "Cf", "Co", "Cn", "Zl", "Zp"}:
            raise BadInput(f"the state reference has an invisible or control character {code} at character {position}")
        if char in "\"'`“”‘’\\":
            raise BadInput(
                f"the state reference has a quote or backslash ({char}) at character {position}; "
                "state addresses never contain one"
            )


def _parse_bucket_key(text: str, shown: str) -> StateAddress:
    bucket, _, key = text.partition("/")
    _check_bucket(bucket, shown)
    if not key:
        raise BadInput(f"{_show(shown)} has no state key after the bucket; {USAGE_HINT}")
    if key.startswith("/") or "//" in key:
        raise BadInput(f"{_show(shown)} has '//' in it; Terraform state keys never contain an empty segment")
    if key.endswith("/"):
        raise BadInput(f"{_show(shown)} ends with '/'; a state key names an object, not a folder")
    if any(segment in {".", ".."} for segment in key.split("/")):
        raise BadInput(f"{_show(shown)} has a '.' or '..' segment; Terraform state keys never contain one")
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise BadInput(f"the state key is longer than S3's limit of {MAX_KEY_BYTES} bytes")
    if key.endswith(DIGEST_SUFFIX) and len(key) > len(DIGEST_SUFFIX):
        # `<LockID>-md5` names Terraform's digest item, never a lock; its state is the name without it.
        raise BadInput(
            f"{_show(shown)} names a digest item (`-md5`), which is not a lock; "
            f"ask about {bucket}/{key.removesuffix(DIGEST_SUFFIX)} instead"
        )
    if key.endswith(LOCKFILE_SUFFIX) and len(key) > len(LOCKFILE_SUFFIX):
        key = key.removesuffix(LOCKFILE_SUFFIX)  # the lock file's key names the same state
    return StateAddress(bucket, key)


def _check_bucket(bucket: str, shown: str) -> None:
    problem = ""
    if not 3 <= len(bucket) <= 63:
        problem = "must be 3 to 63 characters long"
    elif bucket != bucket.lower() and _BUCKET_CHARS.fullmatch(bucket.lower()):
        problem = "has upper-case letters; S3 bucket names are lower-case"
    elif not _BUCKET_CHARS.fullmatch(bucket):
        problem = "may contain only lower-case letters, digits, '.' and '-'"
    elif not (bucket[0].isalnum() and bucket[-1].isalnum()):
        problem = "must begin and end with a letter or digit"
    elif ".." in bucket:
        problem = "must not contain '..'"
    elif _IPV4.fullmatch(bucket):
        problem = "must not look like an IP address"
    if problem:
        raise BadInput(f"in {_show(shown)}, the bucket {bucket[:70]!r} {problem}")


def _show(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")
