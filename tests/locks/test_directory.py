"""Reading locks written the Terraform/OpenTofu way, from moto in-process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.errors import BadInput, LockNotFound
from bot.locks.address import StateAddress
from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.locks.facts import lock_facts
from bot.locks.model import Answer, Store
from bot.settings import load_settings
from tests.awsfaults import inject_error
from tests.conftest import BUCKET, TABLE, Aws
from tests.terraform import OPERATIONS, TerraformBackend, ago, create_bucket, create_table, go_time

KEY = "network/terraform.tfstate"
NOW = datetime.now(UTC)


def test_table_lock_shows_every_fact(tf: TerraformBackend, directory: LockDirectory) -> None:
    lock = tf.lock(
        KEY, operation="OperationTypePlan", who="alice@build-agent-07", version="1.9.8", created=ago(hours=3, minutes=7)
    )
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.held and state.lockfile is None
    assert state.table is not None and state.table.raw_info == lock.info_json  # byte-exact
    facts = lock_facts(state, datetime.now(UTC), timedelta(hours=2))
    assert facts.lock_id == lock.id
    assert facts.who == "alice@build-agent-07"
    assert facts.operation == "plan"
    assert facts.version == "1.9.8"
    assert facts.age == "3h 7m"
    assert facts.stale and facts.verdict.startswith("probably stale")
    assert facts.held_in == (f"DynamoDB table {TABLE}",)


def test_recent_lock_is_not_stale(tf: TerraformBackend, directory: LockDirectory) -> None:
    tf.lock(KEY, created=ago(minutes=5))
    facts = lock_facts(directory.status(f"s3://{BUCKET}/{KEY}"), datetime.now(UTC), timedelta(hours=2))
    assert not facts.stale
    assert facts.verdict == "recent — an active run may hold it"


def test_lockfile_lock_keeps_etag(tf_file: TerraformBackend, directory: LockDirectory, aws: Aws) -> None:
    lock = tf_file.lock(KEY, operation="OperationTypeApply", who="bob@laptop")
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.table is None and state.lockfile is not None
    head = aws.s3.head_object(Bucket=BUCKET, Key=f"{KEY}.tflock")
    assert state.lockfile.etag == head["ETag"]
    assert state.lockfile.raw_info == lock.info_json
    assert state.lockfile.location == f"s3://{BUCKET}/{KEY}.tflock"
    assert state.info is not None and state.info.id == lock.id


def test_workspace_lock_default_and_custom_prefix(tf: TerraformBackend, directory: LockDirectory) -> None:
    lock = tf.lock(KEY, workspace="staging")
    state = directory.status(f"{BUCKET}/env:/staging/{KEY}")
    assert state.workspace == "staging" and state.info is not None and state.info.id == lock.id
    assert state.info.path == f"{BUCKET}/env:/staging/{KEY}"
    assert not directory.status(f"{BUCKET}/{KEY}").held  # the default workspace is free


def test_workspace_with_custom_prefix(aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tf = TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE, workspace_key_prefix="workspaces")
    lock = tf.lock(KEY, workspace="prod")
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        f"backends:\n  - name: main\n    buckets: [{BUCKET}]\n    dynamodb_table: {TABLE}\n"
        "    workspace_key_prefix: workspaces\n    aliases:\n"
        "      prod-net: acme-tfstate/workspaces/prod/network/terraform.tfstate\n"
    )
    monkeypatch.setenv("TFLOCK_BACKENDS_FILE", str(backends))
    directory = LockDirectory(load_backends(load_settings()))
    state = directory.status("prod-net")
    assert state.workspace == "prod" and state.info is not None and state.info.id == lock.id


def test_opentofu_lock(tf: TerraformBackend, directory: LockDirectory) -> None:
    lock = tf.lock(KEY, version="1.10.6", operation="OperationTypeApply", who="ci@runner-7")
    facts = lock_facts(directory.status(f"{BUCKET}/{KEY}"), NOW, timedelta(hours=2))
    assert (facts.version, facts.lock_id) == ("1.10.6", lock.id)


def test_both_stores_one_view(tf_both: TerraformBackend, directory: LockDirectory) -> None:
    lock = tf_both.lock(KEY)
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.table is not None and state.lockfile is not None
    assert state.lock_ids == (lock.id,) and not state.stores_disagree
    facts = lock_facts(state, NOW, timedelta(hours=2))
    assert facts.held_in == (f"DynamoDB table {TABLE}", f"lock file s3://{BUCKET}/{KEY}.tflock")


def test_stores_that_disagree_are_reported(tf_both: TerraformBackend, aws: Aws, directory: LockDirectory) -> None:
    tf_file = TerraformBackend(aws.s3, None, BUCKET, None, use_lockfile=True)
    tf_table = TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE)
    first, second = tf_file.lock(KEY), tf_table.lock(KEY)
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.stores_disagree
    facts = lock_facts(state, NOW, timedelta(hours=2))
    assert any(first.id in p and second.id in p for p in facts.problems)


def test_digest_only_state_is_not_locked(tf: TerraformBackend, directory: LockDirectory) -> None:
    tf.write_state(KEY, b'{"version":4}')
    assert not directory.status(f"{BUCKET}/{KEY}").held
    lock = tf.lock(KEY)
    tf.unlock(lock)
    assert not directory.status(f"{BUCKET}/{KEY}").held
    assert directory.list_locks().locks == ()


def test_list_never_shows_digest_items(tf_both: TerraformBackend, directory: LockDirectory) -> None:
    held = {}
    for index, operation in enumerate(OPERATIONS):
        key = f"svc-{index}/terraform.tfstate"
        tf_both.write_state(key, f"state {index}".encode())
        held[key] = tf_both.lock(key, operation=operation, created=ago(hours=index))
    listing = directory.list_locks()
    assert listing.problems == ()
    assert [lock.address.key for lock in listing.locks] == [
        f"svc-{i}/terraform.tfstate" for i in reversed(range(len(OPERATIONS)))
    ]
    for state in listing.locks:
        assert not state.address.key.endswith("-md5")
        assert state.table is not None and state.lockfile is not None
        assert state.info is not None and state.info.id == held[state.address.key].id


def test_key_that_itself_ends_in_md5_is_still_a_lock(tf: TerraformBackend, directory: LockDirectory) -> None:
    tf.write_state("app-md5", b"x")
    lock = tf.lock("app-md5")
    assert [s.info.id for s in directory.list_locks().locks if s.info] == [lock.id]


def test_malformed_info_is_unreadable_not_a_crash(tf: TerraformBackend, directory: LockDirectory) -> None:
    address = StateAddress(BUCKET, KEY)
    tf.put_raw_table_item(address, {"Info": {"S": '{"ID": "abc", "Who": '}})
    state = directory.status(str(address))
    assert state.held and state.info is None
    facts = lock_facts(state, NOW, timedelta(hours=2))
    assert facts.problems[0].startswith("unreadable lock info: not JSON")
    assert facts.raw_info == ('{"ID": "abc", "Who": ',)
    assert facts.verdict.startswith("age unknown")


def test_item_without_info_still_blocks_and_is_shown(tf: TerraformBackend, directory: LockDirectory) -> None:
    tf.put_raw_table_item(StateAddress(BUCKET, KEY), {"Note": {"S": "hand-made"}})
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.held
    assert state.table is not None and state.table.info_error == "unreadable lock info: the item has no Info attribute"


def test_lockfile_with_binary_body(aws: Aws, directory: LockDirectory) -> None:
    aws.s3.put_object(Bucket=BUCKET, Key=f"{KEY}.tflock", Body=b"\xff\xfe\x00junk")
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.held and state.lockfile is not None
    assert state.lockfile.info_error == "unreadable lock info: the lock file is not UTF-8 text"
    assert state.created is not None  # falls back to the object's LastModified


def test_lock_id_lookup_in_table_and_lockfile(tf: TerraformBackend, aws: Aws, directory: LockDirectory) -> None:
    table_lock = tf.lock(KEY)
    file_lock = TerraformBackend(aws.s3, None, BUCKET, None, use_lockfile=True).lock("other/terraform.tfstate")
    assert directory.status(table_lock.id).address == StateAddress(BUCKET, KEY)
    assert directory.status(file_lock.id.upper()).address == StateAddress(BUCKET, "other/terraform.tfstate")
    with pytest.raises(LockNotFound, match="no lock with ID"):
        directory.status("00000000-0000-0000-0000-000000000000")


def test_unknown_bucket_is_bad_input(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFLOCK_DYNAMODB_TABLE", TABLE)
    monkeypatch.setenv("TFLOCK_S3_BUCKETS", "acme-*")
    directory = LockDirectory(load_backends(load_settings()))
    with pytest.raises(BadInput, match="'other-bucket' is not served"):
        directory.status("other-bucket/a.tfstate")


def test_access_denied_names_permission_and_resource(tf: TerraformBackend, directory: LockDirectory) -> None:
    client = directory.backends.backends[0].clients.client("dynamodb")
    inject_error(client, "GetItem", "AccessDeniedException")
    state = directory.status(f"{BUCKET}/{KEY}")
    # Not "not locked": the table could not be read, so the answer is unknown, and says why.
    assert state.answer is Answer.UNKNOWN
    assert [str(u) for u in state.unchecked] == [
        f"DynamoDB not checked: AWS denied dynamodb:GetItem on table {TABLE}: grant it to the bot's role"
    ]
    assert state.checked == (Store.LOCKFILE,)


def test_lockfile_denied_in_auto_mode_falls_back_to_table(tf: TerraformBackend, directory: LockDirectory) -> None:
    lock = tf.lock(KEY)
    inject_error(directory.backends.backends[0].clients.client("s3"), "GetObject", "AccessDenied", status=403)
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.info is not None and state.info.id == lock.id
    assert state.answer is Answer.HELD  # held is certain even though the lock file was not read
    assert state.checked == (Store.TABLE,)
    assert "lock file not checked: AWS denied s3:GetObject" in str(state.unchecked[0])


def test_lockfile_denied_and_table_empty_is_unknown(tf: TerraformBackend, directory: LockDirectory) -> None:
    inject_error(directory.backends.backends[0].clients.client("s3"), "GetObject", "AccessDenied", status=403)
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.answer is Answer.UNKNOWN
    assert state.checked == (Store.TABLE,)


def test_throttling_is_retried(tf: TerraformBackend, directory: LockDirectory) -> None:
    lock = tf.lock(KEY)
    client = directory.backends.backends[0].clients.client("dynamodb")
    attempts = inject_error(client, "GetItem", "ThrottlingException", times=2)
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.info is not None and state.info.id == lock.id
    assert len(attempts) == 3


def test_list_reports_a_failing_backend_and_keeps_the_others(
    aws: Aws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    create_table(aws.dynamodb, "other-locks")
    create_bucket(aws.s3, "acme-other")
    good = TerraformBackend(aws.s3, aws.dynamodb, BUCKET, TABLE).lock(KEY)
    TerraformBackend(aws.s3, aws.dynamodb, "acme-other", "other-locks").lock(KEY)
    backends = tmp_path / "backends.toml"
    backends.write_text(
        f'[[backends]]\nname = "main"\nbuckets = ["{BUCKET}"]\ndynamodb_table = "{TABLE}"\n'
        '[[backends]]\nname = "other"\nbuckets = ["acme-other"]\ndynamodb_table = "other-locks"\n'
    )
    monkeypatch.setenv("TFLOCK_BACKENDS_FILE", str(backends))
    directory = LockDirectory(load_backends(load_settings()))
    inject_error(directory.backends.backends[1].clients.client("dynamodb"), "Scan", "AccessDeniedException")
    listing = directory.list_locks()
    assert [s.info.id for s in listing.locks if s.info] == [good.id]
    assert listing.problems[0].backend == "other"
    assert "dynamodb:Scan on table other-locks" in listing.problems[0].message


def test_role_is_assumed_per_backend(tf: TerraformBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = tf.lock(KEY)
    backends = tmp_path / "backends.yaml"
    backends.write_text(
        f"backends:\n  - name: main\n    buckets: [{BUCKET}]\n    dynamodb_table: {TABLE}\n"
        "    role_arn: arn:aws:iam::123456789012:role/tflock-reader\n"
    )
    monkeypatch.setenv("TFLOCK_BACKENDS_FILE", str(backends))
    directory = LockDirectory(load_backends(load_settings()))
    backend = directory.backends.backends[0]
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.info is not None and state.info.id == lock.id
    credentials = backend.clients.client("dynamodb")._request_signer._credentials
    assert credentials.method == "sts-assume-role"
    assert credentials.get_frozen_credentials().access_key != "testing"


def test_assume_role_denied_names_the_role(
    tf: TerraformBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backends = tmp_path / "backends.yaml"
    role = "arn:aws:iam::123456789012:role/tflock-reader"
    backends.write_text(
        f"backends:\n  - name: main\n    buckets: [{BUCKET}]\n    dynamodb_table: {TABLE}\n    role_arn: {role}\n"
    )
    monkeypatch.setenv("TFLOCK_BACKENDS_FILE", str(backends))
    directory = LockDirectory(load_backends(load_settings()))
    backend = directory.backends.backends[0]
    backend.clients.client("dynamodb")  # builds the session, whose STS client we can reach
    inject_error(backend.clients.sts, "AssumeRole", "AccessDenied", status=403)
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.answer is Answer.UNKNOWN
    assert f"sts:AssumeRole on role {role}" in str(state.unchecked[0])


def test_created_in_the_future_is_flagged(tf: TerraformBackend, directory: LockDirectory) -> None:
    tf.lock(KEY, created=go_time(datetime.now(UTC) + timedelta(hours=1)))
    facts = lock_facts(directory.status(f"{BUCKET}/{KEY}"), datetime.now(UTC), timedelta(hours=2))
    assert facts.age == "0s"
    assert "clock is ahead" in facts.problems[0]


# -- three answers: held, not held, unknown ------------------------------------------------------
def test_no_table_configured_is_unknown_not_unlocked(tf: TerraformBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """The table holds a 3-hour lock but TFLOCK_DYNAMODB_TABLE is unset: never "not locked"."""
    tf.lock(KEY, created=ago(hours=3))
    monkeypatch.setenv("TFLOCK_S3_BUCKETS", BUCKET)
    state = LockDirectory(load_backends(load_settings())).status(f"{BUCKET}/{KEY}")
    assert state.answer is Answer.UNKNOWN
    assert state.checked == (Store.LOCKFILE,)
    assert str(state.unchecked[0]).startswith("DynamoDB not checked: no table configured for this backend")
    assert "TFLOCK_DYNAMODB_TABLE" in str(state.unchecked[0])
    facts = lock_facts(state, datetime.now(UTC), timedelta(hours=2))
    assert facts.as_json()["answer"] == "unknown" and facts.as_json()["locked"] is None
    assert {"store": "dynamodb", "ok": False, "error": state.unchecked[0].reason} in facts.as_json()["checked"]


def test_lock_files_only_backend_can_say_not_held(tf_file: TerraformBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TFLOCK_S3_LOCKFILE", "on")
    state = LockDirectory(load_backends(load_settings())).status(f"{BUCKET}/{KEY}")
    assert state.answer is Answer.NOT_HELD and state.checked == (Store.LOCKFILE,) and not state.unchecked


def test_not_held_only_when_every_store_was_read(tf: TerraformBackend, directory: LockDirectory) -> None:
    state = directory.status(f"{BUCKET}/{KEY}")
    assert state.answer is Answer.NOT_HELD
    assert set(state.checked) == {Store.TABLE, Store.LOCKFILE}
    facts = lock_facts(state, datetime.now(UTC), timedelta(hours=2)).as_json()
    assert facts["checked"] == [
        {"store": "dynamodb", "ok": True, "error": None},
        {"store": "s3", "ok": True, "error": None},
    ]


def test_list_with_a_failing_backend_is_partial(tf: TerraformBackend, directory: LockDirectory) -> None:
    inject_error(directory.backends.backends[0].clients.client("dynamodb"), "Scan", "InternalServerError", times=10)
    listing = directory.list_locks()
    assert not listing.complete
    assert listing.failures and "Scan" in listing.failures[0].message


def test_lock_id_search_that_could_not_search_everything_says_so(
    tf: TerraformBackend, directory: LockDirectory
) -> None:
    inject_error(directory.backends.backends[0].clients.client("dynamodb"), "Scan", "AccessDeniedException")
    with pytest.raises(LockNotFound, match="not everything could be searched"):
        directory.status("3f8a1c2e-5b7d-9e04-6a1f-c2d3e4f5a6b7")
