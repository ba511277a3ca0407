"""Refuse an AWS call before it is made, so that (unlike tests/awsfaults.py under moto) nothing is changed."""

from __future__ import annotations

from typing import Any

from botocore.awsrequest import AWSResponse


def deny(client: Any, operation: str, code: str, *, status: int = 400) -> None:
    """Every later `operation` on this client fails with AWS error `code`; moto never sees the call."""

    def refuse(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        error = {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
        return AWSResponse("https://aws.test/", status, {}, None), error

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-call.{service}.{operation}", refuse)
