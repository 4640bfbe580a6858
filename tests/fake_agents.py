"""In-process fake agent servers (ElevenLabs, Twilio Media Streams, raw L16) for bridge tests.

Each fake listens on 127.0.0.1 on a free port (``.url``) and keeps one :class:`Session` per
connection: the upgrade request (path, query, headers), every text message parsed, the caller's
audio decoded to L16 at ``audio_rate``, and how the client closed. Tests script the agent side with
the ``send_*`` methods, which go to the latest connection unless given ``session=``.

Modes (constructor keywords): ``echo`` sends the caller's audio straight back; ``handshake=False``
accepts TCP connections but never answers the upgrade (connect timeouts); ``reject=403`` answers the
upgrade with that HTTP status; ``close_after=N`` closes the connection with ``close_code`` after
receiving N messages (an agent going away mid-call).

Use as ``async with FakeRawAgent() as fake: ...``. ``tls=`` (a server :class:`ssl.SSLContext`) serves
``wss://`` (see :func:`server_tls`).

For setup failures: :class:`ScriptedServer` answers a connection with scripted bytes (a refused or
broken WebSocket handshake, garbage, a close at the wrong moment) and :class:`FakeHttp` plays the
signed-URL endpoint with any status, body, delay or breakage.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from orchestrator.audio.convert import Converter, audioop, parse_format


@dataclass
class Session:
    """One connection to a fake agent."""

    ws: ServerConnection
    path: str  # request path without the query
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    messages: list[Any] = field(default_factory=list)  # text frames, parsed (the raw str if not JSON)
    audio: bytearray = field(default_factory=bytearray)  # caller audio, L16 at the fake's audio_rate
    binary_frames: int = 0
    arrivals: list[Any] = field(default_factory=list)  # each message in order: binary as its length, text parsed
    received: int = 0  # messages of any kind
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None  # what the client sent (1006: it vanished without a close frame)
    stream_sid: str | None = None  # Twilio: from the start message
    next_event_id: int = 1  # ElevenLabs: for send_audio without an event_id
    echo: Converter | None = None

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """Parsed messages whose ``type`` (ElevenLabs, raw) or ``event`` (Twilio) is ``kind``."""
        return [m for m in self.messages if isinstance(m, dict) and kind in (m.get("type"), m.get("event"))]


class FakeAgent:
    """Base of the fakes: the server, sessions, modes and generic sending."""

    #: rate of :attr:`Session.audio`
    audio_rate = 16000
    path = "/agent"

    def __init__(
        self,
        *,
        echo: bool = False,
        handshake: bool = True,
        reject: int | None = None,
        close_after: int | None = None,
        close_code: int = 1000,
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tls = tls
        self.echo = echo
        self.handshake = handshake
        self.reject = reject
        self.close_after = close_after
        self.close_code = close_code
        self.sessions: list[Session] = []
        self.stalled = 0  # TCP connections accepted and never answered (handshake=False)
        self.port = port  # 0: any free port
        self._server: Server | asyncio.Server | None = None
        self._stalled_writers: list[asyncio.StreamWriter] = []

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> Self:
        if self.handshake:
            self._server = await serve(
                self._handle, "127.0.0.1", self.port, process_request=self._process_request, ssl=self.tls
            )
        else:
            self._server = await asyncio.start_server(self._stall, "127.0.0.1", self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in self._stalled_writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}{self.path}"

    # -- waiting -----------------------------------------------------------------------------------
    @property
    def session(self) -> Session:
        """The latest connection."""
        if not self.sessions:
            raise LookupError("no connection yet")
        return self.sessions[-1]

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> None:
        """Wait until ``predicate()`` is true (polled every few ms); TimeoutError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            await asyncio.sleep(0.005)

    async def wait_session(self, count: int = 1, timeout: float = 5.0) -> Session:
        """Wait for the ``count``-th connection and return it."""
        await self.wait_for(lambda: len(self.sessions) >= count, timeout)
        return self.sessions[count - 1]

    async def wait_audio(self, nbytes: int, timeout: float = 5.0, session: Session | None = None) -> bytes:
        """Wait until at least ``nbytes`` of caller audio arrived; returns all of it."""
        await self.wait_session()
        target = session or self.session
        await self.wait_for(lambda: len(target.audio) >= nbytes, timeout)
        return bytes(target.audio)

    # -- sending -----------------------------------------------------------------------------------
    async def send_json(self, message: dict[str, Any], session: Session | None = None) -> None:
        await (session or self.session).ws.send(json.dumps(message))

    async def send_text(self, text: str, session: Session | None = None) -> None:
        await (session or self.session).ws.send(text)

    async def send_bytes(self, data: bytes, session: Session | None = None) -> None:
        await (session or self.session).ws.send(data)

    async def close(self, code: int = 1000, reason: str = "", session: Session | None = None) -> None:
        """Close the connection from the agent side."""
        await (session or self.session).ws.close(code, reason)

    # -- serving -----------------------------------------------------------------------------------
    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.reject is not None:
            return connection.respond(self.reject, f"rejected by the fake agent ({self.reject})\n")
        return None

    async def _stall(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stalled += 1
        self._stalled_writers.append(writer)
        with contextlib.suppress(Exception):
            await reader.read()  # until the client gives up
        writer.close()

    async def _handle(self, ws: ServerConnection) -> None:
        request = ws.request
        assert request is not None
        parts = urlsplit(request.path)
        session = Session(
            ws=ws,
            path=parts.path,
            query=dict(parse_qsl(parts.query)),
            headers={k.lower(): v for k, v in request.headers.raw_items()},
        )
        self.sessions.append(session)
        try:
            async for message in ws:
                session.received += 1
                if isinstance(message, bytes):
                    session.binary_frames += 1
                    session.arrivals.append(len(message))
                    await self._on_binary(session, message)
                else:
                    try:
                        parsed: Any = json.loads(message)
                    except ValueError:
                        parsed = message
                    session.messages.append(parsed)
                    session.arrivals.append(parsed)
                    await self._on_text(session, parsed)
                if self.close_after is not None and session.received >= self.close_after:
                    await ws.close(self.close_code, "fake agent closes")
                    break
        except ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            session.close_code = ws.close_code
            session.closed.set()

    async def _on_text(self, session: Session, message: Any) -> None:
        """A text message (parsed) arrived."""

    async def _on_binary(self, session: Session, data: bytes) -> None:
        """A binary message arrived."""


class FakeElevenLabs(FakeAgent):
    """An ElevenLabs Agents conversation endpoint, plus its signed-URL HTTP endpoint on the same port.

    Answers ``conversation_initiation_client_data`` with ``conversation_initiation_metadata`` (unless
    ``metadata=False``). The signed-URL GET checks ``xi-api-key`` against ``api_key`` (when given) and
    returns this server's URL with ``agent_id`` and ``token=signed-token``.
    """

    path = "/v1/convai/conversation"
    signed_path = "/v1/convai/conversation/get-signed-url"
    token = "signed-token"

    def __init__(
        self,
        *,
        input_format: str = "pcm_16000",
        output_format: str = "pcm_16000",
        conversation_id: str = "conv_fake",
        metadata: bool = True,
        api_key: str | None = None,
        **modes: Any,
    ) -> None:
        super().__init__(**modes)
        self.input_format, self.output_format = input_format, output_format
        self.input_encoding, self.audio_rate = parse_format(input_format)
        self.output_encoding, self.output_rate = parse_format(output_format)
        self.conversation_id = conversation_id
        self.metadata = metadata
        self.api_key = api_key
        self.http_requests: list[dict[str, Any]] = []  # signed-URL GETs: path, query, headers, status

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path != self.signed_path:
            return super()._process_request(connection, request)
        query = dict(parse_qsl(parts.query))
        headers = {k.lower(): v for k, v in request.headers.raw_items()}
        if self.api_key is not None and headers.get("xi-api-key") != self.api_key:
            status, body = HTTPStatus.UNAUTHORIZED, {"detail": "invalid api key"}
        elif "agent_id" not in query:
            status, body = HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": "agent_id missing"}
        else:
            agent = query["agent_id"]
            status, body = HTTPStatus.OK, {"signed_url": f"{self.url}?agent_id={agent}&token={self.token}"}
        self.http_requests.append({"path": parts.path, "query": query, "headers": headers, "status": int(status)})
        payload = json.dumps(body).encode()
        response_headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(payload)))])
        return Response(int(status), status.phrase, response_headers, payload)

    async def _on_text(self, session: Session, message: Any) -> None:
        if not isinstance(message, dict):
            return
        chunk = message.get("user_audio_chunk")
        if isinstance(chunk, str):
            data = base64.b64decode(chunk)
            pcm = audioop.ulaw2lin(data, 2) if self.input_encoding == "ulaw" else data
            session.audio += pcm
            if self.echo:
                if session.echo is None:
                    session.echo = Converter(self.audio_rate, self.output_rate, "l16", self.output_encoding)
                await self._send_encoded(session.echo.convert(pcm), None, session)
        elif message.get("type") == "conversation_initiation_client_data" and self.metadata:
            event = {
                "conversation_id": self.conversation_id,
                "agent_output_audio_format": self.output_format,
                "user_input_audio_format": self.input_format,
            }
            await self.send_json(
                {"type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": event}, session
            )

    async def send_audio(self, pcm: bytes, event_id: int | None = None, session: Session | None = None) -> int:
        """Agent speech: L16 at the output format's rate (μ-law encoded here for ``ulaw_8000``). Returns the id."""
        encoded = audioop.lin2ulaw(pcm, 2) if self.output_encoding == "ulaw" else pcm
        return await self._send_encoded(encoded, event_id, session)

    async def _send_encoded(self, data: bytes, event_id: int | None, session: Session | None) -> int:
        target = session or self.session
        if event_id is None:
            event_id = target.next_event_id
        target.next_event_id = max(target.next_event_id, event_id + 1)
        event = {"audio_base_64": base64.b64encode(data).decode(), "event_id": event_id}
        await self.send_json({"type": "audio", "audio_event": event}, target)
        return event_id

    async def send_interruption(self, event_id: int, session: Session | None = None) -> None:
        await self.send_json({"type": "interruption", "interruption_event": {"event_id": event_id}}, session)

    async def send_ping(self, event_id: int, ping_ms: int | None = None, session: Session | None = None) -> None:
        await self.send_json({"type": "ping", "ping_event": {"event_id": event_id, "ping_ms": ping_ms}}, session)

    async def send_tool_call(
        self,
        tool_name: str,
        parameters: dict[str, Any] | None = None,
        tool_call_id: str | None = None,
        session: Session | None = None,
    ) -> str:
        """A client tool call; returns its ``tool_call_id``."""
        target = session or self.session
        tool_call_id = tool_call_id or f"tool_{len(target.messages)}_{tool_name}"
        body = {"tool_name": tool_name, "tool_call_id": tool_call_id, "parameters": parameters or {}}
        await self.send_json({"type": "client_tool_call", "client_tool_call": body}, target)
        return tool_call_id

    async def send_agent_response(self, text: str, session: Session | None = None) -> None:
        await self.send_json({"type": "agent_response", "agent_response_event": {"agent_response": text}}, session)

    async def send_user_transcript(self, text: str, session: Session | None = None) -> None:
        event = {"user_transcript": text}
        await self.send_json({"type": "user_transcript", "user_transcription_event": event}, session)


