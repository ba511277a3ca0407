"""Taking a hold the way Terraform takes a lock, against moto: table only, lock file only, both (with undo)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime

import pytest

from bot.errors import AwsAccessDenied
from bot.locks.address import StateAddress
from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.locks.facts import lock_facts, render_text
from bot.locks.hold import hold_stores, take_lock
from bot.locks.lockinfo import HOLD_OPERATION, hold_lock_info, parse_lock_info
from bot.locks.model import AlreadyLocked, Store
from tests.awsdeny import deny
from tests.conftest import BUCKET, TABLE, Aws, make_settings
from tests.terraform import TerraformBackend, go_json

KEY = "network/terraform.tfstate"
ADDRESS = StateAddress(BUCKET, KEY)
CREATED = datetime(2026, 3, 4, 10, 0, 0, 123456, tzinfo=UTC)


def directory_for(lockfile: str, table: bool = True) -> LockDirectory:
    env = {"TFLOCK_S3_BUCKETS": BUCKET, "TFLOCK_S3_LOCKFILE": lockfile}
    os.environ.pop("TFLOCK_DYNAMODB_TABLE", None)  # clean_environment removes what make_settings sets
    if table:
        env["TFLOCK_DYNAMODB_TABLE"] = TABLE
    return LockDirectory(load_backends(make_settings(**env)))


def hold_info(reason: str = "incident 42: <network> & DNS") -> tuple[str, str]:
    return hold_lock_info(
        ADDRESS.lock_id, by="@alice", channel="incident-42", reason=reason, version="tflock 1.0", created=CREATED
    )


def table_item(aws: Aws, lock_id: str) -> dict[str, dict[str, str]] | None:
    item: dict[str, dict[str, str]] | None = aws.dynamodb.get_item(
        TableName=TABLE, Key={"LockID": {"S": lock_id}}, ConsistentRead=True
    ).get("Item")
    return item


def lockfile_body(aws: Aws) -> bytes | None:
    try:
        return aws.s3.get_object(Bucket=BUCKET, Key=f"{KEY}.tflock")["Body"].read()  # type: ignore[no-any-return]
    except aws.s3.exceptions.NoSuchKey:
        return None


def test_the_info_is_go_json_terraform_can_parse_and_print() -> None:
    lock_id, raw = hold_info()
    data = json.loads(raw)
    assert list(data) == ["ID", "Operation", "Info", "Who", "Version", "Created", "Path"]
    assert raw == go_json(data)  # byte for byte what Go's json.Marshal writes (<>& escaped)
    assert "\\u003cnetwork\\u003e \\u0026 DNS" in raw
    assert data["ID"] == lock_id and len(lock_id) == 36
    assert data["Operation"] == HOLD_OPERATION
    assert data["Who"] == "alice (tflock hold)"
    assert data["Info"] == "held with tflock by @alice in #incident-42: incident 42: <network> & DNS"
    assert data["Created"] == "2026-03-04T10:00:00.123456Z" and data["Path"] == ADDRESS.lock_id
    hold = parse_lock_info(raw).hold
    assert hold is not None
    assert (hold.by, hold.channel, hold.reason) == ("@alice", "#incident-42", "incident 42: <network> & DNS")


def test_a_terraform_lock_is_not_a_hold(tf: TerraformBackend) -> None:
    lock = tf.lock(KEY)
    assert parse_lock_info(lock.info_json).hold is None


def test_hold_stores_follow_the_backend() -> None:
    backends = {
        "table only": (directory_for("off"), (Store.TABLE,)),
        "lock file only": (directory_for("on", table=False), (Store.LOCKFILE,)),
        "both (auto)": (directory_for("auto"), (Store.LOCKFILE, Store.TABLE)),
        "both (on)": (directory_for("on"), (Store.LOCKFILE, Store.TABLE)),
    }
    for name, (directory, expected) in backends.items():
        assert hold_stores(directory.backends.for_address(ADDRESS)) == expected, name


def test_table_only_writes_the_lock_item_and_never_the_digest(aws: Aws, tf: TerraformBackend) -> None:
    tf.write_state(KEY, b'{"serial": 1}')
    digest = table_item(aws, ADDRESS.digest_id)
    directory = directory_for("off")
    _, raw = hold_info()
    taken = take_lock(directory, ADDRESS, raw)
    assert taken.stores == (Store.TABLE,) and taken.lockfile_etag is None
    assert table_item(aws, ADDRESS.lock_id) == {"LockID": {"S": ADDRESS.lock_id}, "Info": {"S": raw}}
    assert table_item(aws, ADDRESS.digest_id) == digest
    assert lockfile_body(aws) is None
    lock = directory.read(ADDRESS)
    assert lock.hold is not None and not lock.is_stale(datetime(2030, 1, 1, tzinfo=UTC), stale_after=CREATED - CREATED)


def test_lock_file_only_writes_the_exact_bytes(aws: Aws) -> None:
    directory = directory_for("on", table=False)
    _, raw = hold_info("ünïcode reason")
    taken = take_lock(directory, ADDRESS, raw)
    assert taken.stores == (Store.LOCKFILE,)
    assert lockfile_body(aws) == raw.encode("utf-8")
    assert taken.lockfile_etag == aws.s3.head_object(Bucket=BUCKET, Key=f"{KEY}.tflock")["ETag"]
    assert table_item(aws, ADDRESS.lock_id) is None


def test_both_stores(aws: Aws) -> None:
    _, raw = hold_info()
    taken = take_lock(directory_for("auto"), ADDRESS, raw)
    assert taken.stores == (Store.LOCKFILE, Store.TABLE)
    assert lockfile_body(aws) == raw.encode()
    item = table_item(aws, ADDRESS.lock_id)
    assert item is not None and item["Info"]["S"] == raw


def test_a_terraform_lock_in_the_table_refuses_and_names_the_holder(aws: Aws, tf: TerraformBackend) -> None:
    lock = tf.lock(KEY, who="bob@ci-7")
    _, raw = hold_info()
    with pytest.raises(AlreadyLocked) as caught:
        take_lock(directory_for("off"), ADDRESS, raw)
    assert caught.value.holder is not None and caught.value.holder.raw_info == lock.info_json
    assert caught.value.holder.info is not None and caught.value.holder.info.who == "bob@ci-7"
    assert table_item(aws, ADDRESS.lock_id) == {"LockID": {"S": ADDRESS.lock_id}, "Info": {"S": lock.info_json}}


def test_a_terraform_lock_file_refuses(aws: Aws, tf_file: TerraformBackend) -> None:
    lock = tf_file.lock(KEY)
    _, raw = hold_info()
    with pytest.raises(AlreadyLocked) as caught:
        take_lock(directory_for("on", table=False), ADDRESS, raw)
    assert caught.value.holder is not None and caught.value.holder.raw_info == lock.info_json
    assert lockfile_body(aws) == lock.info_json.encode()


def test_both_stores_table_refuses_the_lock_file_is_taken_back(aws: Aws, tf: TerraformBackend) -> None:
    """An old DynamoDB-only client holds the state: the lock file written first is deleted again."""
    lock = tf.lock(KEY)
    _, raw = hold_info()
    with pytest.raises(AlreadyLocked):
        take_lock(directory_for("auto"), ADDRESS, raw)
    assert lockfile_body(aws) is None
    item = table_item(aws, ADDRESS.lock_id)
    assert item is not None and item["Info"]["S"] == lock.info_json


def test_both_stores_table_fails_the_lock_file_is_taken_back(aws: Aws) -> None:
    directory = directory_for("auto")
    backend = directory.backends.for_address(ADDRESS)
    deny(backend.clients.client("dynamodb"), "PutItem", "AccessDeniedException")
    _, raw = hold_info()
    with pytest.raises(AwsAccessDenied, match="dynamodb:PutItem"):
        take_lock(directory, ADDRESS, raw)
    assert lockfile_body(aws) is None
    assert table_item(aws, ADDRESS.lock_id) is None


def test_a_hold_is_shown_as_a_hold_and_never_stale(aws: Aws) -> None:
    directory = directory_for("auto")
    _, raw = hold_info("DNS incident")
    take_lock(directory, ADDRESS, raw)
    lock = directory.read(ADDRESS)
    long_after = datetime(2027, 1, 1, tzinfo=UTC)
    facts = lock_facts(lock, long_after, CREATED - datetime(2026, 3, 4, 9, tzinfo=UTC))
    assert not facts.stale and "stale" not in facts.verdict
    assert facts.hold is not None
    assert facts.as_json()["hold"] == {
        "by": "@alice",
        "channel": "#incident-42",
        "reason": "DNS incident",
        "since": "2026-03-04 10:00:00 UTC",
    }
    text = render_text(facts)
    assert "HOLD:" in text and "held with tflock by @alice in #incident-42 since 2026-03-04 10:00:00 UTC" in text
    assert "Reason:    DNS incident" in text


def test_a_retried_put_that_finds_its_own_bytes_has_taken_the_lock(aws: Aws) -> None:
    """botocore retries a put whose reply was lost; the retry's conflict is with the lock just written."""
    directory = directory_for("auto")
    backend = directory.backends.for_address(ADDRESS)
    table, lockfiles = directory.table(backend), directory.lockfiles(backend)
    assert table is not None and lockfiles is not None
    _, raw = hold_info()
    etag = lockfiles.put_if_absent(ADDRESS, raw)
    table.put_if_absent(ADDRESS, raw)
    assert lockfiles.put_if_absent(ADDRESS, raw) == etag  # the "retry": ours, with the ETag a release names
    table.put_if_absent(ADDRESS, raw)
    _, other = hold_info("someone else's hold")
    with pytest.raises(AlreadyLocked):
        lockfiles.put_if_absent(ADDRESS, other)
    with pytest.raises(AlreadyLocked):
        table.put_if_absent(ADDRESS, other)
    assert lockfile_body(aws) == raw.encode()
    item = table_item(aws, ADDRESS.lock_id)
    assert item is not None and item["Info"]["S"] == raw
