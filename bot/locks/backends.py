"""Which backend (table, region, role, endpoint, buckets) serves a state; read from settings or a file.

Without `TFLOCK_BACKENDS_FILE` there is one backend built from `TFLOCK_DYNAMODB_TABLE`,
`TFLOCK_S3_LOCKFILE` and `TFLOCK_S3_BUCKETS`. With it, each entry looks like (YAML or TOML):

    backends:
      - name: prod
        buckets: ["acme-prod-*", "acme-shared-tfstate"]
        dynamodb_table: terraform-locks
        region: eu-west-1
        role_arn: arn:aws:iam::123456789012:role/tflock
        endpoint_url: null
        workspace_key_prefix: "env:"
        s3_lockfile: auto
        aliases:
          prod-network: acme-prod-tfstate/network/terraform.tfstate
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bot.errors import BadInput, ConfigurationError
from bot.locks.address import DEFAULT_WORKSPACE_PREFIX, StateAddress, parse_address, validate_alias
from bot.locks.aws import AwsClients, AwsLimits
from bot.settings import Settings, SettingsError

LockfileMode = Literal["auto", "on", "off"]
_GLOB = re.compile(r"[*?\[]")


class _BackendEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    buckets: list[str] = Field(min_length=1)
    dynamodb_table: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]{2,32}$")
    role_arn: str | None = Field(default=None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9_+=,.@/-]+$")
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    workspace_key_prefix: str = DEFAULT_WORKSPACE_PREFIX
    s3_lockfile: LockfileMode | None = None
    aliases: dict[str, str] = Field(default_factory=dict)

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not re.fullmatch(r"[a-z0-9.*?\[\]!-]{1,63}", pattern):
                raise ValueError(f"{pattern!r} is not a bucket name or pattern")
        return value

    @field_validator("workspace_key_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if value.startswith("/") or value.endswith("/"):
            raise ValueError("must not start or end with '/' (Terraform rejects that too)")
        return value

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            validate_alias(name)
        return value


class _BackendsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    backends: list[_BackendEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Backend:
    name: str
    buckets: tuple[str, ...]
    table: str | None
    lockfile: LockfileMode
    region: str | None = None
    endpoint_url: str | None = None
    role_arn: str | None = None
    workspace_key_prefix: str = DEFAULT_WORKSPACE_PREFIX
    limits: AwsLimits = field(default_factory=AwsLimits, compare=False)
    from_file: bool = False  # named in TFLOCK_BACKENDS_FILE rather than built from TFLOCK_* variables
    clients: AwsClients = field(compare=False, repr=False, default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.clients is None:
            clients = AwsClients(self.region, self.endpoint_url, self.role_arn, self.limits)
            object.__setattr__(self, "clients", clients)

    @property
    def table_may_hold(self) -> bool:
        """Can a DynamoDB item hold this backend's locks? Yes unless it has no table and says lock files
        are its only store (`s3_lockfile: on`): an unset table is not proof that no table is in use."""
        return self.table is not None or self.lockfile != "on"

    @property
    def no_table_reason(self) -> str:
        if self.from_file:
            return (
                f"no dynamodb_table configured for backend {self.name} in TFLOCK_BACKENDS_FILE "
                "(add it, or set s3_lockfile: on if this backend uses lock files only)"
            )
        return (
            "no table configured for this backend (TFLOCK_DYNAMODB_TABLE; "
            "or set TFLOCK_S3_LOCKFILE=on if it uses lock files only)"
        )

    def serves(self, bucket: str) -> bool:
        return any(fnmatch.fnmatchcase(bucket, pattern) for pattern in self.buckets)

    @property
    def named_buckets(self) -> tuple[str, ...]:
        return tuple(b for b in self.buckets if not _GLOB.search(b))

    @property
    def bucket_patterns(self) -> tuple[str, ...]:
        return tuple(b for b in self.buckets if _GLOB.search(b))


@dataclass(frozen=True)
class BackendSet:
    backends: tuple[Backend, ...]
    aliases: dict[str, StateAddress]

    def for_address(self, address: StateAddress) -> Backend:
        for backend in self.backends:
            if backend.serves(address.bucket):
                return backend
        patterns = ", ".join(p for b in self.backends for p in b.buckets)
        raise BadInput(
            f"bucket {address.bucket!r} is not served by any configured backend (buckets: {patterns}); "
            "add it to TFLOCK_BACKENDS_FILE or TFLOCK_S3_BUCKETS"
        )


def load_backends(settings: Settings) -> BackendSet:
    """The configured backends; a broken backends file raises SettingsError naming the variable."""
    if settings.backends_file is None:
        lockfile: LockfileMode = settings.s3_lockfile
        if settings.dynamodb_table is None and lockfile == "off":
            raise SettingsError(
                "TFLOCK_DYNAMODB_TABLE: not set and TFLOCK_S3_LOCKFILE=off, so there is nowhere to look for locks"
            )
        backend = Backend(
            name="default",
            buckets=tuple(settings.s3_buckets) or ("*",),
            table=settings.dynamodb_table,
            lockfile=lockfile,
            limits=aws_limits(settings),
        )
        return BackendSet((backend,), {})
    return _from_file(settings.backends_file, settings.s3_lockfile, aws_limits(settings))


def aws_limits(settings: Settings) -> AwsLimits:
    return AwsLimits(
        connect_timeout=settings.aws_connect_timeout.total_seconds(),
        read_timeout=settings.aws_read_timeout.total_seconds(),
        max_attempts=settings.aws_max_attempts,
        concurrency=settings.backend_concurrency,
    )


def _from_file(path: Path, default_lockfile: LockfileMode, limits: AwsLimits) -> BackendSet:
    variable = "TFLOCK_BACKENDS_FILE"
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = tomllib.loads(text) if path.suffix.lower() == ".toml" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SettingsError(f"{variable}: cannot read {str(path)!r}: {detail}") from None
    try:
        parsed = _BackendsFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{variable}: {where}: {message}") from None
    backends: list[Backend] = []
    aliases: dict[str, StateAddress] = {}
    for entry in parsed.backends:
        lockfile = entry.s3_lockfile or default_lockfile
        if entry.dynamodb_table is None and lockfile == "off":
            raise SettingsError(f"{variable}: backend {entry.name!r} has no dynamodb_table and s3_lockfile off")
        if any(b.name == entry.name for b in backends):
            raise SettingsError(f"{variable}: backend name {entry.name!r} is used twice")
        backends.append(
            Backend(
                name=entry.name,
                buckets=tuple(entry.buckets),
                table=entry.dynamodb_table,
                lockfile=lockfile,
                region=entry.region,
                endpoint_url=entry.endpoint_url,
                role_arn=entry.role_arn,
                workspace_key_prefix=entry.workspace_key_prefix,
                limits=limits,
                from_file=True,
            )
        )
        for alias, target in entry.aliases.items():
            if alias in aliases:
                raise SettingsError(f"{variable}: alias {alias!r} is defined twice")
            try:
                aliases[alias] = parse_address(target)
            except BadInput as exc:
                raise SettingsError(f"{variable}: alias {alias!r}: {exc}") from None
    result = BackendSet(tuple(backends), aliases)
    for alias, address in aliases.items():
        try:
            result.for_address(address)
        except BadInput:
            raise SettingsError(
                f"{variable}: alias {alias!r} points at bucket {address.bucket!r}, which no backend serves"
            ) from None
    if not backends:
        raise ConfigurationError(f"{variable}: lists no backends")
    return result
