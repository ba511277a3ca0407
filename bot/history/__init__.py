"""Lock history: every lock tflock observes, recorded once per lock (issue #15, docs/design.md)."""
