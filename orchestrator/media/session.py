"""One call's audio (asyncio): caller audio → adapter → agent, agent → pacer → fork.

A :class:`Session` is opened by the bridge on the fork's metadata. It connects the call's agent
(:class:`~orchestrator.media.agent_connection.AgentConnection`, buffering caller audio meanwhile),
hands caller frames to the agent protocol adapter (:mod:`orchestrator.agents`) and on to the agent,
carries out the adapter's actions (play, clear, marks, hang-up, transfer, DTMF, transcript, events),
and paces the agent's audio back into the fork (:class:`~orchestrator.media.playback.Pacer`).

What ends the call and with which outcome is decided by its sans-I/O
:class:`~orchestrator.media.lifecycle.Lifecycle`; the session does the I/O those decisions ask for
(log line, metrics, close the agent, tell the controller, hang up) and arms one timer for the
lifecycle's next deadline. It knows the bridge only through :class:`SessionHost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Protocol

from orchestrator import agents
from orchestrator.agents import _wire, base
from orchestrator.agents import connect as agent_connect
from orchestrator.agents import overrides as agent_overrides
from orchestrator.agents.connect import SetupError, classify, endpoint, resolve
from orchestrator.audio.convert import Converter, rms
from orchestrator.config.model import Deployment, MachineDetection, MediaSettings
from orchestrator.media import amd, dialects, fork
from orchestrator.media.agent_connection import AgentConnection, agent_line
from orchestrator.media.lifecycle import (
    CONNECTING,
    ENDING,
    OPEN,
    Decision,
    Failed,
    HangingUp,
    Lifecycle,
    PendingTransfer,
    Phase,
    TransferAnswer,
    describe,
)
from orchestrator.media.playback import Pacer
from orchestrator.metrics import Metrics

if TYPE_CHECKING:
    from orchestrator.media.fork_connection import ForkConnection

log = logging.getLogger("sipagent.media")

FILE_GAP = 0.11  # file playback: FreeSWITCH pauses 100 ms between two queued files (measured), plus margin
MAX_EVENTS = 100  # agent events kept per call record


class CallControl(Protocol):
    """What the bridge asks of the call controller."""

    async def hangup(self, uuid: str, reason: str = "completed", by: str = "api") -> None: ...
    async def transfer(
        self,
        uuid: str,
        target: str,
        *,
        method: str | None = "refer",
        trunk: str | None = None,
        mode: str | None = None,
        brief: str | None = None,
    ) -> None: ...
    async def send_dtmf(self, uuid: str, digits: str, duration_ms: int = 100) -> None: ...
    async def record(self, uuid: str, action: str) -> dict[str, Any]: ...
    async def machine_detection(self, uuid: str, data: dict[str, Any]) -> None: ...
    async def play_and_hangup(self, uuid: str, prompt: str, reason: str, by: str) -> None: ...
    async def flush_playback(self, uuid: str) -> None: ...
    def media_update(self, uuid: str, data: dict[str, Any], final: bool = False) -> None: ...
    async def claim_fork(self, uuid: str, token: str) -> bool: ...


_SUMMED: dict[str, Any] = {"summed": True}  # a counter the metrics sum over every call


@dataclass
class Stats:
    """Per-call counters (plain integers: the hot path only adds)."""

    frames_in: int = field(default=0, metadata=_SUMMED)  # caller → bridge
    bytes_in: int = field(default=0, metadata=_SUMMED)
    frames_to_agent: int = field(default=0, metadata=_SUMMED)
    dropped_to_agent: int = field(default=0, metadata=_SUMMED)
    frames_from_agent: int = field(default=0, metadata=_SUMMED)
    bytes_from_agent: int = field(default=0, metadata=_SUMMED)
    frames_out: int = field(default=0, metadata=_SUMMED)  # bridge → FreeSWITCH
    bytes_out: int = field(default=0, metadata=_SUMMED)
    interruptions: int = 0
    violations: int = 0
    agent_connect_ms: float | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)

    def add(self, other: Stats) -> None:
        """Add ``other``'s :data:`COUNTERS` to these."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))


#: the counters summed over calls for the metrics (``sipagent_media_frames``, ``_bytes``, ``_dropped_frames``)
COUNTERS = tuple(f.name for f in fields(Stats) if f.metadata.get("summed"))


class SessionHost(Protocol):
    """What a session asks of the bridge it lives in."""

    deployment: Deployment
    settings: MediaSettings
    dialect: dialects.Dialect
    control: CallControl | None
    metrics: Metrics
    http: Any
    pacing: set[Session]
    latency_to_caller: deque[float]
    close_timeout: float

    def finished(self, session: Session) -> None: ...