class FakeTwilioAgent(FakeAgent):
    """An agent speaking Twilio Media Streams (as Pipecat does): μ-law 8 kHz media, mark, clear."""

    audio_rate = 8000
    path = "/twilio"

    async def _on_text(self, session: Session, message: Any) -> None:
        if not isinstance(message, dict):
            return
        event = message.get("event")
        if event == "start":
            session.stream_sid = message.get("start", {}).get("streamSid") or message.get("streamSid")
        elif event == "media":
            payload = message.get("media", {}).get("payload", "")
            ulaw = base64.b64decode(payload)
            session.audio += audioop.ulaw2lin(ulaw, 2)
            if self.echo:
                await self.send_json(
                    {"event": "media", "streamSid": session.stream_sid, "media": {"payload": payload}}, session
                )

    async def send_audio(self, pcm: bytes, session: Session | None = None) -> None:
        """Agent speech: L16 at 8 kHz, sent as one μ-law ``media`` message."""
        target = session or self.session
        payload = base64.b64encode(audioop.lin2ulaw(pcm, 2)).decode()
        await self.send_json({"event": "media", "streamSid": target.stream_sid, "media": {"payload": payload}}, target)

    async def send_mark(self, name: str, session: Session | None = None) -> None:
        target = session or self.session
        await self.send_json({"event": "mark", "streamSid": target.stream_sid, "mark": {"name": name}}, target)

    async def send_clear(self, session: Session | None = None) -> None:
        target = session or self.session
        await self.send_json({"event": "clear", "streamSid": target.stream_sid}, target)


