"""Every slash command, action and callback ID the app registers — no magic strings elsewhere."""

from __future__ import annotations

from enum import StrEnum

COMMAND = "/tflock"


class Action(StrEnum):
    REQUEST_UNLOCK = "tflock_request_unlock"
    APPROVE = "tflock_approve"
    REJECT = "tflock_reject"
    CANCEL = "tflock_cancel"
    APPROVE_ANYWAY = "tflock_approve_anyway"  # past the holder's "still running" (a second, explicit confirmation)
    HOLDER_RUNNING = "tflock_holder_running"
    HOLDER_DEAD = "tflock_holder_dead"


class Callback(StrEnum):
    UNLOCK_REASON = "tflock_unlock_reason"


class Block(StrEnum):
    REASON = "reason"


class Field(StrEnum):
    REASON = "reason_input"
