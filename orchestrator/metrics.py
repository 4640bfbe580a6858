"""Prometheus metrics of the orchestrator (one registry per instance, so tests stay independent)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1)
MOS_BUCKETS = (1.5, 2.0, 2.5, 3.0, 3.5, 3.8, 4.0, 4.2, 4.3, 4.4, 4.5)
JITTER_MS_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 50, 100, 200)
LOSS_PCT_BUCKETS = (0.1, 0.5, 1, 2, 3, 5, 10, 20, 50, 100)
RTT_MS_BUCKETS = (5, 10, 20, 50, 100, 150, 200, 300, 500, 1000)


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
        self.limit_refusals = Counter(
            "sipagent_limit_refusals",
            "Calls refused by a trunk's limits (inbound: 503 from the dialplan; outbound: 429 from the API), by trunk, "
            "direction and limit (max_calls, calls_per_second).",
            ["trunk", "direction", "limit"],
            registry=r,
        )
        self.machine_verdicts = Counter(
            "sipagent_machine_detection",
            "Outbound answering-machine detection verdicts (human, machine, unknown), by mode and trunk.",
            ["mode", "verdict", "trunk"],
            registry=r,
        )
        self.machine_seconds = Histogram(
            "sipagent_machine_detection_seconds",
            "From the answer to the answering-machine detection verdict, by verdict.",
            ["verdict"],
            buckets=(0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 7, 10, 15),
            registry=r,
        )
        self.holds = Counter("sipagent_holds", "Times the far end put a call on hold, by trunk.", ["trunk"], registry=r)
        self.esl_connected = Gauge(
            "sipagent_esl_connected", "1 when the node's event socket is up.", ["node"], registry=r
        )
        self.esl_connects = Counter("sipagent_esl_connects", "Event socket connections made.", ["node"], registry=r)
        self.fork_failures = Counter("sipagent_fork_failures", "Audio forks that failed.", ["reason"], registry=r)
        self.media_sessions = Counter(
            "sipagent_media_sessions", "Calls whose audio fork reached the bridge.", registry=r
        )
        self.media_sessions_ended = Counter(
            "sipagent_media_sessions_ended", "Media sessions ended, by outcome.", ["outcome"], registry=r
        )
        self.media_errors = Counter("sipagent_media_errors", "Media bridge errors by kind.", ["kind"], registry=r)
        self.interruptions = Counter("sipagent_media_interruptions", "Barge-ins (agent audio flushed).", registry=r)
        self.agent_connect_seconds = Histogram(
            "sipagent_agent_connect_seconds",
            "Time to open the agent connection (URL, TCP, TLS, WebSocket).",
            ["protocol"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10),
            registry=r,
        )
        self.media_latency = Histogram(
            "sipagent_media_added_latency_seconds",
            "Time the bridge holds a message before passing it on (sampled), by direction.",
            ["direction"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )

        # live quality (calls/sampler.py): direction "in" is what FreeSWITCH receives from the far end (one
        # observation per sample of an answered call), "out" what the far end receives from us, from its RTCP
        # receiver reports (one observation per sample its reports came in)
        self.rtp_mos = Histogram(
            "sipagent_rtp_mos", "MOS of each live quality sample.", ["trunk", "direction"], buckets=MOS_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.rtp_jitter = Histogram(
            "sipagent_rtp_jitter_milliseconds",
            "Jitter of each live quality sample (ms).",
            ["trunk", "direction"],
            buckets=JITTER_MS_BUCKETS,
            registry=r,
        )
        self.rtp_loss = Histogram(
            "sipagent_rtp_loss_percent",
            "Packet loss of each live quality sample (% of the interval's packets).",
            ["trunk", "direction"],
            buckets=LOSS_PCT_BUCKETS,
            registry=r,
        )
        self.rtp_rtt = Histogram(
            "sipagent_rtp_rtt_milliseconds",
            "Round-trip time of each far-end RTCP report interval (ms; FreeSWITCH's smoothed RTT).",
            ["trunk"],
            buckets=RTT_MS_BUCKETS,
            registry=r,
        )
        self.rtcp_reports = Counter(
            "sipagent_rtcp_reports",
            "Far-end RTCP reports (RECV_RTCP_MESSAGE) by result (ok, no_block, unreadable, unknown_call).",
            ["result"],
            registry=r,
        )
        self.quality_low = Counter(
            "sipagent_quality_low", "Calls whose MOS fell below orchestrator.quality.min_mos.", ["trunk"], registry=r
        )
        self.quality_samples = Counter(
            "sipagent_quality_samples",
            "Live quality samples by result (ok, gone, no_media, unreadable, timeout, error, skipped).",
            ["result"],
            registry=r,
        )

        # webhooks (orchestrator/webhooks): attempts by result, their time, and the outbox by status
        self.webhook_deliveries = Counter(
            "sipagent_webhook_deliveries",
            "Webhook attempts by result (delivered, failed: tried again later, dead: dead-lettered).",
            ["endpoint", "result"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "sipagent_webhook_attempt_seconds",
            "Time of each webhook attempt (to the answer or the failure).",
            ["endpoint"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=r,
        )
        self.webhook_outbox = Gauge(
            "sipagent_webhook_outbox", "Webhook deliveries in the outbox by status.", ["endpoint", "status"], registry=r
        )

    def bind_records(self, writer: Any) -> None:
        """Export the call store writer's counters (records and webhook deliveries written, spooled, dropped …)."""
        self.registry.register(_RecordsCollector(writer))

    def bind_media(self, bridge: Any) -> None:
        """Export the bridge's plain-integer counters and queue depths at scrape time."""
        self.registry.register(_MediaCollector(bridge, self))

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)


