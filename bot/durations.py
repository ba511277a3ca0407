"""Durations as people write them (`30s`, `15m`, `2h`, `1d`, `1h30m`) and as the bot prints them."""

from __future__ import annotations

import re
from datetime import timedelta

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(?:(\d{1,6})d)?(?:(\d{1,6})h)?(?:(\d{1,6})m)?(?:(\d{1,6})s)?")


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text; raise ValueError with a message a person can act on."""
    cleaned = text.strip().lower().replace(" ", "")
    match = _DURATION.fullmatch(cleaned)
    if not cleaned or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; write it like 30s, 15m, 2h, 1d or 1h30m")
    seconds = sum(int(value) * unit for value, unit in zip(match.groups(), _UNITS.values(), strict=True) if value)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return timedelta(seconds=seconds)


def format_age(age: timedelta) -> str:
    """`3h 7m`, `2d 4h`, `12m`, `45s` — the two largest units, never negative."""
    total = max(int(age.total_seconds()), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"


def format_duration(value: timedelta) -> str:
    """The inverse of parse_duration, for settings shown back to people (`1h30m`)."""
    total = int(value.total_seconds())
    parts = []
    for unit, size in _UNITS.items():
        amount, total = divmod(total, size)
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts) or "0s"
