"""Issue #14's third story with a real Terraform: an `apply` killed with SIGKILL leaves its lock behind;
tflock reports it with Terraform's own facts and, after two people, releases it; Terraform works again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.audit.models import AuditEvent
from bot.db import make_engine, make_sessions
from tests.e2e.conftest import run_cli, start_bot
from tests.e2e.test_unlock_http import SECRET, click, request_id_from, slash
from tests.fakeslack import FakeSlack
from tests.terraform_real.conftest import Backend
from tests.terraform_real.harness import TERRAFORM_VERSION, Terraform, missing_tools

pytestmark = [
    pytest.mark.slow,
    pytest.mark.terraform,
    pytest.mark.skipif(bool(missing_tools()), reason=str(missing_tools())),
]
ALICE, BOB = "U0ALICE01", "U0BOB0001"


def test_a_killed_apply_is_reported_released_by_two_people_and_terraform_works_again(
    terraform: Terraform, backend: Backend, slack: FakeSlack, database_url: str, tmp_path: Path
) -> None:
    with terraform.held("apply") as run:
        item = backend.lock_item()
        assert item is not None, run.text()
        run.kill()
    after_kill = backend.lock_item()
    assert after_kill == item, "SIGKILL gave Terraform no chance to release its lock"
    info = json.loads(item["Info"]["S"])
    assert info["Operation"] == "OperationTypeApply" and info["Version"] == TERRAFORM_VERSION
    assert info["Path"] == terraform.state

    blocked = terraform.plan()
    assert blocked.returncode != 0
    assert "Error acquiring the state lock" in blocked.output
    assert info["ID"] in blocked.output

    status = run_cli("status", terraform.state, env=backend.bot_env())
    assert status.returncode == 0, status.stderr
    lines = dict(line.split(":", 1) for line in status.stdout.splitlines() if ":" in line)
    assert lines["Lock ID"].strip() == info["ID"]
    assert lines["Who"].strip() == info["Who"]
    assert lines["Operation"].strip() == "apply (or destroy) (OperationTypeApply)"
    assert lines["Version"].strip() == TERRAFORM_VERSION

    env = {
        **backend.bot_env(),
        "SLACK_BOT_TOKEN": "xoxb-terraform",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_DATABASE_URL": database_url,
        "TFLOCK_APPROVERS": BOB,
    }
    bot = start_bot(env, tmp_path / "bot.log")
    try:
        slash(bot, slack, f"unlock {terraform.state} the apply's runner was killed (SIGKILL)", ALICE, "ask")
        request_id = request_id_from(slack, "ask")
        request = json.dumps(slack.calls_to("/api/chat.postMessage")[0].body, ensure_ascii=False)
        assert info["ID"] in request and info["Who"] in request
        assert click(bot, slack, "tflock_approve", request_id, ALICE, "alice") == 200
        assert "a second person must" in json.dumps(slack.wait_for("/response/alice")[-1].body)
        assert backend.lock_item() == item, "one person alone released the lock"

        assert click(bot, slack, "tflock_approve", request_id, BOB, "bob") == 200
        final = json.dumps(slack.wait_for("/api/chat.update")[-1].body, ensure_ascii=False)
        assert "Released" in final
    finally:
        assert bot.stop() == 0, bot.log()
    assert backend.lock_item() is None

    unblocked = terraform.plan()
    assert unblocked.returncode == 0, unblocked.output
    assert "Error acquiring the state lock" not in unblocked.output

    engine = make_engine(database_url)
    try:
        with make_sessions(engine)() as session:
            events = session.scalars(
                select(AuditEvent).where(AuditEvent.request_id == request_id).order_by(AuditEvent.id)
            )
            story = [(e.action, e.actor) for e in events]
    finally:
        engine.dispose()
    assert story[0] == ("requested", ALICE) and story[-1] == ("executed", BOB)
