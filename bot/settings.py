"""Configuration, validated at start (docs/design.md §5): environment variables and an optional `.env`.

A bad value stops the process with one line naming the variable — `SettingsError` carries that line.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.durations import parse_duration

DEFAULT_SLACK_API_URL = "https://slack.com/api/"

_USER_OR_GROUP = re.compile(r"[UWS][A-Z0-9]{2,20}")
_CHANNEL = re.compile(r"[CGD][A-Z0-9]{2,20}")
_BUCKET_PATTERN = re.compile(r"[a-z0-9.*?\[\]!-]{1,63}")


class SettingsError(Exception):
    """A setting is missing or malformed; the message is one line naming the variable."""


def _split_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item for item in re.split(r"[\s,]+", value.strip()) if item]
    return value


def _ids(value: list[str], pattern: re.Pattern[str], what: str) -> list[str]:
    for item in value:
        if not pattern.fullmatch(item):
            raise ValueError(f"{item!r} is not a Slack {what} ID")
    return value


Duration = Annotated[timedelta, Field()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True)

    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_api_url: str = Field(default=DEFAULT_SLACK_API_URL, validation_alias="SLACK_API_URL")

    database_url: str = Field(default="sqlite:///./tflock.db", validation_alias="TFLOCK_DATABASE_URL")
    migration_database_url: str | None = Field(default=None, validation_alias="TFLOCK_MIGRATION_DATABASE_URL")
    dynamodb_table: str | None = Field(default=None, validation_alias="TFLOCK_DYNAMODB_TABLE")
    s3_lockfile: Literal["auto", "on", "off"] = Field(default="auto", validation_alias="TFLOCK_S3_LOCKFILE")
    s3_buckets: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias="TFLOCK_S3_BUCKETS")
    backends_file: Path | None = Field(default=None, validation_alias="TFLOCK_BACKENDS_FILE")

    approvers: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias="TFLOCK_APPROVERS")
    auditors: Annotated[list[str], NoDecode] = Field(default_factory=list, validation_alias="TFLOCK_AUDITORS")
    approvals_required: int = Field(default=1, ge=1, le=10, validation_alias="TFLOCK_APPROVALS_REQUIRED")
    request_ttl: timedelta = Field(default=timedelta(minutes=30), validation_alias="TFLOCK_REQUEST_TTL")
    stale_after: timedelta = Field(default=timedelta(hours=2), validation_alias="TFLOCK_STALE_AFTER")
    allowed_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="TFLOCK_ALLOWED_CHANNELS"
    )
    port: int = Field(default=3000, ge=1, le=65535, validation_alias="TFLOCK_PORT")

    watch_channel: str | None = Field(default=None, validation_alias="TFLOCK_WATCH_CHANNEL")
    watch_interval: timedelta = Field(default=timedelta(minutes=5), validation_alias="TFLOCK_WATCH_INTERVAL")
    watch_remind_after: timedelta = Field(default=timedelta(hours=4), validation_alias="TFLOCK_WATCH_REMIND_AFTER")
    hold_remind_after: timedelta = Field(default=timedelta(hours=4), validation_alias="TFLOCK_HOLD_REMIND_AFTER")

    # Faults: nothing waits without a timeout and every queue has a bound.
    aws_connect_timeout: timedelta = Field(default=timedelta(seconds=2), validation_alias="TFLOCK_AWS_CONNECT_TIMEOUT")
    aws_read_timeout: timedelta = Field(default=timedelta(seconds=5), validation_alias="TFLOCK_AWS_READ_TIMEOUT")
    aws_max_attempts: int = Field(default=2, ge=1, le=10, validation_alias="TFLOCK_AWS_MAX_ATTEMPTS")
    backend_concurrency: int = Field(default=4, ge=1, le=64, validation_alias="TFLOCK_BACKEND_CONCURRENCY")
    lookup_queue: int = Field(default=32, ge=1, le=10_000, validation_alias="TFLOCK_LOOKUP_QUEUE")
    click_queue: int = Field(default=64, ge=1, le=10_000, validation_alias="TFLOCK_CLICK_QUEUE")
    db_connect_timeout: timedelta = Field(default=timedelta(seconds=3), validation_alias="TFLOCK_DB_CONNECT_TIMEOUT")
    db_statement_timeout: timedelta = Field(
        default=timedelta(seconds=10), validation_alias="TFLOCK_DB_STATEMENT_TIMEOUT"
    )
    log_format: Literal["text", "json"] = Field(default="text", validation_alias="TFLOCK_LOG_FORMAT")

    @field_validator(
        "slack_bot_token", "slack_signing_secret", "slack_app_token", "migration_database_url", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # A Kubernetes Secret with an empty key yields "": that is a missing value, not a credential.
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xoxb-"):
            raise ValueError("is not a bot token (they start with xoxb-)")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("xapp-"):
            raise ValueError("is not an app-level token (they start with xapp-)")
        return value

    @field_validator(
        "request_ttl",
        "stale_after",
        "watch_interval",
        "watch_remind_after",
        "hold_remind_after",
        "aws_connect_timeout",
        "aws_read_timeout",
        "db_connect_timeout",
        "db_statement_timeout",
        mode="before",
    )
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_duration(value)
        return value

    @field_validator("approvers", "auditors", "allowed_channels", "s3_buckets", mode="before")
    @classmethod
    def _list(cls, value: Any) -> Any:
        return _split_list(value)

    @field_validator("approvers", "auditors")
    @classmethod
    def _user_ids(cls, value: list[str]) -> list[str]:
        return _ids(value, _USER_OR_GROUP, "user (U…/W…) or user-group (S…)")

    @field_validator("allowed_channels")
    @classmethod
    def _channel_ids(cls, value: list[str]) -> list[str]:
        return _ids(value, _CHANNEL, "channel (C…/G…)")

    @field_validator("watch_channel")
    @classmethod
    def _watch_channel(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip() or None
        if value is not None:
            _ids([value], _CHANNEL, "channel (C…/G…)")
        return value

    @field_validator("s3_buckets")
    @classmethod
    def _buckets(cls, value: list[str]) -> list[str]:
        for item in value:
            if not _BUCKET_PATTERN.fullmatch(item):
                raise ValueError(f"{item!r} is not an S3 bucket name or pattern")
        return value

    @field_validator("dynamodb_table")
    @classmethod
    def _table(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9_.-]{3,255}", value):
            raise ValueError(f"{value!r} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)")
        return value or None

    @field_validator("database_url", "migration_database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from sqlalchemy.engine import make_url  # noqa: PLC0415 (keeps `status`/`list` start-up light)
        from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

        try:
            make_url(value)
        except ArgumentError:
            raise ValueError("is not an SQLAlchemy database URL (e.g. postgresql+psycopg://host/db)") from None
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        if not re.match(r"https?://[^\s/]+", value):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value if value.endswith("/") else value + "/"

    @field_validator("backends_file")
    @classmethod
    def _backends_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{str(value)!r} does not exist or is not a file")
        return value

    @property
    def migrates_with(self) -> str:
        """The URL migrations run with: the owner role's when TFLOCK_MIGRATION_DATABASE_URL is set."""
        return self.migration_database_url or self.database_url

    @property
    def socket_mode(self) -> bool:
        return self.slack_app_token is not None

    @property
    def effective_auditors(self) -> list[str]:
        return self.auditors or self.approvers

    def require_for_serve(self) -> None:
        """`serve` needs Slack credentials; the other commands do not."""
        if self.slack_bot_token is None:
            raise SettingsError("SLACK_BOT_TOKEN: required for serve (the bot token, xoxb-…)")
        if not self.socket_mode and self.slack_signing_secret is None:
            raise SettingsError(
                "SLACK_SIGNING_SECRET: required in HTTP mode (set SLACK_APP_TOKEN for Socket Mode instead)"
            )


def _field_variable(loc: tuple[int | str, ...]) -> str:
    name = str(loc[0]) if loc else "settings"
    field = Settings.model_fields.get(name)
    if field is not None and isinstance(field.validation_alias, str):
        return field.validation_alias
    return name


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, turning validation errors into one SettingsError line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = str(first["msg"]).removeprefix("Value error, ")
        raise SettingsError(f"{_field_variable(first['loc'])}: {message}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
