"""Databases for tests: SQLite in a temporary file always, PostgreSQL as well when TFLOCK_TEST_DATABASE_URL is set.

Each PostgreSQL test gets a schema of its own (dropped afterwards), reached through `search_path`, so
tests never see each other's rows and every test migrates an empty database to head.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from bot.audit.models import AuditEvent
from bot.db import engine_url, make_engine, make_sessions, upgrade_to_head

# Read at import: the autouse clean_environment fixture removes every TFLOCK_* variable.
POSTGRES_URL = os.environ.get("TFLOCK_TEST_DATABASE_URL")
NEEDS_POSTGRES = "PostgreSQL tests need TFLOCK_TEST_DATABASE_URL"


@contextmanager
def postgres_schema(base_url: str) -> Iterator[str]:
    """A URL whose connections live in a brand-new, empty schema."""
    schema = f"tflock_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = engine_url(base_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def sqlite_url(directory: Path) -> str:
    return f"sqlite:///{directory / 'tflock.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database: SQLite, and PostgreSQL when TFLOCK_TEST_DATABASE_URL is set."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    if not POSTGRES_URL:
        pytest.skip(NEEDS_POSTGRES)
    with postgres_schema(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """PostgreSQL only: for what SQLite cannot show (row locks across processes)."""
    if not POSTGRES_URL:
        pytest.skip(NEEDS_POSTGRES)
    with postgres_schema(POSTGRES_URL) as url:
        yield url


@pytest.fixture
def migrated_url(database_url: str) -> str:
    upgrade_to_head(database_url)
    return database_url


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    engine = make_engine(migrated_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessions(engine)


def audit_trail(sessions: sessionmaker[Session], request_id: str | None = None) -> list[AuditEvent]:
    """Events in the order they were written, for one request or all of them."""
    query = select(AuditEvent).order_by(AuditEvent.id)
    if request_id is not None:
        query = query.where(AuditEvent.request_id == request_id)
    with sessions() as session:
        return list(session.scalars(query))
