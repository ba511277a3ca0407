"""The audit trail at scale on PostgreSQL (issue 5): filtered queries, a full CSV export, `verify`.

Run from the repository root (PostgreSQL must be reachable; the script creates its own database there and
drops it at the end):

    .venv/bin/python bench/audit_scale.py                          # 1,000,000 events
    .venv/bin/python bench/audit_scale.py --events 20000 --queries 10  # smoke run
    .venv/bin/python bench/audit_scale.py --url postgresql+psycopg://postgres@127.0.0.1:5432/postgres

What it does:

1. creates the database `tflock_bench_audit_<pid>` next to the one in --url (default: TFLOCK_TEST_DATABASE_URL,
   else postgres@127.0.0.1:5432) and runs the migrations (`upgrade_to_head`);
2. loads N events spread over the last 365 days, chained in Python with the bot's own encoding
   (bot/audit/chain.py) and written with COPY, plus N/100 force-unlock requests with approvals; sets the
   id sequence, VACUUM ANALYZE; then appends one more event through the bot's writer (`record_event`);
3. times the filtered query of the issue (one state, 90 days; `stream_events` to the last row) for
   --queries random states, and a few other filters, after a warm-up; prints the plan (EXPLAIN ANALYZE);
4. exports every row as CSV (`write_events(stream_events(...), file, "csv")`) in a child process, reading
   that child's wall time and peak RSS (os.wait4 in a tiny launcher); checks the file: every row present,
   every prev_hash linked to the row before, every 1,000th row's hash recomputed from the file;
5. runs `verify_chain` in a child process the same way (rows/s, peak RSS); times `build_report` (90 days);
6. loads --history lock history rows (default 200,000) with COPY and times the whole report, `build_figures`
   for 90 days (target < 2 s), and `state_history` for one state (target p50 < 50 ms) — issue 15.

Exits non-zero when anything fails or a result is wrong; missing a target only prints MISS.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve()
REPO_ROOT = SCRIPT.parent.parent
sys.path.insert(0, str(REPO_ROOT))

from sqlalchemy import text  # noqa: E402
from sqlalchemy.engine import URL, make_url  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from bench.common import launch, machine  # noqa: E402
from bot.audit.chain import GENESIS, event_hash, verify_chain  # noqa: E402
from bot.audit.models import AuditAction  # noqa: E402
from bot.audit.query import AuditFilter, plan, stream_events, summary, write_events  # noqa: E402
from bot.audit.writer import record_event  # noqa: E402
from bot.db import engine_url, make_engine, make_sessions, reading, upgrade_to_head  # noqa: E402
from bot.history.query import state_history  # noqa: E402
from bot.reports.report import build_figures, build_report  # noqa: E402

QUERY_P50_TARGET_MS = 50.0
EXPORT_RSS_TARGET_MIB = 200.0
REPORT_TARGET_MS = 2000.0
HISTORY_P50_TARGET_MS = 50.0
DAYS = 365
STATES = 500
ACTORS = 300
CHANNELS = 40
EVENT_COLUMNS = (
    "id",
    "at",
    "action",
    "actor",
    "state_address",
    "lock_id",
    "request_id",
    "channel",
    "detail",
    "prev_hash",
    "hash",
)
# Production-like: look-ups dominate; a force-unlock writes a handful of events.
ACTION_WEIGHTS = {
    "status": 62,
    "list": 14,
    "requested": 4,
    "approved": 5,
    "executing": 2,
    "executed": 2,
    "refused": 4,
    "rejected": 1,
    "cancelled": 1,
    "expired": 1.5,
    "superseded": 0.5,
    "already_released": 0.5,
    "failed": 0.3,
    "reconciled": 0.2,
}
REQUEST_ENDINGS = {
    "executed": 45,
    "expired": 15,
    "rejected": 10,
    "cancelled": 10,
    "superseded": 10,
    "already_released": 5,
    "failed": 5,
}
WHY = ("self_approval", "not_an_approver", "expired", "already_decided", "already_approved", "not_locked")


class BenchError(Exception):
    """The benchmark could not run or a result was wrong."""


# -- the data ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Names:
    states: list[str]
    actors: list[str]
    channels: list[str]


def names() -> Names:
    return Names(
        states=[f"acme-tfstate/team-{i % 25}/svc-{i}/terraform.tfstate" for i in range(STATES)],
        actors=[f"U{i:08X}" for i in range(ACTORS)],
        channels=[f"C{i:08X}" for i in range(CHANNELS)],
    )


def raw_info(rng: random.Random, state: str, created: datetime) -> str:
    return json.dumps(
        {
            "ID": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "Operation": rng.choice(("OperationTypeApply", "OperationTypePlan")),
            "Info": "",
            "Who": f"runner@ip-10-0-{rng.randrange(256)}-{rng.randrange(256)}.ec2.internal",
            "Version": "1.9.8",
            "Created": created.strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z",
            "Path": state,
        },
        separators=(",", ":"),
    )


def detail_for(rng: random.Random, action: str, state: str | None, at: datetime) -> dict[str, Any]:
    if action == "status":
        return {"locked": rng.random() < 0.3, "held_in": ["table"], "age_seconds": rng.randrange(86400)}
    if action == "list":
        return {"stale_only": rng.random() < 0.2, "count": rng.randrange(40)}
    if action == "requested":
        created = at - timedelta(seconds=rng.randrange(60, 3 * 86400))
        return {
            "reason": "CI runner died mid-apply; incident INC-" + str(rng.randrange(10000)),
            "held_in": ["table"],
            "raw_info": raw_info(rng, state or "", created),
            "lockfile_etag": None,
            "approvals_required": 1,
            "expires_at": (at + timedelta(minutes=30)).isoformat(),
        }
    if action == "approved":
        return {"approvals": 1, "required": 1, "quorum_reached": True}
    if action == "refused":
        why = rng.choice(WHY)
        return {"why": why, "attempted": "approve", "message": f"refused: {why}"}
    return {"note": f"{action}: deleted the lock from the table", "deleted": ["table"]}


def events(n: int, now: datetime, seed: int) -> Iterator[dict[str, Any]]:
    """N events in id order, `at` rising over the last DAYS days, with the chain computed as the bot does."""
    rng = random.Random(seed)
    who = names()
    actions = list(ACTION_WEIGHTS)
    weights = list(ACTION_WEIGHTS.values())
    start = now - timedelta(days=DAYS)
    step = timedelta(days=DAYS) / n
    prev_hash = GENESIS
    for i in range(1, n + 1):
        action = rng.choices(actions, weights)[0]
        state = None if action == "list" else rng.choice(who.states)
        at = start + step * i
        unlock = action not in {"status", "list"}
        fields = {
            "id": i,
            "at": at,
            "action": action,
            "actor": None if action in {"expired", "reconciled"} else rng.choice(who.actors),
            "state_address": state,
            "lock_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if state else None,
            "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if unlock else None,
            "channel": rng.choice(who.channels),
            "detail": detail_for(rng, action, state, at),
            "prev_hash": prev_hash,
        }
        fields["hash"] = prev_hash = event_hash(**fields)
        yield fields


def load(url: str, n: int, now: datetime, seed: int, history: int = 0) -> dict[str, float]:
    """COPY the events and the requests; the sequence and the statistics as a live database would have them."""
    import psycopg

    timings: dict[str, float] = {}
    conninfo = engine_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    started = time.perf_counter()
    with psycopg.connect(conninfo) as connection:
        with connection.cursor() as cursor:
            copy_sql = f"COPY audit_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN"
            with cursor.copy(copy_sql) as copy:
                for event in events(n, now, seed):
                    copy.write_row(tuple(json.dumps(event[c]) if c == "detail" else event[c] for c in EVENT_COLUMNS))
            cursor.execute("SELECT setval(pg_get_serial_sequence('audit_events', 'id'), %s)", (n,))
        timings["load_events_s"] = time.perf_counter() - started
        started = time.perf_counter()
        load_requests(connection, n // 100, now, seed)
        timings["load_requests_s"] = time.perf_counter() - started
        started = time.perf_counter()
        load_history(connection, history, now, seed)
        timings["load_history_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")
    timings["vacuum_analyze_s"] = time.perf_counter() - started
    return timings


def load_requests(connection: Any, count: int, now: datetime, seed: int) -> None:
    rng = random.Random(seed + 1)
    who = names()
    endings = list(REQUEST_ENDINGS)
    weights = list(REQUEST_ENDINGS.values())
    with connection.cursor() as cursor:
        requests = []
        approvals = []
        for _ in range(count):
            request_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            state = rng.choice(who.states)
            finished = now - timedelta(seconds=rng.randrange(DAYS * 86400))
            created = finished - timedelta(seconds=rng.randrange(60, 1800))
            lock_created = created - timedelta(seconds=rng.randrange(60, 3 * 86400))
            status = rng.choices(endings, weights)[0]
            requester, *approvers = rng.sample(who.actors, 3)
            approvers = approvers[: rng.choice((1, 1, 1, 2))] if status in {"executed", "superseded"} else []
            requests.append(
                (
                    request_id,
                    state,
                    raw_info(rng, state, lock_created),
                    requester,
                    status,
                    max(len(approvers), 1),
                    created,
                    created + timedelta(minutes=30),
                    finished,
                    # Approved requests were decided 1-20 minutes after they were made.
                    created + timedelta(seconds=rng.randrange(60, 1200)) if approvers else None,
                )
            )
            approvals += [(request_id, approver, created + timedelta(minutes=1)) for approver in approvers]
        columns = (
            "id, state_address, raw_info, requester, status, approvals_required, created_at, expires_at, "
            "finished_at, decided_at, in_table, in_lockfile, reason, lock_id"
        )
        with cursor.copy(f"COPY unlock_requests ({columns}) FROM STDIN") as copy:
            for row in requests:
                copy.write_row((*row, True, False, "stuck", "lock"))
        with cursor.copy("COPY unlock_approvals (request_id, approver, at) FROM STDIN") as copy:
            for approval in approvals:
                copy.write_row(approval)


HISTORY_ENDINGS = {"gone": 85, "released_hold": 10, "force_unlocked": 5}


def load_history(connection: Any, count: int, now: datetime, seed: int) -> None:
    """`count` lock history rows over DAYS days and every state: most gone by themselves, some holds and
    force-unlocks, hold times from a minute to days (log-uniform), the last few still open."""
    rng = random.Random(seed + 3)
    who = names()
    endings = list(HISTORY_ENDINGS)
    weights = list(HISTORY_ENDINGS.values())
    columns = (
        "lock_key, state_address, backend, lock_id, who, operation, created_at, first_seen_at, last_seen_at, "
        "gone_at, ended, request_id, stale"
    )
    with connection.cursor() as cursor, cursor.copy(f"COPY lock_history ({columns}) FROM STDIN") as copy:
        for i in range(count):
            state = rng.choice(who.states)
            lock_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            created = now - timedelta(seconds=rng.randrange(DAYS * 86400))
            first = created + timedelta(seconds=rng.randrange(0, 120))
            held = timedelta(seconds=int(math.exp(rng.uniform(math.log(60), math.log(5 * 86400)))))
            last = first + held
            gone: datetime | None = last + timedelta(seconds=rng.randrange(10, 300))
            ended: str | None = rng.choices(endings, weights)[0]
            if last >= now or gone is None or gone >= now:  # still held
                last, gone, ended = min(last, now), None, None
            request = str(uuid.UUID(int=rng.getrandbits(128), version=4)) if ended == "force_unlocked" else None
            copy.write_row(
                (
                    hashlib.sha256(f"{state}\nid:{lock_id}:{i}".encode()).hexdigest(),
                    state,
                    "acme",
                    lock_id,
                    f"{rng.choice(who.actors).lower()}@runner-{i % 40}",
                    rng.choice(("OperationTypeApply", "OperationTypePlan", "OperationTypeApply")),
                    created,
                    first,
                    last,
                    gone,
                    ended,
                    request,
                    last - created >= timedelta(hours=2),
                )
            )


# -- measuring ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    wall: float
    cpu: float
    maxrss_mib: float
    stdout: str


def measure(argv: Sequence[str]) -> Run:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with tempfile.TemporaryFile(mode="w+") as out, tempfile.TemporaryFile(mode="w+") as err:
        usage = launch(argv, env=env, stdout=out, stderr=err)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if usage is None or usage.returncode != 0:
        raise BenchError(f"{' '.join(argv[1:3])} failed: {stderr[-2000:]}")
    return Run(wall=usage.wall, cpu=usage.cpu, maxrss_mib=usage.maxrss_kib / 1024, stdout=stdout)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def time_queries(url: str, filters: list[AuditFilter]) -> tuple[list[float], list[int]]:
    engine = make_engine(url)
    sessions = make_sessions(engine)
    try:
        for where in filters[:5]:  # warm-up: connections, statement caches, the pages a live bot reads
            list(stream_events(sessions, where))
        times, counts = [], []
        for where in filters:
            started = time.perf_counter()
            rows = list(stream_events(sessions, where))
            times.append((time.perf_counter() - started) * 1000)
            counts.append(len(rows))
        return times, counts
    finally:
        engine.dispose()


def explain_analyze(sessions: sessionmaker[Session], where: AuditFilter) -> str:
    """EXPLAIN ANALYZE of the query as stream_events runs it: through a cursor, in a reading() session."""
    with reading(sessions) as session:
        connection = session.connection()
        compiled = where.statement().compile(dialect=connection.dialect)
        explained = f"EXPLAIN (ANALYZE, BUFFERS) DECLARE bench CURSOR FOR {compiled}"
        return "\n".join(str(row[0]) for row in connection.exec_driver_sql(explained, compiled.params))


def check_export(path: Path, expected_rows: int) -> None:
    """Every row there, in order, each linked to the one before; every 1,000th row's hash recomputed."""
    previous = GENESIS
    count = 0
    with path.open(newline="", encoding="utf-8") as export:
        for row in csv.DictReader(export):
            count += 1
            if row["prev_hash"] != previous:
                raise BenchError(f"export row {row['id']}: prev_hash does not link to the row before")
            if count % 1000 == 1:
                event = {name: row[name] or None for name in EVENT_COLUMNS if name != "hash"}
                event["id"] = int(row["id"])
                event["at"] = datetime.fromisoformat(row["at"].replace("Z", "+00:00"))
                event["detail"] = json.loads(row["detail"])
                if event_hash(**event) != row["hash"]:
                    raise BenchError(f"export row {row['id']}: hash does not match its contents")
            previous = row["hash"]
    if count != expected_rows:
        raise BenchError(f"the export has {count:,} rows, expected {expected_rows:,}")


