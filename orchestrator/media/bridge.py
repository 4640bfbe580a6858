"""The media bridge: FreeSWITCH's audio forks on one side, voice agents on the other (asyncio).

Each call's ``mod_audio_fork`` connects here (``/calls/<uuid>?token=…``, subprotocol
``audio.drachtio.org``), sends its metadata, then L16 frames every 20 ms. The bridge opens the call's
agent connection, runs the agent protocol (:mod:`orchestrator.agents`), sends caller audio on as it
arrives and paces the agent's audio back (:mod:`orchestrator.media.playback`).

Design for the hot path (``bench/media.py`` measures it): no task, queue or future per message —
asyncio ``Protocol`` callbacks feed the sans-I/O WebSocket (:mod:`orchestrator.media.websocket`)
and the adapter, and write straight to the peer's transport; one 20 ms timer paces every call that
has audio waiting; counters are plain integers read by Prometheus at scrape time; latency is sampled.

Failures stay inside their call: an agent that cannot be reached in time, closes mid-call, or
stops reading, and a fork that drops while the call is up, each end the call in the configured way
(hang up, or play a fallback prompt then hang up) with a reason in the call record and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import time
from collections import deque
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrator import agents
from orchestrator.agents import _wire, base
from orchestrator.agents import connect as agent_connect
from orchestrator.agents import overrides as agent_overrides
from orchestrator.agents.connect import HandshakeError, SetupError, classify, endpoint, resolve
from orchestrator.config.model import Deployment, MediaSettings
from orchestrator.logs import LogThrottle
from orchestrator.media import dialects, fork
from orchestrator.media.admission import RESERVE, Gate, Limits, derive_limits, descriptors_in_use
from orchestrator.media.playback import Pacer
from orchestrator.media.websocket import Binary, Closed, Opened, Request, Text, WebSocket
from orchestrator.metrics import Metrics

log = logging.getLogger("sipagent.media")

TICK = 0.020
ACCEPT_BATCH = 64  # connections taken per wake-up of the listening socket
EVICT_BATCH = 16  # connections in their handshake closed at once when the port is full
ACCEPT_RETRY = 0.1  # after accept() failed (EMFILE …)
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
SAMPLE_EVERY = 16  # latency is measured on one message in 16
FILE_GAP = 0.11  # file playback: FreeSWITCH pauses 100 ms between two queued files (measured), plus margin
NORMAL_CLOSE = (1000, 1005)  # an agent closing with these (after its first message) hangs up
ENDING_GRACE = 5.0  # after the agent announced its end, wait this long for its close before hanging up
MAX_EVENTS = 100  # agent events kept per call record


#: agent-caused log lines, process-wide: 20 per 10 s (what a spamming agent can put in the log)
AGENT_LOG = LogThrottle(burst=20, window=10.0)


def _agent_line() -> bool:
    """Whether to log one more agent-caused line (and say how many were held back)."""
    held = AGENT_LOG.allow("agent")
    if held:
        log.warning("%d agent log lines were not logged (rate limit)", held)
    return held is not None


@dataclass
class _PendingTransfer:
    """A transfer the agent asked for, waiting for its outcome."""

    tool_call_id: str | None
    target: str
    timer: asyncio.TimerHandle | None = None


def _describe(data: dict[str, Any]) -> str:
    """``key=value`` pairs of an agent event, for a log line or a detail."""
    return ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("t", "kind"))


class CallControl(Protocol):
    """What the bridge asks of the call controller."""

    async def hangup(self, uuid: str, reason: str = "completed", by: str = "api") -> None: ...
    async def transfer(self, uuid: str, target: str, *, method: str = "refer", trunk: str | None = None) -> None: ...
    async def send_dtmf(self, uuid: str, digits: str, duration_ms: int = 100) -> None: ...
    async def play_and_hangup(self, uuid: str, prompt: str, reason: str, by: str) -> None: ...
    async def flush_playback(self, uuid: str) -> None: ...
    def media_update(self, uuid: str, data: dict[str, Any], final: bool = False) -> None: ...
    async def claim_fork(self, uuid: str, token: str) -> bool: ...


@dataclass
class Stats:
    """Per-call counters (plain integers: the hot path only adds)."""

    frames_in: int = 0  # caller → bridge
    bytes_in: int = 0
    frames_to_agent: int = 0
    dropped_to_agent: int = 0
    frames_from_agent: int = 0
    bytes_from_agent: int = 0
    frames_out: int = 0  # bridge → FreeSWITCH
    bytes_out: int = 0
    interruptions: int = 0
    violations: int = 0
    agent_connect_ms: float | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------------
class ForkConnection(asyncio.Protocol):
    """One ``mod_audio_fork`` WebSocket (server side).

    ``stage``: ``handshake`` (until a valid upgrade request with a good token), ``claiming`` (the
    controller is asked whether the call waits for this fork), ``upgraded`` (101 sent, metadata due),
    ``attached`` (carries a session's audio), ``closed``.
    """

    def __init__(self, bridge: MediaBridge, peer: str = "?") -> None:
        self.bridge = bridge
        self.ws = WebSocket.server(subprotocols=[dialects.SUBPROTOCOL], max_message=1 << 20)
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self.call_id = ""
        self.peer = peer
        self.stage = "handshake"
        self._n = 0
        self._drop: tuple[int, int, str] | None = None  # dropped before its transport was made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self._drop is not None:
            self.drop(*self._drop)

    def data_received(self, data: bytes) -> None:
        try:
            self._n += 1
            t0 = time.perf_counter() if self._n % SAMPLE_EVERY == 0 else 0.0
            session = self.session
            for event in self.ws.receive_data(data):
                if type(event) is Binary:
                    if session is not None:
                        session.caller_audio(event.data)
                elif type(event) is Text:
                    if session is None:
                        session = self.session = self.bridge.open_session(self, event.data)
                    else:
                        log.debug("call %s: text from the fork ignored: %r", self.call_id, event.data[:200])
                elif type(event) is Request:
                    self.bridge.admit(self, event)
                elif type(event) is Closed:
                    self._closed(event)
            out = self.ws.data_to_send()
            if out and self.transport is not None:
                self.transport.write(out)
                if self.ws.closed and not self.ws.open:  # rejected handshake
                    self.transport.close()
            if t0:
                self.bridge.latency_to_agent.append(time.perf_counter() - t0)
        except Exception as exc:  # never into asyncio's "Fatal error on transport": this connection only
            self._crash(exc)

    def _crash(self, exc: BaseException) -> None:
        self.bridge.note(
            "fork_internal",
            "fork %s (call %s): internal error on its input, connection closed: %s: %s",
            self.peer,
            self.call_id or "?",
            type(exc).__name__,
            _printable(str(exc)),
        )
        if self.transport is not None:
            self.transport.abort()

    def _closed(self, event: Closed) -> None:
        if event.error:
            if event.status:
                self.bridge.note(
                    "fork_bad_request",
                    "fork %s: %s; answered %d",
                    self.peer,
                    _printable(event.error),
                    event.status,
                )
            else:
                self.bridge.note(
                    "fork_protocol",
                    "fork %s (call %s): %s; closing with %d",
                    self.peer,
                    self.call_id or "?",
                    _printable(event.error),
                    event.code,
                )
        if self.transport is not None:
            out = self.ws.data_to_send()
            if out:
                self.transport.write(out)
            self.transport.close()

    def send_audio(self, pcm: bytes) -> None:
        """Agent audio into the call (streaming playback)."""
        if self.transport is not None and self.ws.open and not self.ws.closing:
            self.transport.write(self.ws.binary(pcm))

    def send_text(self, text: str) -> None:
        """A control message to mod_audio_fork."""
        if self.transport is not None and self.ws.open and not self.ws.closing:
            self.transport.write(self.ws.text(text))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket (then the TCP connection when the peer answers, or after a grace time)."""
        if self.transport is None:
            return
        frame = self.ws.close(code, reason)
        if frame:
            self.transport.write(frame)
            loop = asyncio.get_running_loop()
            transport = self.transport
            loop.call_later(2.0, transport.close)
        else:
            self.transport.close()

    def drop(self, status: int, code: int, reason: str) -> None:
        """Close at once: an HTTP ``status`` before the upgrade, a close frame with ``code`` after it."""
        if self.transport is None:
            if self.stage != "closed":
                self._drop = (status, code, reason)
            return
        if self.ws.open:
            out = self.ws.close(code, reason)
        else:
            self.ws.reject(status, reason)
            out = self.ws.data_to_send()
        if out:
            self.transport.write(out)
        self.transport.close()  # the little we wrote goes first; a peer that does not read cannot hold it

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.transport = None
            self.stage = "closed"
            self.bridge.left(self)
            if self.session is not None:
                self.session.fork_lost(self, self.ws.close_code or 1006)
        except Exception as exc:
            self._crash(exc)


class AgentConnection(asyncio.Protocol):
    """The WebSocket to one call's agent (client side)."""

    def __init__(self, session: Session, url: str, headers: dict[str, str]) -> None:
        self.session = session
        self.ws = WebSocket.client(url, headers=headers)
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.paused = False
        self.paused_at = 0.0
        self.closed_by_us = False  # our close: the agent's answer to it is no news
        self._n = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        limit = self.session.bridge.settings.agent_buffer_kb * 1024
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a small kernel buffer too: a stalled agent is noticed, memory stays bounded
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(limit, 16384))
        self.transport.set_write_buffer_limits(high=limit)
        self.transport.write(self.ws.data_to_send())

    def data_received(self, data: bytes) -> None:
        self._n += 1
        t0 = time.perf_counter() if self._n % SAMPLE_EVERY == 0 else 0.0
        session = self.session
        try:
            for event in self.ws.receive_data(data):
                etype = type(event)
                if etype is Text or etype is Binary:
                    session.agent_message(event.data)  # type: ignore[union-attr]
                elif etype is Opened:
                    if not self.opened.done():
                        self.opened.set_result(None)
                    if not session.agent_opened(self):
                        self.close(1000, "call ended")
                elif etype is Closed:
                    self._closed(event)  # type: ignore[arg-type]
                    return
        except Exception:  # a bug here must not become "Fatal error on transport" nor touch other calls
            self._broken()
            return
        out = self.ws.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)
        if t0:
            session.bridge.latency_to_caller.append(time.perf_counter() - t0)

    def _closed(self, event: Closed) -> None:
        out = self.ws.data_to_send()
        if out and self.transport is not None:
            self.transport.write(out)
        if not self.opened.done():
            self.opened.set_exception(HandshakeError(event.error or f"closed {event.code}"))
        elif not self.closed_by_us:
            self.session.agent_lost(event.code, event.reason, event.error)
        if self.transport is not None:
            self.transport.close()

    def _broken(self) -> None:
        if _agent_line():
            log.exception("call %s: agent connection failed on its input", self.session.call_id)
        if not self.opened.done():
            self.session.bridge.metrics.media_errors.labels("bridge_error").inc()
            self.opened.set_exception(HandshakeError("the agent's handshake answer could not be processed"))
        else:
            self.session.fail("bridge_error", "the agent's input could not be processed")
        if self.transport is not None:
            self.transport.abort()

    def send(self, message: base.Message) -> None:
        """A message to the agent."""
        if self.transport is None or self.ws.closing:
            return
        if type(message) is bytes:
            self.transport.write(self.ws.binary(message))
        else:
            self.transport.write(self.ws.text(message))  # type: ignore[arg-type]

    def pause_writing(self) -> None:
        self.paused = True
        self.paused_at = time.monotonic()

    def resume_writing(self) -> None:
        self.paused = False

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the agent WebSocket."""
        if self.transport is None:
            return
        self.closed_by_us = True
        frame = self.ws.close(code, reason)
        if frame:
            self.transport.write(frame)
            asyncio.get_running_loop().call_later(2.0, self.transport.close)
        else:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.opened.done():
            why = f"connection lost during the WebSocket handshake ({exc})" if exc else "closed during the handshake"
            self.opened.set_exception(HandshakeError(why))
        elif not self.ws.closed and not self.closed_by_us:
            self.session.agent_lost(1006, str(exc) if exc else "connection lost")


# ---------------------------------------------------------------------------------------------------
class Session:
    """One call's audio: its fork, its agent connection, the agent protocol and playback."""

    def __init__(
        self, bridge: MediaBridge, call_id: str, metadata: fork.ForkMetadata | dict[str, Any], agent_config: Any
    ) -> None:
        self.bridge = bridge
        self.call_id = call_id
        meta = metadata if isinstance(metadata, fork.ForkMetadata) else fork.ForkMetadata.model_validate(metadata)
        self.metadata = meta.model_dump()
        self.rate = meta.fork_rate
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
        if s.playback == "streaming":
            self.pacer = Pacer(self.rate, lead_ms=s.lead_ms, max_seconds=s.max_playback_seconds)
        else:  # whole segments become files FreeSWITCH plays; keep one segment ahead
            seg = s.file_segment_ms
            self.pacer = Pacer(
                self.rate,
                lead_ms=2 * seg,
                prebuffer_ms=0,
                chunk_ms=0,
                min_send_ms=seg,
                max_seconds=s.max_playback_seconds,
                pad=False,
            )
        self.fork: ForkConnection | None = None
        self.agent: AgentConnection | None = None
        self.stats = Stats()
        self.pending: deque[bytes] = deque()  # caller audio while the agent connects
        self.pending_max = max(1, s.agent_queue_ms // 20)
        self.state = "connecting"  # connecting, open, ending, ended
        self.outcome = ""
        self.started = time.monotonic()
        self.tasks: set[asyncio.Task[Any]] = set()
        self.detail = ""  # what the outcome was about (failure, the agent's hang-up reason)
        self.heard = False  # the agent sent a message it understood
        self.events: list[dict[str, Any]] = []  # tools the agent ran itself, errors it reported, transfers
        self.last_error: dict[str, Any] | None = None
        self._connect_started = self.started
        self._first_timer: asyncio.TimerHandle | None = None
        self._end_timer: asyncio.TimerHandle | None = None
        self._ending: str | None = None  # the agent announced its end (reason)
        self._leaving = False  # a transfer took the call away from the agent
        self._drain_until = 0.0
        self._pending_transfer: _PendingTransfer | None = None

    # -- caller side ----------------------------------------------------------------------------
    def caller_audio(self, pcm: bytes) -> None:
        """A frame of caller audio (the hot path)."""
        st = self.stats
        st.frames_in += 1
        st.bytes_in += len(pcm)
        agent = self.agent
        if agent is not None:
            message = self.adapter.audio(pcm)
            if message is not None:
                if agent.paused:
                    st.dropped_to_agent += 1
                    self._check_stall(agent)
                else:
                    agent.send(message)
                    st.frames_to_agent += 1
        elif self.state == "connecting":
            if len(self.pending) >= self.pending_max:
                self.pending.popleft()
                st.dropped_to_agent += 1
            self.pending.append(pcm)

    def _check_stall(self, agent: AgentConnection) -> None:
        if time.monotonic() - agent.paused_at > self.bridge.settings.agent_stall_seconds:
            self.fail("agent_stalled", "the agent stopped reading audio")

    def dtmf(self, digit: str) -> None:
        """The caller pressed a key."""
        if self.agent is not None:
            for message in self.adapter.dtmf(digit):
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
                loop = asyncio.get_running_loop()
                conn = AgentConnection(self, url, headers)
                await loop.create_connection(
                    lambda: conn, host, port, ssl=ssl_context, server_hostname=host if ssl_context else None
                )
                phase = "WebSocket handshake"
                await conn.opened
        except Exception as exc:  # nothing may escape: the call must end the configured way
            self._abandon(conn)
            if isinstance(exc, TimeoutError):
                error = SetupError(
                    agent_connect.CONNECT_TIMEOUT,
                    f"{where}: not connected within {cfg.connect_timeout_seconds:g} s ({phase})",
                )
            else:
                error = classify(exc, where)
                if error.outcome == agent_connect.CONNECT_FAILED and _agent_line():
                    log.warning("call %s: unexpected agent setup error", self.call_id, exc_info=exc)
            self.fail(error.outcome, error.detail)

    def agent_opened(self, conn: AgentConnection) -> bool:
        """The agent's WebSocket is open: start the conversation (False: the call is gone, close it)."""
        if self.state != "connecting":
            return False
        self.agent = conn
        self.state = "open"
        elapsed = time.monotonic() - self._connect_started
        self.stats.agent_connect_ms = round(elapsed * 1000, 1)
        self.bridge.metrics.agent_connect_seconds.labels(self.agent_config.protocol).observe(elapsed)
        for message in self.adapter.open():
            conn.send(message)
        while self.pending:
            self.caller_audio_buffered(self.pending.popleft())
        limit = self.agent_config.first_message_timeout_seconds
        if limit and not self.heard:
            self._first_timer = asyncio.get_running_loop().call_later(limit, self._first_message_due, limit)
        return True

    def _first_message_due(self, limit: float) -> None:
        self._first_timer = None
        if self.state == "open" and not self.heard:
            self.fail("agent_first_message_timeout", f"the agent sent nothing within {limit:g} s of connecting")

    @staticmethod
    def _abandon(conn: AgentConnection | None) -> None:
        """Close a half-open agent connection (TCP up, handshake never finished)."""
        if conn is None:
            return
        if conn.opened.done() and not conn.opened.cancelled():
            conn.opened.exception()  # retrieved: no "exception was never retrieved" warning
        if conn.transport is not None:
            conn.transport.abort()

    def caller_audio_buffered(self, pcm: bytes) -> None:
        """Caller audio that waited for the agent connection."""
        assert self.agent is not None
        message = self.adapter.audio(pcm)
        if message is not None:
            self.agent.send(message)
            self.stats.frames_to_agent += 1

    def agent_message(self, message: base.Message) -> None:
        """A message from the agent."""
        if self.state != "open" and self.state != "ending":
            return
        try:
            actions = self.adapter.receive(message)
            if not self.heard:
                self._first_message(actions)
            for action in actions:
                self._act(action)
        except Exception:  # an adapter bug must not take other calls down
            if _agent_line():
                log.exception("call %s: agent adapter failed on a message", self.call_id)
            self.bridge.metrics.media_errors.labels("adapter").inc()

    def _first_message(self, actions: list[base.Action]) -> None:
        """The agent's first message it understood: the conversation is under way."""
        if all(type(a) is base.ProtocolViolation for a in actions) and actions:
            return
        self.heard = True
        if self._first_timer is not None:
            self._first_timer.cancel()
            self._first_timer = None

    def _act(self, action: base.Action) -> None:
        kind = type(action)
        if kind is base.Play:
            pcm = action.pcm  # type: ignore[union-attr]
            st = self.stats
            st.frames_from_agent += 1
            st.bytes_from_agent += len(pcm)
            now = time.monotonic()
            self.pacer.push(pcm, now)
            self._poll(now)
            if self.pacer.busy:
                self.bridge.pacing.add(self)
        elif kind is base.Send:
            if self.agent is not None:
                self.agent.send(action.message)  # type: ignore[union-attr]
        elif kind is base.Clear:
            self.interrupt()
        elif kind is base.Mark:
            self.pacer.mark(action.name)  # type: ignore[union-attr]
            self.bridge.pacing.add(self)
        elif kind is base.Hangup:
            self.agent_hangup(action.reason)  # type: ignore[union-attr]
        elif kind is base.Ending:
            self._expect_close(action.reason)  # type: ignore[union-attr]
        elif kind is base.Transfer:
            self._transfer(action)  # type: ignore[arg-type]
        elif kind is base.SendDtmf:
            self.spawn(self._send_dtmf(action))  # type: ignore[arg-type]
        elif kind is base.Transcript:
            self._transcript(action)  # type: ignore[arg-type]
        elif kind is base.AgentInfo:
            if self.bridge.control is not None:
                self.bridge.control.media_update(self.call_id, {"agent": action.data})  # type: ignore[union-attr]
        elif kind is base.AgentEvent:
            self._agent_event(action)  # type: ignore[arg-type]
        elif kind is base.ProtocolViolation:
            self.stats.violations += 1
            self.bridge.metrics.media_errors.labels("agent_protocol").inc()
            if self.stats.violations <= 20 and _agent_line():
                log.warning(
                    "call %s: agent %.100s: %.200s",
                    self.call_id,
                    action.where,  # type: ignore[union-attr]
                    _wire.clean(action.detail, 200),  # type: ignore[union-attr]
                )

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
        if len(self.events) < MAX_EVENTS:
            self.events.append({"t": round(time.monotonic() - self.started, 2), "kind": action.kind, **action.data})
        if action.error:
            self.last_error = action.data
            self.bridge.metrics.media_errors.labels("agent_error").inc()
        if _agent_line():
            level = logging.WARNING if action.error or "note" in action.data else logging.INFO
            log.log(level, "call %s: agent %s: %.300s", self.call_id, action.kind, _describe(action.data))

    def _poll(self, now: float) -> None:
        chunk, marks = self.pacer.poll(now)
        if chunk is not None and self.fork is not None:
            self.stats.frames_out += 1
            self.stats.bytes_out += len(chunk)
            if self.bridge.settings.playback == "streaming":
                self.fork.send_audio(chunk)
            else:
                self.fork.send_text(self.bridge.dialect.file_message(chunk, self.rate))
        if marks and self.agent is not None:
            for name in marks:
                for message in self.adapter.mark_played(name):
                    self.agent.send(message)

    def interrupt(self) -> None:
        """Barge-in: flush everything the caller has not heard yet."""
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
        if self.state == "open" and self.bridge.control is not None:
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

    def _transfer(self, action: base.Transfer) -> None:
        """Ask for the transfer; the agent's tool result waits for its outcome (the ``transfer`` notice)."""
        control = self.bridge.control
        if control is None or self.state != "open":
            why = "no call control" if control is None else "the call is ending"
            self._tool_result(action.tool_call_id, False, why)
            return
        if self._pending_transfer is not None:
            busy = f"a transfer to {self._pending_transfer.target} is in progress"
            self._tool_result(action.tool_call_id, False, busy)
            return
        pending = self._pending_transfer = _PendingTransfer(action.tool_call_id, action.target)
        limit = self.agent_config.transfer_timeout_seconds
        pending.timer = asyncio.get_running_loop().call_later(limit, self._transfer_due, pending, limit)
        self.spawn(self._request_transfer(control, pending))

    async def _request_transfer(self, control: CallControl, pending: _PendingTransfer) -> None:
        ok, detail = await self._control(control.transfer(self.call_id, pending.target))
        if not ok:  # refused at once (the controller may also have sent a transfer notice: answered once)
            refused = f"The transfer to {pending.target} was refused: {_wire.clean(detail, 200)}"
            self._transfer_done(pending, False, refused)

    def transfer_outcome(self, data: dict[str, Any]) -> None:
        """The controller's ``transfer`` notice: the REFER's final NOTIFY, a bridge result, or a refused command."""
        succeeded = data.get("succeeded") is True
        continues = data.get("call_continues") is not False and not succeeded
        if not continues:
            self._leaving = True  # the call leaves the agent: its close is no failure
        pending = self._pending_transfer
        if pending is None:
            return
        status = data.get("sip_status")
        said = data.get("detail")
        sip = f"SIP {status}" if isinstance(status, int) and not isinstance(status, bool) else ""
        if isinstance(said, str) and said.strip():
            sip = f"{sip} {_wire.clean(said.strip(), 120)}".strip()
        why = f" ({sip})" if sip else ""
        if succeeded:
            text = f"The transfer to {pending.target} succeeded{why}: the call has left this conversation."
        elif continues:
            text = f"The transfer to {pending.target} failed{why}: the caller is still on the line with you."
        else:
            text = f"The transfer to {pending.target} failed{why} and the call has ended."
        self._transfer_done(pending, succeeded, text)

    def _transfer_due(self, pending: _PendingTransfer, limit: float) -> None:
        self._transfer_done(pending, False, f"The transfer to {pending.target} had no outcome within {limit:g} s.")

    def _transfer_done(self, pending: _PendingTransfer, ok: bool, text: str) -> None:
        if self._pending_transfer is not pending:
            return  # answered already
        self._pending_transfer = None
        if pending.timer is not None:
            pending.timer.cancel()
        if len(self.events) < MAX_EVENTS:
            event = {"t": round(time.monotonic() - self.started, 2), "kind": "transfer", "target": pending.target}
            self.events.append({**event, "ok": ok, "detail": text})
        self._tool_result(pending.tool_call_id, ok, text)

    async def _send_dtmf(self, action: base.SendDtmf) -> None:
        ok, detail = await self._control(
            self.bridge.control.send_dtmf(self.call_id, action.digits) if self.bridge.control else None
        )
        self._tool_result(action.tool_call_id, ok, detail or f"sent {action.digits}")

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

    # -- endings --------------------------------------------------------------------------------
    def fail(self, reason: str, detail: str) -> None:
        """The media path broke: end the call the configured way (once)."""
        if self.state in ("ending", "ended"):
            return
        self.state = "ending"
        self.outcome = reason
        self.detail = _wire.clean(detail, 300)
        self._stop_timers()
        log.warning("call %s: %s (%s): %s", self.call_id, reason, self.info.agent, self.detail)
        self.bridge.metrics.media_errors.labels(reason).inc()
        if self.agent is not None:
            self.agent.close(1011, reason)
        s = self.bridge.settings
        control = self.bridge.control
        if control is None:
            return
        # the record's outcome first (with worker processes this reaches the controller before the hang-up)
        control.media_update(self.call_id, {"outcome": reason, "detail": self.detail})
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
        """The agent connection ended while the call was up.

        A normal close (1000, or a close frame without a code: 1005) after the agent's first message
        is the agent hanging up; so is any close after the agent announced its end (:class:`Ending`).
        Everything else — 1001 (the agent's server going away), 1006 (no close frame), 1011, a
        protocol error, or a close before the agent said anything — is a failure.
        """
        if self.state != "open":
            return
        said = f"{code} {_wire.clean(reason, 120)}".strip()
        if self._leaving:  # transferred away: the call ends without the agent
            self.state = "ending"
            self.detail = f"the agent closed ({said}) after the transfer"
            self._stop_timers()
        elif error:
            self.fail("agent_closed", f"the agent broke the WebSocket protocol ({error}); closed with {code}")
        elif self._ending is not None:
            self.agent_hangup(f"{self._ending}; closed {said}")
        elif code in NORMAL_CLOSE and self.heard:
            self.agent_hangup(f"closed {said}")
        else:
            last = self.last_error
            told = f"; it reported {_describe(last)}" if last else ""
            early = "" if self.heard else " before its first message"
            self.fail("agent_closed", f"the agent closed the connection ({said}){early}{told}")

    def _expect_close(self, reason: str) -> None:
        """The agent announced its end: its close is a hang-up; hang up anyway if it does not come."""
        if self.state != "open" or self._ending is not None:
            return
        self._ending = _wire.clean(reason, 64)
        loop = asyncio.get_running_loop()
        self._end_timer = loop.call_later(ENDING_GRACE, self.agent_hangup, f"{self._ending}; no close followed")

    def agent_hangup(self, detail: str) -> None:
        """The agent ends the call: once the caller has heard the audio already sent, hang up (by the agent)."""
        if self.state != "open":
            return
        self.state = "ending"
        self.outcome = "agent_hangup"
        self.detail = _wire.clean(detail, 300)
        self._stop_timers(transfer=False)  # a transfer's result may still reach the agent
        log.info("call %s: the agent hangs up (%s)", self.call_id, self.detail)
        self._drain_until = time.monotonic() + self.bridge.settings.max_playback_seconds + 1.0
        self._drain()

    def _drain(self) -> None:
        if self.state != "ending":
            return
        now = time.monotonic()
        left = self.pacer.queued_ms / 1000 + self.pacer.held(now) / (self.rate * 2)
        if self.bridge.settings.playback == "file" and left > 0:
            left += 2 * FILE_GAP  # FreeSWITCH pauses between files; the model does not
        if left > 0.01 and now < self._drain_until:
            self._end_timer = asyncio.get_running_loop().call_later(min(left, 1.0) + 0.02, self._drain)
            return
        self._end_timer = None
        self.spawn(self._agent_hangup_call())

    async def _agent_hangup_call(self) -> None:
        if self.bridge.control is None or self.state != "ending":
            return
        try:
            await self.bridge.control.hangup(self.call_id, "completed", by="agent")
        except Exception as exc:
            log.info("call %s: agent hang-up: %s", self.call_id, getattr(exc, "message", None) or exc)

    def _stop_timers(self, transfer: bool = True) -> None:
        for timer in (self._first_timer, self._end_timer):
            if timer is not None:
                timer.cancel()
        self._first_timer = self._end_timer = None
        if not transfer:
            return
        pending, self._pending_transfer = self._pending_transfer, None
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()

    def fork_lost(self, conn: ForkConnection, code: int) -> None:
        """The fork socket is gone; if the call is not ending, wait briefly for its hang-up, then fail."""
        if conn is not self.fork or self.state in ("ending", "ended"):
            return
        self.fork = None
        loop = asyncio.get_running_loop()
        loop.call_later(self.bridge.settings.fork_grace_seconds, self._fork_check, code)

    def _fork_check(self, code: int) -> None:
        if self.fork is None and self.state not in ("ending", "ended"):
            self.fail("media_lost", f"FreeSWITCH's audio fork closed ({code}) while the call is up")

    def call_ended(self) -> None:
        """FreeSWITCH reported the hang-up: close both sockets and write the summary."""
        if self.state == "ended":
            return
        self.state = "ended"
        self._stop_timers()
        self.bridge.pacing.discard(self)
        if self.agent is not None:
            for message in self.adapter.close("call ended"):
                self.agent.send(message)
            self.agent.close(1000, "call ended")
        if self.fork is not None:  # FreeSWITCH closes it after the hang-up; don't rely on it
            self.fork.close(1000, "")
        self.bridge.sessions.pop(self.call_id, None)
        self.bridge.account(self)

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
        }


