"""Exactly once: many simultaneous clicks, from threads here and from two other processes (replicas).

AWS is moto's server over HTTP so every process sees the same locks; the database is the test's own
SQLite file or PostgreSQL schema. Each round, twelve clicks land at the same instant; the request must
end with one `executing` and one `executed` event, the lock gone, and a lock taken afterwards untouched.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.locks.address import StateAddress
from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.settings import load_settings
from bot.unlock.models import Status, UnlockRequest
from bot.unlock.policy import RefusalCode, Refused, UnlockPolicy
from bot.unlock.workflow import UnlockWorkflow
from tests.conftest import BUCKET, REGION, TABLE
from tests.database import audit_trail
from tests.terraform import TerraformBackend, create_bucket, create_table
from tests.unlock.approver_process import approve_together, request_together

REPO = Path(__file__).resolve().parents[2]
KEY = "network/terraform.tfstate"
STATE = f"{BUCKET}/{KEY}"
ROUNDS = 20
CLICKS = ["UAPPROVER0", "UAPPROVER1", "UAPPROVER2", "UAPPROVER0"]  # per process: distinct people and a double click
EXPECTED = {"executed", "pending", f"refused:{RefusalCode.ALREADY_DECIDED}", f"refused:{RefusalCode.ALREADY_APPROVED}"}


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def remote(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> TerraformBackend:
    """Double locking (table and lock file), on a fresh moto server state every process can reach."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("TFLOCK_DYNAMODB_TABLE", TABLE)
    monkeypatch.setenv("TFLOCK_S3_BUCKETS", BUCKET)
    dynamodb = boto3.client("dynamodb", region_name=REGION, endpoint_url=moto_endpoint)
    s3 = boto3.client("s3", region_name=REGION, endpoint_url=moto_endpoint)
    create_table(dynamodb, TABLE)
    create_bucket(s3, BUCKET)
    return TerraformBackend(s3, dynamodb, BUCKET, TABLE, use_lockfile=True)


@dataclass
class Replica:
    process: subprocess.Popen[str]

    def send(self, request_id: str, start: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"request_id": request_id, "approvers": CLICKS, "start": start}) + "\n")
        self.process.stdin.flush()

    def ask(self, state: str, requesters: list[str], start: float) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"state": state, "requesters": requesters, "start": start}) + "\n")
        self.process.stdin.flush()

    def outcomes(self) -> list[str]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert line, "the replica died; its stderr is in the test output"
        outcomes: list[str] = json.loads(line)["outcomes"]
        return outcomes


@pytest.fixture
def replicas(migrated_url: str, remote: TerraformBackend, tmp_path: Path) -> Iterator[list[Replica]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = [
        Replica(
            subprocess.Popen(
                [sys.executable, "-m", "tests.unlock.approver_process", migrated_url],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
                cwd=tmp_path,  # no stray .env
            )
        )
        for _ in range(2)
    ]
    for replica in started:
        assert replica.process.stdout is not None
        assert json.loads(replica.process.stdout.readline()) == {"ready": True}
    yield started
    for replica in started:
        assert replica.process.stdin is not None
        replica.process.stdin.close()
        replica.process.wait(30)


def test_simultaneous_approvals_release_once(
    remote: TerraformBackend, replicas: list[Replica], sessions: sessionmaker[Session]
) -> None:
    directory = LockDirectory(load_backends(load_settings()))

    def workflow(quorum: int) -> UnlockWorkflow:
        policy = UnlockPolicy(is_approver=lambda user: user.startswith("UAPPROVER"), approvals_required=quorum)
        return UnlockWorkflow(sessions, directory, policy, lambda: datetime.now(UTC))

    workflows = {1: workflow(1), 2: workflow(2)}
    for round_ in range(ROUNDS):
        quorum = 1 + round_ % 2
        here = workflows[quorum]
        remote.lock(KEY)
        request = here.request(STATE, "UREQUESTER", f"round {round_}", "CINCIDENT")
        start = time.time() + 0.1
        for replica in replicas:
            replica.send(request.id, start)
        outcomes = approve_together(here, request.id, CLICKS, start)
        for replica in replicas:
            outcomes += replica.outcomes()

        assert set(outcomes) <= EXPECTED, outcomes
        assert outcomes.count("executed") == 1, outcomes
        actions = [event.action for event in audit_trail(sessions, request.id)]
        assert actions.count("executing") == 1 and actions.count("executed") == 1, actions
        assert actions.count("approved") == quorum, actions
        final = here.find(request.id)
        assert final is not None and final.status is Status.EXECUTED and len(final.approvers) == quorum
        assert not directory.read(StateAddress(BUCKET, KEY)).held

        relocked = remote.lock(KEY)  # the next run's lock: no late click may touch it
        with pytest.raises(Refused):
            here.approve(request.id, "UAPPROVER1")
        state = directory.read(StateAddress(BUCKET, KEY))
        assert [s.raw_info for s in state.snapshots] == [relocked.info_json, relocked.info_json]
        remote.unlock(relocked)


@pytest.mark.slow
def test_simultaneous_requests_leave_one_pending(
    remote: TerraformBackend, replicas: list[Replica], sessions: sessionmaker[Session]
) -> None:
    """Six people ask at the same instant, from threads here and in two replicas: one request, five told which."""
    directory = LockDirectory(load_backends(load_settings()))
    policy = UnlockPolicy(is_approver=lambda user: user.startswith("UAPPROVER"))
    here = UnlockWorkflow(sessions, directory, policy, lambda: datetime.now(UTC))
    remote.lock(KEY)
    for round_ in range(5):
        start = time.time() + 0.2
        for index, replica in enumerate(replicas):
            replica.ask(STATE, [f"UASKER{round_}{index}{n}" for n in range(2)], start)
        outcomes = request_together(here, STATE, [f"UASKER{round_}H{n}" for n in range(2)], start)
        for replica in replicas:
            outcomes += replica.outcomes()

        winners = [outcome.removeprefix("pending:") for outcome in outcomes if outcome.startswith("pending:")]
        assert len(winners) == 1, outcomes
        refused = f"refused:{RefusalCode.ALREADY_REQUESTED}:{winners[0]}"
        assert sorted(outcomes) == sorted([f"pending:{winners[0]}"] + [refused] * 5), outcomes
        with sessions() as session:
            pending = session.scalars(
                select(UnlockRequest.id).where(
                    UnlockRequest.status == Status.PENDING, UnlockRequest.state_address == STATE
                )
            ).all()
        assert pending == [winners[0]]
        here.cancel(winners[0], here.find(winners[0]).requester)  # type: ignore[union-attr]
