"""The force-unlock report, on a small hand-built trail whose figures are known."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.models import AuditAction
from bot.audit.writer import record_event
from bot.reports.report import AuditReport, LockAges, build_report, render_report
from bot.unlock.models import Approval, Status, UnlockRequest

PROD = "acme-tfstate/prod/network/terraform.tfstate"
STAGING = "acme-tfstate/staging/network/terraform.tfstate"
Q1 = {"since": datetime(2026, 1, 1, tzinfo=UTC), "until": datetime(2026, 4, 1, tzinfo=UTC)}


def info(created: str) -> str:
    return f'{{"ID":"{uuid.uuid4()}","Operation":"OperationTypeApply","Info":"","Who":"ci@runner",' + (
        f'"Version":"1.9.8","Created":"{created}","Path":"{PROD}"}}'
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def add_request(
    session: Session,
    state: str,
    status: Status,
    requester: str,
    approvers: list[str],
    raw_info: str,
    finished: str | None,
) -> None:
    finished_at = at(finished) if finished else None
    created_at = (finished_at or at("2026-03-20T00:00:00")) - timedelta(minutes=5)
    request = UnlockRequest(
        id=str(uuid.uuid4()),
        state_address=state,
        lock_id="lock",
        raw_info=raw_info,
        in_table=True,
        in_lockfile=False,
        requester=requester,
        reason="stuck",
        status=status,
        approvals_required=len(approvers) or 1,
        created_at=created_at,
        expires_at=created_at + timedelta(minutes=30),
        # Approved requests were decided a minute per approval after they were made.
        decided_at=created_at + timedelta(minutes=len(approvers)) if approvers else None,
        finished_at=finished_at,
    )
    session.add(request)
    session.flush()
    for approver in approvers:
        session.add(Approval(request_id=request.id, approver=approver, at=created_at + timedelta(minutes=1)))


# state, final status, requester, approvers, the lock's Created (None: unreadable Info), when it ended
REQUESTS = [
    # Executed in the first quarter: lock ages 2h, 1d 6h, unreadable, 30m.
    (PROD, Status.EXECUTED, "UALICE", ["UBOB"], "2026-01-10T08:00:00Z", "2026-01-10T10:00"),
    (
        PROD,
        Status.EXECUTED,
        "UALICE",
        ["UBOB", "UCAROL"],
        "2026-02-01T00:00:00.123456789Z",
        "2026-02-02T06:00:00.123456",
    ),
    (STAGING, Status.EXECUTED, "UBOB", ["UCAROL"], None, "2026-02-15T12:00"),
    (STAGING, Status.EXECUTED, "UCAROL", ["UALICE"], "2026-03-01T01:00:00+01:00", "2026-03-01T00:30"),
    # Just outside the window, on both sides.
    (PROD, Status.EXECUTED, "UDAVE", ["UEVE"], "2025-12-31T00:00:00Z", "2025-12-31T23:59"),
    (PROD, Status.EXECUTED, "UDAVE", ["UEVE"], "2026-03-31T00:00:00Z", "2026-04-01T00:00"),
    # Other endings, and one still waiting.
    (PROD, Status.EXPIRED, "UDAVE", [], "2026-03-10T00:00:00Z", "2026-03-10T01:00"),
    (STAGING, Status.REJECTED, "UDAVE", [], "2026-03-11T00:00:00Z", "2026-03-11T01:00"),
    (PROD, Status.SUPERSEDED, "UEVE", ["UALICE"], "2026-02-20T00:00:00Z", "2026-02-20T01:00"),
    (PROD, Status.PENDING, "UEVE", [], "2026-03-30T00:00:00Z", None),
]
REFUSALS = [
    ("2026-02-01T00:00", PROD, {"why": "self_approval"}),
    ("2026-02-02T00:00", STAGING, {"why": "self_approval"}),
    ("2026-02-03T00:00", STAGING, {"why": "not_an_approver"}),
    ("2026-02-04T00:00", PROD, {}),
    ("2025-12-31T00:00", PROD, {"why": "expired"}),
]


@pytest.fixture
def trail(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        for state, status, requester, approvers, created, finished in REQUESTS:
            raw_info = info(created) if created else "not JSON"
            add_request(session, state, status, requester, approvers, raw_info, finished)
        for when, state, detail in REFUSALS:
            record_event(session, AuditAction.REFUSED, at=at(when), actor="UX", state_address=state, detail=detail)


def test_report_for_every_state(sessions: sessionmaker[Session], trail: None) -> None:
    report = build_report(sessions, **Q1)
    assert report == AuditReport(
        since=Q1["since"],
        until=Q1["until"],
        state=None,
        force_unlocks={PROD: {"2026-01": 1, "2026-02": 1}, STAGING: {"2026-02": 1, "2026-03": 1}},
        requesters={"UALICE": 2, "UBOB": 1, "UCAROL": 1},
        approvers={"UBOB": 2, "UCAROL": 2, "UALICE": 1},
        lock_age=LockAges(
            count=3,
            unreadable=1,
            minimum=timedelta(minutes=30),
            median=timedelta(hours=2),
            maximum=timedelta(days=1, hours=6),
        ),
        outcomes={"executed": 4, "expired": 1, "rejected": 1, "superseded": 1},
        refusals={"self_approval": 2, "(not given)": 1, "not_an_approver": 1},
        expired=1,
    )
    assert (report.executed, report.months) == (4, ["2026-01", "2026-02", "2026-03"])


def test_report_for_one_state(sessions: sessionmaker[Session], trail: None) -> None:
    report = build_report(sessions, state=PROD, **Q1)
    assert report.force_unlocks == {PROD: {"2026-01": 1, "2026-02": 1}}
    assert (report.requesters, report.approvers) == ({"UALICE": 2}, {"UBOB": 2, "UCAROL": 1})
    assert report.lock_age == LockAges(2, 0, timedelta(hours=2), timedelta(hours=16), timedelta(days=1, hours=6))
    assert report.outcomes == {"executed": 2, "expired": 1, "superseded": 1}
    assert report.refusals == {"(not given)": 1, "self_approval": 1}


def test_report_as_text(sessions: sessionmaker[Session], trail: None) -> None:
    text = render_report(build_report(sessions, **Q1))
    assert text.splitlines() == [
        "Force-unlock report for all states, 2026-01-01 00:00 to 2026-04-01 00:00 UTC",
        "",
        "Force-unlocks executed: 4",
        "  STATE                                           2026-01  2026-02  2026-03    TOTAL",
        "  acme-tfstate/prod/network/terraform.tfstate           1        1        0        2",
        "  acme-tfstate/staging/network/terraform.tfstate        0        1        1        2",
        "Requested by: UALICE 2, UBOB 1, UCAROL 1",
        "Approved by: UBOB 2, UCAROL 2, UALICE 1",
        "Lock age at release: min 30m, median 2h, max 1d 6h over 3 release(s); 1 without a readable Created",
        "How requests ended: executed 4, expired 1, rejected 1, superseded 1",
        "Expired requests: 1",
        "Refusals: self_approval 2, (not given) 1, not_an_approver 1",
    ]


def test_an_empty_report(sessions: sessionmaker[Session]) -> None:
    report = build_report(sessions, **Q1)
    assert (report.executed, report.lock_age, report.refusals) == (0, LockAges(0, 0, None, None, None), {})
    text = render_report(report)
    assert "Force-unlocks executed: 0\nRequested by: none" in text
    assert "Lock age at release: no release with a readable Created time" in text
