"""`/tflock audit` end to end over HTTP: an auditor gets the story (and a CSV), anyone else a polite
refusal that is itself recorded; the CLI tells the same story from the same database."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tests.conftest import BUCKET, TABLE, Aws
from tests.e2e.conftest import MotoServer, run_cli, start_bot
from tests.fakeslack import FakeSlack, block_actions_body, sign, slash_command_body
from tests.terraform import TerraformBackend, ago

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
SECRET = "audit-e2e-secret"
KEY = "network/terraform.tfstate"
ALICE, BOB, AUDREY, MALLORY = "U0ALICE01", "U0BOB0001", "U0AUDREY1", "U0MALLORY"


def test_audit_for_an_auditor_and_a_refusal_for_anyone_else(
    moto_server: MotoServer, remote_aws: Aws, slack: FakeSlack, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'tflock.db'}"
    env = {
        "AWS_ENDPOINT_URL": moto_server.url,
        "SLACK_BOT_TOKEN": "xoxb-e2e",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
        "TFLOCK_DYNAMODB_TABLE": TABLE,
        "TFLOCK_DATABASE_URL": database,
        "TFLOCK_APPROVERS": BOB,
        "TFLOCK_AUDITORS": AUDREY,
    }
    TerraformBackend(remote_aws.s3, remote_aws.dynamodb, BUCKET, TABLE).lock(KEY, created=ago(hours=5))
    bot = start_bot(env, tmp_path / "bot.log")

    def slash(text: str, user: str, name: str) -> None:
        body = slash_command_body(text, slack.response_url(name), user=user)
        assert bot.post(body, sign(SECRET, body))[0] == 200

    try:
        slash(f"unlock {BUCKET}/{KEY} the apply runner was deleted", ALICE, "ask")
        slack.wait_for("/response/ask")
        post = next(c for c in slack.calls_to("/api/chat.postMessage") if "blocks" in c.body)
        request_id = next(e["value"] for b in post.body["blocks"] if b["type"] == "actions" for e in b["elements"])
        click = block_actions_body(
            {
                "type": "block_actions",
                "user": {"id": BOB},
                "team": {"id": "T0001"},
                "channel": {"id": "C0INCIDENT"},
                "container": {"type": "message", "message_ts": "1.1", "channel_id": "C0INCIDENT"},
                "response_url": slack.response_url("bob"),
                "trigger_id": "1.2.3",
                "actions": [{"action_id": "tflock_approve", "value": request_id, "type": "button", "action_ts": "1"}],
            }
        )
        assert bot.post(click, sign(SECRET, click))[0] == 200
        slack.wait_for("/api/chat.update")

        slash(f"audit {BUCKET}/{KEY} since:1d", AUDREY, "auditor")
        answer = slack.wait_for("/response/auditor")[-1].body
        assert answer["response_type"] == "ephemeral"
        text = json.dumps(answer, ensure_ascii=False)
        for expected in (
            "*executed*",
            "*approved* by <@U0BOB0001>",
            "*requested* by <@U0ALICE01>",
            "apply runner was deleted",
        ):
            assert expected in text

        slash("audit", MALLORY, "nosy")
        refusal = slack.wait_for("/response/nosy")[-1].body
        assert refusal["response_type"] == "ephemeral" and "auditors only" in json.dumps(refusal)

        slash(f"audit {BUCKET}/{KEY} csv", AUDREY, "csv")
        slack.wait_for("/response/csv")
        upload = slack.wait_for("/upload/F0001")[-1].body["_raw"]
        rows = list(csv.DictReader(io.StringIO(upload)))
        assert [r["action"] for r in rows] == ["requested", "notified", "approved", "executing", "executed"]
        complete = slack.wait_for("/api/files.completeUploadExternal")[-1].body
        assert complete["channel_id"] == "D0AUDREY1"  # a direct message to the auditor, not the channel
    finally:
        assert bot.stop() == 0, bot.log()
    assert "audit chain intact" in bot.log()  # serve checks the chain in the background at start-up

    refused = run_cli(
        "audit", "query", "--action", "refused", "--format", "json", env={"TFLOCK_DATABASE_URL": database}
    )
    assert refused.returncode == 0, refused.stderr
    assert [(e["actor"], e["detail"]["why"]) for e in json.loads(refused.stdout)] == [(MALLORY, "not_auditor")]
    story = run_cli("audit", "query", "--state", f"s3://{BUCKET}/{KEY}", env={"TFLOCK_DATABASE_URL": database})
    assert [line.split()[3] for line in story.stdout.splitlines()[1:]] == [
        "requested",
        "notified",
        "approved",
        "executing",
        "executed",
    ]
    verified = run_cli("audit", "verify", env={"TFLOCK_DATABASE_URL": database})
    assert verified.returncode == 0, verified.stderr
