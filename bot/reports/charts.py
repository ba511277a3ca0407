"""The report's charts as PNG bytes, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Readable in Slack's light and dark themes alike: an opaque light-grey background (never transparent, so a
dark theme does not swallow dark text), dark text, and mid-tone colours that keep their contrast on it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from bot.reports.report import HOLD_BUCKETS, Figures

BACKGROUND = "#ececec"
INK = "#222222"
GRID = "#c4c4c4"
HOLD_AXIS = "held for (at least, unless tflock ended it)"
BLUE = "#3778c2"  # stale locks, hold times
ORANGE = "#d9782d"  # force-unlocks, approvals
SIZE = (8.0, 4.0)  # inches; at DPI 100: 800 x 400 pixels
DPI = 100

WEEKLY_TITLE = "Stale locks and force-unlocks per week"
HOLD_TITLE = "How long locks were held"
APPROVAL_TITLE = "Time from force-unlock request to approval"
# Hours: the buckets of the two distributions (the last one is open-ended).
APPROVAL_BUCKETS = (0.0, 1 / 12, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 24.0)


@dataclass(frozen=True)
class Chart:
    filename: str
    title: str
    png: bytes


def render_charts(figures: Figures) -> list[Chart]:
    """The three charts of the report, each a PNG with its title in the image and in its metadata."""
    return [
        Chart("tflock-weekly.png", WEEKLY_TITLE, _weekly(figures)),
        Chart(
            "tflock-hold-times.png",
            HOLD_TITLE,
            _histogram(
                HOLD_TITLE, figures.hold_buckets, HOLD_BUCKETS, BLUE, "held for (at least, unless tflock ended it)"
            ),
        ),
        Chart(
            "tflock-approval-times.png",
            APPROVAL_TITLE,
            _histogram(
                APPROVAL_TITLE,
                bucket_counts(figures.approval_times, APPROVAL_BUCKETS),
                APPROVAL_BUCKETS,
                ORANGE,
                "from the request to the approval that completed it",
                what="requests",
            ),
        ),
    ]


def _figure(title: str, period: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=SIZE, dpi=DPI, facecolor=BACKGROUND)
    FigureCanvasAgg(figure)  # Agg draws it: no display, no pyplot, safe on any thread
    axes = figure.add_subplot()
    axes.set_facecolor(BACKGROUND)
    axes.set_title(title, color=INK, fontsize=13, loc="left")
    axes.text(1.0, 1.02, period, transform=axes.transAxes, ha="right", va="bottom", color=INK, fontsize=9)
    axes.tick_params(colors=INK)
    for spine in axes.spines.values():
        spine.set_color(GRID)
    axes.grid(axis="y", color=GRID, linewidth=0.8)
    axes.set_axisbelow(True)
    return figure, axes


def _png(figure: Figure, title: str) -> bytes:
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", facecolor=BACKGROUND, metadata={"Title": title, "Software": "tflock"})
    return out.getvalue()


def _period(figures: Figures) -> str:
    return f"{figures.since:%Y-%m-%d} to {figures.until:%Y-%m-%d} UTC"


def _weekly(figures: Figures) -> bytes:
    figure, axes = _figure(WEEKLY_TITLE, _period(figures))
    weeks = list(figures.weeks)
    positions = list(range(len(weeks)))
    width = 0.4
    stale = [w.stale_locks for w in weeks]
    unlocks = [w.force_unlocks for w in weeks]
    axes.bar([p - width / 2 for p in positions], stale, width, color=BLUE, label="stale locks")
    axes.bar([p + width / 2 for p in positions], unlocks, width, color=ORANGE, label="force-unlocks")
    step = max(1, len(weeks) // 10)
    axes.set_xticks(positions[::step], [f"{w.start:%d %b}" for w in weeks[::step]], color=INK, fontsize=8)
    axes.set_xlabel("week beginning (Monday, UTC)", color=INK)
    axes.set_ylabel("count", color=INK)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_ylim(0, max([1, *stale, *unlocks]) * 1.3)  # headroom: the legend never covers a bar
    legend = axes.legend(facecolor=BACKGROUND, edgecolor=GRID, labelcolor=INK, ncols=2, loc="upper left")
    legend.get_frame().set_alpha(1.0)
    return _png(figure, WEEKLY_TITLE)


def _histogram(
    title: str,
    counts: tuple[int, ...],
    buckets: tuple[float, ...],
    colour: str,
    xlabel: str,
    *,
    what: str = "locks",
) -> bytes:
    figure, axes = _figure(title, f"{sum(counts)} {what}")
    labels = [_bucket_label(buckets, i) for i in range(len(buckets))]
    axes.bar(range(len(buckets)), counts, 0.7, color=colour)
    axes.set_xticks(range(len(buckets)), labels, color=INK, fontsize=8)
    axes.set_xlabel(xlabel, color=INK)
    axes.set_ylabel(what, color=INK)
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    return _png(figure, title)


def bucket_counts(values: tuple[timedelta, ...], buckets: tuple[float, ...]) -> tuple[int, ...]:
    """How many values fall in each bucket (hours where each starts; the last is open-ended)."""
    counts = [0] * len(buckets)
    for value in values:
        hours = value.total_seconds() / 3600
        counts[max((i for i, low in enumerate(buckets) if hours >= low), default=0)] += 1
    return tuple(counts)


def _bucket_label(buckets: tuple[float, ...], index: int) -> str:
    low = _hours(buckets[index])
    if index + 1 == len(buckets):
        return f"≥ {low}"
    return f"{low}–{_hours(buckets[index + 1])}"


def _hours(value: float) -> str:
    if value == 0:
        return "0"
    if value < 1:
        return f"{round(value * 60)}m"
    if value < 24 or value % 24:
        return f"{value:g}h"
    return f"{value / 24:g}d"
