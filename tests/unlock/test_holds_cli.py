"""`tflock-bot hold` / `release`: exit 0 held/released, 1 refused, 2 bad input or configuration (SQLite and PG)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.cli import main
from bot.locks.lockinfo import parse_lock_info
from tests.conftest import BUCKET, TABLE, Aws
from tests.database import audit_trail, sqlite_url
from tests.terraform import TerraformBackend

KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, migrated_url: str, aws: Aws) -> None:
    monkeypatch.setenv("TFLOCK_DATABASE_URL", migrated_url)
    monkeypatch.setenv("TFLOCK_DYNAMODB_TABLE", TABLE)
    monkeypatch.setenv("TFLOCK_S3_BUCKETS", BUCKET)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def as_json(text: str) -> Any:
    return json.loads(text)


@pytest.mark.usefixtures("env")
def test_hold_then_release(capsys: pytest.CaptureFixture[str], aws: Aws, sessions: sessionmaker[Session]) -> None:
    code, out, err = run(capsys, "hold", STATE, "DNS", "migration,", "incident", "42", "--actor", "alice", "--json")
    assert code == 0, err
    hold = as_json(out)["hold"]
    assert hold["holder"] == "cli:alice" and hold["reason"] == "DNS migration, incident 42"
    assert hold["status"] == "held" and set(hold["held_in"]) == {"dynamodb", "s3"}
    info = parse_lock_info(hold["raw_info"])
    assert info.who == "cli:alice (tflock hold)"
    assert info.info == "held with tflock by cli:alice: DNS migration, incident 42"

    code, out, _ = run(capsys, "status", STATE, "--json")
    status = as_json(out)
    assert code == 0 and status["hold"]["by"] == "cli:alice"
    assert status["hold"]["reason"] == "DNS migration, incident 42"
    assert status["stale"] is False
    code, out, _ = run(capsys, "list")
    [_header, row] = out.splitlines()
    assert code == 0 and "cli:alice (tflock hold)" in row and row.endswith("HOLD: DNS migration, incident 42")
    assert "STALE" not in row

    code, out, err = run(capsys, "release", STATE, "--actor", "bob")
    assert code == 1 and "only they can release it" in err
    code, out, err = run(capsys, "release", STATE, "--actor", "alice")
    assert code == 0, err
    assert out.startswith(f"{STATE}: released")
    assert [e.action for e in audit_trail(sessions)] == ["held", "refused", "released"]
    assert audit_trail(sessions)[0].actor == "cli:alice"

    code, out, err = run(capsys, "release", STATE, "--actor", "alice", "--json")
    assert code == 1 and as_json(out)["why"] == "no_hold"


@pytest.mark.usefixtures("env")
def test_hold_on_a_locked_state_prints_the_holder(capsys: pytest.CaptureFixture[str], tf: TerraformBackend) -> None:
    lock = tf.lock(KEY, who="runner@ci-9")
    code, out, err = run(capsys, "hold", STATE, "incident", "--actor", "alice", "--channel", "#incident-42")
    assert code == 1
    assert f"already locked by runner@ci-9 (apply (or destroy), lock ID {lock.id}" in err
    code, out, err = run(capsys, "hold", STATE, "incident", "--actor", "alice", "--json")
    assert code == 1 and as_json(out)["why"] == "already_locked"


@pytest.mark.usefixtures("env")
def test_channel_shown_in_the_info(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "hold", STATE, "why", "--actor", "alice", "--channel", "#incident-42", "--json")
    assert code == 0
    info = parse_lock_info(as_json(out)["hold"]["raw_info"]).info
    assert info == "held with tflock by cli:alice in #incident-42: why"


@pytest.mark.usefixtures("env")
def test_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "hold", "not-a-state", "why", "--actor", "alice")[0] == 2
    assert run(capsys, "hold", STATE, "why", "--actor", "no spaces please")[0] == 2
    assert run(capsys, "hold", STATE, " ", "--actor", "alice")[0] == 2  # an empty reason
    assert run(capsys, "hold", "other-bucket/x.tfstate", "why", "--actor", "alice")[0] == 2
    with pytest.raises(SystemExit) as missing:  # argparse: no reason, no --actor
        main(["hold", STATE, "--actor", "alice"])
    assert missing.value.code == 2
    with pytest.raises(SystemExit) as no_actor:
        main(["release", STATE])
    assert no_actor.value.code == 2


def test_an_unmigrated_database_is_a_configuration_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, aws: Aws, tmp_path: Any
) -> None:
    monkeypatch.setenv("TFLOCK_DATABASE_URL", sqlite_url(tmp_path))
    monkeypatch.setenv("TFLOCK_DYNAMODB_TABLE", TABLE)
    code, _, err = run(capsys, "hold", STATE, "why", "--actor", "alice")
    assert code == 2 and "tflock-bot db upgrade" in err
