"""`/tflock report [since:90d]` — auditors only: the figures as Block Kit, the charts as PNGs in a DM.

Runs on the look-up pool like `audit`; the charts go to the auditor in a direct message (the figures name
people and states, so they are not posted to the channel), uploaded with Slack's external upload API.
"""

from __future__ import annotations

import io
import logging
from datetime import datetime, timedelta

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.audit.query import parse_moment
from bot.errors import BadInput, TflockError
from bot.reports.charts import render_charts
from bot.reports.report import Figures, build_figures
from bot.runtime import Runtime
from bot.slack.audit import require_auditor, upload_file
from bot.slack.ids import COMMAND
from bot.slack.people import People
from bot.slack.views import Message, report_message

log = logging.getLogger(__name__)
DEFAULT_SINCE = "90d"
USAGE = f"`{COMMAND} report [since:90d]` (a duration such as 30d or 12h, or a date such as 2026-06-01)"
# The longest period answered in Slack: one weekly bar per week is drawn, on the shared look-up workers.
MAX_PERIOD = timedelta(days=731)


def parse_since(argument: str, now: datetime) -> datetime:
    """`since:90d`, `since:2026-06-01` or nothing (90 days); anything else is bad input, said clearly."""
    words = argument.split()
    if not words:
        return now - timedelta(days=90)
    key, sep, value = words[0].partition(":")
    if len(words) > 1 or not sep or key.lower() != "since" or not value:
        raise BadInput(f"“{argument[:60]}” is not understood; use {USAGE}.")
    since = parse_moment(value, now, what="since")
    if since >= now:
        raise BadInput(f"since:{value[:40]} is not in the past; use {USAGE}.")
    if now - since > MAX_PERIOD:
        raise BadInput(
            f"since:{value[:40]} is more than two years back; in Slack the report covers at most 731 days "
            "(`tflock-bot audit report --since …` has no such limit)."
        )
    return since


def report(runtime: Runtime, people: People, client: WebClient, *, user: str, channel: str, argument: str) -> Message:
    require_auditor(runtime, people, user=user, channel=channel, asked=argument)
    now = runtime.clock()
    figures = build_figures(runtime.sessions, since=parse_since(argument, now), until=now)
    return report_message(figures, _send_charts(client, user, figures, now))


def _send_charts(client: WebClient, user: str, figures: Figures, now: datetime) -> str:
    """The charts in a DM; what happened, in words, for the answer (a failure never loses the figures)."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    try:
        charts = render_charts(figures)
        direct = client.conversations_open(users=user)["channel"]["id"]
        for chart in charts:
            upload_file(
                client,
                io.BytesIO(chart.png),
                channel=direct,
                filename=chart.filename.replace(".png", f"-{stamp}.png"),
                title=chart.title,
                comment=f"{chart.title} ({figures.since:%Y-%m-%d} to {figures.until:%Y-%m-%d} UTC)",
            )
    except SlackApiError as exc:
        error = exc.response.get("error", "error")
        log.error("report charts not sent: %s", error)
        return f"The charts could not be sent ({error}); `tflock-bot audit report --chart DIR` draws them."
    except TflockError as exc:
        log.error("report charts not sent: %s", exc)
        return f"The charts could not be sent ({exc}); `tflock-bot audit report --chart DIR` draws them."
    return f"{len(charts)} charts sent to you in a direct message."
