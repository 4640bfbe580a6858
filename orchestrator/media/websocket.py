"""WebSocket connection, sans-I/O: bytes in → messages out, messages in → bytes out.

The opening handshake (HTTP upgrade, ``Sec-WebSocket-Accept``, subprotocol negotiation, the client's
URI and headers) is done by the ``websockets`` library's own sans-I/O protocols
(:class:`websockets.server.ServerProtocol`, :class:`websockets.client.ClientProtocol`), and frames are
(un)masked with its C speed-up. The server side answers every request it cannot upgrade with an HTTP
error at once — bytes that are not an HTTP request 400, a head over 16 KiB 431, a line too long 414,
wrong method 405, HTTP/1.0 505, not an upgrade 426, a bad key or version 400 — and reports
:class:`Closed` with that ``status``; only a valid upgrade request comes out as a :class:`Request`,
and bytes the client sends before it is accepted are held (up to 64 KiB) and read once it is.

The data phase — RFC 6455 framing of already-open connections — is this module's, because it is the
media hot path: every call moves ~200 frames a second through the bridge, and ``websockets``'
generator-based frame reader costs ~8 µs per 640-byte frame where this one costs ~1 µs
(``bench/media.py`` shows what the whole path costs). Everything RFC 6455 asks of an endpoint
without extensions is checked: masking direction, reserved bits, control frame rules, fragmentation,
UTF-8 of text, close codes, a message size limit — a violation closes with the code the RFC names
and is reported with what was wrong.

Usage (either side)::

    ws = WebSocket.server(subprotocols=["audio.drachtio.org"])
    for event in ws.receive_data(data):      # Request, Text, Binary, Closed
        ...
    ws.accept() / ws.reject(403, "bad token")  # then ws.receive_data(b"") reads what came early
    transport.write(ws.binary(pcm))            # framed bytes to send
    transport.write(ws.data_to_send())         # pongs, close replies, handshake responses
    transport.write(ws.close(1000))            # then close TCP when ws.close_expected(), after ws.close_timeout
    ws.receive_eof()                           # the TCP connection ended

The connection's :class:`State` is ``CONNECTING`` (the handshake) → ``OPEN`` → ``CLOSING`` (we sent a close
frame and wait for the answer) → ``CLOSED``. What the peer sent wrong is a :class:`WebSocketProtocolError`
inside this module and comes out as :class:`Closed` with its ``error``; this module raises nothing at its caller.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import HeaderLineTooLong, RequestLineTooLong, TooManyHeaders
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

try:  # the C speed-up ships with every binary wheel of websockets
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - pure Python fallback
    from websockets.utils import apply_mask

__all__ = [
    "CLOSED",
    "CLOSE_TIMEOUT",
    "CLOSING",
    "CONNECTING",
    "OPEN",
    "Binary",
    "Closed",
    "Opened",
    "Request",
    "State",
    "Text",
    "WebSocket",
    "WebSocketProtocolError",
]

#: how long after sending a close frame the TCP connection is closed if the peer does not answer (seconds)
CLOSE_TIMEOUT = 2.0

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_HEAD = b"\r\n\r\n"
_MAX_HANDSHAKE = 16384
_MAX_EARLY = 65536  # bytes a client may send after its request, before it is accepted
_METHOD = re.compile(rb"[A-Z]{1,16} ")  # how an HTTP request line starts
_METHOD_PREFIX = re.compile(rb"[A-Z]{0,16}")
#: the handshake libraries log requests (with their URIs and headers: tokens, credentials) and every
#: connection at INFO; the media bridge logs its own one-line decisions instead
_handshake_log = logging.getLogger("sipagent.media.handshake")
_handshake_log.setLevel(logging.WARNING)
_pack_short = struct.Struct("!BBH").pack
_pack_long = struct.Struct("!BBQ").pack
_unpack_short = struct.Struct("!H").unpack_from
_unpack_long = struct.Struct("!Q").unpack_from
_urandom = os.urandom


class _MaskKeys:
    """Unpredictable masking keys (RFC 6455 5.3) drawn from the OS CSPRNG 4 KiB at a time."""

    __slots__ = ("_pool", "_pos")

    def __init__(self) -> None:
        self._pool = b""
        self._pos = 0

    def __call__(self) -> bytes:
        pos = self._pos
        if pos >= len(self._pool):
            self._pool, pos = _urandom(4096), 0
        self._pos = pos + 4
        return self._pool[pos : pos + 4]


_mask_key = _MaskKeys()


class State(enum.Enum):
    """A WebSocket connection's state (as in ``websockets``' ``protocol.py``)."""

    CONNECTING = 0  # the opening handshake
    OPEN = 1  # messages flow both ways
    CLOSING = 2  # we sent a close frame (ours, or the echo of the peer's is pending): waiting for the end
    CLOSED = 3  # the close handshake finished, the peer broke the protocol, the handshake failed, or TCP ended


# the states as module constants, like websockets' protocol.py: reading a member off an Enum class costs ~0.2 µs
# on Python 3.11, a module global ~0.02 µs, and the hot path checks the state on every frame
CONNECTING, OPEN, CLOSING, CLOSED = State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED


class WebSocketProtocolError(Exception):
    """What the peer sent broke the protocol (a remote error); ``code`` is the close code to send."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(slots=True)
