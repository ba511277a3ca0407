"""The append-only audit trail: SQLAlchemy models, the one writer with its hash chain, verify, queries, the
report — no Slack."""