class FakeRawAgent(FakeAgent):
    """An agent speaking the raw protocol: binary L16 at ``rate``, JSON control messages."""

    def __init__(self, *, rate: int = 16000, **modes: Any) -> None:
        super().__init__(**modes)
        self.audio_rate = rate

    async def _on_binary(self, session: Session, data: bytes) -> None:
        session.audio += data
        if self.echo:
            await self.send_bytes(data, session)

    async def send_audio(self, pcm: bytes, session: Session | None = None) -> None:
        """Agent speech: L16 at ``rate``, one binary frame."""
        await self.send_bytes(pcm, session)

    async def send_hangup(self, reason: str | None = None, session: Session | None = None) -> None:
        await self.send_json({"type": "hangup", **({"reason": reason} if reason is not None else {})}, session)

    async def send_transfer(self, target: str, request_id: str | None = None, session: Session | None = None) -> None:
        message = {"type": "transfer", "target": target, **({"id": request_id} if request_id else {})}
        await self.send_json(message, session)

    async def send_dtmf(self, digits: str, request_id: str | None = None, session: Session | None = None) -> None:
        message = {"type": "dtmf", "digits": digits, **({"id": request_id} if request_id else {})}
        await self.send_json(message, session)

    async def send_clear(self, session: Session | None = None) -> None:
        await self.send_json({"type": "clear"}, session)

    async def send_mark(self, name: str, session: Session | None = None) -> None:
        await self.send_json({"type": "mark", "name": name}, session)

    async def send_transcript(self, role: str, text: str, session: Session | None = None) -> None:
        await self.send_json({"type": "transcript", "role": role, "text": text}, session)


