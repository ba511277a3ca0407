"""The demo's AWS holds what Terraform and OpenTofu would have written, and its Terraform locks like theirs."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from bot.demo import terraform, world
from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.locks.facts import lock_facts
from bot.locks.hold import take_lock
from bot.locks.lockinfo import hold_lock_info, parse_lock_info
from bot.settings import load_settings
from tests.terraform import go_json

NOW = datetime.now(UTC)


@pytest.fixture
def seeded() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name=world.REGION)
        dynamodb = boto3.client("dynamodb", region_name=world.REGION)
        world.seed(s3, dynamodb, NOW)
        yield s3, dynamodb


def _item(dynamodb: Any, lock_id: str) -> dict[str, Any] | None:
    return dynamodb.get_item(TableName=world.TABLE, Key={"LockID": {"S": lock_id}}, ConsistentRead=True).get("Item")


def test_locks_are_stored_byte_for_byte_as_terraform_writes_them(seeded: tuple[Any, Any]) -> None:
    s3, dynamodb = seeded
    network, app, dns, database, _, iam = world.STATES
    raw = _item(dynamodb, network.path)["Info"]["S"]  # type: ignore[index]
    info = parse_lock_info(raw)
    assert raw == go_json(
        {k: getattr(info, k.lower()) if k != "Created" else info.created_text for k in terraform.FIELD_ORDER}
    )
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", info.id)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d*[1-9])?Z", info.created_text)
    assert (info.operation, info.path) == ("OperationTypeApply", network.path)
    assert info.created is not None and timedelta(hours=3) < NOW - info.created < timedelta(hours=3, minutes=5)
    # The digest item holds the MD5 of the exact state bytes, and is not a lock.
    body = s3.get_object(Bucket=world.BUCKET, Key=network.address.key)["Body"].read()
    digest = _item(dynamodb, network.address.digest_id)
    assert digest == {"LockID": {"S": network.address.digest_id}, "Digest": {"S": hashlib.md5(body).hexdigest()}}  # noqa: S324
    assert app.path == "acme-tfstate/env:/staging/app/terraform.tfstate"
    assert parse_lock_info(_item(dynamodb, app.path)["Info"]["S"]).operation == "OperationTypePlan"  # type: ignore[index]
    # OpenTofu, lock file only: no table item, no digest.
    lockfile = s3.get_object(Bucket=world.BUCKET, Key=dns.address.lockfile_key)
    assert lockfile["ContentType"] == "application/json"
    assert parse_lock_info(lockfile["Body"].read().decode()).version == "1.10.6"
    assert _item(dynamodb, dns.path) is None and _item(dynamodb, dns.address.digest_id) is None
    # Both stores hold the same bytes.
    both_file = s3.get_object(Bucket=world.BUCKET, Key=database.address.lockfile_key)["Body"].read().decode()
    assert both_file == _item(dynamodb, database.path)["Info"]["S"]  # type: ignore[index]
    assert _item(dynamodb, iam.path) is None


def test_the_bot_sees_each_lock_as_described(seeded: tuple[Any, Any]) -> None:
    settings = load_settings(
        _env_file=None, TFLOCK_DYNAMODB_TABLE=world.TABLE, TFLOCK_S3_BUCKETS=[world.BUCKET], TFLOCK_S3_LOCKFILE="auto"
    )
    directory = LockDirectory(load_backends(settings))
    facts = {s.name: lock_facts(directory.status(s.path), NOW, timedelta(hours=2)) for s in world.STATES}
    assert facts["network"].stale and facts["network"].who == "runner@ci-runner-7.build.internal"
    assert not facts["app (staging)"].stale and facts["app (staging)"].workspace == "staging"
    assert facts["dns (OpenTofu)"].locked and len(facts["dns (OpenTofu)"].held_in) == 1
    assert len(facts["database"].held_in) == 2
    assert facts["legacy"].locked and facts["legacy"].lock_id is None and facts["legacy"].problems
    assert not facts["iam"].locked
    listed = directory.list_locks()
    assert not listed.problems
    assert len(listed.locks) == 5  # the -md5 digest items are not locks


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "network",
            ["ConditionalCheckFailedException: The conditional request failed", "Lock Info:", "Terraform acquires"],
        ),
        (
            "dns (OpenTofu)",
            ["operation error S3: PutObject", "StatusCode: 412", "PreconditionFailed", "OpenTofu acquires"],
        ),
        ("database", ["operation error S3: PutObject", "Who:       runner@ci-runner-2.build.internal"]),
        ("legacy", ["ConditionalCheckFailedException", "not JSON Terraform can decode"]),
    ],
)
def test_plan_on_a_locked_state_fails_as_terraform_does(
    seeded: tuple[Any, Any], name: str, expected: list[str]
) -> None:
    s3, dynamodb = seeded
    state = world.state_named(name)
    assert state is not None
    before = _item(dynamodb, state.path)
    result = terraform.plan(state.backend, s3, dynamodb, state.address, who="alice@laptop", version="1.11.4", now=NOW)
    assert not result.acquired
    assert "│ Error: Error acquiring the state lock" in result.output
    for text in expected:
        assert text in result.output
    for line in result.output.splitlines():
        assert len(line) <= terraform.WRAP + 2 or line.startswith("│   "), line  # wrapped like a 78-column terminal
    assert _item(dynamodb, state.path) == before  # the holder's lock is untouched


def test_plan_takes_and_releases_a_free_lock(seeded: tuple[Any, Any]) -> None:
    s3, dynamodb = seeded
    for state in (world.state_named("iam"), world.state_named("network")):
        assert state is not None
        if state.name == "network":
            state.backend.unlock(s3, dynamodb, state.address)  # as the bot's release leaves it
        result = terraform.plan(state.backend, s3, dynamodb, state.address, who="bob@laptop", version="1.11.4", now=NOW)
        assert result.acquired, result.output
        assert "took it" in result.output and "released again" in result.output
        assert _item(dynamodb, state.path) is None
        assert _item(dynamodb, state.address.digest_id) is not None  # the digest is never touched


def test_a_failed_table_write_gives_the_lock_file_back(seeded: tuple[Any, Any]) -> None:
    """Both configured: lock file first; when the PutItem is refused, the lock file is deleted again."""
    s3, dynamodb = seeded
    database = world.state_named("database")
    assert database is not None
    s3.delete_object(Bucket=world.BUCKET, Key=database.address.lockfile_key)  # only the table item is left
    result = terraform.plan(database.backend, s3, dynamodb, database.address, who="a@b", version="1.11.4", now=NOW)
    assert not result.acquired and "ConditionalCheckFailedException" in result.output
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=world.BUCKET, Key=database.address.lockfile_key)


def test_go_time_string() -> None:
    assert terraform.go_time_string("2025-03-04T10:20:30.123456789Z") == "2025-03-04 10:20:30.123456789 +0000 UTC"
    assert terraform.go_time(datetime(2025, 1, 15, 23, 59, 59, tzinfo=UTC)) == "2025-01-15T23:59:59Z"
    assert terraform.go_time(datetime(2025, 6, 1, 8, 0, 5, 120000, tzinfo=UTC)) == "2025-06-01T08:00:05.12Z"


def test_plan_on_a_held_state_prints_the_holds_reason(seeded: tuple[Any, Any]) -> None:
    """A `/tflock hold` in the demo: its plan fails with the reason in `Info:`, as Terraform prints it."""
    s3, dynamodb = seeded
    state = world.state_named("iam")
    assert state is not None
    settings = load_settings(
        _env_file=None, TFLOCK_DYNAMODB_TABLE=world.TABLE, TFLOCK_S3_BUCKETS=[world.BUCKET], TFLOCK_S3_LOCKFILE="auto"
    )
    directory = LockDirectory(load_backends(settings))
    _, raw = hold_lock_info(
        state.path, by="@alice", channel="incident", reason="DNS move", version="tflock 1", created=NOW
    )
    take_lock(directory, state.address, raw)
    result = terraform.plan(state.backend, s3, dynamodb, state.address, who="bob@laptop", version="1.11.4", now=NOW)
    assert not result.acquired
    assert "Operation: tflock-hold" in result.output
    assert "Who:       alice (tflock hold)" in result.output
    assert "Info:      held with tflock by @alice in #incident: DNS move" in result.output
    assert lock_facts(directory.read(state.address), NOW + timedelta(days=3), timedelta(hours=2)).stale is False