class _MediaCollector(Collector):
    """Reads the media bridge's counters when Prometheus scrapes (the hot path only adds integers)."""

    def __init__(self, bridge: Any, metrics: Metrics) -> None:
        self.bridge = bridge
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        b = self.bridge
        for direction, samples in (("to_agent", b.latency_to_agent), ("to_caller", b.latency_to_caller)):
            hist = self.metrics.media_latency.labels(direction)
            while samples:
                hist.observe(samples.popleft())
        c = b.counters()
        frames = CounterMetricFamily("sipagent_media_frames", "Audio messages through the bridge.", labels=["path"])
        byts = CounterMetricFamily("sipagent_media_bytes", "Audio bytes through the bridge.", labels=["path"])
        frames.add_metric(["caller_to_bridge"], c["frames_in"])
        frames.add_metric(["bridge_to_agent"], c["frames_to_agent"])
        frames.add_metric(["agent_to_bridge"], c["frames_from_agent"])
        frames.add_metric(["bridge_to_caller"], c["frames_out"])
        byts.add_metric(["caller_to_bridge"], c["bytes_in"])
        byts.add_metric(["agent_to_bridge"], c["bytes_from_agent"])
        byts.add_metric(["bridge_to_caller"], c["bytes_out"])
        dropped = CounterMetricFamily(
            "sipagent_media_dropped_frames", "Caller audio dropped (agent slow or connecting).", labels=[]
        )
        dropped.add_metric([], c["dropped_to_agent"])
        active = GaugeMetricFamily("sipagent_media_active_sessions", "Calls with a live media session.")
        active.add_metric([], len(b.sessions))
        depth = GaugeMetricFamily(
            "sipagent_media_playback_queue_seconds", "Agent audio waiting to be paced out, all calls.", labels=[]
        )
        depth.add_metric([], sum(s.pacer.queued_ms for s in b.sessions.values()) / 1000)
        conns = GaugeMetricFamily(
            "sipagent_media_connections", "Connections on the media port by stage.", labels=["stage"]
        )
        for stage, n in b.gate.counts().items():
            conns.add_metric([stage], n)
        yield from (frames, byts, dropped, active, depth, conns)


class _RecordsCollector(Collector):
    """Reads the store writer's counters at scrape time (orchestrator/store/writer.py)."""

    COUNTERS = (
        ("written", "Call records written to the store."),
        ("spooled", "Call records and deliveries spooled to disk while the store was unavailable."),
        ("replayed", "Spooled items written to the store once it was back."),
        ("rejected", "Items the store refused as such (kept in the .rejected.jsonl file)."),
        ("dropped", "Call records dropped: the writer's queue was full."),
        ("deleted", "Call records deleted by retention."),
    )

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def collect(self) -> Iterator[Any]:
        w = self.writer
        for name, text in self.COUNTERS:
            family = CounterMetricFamily(f"sipagent_records_{name}", text)
            family.add_metric([], getattr(w, name))
            yield family
        outbox = CounterMetricFamily(
            "sipagent_webhook_outbox_writes", "Webhook deliveries written to the outbox, or dropped.", labels=["result"]
        )
        outbox.add_metric(["written"], w.outbox_written)
        outbox.add_metric(["dropped"], w.outbox_dropped)
        queued = GaugeMetricFamily("sipagent_records_queued", "Records and deliveries waiting in memory for the store.")
        queued.add_metric([], w.queued)
        healthy = GaugeMetricFamily("sipagent_records_store_up", "1 when the call store took the last write.")
        healthy.add_metric([], 1 if w.healthy else 0)
        spool = GaugeMetricFamily("sipagent_records_spool_pending", "1 while spooled items wait for the store.")
        spool.add_metric([], 1 if w.spool.pending else 0)
        yield from (outbox, queued, healthy, spool)
