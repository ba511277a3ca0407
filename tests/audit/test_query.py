"""Reading the audit trail: filters, table/CSV/JSON, a CSV that round-trips and re-checks, constant memory,
the Slack summary and CSV file, and indexes the planner uses for the filtered queries."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.chain import event_hash
from bot.audit.models import AuditAction, AuditRecord
from bot.audit.query import (
    COLUMNS,
    FORMULA_STARTS,
    AuditFilter,
    ExportTooLarge,
    as_row,
    export_csv,
    parse_action,
    parse_actor,
    parse_moment,
    plan,
    stream_events,
    summary,
    write_events,
)
from bot.audit.writer import record_event
from bot.errors import BadInput
from tests.audit.trail import append_many, fields

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
PROD = "acme-tfstate/prod/network/terraform.tfstate"
STAGING = "acme-tfstate/staging/network/terraform.tfstate"


@pytest.fixture
def trail(sessions: sessionmaker[Session]) -> list[AuditRecord]:
    """Ten events over 100 days, oldest first, with untrusted text among them."""
    events = [
        (100, AuditAction.REQUESTED, "UALICE", PROD, {"reason": "runner died", "raw_info": '{"ID":"1"}'}),
        (95, AuditAction.APPROVED, "UBOB", PROD, {"approvals": 1}),
        (95, AuditAction.EXECUTED, "UBOB", PROD, {"note": "deleted", "deleted": ["table"]}),
        (30, AuditAction.REFUSED, "UALICE", STAGING, {"why": "self_approval", "message": "no, not you"}),
        (10, AuditAction.STATUS, "UCAROL", STAGING, {"locked": True}),
        (7, AuditAction.LIST, "UCAROL", None, {"count": 3}),
        (6.5, AuditAction.REQUESTED, "UBOB", PROD, {"reason": 'quote " comma , newline\n=cmd|\x1b[31m é 😀'}),
        (3, AuditAction.REJECTED, "UALICE", PROD, {"note": "not yet"}),
        (1, AuditAction.STATUS, "UDAVE", PROD, {"locked": False}),
        (0.5, AuditAction.EXPIRED, None, PROD, {"approvals": 0, "required": 1}),
    ]
    with sessions.begin() as session:
        for days, action, actor, state, detail in events:
            record_event(
                session,
                action,
                at=NOW - timedelta(days=days),
                actor=actor,
                state_address=state,
                lock_id="3f8a1c2e" if state else None,
                request_id="5b0c0f1e" if action is not AuditAction.STATUS else None,
                channel="CINCIDENT",
                detail=detail,
            )
    return list(stream_events(sessions, AuditFilter()))


def ids(records: list[AuditRecord]) -> list[int]:
    return [r.id for r in records]


def matching(sessions: sessionmaker[Session], **conditions: object) -> list[AuditRecord]:
    return list(stream_events(sessions, AuditFilter(**conditions)))  # type: ignore[arg-type]


def test_no_filter_is_every_event_in_recorded_order(trail: list[AuditRecord]) -> None:
    assert len(trail) == 10 and ids(trail) == sorted(ids(trail))
    assert trail[0].at == NOW - timedelta(days=100) and trail[0].at.tzinfo is not None


def test_filters(sessions: sessionmaker[Session], trail: list[AuditRecord]) -> None:
    t = trail
    assert matching(sessions, state=PROD) == [t[0], t[1], t[2], t[6], t[7], t[8], t[9]]
    assert matching(sessions, actor="UALICE") == [t[0], t[3], t[7]]
    assert matching(sessions, action="requested") == [t[0], t[6]]
    assert matching(sessions, since=NOW - timedelta(days=7)) == [t[5], t[6], t[7], t[8], t[9]]  # inclusive
    assert matching(sessions, until=NOW - timedelta(days=7)) == t[:5]  # exclusive
    last_quarter = {"since": NOW - timedelta(days=96), "until": NOW - timedelta(days=5)}
    assert matching(sessions, state=PROD, **last_quarter) == [t[1], t[2], t[6]]
    assert matching(sessions, state=PROD, action="executed", actor="UBOB", since=NOW - timedelta(days=90)) == []
    assert matching(sessions, state="acme-tfstate/prod") == []  # exact addresses, not prefixes


def test_filter_times_must_make_sense() -> None:
    with pytest.raises(BadInput, match=r"since \(2026-06-30 12:00 UTC\) must be before until"):
        AuditFilter(since=NOW, until=NOW)
    with pytest.raises(ValueError, match="aware"):
        AuditFilter(since=datetime(2026, 1, 1))


def test_newest_first_and_summary(sessions: sessionmaker[Session], trail: list[AuditRecord]) -> None:
    assert summary(sessions, AuditFilter(state=PROD), limit=3) == [trail[9], trail[8], trail[7]]
    assert summary(sessions, AuditFilter(actor="UNOBODY")) == []
    assert len(summary(sessions, AuditFilter())) == 10


def test_parsing_what_people_type() -> None:
    assert parse_moment("7d", NOW) == NOW - timedelta(days=7)
    assert parse_moment("1h30m", NOW) == NOW - timedelta(minutes=90)
    assert parse_moment("2026-04-01", NOW) == datetime(2026, 4, 1, tzinfo=UTC)
    assert parse_moment("2026-04-01T12:30Z", NOW) == datetime(2026, 4, 1, 12, 30, tzinfo=UTC)
    assert parse_moment("2026-04-01T14:30+02:00", NOW) == datetime(2026, 4, 1, 12, 30, tzinfo=UTC)
    with pytest.raises(BadInput, match=r"--since 'yesterday' is neither a duration \(7d, 12h, 1h30m\) nor a date"):
        parse_moment("yesterday", NOW, what="--since")
    with pytest.raises(BadInput, match="--until '9999999d'"):
        parse_moment("9999999d", NOW, what="--until")
    assert parse_action(" Executed ") == "executed"
    with pytest.raises(BadInput, match="'deleted' is not an audit action; use one of requested, approved"):
        parse_action("deleted")
    assert [parse_actor(t) for t in ("U0123ABCD", "@U0123ABCD", "<@U0123ABCD|alice>", "<@W0123ABCD>")] == [
        "U0123ABCD",
        "U0123ABCD",
        "U0123ABCD",
        "W0123ABCD",
    ]
    with pytest.raises(BadInput, match="not a Slack user ID"):
        parse_actor("@alice")


# -- formats ----------------------------------------------------------------------------------------------
def written(records: list[AuditRecord], fmt: str) -> tuple[str, int]:
    out = io.StringIO()
    count = write_events(iter(records), out, fmt)
    return out.getvalue(), count


def from_csv_row(row: dict[str, str]) -> AuditRecord:
    values: dict[str, object] = {name: row[name] or None for name in COLUMNS}
    values["id"] = int(row["id"])
    values["at"] = datetime.fromisoformat(row["at"].replace("Z", "+00:00"))
    values["detail"] = json.loads(row["detail"])
    return AuditRecord(**values)  # type: ignore[arg-type]


def test_csv_round_trips(trail: list[AuditRecord]) -> None:
    text_, count = written(trail, "csv")
    assert count == 10
    rows = list(csv.DictReader(io.StringIO(text_, newline="")))
    header = "id,at,action,actor,state_address,lock_id,request_id,channel,detail,prev_hash,hash"
    assert tuple(rows[0]) == COLUMNS == tuple(header.split(","))
    assert [from_csv_row(row) for row in rows] == trail
    assert rows[0]["at"] == "2026-03-22T12:00:00.000000Z"
    assert rows[9]["actor"] == "" and rows[5]["state_address"] == ""  # NULL is an empty cell


def test_each_csv_row_re_checks_against_its_hash(trail: list[AuditRecord]) -> None:
    for row in csv.DictReader(io.StringIO(written(trail, "csv")[0], newline="")):
        record = from_csv_row(row)
        fields_ = {name: getattr(record, name) for name in COLUMNS if name != "hash"}
        assert event_hash(**fields_) == row["hash"]


def test_the_documented_re_check_script_accepts_an_export_and_rejects_an_edit(
    trail: list[AuditRecord], tmp_path: Path
) -> None:
    doc = (REPO / "docs" / "audit.md").read_text(encoding="utf-8")
    [script] = re.findall(r"^```python\n(.*?)^```", doc, flags=re.MULTILINE | re.DOTALL)
    (tmp_path / "recheck.py").write_text(script, encoding="utf-8")
    export = tmp_path / "trail.csv"
    export.write_text(written(trail, "csv")[0], encoding="utf-8", newline="")

    def recheck() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(tmp_path / "recheck.py"), str(export)], capture_output=True, text=True, check=False
        )

    good = recheck()
    assert (good.returncode, good.stdout.strip()) == (0, "ok: every row matches its hash and the rows are linked")
    export.write_text(export.read_text(encoding="utf-8").replace("UBOB", "UEVE", 1), encoding="utf-8")
    bad = recheck()
    assert bad.returncode == 1 and bad.stderr.strip() == f"row {trail[1].id}: its hash does not match its contents"


def test_json_is_an_array_of_every_field(trail: list[AuditRecord]) -> None:
    text_, count = written(trail, "json")
    document = json.loads(text_)
    assert count == 10 and document == [as_row(r) for r in trail]
    assert document[6]["detail"]["reason"].endswith("é 😀") and "é 😀" in text_  # UTF-8, not escaped
    assert set(document[0]) == set(COLUMNS) and document[0]["at"] == "2026-03-22T12:00:00.000000Z"
    assert len(text_.splitlines()) == 12  # one event per line, between [ and ]
    assert json.loads(written([], "json")[0]) == []


def test_table_is_for_people(trail: list[AuditRecord]) -> None:
    text_, count = written(trail, "table")
    lines = text_.splitlines()
    assert count == 10 and len(lines) == 11
    assert lines[0].split() == ["ID", "AT", "(UTC)", "ACTION", "ACTOR", "STATE", "NOTE"]
    state = "…state/staging/network/terraform.tfstate"
    assert re.fullmatch(rf"\s*{trail[3].id}  2026-05-31 12:00:00  refused\s+UALICE\s+{state}  self_approval", lines[4])
    assert "\x1b" not in text_ and "\\u001b[31m" in lines[7] and "\\u000a" in lines[7]  # no terminal escapes
    assert "tflock" in lines[10]  # the bot itself
    assert written([], "table")[0].endswith("(no matching events)\n")
    with pytest.raises(BadInput, match="'xml' is not an output format; use one of table, csv, json"):
        write_events([], io.StringIO(), "xml")


def test_slack_csv_file(sessions: sessionmaker[Session], trail: list[AuditRecord]) -> None:
    out = io.BytesIO()
    count = export_csv(sessions, AuditFilter(state=STAGING), out, max_rows=10, max_bytes=10_000)
    assert count == 2
    assert out.getvalue() == written([trail[3], trail[4]], "csv")[0].encode("utf-8")


def test_slack_csv_file_has_a_cap_that_points_at_the_cli(
    sessions: sessionmaker[Session], trail: list[AuditRecord]
) -> None:
    with pytest.raises(ExportTooLarge, match="tflock-bot audit query --format csv"):
        export_csv(sessions, AuditFilter(), io.BytesIO(), max_rows=len(trail) - 1, max_bytes=10_000_000)
    assert export_csv(sessions, AuditFilter(), io.BytesIO(), max_rows=len(trail), max_bytes=10_000_000) == len(trail)


def test_an_export_in_progress_does_not_hold_up_the_bot(
    sessions: sessionmaker[Session], trail: list[AuditRecord]
) -> None:
    """The reader sees one snapshot; on SQLite it is a WAL reader, not a second writer holding the lock."""
    export = stream_events(sessions, AuditFilter(), batch=2)
    assert next(export) == trail[0]
    started = time.monotonic()
    with sessions.begin() as session:
        record_event(session, AuditAction.LIST, at=NOW, actor="UBOT")
    assert time.monotonic() - started < 2
    assert list(export) == trail[1:]  # the export's snapshot predates the new event
    assert len(list(stream_events(sessions, AuditFilter()))) == 11


# -- at scale -----------------------------------------------------------------------------------------------
def test_streaming_memory_stays_flat(sessions: sessionmaker[Session]) -> None:
    """4,000 events of ~2 kB each (8 MB) go through a CSV writer while at most a few batches are held."""
    big = "x" * 2000
    append_many(sessions, (fields(i, detail={"raw_info": big, "n": i}) for i in range(4000)))

    class Counting:
        size = 0

        def write(self, text_: str, /) -> int:
            self.size += len(text_)
            return len(text_)

    out = Counting()
    tracemalloc.start()
    try:
        count = write_events(stream_events(sessions, AuditFilter(), batch=100), out, "csv")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 4000 and out.size > 8_000_000
    assert peak < 2_000_000, f"peak {peak:,} bytes while streaming {out.size:,}"


@pytest.mark.parametrize(
    ("where", "index"),
    [
        (AuditFilter(state=PROD, since=NOW - timedelta(days=90)), "ix_audit_events_state_address_at"),
        (AuditFilter(actor="U7", since=NOW - timedelta(days=90)), "ix_audit_events_actor_at"),
        (AuditFilter(action="executed", since=NOW - timedelta(days=90)), "ix_audit_events_action_at"),
    ],
    ids=["state", "actor", "action"],
)
def test_the_planner_uses_an_index_for_each_filter(
    sessions: sessionmaker[Session], engine: Engine, where: AuditFilter, index: str
) -> None:
    """A year of events where each state, actor and action is a small share of the rows, as in production."""
    states = [f"acme-tfstate/svc-{i}/terraform.tfstate" for i in range(200)]
    actions = [action.value for action in AuditAction]
    append_many(
        sessions,
        (
            fields(
                i,
                at=NOW - timedelta(days=365) + timedelta(minutes=50 * i),
                action=actions[i % len(actions)],
                actor=f"U{i % 250}",
                state_address=PROD if i % 400 == 0 else states[i % 200],
            )
            for i in range(10_000)
        ),
    )
    with engine.begin() as connection:
        connection.execute(text("ANALYZE"))
    assert index in plan(sessions, where)
    assert index in plan(sessions, where, newest_first=True)


def test_the_slack_csv_is_spreadsheet_safe_and_the_cli_csv_canonical(sessions: sessionmaker[Session]) -> None:
    """Whoever can write the lock table chooses the lock ID: a formula must not reach the auditor's spreadsheet."""
    hostile = ['=HYPERLINK("http://evil.test","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    with sessions.begin() as session:
        for n, lock_id in enumerate(hostile):
            record_event(
                session, AuditAction.STATUS, at=NOW, actor="UALICE", state_address=f"{PROD}{n}", lock_id=lock_id
            )
    out = io.BytesIO()
    export_csv(sessions, AuditFilter(), out, max_rows=100, max_bytes=1_000_000)
    slack_rows = list(csv.DictReader(io.StringIO(out.getvalue().decode("utf-8"))))
    assert [row["lock_id"] for row in slack_rows] == ["'" + lock_id for lock_id in hostile]
    assert all(not cell.startswith(FORMULA_STARTS) for row in slack_rows for cell in row.values())
    assert slack_rows[0]["state_address"] == f"{PROD}0"  # everything else as it was

    canonical, _ = written(
        list(stream_events(sessions, AuditFilter())), "csv"
    )  # what `audit query --format csv` writes
    cli_rows = list(csv.DictReader(io.StringIO(canonical)))
    assert [row["lock_id"] for row in cli_rows] == hostile
