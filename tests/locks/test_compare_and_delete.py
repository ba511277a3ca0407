"""Compare-and-delete in each lock store: only the exact lock that was read, never the `-md5` digest item."""

from __future__ import annotations

import pytest

from bot.errors import AwsAccessDenied
from bot.locks.address import StateAddress
from bot.locks.aws import Removal
from bot.locks.dynamodb import LockTable, TableItemChanged
from bot.locks.lockfile import LockFileChanged, LockFiles
from tests.awsdeny import deny
from tests.conftest import BUCKET, TABLE, Aws
from tests.terraform import TerraformBackend

KEY = "network/terraform.tfstate"
ADDRESS = StateAddress(BUCKET, KEY)


def digest(aws: Aws) -> dict[str, object] | None:
    item: dict[str, object] | None = aws.dynamodb.get_item(
        TableName=TABLE, Key={"LockID": {"S": ADDRESS.digest_id}}
    ).get("Item")
    return item


def test_table_deletes_the_item_it_read_and_leaves_the_digest(tf: TerraformBackend, aws: Aws) -> None:
    tf.write_state(KEY, b'{"version":4}')
    lock = tf.lock(KEY)
    table = LockTable(aws.dynamodb, TABLE)
    before = digest(aws)
    assert table.delete_if_unchanged(ADDRESS, lock.info_json) is Removal.DELETED
    assert table.read(ADDRESS) is None
    assert digest(aws) == before is not None


def test_table_refuses_an_item_whose_info_changed(tf: TerraformBackend, aws: Aws) -> None:
    old = tf.lock(KEY)
    tf.unlock(old)
    new = tf.lock(KEY)
    table = LockTable(aws.dynamodb, TABLE)
    with pytest.raises(TableItemChanged, match="changed since it was read"):
        table.delete_if_unchanged(ADDRESS, old.info_json)
    snapshot = table.read(ADDRESS)
    assert snapshot is not None and snapshot.raw_info == new.info_json


def test_table_says_when_there_was_nothing_to_delete(tf: TerraformBackend, aws: Aws) -> None:
    lock = tf.lock(KEY)
    tf.unlock(lock)
    assert LockTable(aws.dynamodb, TABLE).delete_if_unchanged(ADDRESS, lock.info_json) is Removal.ABSENT


def test_table_compares_the_raw_string_not_the_parsed_fields(tf: TerraformBackend, aws: Aws) -> None:
    lock = tf.lock(KEY, created="2025-03-04T10:20:30.123456789Z")
    reformatted = lock.info_json.replace(".123456789Z", ".123456Z")  # what a Python re-marshal would write
    with pytest.raises(TableItemChanged):
        LockTable(aws.dynamodb, TABLE).delete_if_unchanged(ADDRESS, reformatted)


def test_table_delete_denied_names_the_permission(tf: TerraformBackend, aws: Aws) -> None:
    lock = tf.lock(KEY)
    deny(aws.dynamodb, "DeleteItem", "AccessDeniedException")
    table = LockTable(aws.dynamodb, TABLE)
    with pytest.raises(AwsAccessDenied, match=f"dynamodb:DeleteItem on table {TABLE}"):
        table.delete_if_unchanged(ADDRESS, lock.info_json)
    snapshot = table.read(ADDRESS)
    assert snapshot is not None and snapshot.raw_info == lock.info_json


def test_lockfile_delete_denied_names_the_permission(tf_file: TerraformBackend, aws: Aws) -> None:
    tf_file.lock(KEY)
    files = LockFiles(aws.s3)
    seen = files.read(ADDRESS)
    assert seen is not None and seen.etag is not None
    deny(aws.s3, "DeleteObject", "AccessDenied", status=403)
    with pytest.raises(AwsAccessDenied, match=f"s3:DeleteObject on s3://{BUCKET}/{KEY}.tflock"):
        files.delete_if_unchanged(ADDRESS, seen.etag)
    assert files.read(ADDRESS) is not None


def test_lockfile_deletes_the_object_it_read(tf_file: TerraformBackend, aws: Aws) -> None:
    tf_file.lock(KEY)
    files = LockFiles(aws.s3)
    snapshot = files.read(ADDRESS)
    assert snapshot is not None and snapshot.etag is not None
    assert files.delete_if_unchanged(ADDRESS, snapshot.etag) is Removal.DELETED
    assert files.read(ADDRESS) is None


def test_lockfile_refuses_an_object_written_since(tf_file: TerraformBackend, aws: Aws) -> None:
    old = tf_file.lock(KEY)
    files = LockFiles(aws.s3)
    seen = files.read(ADDRESS)
    assert seen is not None and seen.etag is not None
    tf_file.unlock(old)
    new = tf_file.lock(KEY)
    with pytest.raises(LockFileChanged, match="PreconditionFailed"):
        files.delete_if_unchanged(ADDRESS, seen.etag)
    now = files.read(ADDRESS)
    assert now is not None and now.raw_info == new.info_json


def test_lockfile_says_when_there_was_nothing_to_delete(tf_file: TerraformBackend, aws: Aws) -> None:
    lock = tf_file.lock(KEY)
    seen = LockFiles(aws.s3).read(ADDRESS)
    assert seen is not None and seen.etag is not None
    tf_file.unlock(lock)
    assert LockFiles(aws.s3).delete_if_unchanged(ADDRESS, seen.etag) is Removal.ABSENT


def lose_first_answer(client: object, operation: str) -> list[int]:
    """botocore's `needs-retry` hook: the first attempt succeeds in AWS, but the bot retries as if its answer
    was lost (a read timeout after the delete happened). Returns the attempts seen."""
    seen: list[int] = []

    def retry_once(attempts: int, **_: object) -> int | None:
        seen.append(attempts)
        return 0 if attempts == 1 else None  # 0 s: retry at once

    service = "dynamodb" if operation == "DeleteItem" else "s3"
    client.meta.events.register_first(f"needs-retry.{service}.{operation}", retry_once)  # type: ignore[attr-defined]
    return seen


def test_table_delete_whose_answer_was_lost_is_ours(tf: TerraformBackend, aws: Aws) -> None:
    lock = tf.lock(KEY)
    attempts = lose_first_answer(aws.dynamodb, "DeleteItem")
    assert LockTable(aws.dynamodb, TABLE).delete_if_unchanged(ADDRESS, lock.info_json) is Removal.RESPONSE_LOST
    assert attempts == [1, 2]


def test_lock_file_delete_whose_answer_was_lost_is_ours(tf_file: TerraformBackend, aws: Aws) -> None:
    tf_file.lock(KEY)
    files = LockFiles(aws.s3)
    seen = files.read(ADDRESS)
    assert seen is not None and seen.etag is not None
    attempts = lose_first_answer(aws.s3, "DeleteObject")
    assert files.delete_if_unchanged(ADDRESS, seen.etag) is Removal.RESPONSE_LOST  # the retry got NoSuchKey
    assert attempts == [1, 2]
    assert files.read(ADDRESS) is None
