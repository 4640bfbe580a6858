"""Prometheus metrics of the orchestrator (one registry per instance, so tests stay independent)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """Every metric the orchestrator exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_calls = Gauge("sipagent_active_calls", "Calls in progress.", ["direction"], registry=r)
        self.calls = Counter("sipagent_calls", "Ended calls by result.", ["direction", "result"], registry=r)
        self.setup_seconds = Histogram(
            "sipagent_call_setup_seconds",
            "From first sight of the call to answer.",
            ["direction"],
            buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
            registry=r,
        )
        self.transfers = Counter(
            "sipagent_transfers", "Transfers by method and result.", ["method", "result"], registry=r
        )
        self.dtmf = Counter("sipagent_dtmf_digits", "DTMF digits by direction.", ["direction"], registry=r)
        self.esl_connected = Gauge(
            "sipagent_esl_connected", "1 when the node's event socket is up.", ["node"], registry=r
        )
        self.esl_connects = Counter("sipagent_esl_connects", "Event socket connections made.", ["node"], registry=r)
        self.fork_failures = Counter("sipagent_fork_failures", "Audio forks that failed.", ["reason"], registry=r)

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