def machine_with_database(url: str) -> dict[str, str]:
    engine = make_engine(url)
    with engine.connect() as connection:
        server = connection.execute(text("SHOW server_version")).scalar_one()
        shared_buffers = connection.execute(text("SHOW shared_buffers")).scalar_one()
    engine.dispose()
    facts = machine("SQLAlchemy", "psycopg")
    facts["postgresql"] = f"{server} (shared_buffers {shared_buffers}, same machine)"
    return facts


# -- children ----------------------------------------------------------------------------------------
def child_export(url: str, out: str) -> None:
    engine = make_engine(url)
    with open(out, "w", encoding="utf-8", newline="") as file:
        count = write_events(stream_events(make_sessions(engine), AuditFilter()), file, "csv")
    engine.dispose()
    print(json.dumps({"rows": count}))


def child_verify(url: str) -> None:
    engine = make_engine(url)
    started = time.perf_counter()
    result = verify_chain(make_sessions(engine))
    elapsed = time.perf_counter() - started
    engine.dispose()
    print(json.dumps({"ok": result.ok, "checked": result.checked, "problem": result.problem, "seconds": elapsed}))


# -- the run -----------------------------------------------------------------------------------------
def bench_url(admin: URL, name: str) -> str:
    return admin.set(database=name).render_as_string(hide_password=False)


