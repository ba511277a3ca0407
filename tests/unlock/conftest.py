"""A workflow on a real database (SQLite, and PostgreSQL with TFLOCK_TEST_DATABASE_URL), moto and a movable clock."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import botocore.loaders
import botocore.session
import pytest
from sqlalchemy.orm import Session, sessionmaker

from bot.locks.directory import LockDirectory
from bot.unlock.policy import UnlockPolicy
from bot.unlock.workflow import UnlockWorkflow
from tests.clock import Clock
from tests.database import database_url, engine, migrated_url, postgres_url, sessions

__all__ = ["database_url", "engine", "migrated_url", "postgres_url", "sessions"]

REQUESTER = "UREQUESTER"
ALICE = "UALICE"
BOB = "UBOB"
CAROL = "UCAROL"
APPROVERS = frozenset({ALICE, BOB, CAROL})
CHANNEL = "CINCIDENT"


@pytest.fixture(autouse=True, scope="package")
def shared_botocore_models() -> Iterator[None]:
    """Speed only: every boto3 session here reads botocore's service models once instead of per client."""
    original = botocore.session.create_loader
    botocore.session.create_loader = functools.cache(original)  # type: ignore[assignment]
    yield
    botocore.session.create_loader = original


@pytest.fixture
def clock() -> Clock:
    """The workflow's clock, moved by the test."""
    return Clock(datetime(2026, 3, 4, 10, 0, tzinfo=UTC))


MakeWorkflow = Callable[..., UnlockWorkflow]


@pytest.fixture
def make_workflow(sessions: sessionmaker[Session], directory: LockDirectory, clock: Clock) -> MakeWorkflow:
    """A workflow whose approvers are Alice, Bob and Carol; policy fields can be overridden."""

    def make(**policy: Any) -> UnlockWorkflow:
        rules = UnlockPolicy(is_approver=lambda user: user in APPROVERS, **policy)
        return UnlockWorkflow(sessions, directory, rules, clock)

    return make


@pytest.fixture
def workflow(make_workflow: MakeWorkflow) -> UnlockWorkflow:
    return make_workflow()
