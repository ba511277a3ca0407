"""Peak memory of `/tflock audit … csv` as the trail grows (issue 11): it must stay flat.

    .venv/bin/python bench/slack_csv_memory.py                       # 10,000 and 100,000 events
    .venv/bin/python bench/slack_csv_memory.py --events 2000 20000   # smoke run

For each size: a fresh PostgreSQL database next to --url (default TFLOCK_TEST_DATABASE_URL, else
postgres@127.0.0.1:5432) is migrated and filled with N chained events by bench/audit_scale.py's loader;
then a child process runs exactly what the bot runs for `/tflock audit csv` — `export_csv` into a
temporary file on disk, then `upload_file` (files.getUploadURLExternal, the bytes streamed from the
file, files.completeUploadExternal) — against the local Slack Web API server of the tests, on loopback.
The child's peak RSS comes from bench/common.py's launcher (os.wait4). The database is dropped at the
end. The uploaded file is checked to hold every row.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import text  # noqa: E402

from bench.audit_scale import bench_url, load  # noqa: E402
from bench.common import launch, machine  # noqa: E402
from bot.db import engine_url, make_engine, upgrade_to_head  # noqa: E402
from tests.fakeslack import FakeSlack  # noqa: E402

CHILD = """
import sys, tempfile
from slack_sdk import WebClient
from bot.audit.query import AuditFilter, export_csv
from bot.db import make_engine, make_sessions
from bot.slack.audit import CSV_MAX_BYTES, CSV_MAX_ROWS, upload_file
url, api = sys.argv[1], sys.argv[2]
sessions = make_sessions(make_engine(url))
with tempfile.TemporaryFile() as spool:
    count = export_csv(sessions, AuditFilter(), spool, max_rows=CSV_MAX_ROWS, max_bytes=CSV_MAX_BYTES)
    upload_file(WebClient(token="xoxb-bench", base_url=api), spool, channel="D0BENCH", filename="a.csv",
                title="bench", comment="bench")
print(count)
"""


def measure(admin_url: str, events: int) -> tuple[int, int]:
    """(peak RSS KiB of the child, rows uploaded) for a trail of `events` events."""
    admin = engine_url(admin_url)
    name = f"tflock_bench_csv_{os.getpid()}_{events}"
    url = bench_url(admin, name)
    admin_engine = make_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    slack = FakeSlack().start()
    try:
        upgrade_to_head(url)
        load(url, events, datetime.now(UTC).replace(microsecond=0), seed=11)
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        usage = launch([sys.executable, "-c", CHILD, url, slack.api_url], env=env, cwd=str(REPO_ROOT))
        if usage is None or usage.returncode != 0:
            raise SystemExit(f"the export child failed for {events} events")
        uploads = [call for call in slack.calls if call.path.startswith("/upload/")]
        rows = uploads[-1].body["_raw"].count("\r\n") - 1 if uploads else -1
        return usage.maxrss_kib, rows
    finally:
        slack.stop()
        with admin_engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument(
        "--url",
        default=os.environ.get("TFLOCK_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args(argv)
    print("machine:", machine("SQLAlchemy", "psycopg", "slack_sdk"))
    results = []
    for events in args.events:
        rss, rows = measure(args.url, events)
        results.append((events, rss))
        status = "ok" if rows == events else f"WRONG: {rows} rows uploaded"
        print(f"{events:>9,} events: child peak RSS {rss / 1024:7.1f} MiB, uploaded rows {rows:,} ({status})")
        if rows != events:
            return 1
    (small, small_rss), (large, large_rss) = results[0], results[-1]
    print(f"peak RSS grew {large_rss / small_rss:.2f}x for {large / small:.0f}x the events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
