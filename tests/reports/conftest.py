"""Database fixtures (tests/database.py): SQLite always, PostgreSQL with TFLOCK_TEST_DATABASE_URL."""

from tests.database import database_url, engine, migrated_url, postgres_url, sessions

__all__ = ["database_url", "engine", "migrated_url", "postgres_url", "sessions"]
