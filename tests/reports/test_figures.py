"""The report's figures and charts on a small fixed dataset whose every figure is computed by hand.

Requests and refusals are those of test_report.py; the lock history below is added to them.
"""

from __future__ import annotations

import json
import struct
import zlib
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.history.models import Ending, LockHistory
from bot.reports.charts import APPROVAL_TITLE, HOLD_TITLE, WEEKLY_TITLE, render_charts
from bot.reports.report import StateBlocking, Week, build_figures, figures_csv, percentile, render_figures
from tests.reports.test_report import PROD, Q1, STAGING, at, trail

__all__ = ["trail"]
HOLD = Ending.RELEASED_HOLD
DEV = "acme-tfstate/dev/network/terraform.tfstate"
# Kept as an artifact (artifacts/ is not tracked); docs/img/report-weekly.png, shown in the README, is a copy.
ARTIFACT = Path(__file__).resolve().parents[2] / "artifacts" / "reports" / "report-weekly.png"

# state, Created, first seen, last seen, seen gone, how it ended, ever stale
HISTORY = [
    (PROD, "2026-01-10T08:00", "2026-01-10T08:05", "2026-01-10T09:59", "2026-01-10T10:00", Ending.FORCE_UNLOCKED, True),
    (PROD, None, "2026-02-10T00:00", "2026-02-10T03:00", "2026-02-10T03:10", Ending.GONE, True),
    (STAGING, "2026-03-02T10:00", "2026-03-02T10:01", "2026-03-02T10:30", "2026-03-02T10:40", Ending.GONE, False),
    (
        STAGING,
        "2026-03-05T00:00",
        "2026-03-05T00:00",
        "2026-03-05T01:00",
        "2026-03-05T01:00",
        Ending.RELEASED_HOLD,
        False,
    ),
    (PROD, "2025-12-30T00:00", "2025-12-30T00:00", "2025-12-30T05:00", None, None, True),  # first seen before Q1
    (DEV, "2026-03-30T00:00", "2026-03-30T00:00", "2026-03-31T00:00", None, None, True),  # still held
]


@pytest.fixture
def history(sessions: sessionmaker[Session], trail: None) -> None:
    with sessions.begin() as session:
        for i, (state, created, first, last, gone, ended, stale) in enumerate(HISTORY):
            session.add(
                LockHistory(
                    lock_key=f"{i:064d}",
                    state_address=state,
                    backend="acme",
                    lock_id=f"lock-{i}",
                    who="ci@runner",
                    operation="OperationTypeApply",
                    created_at=at(created) if created else None,
                    first_seen_at=at(first),
                    last_seen_at=at(last),
                    gone_at=at(gone) if gone else None,
                    ended=ended.value if ended else None,
                    stale=stale,
                )
            )


def test_headline_figures(sessions: sessionmaker[Session], history: None) -> None:
    figures = build_figures(sessions, **Q1)
    assert (figures.locks_seen, figures.stale_locks, figures.holds) == (5, 3, 1)
    # Made in Q1: every request but the one made on 2025-12-31 (the one finished 2026-04-01 was made 03-31).
    assert figures.requests == 9
    assert figures.force_unlock.executed == 4
    assert (figures.release_p50, figures.release_p95) == (timedelta(minutes=5), timedelta(minutes=5))
    # Approvals decided in Q1: 1, 2, 1, 1 (executed), 1 (executed 04-01, approved 03-31), 1 (superseded) minutes.
    assert figures.approval_times == tuple(timedelta(minutes=m) for m in (1, 1, 1, 1, 1, 2))
    assert (figures.approval_p50, figures.approval_p95) == (timedelta(minutes=1), timedelta(minutes=2))
    assert figures.refusals == 4
    assert figures.blocking == (
        StateBlocking(PROD, 2, 2, timedelta(hours=5)),  # 2h exact (force-unlocked) + at least 3h
        StateBlocking(DEV, 1, 1, timedelta(days=1)),
        StateBlocking(STAGING, 2, 0, timedelta(hours=1, minutes=30)),  # at least 30m + 1h exact (hold)
    )
    # Held 30m, 1h, 2h, 3h and 1d, in buckets starting at 0, 15m, 1h, 2h, 4h, 8h, 1d, 3d, 7d.
    assert figures.hold_buckets == (0, 1, 1, 2, 0, 0, 1, 0, 0)
    mondays = [date(2025, 12, 29) + timedelta(weeks=n) for n in range(14)]
    stale = {date(2026, 1, 5): 1, date(2026, 2, 9): 1, date(2026, 3, 30): 1}
    unlocks = {date(2026, 1, 5): 1, date(2026, 2, 2): 1, date(2026, 2, 9): 1, date(2026, 2, 23): 1}
    assert figures.weeks == tuple(Week(m, stale.get(m, 0), unlocks.get(m, 0)) for m in mondays)