def _listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    """The listening socket (non-blocking, SO_REUSEADDR; SO_REUSEPORT for worker processes)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.create_server(address, family=family, backlog=1024, reuse_port=reuse_port)
    sock.setblocking(False)
    return sock


def _printable(text: str, limit: int = 200) -> str:
    """Outside text for a log line: escaped, bounded."""
    return ascii(text[:limit])[1:-1]


# ---------------------------------------------------------------------------------------------------
class MediaBridge:
    """The WebSocket server for every call's fork, and the sessions."""

    def __init__(
        self,
        deployment: Deployment,
        tokens: fork.Tokens,
        control: CallControl | None = None,
        metrics: Metrics | None = None,
        http: Any = None,
        port: int | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.deployment = deployment
        self.reuse_port = reuse_port  # several worker processes share the port
        self._port = deployment.orchestrator.media.port if port is None else port  # 0: any free port
        self.settings: MediaSettings = deployment.orchestrator.media
        self.dialect = dialects.dialect(self.settings.fork_module)
        self.tokens = tokens
        self.control = control
        self.metrics = metrics or Metrics()
        self.http = http
        self.agents = {a.name: a for a in deployment.agents}
        self.sessions: dict[str, Session] = {}
        self.forks: set[ForkConnection] = set()
        self.pacing: set[Session] = set()
        self.latency_to_agent: deque[float] = deque(maxlen=4096)
        self.latency_to_caller: deque[float] = deque(maxlen=4096)
        self._sock: socket.socket | None = None  # the listening socket (our own accept loop: see _accept)
        self._accepting = False
        self._accept_retry = 0.0
        self._connecting: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._next_tick = 0.0
        self.totals = Stats()
        self.limits = self._limits(None, 0)
        self.gate: Gate[ForkConnection] = self._gate()
        self.claims: set[asyncio.Task[Any]] = set()
        self._throttle = LogThrottle()
        self.metrics.bind_media(self)

    # -- lifecycle ------------------------------------------------------------------------------
    def _limits(self, nofile: int | None, in_use: int) -> Limits:
        s, d = self.settings, self.deployment
        return derive_limits(
            max_calls=d.freeswitch.max_calls,
            nodes=len(d.orchestrator.nodes) or 1,
            workers=s.workers,
            max_connections=s.max_connections,
            max_pending=s.max_pending_connections,
            nofile=nofile,
            in_use=in_use,
        )

    def _gate(self) -> Gate[ForkConnection]:
        return Gate(
            max_connections=self.limits.max_connections,
            max_pending=self.limits.max_pending,
            handshake_timeout=self.settings.handshake_timeout_seconds,
            metadata_timeout=self.settings.metadata_timeout_seconds,
            descriptors=self.limits.descriptors,
        )

    def _fit_descriptors(self) -> None:
        """Caps this process's descriptor limit can hold (raising the soft limit toward the hard one first)."""
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (OSError, ValueError):  # pragma: no cover - no such limit here
            return
        in_use = descriptors_in_use()
        wanted = self._limits(None, in_use)
        need = in_use + RESERVE + wanted.max_connections + wanted.calls
        if soft != resource.RLIM_INFINITY and soft < need:
            target = need if hard == resource.RLIM_INFINITY else min(hard, need)
            with contextlib.suppress(OSError, ValueError):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
        self.limits = self._limits(None if soft == resource.RLIM_INFINITY else soft, in_use)
        if self.limits.warning:
            log.warning("media bridge: %s", self.limits.warning)
        self.gate = self._gate()

    async def start(self) -> None:
        """Listen for forks and start the pacing clock."""
        loop = asyncio.get_running_loop()
        s = self.settings
        self._fit_descriptors()
        self._sock = _listen(s.listen_ip, self._port, self.reuse_port)
        self._resume_accepting()
        self._next_tick = loop.time() + TICK
        self._timer = loop.call_at(self._next_tick, self._tick)
        log.info(
            "media bridge listening on %s:%d (%s playback; at most %d connections, %d in the handshake, %s fds)",
            s.listen_ip,
            self.port,
            s.playback,
            self.limits.max_connections,
            self.limits.max_pending,
            self.limits.descriptors or "unlimited",
        )

    @property
    def port(self) -> int:
        """The port actually bound (useful with port 0)."""
        assert self._sock is not None
        return self._sock.getsockname()[1]

    async def stop(self) -> None:
        """Close every connection and stop listening."""
        if self._timer is not None:
            self._timer.cancel()
        self._pause_accepting()
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for task in list(self.claims) + list(self._connecting):
            task.cancel()
        for session in list(self.sessions.values()):
            if session.agent is not None:
                session.agent.close(1001, "orchestrator stopping")
        for conn in list(self.forks):
            conn.close(1001, "")
        await asyncio.sleep(0)

    # -- accepting ------------------------------------------------------------------------------
    # The event loops' own servers accept every queued connection at once (asyncio up to ``backlog`` per
    # wake-up, uvloop until the queue is empty) before the protocol hears of any: a burst would take
    # descriptors past the caps. On EMFILE asyncio reports a traceback per attempt (up to ``backlog`` a
    # second) and retries after 1 s; libuv accepts and closes everything queued (a real fork among them
    # is dropped). So the bridge accepts itself: one connection at a time while the gate has room, the
    # rest wait in the kernel's backlog; EMFILE pauses accepting for ACCEPT_RETRY, one line, counted.
    def _resume_accepting(self) -> None:
        if not self._accepting and self._sock is not None:
            asyncio.get_running_loop().add_reader(self._sock.fileno(), self._accept)
            self._accepting = True

    def _pause_accepting(self) -> None:
        if self._accepting and self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._accepting = False

    def _maybe_resume(self, now: float) -> None:
        if not self._accepting and self._sock is not None and now >= self._accept_retry and self.gate.room():
            self._resume_accepting()

    def _accept(self) -> None:
        """The listening socket is readable: take connections while the gate has room."""
        sock = self._sock
        if sock is None:
            return
        for _ in range(ACCEPT_BATCH):
            if not self.gate.room():
                self._pause_accepting()  # resumed when a connection leaves (see left)
                for victim in self.gate.make_room(EVICT_BATCH):
                    self.note("fork_evicted", "fork %s: closed to make room (port full; in its handshake)", victim.peer)
                    victim.drop(503, 1013, "too many connections")
                return
            try:
                conn_sock, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self._pause_accepting()
                self._accept_retry = time.monotonic() + ACCEPT_RETRY
                self.note(
                    "accept_failed",
                    "media port: accept() failed (%s); new forks wait in the backlog, retrying in %g s",
                    os.strerror(exc.errno) if exc.errno else exc,
                    ACCEPT_RETRY,
                )
                return
            try:
                self._take(conn_sock, addr)
            except Exception as exc:
                conn_sock.close()
                self.note("fork_internal", "media port: a new connection failed: %s: %s", type(exc).__name__, exc)

    def _take(self, conn_sock: socket.socket, addr: Any) -> None:
        conn_sock.setblocking(False)
        if conn_sock.family in (socket.AF_INET, socket.AF_INET6):
            conn_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else "?"
        conn = ForkConnection(self, peer)
        if not self.arrived(conn):
            with contextlib.suppress(OSError):
                conn_sock.send(_BUSY)
            conn_sock.close()
            return
        task = asyncio.get_running_loop().create_task(self._connect(conn, conn_sock))
        self._connecting.add(task)
        task.add_done_callback(self._connecting.discard)

    async def _connect(self, conn: ForkConnection, conn_sock: socket.socket) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(lambda: conn, conn_sock)
        except BaseException as exc:  # e.g. the peer reset it already; or the bridge is stopping
            if conn.transport is None:
                conn_sock.close()
                conn.stage = "closed"
                self.left(conn)
            log.debug("fork %s: connection lost before it was set up: %r", conn.peer, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        if self.pacing:
            for session in list(self.pacing):
                session._poll(now)
                if not session.pacer.busy:
                    self.pacing.discard(session)
        if self.gate.waiting:
            self._sweep(now)
        if not self._accepting:
            self._maybe_resume(now)
        self._next_tick += TICK
        t = loop.time()
        if self._next_tick < t:  # we fell behind (loaded host): do not try to catch up
            self._next_tick = t + TICK
        self._timer = loop.call_at(self._next_tick, self._tick)

    def note(self, kind: str, message: str, *args: Any) -> None:
        """Count ``kind`` in sipagent_media_errors_total and log one line (at most a few per kind and 10 s)."""
        self.metrics.media_errors.labels(kind).inc()
        held = self._throttle.allow(kind, time.monotonic())
        if held is not None:
            log.warning(message + (f" ({held} more like it not logged)" if held else ""), *args)

    # -- connections ----------------------------------------------------------------------------
    def arrived(self, conn: ForkConnection) -> bool:
        """A new connection on the port (taken while the gate had room)."""
        if not self.gate.arrive(conn, time.monotonic()):
            self.note("fork_refused", "fork %s: refused, %d connections", conn.peer, self.gate.total)
            return False
        self.forks.add(conn)
        return True

    def left(self, conn: ForkConnection) -> None:
        """A connection closed."""
        self.forks.discard(conn)
        self.gate.left(conn)
        if not self._accepting:
            self._maybe_resume(time.monotonic())

    def _sweep(self, now: float) -> None:
        for conn, why in self.gate.sweep(now):
            if why == "evicted":
                self.note("fork_evicted", "fork %s: closed, too many connections in the handshake", conn.peer)
                conn.drop(503, 1013, "too many connections")
            elif why == "handshake_timeout":
                self.note(
                    "fork_handshake_timeout",
                    "fork %s: no WebSocket handshake within %g s, closed",
                    conn.peer,
                    self.settings.handshake_timeout_seconds,
                )
                conn.drop(408, 1008, "handshake timeout")
            else:
                self.note(
                    "fork_metadata_timeout",
                    "fork %s (call %s): no metadata within %g s of the upgrade, closed",
                    conn.peer,
                    conn.call_id,
                    self.settings.metadata_timeout_seconds,
                )
                conn.drop(408, 1008, "no metadata")

    # -- forks ----------------------------------------------------------------------------------
    def admit(self, conn: ForkConnection, request: Request) -> None:
        """A valid upgrade request: on ``/calls/<uuid>`` with a token minted for the call, then claimed.

        The token's MAC is checked here; the controller then says whether the call is up and waiting
        for this very fork (each token is claimed once). Until it answers the request waits, bounded
        by the handshake timeout.
        """
        try:
            call_id, token = fork.parse_target(request.path)
        except fork.TargetError as exc:
            self._reject(conn, exc.status, exc.text, "fork from %s: %s, rejected", conn.peer, exc.detail)
            return
        if self.tokens.verify(call_id, token) is None:
            self._reject(conn, 403, "bad token", "fork from %s for call %s: bad token, rejected", conn.peer, call_id)
            return
        conn.call_id = call_id
        deadline = self.gate.claiming(conn)
        if self.control is None or deadline is None:
            self._reject(conn, 403, "no such call", "fork from %s for call %s: no call control", conn.peer, call_id)
            return
        conn.stage = "claiming"
        task = asyncio.ensure_future(self._claim(conn, call_id, token, deadline))
        self.claims.add(task)
        task.add_done_callback(self.claims.discard)

    async def _claim(self, conn: ForkConnection, call_id: str, token: str, deadline: float) -> None:
        assert self.control is not None
        status, why = 0, ""
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                ok = await self.control.claim_fork(call_id, token)
        except TimeoutError:
            ok, status, why = False, 503, "the call controller did not answer in time"
        except Exception as exc:
            ok, status, why = False, 503, f"the call controller failed: {_printable(str(exc))}"
        if conn.transport is None or conn.ws.closed:
            if ok:
                log.warning("call %s: its fork connection closed before it was accepted", call_id)
            return
        if not ok:
            if not status:
                status, why = 403, "no call waits for this fork (ended, unknown, or its token was used)"
            self._reject(conn, status, "refused", "fork from %s for call %s: %s, rejected", conn.peer, call_id, why)
            return
        conn.ws.accept()
        conn.stage = "upgraded"
        self.gate.upgraded(conn, time.monotonic())
        conn.data_received(b"")  # writes the 101, then reads whatever the fork sent with its request

    def _reject(self, conn: ForkConnection, status: int, text: str, message: str, *args: Any) -> None:
        self.note("fork_rejected", message, *args)
        conn.drop(status, 1008, text)

    def open_session(self, conn: ForkConnection, text: str) -> Session | None:
        """The fork's first text frame (metadata): attach it to the call's session (new or existing)."""
        call_id = conn.call_id
        existing = self.sessions.get(call_id)
        if existing is not None and existing.state in ("connecting", "open"):
            old, existing.fork = existing.fork, conn  # FreeSWITCH re-forked the call: keep the agent
            if old is not None and old is not conn:
                old.session = None
                old.close(1000, "")
            conn.stage = "attached"
            self.gate.attached(conn)
            return existing
        try:
            metadata = fork.parse_metadata(text)
            if metadata.call_id and metadata.call_id != call_id:
                raise fork.MetadataError(1008, "call_id differs from the call in the URL")
        except fork.MetadataError as exc:
            return self._refuse(conn, exc.code, f"fork metadata (first text frame) refused: {exc.detail}")
        agent_config = self.agents.get(metadata.agent)
        if agent_config is None:
            return self._refuse(conn, 1008, f"fork metadata names no configured agent ({metadata.agent!r})")
        try:
            session = Session(self, call_id, metadata, agent_config)
        except (ValueError, TypeError) as exc:
            return self._refuse(conn, 1008, f"fork metadata: {_printable(str(exc))}")
        session.fork = conn
        conn.stage = "attached"
        self.gate.attached(conn)
        self.sessions[call_id] = session
        self.metrics.media_sessions.inc()
        session.spawn(session.connect_agent())
        return session

    def _refuse(self, conn: ForkConnection, code: int, why: str) -> None:
        self.note("fork_metadata", "call %s: %s; closing the fork with %d", conn.call_id, why, code)
        conn.drop(400, code, "bad metadata")
        return None

    # -- notices from the call controller -----------------------------------------------------------
    def on_notice(self, notice: Any) -> None:
        """Call events: DTMF and transfer outcomes to the agent; hang-up closes the session; buffer overruns."""
        session = self.sessions.get(notice.call.uuid)
        kind = notice.kind
        if kind == "dtmf":
            if session is not None:
                session.dtmf(notice.data["digit"])
        elif kind == "transfer":
            if session is not None and isinstance(notice.data, dict):
                session.transfer_outcome(notice.data)
        elif kind in ("hangup", "ended"):
            if session is not None:
                session.call_ended()
        elif kind == "fork_buffer_overrun":
            log.warning("call %s: FreeSWITCH dropped caller audio (mod_audio_fork buffer overrun)", notice.call.uuid)
            self.metrics.media_errors.labels("fork_buffer_overrun").inc()

    def account(self, session: Session) -> None:
        """Fold an ended session into the totals and the call record."""
        t, st = self.totals, session.stats
        t.frames_in += st.frames_in
        t.bytes_in += st.bytes_in
        t.frames_to_agent += st.frames_to_agent
        t.dropped_to_agent += st.dropped_to_agent
        t.frames_from_agent += st.frames_from_agent
        t.bytes_from_agent += st.bytes_from_agent
        t.frames_out += st.frames_out
        t.bytes_out += st.bytes_out
        self.metrics.media_sessions_ended.labels(session.outcome or "completed").inc()
        if self.control is not None:
            self.control.media_update(session.call_id, session.summary(), final=True)

    def counters(self) -> dict[str, int]:
        """Totals over ended and live sessions (read at scrape time)."""
        out = {k: getattr(self.totals, k) for k in _COUNTERS}
        for s in self.sessions.values():
            for k in _COUNTERS:
                out[k] += getattr(s.stats, k)
        return out


_COUNTERS = (
    "frames_in",
    "bytes_in",
    "frames_to_agent",
    "dropped_to_agent",
    "frames_from_agent",
    "bytes_from_agent",
    "frames_out",
    "bytes_out",
)
