"""The force-unlock report managers ask for (`tflock-bot audit report --since 90d`): force-unlocks per state
and month, who asked and who approved, how old the locks were when released, how other requests ended,
refusals by reason. Counted by the database (GROUP BY); only executed requests' Info is read here, one row
at a time, for the lock ages.

Request facts come from `unlock_requests` (one row per request, its final status and times); refusals,
which belong to no request, from the audit trail.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.models import AuditAction, AuditEvent
from bot.db import DatabaseUnavailable, describe_error, reading
from bot.durations import format_age
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
