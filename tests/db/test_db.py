"""The audit database: migrations from empty to head on SQLite and PostgreSQL, URLs, readiness, SQLite settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import bot.audit.models
import bot.unlock.models
from bot.db import (
    Base,
    DatabaseUnavailable,
    alembic_config,
    check_database,
    engine_url,
    make_engine,
    upgrade_to_head,
)
from tests.database import POSTGRES_URL, postgres_schema

TABLES = {
    "alembic_version",
    "audit_events",
    "unlock_requests",
    "unlock_approvals",
    "watch_alerts",
    "pinned_locks",
    "holds",
}


def test_migrations_upgrade_an_empty_database_to_head(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        assert set(inspect(engine).get_table_names()) == set()
        upgrade_to_head(database_url)
        inspector = inspect(engine)
        assert set(inspector.get_table_names()) == TABLES
        indexes = {tuple(ix["column_names"]) for ix in inspector.get_indexes("audit_events")}
        assert {("state_address", "at"), ("actor", "at"), ("action", "at")} <= indexes
        columns = {c["name"]: c for c in inspector.get_columns("audit_events")}
        assert not columns["prev_hash"]["nullable"] and not columns["hash"]["nullable"]  # the chain (0003)
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one() == head
        upgrade_to_head(database_url)  # a second start finds nothing to do
    finally:
        engine.dispose()


def test_models_and_migrations_agree(database_url: str) -> None:
    assert bot.audit.models.AuditEvent.__tablename__ in Base.metadata.tables
    assert bot.unlock.models.UnlockRequest.__tablename__ in Base.metadata.tables
    upgrade_to_head(database_url)
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_one_approval_per_approver_is_a_database_constraint(database_url: str) -> None:
    upgrade_to_head(database_url)
    engine = make_engine(database_url)
    try:
        unique = inspect(engine).get_unique_constraints("unlock_approvals")
        assert [c["column_names"] for c in unique] == [["request_id", "approver"]]
    finally:
        engine.dispose()


def test_replicas_starting_together_all_migrate() -> None:
    """Separate processes, as replicas are: PostgreSQL's advisory lock makes them take turns."""
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need TFLOCK_TEST_DATABASE_URL")
    with postgres_schema(POSTGRES_URL) as url:
        code = "import sys; from bot.db import upgrade_to_head; upgrade_to_head(sys.argv[1])"
        replicas = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE) for _ in range(3)]
        for replica in replicas:
            _, stderr = replica.communicate(timeout=60)
            assert replica.returncode == 0, stderr.decode()
        engine = make_engine(url)
        assert set(inspect(engine).get_table_names()) == TABLES
        engine.dispose()


def test_postgresql_urls_use_psycopg_3() -> None:
    assert engine_url("postgresql://u@db:5432/tflock").drivername == "postgresql+psycopg"
    assert engine_url("postgres://u@db/tflock").drivername == "postgresql+psycopg"
    assert engine_url("postgresql+psycopg://u@db/tflock").drivername == "postgresql+psycopg"
    assert engine_url("sqlite:///./tflock.db").drivername == "sqlite"
    with pytest.raises(DatabaseUnavailable, match="not an SQLAlchemy URL"):
        engine_url("not a url")


def test_readiness(database_url: str, tmp_path: Path) -> None:
    engine = make_engine(database_url)
    check_database(engine)
    engine.dispose()
    unreachable = make_engine(f"sqlite:///{tmp_path / 'missing-directory' / 'tflock.db'}")
    with pytest.raises(DatabaseUnavailable, match="unreachable: OperationalError: unable to open database file"):
        check_database(unreachable)


def test_unreachable_postgresql_is_reported_in_one_line() -> None:
    engine = make_engine("postgresql://nobody@127.0.0.1:1/tflock?connect_timeout=2")
    with pytest.raises(DatabaseUnavailable) as caught:
        check_database(engine)
    assert "\n" not in str(caught.value) and "OperationalError" in str(caught.value)


def test_sqlite_is_set_up_for_several_threads(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'tflock.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
    engine.dispose()