class Opened:
    """The handshake completed (client side: with the server's response)."""

    subprotocol: str | None
    response: Response | None = None


@dataclass(slots=True)
class Text:
    """A complete text message."""

    data: str


@dataclass(slots=True)
class Binary:
    """A complete binary message."""

    data: bytes


@dataclass(slots=True)
class Closed:
    """The connection is closed (``code`` 1006 when it ended without a close frame)."""

    code: int
    reason: str
    error: str | None = None  # what the peer did wrong, when we closed because of it
    status: int = 0  # server side, before the upgrade: the HTTP status answered


Event = Request | Opened | Text | Binary | Closed


def _frame_header(first: int, length: int, mask: int) -> bytes:
    if length < 126:
        return bytes((first, mask | length))
    if length < 65536:
        return _pack_short(first, mask | 126, length)
    return _pack_long(first, mask | 127, length)


def _close_payload(code: int, reason: str) -> bytes:
    return code.to_bytes(2, "big") + reason.encode()[:123] if code not in (1005, 1006) else b""


def _valid_close_code(code: int) -> bool:
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014) or 3000 <= code < 5000


class WebSocket:
    """One WebSocket connection (server or client side), without I/O."""

    __slots__ = (
        "_body",
        "_buf",
        "_early",
        "_frag",
        "_frag_op",
        "_handshake",
        "_head",
        "_out",
        "_response",
        "close_code",
        "close_reason",
        "close_timeout",
        "is_client",
        "max_message",
        "request",
        "state",
        "subprotocol",
    )

    def __init__(
        self,
        handshake: ServerProtocol | ClientProtocol,
        *,
        client: bool,
        max_message: int,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self.is_client = client
        self._handshake: Any = handshake
        self._buf = b""
        self._head = bytearray()  # the HTTP head being received
        self._early = b""  # server: bytes after the request, until it is accepted
        self._response: Response | None = None  # server: the 101 for a valid request, sent on accept
        self._body = False  # client: reading a refusal's body
        self._out: list[bytes] = []
        self._frag_op = 0
        self._frag: list[bytes] = []
        self.max_message = max_message
        self.close_timeout = close_timeout
        self.state = CONNECTING
        self.subprotocol: str | None = None
        self.request: Request | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def server(
        cls, subprotocols: list[str] | None = None, max_message: int = 1 << 20, close_timeout: float = CLOSE_TIMEOUT
    ) -> WebSocket:
        """The server side: feed it the client's bytes; it yields a :class:`Request` to accept or reject."""
        wanted = [Subprotocol(p) for p in subprotocols or ()]

        def select(_: ServerProtocol, offered: Sequence[Subprotocol]) -> Subprotocol | None:
            # ours when offered; a client offering none (or others) is still accepted
            return next((p for p in offered if p in wanted), None)

        hs = ServerProtocol(
            subprotocols=wanted or None, select_subprotocol=select, max_size=max_message, logger=_handshake_log
        )
        return cls(hs, client=False, max_message=max_message, close_timeout=close_timeout)

    @classmethod
    def client(
        cls,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        subprotocols: list[str] | None = None,
        max_message: int = 1 << 22,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> WebSocket:
        """The client side; the request is ready in :meth:`data_to_send` at once."""
        protos = [Subprotocol(p) for p in subprotocols] if subprotocols else None
        hs = ClientProtocol(parse_uri(url), subprotocols=protos, max_size=max_message, logger=_handshake_log)
        ws = cls(hs, client=True, max_message=max_message, close_timeout=close_timeout)
        request = hs.connect()
        for name, value in (headers or {}).items():
            request.headers[name] = value
        ws.request = request
        hs.send_request(request)
        ws._out.extend(hs.data_to_send())
        return ws

    # -- handshake ------------------------------------------------------------------------------
    def accept(self, extra_headers: dict[str, str] | None = None) -> None:
        """Accept the client's request (subprotocol negotiated by ``websockets``).

        Bytes the client sent after its request are read by the next :meth:`receive_data` (``b""`` will do).
        """
        hs: ServerProtocol = self._handshake
        response = self._response
        if hs is None or response is None or self.state is not CONNECTING:
            return
        for name, value in (extra_headers or {}).items():
            response.headers[name] = value
        hs.send_response(response)
        self._out.extend(hs.data_to_send())
        self.subprotocol = hs.subprotocol
        self.state = OPEN
        self._handshake = self._response = None
        self._buf, self._early = self._early, b""

    def reject(self, status: int, text: str) -> None:
        """Refuse the upgrade with an HTTP status; the connection should then be closed (no-op once decided)."""
        hs: ServerProtocol | None = self._handshake
        if hs is None or self.is_client or self.state is not CONNECTING:
            return
        self._out.append(hs.reject(status, text + "\n").serialize())
        self.state = CLOSED
        self._handshake = self._response = None
        self._buf = self._early = b""
        self._head = bytearray()

    def _refuse(self, status: int, detail: str) -> list[Event]:
        self.reject(status, HTTPStatus(status).phrase)  # the detail may quote the peer's bytes: not echoed
        return [Closed(1002, "", detail, status)]

    def _receive_handshake(self, data: bytes) -> list[Event]:
        hs = self._handshake
        if self._body:  # client: the rest of a refusal
            hs.receive_data(data)
            return self._handshake_events(hs, b"")
        head_buf = self._head
        searched = max(0, len(head_buf) - 3)
        head_buf += data  # a bytearray: a peer sending a byte at a time costs no copying of the whole head
        if (
            not self.is_client
            and searched < 17
            and not _METHOD.match(head_buf)
            and (len(head_buf) > 16 or not _METHOD_PREFIX.fullmatch(head_buf))
        ):
            return self._refuse(400, "not an HTTP request")
        end = head_buf.find(_HEAD, searched)
        if end < 0:
            if len(head_buf) > _MAX_HANDSHAKE:
                if not self.is_client:
                    return self._refuse(431, f"HTTP request head over {_MAX_HANDSHAKE} bytes")
                raise WebSocketProtocolError(1002, "HTTP handshake too large")
            return []
        if end + 4 > _MAX_HANDSHAKE and not self.is_client:
            return self._refuse(431, f"HTTP request head over {_MAX_HANDSHAKE} bytes")
        head, rest = bytes(head_buf[: end + 4]), bytes(head_buf[end + 4 :])
        self._head = bytearray()
        hs.receive_data(head)
        if self.is_client:
            return self._handshake_events(hs, rest)
        received = hs.events_received()
        request = next((ev for ev in received if isinstance(ev, Request)), None)
        hs.data_to_send()  # an answer websockets may have queued: ours follows
        if request is None:
            exc = hs.handshake_exc
            cause = exc.__cause__ if exc is not None and exc.__cause__ is not None else exc
            if isinstance(exc, RequestLineTooLong):
                return self._refuse(414, "HTTP request line too long")
            if isinstance(exc, HeaderLineTooLong | TooManyHeaders):
                return self._refuse(431, f"HTTP request headers too large: {exc}")
            return self._refuse(400, f"invalid HTTP request: {cause or 'incomplete'}")
        response = hs.accept(request)
        if response.status_code != 101:  # not a valid WebSocket upgrade: answer it now
            hs.send_response(response)
            self._out.extend(hs.data_to_send())
            self.state = CLOSED
            self._handshake = None
            return [Closed(1002, "", f"bad upgrade request: {hs.handshake_exc}", response.status_code)]
        self.request = request
        self._response = response
        return [request, *self._hold(rest)]

    def _hold(self, data: bytes) -> list[Event]:
        """Server: bytes after the request, before it is accepted or rejected."""
        if data:
            self._early += data
            if len(self._early) > _MAX_EARLY:
                return self._refuse(413, f"over {_MAX_EARLY} bytes sent before the upgrade was answered")
        return []

    def _handshake_events(self, hs: ClientProtocol, rest: bytes) -> list[Event]:
        """Client: what the server's response (head, maybe a body) amounts to."""
        received = hs.events_received()
        if not received and rest and not self._body:  # a refusal carries a body
            self._body = True
            hs.receive_data(rest)
            received, rest = hs.events_received(), b""
        if not received:
            if hs.handshake_exc is not None:  # not a valid HTTP response
                self.state = CLOSED
                self._handshake = None
                return [Closed(1006, "", f"handshake failed: {hs.handshake_exc}")]
            self._body = True
            return []
        events: list[Event] = []
        for ev in received:
            if isinstance(ev, Response):
                if hs.handshake_exc is not None or self._body:
                    self.state = CLOSED
                    self._handshake = None
                    return [Closed(1006, "", f"handshake refused: {hs.handshake_exc or ev.status_code}")]
                self.state = OPEN
                self.subprotocol = hs.subprotocol
                self._handshake = None
                events.append(Opened(self.subprotocol, ev))
                if rest:
                    events.extend(self.receive_data(rest))
                break
        return events

    # -- receiving ------------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from the peer → complete messages and state changes."""
        state = self.state
        if state is CLOSED:
            return []
        if state is CONNECTING:
            if self._handshake is None:
                return []
            if self._response is not None:  # server: the request awaits accept() or reject()
                return self._hold(data)
            try:
                return self._receive_handshake(data)
            except WebSocketProtocolError as exc:
                self.state = CLOSED
                self._handshake = None
                return [Closed(1002, "", exc.detail)]
        if not self._buf and not self._frag_op and len(data) > 6:
            # the hot path: exactly one complete, final binary frame with a short length field
            b1 = data[1]
            if data[0] == 0x82 and (b1 & 0x7F) < 126:
                length = b1 & 0x7F
                if b1 & 0x80:
                    if not self.is_client and len(data) == length + 6:
                        return [Binary(apply_mask(data[6:], data[2:6]))]
                elif self.is_client and len(data) == length + 2:
                    return [Binary(data[2:])]
            elif data[0] == 0x82 and (b1 & 0x7F) == 126 and len(data) > 8:
                length = (data[2] << 8) | data[3]
                if b1 & 0x80:
                    if not self.is_client and len(data) == length + 8 and length <= self.max_message:
                        return [Binary(apply_mask(data[8:], data[4:8]))]
                elif self.is_client and len(data) == length + 4 and length <= self.max_message:
                    return [Binary(data[4:])]
        try:
            return self._receive_frames(data)
        except WebSocketProtocolError as exc:
            return [self._fail(exc.code, exc.detail)]

    def _fail(self, code: int, detail: str) -> Closed:
        if self.state is OPEN:
            self._out.append(self._frame(OP_CLOSE, _close_payload(code, "")))
        self.state = CLOSED
        self._buf = b""
        self.close_code = code
        return Closed(code, "", detail)

    def _receive_frames(self, data: bytes) -> list[Event]:
        buf = self._buf + data if self._buf else data
        size = len(buf)
        pos = 0
        events: list[Event] = []
        want_mask = not self.is_client
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = _unpack_short(buf, head)[0]
                head += 2
            elif length == 127:
                if size - pos < 10:
                    break
                length = _unpack_long(buf, head)[0]
                head += 8
            if bool(b1 & 0x80) is not want_mask:
                raise WebSocketProtocolError(
                    1002, "client frames must be masked" if want_mask else "server frames are unmasked"
                )
            if length > self.max_message:
                raise WebSocketProtocolError(1009, f"frame of {length} bytes exceeds the {self.max_message} byte limit")
            if want_mask:
                end = head + 4 + length
                if end > size:
                    break
                payload = apply_mask(buf[head + 4 : end], buf[head : head + 4])
            else:
                end = head + length
                if end > size:
                    break
                payload = buf[head:end]
            pos = end
            if b0 & 0x70:
                raise WebSocketProtocolError(1002, "reserved bits set (no extension was negotiated)")
            opcode = b0 & 0x0F
            if b0 & 0x80 and opcode == OP_BINARY and not self._frag_op:  # the hot path
                events.append(Binary(payload))
                continue
            event = self._frame_event(opcode, bool(b0 & 0x80), payload)
            if event is not None:
                events.append(event)
                if isinstance(event, Closed):
                    self._buf = b""
                    return events
        self._buf = buf[pos:] if pos < size else b""
        if len(self._buf) > self.max_message + 14:
            raise WebSocketProtocolError(1009, "message exceeds the size limit")
        return events

    def _frame_event(self, opcode: int, fin: bool, payload: bytes) -> Event | None:
        if opcode >= 8:
            if not fin or len(payload) > 125:
                raise WebSocketProtocolError(1002, "control frames must be final and at most 125 bytes")
            if opcode == OP_PING:
                if self.state is OPEN:
                    self._out.append(self._frame(OP_PONG, payload))
                return None
            if opcode == OP_PONG:
                return None
            if opcode == OP_CLOSE:
                return self._receive_close(payload)
            raise WebSocketProtocolError(1002, f"unknown opcode {opcode}")
        if opcode == OP_CONT:
            if not self._frag_op:
                raise WebSocketProtocolError(1002, "continuation frame without a message to continue")
            self._frag.append(payload)
            if sum(map(len, self._frag)) > self.max_message:
                raise WebSocketProtocolError(1009, f"message exceeds the {self.max_message} byte limit")
            if not fin:
                return None
            opcode, payload = self._frag_op, b"".join(self._frag)
            self._frag_op, self._frag = 0, []
        elif opcode in (OP_TEXT, OP_BINARY):
            if self._frag_op:
                raise WebSocketProtocolError(1002, "new message inside a fragmented one")
            if not fin:
                self._frag_op, self._frag = opcode, [payload]
                return None
        else:
            raise WebSocketProtocolError(1002, f"unknown opcode {opcode}")
        if opcode == OP_BINARY:
            return Binary(payload)
        try:
            return Text(payload.decode())
        except UnicodeDecodeError:
            raise WebSocketProtocolError(1007, "text message is not valid UTF-8") from None

    def _receive_close(self, payload: bytes) -> Closed:
        if len(payload) == 1:
            raise WebSocketProtocolError(1002, "close frame with a 1-byte payload")
        code, reason = 1005, ""
        if payload:
            code = int.from_bytes(payload[:2], "big")
            if not _valid_close_code(code):
                raise WebSocketProtocolError(1002, f"invalid close code {code}")
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                raise WebSocketProtocolError(1007, "close reason is not valid UTF-8") from None
        if self.state is OPEN:  # echo the peer's close (RFC 6455 5.5.1)
            self._out.append(self._frame(OP_CLOSE, payload))
        self.state = CLOSED
        self.close_code, self.close_reason = code, reason
        return Closed(code, reason)

    # -- sending --------------------------------------------------------------------------------
    def _frame(self, opcode: int, payload: bytes) -> bytes:
        if self.is_client:
            key = _mask_key()
            return _frame_header(0x80 | opcode, len(payload), 0x80) + key + apply_mask(payload, key)
        return _frame_header(0x80 | opcode, len(payload), 0) + payload

    def binary(self, data: bytes) -> bytes:
        """A binary message, framed."""
        if self.is_client:
            key = _mask_key()
            return _frame_header(0x82, len(data), 0x80) + key + apply_mask(data, key)
        n = len(data)
        if n < 126:
            return bytes((0x82, n)) + data
        if n < 65536:
            return _pack_short(0x82, 126, n) + data
        return _pack_long(0x82, 127, n) + data

    def text(self, data: str) -> bytes:
        """A text message, framed."""
        return self._frame(OP_TEXT, data.encode())

    def close(self, code: int = 1000, reason: str = "") -> bytes:
        """Start the closing handshake (returns the close frame; b"" if already closing)."""
        if self.state is not OPEN:
            return b""
        self.state = CLOSING
        return self._frame(OP_CLOSE, _close_payload(code, reason))

    def close_expected(self) -> bool:
        """Whether the TCP connection should close soon: we sent a close frame and wait for the peer's answer
        (the I/O layer closes it after :attr:`close_timeout` if the peer does not)."""
        return self.state is CLOSING

    def receive_eof(self) -> list[Event]:
        """The TCP connection ended: :class:`Closed` (1006) unless the WebSocket was closed already."""
        if self.state is CLOSED:
            return []
        self.state = CLOSED
        self._handshake = self._response = None
        self._buf = b""
        return [Closed(1006, "")]

    def ping(self, payload: bytes = b"") -> bytes:
        """A ping frame."""
        return self._frame(OP_PING, payload)

    def data_to_send(self) -> bytes:
        """Bytes the protocol itself must send (handshake, pongs, close replies)."""
        if not self._out:
            return b""
        out = b"".join(self._out)
        self._out.clear()
        return out
