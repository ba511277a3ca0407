"""The report managers ask for (`tflock-bot audit report --since 90d`, `/tflock report`), every figure
defined in docs/audit.md.

Two halves. `build_report`: force-unlocks per state and month, who asked and who approved, how old the
locks were when released, how other requests ended, refusals by reason — counted by the database (GROUP
BY) from `unlock_requests` and, for refusals, which belong to no request, the audit trail. `build_figures`
adds the lock history (bot/history): locks seen, stale locks, holds, the states that block most, request →
release and request → approval times, and the weekly series the charts draw (bot/reports/charts.py).

It reads requests, approvals, the history and the audit trail, so it sits above all of them.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, extract, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.models import AuditAction, AuditEvent
from bot.db import DatabaseUnavailable, describe_error, reading
from bot.durations import format_age
from bot.history.models import Ending, LockHistory
from bot.history.query import EXACT_ENDINGS
from bot.locks.facts import printable
from bot.locks.lockinfo import LockInfoError, parse_lock_info
from bot.unlock.models import Approval, Status, UnlockRequest

UNKNOWN_WHY = "(not given)"


@dataclass(frozen=True)
class LockAges:
    """How long the released locks had been held (Info's Created to the release)."""

    count: int
    unreadable: int  # released locks whose Info had no readable Created
    minimum: timedelta | None
    median: timedelta | None
    maximum: timedelta | None


@dataclass(frozen=True)
class AuditReport:
    since: datetime
    until: datetime
    state: str | None  # the one state reported on, or None for all
    force_unlocks: dict[str, dict[str, int]]  # state address → {"YYYY-MM": force-unlocks executed}, busiest first
    requesters: dict[str, int]  # executed force-unlocks by the person who asked, most first
    approvers: dict[str, int]  # approvals counted towards an executed force-unlock, by approver, most first
    lock_age: LockAges
    outcomes: dict[str, int]  # requests that ended in the window, by how they ended
    refusals: dict[str, int]  # refused attempts (self-approval, not an approver, expired…) by why
    expired: int  # requests that expired in the window without enough approvals

    @property
    def executed(self) -> int:
        return sum(sum(months.values()) for months in self.force_unlocks.values())

    @property
    def months(self) -> list[str]:
        return sorted({month for months in self.force_unlocks.values() for month in months})


def build_report(
    sessions: sessionmaker[Session], *, since: datetime, until: datetime, state: str | None = None
) -> AuditReport:
    """Everything that ended in [since, until) (UTC), for every state or for one."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("report times are aware UTC datetimes")
    ended = [UnlockRequest.finished_at >= since, UnlockRequest.finished_at < until]
    if state is not None:
        ended.append(UnlockRequest.state_address == state)
    executed = [*ended, UnlockRequest.status == Status.EXECUTED]
    try:
        with reading(sessions) as session:
            month = _month(session, UnlockRequest.finished_at)
            per_state_month = session.execute(
                select(UnlockRequest.state_address, month, func.count())
                .where(*executed)
                .group_by(UnlockRequest.state_address, month)
            ).all()
            requesters = session.execute(
                select(UnlockRequest.requester, func.count()).where(*executed).group_by(UnlockRequest.requester)
            ).all()
            approvers = session.execute(
                select(Approval.approver, func.count())
                .join(UnlockRequest, Approval.request_id == UnlockRequest.id)
                .where(*executed)
                .group_by(Approval.approver)
            ).all()
            outcomes = session.execute(
                select(UnlockRequest.status, func.count()).where(*ended).group_by(UnlockRequest.status)
            ).all()
            refusals = session.execute(_refusals(since, until, state)).all()
            releases = session.execute(
                select(UnlockRequest.raw_info, UnlockRequest.finished_at)
                .where(*executed)
                .execution_options(yield_per=500)
            )
            ages = _ages(releases)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"could not read the audit trail for the report: {describe_error(exc)}") from exc

    force_unlocks: dict[str, dict[str, int]] = {}
    for address, month_text, count in per_state_month:
        force_unlocks.setdefault(address, {})[str(month_text)] = int(count)
    busiest = sorted(force_unlocks.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    by_status = _most_first(outcomes)
    return AuditReport(
        since=since,
        until=until,
        state=state,
        force_unlocks={address: dict(sorted(months.items())) for address, months in busiest},
        requesters=_most_first(requesters),
        approvers=_most_first(approvers),
        lock_age=ages,
        outcomes=by_status,
        refusals=_most_first((why if why else UNKNOWN_WHY, count) for why, count in refusals),
        expired=by_status.get(Status.EXPIRED.value, 0),
    )


def _month(session: Session, column: Any) -> ColumnElement[str]:
    """`YYYY-MM` of a UTC time column, in the database's own dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM")
    return func.strftime("%Y-%m", column)  # SQLite stores UTC text


def _refusals(since: datetime, until: datetime, state: str | None) -> Any:
    why = AuditEvent.detail["why"].as_string()
    where = [AuditEvent.action == AuditAction.REFUSED.value, AuditEvent.at >= since, AuditEvent.at < until]
    if state is not None:
        where.append(AuditEvent.state_address == state)
    return select(why, func.count()).where(*where).group_by(why)


def _ages(releases: Iterable[Any]) -> LockAges:
    ages: list[timedelta] = []
    unreadable = 0
    for raw_info, finished_at in releases:
        try:
            created = parse_lock_info(raw_info).created
        except LockInfoError:
            created = None
        if created is None or finished_at is None:
            unreadable += 1
        else:
            ages.append(finished_at - created)
    if not ages:
        return LockAges(0, unreadable, None, None, None)
    ages.sort()
    middle = len(ages) // 2
    median = ages[middle] if len(ages) % 2 else (ages[middle - 1] + ages[middle]) / 2
    return LockAges(len(ages), unreadable, ages[0], median, ages[-1])


def _most_first(pairs: Iterable[Any]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for key, count in pairs:
        merged[str(key)] = merged.get(str(key), 0) + int(count)
    return dict(sorted(merged.items(), key=lambda item: (-item[1], item[0])))


# -- text ---------------------------------------------------------------------------------------------------
def render_report(report: AuditReport) -> str:
    """The report for a terminal (or a Slack code block)."""
    scope = printable(report.state) if report.state else "all states"
    lines = [
        f"Force-unlock report for {scope}, {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC",
        "",
        f"Force-unlocks executed: {report.executed}",
    ]
    if report.force_unlocks:
        months = report.months
        shown = {printable(address): counts for address, counts in report.force_unlocks.items()}
        width = max(len("STATE"), *(len(address) for address in shown))
        lines.append("  " + "STATE".ljust(width) + "".join(f"  {m:>7}" for m in months) + "    TOTAL")
        for address, counts in shown.items():
            cells = "".join(f"  {counts.get(m, 0):>7}" for m in months)
            lines.append(f"  {address.ljust(width)}{cells}  {sum(counts.values()):>7}")
    lines.append(f"Requested by: {_counts(report.requesters)}")
    lines.append(f"Approved by: {_counts(report.approvers)}")
    lines.append(f"Lock age at release: {_ages_text(report.lock_age)}")
    lines.append(f"How requests ended: {_counts(report.outcomes)}")
    lines.append(f"Expired requests: {report.expired}")
    lines.append(f"Refusals: {_counts(report.refusals)}")
    return "\n".join(lines)


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{printable(name)} {count}" for name, count in counts.items()) or "none"


def _ages_text(ages: LockAges) -> str:
    if ages.minimum is None or ages.median is None or ages.maximum is None:
        text = "no release with a readable Created time"
    else:
        text = (
            f"min {format_age(ages.minimum)}, median {format_age(ages.median)}, max {format_age(ages.maximum)} "
            f"over {ages.count} release(s)"
        )
    return text + (f"; {ages.unreadable} without a readable Created" if ages.unreadable and ages.count else "")


# -- the figures managers ask for (issue 15) ------------------------------------------------------------
TOP = 10  # states, requesters and approvers shown
# Hours: where the hold-time buckets start (the last one is open-ended).
HOLD_BUCKETS = (0.0, 0.25, 1.0, 2.0, 4.0, 8.0, 24.0, 72.0, 168.0)
APPROVED = (
    Status.APPROVED,
    Status.EXECUTING,
    Status.EXECUTED,
    Status.SUPERSEDED,
    Status.ALREADY_RELEASED,
    Status.FAILED,
)


@dataclass(frozen=True)
class StateBlocking:
    """One state's locks in the window: how many, how many went stale, and how long they held it (at least)."""

    state: str
    locks: int
    stale: int
    held: timedelta


@dataclass(frozen=True)
class Week:
    start: date  # the Monday (UTC) the week begins
    stale_locks: int
    force_unlocks: int


@dataclass(frozen=True)
class Figures:
    """Every figure of the report (docs/audit.md, "The report"), for Slack, the CLI and the charts."""

    force_unlock: AuditReport
    locks_seen: int
    stale_locks: int
    holds: int
    requests: int  # force-unlock requests made in the window
    release_p50: timedelta | None  # request → release, executed requests
    release_p95: timedelta | None
    approval_p50: timedelta | None  # request → the approval that completed it
    approval_p95: timedelta | None
    blocking: tuple[StateBlocking, ...]  # most blocking first
    weeks: tuple[Week, ...]
    hold_buckets: tuple[int, ...]  # locks seen, by how long they were held (at least), one per HOLD_BUCKETS
    approval_times: tuple[timedelta, ...]

    @property
    def since(self) -> datetime:
        return self.force_unlock.since

    @property
    def until(self) -> datetime:
        return self.force_unlock.until

    @property
    def refusals(self) -> int:
        return sum(self.force_unlock.refusals.values())

    def as_json(self) -> dict[str, Any]:
        report = self.force_unlock
        return {
            "since": _iso(report.since),
            "until": _iso(report.until),
            "state": report.state,
            "locks_seen": self.locks_seen,
            "stale_locks": self.stale_locks,
            "holds": self.holds,
            "force_unlock_requests": self.requests,
            "force_unlocks_executed": report.executed,
            "request_outcomes": report.outcomes,
            "request_to_release_seconds": {"p50": _seconds(self.release_p50), "p95": _seconds(self.release_p95)},
            "request_to_approval_seconds": {"p50": _seconds(self.approval_p50), "p95": _seconds(self.approval_p95)},
            "refusals": self.refusals,
            "refusals_by_why": report.refusals,
            "blocking_states": [
                {"state": b.state, "locks": b.locks, "stale": b.stale, "held_seconds": _seconds(b.held)}
                for b in self.blocking
            ],
            "top_requesters": dict(list(report.requesters.items())[:TOP]),
            "top_approvers": dict(list(report.approvers.items())[:TOP]),
            "force_unlocks_by_state_and_month": report.force_unlocks,
            "lock_age_at_release_seconds": {
                "count": report.lock_age.count,
                "unreadable": report.lock_age.unreadable,
                "min": _seconds(report.lock_age.minimum),
                "median": _seconds(report.lock_age.median),
                "max": _seconds(report.lock_age.maximum),
            },
            "weeks": [
                {"week": w.start.isoformat(), "stale_locks": w.stale_locks, "force_unlocks": w.force_unlocks}
                for w in self.weeks
            ],
        }


def build_figures(
    sessions: sessionmaker[Session], *, since: datetime, until: datetime, state: str | None = None
) -> Figures:
    """The whole report for [since, until) (UTC): `build_report` plus the lock history and request times."""
    report = build_report(sessions, since=since, until=until, state=state)
    seen = [LockHistory.first_seen_at >= since, LockHistory.first_seen_at < until]
    made = [UnlockRequest.created_at >= since, UnlockRequest.created_at < until]
    executed = [UnlockRequest.finished_at >= since, UnlockRequest.finished_at < until]
    executed.append(UnlockRequest.status == Status.EXECUTED)
    approved = [UnlockRequest.decided_at >= since, UnlockRequest.decided_at < until]
    approved.append(UnlockRequest.status.in_([status.value for status in APPROVED]))
    if state is not None:
        seen.append(LockHistory.state_address == state)
        for where in (made, executed, approved):
            where.append(UnlockRequest.state_address == state)
    try:
        with reading(sessions) as session:
            held = _held_seconds(session)
            per_state: dict[str, list[Any]] = {}
            for address, count, stale_count, held_sum in session.execute(
                select(
                    LockHistory.state_address,
                    func.count(),
                    func.sum(case((LockHistory.stale, 1), else_=0)),
                    func.sum(held),
                )
                .where(*seen)
                .group_by(LockHistory.state_address)
            ):
                per_state[address] = [int(count), int(stale_count or 0), timedelta(seconds=round(held_sum or 0))]
            locks_seen = sum(counts[0] for counts in per_state.values())
            stale_locks = sum(counts[1] for counts in per_state.values())
            bucket = case(
                *((held >= low * 3600, index) for index, low in reversed(list(enumerate(HOLD_BUCKETS)))), else_=0
            )
            hold_buckets = [0] * len(HOLD_BUCKETS)
            for index, count in session.execute(select(bucket, func.count()).where(*seen).group_by(bucket)):
                hold_buckets[int(index)] += int(count)
            week = _week(session, LockHistory.first_seen_at)
            stale_weeks = {
                _as_date(monday): int(count)
                for monday, count in session.execute(
                    select(week, func.count()).where(*seen, LockHistory.stale).group_by(week)
                )
            }
            holds = session.execute(
                select(func.count())
                .select_from(LockHistory)
                .where(
                    LockHistory.ended == Ending.RELEASED_HOLD.value,
                    LockHistory.gone_at >= since,
                    LockHistory.gone_at < until,
                    *([LockHistory.state_address == state] if state is not None else []),
                )
            ).scalar_one()
            requests = session.execute(select(func.count()).select_from(UnlockRequest).where(*made)).scalar_one()
            releases = session.execute(
                select(UnlockRequest.created_at, UnlockRequest.finished_at).where(*executed)
            ).all()
            approvals = session.execute(
                select(UnlockRequest.created_at, UnlockRequest.decided_at).where(*approved)
            ).all()
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"could not read the lock history for the report: {describe_error(exc)}") from exc

    release_times = sorted(finished - created for created, finished in releases if finished is not None)
    approval_times = sorted(decided - created for created, decided in approvals if decided is not None)
    unlock_weeks: dict[date, int] = {}
    for _, finished in releases:
        if finished is None:
            continue
        monday = _monday(finished)
        unlock_weeks[monday] = unlock_weeks.get(monday, 0) + 1
    blocking = sorted(
        (StateBlocking(address, n, stale, held) for address, (n, stale, held) in per_state.items()),
        key=lambda b: (-b.stale, -b.held, -b.locks, b.state),
    )
    return Figures(
        force_unlock=report,
        locks_seen=locks_seen,
        stale_locks=stale_locks,
        holds=int(holds),
        requests=int(requests),
        release_p50=percentile(release_times, 50),
        release_p95=percentile(release_times, 95),
        approval_p50=percentile(approval_times, 50),
        approval_p95=percentile(approval_times, 95),
        blocking=tuple(blocking[:TOP]),
        weeks=_weeks(since, until, stale_weeks, unlock_weeks),
        hold_buckets=tuple(hold_buckets),
        approval_times=tuple(approval_times),
    )


def percentile(ordered: list[timedelta], p: float) -> timedelta | None:
    """Nearest rank: the smallest value with at least p% of the values at or below it (docs/audit.md)."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _held_seconds(session: Session) -> Any:
    """`PastLock.held_for` in whole seconds, in SQL: from Created (else first seen) to the deletion when tflock
    ended the lock itself, else to the last sighting (a lower bound); never negative."""
    exact = and_(
        LockHistory.ended.in_(sorted(EXACT_ENDINGS)),
        LockHistory.created_at.is_not(None),
        LockHistory.gone_at.is_not(None),
    )
    end = case((exact, LockHistory.gone_at), else_=LockHistory.last_seen_at)
    start = func.coalesce(LockHistory.created_at, LockHistory.first_seen_at)
    if session.get_bind().dialect.name == "postgresql":
        return func.greatest(func.round(extract("epoch", end - start)), 0)
    return func.max(func.round((func.julianday(end) - func.julianday(start)) * 86400.0), 0)


def _week(session: Session, column: Any) -> Any:
    """The Monday (UTC) of a time column's week, in the database's own dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.date_trunc("week", func.timezone("UTC", column))
    return func.date(column, "-6 days", "weekday 1")  # SQLite stores UTC text


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _monday(moment: datetime) -> date:
    day = moment.date()
    return day - timedelta(days=day.weekday())


def _weeks(since: datetime, until: datetime, stale: dict[date, int], unlocks: dict[date, int]) -> tuple[Week, ...]:
    """Every week the window touches, empty ones too, so a chart's gaps mean "none"."""
    weeks = []
    monday = _monday(since)
    while datetime.combine(monday, datetime.min.time(), tzinfo=until.tzinfo) < until:
        weeks.append(Week(monday, stale.get(monday, 0), unlocks.get(monday, 0)))
        monday += timedelta(days=7)
    return tuple(weeks)


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _seconds(value: timedelta | None) -> int | None:
    return None if value is None else int(value.total_seconds())


def _age(value: timedelta | None) -> str:
    return "n/a" if value is None else format_age(value)


def render_figures(figures: Figures) -> str:
    """The whole report for a terminal: the headline figures, then the force-unlock report."""
    report = figures.force_unlock
    lines = [
        f"Locks seen: {figures.locks_seen} (stale: {figures.stale_locks})",
        f"Holds released: {figures.holds}",
        f"Force-unlock requests: {figures.requests}; executed {report.executed}; ended: {_counts(report.outcomes)}",
        f"Request to release: p50 {_age(figures.release_p50)}, p95 {_age(figures.release_p95)}",
        f"Request to approval: p50 {_age(figures.approval_p50)}, p95 {_age(figures.approval_p95)}",
        f"Refusals: {figures.refusals}",
        "States that block most:",
    ]
    lines += [
        f"  {printable(b.state)}: {b.locks} lock(s), {b.stale} stale, held at least {format_age(b.held)} in all"
        for b in figures.blocking
    ] or ["  none"]
    return "\n".join([*lines, "", render_report(report)])


def figures_csv(figures: Figures) -> str:
    """`figure,key,value` rows: every figure of `as_json`, flattened (docs/audit.md)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["figure", "key", "value"])
    for name, value in figures.as_json().items():
        for key, cell in _flatten(value):
            writer.writerow([name, key, "" if cell is None else cell])
    return out.getvalue()


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [pair for key, item in value.items() for pair in _flatten(item, f"{prefix}.{key}" if prefix else key)]
    if isinstance(value, list):
        return [pair for i, item in enumerate(value) for pair in _flatten(item, f"{prefix}[{i}]")]
    return [(prefix, value)]
