"""Inject AWS error responses into a real botocore client, through its full parsing and retry pipeline."""

from __future__ import annotations

import json
from typing import Any

from botocore.awsrequest import AWSResponse


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Any:
        yield self._body


def inject_error(client: Any, operation: str, code: str, *, status: int = 400, times: int = 1_000_000) -> list[int]:
    """Answer the next `times` calls of `operation` with AWS error `code`; returns a list counting attempts."""
    attempts: list[int] = []
    protocol = client.meta.service_model.protocol

    def handler(**_: Any) -> AWSResponse | None:
        attempts.append(1)
        if len(attempts) > times:
            return None
        if protocol == "json":
            body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}).encode()
            headers = {"x-amzn-RequestId": "test", "Content-Type": "application/x-amz-json-1.0"}
        elif protocol == "query":
            error = f"<Error><Type>Sender</Type><Code>{code}</Code><Message>{code}</Message></Error>"
            body = f"<ErrorResponse>{error}</ErrorResponse>".encode()
            headers = {"x-amzn-RequestId": "test", "Content-Type": "text/xml"}
        else:
            body = f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode()
            headers = {"x-amz-request-id": "test", "Content-Type": "application/xml"}
        return AWSResponse("https://aws.test/", status, headers, _Raw(body))

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-send.{service}.{operation}", handler)
    return attempts
