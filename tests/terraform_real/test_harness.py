"""The harness itself: Terraform reaches moto and nothing else."""

from __future__ import annotations

import socket

import pytest

from tests.terraform_real.conftest import Backend
from tests.terraform_real.harness import PROXY_VARIABLES, Egress, Terraform, missing_tools

pytestmark = [
    pytest.mark.slow,
    pytest.mark.terraform,
    pytest.mark.skipif(bool(missing_tools()), reason=str(missing_tools())),
]


def test_terraform_plans_against_moto_through_the_proxy_only(terraform: Terraform, backend: Backend) -> None:
    assert set(terraform.env) >= {"HTTPS_PROXY", "HTTP_PROXY", "AWS_CA_BUNDLE", "CHECKPOINT_DISABLE"}
    proxies = {name: value for name, value in terraform.env.items() if name.lower().endswith("_proxy")}
    assert proxies == {
        **dict.fromkeys(PROXY_VARIABLES, backend.egress.url),
        **dict.fromkeys(("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"), ""),
    }
    backend.egress.forget()
    result = terraform.plan()
    assert result.returncode == 0, result.output
    assert "No changes. Infrastructure is up-to-date." in result.output
    assert backend.lock_item() is None  # taken and released again
    # Terraform's own calls went through the proxy to moto: the lock table, the state bucket, IAM for the account.
    assert backend.egress.hosts() == {
        "dynamodb.eu-west-1.amazonaws.com",
        f"{backend.bucket}.s3.eu-west-1.amazonaws.com",
        "iam.amazonaws.com",
    }


def test_the_egress_proxy_refuses_everything_but_aws_and_loopback(egress: Egress) -> None:
    outside = (b"CONNECT example.com:443 HTTP/1.1\r\n\r\n", b"GET http://169.254.169.254/latest/ HTTP/1.1\r\n\r\n")
    for request in outside:
        with socket.create_connection(("127.0.0.1", egress.port)) as sock:
            sock.sendall(request)
            assert sock.recv(100).startswith(b"HTTP/1.1 403")
    assert egress.refused == ["example.com:443", "GET http://169.254.169.254/latest/"]
    egress.forget()


def test_terraform_sent_anywhere_else_is_stopped_at_the_door(terraform: Terraform, backend: Backend) -> None:
    """An S3 endpoint outside AWS: Terraform still goes through the proxy, which refuses it."""
    try:
        result = terraform.run(
            "init", "-input=false", "-no-color", "-reconfigure", *terraform.backend_config(),
            "-backend-config=endpoint=https://state.example.com",
        )  # fmt: skip
        assert result.returncode != 0
        assert "Forbidden" in result.output, result.output
        assert set(backend.egress.refused) == {f"{backend.bucket}.state.example.com:443"}
    finally:
        backend.egress.forget()  # refused on purpose: the fixture's check is for everything else