def test_one_state(sessions: sessionmaker[Session], history: None) -> None:
    figures = build_figures(sessions, state=STAGING, **Q1)
    assert (figures.locks_seen, figures.stale_locks, figures.holds, figures.requests) == (2, 0, 1, 3)
    assert figures.blocking == (StateBlocking(STAGING, 2, 0, timedelta(hours=1, minutes=30)),)


def test_percentile_is_nearest_rank() -> None:
    values = [timedelta(minutes=m) for m in range(1, 21)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (
        timedelta(minutes=10),
        timedelta(minutes=19),
        timedelta(minutes=20),
    )
    assert percentile([], 50) is None and percentile(values[:1], 95) == timedelta(minutes=1)


def test_text_json_and_csv(sessions: sessionmaker[Session], history: None) -> None:
    figures = build_figures(sessions, **Q1)
    text = render_figures(figures)
    assert text.startswith("Locks seen: 5 (stale: 3)\nHolds released: 1\nForce-unlock requests: 9; executed 4")
    assert "Request to release: p50 5m, p95 5m" in text and "Refusals: 4" in text
    assert f"  {PROD}: 2 lock(s), 2 stale, held at least 5h in all" in text
    document = figures.as_json()
    assert document["request_to_approval_seconds"] == {"p50": 60, "p95": 120}
    assert document["blocking_states"][0] == {"state": PROD, "locks": 2, "stale": 2, "held_seconds": 5 * 3600}
    json.dumps(document)  # every value is JSON
    rows = figures_csv(figures).splitlines()
    assert rows[0] == "figure,key,value"
    assert "locks_seen,,5" in rows and "top_requesters,UALICE,2" in rows
    assert "weeks,[1].stale_locks,1" in rows


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at_byte = [], 8
    while at_byte < len(data):
        (length,) = struct.unpack(">I", data[at_byte : at_byte + 4])
        kind = data[at_byte + 4 : at_byte + 8]
        body = data[at_byte + 8 : at_byte + 8 + length]
        (crc,) = struct.unpack(">I", data[at_byte + 8 + length : at_byte + 12 + length])
        assert zlib.crc32(kind + body) == crc, "a corrupt PNG chunk"
        chunks.append((kind, body))
        at_byte += 12 + length
    return chunks


def test_charts_are_pngs_with_their_titles(sessions: sessionmaker[Session], history: None) -> None:
    charts = render_charts(build_figures(sessions, **Q1))
    assert [chart.title for chart in charts] == [WEEKLY_TITLE, HOLD_TITLE, APPROVAL_TITLE]
    for chart in charts:
        chunks = png_chunks(chart.png)
        assert chunks[-1][0] == b"IEND"
        width, height, depth, colour = struct.unpack(">IIBB", chunks[0][1][:10])
        assert (width, height) == (800, 400) and depth == 8
        assert colour in {2, 6}  # RGB or RGBA
        texts: dict[str, Any] = dict(b.split(b"\0", 1) for k, b in chunks if k == b"tEXt")  # type: ignore[misc]
        assert texts[b"Title"] == chart.title.encode()
        assert 5_000 < len(chart.png) < 300_000
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)  # the weekly chart of this dataset, to look at
    ARTIFACT.write_bytes(charts[0].png)


def test_an_empty_report_still_draws(sessions: sessionmaker[Session]) -> None:
    figures = build_figures(sessions, **Q1)
    assert (figures.locks_seen, figures.requests, figures.release_p50) == (0, 0, None)
    assert len(render_charts(figures)) == 3
    assert "States that block most:\n  none" in render_figures(figures)


def test_cli_report_formats_and_charts(
    migrated_url: str, history: None, tmp_path: Path, capsys: Any, monkeypatch: Any
) -> None:
    from bot.cli import main

    monkeypatch.setenv("TFLOCK_DATABASE_URL", migrated_url)
    monkeypatch.setenv("TFLOCK_S3_BUCKETS", "acme-tfstate")
    window = ["--since", "2026-01-01", "--until", "2026-04-01"]
    assert main(["audit", "report", *window, "--format", "json", "--chart", str(tmp_path / "charts")]) == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["locks_seen"], document["stale_locks"], document["force_unlock_requests"]) == (5, 3, 9)
    assert sorted(p.name for p in (tmp_path / "charts").iterdir()) == [
        "tflock-approval-times.png",
        "tflock-hold-times.png",
        "tflock-weekly.png",
    ]
    assert main(["audit", "report", *window, "--format", "csv"]) == 0
    assert "holds,,1" in capsys.readouterr().out.splitlines()
    assert main(["audit", "report", *window]) == 0
    assert capsys.readouterr().out.startswith("Locks seen: 5 (stale: 3)")
    assert main(["audit", "report", "--since", "whenever"]) == 2
