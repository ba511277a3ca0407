"""Issue #14's hold stories with a real Terraform: what `terraform plan` says while tflock holds a state,
and a hold refused while Terraform itself holds it."""

from __future__ import annotations

import json
import re

import pytest

from tests.database import migrated_url  # noqa: F401  (a fixture: the database at the newest schema)
from tests.e2e.conftest import run_cli
from tests.terraform_real.conftest import Backend
from tests.terraform_real.harness import Terraform, missing_tools

pytestmark = [
    pytest.mark.slow,
    pytest.mark.terraform,
    pytest.mark.skipif(bool(missing_tools()), reason=str(missing_tools())),
]
REASON = "DNS cut-over in progress, incident 42"


def lock_file(backend: Backend, terraform: Terraform) -> bool:
    listed = backend.s3.list_objects_v2(Bucket=backend.bucket, Prefix=f"{terraform.key}.tflock")
    return bool(listed["KeyCount"])


def test_terraform_is_stopped_by_a_hold_with_its_reason_until_it_is_released(
    terraform: Terraform,
    backend: Backend,
    migrated_url: str,  # noqa: F811
) -> None:
    env = {**backend.bot_env(), "TFLOCK_DATABASE_URL": migrated_url}
    held = run_cli(
        "hold", terraform.state, *REASON.split(), "--actor", "alice", "--channel", "incident-42", "--json", env=env
    )
    assert held.returncode == 0, held.stderr
    hold = held.json()["hold"]
    item = backend.lock_item()
    assert item is not None and item["Info"]["S"] == hold["raw_info"]

    blocked = terraform.plan()
    assert blocked.returncode != 0
    assert "Error acquiring the state lock" in blocked.output
    # Terraform's own `Lock Info:` block, parsed from the Info tflock wrote
    assert re.search(rf"^\s+ID:\s+{hold['lock_id']}$", blocked.output, re.M), blocked.output
    assert re.search(r"^\s+Who:\s+cli:alice \(tflock hold\)$", blocked.output, re.M)
    assert re.search(rf"^\s+Info:\s+.*#incident-42: {re.escape(REASON)}$", blocked.output, re.M)

    released = run_cli("release", terraform.state, "--actor", "alice", env=env)
    assert released.returncode == 0, released.stderr
    assert backend.lock_item() is None and not lock_file(backend, terraform)

    planned = terraform.plan()
    assert planned.returncode == 0, planned.output
    assert "No changes. Infrastructure is up-to-date." in planned.output


def test_a_hold_on_a_state_terraform_holds_is_refused_and_terraforms_lock_is_untouched(
    terraform: Terraform,
    backend: Backend,
    migrated_url: str,  # noqa: F811
) -> None:
    env = {**backend.bot_env(), "TFLOCK_DATABASE_URL": migrated_url}
    with terraform.held("plan") as run:
        item = backend.lock_item()
        assert item is not None, run.text()
        info = json.loads(item["Info"]["S"])

        refused = run_cli("hold", terraform.state, *REASON.split(), "--actor", "alice", "--json", env=env)
        assert refused.returncode == 1, refused.stderr
        assert f"already locked by {info['Who']}" in refused.stderr
        assert info["ID"] in refused.stderr
        assert refused.json()["ok"] is False

        assert backend.lock_item() == item, "Terraform's lock item was changed"
        assert not lock_file(backend, terraform), "a half-taken hold was left behind"

        finished = run.answer("CHG-7")  # Terraform goes on and releases its own lock, compared by its ID
    assert finished.returncode == 0, finished.output
    assert "Error releasing the state lock" not in finished.output
    assert backend.lock_item() is None
