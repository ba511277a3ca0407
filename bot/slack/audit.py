"""`/tflock audit [state] [since:7d] [until:…] [user:@x] [action:a] [csv]` — auditors only.

The summary is ephemeral; with `csv` the matching rows go to the auditor in a direct message, uploaded
with Slack's external upload API (files.getUploadURLExternal + files.completeUploadExternal).
"""

from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.audit.query import AuditFilter, export_csv, parse_action, parse_actor, parse_moment, summary
from bot.errors import BadInput, TflockError
from bot.locks.address import parse_address
from bot.runtime import Runtime
from bot.slack.ids import COMMAND
from bot.slack.people import People
from bot.slack.views import Message, audit_message
from bot.unlock.policy import CannotCheck

SUMMARY_EVENTS = 20
NOT_CONFIGURED = (
    "The audit trail is not open to anyone yet: nobody is named to read it. Ask whoever runs tflock to set "
    "TFLOCK_AUDITORS (or TFLOCK_APPROVERS) to the Slack user IDs (U…) or user-group IDs (S…) who may read "
    "it, and restart the bot."
)
CSV_MAX_ROWS = 100_000  # beyond these a file in chat is the wrong tool: the CLI streams any number
CSV_MAX_BYTES = 50_000_000
UPLOAD_CHUNK = 64 * 1024


def upload_file(client: WebClient, data: BinaryIO, *, channel: str, filename: str, title: str, comment: str) -> None:
    """Slack's external upload (files.getUploadURLExternal, the bytes, files.completeUploadExternal), with
    the bytes streamed from the open file; slack_sdk's files_upload_v2 would read the whole file into memory."""
    length = data.seek(0, os.SEEK_END)
    data.seek(0)
    ticket = client.files_getUploadURLExternal(filename=filename, length=length)
    request = urllib.request.Request(  # noqa: S310 (an https URL Slack just issued)
        str(ticket["upload_url"]),
        data=iter(lambda: data.read(UPLOAD_CHUNK), b""),
        headers={"Content-Length": str(length), "Content-Type": "application/octet-stream"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=client.timeout, context=client.ssl) as answer:  # noqa: S310
            answer.read()
    except (urllib.error.URLError, OSError) as exc:
        raise TflockError(f"the CSV file could not be sent to Slack ({exc})") from None
    client.files_completeUploadExternal(
        files=[{"id": str(ticket["file_id"]), "title": title}], channel_id=channel, initial_comment=comment
    )


class NotAnAuditor(TflockError):
    """The person asked for the audit trail without being an auditor."""


def require_auditor(runtime: Runtime, people: People, *, user: str, channel: str, asked: str) -> None:
    """The one check for auditors-only answers (`audit`, `report`); refusals are recorded, then raised."""
    if not people.audit_configured:
        runtime.record_refusal("audit_not_configured", actor=user, channel=channel, asked=asked[:500])
        raise NotAnAuditor(NOT_CONFIGURED)
    try:
        auditor = people.is_auditor(user)
    except CannotCheck as exc:
        runtime.record_refusal("lookup_failed", actor=user, channel=channel, asked=asked[:500], error=str(exc))
        raise NotAnAuditor(
            f"Slack could not be asked who you are right now ({exc}), so the audit trail was not shown; "
            "try again in a minute."
        ) from None
    if not auditor:
        runtime.record_refusal("not_auditor", actor=user, channel=channel, asked=asked[:500])
        raise NotAnAuditor(
            "Sorry — the audit trail is open to auditors only (TFLOCK_AUDITORS, or the approvers when that is "
            "empty). Ask one of them, or your Slack admin to add you."
        )


@dataclass(frozen=True)
class AuditQuery:
    where: AuditFilter
    csv: bool


def parse_audit(argument: str, runtime: Runtime, now: datetime) -> AuditQuery:
    fields: dict[str, object] = {}
    want_csv = False
    for word in argument.split():
        key, sep, value = word.partition(":")
        key = key.lower()
        if word.lower() == "csv":
            want_csv = True
        elif sep and key == "since":
            fields["since"] = parse_moment(value, now, what="since")
        elif sep and key == "until":
            fields["until"] = parse_moment(value, now, what="until")
        elif sep and key in {"user", "actor"}:
            fields["actor"] = parse_actor(value)
        elif sep and key == "action":
            fields["action"] = parse_action(value)
        elif "state" not in fields and not (sep and key in {"since", "until", "user", "actor", "action"}):
            fields["state"] = parse_address(word, runtime.directory.backends.aliases).lock_id
        else:
            raise BadInput(
                f"“{word[:40]}” is not understood; use `{COMMAND} audit [state] [since:7d] [until:…] "
                "[user:@someone] [action:approved] [csv]`"
            )
    return AuditQuery(AuditFilter(**fields), want_csv)  # type: ignore[arg-type]


def audit(runtime: Runtime, people: People, client: WebClient, *, user: str, channel: str, argument: str) -> Message:
    require_auditor(runtime, people, user=user, channel=channel, asked=argument)
    query = parse_audit(argument, runtime, runtime.clock())
    if query.csv:
        stamp = runtime.clock().strftime("%Y%m%dT%H%M%SZ")
        with tempfile.TemporaryFile() as spool:  # on disk: memory stays flat however large the trail
            count = export_csv(runtime.sessions, query.where, spool, max_rows=CSV_MAX_ROWS, max_bytes=CSV_MAX_BYTES)
            try:
                direct = client.conversations_open(users=user)["channel"]["id"]
                upload_file(
                    client,
                    spool,
                    channel=direct,
                    filename=f"tflock-audit-{stamp}.csv",
                    title=f"tflock audit trail ({count} events)",
                    comment=f"The {count} audit events matching `{COMMAND} audit {argument}`.",
                )
            except SlackApiError as exc:
                error = exc.response.get("error", "error")
                raise TflockError(f"Slack would not take the CSV file ({error}).") from None
        return Message(f"Sent {count} matching events as a CSV file in a direct message.")
    return audit_message(summary(runtime.sessions, query.where, SUMMARY_EVENTS), argument)
