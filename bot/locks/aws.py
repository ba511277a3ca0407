"""boto3 sessions per backend (optionally through an assumed role) and AWS errors people can act on."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import DeferredRefreshableCredentials
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from bot.errors import AwsAccessDenied, AwsFailure, ConfigurationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AwsLimits:
    """How long an AWS call may take and how many run at once per backend (TFLOCK_AWS_*, TFLOCK_BACKEND_*).

    The defaults fit inside Slack's patience: a person waits at most about connect + read timeout per
    attempt, and throttling is still retried by botocore's "standard" mode with jittered backoff.
    """

    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    max_attempts: int = 2
    concurrency: int = 4  # AWS look-ups in flight per backend
    slot_wait: float = 1.0  # how long a look-up waits for one of those before it is answered "busy"

    def botocore_config(self) -> Config:
        return Config(
            retries={"mode": "standard", "max_attempts": self.max_attempts},
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            max_pool_connections=64,  # 32 lock-file reads + 4 Scan segments + look-ups, per client
            tcp_keepalive=True,
        )


# The IAM action behind each API operation the bot calls (ListObjectsV2 is authorised as ListBucket).
PERMISSIONS = {
    "GetItem": "dynamodb:GetItem",
    "Scan": "dynamodb:Scan",
    "DeleteItem": "dynamodb:DeleteItem",
    "PutItem": "dynamodb:PutItem",
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "DeleteObject": "s3:DeleteObject",
    "PutObject": "s3:PutObject",
    "ListObjectsV2": "s3:ListBucket",
    "ListBuckets": "s3:ListAllMyBuckets",
    "AssumeRole": "sts:AssumeRole",
}
_DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AllAccessDisabled"}
_NOT_FOUND = {"ResourceNotFoundException": "does not exist", "NoSuchBucket": "does not exist"}
_CREDENTIALS = {
    "ExpiredToken",
    "ExpiredTokenException",
    "InvalidClientTokenId",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
}
ERROR_HOOK: Callable[[str], None] | None = None  # set by the web layer to count AWS errors


class Removal(StrEnum):
    """How a conditional delete of a lock ended."""

    DELETED = "deleted"
    # botocore retried the delete (a timeout, a 5xx) and the retry found nothing there: the first attempt
    # most likely deleted it and its answer was lost on the way back.
    RESPONSE_LOST = "response lost, confirmed gone"
    ABSENT = "absent"  # there was nothing to delete on the first attempt


def gone(response: Mapping[str, Any]) -> Removal:
    """Nothing to delete: absent, or — if botocore retried the call — deleted by the attempt whose answer was lost."""
    retries = (response.get("ResponseMetadata") or {}).get("RetryAttempts") or 0
    return Removal.RESPONSE_LOST if retries > 0 else Removal.ABSENT


@contextmanager
def aws_errors(resource: str, role_arn: str | None = None) -> Iterator[None]:
    """Turn botocore exceptions into AwsAccessDenied / AwsFailure that say what was refused, on what."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        operation = exc.operation_name
        permission = PERMISSIONS.get(operation, operation)
        _count(code)
        if code in _DENIED:
            target = f"role {role_arn}" if operation == "AssumeRole" and role_arn else resource
            raise AwsAccessDenied(permission, target) from None
        if code in _NOT_FOUND:
            raise AwsFailure(f"{resource} {_NOT_FOUND[code]} (AWS said {code} to {operation})") from None
        if code in _CREDENTIALS:
            raise AwsFailure(f"the bot's AWS credentials were refused ({code}) calling {operation}") from None
        message = str(error.get("Message", "")) or code
        raise AwsFailure(f"AWS {operation} on {resource} failed after retries: {code}: {message}") from None
    except NoCredentialsError:
        _count("NoCredentials")
        raise AwsFailure("no AWS credentials found for the bot (environment, profile or role)") from None
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        _count("Connection")
        raise AwsFailure(f"could not reach AWS for {resource}: {exc}") from None
    except BotoCoreError as exc:
        _count(type(exc).__name__)
        raise AwsFailure(f"AWS call for {resource} failed: {exc}") from None


def _count(code: str) -> None:
    if ERROR_HOOK is not None:
        ERROR_HOOK(code)


class AwsClients:
    """Lazily built, thread-safe boto3 clients for one backend (region, endpoint, optional role)."""

    def __init__(
        self, region: str | None, endpoint_url: str | None, role_arn: str | None, limits: AwsLimits | None = None
    ) -> None:
        # AWS_REGION is what the other AWS SDKs and Lambda use; botocore itself reads AWS_DEFAULT_REGION.
        self.region = region or os.environ.get("AWS_REGION") or None
        self.endpoint_url = endpoint_url
        self.role_arn = role_arn
        self.config = (limits or AwsLimits()).botocore_config()
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._session: boto3.Session | None = None
        self.sts: Any = None  # the client that assumes role_arn, when there is one
        self.in_flight = InFlight()

    def client(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                try:
                    client = self._make_session().client(
                        service,  # type: ignore[call-overload]
                        region_name=self.region,
                        endpoint_url=self.endpoint_url,
                        config=self.config,
                    )
                    self.in_flight.watch(client)
                    self._clients[service] = client
                except NoRegionError:
                    raise ConfigurationError(
                        "no AWS region is set: set AWS_REGION, or region: for this backend in TFLOCK_BACKENDS_FILE"
                    ) from None
            return self._clients[service]

    def _make_session(self) -> boto3.Session:
        if self._session is not None:
            return self._session
        base = boto3.Session(region_name=self.region)
        if not self.role_arn:
            self._session = base
            return base
        sts = self.sts = base.client("sts", region_name=self.region, endpoint_url=self.endpoint_url, config=self.config)
        role_arn = self.role_arn

        def refresh() -> dict[str, str]:
            creds = sts.assume_role(RoleArn=role_arn, RoleSessionName="tflock")["Credentials"]
            return {
                "access_key": creds["AccessKeyId"],
                "secret_key": creds["SecretAccessKey"],
                "token": creds["SessionToken"],
                "expiry_time": creds["Expiration"].isoformat(),
            }

        core = botocore.session.get_session()
        # Deferred: the first AWS call assumes the role, so a refusal surfaces as sts:AssumeRole there.
        credentials = DeferredRefreshableCredentials(refresh_using=refresh, method="sts-assume-role")
        core._credentials = credentials  # type: ignore[attr-defined]  # botocore's documented hook point
        self._session = boto3.Session(botocore_session=core, region_name=self.region)
        return self._session


class InFlight:
    """The AWS calls running now, so a terminal can say what it is waiting for when a call is slow."""

    def __init__(self) -> None:
        self._calls: dict[int, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def watch(self, client: Any) -> None:
        service = client.meta.service_model.service_id
        client.meta.events.register("before-call", lambda model, **_: self._start(f"{service} {model.name}"))
        client.meta.events.register("after-call", lambda **_: self._end())
        client.meta.events.register("after-call-error", lambda **_: self._end())

    def _start(self, what: str) -> None:
        with self._lock:
            self._calls[threading.get_ident()] = (what, time.monotonic())

    def _end(self) -> None:
        with self._lock:
            self._calls.pop(threading.get_ident(), None)

    def slowest(self) -> tuple[str, float] | None:
        """The call that has been running longest: (what, seconds)."""
        with self._lock:
            calls = list(self._calls.values())
        if not calls:
            return None
        what, started = min(calls, key=lambda call: call[1])
        return what, time.monotonic() - started
