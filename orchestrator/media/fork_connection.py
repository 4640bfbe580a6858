"""FreeSWITCH's side of a call's audio: one ``mod_audio_fork`` WebSocket (server side, asyncio ``Protocol``).

Bytes from the fork go through the sans-I/O :class:`~orchestrator.media.websocket.WebSocket`; what
comes out is handed on without a task or a queue: the upgrade request to the bridge for admission
(:meth:`ForkOwner.admit`), the first text frame (the call's metadata) to the bridge to open or
re-attach the call's session (:meth:`ForkOwner.open_session`), audio frames to that session
(:meth:`ForkSession.caller_audio`). The connection knows its owner and its session only through the
two small protocols below, so this module imports neither the bridge nor the session.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from typing import Any, Protocol

from orchestrator.logs import escaped
from orchestrator.media import dialects
from orchestrator.media.websocket import CLOSE_TIMEOUT, CLOSED, CLOSING, OPEN, Binary, Closed, Request, Text, WebSocket

log = logging.getLogger("sipagent.media")

SAMPLE_EVERY = 16  # latency is measured on one message in 16


class Stage(enum.StrEnum):
    """Where a fork connection is on its way to carrying a call's audio."""

    HANDSHAKE = "handshake"  # until a valid upgrade request with a good token
    CLAIMING = "claiming"  # the controller is asked whether the call waits for this fork
    UPGRADED = "upgraded"  # 101 sent, metadata due
    ATTACHED = "attached"  # carries a session's audio
    CLOSED = "closed"


class ForkSession(Protocol):
    """What a fork connection asks of the session it carries audio for."""

    def caller_audio(self, pcm: bytes) -> None: ...
    def fork_lost(self, conn: ForkConnection, code: int) -> None: ...


class ForkOwner(Protocol):
    """What a fork connection asks of the bridge that accepted it."""

    latency_to_agent: deque[float]

    def admit(self, conn: ForkConnection, request: Request) -> None: ...
    def open_session(self, conn: ForkConnection, text: str) -> ForkSession | None: ...
    def left(self, conn: ForkConnection) -> None: ...
    def note(self, kind: str, message: str, *args: Any) -> None: ...


def close_transport(transport: asyncio.Transport, ws: WebSocket, code: int, reason: str) -> None:
    """Start the WebSocket closing handshake on ``transport``; the TCP connection closes when the peer
    answers, or after the WebSocket's close timeout (at once when there is nothing to close)."""
    frame = ws.close(code, reason)
    if frame:
        transport.write(frame)
        asyncio.get_running_loop().call_later(ws.close_timeout, transport.close)
    else:
        transport.close()


class ForkConnection(asyncio.Protocol):
    """One ``mod_audio_fork`` WebSocket (server side); ``stage``: a :class:`Stage`."""

    def __init__(self, owner: ForkOwner, peer: str = "?", close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.owner = owner
        self.ws = WebSocket.server(
            subprotocols=[dialects.SUBPROTOCOL], max_message=1 << 20, close_timeout=close_timeout
        )
        self.transport: asyncio.Transport | None = None
        self.session: ForkSession | None = None
        self.call_id = ""
        self.peer = peer
        self.stage = Stage.HANDSHAKE
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
                        session = self.session = self.owner.open_session(self, event.data)
                    else:
                        log.debug("call %s: text from the fork ignored: %r", self.call_id, event.data[:200])
                elif type(event) is Request:
                    self.owner.admit(self, event)
                elif type(event) is Closed:
                    self._closed(event)
            out = self.ws.data_to_send()
            if out and self.transport is not None:
                self.transport.write(out)
                if self.ws.state is CLOSED:  # a rejected handshake
                    self.transport.close()
            if t0:
                self.owner.latency_to_agent.append(time.perf_counter() - t0)
        except Exception as exc:  # never into asyncio's "Fatal error on transport": this connection only
            self._crash(exc)

    def _crash(self, exc: BaseException) -> None:
        self.owner.note(
            "fork_internal",
            "fork %s (call %s): internal error on its input, connection closed: %s: %s",
            self.peer,
            self.call_id or "?",
            type(exc).__name__,
            escaped(str(exc)),
        )
        if self.transport is not None:
            self.transport.abort()

    def _closed(self, event: Closed) -> None:
        if event.error:
            if event.status:
                self.owner.note(
                    "fork_bad_request", "fork %s: %s; answered %d", self.peer, escaped(event.error), event.status
                )
            else:
                self.owner.note(
                    "fork_protocol",
                    "fork %s (call %s): %s; closing with %d",
                    self.peer,
                    self.call_id or "?",
                    escaped(event.error),
                    event.code,
                )
        if self.transport is not None:
            out = self.ws.data_to_send()
            if out:
                self.transport.write(out)
            self.transport.close()

    def send_audio(self, pcm: bytes) -> None:
        """Agent audio into the call (streaming playback)."""
        if self.transport is not None and self.ws.state is OPEN:
            self.transport.write(self.ws.binary(pcm))

    def send_text(self, text: str) -> None:
        """A control message to mod_audio_fork."""
        if self.transport is not None and self.ws.state is OPEN:
            self.transport.write(self.ws.text(text))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket (then the TCP connection when the peer answers, or after the close timeout)."""
        if self.transport is not None:
            close_transport(self.transport, self.ws, code, reason)

    def drop(self, status: int, code: int, reason: str) -> None:
        """Close at once: an HTTP ``status`` before the upgrade, a close frame with ``code`` after it."""
        if self.transport is None:
            if self.stage is not Stage.CLOSED:
                self._drop = (status, code, reason)
            return
        if self.ws.state is OPEN or self.ws.state is CLOSING:
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
            self.stage = Stage.CLOSED
            self.owner.left(self)
            if self.session is not None:
                self.session.fork_lost(self, self.ws.close_code or 1006)
        except Exception as exc:
            self._crash(exc)
