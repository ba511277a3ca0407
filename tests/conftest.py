"""Shared fixtures: a clean environment, moto in-process AWS, and backends that lock the Terraform way."""

from __future__ import annotations

import os
from collections import Counter
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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--skip-slow",
        action="store_true",
        help="leave out tests marked slow (real processes, the image's pip install); CI runs everything",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--skip-slow"):
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def skip_reason(report: pytest.TestReport) -> str:
    """The reason a skip was given, without pytest's "Skipped: " prefix."""
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """One line of why tests were skipped, instead of a page of SKIPPED lines."""
    reasons = Counter(skip_reason(report) for report in terminalreporter.stats.get("skipped", []))
    parts = [f"{count} {reason}" if len(reasons) > 1 else reason for reason, count in reasons.most_common()]
    deselected = len(terminalreporter.stats.get("deselected", []))
    if deselected and config.getoption("--skip-slow"):
        parts.append(f"{deselected} slow tests deselected by --skip-slow")
    if reasons:
        terminalreporter.write_line(f"{sum(reasons.values())} skipped: " + "; ".join(parts))
    elif parts:
        terminalreporter.write_line(parts[0])


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
