"""What a Request force-unlock button's value stands for: its pinned lock, read back from the database."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from bot.unlock.models import Pin
from bot.unlock.pins import LockPins, looks_like_pin


def pin_of(sessions: sessionmaker[Session], value: str) -> Pin:
    assert looks_like_pin(value) and len(value) <= 32, value
    pin = LockPins(sessions, lambda: datetime.now(UTC)).find(value)
    assert pin is not None, f"no pinned lock {value}"
    return pin
