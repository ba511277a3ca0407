"""The demo's AWS: one bucket, one DynamoDB lock table and the states and locks of a bad afternoon.

Every lock is written the way Terraform or OpenTofu writes it (bot.demo.terraform); only the unreadable
one is written by hand, because no tool would write it — that is the point of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.demo.terraform import Backend, go_time, go_uuid, lock_info_json
from bot.locks.address import StateAddress

REGION = "eu-west-1"
BUCKET = "acme-tfstate"
TABLE = "terraform-locks"

TABLE_ONLY = Backend(BUCKET, TABLE, use_lockfile=False)
LOCKFILE_ONLY = Backend(BUCKET, None, use_lockfile=True, tool="OpenTofu")
BOTH = Backend(BUCKET, TABLE, use_lockfile=True)


@dataclass(frozen=True)
class DemoState:
    """A state in the demo, with the backend block its Terraform configuration would have."""

    name: str  # what the Terraform panel calls it
    address: StateAddress
    backend: Backend
    story: str  # one line for the page: what is going on with it

    @property
    def path(self) -> str:
        return self.address.lock_id

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "tool": self.backend.tool,
            "locking": ", ".join(
                (["DynamoDB table"] if self.backend.table else [])
                + (["S3 lock file"] if self.backend.use_lockfile else [])
            ),
            "story": self.story,
        }


STATES = (
    DemoState(
        "network",
        StateAddress.for_workspace(BUCKET, "network/terraform.tfstate"),
        TABLE_ONLY,
        "a CI apply was cancelled 3 hours ago and left its lock behind",
    ),
    DemoState(
        "app (staging)",
        StateAddress.for_workspace(BUCKET, "app/terraform.tfstate", "staging"),
        TABLE_ONLY,
        "Bob is running a plan in the staging workspace right now",
    ),
    DemoState(
        "dns (OpenTofu)",
        StateAddress.for_workspace(BUCKET, "dns/terraform.tfstate"),
        LOCKFILE_ONLY,
        "OpenTofu with an S3 lock file (.tflock), an apply 40 minutes ago",
    ),
    DemoState(
        "database",
        StateAddress.for_workspace(BUCKET, "database/terraform.tfstate"),
        BOTH,
        "locked in both the table and a lock file, a refresh 5 hours ago",
    ),
    DemoState(
        "legacy",
        StateAddress.for_workspace(BUCKET, "legacy/terraform.tfstate"),
        TABLE_ONLY,
        "a lock item whose Info nobody can read",
    ),
    DemoState(
        "iam",
        StateAddress.for_workspace(BUCKET, "iam/terraform.tfstate"),
        TABLE_ONLY,
        "not locked",
    ),
)
STALE = STATES[0]


def state_named(name: str) -> DemoState | None:
    return next((s for s in STATES if name in (s.name, s.path)), None)


def _state_body(address: StateAddress, serial: int) -> bytes:
    state = {"version": 4, "terraform_version": "1.11.4", "serial": serial, "lineage": go_uuid(), "outputs": {}}
    state["resources"] = []
    return (json.dumps(state, indent=2) + "\n").encode()


def seed(s3: Any, dynamodb: Any, now: datetime) -> None:
    """Create the bucket and table and write the afternoon's states and locks."""
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "LockID", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "LockID", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for serial, state in enumerate(STATES, start=3):
        state.backend.write_state(s3, dynamodb, state.address, _state_body(state.address, serial))

    def take(state: DemoState, operation: str, who: str, version: str, age: timedelta) -> None:
        info = lock_info_json(
            state.address,
            lock_id=go_uuid(),
            operation=operation,
            who=who,
            version=version,
            created=go_time(now - age, nanos=((now - age).microsecond * 1000) + 417),
        )
        state.backend.lock(s3, dynamodb, state.address, info)

    network, app, dns, database, legacy, _ = STATES
    take(network, "OperationTypeApply", "runner@ci-runner-7.build.internal", "1.11.4", timedelta(hours=3, minutes=4))
    take(app, "OperationTypePlan", "bob@bobs-laptop", "1.11.4", timedelta(minutes=2))
    take(dns, "OperationTypeApply", "carol@ws-carol", "1.10.6", timedelta(minutes=41))
    take(
        database, "OperationTypeRefresh", "runner@ci-runner-2.build.internal", "1.11.4", timedelta(hours=5, minutes=12)
    )
    # No Terraform writes this: an item someone "fixed" by hand in the console, Info no longer JSON.
    dynamodb.put_item(
        TableName=TABLE,
        Item={"LockID": {"S": legacy.address.lock_id}, "Info": {"S": "{ID: 7f3e…, Who: ops@bastion (edited by hand)"}},
        ConditionExpression="attribute_not_exists(LockID)",
    )
