"""Fixtures for the real-Terraform stories: moto's proxy, the egress proxy, the backend and an init-ed Terraform."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BUCKET, TABLE
from tests.database import database_url  # noqa: F401  (a fixture: SQLite, and PostgreSQL when configured)
from tests.terraform_real.harness import (
    AWS_HOST,
    LOOPBACK_HOSTS,
    Egress,
    MotoProxy,
    Terraform,
    aws_clients,
    create_backend,
    missing_tools,
    proxied_env,
)

KEY = "network/terraform.tfstate"


@pytest.fixture(scope="session")
def moto_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoProxy]:
    reason = missing_tools()
    if reason:
        pytest.skip(reason)
    proxy = MotoProxy(tmp_path_factory.mktemp("moto_proxy") / "moto_proxy.log")
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def egress(moto_proxy: MotoProxy) -> Iterator[Egress]:
    door = Egress(moto_proxy.port).start()
    yield door
    door.stop()


@dataclass
class Backend:
    """The S3 backend's bucket and lock table in moto, and clients that reach them through the proxy."""

    dynamodb: Any
    s3: Any
    bucket: str
    table: str
    egress: Egress

    def lock_item(self, key: str = KEY) -> dict[str, Any] | None:
        return self.dynamodb.get_item(  # type: ignore[no-any-return]
            TableName=self.table, Key={"LockID": {"S": f"{self.bucket}/{key}"}}, ConsistentRead=True
        ).get("Item")

    def bot_env(self) -> dict[str, str]:
        """`tflock-bot`'s environment: AWS through the proxy, configured for this backend."""
        return {**proxied_env(self.egress), "TFLOCK_DYNAMODB_TABLE": self.table, "TFLOCK_S3_BUCKETS": self.bucket}


@pytest.fixture
def backend(moto_proxy: MotoProxy, egress: Egress) -> Iterator[Backend]:
    """A fresh moto with the bucket and the lock table; afterwards, proof that nothing left loopback."""
    moto_proxy.reset()
    egress.forget()
    dynamodb, s3 = aws_clients(egress)
    create_backend(dynamodb, s3, BUCKET, TABLE)
    yield Backend(dynamodb, s3, BUCKET, TABLE, egress)
    assert egress.refused == [], f"something tried to leave 127.0.0.0/8: {egress.refused}"
    strangers = {h for h in egress.hosts() if not (AWS_HOST.match(h) or h in LOOPBACK_HOSTS)}
    assert not strangers, strangers


@pytest.fixture
def terraform(backend: Backend, tmp_path: Path) -> Terraform:
    """`terraform init` done in a fresh directory, the S3 backend pointing at the bucket and table above."""
    tf = Terraform(tmp_path / "terraform", backend.egress, backend.bucket, KEY, backend.table)
    tf.init()
    return tf
