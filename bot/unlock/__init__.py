"""The two-person force-unlock: request, approvals, compare-and-delete, a state machine over the database — no Slack."""