def run(args: argparse.Namespace) -> dict[str, Any]:
    admin = engine_url(args.url)
    name = f"tflock_bench_audit_{os.getpid()}"
    url = bench_url(admin, name)
    admin_engine = make_engine(admin, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        return measure_all(url, args)
    finally:
        with admin_engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()


def measure_all(url: str, args: argparse.Namespace) -> dict[str, Any]:
    n = args.events
    now = datetime.now(UTC).replace(microsecond=0)
    results: dict[str, Any] = {"events": n, "machine": machine_with_database(url)}
    upgrade_to_head(url)
    results["history_rows"] = args.history
    print(f"loading {n:,} events, {n // 100:,} requests and {args.history:,} history rows…", file=sys.stderr)
    results.update(load(url, n, now, args.seed, args.history))

    engine = make_engine(url)
    sessions = make_sessions(engine)
    with sessions.begin() as session:  # the bot's own writer carries on from the loaded chain
        record_event(session, AuditAction.STATUS, at=now, actor="UBENCH", detail={"bench": True})
    with engine.connect() as connection:
        sizes = connection.execute(
            text(
                "SELECT pg_table_size('audit_events'), pg_indexes_size('audit_events'), "
                "pg_total_relation_size('audit_events')"
            )
        ).one()
    results["table_mib"], results["indexes_mib"], results["total_mib"] = (s / 2**20 for s in sizes)

    rng = random.Random(args.seed + 2)
    who = names()
    since = now - timedelta(days=90)
    by_state = [AuditFilter(state=rng.choice(who.states), since=since) for _ in range(args.queries)]
    times, counts = time_queries(url, by_state)
    results["state_90d"] = {
        "p50_ms": statistics.median(times),
        "p99_ms": percentile(times, 99),
        "max_ms": max(times),
        "rows_mean": statistics.mean(counts),
    }
    others = {
        "actor_90d": [AuditFilter(actor=rng.choice(who.actors), since=since) for _ in range(args.queries)],
        "executed_90d": [AuditFilter(action="executed", since=since)] * max(args.queries // 5, 3),
        "state_7d": [AuditFilter(state=rng.choice(who.states), since=now - timedelta(days=7))] * args.queries,
    }
    for label, filters in others.items():
        times, counts = time_queries(url, filters)
        results[label] = {
            "p50_ms": statistics.median(times),
            "p99_ms": percentile(times, 99),
            "rows_mean": statistics.mean(counts),
        }
    results["plans"] = {label: plan(sessions, filters[0]) for label, filters in others.items()}
    results["explain_analyze_state_90d"] = explain_analyze(sessions, by_state[0])
    summary_times = []
    for where in by_state:
        started = time.perf_counter()
        summary(sessions, AuditFilter(state=where.state), 20)
        summary_times.append((time.perf_counter() - started) * 1000)
    results["summary_state_20"] = {"p50_ms": statistics.median(summary_times), "p99_ms": percentile(summary_times, 99)}

    report_times = []
    for _ in range(5):
        started = time.perf_counter()
        report = build_report(sessions, since=since, until=now)
        report_times.append((time.perf_counter() - started) * 1000)
    results["report_90d"] = {"p50_ms": statistics.median(report_times), "executed": report.executed}

    build_figures(sessions, since=since, until=now)  # warm-up
    figure_times = []
    for _ in range(5):
        started = time.perf_counter()
        figures = build_figures(sessions, since=since, until=now)
        figure_times.append((time.perf_counter() - started) * 1000)
    results["figures_90d"] = {
        "p50_ms": statistics.median(figure_times),
        "max_ms": max(figure_times),
        "locks_seen": figures.locks_seen,
        "requests": figures.requests,
    }
    history_states = [rng.choice(who.states) for _ in range(args.queries)]
    for state in history_states[:5]:  # warm-up
        state_history(sessions, state)
    history_times = []
    for state in history_states:
        started = time.perf_counter()
        past = state_history(sessions, state)
        history_times.append((time.perf_counter() - started) * 1000)
        if args.history and not past:
            raise BenchError(f"no history for {state}")
    results["history_state"] = {"p50_ms": statistics.median(history_times), "p99_ms": percentile(history_times, 99)}
    with engine.connect() as connection:
        results["history_plan"] = "\n".join(
            row[0]
            for row in connection.execute(
                text(
                    "EXPLAIN ANALYZE SELECT * FROM lock_history WHERE state_address = :state "
                    "ORDER BY first_seen_at DESC, id DESC LIMIT 10"
                ),
                {"state": history_states[0]},
            )
        )
        results["history_mib"] = (
            connection.execute(text("SELECT pg_total_relation_size('lock_history')")).scalar_one() / 2**20
        )
    print(
        f"report 90d p50 {results['figures_90d']['p50_ms']:.0f} ms; "
        f"history p50 {results['history_state']['p50_ms']:.1f} ms",
        file=sys.stderr,
    )
    engine.dispose()
    if args.skip_export:
        return results

    with tempfile.TemporaryDirectory(prefix="audit-export-") as directory:
        out = Path(directory) / "audit.csv"
        export = measure([sys.executable, str(SCRIPT), "--child-export", url, str(out)])
        exported = json.loads(export.stdout)["rows"]
        size = out.stat().st_size
        started = time.perf_counter()
        check_export(out, n + 1)
        check_seconds = time.perf_counter() - started
    results["export"] = {
        "rows": exported,
        "wall_s": export.wall,
        "cpu_s": export.cpu,
        "peak_rss_mib": export.maxrss_mib,
        "file_mib": size / 2**20,
        "rows_per_s": exported / export.wall,
        "check_s": check_seconds,
    }

    verify = measure([sys.executable, str(SCRIPT), "--child-verify", url])
    verified = json.loads(verify.stdout)
    if not verified["ok"] or verified["checked"] != n + 1:
        raise BenchError(f"verify: {verified}")
    results["verify"] = {
        "rows": verified["checked"],
        "wall_s": verify.wall,
        "verify_s": verified["seconds"],
        "rows_per_s": verified["checked"] / verified["seconds"],
        "peak_rss_mib": verify.maxrss_mib,
        "cpu_s": verify.cpu,
    }
    return results


def show(results: dict[str, Any]) -> None:
    n = results["events"]
    state = results["state_90d"]
    export = results.get("export")
    verify = results.get("verify")
    query_ok = "PASS" if state["p50_ms"] < QUERY_P50_TARGET_MS else "MISS"
    print(f"\naudit_scale: {n:,} events (+1 by record_event), {n // 100:,} requests")
    print("machine: " + "; ".join(f"{k} {v}" for k, v in results["machine"].items()))
    print(
        f"load: events {results['load_events_s']:.1f} s (chain computed in Python + COPY), "
        f"requests {results['load_requests_s']:.1f} s, VACUUM ANALYZE {results['vacuum_analyze_s']:.1f} s; "
        f"table {results['table_mib']:.0f} MiB + indexes {results['indexes_mib']:.0f} MiB"
    )
    print()
    print("| measure | result | target |")
    print("|---|---|---|")
    print(
        f"| one state, 90 days (`stream_events`, {state['rows_mean']:.0f} rows avg) | "
        f"p50 **{state['p50_ms']:.1f} ms**, "
        f"p99 {state['p99_ms']:.1f} ms, max {state['max_ms']:.1f} ms | p50 < {QUERY_P50_TARGET_MS:.0f} ms: {query_ok} |"
    )
    for label in ("state_7d", "actor_90d", "executed_90d"):
        figures = results[label]
        print(
            f"| {label} ({figures['rows_mean']:.0f} rows avg) | p50 {figures['p50_ms']:.1f} ms, "
            f"p99 {figures['p99_ms']:.1f} ms | |"
        )
    figures = results["summary_state_20"]
    print(f"| Slack summary: one state, newest 20 | p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms | |")
    print(f"| report, 90 days | p50 {results['report_90d']['p50_ms']:.1f} ms | |")
    figures = results["figures_90d"]
    figures_ok = "PASS" if figures["p50_ms"] < REPORT_TARGET_MS else "MISS"
    print(
        f"| **whole report** (`build_figures`), 90 days ({figures['locks_seen']:,} locks seen, "
        f"{figures['requests']:,} requests) | p50 **{figures['p50_ms']:.0f} ms**, max {figures['max_ms']:.0f} ms "
        f"| < {REPORT_TARGET_MS:.0f} ms: {figures_ok} |"
    )
    history = results["history_state"]
    history_ok = "PASS" if history["p50_ms"] < HISTORY_P50_TARGET_MS else "MISS"
    print(
        f"| **history of one state** (`state_history`, last 10 of {results['history_rows']:,} rows) | "
        f"p50 **{history['p50_ms']:.1f} ms**, p99 {history['p99_ms']:.1f} ms | p50 < {HISTORY_P50_TARGET_MS:.0f} ms: "
        f"{history_ok} |"
    )
    if export is not None and verify is not None:
        rss_ok = "PASS" if export["peak_rss_mib"] < EXPORT_RSS_TARGET_MIB else "MISS"
        print(
            f"| CSV export of all {export['rows']:,} rows (child process) | {export['wall_s']:.1f} s wall, "
            f"{export['rows_per_s']:,.0f} rows/s, {export['file_mib']:.0f} MiB file, "
            f"peak RSS **{export['peak_rss_mib']:.0f} MiB** | < {EXPORT_RSS_TARGET_MIB:.0f} MiB: {rss_ok} |"
        )
        print(
            f"| `verify_chain` (child process) | {verify['rows_per_s']:,.0f} rows/s ({verify['verify_s']:.1f} s; "
            f"{verify['wall_s']:.1f} s with start-up), peak RSS {verify['peak_rss_mib']:.0f} MiB | |"
        )
        print(f"\nexport re-checked from the file in {export['check_s']:.1f} s (links, every 1,000th hash)")
    print(
        f"\nlock_history: {results['history_rows']:,} rows, {results['history_mib']:.0f} MiB with indexes, "
        f"loaded in {results['load_history_s']:.1f} s"
    )
    print("\nplan, history of one state:\n" + results["history_plan"])
    print("\nplan, one state, 90 days (as streamed, through a cursor):\n" + results["explain_analyze_state_90d"])
    for label, text_ in results["plans"].items():
        print(f"\nplan, {label}:\n{text_}")


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["--child-export"]:
        child_export(arguments[1], arguments[2])
        return 0
    if arguments[:1] == ["--child-verify"]:
        child_verify(arguments[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_url = os.environ.get("TFLOCK_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--url", default=default_url, help="any database on the PostgreSQL server to use")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--history", type=int, default=200_000, help="lock history rows (issue 15)")
    parser.add_argument(
        "--skip-export", action="store_true", help="leave out the CSV export and verify (issue 15 runs)"
    )
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(arguments)
    if make_url(args.url).get_backend_name() != "postgresql":
        parser.error("--url must be a PostgreSQL URL")
    try:
        results = run(args)
    except BenchError as exc:
        print(f"audit_scale: {exc}", file=sys.stderr)
        return 1
    show(results)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
