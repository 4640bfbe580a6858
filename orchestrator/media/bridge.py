"""The media bridge: FreeSWITCH's audio forks on one side, voice agents on the other (asyncio).

Each call's ``mod_audio_fork`` connects here (``/calls/<uuid>?token=…``, subprotocol
``audio.drachtio.org``), sends its metadata, then L16 frames every 20 ms. The data flow, one module each:

- :mod:`orchestrator.media.fork_connection` — FreeSWITCH's side: the fork's WebSocket (server side);
- :mod:`orchestrator.media.session` — one call: caller audio → agent protocol adapter → agent, and the
  agent's audio → :mod:`~orchestrator.media.playback` pacer → fork; its decisions (failures, grace
  periods, deadlines, which outcome wins) in the sans-I/O :mod:`orchestrator.media.lifecycle`;
- :mod:`orchestrator.media.agent_connection` — the agent's side: the agent's WebSocket (client side);
- this module — the :class:`MediaBridge`: the listening socket and its accept loop, admission
  (:mod:`~orchestrator.media.admission`: caps, handshake and metadata time-outs, the token claim), the
  sessions by call, the 20 ms pacing tick, call notices from the controller, and the accounting
  (totals, counters read by the metrics).

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
from typing import Any

from orchestrator.agents.connect import agent_http_client
from orchestrator.agents.http_client import HttpClient
from orchestrator.config.model import Deployment, MediaSettings
from orchestrator.logs import LogThrottle, escaped
from orchestrator.media import dialects, fork
from orchestrator.media.admission import RESERVE, Gate, Limits, derive_limits, descriptors_in_use
from orchestrator.media.fork_connection import ForkConnection, Stage
from orchestrator.media.lifecycle import Phase
from orchestrator.media.session import COUNTERS, CallControl, Session, Stats
from orchestrator.media.websocket import CLOSE_TIMEOUT, CLOSED, Request
from orchestrator.metrics import Metrics

__all__ = ["CallControl", "MediaBridge"]

log = logging.getLogger("sipagent.media")

TICK = 0.020
STALE_EVERY = 5  # ticks between looks for caller audio held too long for the agent (agent_chunk_ms)
ACCEPT_BATCH = 64  # connections taken per wake-up of the listening socket
EVICT_BATCH = 16  # connections in their handshake closed at once when the port is full
ACCEPT_RETRY = 0.1  # after accept() failed (EMFILE …)
_BUSY = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def _listen(host: str, port: int, reuse_port: bool) -> socket.socket:
    """The listening socket (non-blocking, SO_REUSEADDR; SO_REUSEPORT for worker processes)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.create_server(address, family=family, backlog=1024, reuse_port=reuse_port)
    sock.setblocking(False)
    return sock


