"""Logging for operators: `TFLOCK_LOG_FORMAT=text|json`, one line per record, libraries' start-up noise at DEBUG.

JSON lines carry `time`, `level`, `logger`, `message` and, for the per-command and per-click lines
(`tflock.activity`), the `event` fields: kind, command, user, state, outcome, duration_ms. Nothing logs a
token or a request body.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Literal

# Chatty at INFO about things operators do not act on (migration context, Bolt and Socket Mode start-up).
_QUIET = ("alembic", "slack_bolt", "slack_sdk", "tflock.slack", "waitress.queue")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event = getattr(record, "event", None)
        if isinstance(event, dict):
            line.update(event)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(fmt: Literal["text", "json"], level: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    numeric = logging.getLevelName(level.upper())
    root.setLevel(numeric if isinstance(numeric, int) else logging.INFO)
    if root.level > logging.DEBUG:
        for name in _QUIET:
            logging.getLogger(name).setLevel(max(root.level, logging.WARNING))
