"""Prometheus metrics for `/metrics`: one registry per running bot, so tests can build several."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SCAN_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "tflock_slack_requests",
            "Slack commands and actions handled, by command and outcome",
            ["command", "outcome"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "tflock_http_request_seconds",
            "Time to answer an HTTP request (for /slack/events this is the time to ack Slack)",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answer_seconds = Histogram(
            "tflock_slack_answer_seconds",
            "Time from receiving a Slack command to posting its answer",
            ["command"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.aws_errors = Counter(
            "tflock_aws_errors", "AWS calls that failed after retries, by error code", ["code"], registry=self.registry
        )
        self.reconcile_failures = Counter(
            "tflock_reconcile_failures",
            "Interrupted force-unlock requests the background sweep could not end (each tried again next sweep)",
            registry=self.registry,
        )
        self.audit_failures = Counter(
            "tflock_audit_write_failures", "Audit events that could not be written", registry=self.registry
        )
        self.busy = Counter(
            "tflock_busy",
            "Requests turned away with 'tflock is busy' because a work pool and its queue were full, by pool",
            ["pool"],
            registry=self.registry,
        )
        self.work_waiting = Gauge(
            "tflock_work_in_pool",
            "Tasks running or queued in a work pool (lookups, clicks)",
            ["pool"],
            registry=self.registry,
        )
        self.lookup_audit_missed = Counter(
            "tflock_lookup_audit_missed",
            "Look-ups answered although their audit event could not be written (database down)",
            registry=self.registry,
        )
        self.socket_connected = Gauge(
            "tflock_socket_mode_connected", "1 when the Socket Mode connection is up", registry=self.registry
        )
        # The stale-lock watchdog (bot/watch): what it saw at its last scan of each backend, and what it did.
        self.locks_held = Gauge(
            "tflock_locks_held", "Locks held at the last clean scan, by backend", ["backend"], registry=self.registry
        )
        self.oldest_lock_age = Gauge(
            "tflock_oldest_lock_age_seconds",
            "Age of the oldest lock held at the last clean scan (0 when none), by backend",
            ["backend"],
            registry=self.registry,
        )
        self.watch_alerts = Counter(
            "tflock_watch_alerts",
            "Watchdog messages sent: alert (stale lock), reminder, hold_reminder, released (alert updated)",
            ["kind"],
            registry=self.registry,
        )
        self.watch_scan_seconds = Histogram(
            "tflock_watch_scan_seconds",
            "Time for one watchdog scan of every backend",
            buckets=_SCAN_BUCKETS,
            registry=self.registry,
        )
        self.watch_scan_errors = Counter(
            "tflock_watch_scan_errors",
            "Watchdog scans of a backend that failed (all = the whole scan failed)",
            ["backend"],
            registry=self.registry,
        )
