"""A second bot replica for the concurrency test: approves on command, from several threads at once.

Run as `python -m tests.unlock.approver_process <database-url>` with the AWS and TFLOCK_* environment of
the test. Each stdin line is JSON {"request_id", "approvers", "start"}: every approver clicks Approve in
its own thread at wall-clock time `start`; one JSON line of outcomes is written back per command.
A line {"state", "requesters", "start"} asks for force-unlocks of one state the same way.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime

from bot.db import make_engine, make_sessions
from bot.locks.backends import load_backends
from bot.locks.directory import LockDirectory
from bot.settings import load_settings
from bot.unlock.policy import Refused, UnlockPolicy
from bot.unlock.workflow import UnlockWorkflow


def approve_together(workflow: UnlockWorkflow, request_id: str, approvers: list[str], start: float) -> list[str]:
    outcomes = [""] * len(approvers)

    def click(index: int, approver: str) -> None:
        time.sleep(max(start - time.time(), 0))
        try:
            outcomes[index] = workflow.approve(request_id, approver).status.value
        except Refused as refused:
            outcomes[index] = f"refused:{refused.why}"
        except Exception as exc:
            outcomes[index] = f"error:{type(exc).__name__}:{exc}"

    threads = [threading.Thread(target=click, args=(i, a)) for i, a in enumerate(approvers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def request_together(workflow: UnlockWorkflow, state: str, requesters: list[str], start: float) -> list[str]:
    """Each requester asks for a force-unlock of `state` in its own thread at `start`: "pending:<id>" or
    "refused:<why>:<id of the request that was pending>"."""
    outcomes = [""] * len(requesters)

    def ask(index: int, requester: str) -> None:
        time.sleep(max(start - time.time(), 0))
        try:
            outcomes[index] = f"pending:{workflow.request(state, requester, 'stuck', 'CINCIDENT').id}"
        except Refused as refused:
            outcomes[index] = f"refused:{refused.why}:{refused.request.id if refused.request else None}"
        except Exception as exc:
            outcomes[index] = f"error:{type(exc).__name__}:{exc}"

    threads = [threading.Thread(target=ask, args=(i, r)) for i, r in enumerate(requesters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def main() -> None:
    engine = make_engine(sys.argv[1])
    workflow = UnlockWorkflow(
        make_sessions(engine),
        LockDirectory(load_backends(load_settings())),
        UnlockPolicy(is_approver=lambda user: user.startswith("UAPPROVER")),
        lambda: datetime.now(UTC),
    )
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        if "state" in command:
            outcomes = request_together(workflow, command["state"], command["requesters"], command["start"])
        else:
            outcomes = approve_together(workflow, command["request_id"], command["approvers"], command["start"])
        print(json.dumps({"outcomes": outcomes}), flush=True)
    engine.dispose()


if __name__ == "__main__":
    main()