def _pacer(rate: int, s: MediaSettings) -> Pacer:
    """The playback pacer the settings ask for."""
    if s.playback == "streaming":
        return Pacer(rate, lead_ms=s.lead_ms, max_seconds=s.max_playback_seconds)
    seg = s.file_segment_ms  # whole segments become files FreeSWITCH plays; keep one segment ahead
    return Pacer(
        rate,
        lead_ms=2 * seg,
        prebuffer_ms=0,
        chunk_ms=0,
        min_send_ms=seg,
        max_seconds=s.max_playback_seconds,
        pad=False,
    )


class Session:
    """One call's audio: its fork, its agent connection, the agent protocol and playback."""

    def __init__(
        self, bridge: SessionHost, call_id: str, metadata: fork.ForkMetadata | dict[str, Any], agent_config: Any
    ) -> None:
        self.bridge = bridge
        self.call_id = call_id
        meta = metadata if isinstance(metadata, fork.ForkMetadata) else fork.ForkMetadata.model_validate(metadata)
        self.metadata = meta.model_dump()
        self.rate = meta.fork_rate  # the agent side's rate (adapter, pacer): the first fork's, for the whole call
        #: the current fork's rate: another after a codec change restarted the fork (then converted both ways)
        self.fork_rate = self.rate
        self._from_fork: Converter | None = None
        self._to_fork: Converter | None = None
        self.info = base.CallInfo(
            call_id=call_id,
            direction=meta.direction,
            caller_id=meta.caller_id,
            called_number=meta.called_number,
            agent=meta.agent,
            trunk=meta.trunk,
            rate=self.rate,
            variables=dict(meta.variables),
        )
        self.agent_config = agent_config
        overrides, problem = agent_overrides.for_call(bridge.deployment, agent_config, self.metadata)
        if problem:
            log.warning("call %s: %s; the configured overrides apply", call_id, _wire.clean(problem, 200))
        self.adapter: base.AgentProtocol = agents.create(self.info, agent_config, overrides)
        s = bridge.settings
        self.pacer = _pacer(self.rate, s)
        self.life = Lifecycle(
            first_message_timeout=agent_config.first_message_timeout_seconds or 0.0,
            fork_grace=s.fork_grace_seconds,
            stall_seconds=s.agent_stall_seconds,
            transfer_timeout=agent_config.transfer_timeout_seconds,
        )
        self.fork: ForkConnection | None = None
        self.agent: AgentConnection | None = None
        self.stats = Stats()
        self.pending: deque[bytes] = deque()  # caller audio while the agent connects
        self.pending_max = max(1, s.agent_queue_ms // 20)
        #: caller audio is sent to the agent in messages of this many bytes (0: each frame as it comes)
        self.chunk_bytes = self.rate * 2 * s.agent_chunk_ms // 1000 if s.agent_chunk_ms > 20 else 0
        self.chunk = bytearray()  # caller audio collected for the next message
        self.chunk_frames = 0
        self.chunk_since = 0.0  # when its first frame came
        self.chunk_wait = s.agent_chunk_ms / 1000  # a partial message this old goes out as it is (frames stopped)
        self.started = time.monotonic()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.events: list[dict[str, Any]] = []  # tools the agent ran itself, errors it reported, transfers
        self.last_error: dict[str, Any] | None = None
        self._connect_started = self.started
        self._timer: asyncio.TimerHandle | None = None  # the lifecycle's next deadline
        self._timer_at: float | None = None
        self._drain_timer: asyncio.TimerHandle | None = None
        self._drain_until = 0.0
        # answering-machine detection (outbound calls; media/amd.py): the detector, and what happens to the
        # agent's audio meanwhile -- "hold" (kept until the verdict), "drop" (a machine's greeting plays), None
        self.amd: amd.Detector | None = None
        self.amd_gate: str | None = None
        self.amd_held: list[base.Play | base.Mark] = []
        self.amd_held_bytes = 0
        self.amd_dropped_ms = 0.0
        self._amd_updates: list[base.MachineUpdate] = []  # told to the agent once it is connected
        self._amd_timer: asyncio.TimerHandle | None = None
        self._amd_timer_at: float | None = None
        self._amd_done = False  # the controller was told the detector needs nothing more
        settings = self._machine_settings(meta)
        if settings is not None:
            self.amd = amd.Detector(settings, self.started)
            self.amd_gate = "hold" if settings.mode in ("hangup", "wait_for_beep") else None
            with contextlib.suppress(RuntimeError):  # no loop: a test drives expire_machine itself
                asyncio.get_running_loop()
                self._amd([], self.started)  # the no-speech deadline runs even if no frame ever comes

    # -- the lifecycle's view -------------------------------------------------------------------
    @property
    def state(self) -> Phase:
        """``connecting``, ``open``, ``ending`` or ``ended`` (a :class:`~orchestrator.media.lifecycle.Phase`)."""
        return self.life.phase

    @property
    def outcome(self) -> str:
        """The call's media outcome once decided (``""``: none yet, ``completed`` in the record)."""
        return self.life.outcome

    @property
    def detail(self) -> str:
        """What the outcome was about (failure, the agent's hang-up reason)."""
        return self.life.detail

    @property
    def heard(self) -> bool:
        """The agent sent a message it understood."""
        return self.life.heard

    def _arm(self) -> None:
        """One timer for the lifecycle's next deadline (re-armed only when it moved)."""
        due = self.life.deadline
        if due == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = None if due is None else asyncio.get_running_loop().call_later(due - time.monotonic(), self._wake)

    def _wake(self) -> None:
        self._timer = self._timer_at = None
        self.expire(time.monotonic())

    def expire(self, now: float) -> None:
        """Carry out what the lifecycle's deadlines decide by ``now`` (its timer passes the time; a test may
        pass a later one to run the call's clocks forward)."""
        self._decide(*self.life.poll(now))

    def _decide(self, *decisions: Decision | None) -> None:
        """Carry out the lifecycle's decisions, then arm the timer for its next deadline."""
        for decision in decisions:
            if isinstance(decision, Failed):
                self._failed(decision)
            elif isinstance(decision, HangingUp):
                self._hanging_up(decision)
            elif decision is not None:
                self._answer_transfer(decision)
        self._arm()

    # -- caller side ----------------------------------------------------------------------------
    def caller_audio(self, pcm: bytes) -> None:
        """A frame of caller audio (the hot path)."""
        st = self.stats
        st.frames_in += 1
        st.bytes_in += len(pcm)
        if self._from_fork is not None:
            pcm = self._from_fork.convert(pcm)
        if self.amd is not None and not self.amd.finished:
            now = time.monotonic()
            self._amd(self.amd.frame(amd.level_dbfs(rms(pcm)), len(pcm) * 500 / self.rate, now), now)
        if self.agent is not None:
            self._hand_over(pcm)
        elif self.life.phase is CONNECTING:
            if len(self.pending) >= self.pending_max:
                self.pending.popleft()
                st.dropped_to_agent += 1
            self.pending.append(pcm)

    def _hand_over(self, pcm: bytes) -> None:
        """A frame for the agent: sent at once (``agent_chunk_ms`` 20) or added to the next message."""
        if not self.chunk_bytes:
            self._to_agent(pcm, 1)
            return
        chunk = self.chunk
        if not chunk:
            self.chunk_since = time.monotonic()
        chunk += pcm
        self.chunk_frames += 1
        if len(chunk) >= self.chunk_bytes:
            self.flush_caller_audio()

    def flush_stale(self, now: float) -> None:
        """Send a partial message whose first frame waited longer than ``agent_chunk_ms`` (the fork went quiet)."""
        if self.chunk and now - self.chunk_since >= self.chunk_wait:
            self.flush_caller_audio()

    def flush_caller_audio(self) -> None:
        """Send the caller audio collected for the next message now (when full, before a DTMF digit, at the end)."""
        if self.chunk and self.agent is not None:
            pcm, frames = bytes(self.chunk), self.chunk_frames
            self.chunk.clear()
            self.chunk_frames = 0
            self._to_agent(pcm, frames)

    def _to_agent(self, pcm: bytes, frames: int) -> None:
        """Caller audio (``frames`` frames of it) to the agent, unless the agent stopped reading."""
        agent = self.agent
        assert agent is not None
        message = self.adapter.audio(pcm)
        if message is None:
            return
        if agent.paused:
            self.stats.dropped_to_agent += frames
            if time.monotonic() - agent.paused_at > self.life.stall_seconds:
                self._decide(self.life.stalled(agent.paused_at, time.monotonic()))
        else:
            agent.send(message)
            self.stats.frames_to_agent += frames

    def dtmf(self, digit: str) -> None:
        """The caller pressed a key."""
        if self.agent is not None:
            self.flush_caller_audio()  # the audio before the key press reaches the agent before it
            for message in self.adapter.dtmf(digit):
                self.agent.send(message)

    def hold(self, held: bool) -> None:
        """The far end held the call (or resumed it): the agent is told its protocol's way; the record notes it."""
        self._event("hold", {"held": held})
        if self.agent is not None:
            for message in self.adapter.hold(held):
                self.agent.send(message)

    # -- agent side -----------------------------------------------------------------------------
    async def connect_agent(self) -> None:
        """Open the agent connection within its timeout, or end the call the configured way.

        Every failure before the conversation starts — signed URL, DNS, TCP, TLS, WebSocket handshake,
        the time limit — ends in :meth:`fail` with its own outcome (:mod:`orchestrator.agents.connect`).
        """
        cfg = self.agent_config
        self._connect_started = time.monotonic()
        conn: AgentConnection | None = None
        where = f"agent '{cfg.name}'"
        phase = "signed URL" if getattr(cfg, "api_key", None) is not None else "connect"
        try:
            async with asyncio.timeout(cfg.connect_timeout_seconds):
                url, headers, ssl_context = await resolve(cfg, self.bridge.http)
                host, port, _ = endpoint(url)
                where, phase = f"agent {host}:{port}", "TCP/TLS connect"
                conn = self._agent_connection(url, headers)
                await asyncio.get_running_loop().create_connection(
                    lambda: conn, host, port, ssl=ssl_context, server_hostname=host if ssl_context else None
                )
                phase = "WebSocket handshake"
                await conn.opened
        except Exception as exc:  # nothing may escape: the call must end the configured way
            if conn is not None:
                conn.abandon()
            if isinstance(exc, TimeoutError):
                error = SetupError(
                    agent_connect.CONNECT_TIMEOUT,
                    f"{where}: not connected within {cfg.connect_timeout_seconds:g} s ({phase})",
                )
            else:
                error = classify(exc, where)
                if error.outcome == agent_connect.CONNECT_FAILED and agent_line():
                    log.warning("call %s: unexpected agent setup error", self.call_id, exc_info=exc)
            self.fail(error.outcome, error.detail)

    def _agent_connection(self, url: str, headers: dict[str, str]) -> AgentConnection:
        b = self.bridge
        return AgentConnection(
            self,
            url,
            headers,
            buffer_bytes=b.settings.agent_buffer_kb * 1024,
            latency=b.latency_to_caller,
            close_timeout=b.close_timeout,
        )

    def agent_opened(self, conn: AgentConnection) -> bool:
        """The agent's WebSocket is open: start the conversation (False: the call is gone, close it)."""
        now = time.monotonic()
        if not self.life.opened(now):
            return False
        self.agent = conn
        elapsed = now - self._connect_started
        self.stats.agent_connect_ms = round(elapsed * 1000, 1)
        self.bridge.metrics.agent_connect_seconds.labels(self.agent_config.protocol).observe(elapsed)
        for message in self.adapter.open():
            conn.send(message)
        while self.pending:  # caller audio that waited for the connection
            self._hand_over(self.pending.popleft())
        for update in self._amd_updates:  # a verdict reached before the agent was connected
            for message in self.adapter.machine(update):
                conn.send(message)
        self._amd_updates.clear()
        self._arm()
        return True

    def agent_message(self, message: base.Message) -> None:
        """A message from the agent."""
        phase = self.life.phase
        if phase is not OPEN and phase is not ENDING:
            return
        try:
            actions = self.adapter.receive(message)
            if not self.life.heard and (not actions or any(type(a) is not base.ProtocolViolation for a in actions)):
                self.life.understood()
                self._arm()
            for action in actions:
                self._act(action)
        except Exception:  # an adapter bug must not take other calls down
            if agent_line():
                log.exception("call %s: agent adapter failed on a message", self.call_id)
            self.bridge.metrics.media_errors.labels("adapter").inc()

    def _act(self, action: base.Action) -> None:
        kind = type(action)
        if kind is base.Play:  # the hot path: inline
            if self.amd_gate is not None:
                self._amd_gated(action)  # type: ignore[arg-type]
                return
            pcm = action.pcm  # type: ignore[union-attr]
            st = self.stats
            st.frames_from_agent += 1
            st.bytes_from_agent += len(pcm)
            now = time.monotonic()
            self.pacer.push(pcm, now)
            self.poll(now)
            if self.pacer.busy:
                self.bridge.pacing.add(self)
        elif kind is base.Send:
            if self.agent is not None:
                self.agent.send(action.message)  # type: ignore[union-attr]
        elif kind is base.Clear:
            self.interrupt()
        elif kind is base.Mark:
            if self.amd_gate is not None:
                self._amd_gated(action)  # type: ignore[arg-type]
                return
            self.pacer.mark(action.name)  # type: ignore[union-attr]
            self.bridge.pacing.add(self)
        elif kind is base.Hangup:
            self.agent_hangup(action.reason)  # type: ignore[union-attr]
        elif kind is base.Ending:
            self.life.announce_end(action.reason, time.monotonic())  # type: ignore[union-attr]
            self._arm()
        elif kind is base.TransferAction:
            self._transfer(action)  # type: ignore[arg-type]
        elif kind is base.SendDtmf:
            self.spawn(self._send_dtmf(action))  # type: ignore[arg-type]
        elif kind is base.RecordAction:
            self.spawn(self._record(action))  # type: ignore[arg-type]
        elif kind is base.Transcript:
            self._transcript(action)  # type: ignore[arg-type]
        elif kind is base.AgentInfo:
            if self.bridge.control is not None:
                self.bridge.control.media_update(self.call_id, {"agent": action.data})  # type: ignore[union-attr]
        elif kind is base.AgentEvent:
            self._agent_event(action)  # type: ignore[arg-type]
        elif kind is base.ProtocolViolation:
            self._violation(action)  # type: ignore[arg-type]

    def _violation(self, action: base.ProtocolViolation) -> None:
        self.stats.violations += 1
        self.bridge.metrics.media_errors.labels("agent_protocol").inc()
        if self.stats.violations <= 20 and agent_line():
            log.warning("call %s: agent %.100s: %.200s", self.call_id, action.where, _wire.clean(action.detail, 200))

    def _transcript(self, action: base.Transcript) -> None:
        lines = self.stats.transcript
        if action.replace:
            for line in reversed(lines):
                if line["role"] == action.role:
                    line["text"] = action.text
                    line["corrected"] = True
                    return
        if len(lines) < 2000:
            lines.append({"t": round(time.monotonic() - self.started, 2), "role": action.role, "text": action.text})

    def _agent_event(self, action: base.AgentEvent) -> None:
        self._event(action.kind, action.data)
        if action.error:
            self.last_error = action.data
            self.bridge.metrics.media_errors.labels("agent_error").inc()
        if agent_line():
            level = logging.WARNING if action.error or "note" in action.data else logging.INFO
            log.log(level, "call %s: agent %s: %.300s", self.call_id, action.kind, describe(action.data))

    def _event(self, kind: str, data: dict[str, Any]) -> None:
        """An entry in the record's ``agent_events`` (at most :data:`MAX_EVENTS`)."""
        if len(self.events) < MAX_EVENTS:
            self.events.append({"t": round(time.monotonic() - self.started, 2), "kind": kind, **data})

    def poll(self, now: float) -> None:
        """Send the caller what the pacer has due by ``now``, and tell the agent which marks were heard."""
        chunk, marks = self.pacer.poll(now)
        if chunk is not None and self.fork is not None:
            self.stats.frames_out += 1
            self.stats.bytes_out += len(chunk)
            if self.bridge.settings.playback == "streaming":
                # streamed audio is written to the channel at the fork's rate; a file says its own rate
                self.fork.send_audio(chunk if self._to_fork is None else self._to_fork.convert(chunk))
            else:
                self.fork.send_text(self.bridge.dialect.file_message(chunk, self.rate))
        if marks and self.agent is not None:
            for name in marks:
                for message in self.adapter.mark_played(name):
                    self.agent.send(message)

    def interrupt(self) -> None:
        """Barge-in: flush everything the caller has not heard yet."""
        if self.amd_held:
            self._amd_drop_held()
        self.stats.interruptions += 1
        self.bridge.metrics.interruptions.inc()
        cleared = self.pacer.clear(time.monotonic())
        if self.fork is not None:
            kill = self.bridge.dialect.kill_audio
            if kill is not None:  # mod_audio_stream has no such message
                self.fork.send_text(kill)  # streaming: empties the playout buffer; file: breaks the playback
            if self.bridge.settings.playback == "file" and self.bridge.control is not None:
                self.spawn(self.bridge.control.flush_playback(self.call_id))  # and drops the queued files
                # FreeSWITCH takes the next file off its queue ~100 ms before playing it (measured): a break
                # landing in that gap misses it, so break once more after the gap
                asyncio.get_running_loop().call_later(FILE_GAP, self._flush_again)
        if self.agent is not None:
            for name in cleared:
                for message in self.adapter.mark_played(name):
                    self.agent.send(message)

    def _flush_again(self) -> None:
        if self.life.phase is OPEN and self.bridge.control is not None:
            self.spawn(self.bridge.control.flush_playback(self.call_id))

    # -- call actions ---------------------------------------------------------------------------
    def spawn(self, coro: Awaitable[Any]) -> None:
        """Run a call action in the background (its failure is logged, never raised)."""
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("call %s: %s", self.call_id, getattr(task.exception(), "message", None) or task.exception())

    def _transfer(self, action: base.TransferAction) -> None:
        """Ask for the transfer; the agent's tool result waits for its outcome (the ``transfer`` notice)."""
        control = self.bridge.control
        refused = self.life.transfer_requested(
            action.tool_call_id, action.target, time.monotonic(), control is not None
        )
        if refused is not None:
            self._tool_result(action.tool_call_id, False, refused)
            return
        assert control is not None and self.life.transfer is not None
        self._arm()
        self.spawn(self._request_transfer(control, self.life.transfer, action))

    async def _request_transfer(
        self, control: CallControl, pending: PendingTransfer, action: base.TransferAction
    ) -> None:
        if action.mode == "attended":  # the target is dialled through the call's trunk; the caller stays here
            request = control.transfer(self.call_id, pending.target, method="attended", brief=action.brief)
        else:
            request = control.transfer(self.call_id, pending.target)
        ok, detail = await self._control(request)
        if not ok:  # refused at once (the controller may also have sent a transfer notice: answered once)
            self._decide(self.life.transfer_refused(pending, detail))

    def transfer_outcome(self, data: dict[str, Any]) -> None:
        """The controller's ``transfer`` notice: the REFER's final NOTIFY, a bridge result, or a refused command.

        ``bridged``: the caller talks to the transfer target now (the call goes on without the agent): the agent
        hears the outcome, then its connection is closed and the session ends."""
        self._decide(self.life.transfer_outcome(data))
        if data.get("succeeded") is True and data.get("bridged") is True:
            self.call_ended("transferred")

    def _answer_transfer(self, answer: TransferAnswer) -> None:
        self._event("transfer", {"target": answer.target, "ok": answer.ok, "detail": answer.text})
        self._tool_result(answer.tool_call_id, answer.ok, answer.text)

    async def _send_dtmf(self, action: base.SendDtmf) -> None:
        ok, detail = await self._control(
            self.bridge.control.send_dtmf(self.call_id, action.digits) if self.bridge.control else None
        )
        self._tool_result(action.tool_call_id, ok, detail or f"sent {action.digits}")

    async def _record(self, action: base.RecordAction) -> None:
        control = self.bridge.control
        ok, detail = await self._control(control.record(self.call_id, action.action) if control else None)
        done = {"start": "started", "stop": "stopped", "pause": "paused", "resume": "resumed"}[action.action]
        self._event("record", {"action": action.action, "ok": ok, **({"detail": detail} if detail else {})})
        self._tool_result(action.tool_call_id, ok, detail or f"The call recording is {done}.")

    async def _control(self, coro: Awaitable[Any] | None) -> tuple[bool, str]:
        if coro is None:
            return False, "no call control"
        try:
            await coro
        except Exception as exc:
            return False, getattr(exc, "message", None) or str(exc)
        return True, ""

    def _tool_result(self, tool_call_id: str | None, ok: bool, detail: str) -> None:
        if tool_call_id is None or self.agent is None:
            return
        for message in self.adapter.tool_result(tool_call_id, detail, is_error=not ok):
            self.agent.send(message)

    def count_error(self, kind: str) -> None:
        """Count ``kind`` in ``sipagent_media_errors_total``."""
        self.bridge.metrics.media_errors.labels(kind).inc()

    # -- answering-machine detection (media/amd.py; docs/call-flow.md#answering-machine-detection) -------------
    def _machine_settings(self, meta: fork.ForkMetadata) -> MachineDetection | None:
        """The call's detection settings from its fork metadata (outbound calls only; invalid: none, logged)."""
        if meta.machine_detection is None or meta.direction != "outbound":
            return None
        try:
            settings = MachineDetection.model_validate(meta.machine_detection)
        except ValueError as exc:
            log.warning("call %s: machine_detection in the fork metadata refused: %.200s", self.call_id, exc)
            return None
        return settings if settings.mode != "off" else None

    def machine_beep(self) -> None:
        """mod_avmd heard the voicemail beep (the controller's ``machine`` notice)."""
        if self.amd is not None and not self.amd.finished:
            now = time.monotonic()
            self._amd(self.amd.beep(now), now)

    def expire_machine(self, now: float) -> None:
        """What the detector's timeouts decide by ``now`` (its timer passes the time; a test may pass a later one)."""
        if self.amd is not None:
            self._amd(self.amd.poll(now), now)

    def _amd_wake(self) -> None:
        self._amd_timer = self._amd_timer_at = None
        self.expire_machine(time.monotonic())

    def _amd(self, decisions: list[amd.Decision], now: float) -> None:
        """Carry out the detector's decisions, then arm its timer."""
        detector = self.amd
        assert detector is not None
        for d in decisions:
            if isinstance(d, amd.Decided):
                self._amd_verdict(d, detector)
            elif isinstance(d, amd.Speak):
                self.amd_gate = None
                self._amd_tell(base.MachineUpdate("speak", "machine", reason=d.reason))
                self._event("machine_detection", {"event": "speak", "reason": d.reason})
                self._amd_report({"speak_ms": d.speak_ms, "speak_reason": d.reason})
            else:
                self._amd_tell(base.MachineUpdate("beep", "machine", data={"beep_ms": d.beep_ms}))
                self._amd_report({})
        if detector.finished and not self._amd_done:  # e.g. notify: no beep within beep_timeout_seconds
            self._amd_report({})
        due = detector.deadline
        if due != self._amd_timer_at:
            if self._amd_timer is not None:
                self._amd_timer.cancel()
            self._amd_timer_at = due
            self._amd_timer = (
                None if due is None else asyncio.get_running_loop().call_later(max(0.0, due - now), self._amd_wake)
            )

    def _amd_verdict(self, d: amd.Decided, detector: amd.Detector) -> None:
        mode = detector.s.mode
        machine = d.verdict is amd.Verdict.MACHINE
        action = "continue"
        if machine and mode == "wait_for_beep":
            action = "wait"
        elif machine and mode == "hangup":
            action = "hangup"
        figures = {"verdict_ms": d.verdict_ms, "speech_ms": d.speech_ms, "greeting_ms": d.greeting_ms}
        self._amd_tell(base.MachineUpdate("verdict", d.verdict.value, action, d.reason, figures))
        self._event("machine_detection", {"event": "verdict", "verdict": d.verdict.value, "reason": d.reason})
        if not machine:
            self._amd_release()
        elif action != "continue":
            self._amd_drop_held()
            self.amd_gate = "drop"
        else:
            self._amd_release()
        self._amd_report({"verdict": d.verdict.value, "reason": d.reason, **figures})

    def _amd_tell(self, update: base.MachineUpdate) -> None:
        if self.agent is None:
            self._amd_updates.append(update)
            return
        self.flush_caller_audio()
        for message in self.adapter.machine(update):
            self.agent.send(message)

    def _amd_report(self, data: dict[str, Any]) -> None:
        control = self.bridge.control
        if control is None:
            return
        assert self.amd is not None
        self._amd_done = self.amd.finished
        self.spawn(control.machine_detection(self.call_id, {**data, "done": self.amd.finished}))

    def _amd_gated(self, action: base.Play | base.Mark) -> None:
        """Agent audio (or a mark) while the detector holds it back: kept until the verdict, or dropped."""
        if isinstance(action, base.Play):
            ms = len(action.pcm) * 500 / self.rate
            if self.amd_gate == "drop" or self.amd_held_bytes + len(action.pcm) > self.rate * 2 * 30:
                self.amd_dropped_ms += ms
                return
            self.amd_held_bytes += len(action.pcm)
        elif self.amd_gate == "drop":  # nothing before it will be heard: heard at once
            self._marks_played([action.name])
            return
        self.amd_held.append(action)

    def _amd_release(self) -> None:
        """A person (or unknown): what the agent said meanwhile plays now, in order."""
        self.amd_gate = None
        held, self.amd_held, self.amd_held_bytes = self.amd_held, [], 0
        for action in held:
            self._act(action)

    def _amd_drop_held(self) -> None:
        """A machine (or a barge-in while held): the held audio is never played; its marks count as heard."""
        held, self.amd_held, self.amd_held_bytes = self.amd_held, [], 0
        self.amd_dropped_ms += sum(len(a.pcm) for a in held if isinstance(a, base.Play)) * 500 / self.rate
        self._marks_played([a.name for a in held if isinstance(a, base.Mark)])

    def _marks_played(self, names: list[str]) -> None:
        if self.agent is not None:
            for name in names:
                for message in self.adapter.mark_played(name):
                    self.agent.send(message)

    # -- endings --------------------------------------------------------------------------------
    def fail(self, reason: str, detail: str) -> None:
        """The media path broke: end the call the configured way (once)."""
        self._decide(self.life.fail(reason, detail))

    def _failed(self, failed: Failed) -> None:
        reason = failed.reason
        log.warning("call %s: %s (%s): %s", self.call_id, reason, self.info.agent, failed.detail)
        self.count_error(reason)
        if self.agent is not None:
            self.agent.close(1011, reason)
        s = self.bridge.settings
        control = self.bridge.control
        if control is None:
            return
        # the record's outcome first (with worker processes this reaches the controller before the hang-up)
        control.media_update(self.call_id, {"outcome": reason, "detail": failed.detail})
        if s.on_failure == "prompt" and s.fallback_prompt and reason != "media_lost":
            self.spawn(control.play_and_hangup(self.call_id, s.fallback_prompt, reason, "orchestrator"))
        else:
            self.spawn(self._failure_hangup())

    async def _failure_hangup(self) -> None:
        try:
            await self.bridge.control.hangup(self.call_id, "error", by="orchestrator")  # type: ignore[union-attr]
        except Exception as exc:
            log.info("call %s: hang-up after %s: %s", self.call_id, self.outcome, exc)

    def agent_lost(self, code: int, reason: str, error: str | None = None) -> None:
        """The agent connection ended while the call was up (what that means: :meth:`Lifecycle.agent_closed`)."""
        self._decide(self.life.agent_closed(code, reason, error, self.last_error))

    def agent_hangup(self, detail: str) -> None:
        """The agent ends the call: once the caller has heard the audio already sent, hang up (by the agent)."""
        self._decide(self.life.agent_hangup(detail))

    def _hanging_up(self, decision: HangingUp) -> None:
        log.info("call %s: the agent hangs up (%s)", self.call_id, decision.detail)
        self._drain_until = time.monotonic() + self.bridge.settings.max_playback_seconds + 1.0
        self._drain()

    def _drain(self) -> None:
        """Wait until the caller heard the agent's last audio (at most the longest playback), then hang up."""
        self._drain_timer = None
        if self.life.phase is not ENDING:
            return
        now = time.monotonic()
        left = self.pacer.queued_ms / 1000 + self.pacer.held(now) / (self.rate * 2)
        if self.bridge.settings.playback == "file" and left > 0:
            left += 2 * FILE_GAP  # FreeSWITCH pauses between files; the model does not
        if left > 0.01 and now < self._drain_until:
            self._drain_timer = asyncio.get_running_loop().call_later(min(left, 1.0) + 0.02, self._drain)
            return
        self.spawn(self._agent_hangup_call())

    async def _agent_hangup_call(self) -> None:
        if self.bridge.control is None or self.life.phase is not ENDING:
            return
        try:
            await self.bridge.control.hangup(self.call_id, "completed", by="agent")
        except Exception as exc:
            log.info("call %s: agent hang-up: %s", self.call_id, getattr(exc, "message", None) or exc)

    def fork_lost(self, conn: ForkConnection, code: int) -> None:
        """The fork socket is gone; if the call is not ending, wait briefly for its hang-up, then fail."""
        if conn is not self.fork:
            return
        if self.life.fork_lost(code, time.monotonic()):
            self.fork = None
            self._arm()

    def fork_attached(self, conn: ForkConnection, rate: int | None = None) -> ForkConnection | None:
        """FreeSWITCH forked the call (again): ``conn`` carries its audio now, at ``rate`` when it says one
        (returns the one it replaces)."""
        old, self.fork = self.fork, conn
        if rate is not None and rate != self.fork_rate:
            self._fork_rate(rate)
        self.life.fork_back()
        self._arm()
        return old

    def _fork_rate(self, rate: int) -> None:
        """The fork's audio comes (and streamed audio goes) at ``rate`` now; the agent's side keeps its rate."""
        log.info("call %s: the fork's rate is %d Hz now (the agent's stays %d Hz)", self.call_id, rate, self.rate)
        self.fork_rate = rate
        self._event("fork_rate", {"rate": rate})
        if rate == self.rate:
            self._from_fork = self._to_fork = None
        else:
            self._from_fork, self._to_fork = Converter(rate, self.rate), Converter(self.rate, rate)

    def call_ended(self, reason: str = "call ended") -> None:
        """FreeSWITCH reported the hang-up (or the call was bridged to a person): close both sockets and write the
        summary."""
        if not self.life.ended():
            return
        self._arm()
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        if self._amd_timer is not None:
            self._amd_timer.cancel()
            self._amd_timer = None
        self.bridge.pacing.discard(self)
        if self.agent is not None:
            self.flush_caller_audio()
            for message in self.adapter.close(reason):
                self.agent.send(message)
            self.agent.close(1000, reason)
        if self.fork is not None:  # FreeSWITCH closes it after the hang-up; don't rely on it
            self.fork.close(1000, "")
        self.bridge.finished(self)

    def summary(self) -> dict[str, Any]:
        """The media part of the call record."""
        st = self.stats
        return {
            "agent_protocol": self.agent_config.protocol,
            "playback": self.bridge.settings.playback,
            "outcome": self.outcome or "completed",
            "detail": self.detail,
            "agent_connect_ms": st.agent_connect_ms,
            "frames": {
                "from_caller": st.frames_in,
                "to_agent": st.frames_to_agent,
                "dropped_to_agent": st.dropped_to_agent,
                "from_agent": st.frames_from_agent,
                "to_caller": st.frames_out,
            },
            "playback_dropped_ms": round(self.pacer.dropped_bytes / (self.rate * 2 / 1000)),
            "interruptions": st.interruptions,
            "agent_protocol_errors": st.violations,
            "transcript": st.transcript,
            "agent_events": self.events,
            **({"machine_held_back_ms": round(self.amd_dropped_ms)} if self.amd is not None else {}),
        }
