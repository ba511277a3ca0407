"""The real `tflock-bot` process against moto's server over HTTP."""

from __future__ import annotations

import pytest

from tests.conftest import BUCKET, TABLE, Aws
from tests.e2e.conftest import run_cli
from tests.terraform import TerraformBackend, ago

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
KEY = "network/terraform.tfstate"
ENV = {"TFLOCK_DYNAMODB_TABLE": TABLE, "TFLOCK_S3_BUCKETS": BUCKET}


def test_status_of_a_terraform_lock(remote_tf: TerraformBackend) -> None:
    lock = remote_tf.lock(
        KEY,
        operation="OperationTypePlan",
        who="alice@build-agent-07",
        version="1.9.8",
        created=ago(hours=3, minutes=7, seconds=5),
    )
    result = run_cli("status", f"{BUCKET}/{KEY}", env=ENV)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert lines["Lock ID"].strip() == lock.id
    assert lines["Who"].strip() == "alice@build-agent-07"
    assert lines["Operation"].strip() == "plan (OperationTypePlan)"
    assert lines["Age"].strip() == "3h 7m"
    assert lines["Version"].strip() == "1.9.8"
    assert lines["Verdict"].strip() == "probably stale (held longer than 2h)"
    assert f"lock file s3://{BUCKET}/{KEY}.tflock" in lines["Held in"]


def test_status_json_by_s3_url_workspace_and_lock_id(remote_tf: TerraformBackend) -> None:
    lock = remote_tf.lock(KEY, workspace="staging", version="1.10.6", created=ago(minutes=4))
    for reference in (f"s3://{BUCKET}/env:/staging/{KEY}", lock.id):
        result = run_cli("status", reference, "--json", env=ENV)
        assert result.returncode == 0, result.stderr
        document = result.json()
        assert document["address"] == f"{BUCKET}/env:/staging/{KEY}"
        assert document["workspace"] == "staging"
        assert document["lock_id"] == lock.id
        assert document["raw_info"] == [lock.info_json, lock.info_json]
        assert document["stale"] is False
        assert document["version"] == "1.10.6"


def test_not_locked_and_digest_only(remote_tf: TerraformBackend) -> None:
    remote_tf.write_state(KEY, b'{"version": 4}')
    result = run_cli("status", f"{BUCKET}/{KEY}", env=ENV)
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        f"{BUCKET}/{KEY}: not locked",
        "  checked: DynamoDB table, S3 lock file",
    ]
    listed = run_cli("list", "--json", env=ENV)
    assert listed.returncode == 0 and listed.json() == {"complete": True, "locks": [], "problems": []}


def test_no_table_configured_is_unknown_never_not_locked(remote_aws: Aws) -> None:
    """The issue's first report: TFLOCK_DYNAMODB_TABLE unset while the table holds a 3-hour lock."""
    TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE).lock(KEY, created=ago(hours=3))
    env = {"TFLOCK_S3_BUCKETS": BUCKET}
    result = run_cli("status", f"{BUCKET}/{KEY}", env=env)
    assert result.returncode == 1
    assert f"{KEY}: not locked" not in result.stdout
    assert result.stdout.startswith(f"{BUCKET}/{KEY}: unknown")
    assert "DynamoDB not checked: no table configured for this backend (TFLOCK_DYNAMODB_TABLE" in result.stdout
    document = run_cli("status", f"{BUCKET}/{KEY}", "--json", env=env).json()
    assert document["answer"] == "unknown" and document["locked"] is None
    assert document["checked"][0]["store"] == "s3" and document["checked"][0]["ok"] is True
    assert document["checked"][1]["store"] == "dynamodb" and document["checked"][1]["ok"] is False


def test_aws_endpoint_down_is_unknown_and_a_partial_list(remote_tf: TerraformBackend) -> None:
    from tests.e2e.conftest import free_port

    env = {**ENV, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "TFLOCK_AWS_CONNECT_TIMEOUT": "1s"}
    result = run_cli("status", f"{BUCKET}/{KEY}", "--json", env=env)
    assert result.returncode == 1, result.stderr
    document = result.json()
    assert document["answer"] == "unknown"
    assert [c["ok"] for c in document["checked"]] == [False, False]
    assert all("could not reach AWS" in c["error"] for c in document["checked"])
    listed = run_cli("list", env=env)
    assert listed.returncode == 1
    assert "No locks held." not in listed.stdout
    assert "partial" in listed.stdout and "could not check backend default" in listed.stderr


def test_list_and_list_stale(remote_tf: TerraformBackend, remote_aws: Aws) -> None:
    old = remote_tf.lock("old/terraform.tfstate", created=ago(hours=5))
    new = remote_tf.lock("new/terraform.tfstate", created=ago(minutes=1))
    remote_tf.write_state("old/terraform.tfstate", b"state")
    everything = run_cli("list", "--json", env=ENV).json()["locks"]
    assert [lock["lock_id"] for lock in everything] == [old.id, new.id]  # oldest first
    stale = run_cli("list", "--stale", env=ENV)
    assert stale.returncode == 0
    assert old.id in stale.stdout and new.id not in stale.stdout and "STALE" in stale.stdout
    assert "-md5" not in stale.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("status", ""), "no state given"),
        (("status", "x" * 10_240), "10,240 characters"),
        (("status", "/acme-tfstate/a"), "starts with '/'"),
        (("status", "acme-tfstate//a"), "'//'"),
        (("status", "acme-tfstate/../a"), "'..' segment"),
        (("status", "acme-tfstate/a\u202eb"), "U+202E"),
        (("status", "acme-tfstate/it's"), "quote"),
        (("status", "nope"), "not a state address"),
        (("status", "acme-tfstate/a-md5"), "digest item"),
        (("status",), "the following arguments are required: state"),
        (("frobnicate",), "invalid choice"),
        (("list", "--colour"), "unrecognized arguments"),
    ],
)
def test_bad_input_exits_2_without_traceback(remote_aws: Aws, args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args, env=ENV)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_non_utf8_argument(remote_aws: Aws) -> None:
    import os
    import subprocess

    from tests.e2e.conftest import tflock_bot_executable

    completed = subprocess.run(
        [*tflock_bot_executable(), "status", os.fsdecode(b"acme-tfstate/\xff\xfe")],
        env={**os.environ, **ENV},
        capture_output=True,
        check=False,
    )
    assert completed.returncode == 2
    assert b"not valid UTF-8" in completed.stderr and b"Traceback" not in completed.stderr


def test_malformed_info_is_shown_raw(remote_tf: TerraformBackend, remote_aws: Aws) -> None:
    remote_aws.dynamodb.put_item(TableName=TABLE, Item={"LockID": {"S": f"{BUCKET}/{KEY}"}, "Info": {"S": "{not json"}})
    result = run_cli("status", f"{BUCKET}/{KEY}", env=ENV)
    assert result.returncode == 0
    assert "unreadable lock info: not JSON" in result.stdout
    assert "Raw Info:  {not json" in result.stdout


def test_missing_table_is_an_operation_failure(remote_aws: Aws) -> None:
    result = run_cli("status", f"{BUCKET}/{KEY}", env={**ENV, "TFLOCK_DYNAMODB_TABLE": "no-such-table"})
    assert result.returncode == 1  # unknown: the table could not be read
    assert "DynamoDB not checked: table no-such-table does not exist" in result.stdout
    assert "Traceback" not in result.stderr
