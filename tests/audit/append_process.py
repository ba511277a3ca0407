"""Another bot replica appending to the audit trail, for the concurrency test.

Run as `python -m tests.audit.append_process <database-url> <name> <threads> <appends-per-thread>`. It
prints {"ready": true}, waits for a start time (a float on stdin), then every thread appends its events,
each in its own transaction, starting at that wall-clock instant; it prints {"done": n} at the end.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from datetime import UTC, datetime

from bot.audit.models import AuditAction
from bot.audit.writer import record_event
from bot.db import make_engine, make_sessions


def main() -> None:
    url, name, threads, appends = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    engine = make_engine(url)
    sessions = make_sessions(engine)
    errors: list[str] = []

    def append(thread: int, start: float) -> None:
        time.sleep(max(start - time.time(), 0))
        for i in range(appends):
            try:
                with sessions.begin() as session:
                    record_event(
                        session,
                        AuditAction.STATUS,
                        at=datetime.now(UTC),
                        actor=f"U{name}",
                        detail={"thread": thread, "i": i},
                    )
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    print(json.dumps({"ready": True}), flush=True)
    start = float(sys.stdin.readline())
    workers = [threading.Thread(target=append, args=(t, start)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    engine.dispose()
    print(json.dumps({"done": threads * appends - len(errors), "errors": errors[:5]}), flush=True)


if __name__ == "__main__":
    main()