# -- setup failures ---------------------------------------------------------------------------------
def server_tls(directory: Path, name: str) -> ssl.SSLContext:
    """A server TLS context from ``orchestrator.config.selfsigned.generate`` output (``<name>.crt``/``.key``)."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(directory / f"{name}.crt", directory / f"{name}.key")
    return ctx


class ScriptedServer:
    """A TCP (or TLS) server that reads the client's request head and answers with scripted bytes.

    ``answer``: bytes written once the request head (up to its blank line) arrived — or at once with
    ``immediately=True`` — in pieces if a list (``pause`` seconds apart); then ``after`` decides:
    ``"close"`` closes, ``"stall"`` keeps the connection open, ``"reset"`` aborts it, ``"keep"`` waits for
    the next request on the same connection (HTTP keep-alive) and answers it the same way.
    """

    def __init__(
        self,
        answer: bytes | list[bytes] = b"",
        *,
        after: str = "close",
        immediately: bool = False,
        pause: float = 0.05,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.answer = [answer] if isinstance(answer, bytes) else answer
        self.after, self.immediately, self.pause, self.tls = after, immediately, pause, tls
        self.requests: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    def url(self, scheme: str = "ws", path: str = "/agent") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        try:
            while True:
                if not self.immediately:
                    self.requests.append(await reader.readuntil(b"\r\n\r\n"))
                for i, piece in enumerate(self.answer):
                    if i:
                        await asyncio.sleep(self.pause)
                    writer.write(piece)
                    await writer.drain()
                if self.after != "keep":
                    break
            if self.after == "stall":
                await reader.read()
            elif self.after == "reset":
                writer.transport.abort()
                return
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        writer.close()


class FakeHttp(ScriptedServer):
    """The signed-URL endpoint with one scripted answer: ``status`` and ``body`` (JSON-encoded if not bytes)."""

    def __init__(
        self,
        status: int = 200,
        body: object = b"",
        *,
        headers: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        after: str = "close",
    ) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        head = {"Content-Type": "application/json", "Content-Length": str(len(payload)), **(headers or {})}
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", *(f"{k}: {v}" for k, v in head.items())]
        super().__init__(("\r\n".join(lines) + "\r\n\r\n").encode() + payload, after=after, tls=tls)
