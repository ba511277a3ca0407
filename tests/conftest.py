"""Shared fixtures: a clean environment, moto in-process AWS, and backends that lock the Terraform way."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.settings import Settings, load_settings
from tests.fakeslack import FakeSlack
from tests.terraform import TerraformBackend, create_bucket, create_table

REGION = "eu-west-1"
BUCKET = "acme-tfstate"
TABLE = "terraform-locks"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test sees the developer's Slack, tflock or AWS settings, or a stray `.env`."""
    for name in list(os.environ):
        if name.startswith(("TFLOCK_", "SLACK_", "AWS_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@dataclass
class Aws:
    dynamodb: Any
    s3: Any
    sts: Any


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        clients = Aws(
            dynamodb=boto3.client("dynamodb", region_name=REGION),
            s3=boto3.client("s3", region_name=REGION),
            sts=boto3.client("sts", region_name=REGION),
        )
        create_table(clients.dynamodb, TABLE)
        create_bucket(clients.s3, BUCKET)
        yield clients


@pytest.fixture
def tf(aws: Aws) -> TerraformBackend:
    """`backend "s3" { bucket = acme-tfstate, dynamodb_table = terraform-locks }`"""
    return TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE)


@pytest.fixture
def tf_file(aws: Aws) -> TerraformBackend:
    """`use_lockfile = true` only (Terraform ≥ 1.11 default advice)."""
    return TerraformBackend(aws.s3, None, BUCKET, None, use_lockfile=True)


@pytest.fixture
def tf_both(aws: Aws) -> TerraformBackend:
    """Both `dynamodb_table` and `use_lockfile`: double locking."""
    return TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE, use_lockfile=True)


def make_settings(**env: str) -> Settings:
    for name, value in env.items():
        os.environ[name] = value
    return load_settings()


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("TFLOCK_DYNAMODB_TABLE", TABLE)
    monkeypatch.setenv("TFLOCK_S3_BUCKETS", BUCKET)
    return load_settings()


@pytest.fixture
def directory(aws: Aws, settings: Settings) -> LockDirectory:
    return LockDirectory(load_backends(settings))


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    """The local HTTP server playing Slack's Web API and response_url (SLACK_API_URL points at it)."""
    fake = FakeSlack().start()
    yield fake
    fake.stop()
