"""The agent's side of a call's audio: the WebSocket to one call's agent (client side, asyncio ``Protocol``).

Bytes from the agent go through the sans-I/O :class:`~orchestrator.media.websocket.WebSocket`; its
messages go straight to the session (:meth:`AgentSide.agent_message`), without a task or a queue.
The connection keeps its kernel send buffer small (``buffer_bytes``) so that an agent that stops
reading is noticed (:attr:`AgentConnection.paused`, since :attr:`AgentConnection.paused_at`) while
memory stays bounded. It knows its session only through :class:`AgentSide`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import deque
from typing import Protocol

from orchestrator.agents import base
from orchestrator.agents.connect import HandshakeError
from orchestrator.logs import LogThrottle
from orchestrator.media.fork_connection import SAMPLE_EVERY, close_transport
from orchestrator.media.websocket import CLOSE_TIMEOUT, OPEN, Binary, Closed, Opened, Text, WebSocket

log = logging.getLogger("sipagent.media")

#: agent-caused log lines, process-wide: 20 per 10 s (what a spamming agent can put in the log)
AGENT_LOG = LogThrottle(burst=20, window=10.0)


def agent_line() -> bool:
    """Whether to log one more agent-caused line (and say how many were held back)."""
    held = AGENT_LOG.allow("agent")
    if held:
        log.warning("%d agent log lines were not logged (rate limit)", held)
    return held is not None


class AgentSide(Protocol):
    """What an agent connection asks of its session."""

    call_id: str

    def agent_message(self, message: base.Message) -> None: ...
    def agent_opened(self, conn: AgentConnection) -> bool: ...
    def agent_lost(self, code: int, reason: str, error: str | None = None) -> None: ...
    def fail(self, reason: str, detail: str) -> None: ...
    def count_error(self, kind: str) -> None: ...


class AgentConnection(asyncio.Protocol):
    """The WebSocket to one call's agent (client side)."""

    def __init__(
        self,
        session: AgentSide,
        url: str,
        headers: dict[str, str],
        *,
        buffer_bytes: int,
        latency: deque[float],
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self.session = session
        self.ws = WebSocket.client(url, headers=headers, close_timeout=close_timeout)
        self.transport: asyncio.Transport | None = None
        self.opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.paused = False
        self.paused_at = 0.0
        self.closed_by_us = False  # our close: the agent's answer to it is no news
        self.buffer_bytes = buffer_bytes
        self.latency = latency  # agent → caller, one message in SAMPLE_EVERY
        self._n = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        tcp: asyncio.Transport = transport  # type: ignore[assignment]
        self.transport = tcp
        limit = self.buffer_bytes
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a small kernel buffer too: a stalled agent is noticed, memory stays bounded
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max(limit, 16384))
        tcp.set_write_buffer_limits(high=limit)
        tcp.write(self.ws.data_to_send())

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
            self.latency.append(time.perf_counter() - t0)

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
        if agent_line():
            log.exception("call %s: agent connection failed on its input", self.session.call_id)
        if not self.opened.done():
            self.session.count_error("bridge_error")
            self.opened.set_exception(HandshakeError("the agent's handshake answer could not be processed"))
        else:
            self.session.fail("bridge_error", "the agent's input could not be processed")
        if self.transport is not None:
            self.transport.abort()

    def send(self, message: base.Message) -> None:
        """A message to the agent."""
        if self.transport is None or self.ws.state is not OPEN:
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
        """Close the agent WebSocket (the TCP connection when the agent answers, or after the close timeout)."""
        if self.transport is None:
            return
        self.closed_by_us = True
        close_transport(self.transport, self.ws, code, reason)

    def abandon(self) -> None:
        """Close a half-open connection (TCP up, handshake never finished) without a word."""
        if self.opened.done() and not self.opened.cancelled():
            self.opened.exception()  # retrieved: no "exception was never retrieved" warning
        if self.transport is not None:
            self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        eof = self.ws.receive_eof()  # [] when the WebSocket was closed already
        if not self.opened.done():
            why = f"connection lost during the WebSocket handshake ({exc})" if exc else "closed during the handshake"
            self.opened.set_exception(HandshakeError(why))
        elif eof and not self.closed_by_us:
            self.session.agent_lost(1006, str(exc) if exc else "connection lost")