# ---------------------------------------------------------------------------------------------------
class MediaBridge:
    """The WebSocket server for every call's fork, and the sessions."""

    def __init__(
        self,
        deployment: Deployment,
        tokens: fork.Tokens,
        control: CallControl | None = None,
        metrics: Metrics | None = None,
        http: HttpClient | None = None,
        port: int | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.deployment = deployment
        self.reuse_port = reuse_port  # several worker processes share the port
        self._port = deployment.orchestrator.media.port if port is None else port  # 0: any free port
        self.settings: MediaSettings = deployment.orchestrator.media
        self.dialect = dialects.dialect(self.settings.fork_module)
        self.close_timeout = CLOSE_TIMEOUT  # after a close frame, the TCP connection's end at the latest
        self.tokens = tokens
        self.control = control
        self.metrics = metrics or Metrics()
        # one HTTP client for every call's signed-URL request (connection pool, TLS context and CA store loaded
        # once, not per call); made at start() unless one is given, and then closed at stop()
        self.http: HttpClient | None = http
        self._own_http = http is None
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
        self._ticks = 0
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
        if self._own_http and self.http is None:
            self.http = agent_http_client()
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
        port: int = self._sock.getsockname()[1]
        return port

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
        if self._own_http and self.http is not None:
            http, self.http = self.http, None
            await http.aclose()

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
        conn = ForkConnection(self, peer, self.close_timeout)
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
                conn.stage = Stage.CLOSED
                self.left(conn)
            log.debug("fork %s: connection lost before it was set up: %r", conn.peer, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        if self.pacing:
            for session in list(self.pacing):
                session.poll(now)
                if not session.pacer.busy:
                    self.pacing.discard(session)
        if self.gate.waiting:
            self._sweep(now)
        self._ticks += 1
        if self._ticks % STALE_EVERY == 0 and self.settings.agent_chunk_ms > 20:
            for session in self.sessions.values():
                session.flush_stale(now)
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
        conn.stage = Stage.CLAIMING
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
            ok, status, why = False, 503, f"the call controller failed: {escaped(str(exc))}"
        if conn.transport is None or conn.ws.state is CLOSED:
            if ok:
                log.warning("call %s: its fork connection closed before it was accepted", call_id)
            return
        if not ok:
            if not status:
                status, why = 403, "no call waits for this fork (ended, unknown, or its token was used)"
            self._reject(conn, status, "refused", "fork from %s for call %s: %s, rejected", conn.peer, call_id, why)
            return
        conn.ws.accept()
        conn.stage = Stage.UPGRADED
        self.gate.upgraded(conn, time.monotonic())
        conn.data_received(b"")  # writes the 101, then reads whatever the fork sent with its request

    def _reject(self, conn: ForkConnection, status: int, text: str, message: str, *args: Any) -> None:
        self.note("fork_rejected", message, *args)
        conn.drop(status, 1008, text)

    def open_session(self, conn: ForkConnection, text: str) -> Session | None:
        """The fork's first text frame (metadata): attach it to the call's session (new or existing)."""
        call_id = conn.call_id
        existing = self.sessions.get(call_id)
        if existing is not None and existing.state in (Phase.CONNECTING, Phase.OPEN):
            try:  # the new fork's rate (a codec change restarts the fork at the new codec's rate)
                rate: int | None = fork.parse_metadata(text).fork_rate
            except fork.MetadataError:
                rate = None
            old = existing.fork_attached(conn, rate)  # FreeSWITCH re-forked the call: keep the agent
            if old is not None and old is not conn:
                old.session = None
                old.close(1000, "")
            conn.stage = Stage.ATTACHED
            self.gate.attached(conn)
            return existing
        try:
            metadata = fork.parse_metadata(text)
            if metadata.call_id and metadata.call_id != call_id:
                raise fork.MetadataError(1008, "call_id differs from the call in the URL")
        except fork.MetadataError as exc:
            self._refuse(conn, exc.code, f"fork metadata (first text frame) refused: {exc.detail}")
            return None
        agent_config = self.agents.get(metadata.agent)
        if agent_config is None:
            self._refuse(conn, 1008, f"fork metadata names no configured agent ({metadata.agent!r})")
            return None
        try:
            session = Session(self, call_id, metadata, agent_config)
        except (ValueError, TypeError) as exc:
            self._refuse(conn, 1008, f"fork metadata: {escaped(str(exc))}")
            return None
        session.fork_attached(conn)
        conn.stage = Stage.ATTACHED
        self.gate.attached(conn)
        self.sessions[call_id] = session
        self.metrics.media_sessions.inc()
        session.spawn(session.connect_agent())
        return session

    def _refuse(self, conn: ForkConnection, code: int, why: str) -> None:
        self.note("fork_metadata", "call %s: %s; closing the fork with %d", conn.call_id, why, code)
        conn.drop(400, code, "bad metadata")

    # -- notices from the call controller -----------------------------------------------------------
    def on_notice(self, notice: Any) -> None:
        """Call events: DTMF, transfer outcomes, hold/resume and voicemail beeps to the agent; hang-up closes the
        session; overruns."""
        session = self.sessions.get(notice.call.uuid)
        kind = notice.kind
        if kind == "dtmf":
            if session is not None:
                session.dtmf(notice.data["digit"])
        elif kind == "transfer":
            if session is not None and isinstance(notice.data, dict):
                session.transfer_outcome(notice.data)
        elif kind == "hold":
            if session is not None and isinstance(notice.data, dict):
                session.hold(bool(notice.data.get("held")))
        elif kind == "machine":  # mod_avmd heard the voicemail beep
            if session is not None and isinstance(notice.data, dict) and notice.data.get("event") == "beep":
                session.machine_beep()
        elif kind in ("hangup", "ended"):
            if session is not None:
                session.call_ended()
        elif kind == "fork_buffer_overrun":
            log.warning("call %s: FreeSWITCH dropped caller audio (mod_audio_fork buffer overrun)", notice.call.uuid)
            self.metrics.media_errors.labels("fork_buffer_overrun").inc()

    def finished(self, session: Session) -> None:
        """A session ended: out of the registry, folded into the totals and the call record."""
        self.sessions.pop(session.call_id, None)
        self.totals.add(session.stats)
        self.metrics.media_sessions_ended.labels(session.outcome or "completed").inc()
        if self.control is not None:
            self.control.media_update(session.call_id, session.summary(), final=True)

    def counters(self) -> dict[str, int]:
        """Totals over ended and live sessions (read at scrape time)."""
        out = {k: getattr(self.totals, k) for k in COUNTERS}
        for s in self.sessions.values():
            for k in COUNTERS:
                out[k] += getattr(s.stats, k)
        return out
