"""The append-only audit trail: SQLAlchemy models and the one writer — no Slack."""
