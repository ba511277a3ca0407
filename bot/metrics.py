"""Prometheus metrics for `/metrics`: one registry per running bot, so tests can build several."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


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
        self.audit_failures = Counter(
            "tflock_audit_write_failures", "Audit events that could not be written", registry=self.registry
        )
        self.socket_connected = Gauge(
            "tflock_socket_mode_connected", "1 when the Socket Mode connection is up", registry=self.registry
        )
