"""Live quality sampling: every ``orchestrator.quality.sample_seconds``, each answered call's RTP statistics.

The asyncio side of :mod:`orchestrator.calls.quality`. Each round asks every node about its answered calls, one
``bgapi json {"command":"mediaStats",…}`` per call (:func:`orchestrator.esl.commands.media_stats`), at most
``per_node`` of them in flight per node, each given up after ``timeout`` (the command timeout).

``bgapi``, not ``api``: mod_event_socket runs an ``api`` command inside the connection's own thread
(mod_event_socket.c calls ``api_exec`` inline), so a slow one would hold up the call commands queued behind it on
the node's event socket; a ``bgapi`` job runs in a thread of its own and its result comes back as a BACKGROUND_JOB
event. Every node's round is a task of its own, so a slow node never holds up another; a node whose previous round
is still running is skipped (its calls count as ``skipped`` in ``sipagent_quality_samples_total``), so a node
never runs more than one of our jobs per call. Any failure — timeout, lost link, a reply that cannot be read —
only costs that sample. A call is sampled while it is answered (transfers and bridged transfers included) and no
more once it ended; its points go on ``call.live_quality`` (:class:`~orchestrator.calls.quality.Track`), stamped
when the answer arrives; the metrics get one observation per sample, and ``quality_low`` / ``quality_ok``
notices go to the listeners.

The far end's RTCP reports (``RECV_RTCP_MESSAGE``, which the controller subscribes to when
``freeswitch.rtcp_interval_ms`` and sampling are on) reach :meth:`QualitySampler.rtcp`: each is put on its call's
track and shows in the call's next sample (direction ``out`` in the metrics, once per sample new reports came in).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable
from typing import Any

from orchestrator.calls import quality
from orchestrator.calls.deadmedia import Watch
from orchestrator.calls.tracker import Call, CallState, Notice, NoticeKind
from orchestrator.config.model import QualitySettings
from orchestrator.esl import commands
from orchestrator.esl.client import CommandTimeout, EslClient, EslError
from orchestrator.metrics import Metrics

log = logging.getLogger("sipagent.quality")

#: states in which a call has media worth sampling
SAMPLED_STATES = frozenset({CallState.ANSWERED, CallState.TRANSFERRING, CallState.BRIDGED})
_NOTICES = {quality.Change.LOW: NoticeKind.QUALITY_LOW, quality.Change.OK: NoticeKind.QUALITY_OK}


class QualitySampler:
    """Samples the answered calls of every node at a fixed rate (see the module docstring)."""

    def __init__(
        self,
        settings: QualitySettings,
        *,
        calls: Callable[[], Iterable[Call]],
        client: Callable[[str], EslClient | None],
        notify: Callable[[list[Notice]], None],
        metrics: Metrics,
        trunks: Collection[str] = (),
        command_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
        interval: float | None = None,
        timeout: float | None = None,
        per_node: int = 16,
        media_timeout: Callable[[Call], float] | None = None,
        on_dead: Callable[[Call], None] | None = None,
    ) -> None:
        self.settings = settings
        self.interval = settings.sample_seconds if interval is None else interval
        #: how long a sample's job may take before it is given up (a late answer is still a good sample: the point
        #: is stamped when it arrives; the node is skipped until its round is answered or given up)
        self.timeout = timeout if timeout is not None else command_timeout
        self.per_node = max(1, per_node)
        self._calls, self._client, self._notify = calls, client, notify
        self.metrics = metrics
        self.trunks = frozenset(trunks)
        self.clock = clock
        self._task: asyncio.Task[None] | None = None
        self._rounds: dict[str, asyncio.Task[None]] = {}
        self._slow: set[str] = set()  # nodes skipped in the last round (logged once)
        #: dead media (calls/deadmedia.py): the call's trunk's timeout in seconds (0: none), and what ends a dead call
        self.media_timeout = media_timeout
        self.on_dead = on_dead

    @property
    def enabled(self) -> bool:
        """False with ``sample_seconds: 0``."""
        return self.interval > 0

    def start(self) -> None:
        """Start sampling (no-op when disabled or running)."""
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._run(), name="quality-sampler")

    async def stop(self) -> None:
        """Stop sampling; samples in flight are dropped."""
        tasks = [t for t in (self._task, *self._rounds.values()) if t is not None]
        self._task = None
        self._rounds.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.interval
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            due += self.interval
            if due < loop.time():  # the loop was held up: go on from now, never in a burst
                due = loop.time() + self.interval
            try:
                self.sample()
            except Exception:
                log.exception("quality sampling round failed")

    # -- one round ------------------------------------------------------------------------------------
    def sample(self) -> list[asyncio.Task[None]]:
        """Start a round: one task per node with answered calls (a node still busy with its last round is
        skipped). Returns the tasks started."""
        by_node: dict[str, list[Call]] = defaultdict(list)
        for call in list(self._calls()):
            if call.active and call.answered_at is not None and call.state in SAMPLED_STATES:
                by_node[call.node].append(call)
        started: list[asyncio.Task[None]] = []
        for node, calls in by_node.items():
            running = self._rounds.get(node)
            if running is not None and not running.done():
                self.metrics.quality_samples.labels("skipped").inc(len(calls))
                if node not in self._slow:
                    self._slow.add(node)
                    log.warning("quality: node %s has not answered the last round of samples; skipping it", node)
                continue
            if node in self._slow:
                self._slow.discard(node)
                log.info("quality: node %s answers samples again", node)
            task = asyncio.create_task(self._node_round(node, calls), name=f"quality-{node}")
            self._rounds[node] = task
            started.append(task)
        return started

    async def _node_round(self, node: str, calls: list[Call]) -> None:
        client = self._client(node)
        if client is None or not client.connected:
            self.metrics.quality_samples.labels("error").inc(len(calls))
            return
        gate = asyncio.Semaphore(self.per_node)

        async def one(call: Call) -> None:
            async with gate:
                try:
                    await self._sample_call(client, call)
                except Exception:  # a bug here costs one sample, never the round
                    log.exception("quality: call %s: sample failed", call.uuid)

        await asyncio.gather(*(one(c) for c in calls))

    async def _sample_call(self, client: EslClient, call: Call) -> None:
        try:
            command = commands.media_stats(call.uuid)
        except commands.Refused:  # the tracker only adopts plain call ids: unreachable
            return
        try:
            # bgapi: FreeSWITCH runs an ``api`` command inside the connection's thread, so a slow one would hold
            # up the call commands behind it on this socket; a job runs in a thread of its own
            async with asyncio.timeout(self.timeout):
                body = await client.bgapi(command, timeout=self.timeout, check=False)
        except (CommandTimeout, TimeoutError):
            self.metrics.quality_samples.labels("timeout").inc()
            log.debug("quality: call %s: no mediaStats reply within %.1fs", call.uuid, self.timeout)
            return
        except EslError as exc:
            self.metrics.quality_samples.labels("error").inc()
            log.debug("quality: call %s: %s", call.uuid, exc)
            return
        reply, reading = quality.parse_media_stats(body)
        self.metrics.quality_samples.labels(reply).inc()
        if reading is None or not call.active:
            return  # gone, no media yet, unreadable, or hung up while the reply was on its way
        self.add(call, reading)
        self.watch_media(call, reading)

    def watch_media(self, call: Call, reading: quality.Reading) -> bool:
        """Feed the call's dead-media watch; True (and ``on_dead`` called) when its RTP stopped for the trunk's
        timeout outside a hold."""
        if self.media_timeout is None or self.on_dead is None:
            return False
        if call.dead_media is None:
            seconds = self.media_timeout(call)
            if not seconds:
                return False
            call.dead_media = Watch(seconds)
        held = call.held_since is not None
        if not call.dead_media.observe(self.clock(), reading.get("in_packet_count"), held):
            return False
        log.info("call %s: no RTP for %.0f s outside a hold: dead media", call.uuid, call.dead_media.timeout)
        self.on_dead(call)
        return True

    def _track(self, call: Call) -> quality.Track:
        if call.live_quality is None:
            s = self.settings
            ttl = max(quality.REPORT_TTL, 2 * self.interval)
            call.live_quality = quality.Track(s.series_length, s.min_mos, far_ttl=ttl)
        return call.live_quality

    def rtcp(self, call: Call | None, header: Callable[[str], str]) -> quality.RtcpResult:
        """A ``RECV_RTCP_MESSAGE`` for ``call`` (None: not one of ours): the far end's report goes on the call, to
        show in its next sample. O(1) work and state per report, nothing logged: a far end may send any number."""
        if call is None or not call.active:
            result = quality.RtcpResult.UNKNOWN_CALL
        else:
            result, report = quality.parse_rtcp(header)
            if report is not None:
                self._track(call).report(report, self.clock())
        self.metrics.rtcp_reports.labels(result).inc()
        return result

    def add(self, call: Call, reading: quality.Reading) -> quality.Point:
        """Put a reading on the call: its point, the metrics and, when it crossed the threshold, a notice."""
        s = self.settings
        track = self._track(call)
        point, change = track.add(reading, self.clock())
        trunk = call.trunk if call.trunk in self.trunks else "other"
        m = self.metrics
        if point.mos is not None:
            m.rtp_mos.labels(trunk, "in").observe(point.mos)
        if point.jitter_ms is not None:
            m.rtp_jitter.labels(trunk, "in").observe(point.jitter_ms)
        if point.loss_pct is not None:
            m.rtp_loss.labels(trunk, "in").observe(point.loss_pct)
        far = point.far
        if far is not None and far.fresh:  # one observation per far-end report interval
            m.rtp_mos.labels(trunk, "out").observe(far.mos)
            m.rtp_loss.labels(trunk, "out").observe(far.loss_pct)
            if far.jitter_ms is not None:
                m.rtp_jitter.labels(trunk, "out").observe(far.jitter_ms)
            if far.rtt_ms is not None:
                m.rtp_rtt.labels(trunk).observe(far.rtt_ms)
        if change is not None:
            if change is quality.Change.LOW:
                m.quality_low.labels(trunk).inc()
            shown = point.to_dict()
            data: dict[str, Any] = {
                "mos": shown["mos"],
                "min_mos": s.min_mos,
                "jitter_ms": shown["jitter_ms"],
                "loss_pct": shown["loss_pct"],
                "out_mos": shown["out_mos"],
                "out_jitter_ms": shown["out_jitter_ms"],
                "out_loss_pct": shown["out_loss_pct"],
                "rtt_ms": shown["rtt_ms"],
                "direction": track.low_direction,
            }
            log.info(
                "call %s: %s (MOS %s, far end %s, threshold %s)",
                call.uuid, change, data["mos"], data["out_mos"], s.min_mos,
            )  # fmt: skip
            self._notify([Notice(_NOTICES[change], call, data)])
        return point
