"""mod_audio_fork's (and mod_audio_stream's) WebSocket client in the simulator: the I/O side of a fork.

Models ``lws_glue.cpp`` / ``audio_pipe.cpp`` of drachtio's and jambonz's mod_audio_fork (libwebsockets: the
upgrade request's headers and order, the WRITEABLE callback's one text frame at a time, the READ media bug's
20 ms frames on an absolute schedule, MOD_AUDIO_FORK_BUFFER_SECS and ``::buffer_overrun``, the close handshake
and ``::disconnect``) and amigniter's mod_audio_stream client; the server's messages are read with :mod:`.cjson`,
streamed audio played by :mod:`.playout`. What the client does is described in :mod:`.audiofork`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.headers import build_authorization_basic
from websockets.http11 import Request

from .cjson import INVALID, JObj, cjson_parse, cjson_print, valueint
from .forkargs import ForkSpec
from .media import ChannelAudio, Resampler, pcm_to_samples, samples_to_pcm
from .playout import StreamPlayout, mark_reply

if TYPE_CHECKING:  # pragma: no cover
    from .channel import SimChannel
    from .server import SimulatedFreeSwitch

SUBPROTOCOL = "audio.drachtio.org"
STREAM_ERROR = '{"status":"error","message":{"code":1,"error":"Connection error"}}'
_RAW_EXT = {8000: ".r8", 16000: ".r16", 24000: ".r24", 32000: ".r32", 48000: ".r48", 64000: ".r64"}


class _LwsConnection(ClientConnection):
    """Sends the upgrade request with libwebsockets' header set and order (Host without port, no User-Agent)."""

    async def handshake(self, additional_headers: Any = None, user_agent_header: str | None = None) -> None:
        build = self.protocol.connect
        host = self.protocol.uri.host  # type: ignore[attr-defined]

        def lws_request() -> Request:
            request = build()
            ours = Headers()
            ours["Pragma"] = "no-cache"
            ours["Cache-Control"] = "no-cache"
            ours["Host"] = host
            ours["Origin"] = f"http://{host}"
            ours["Upgrade"] = "websocket"
            ours["Connection"] = "Upgrade"
            ours["Sec-WebSocket-Key"] = request.headers["Sec-WebSocket-Key"]
            if "Sec-WebSocket-Protocol" in request.headers:  # mod_audio_stream's client offers none
                ours["Sec-WebSocket-Protocol"] = request.headers["Sec-WebSocket-Protocol"]
            ours["Sec-WebSocket-Version"] = "13"
            for k, v in additional_headers or ():
                ours[k] = v
            request.headers = ours
            return request

        self.protocol.connect = lws_request  # type: ignore[method-assign]
        await super().handshake(None, None)


@dataclass(eq=False)
class ForkClient:
    """One fork's WebSocket client (``ch.fork_client`` / ``sim.fork_client(uuid)``). For tests:

    ``state`` (connecting, connected, failed, closed), ``connected`` / ``closed`` (asyncio.Event; ``closed`` is also
    set after a failed connect), ``request_path``, ``request_headers`` [(name, value)], ``subprotocol``,
    ``metadata`` (the first text frame, or None), ``sent_text`` [(time, text)] (metadata, send_text, stop text, mark
    replies), ``sent_frames`` / ``sent_bytes`` / ``send_times`` (binary messages), ``received_text`` [(time, text)],
    ``received_binary_frames`` / ``received_binary_bytes``, ``close_code`` / ``close_reason`` (the close frame this
    client sent: 1000 "" when it closes, the echo of the server's; 1006 when TCP just dropped), ``heard_frames``
    [(time, L16 at the leg rate)] written to the caller while the fork was attached, ``heard_pcm()``, ``kill_times``,
    ``mark_replies`` [(frame time, name, "playout"|"cleared")], ``overruns`` and ``playout`` (the :class:`StreamPlayout`
    in streaming mode).
    """

    sim: SimulatedFreeSwitch = field(repr=False)
    ch: SimChannel = field(repr=False)
    fork: dict[str, Any] = field(repr=False)
    spec: ForkSpec
    state: str = "connecting"
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    request_path: str | None = None
    request_headers: list[tuple[str, str]] = field(default_factory=list)
    subprotocol: str | None = None
    metadata: str | None = None
    sent_text: list[tuple[float, str]] = field(default_factory=list)
    sent_frames: int = 0
    sent_bytes: int = 0
    send_times: list[float] = field(default_factory=list)
    received_text: list[tuple[float, str]] = field(default_factory=list)
    received_binary_frames: int = 0
    received_binary_bytes: int = 0
    close_code: int | None = None
    close_reason: str | None = None
    heard_frames: list[tuple[float, bytes]] = field(default_factory=list)
    kill_times: list[float] = field(default_factory=list)
    mark_replies: list[tuple[float, str, str]] = field(default_factory=list)
    overruns: int = 0
    playout: StreamPlayout | None = None

    def __post_init__(self) -> None:
        self.ws: ClientConnection | None = None
        self.attached = True
        self.closing = False
        self.paused = False
        self.graceful = False
        self.overrun_notified = False
        self._texts: deque[str] = deque()
        self._audio = bytearray()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._caller_pos = 0
        self._caller_version = -1
        self._heard_seen = 0
        leg = self.ch.rate
        self._rs_read = Resampler(leg, self.spec.sampling)
        self._rs_write = Resampler(leg, self.spec.sampling)
        self._buf_read: list[int] = []
        self._buf_write: list[int] = []
        if self.spec.streaming:
            self.playout = StreamPlayout(self.spec.stream_rate, leg, self.sim.fork_rx_chunk)

    # -- lifecycle ------------------------------------------------------------------------------------------
    @property
    def audio(self) -> ChannelAudio:
        return self.sim.channel_audio(self.ch)

    def start(self) -> None:
        """Attach the media bug and connect in the background."""
        audio = self.audio
        audio.observers.append(self)
        if self.playout is not None:
            audio.bugs.append(self)
        audio.kick()
        self._tasks.append(self.sim.spawn(self._run()))

    def detach(self, text: str | None = None) -> None:
        """The bug is removed (``stop`` or hangup): send ``text``, then close 1000 "" -- no ``::disconnect``."""
        if not self.attached:
            return
        self.attached = False
        audio = self.ch.audio
        if audio is not None:
            with contextlib.suppress(ValueError):
                audio.observers.remove(self)
            with contextlib.suppress(ValueError):
                audio.bugs.remove(self)
        if self.state == "connected":
            if text is not None:
                self._texts.append(text)
            self.closing = True
            self._wake.set()
        elif self.state == "connecting":
            self.closing = True

    def send_text(self, text: str) -> None:
        """``send_text``: queued if connected, else dropped."""
        if self.state == "connected" and not self.closing:
            self._texts.append(text)
            self._wake.set()

    def control(self, sub: str) -> None:
        """``pause``, ``resume``, ``graceful-shutdown``, ``stop_play``."""
        if sub == "pause":
            self.paused = True
        elif sub == "resume":
            self.paused = False
        elif sub == "graceful-shutdown":
            self.graceful = True
            self._texts.append("")  # marker: one empty binary frame
            self._wake.set()
        elif sub == "stop_play" and self.playout is not None:
            self.playout.stop_play()

    def overrun(self) -> None:
        """``::buffer_overrun`` (no body)."""
        self.overrun_notified = True
        self.overruns += 1
        self._fire("mod_audio_fork::buffer_overrun")

    def heard_pcm(self) -> bytes:
        """What the caller heard while this fork was attached (L16 at the leg rate)."""
        return b"".join(data for _, data in self.heard_frames)

    def _fire(self, subclass: str, body: str | None = None) -> None:
        if self.ch.alive:
            self.ch.fire("CUSTOM", subclass=subclass, body=body, source="AUDIO_FORK")

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- connection -------------------------------------------------------------------------------------
    async def _run(self) -> None:
        await asyncio.sleep(self.sim.fork_connect_delay)
        if not self.attached or not self.ch.alive:
            self.state = "closed"
            self.closed.set()
            return
        ws = await self._connect()
        if ws is None:
            return
        self.ws = ws
        request = ws.request
        if request is not None:
            self.request_path = request.path
            self.request_headers = list(request.headers.raw_items())
        self.subprotocol = ws.subprotocol
        if not self.attached:  # stopped while connecting
            await ws.close(1000, "")
            self._closed(ws)
            return
        self.state = "connected"
        if self.spec.module == "mod_audio_stream":
            self._fire("mod_audio_stream::connect", '{"status":"connected"}')
        else:
            self._fire("mod_audio_fork::connect")
        if self.spec.metadata:
            self.metadata = self.spec.metadata
            self._texts.appendleft(self.spec.metadata)
        self.connected.set()
        self._tasks.append(self.sim.spawn(self._writer(ws)))
        self._tasks.append(self.sim.spawn(self._sender()))
        self._wake.set()
        try:
            async for message in ws:
                if isinstance(message, str):
                    self._on_text(message)
                else:
                    self._on_binary(message)
        except ConnectionClosed:
            pass
        except asyncio.CancelledError:  # the simulator stops: like a killed process
            ws.transport.abort()
            raise
        self._closed(ws)

    async def _connect(self) -> ClientConnection | None:
        """The upgrade (libwebsockets' client); None after a failure, which fires ``::connect_failed`` (or
        mod_audio_stream's ``::error``)."""
        try:
            return await connect(
                self.spec.url,
                create_connection=_LwsConnection,
                additional_headers=self._auth_headers(),
                subprotocols=[SUBPROTOCOL] if self.spec.module == "mod_audio_fork" else None,  # type: ignore[list-item]
                compression=None,
                open_timeout=self.sim.fork_open_timeout,
                ping_interval=None,
                max_size=None,
                ssl=self._ssl(),
            )
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError, ValueError):
            self.state = "failed"
            if self.attached and self.spec.module == "mod_audio_stream":  # CONNECT_ERROR, then the bug closes
                self._fire("mod_audio_stream::error", STREAM_ERROR)
            elif self.attached:
                self._fire("mod_audio_fork::connect_failed", '{"reason":"Unable to connect"}')
            self.closed.set()
            return None

    def _closed(self, ws: ClientConnection) -> None:
        sent = ws.protocol.close_sent
        self.close_code, self.close_reason = (sent.code, sent.reason) if sent is not None else (1006, "")
        for task in self._tasks:
            if task is not asyncio.current_task() and not self.closing:
                task.cancel()
        was = self.state
        self.state = "closed"
        if was == "connected" and not self.closing and self.attached:
            if self.spec.module == "mod_audio_stream":
                code = ws.protocol.close_rcvd.code if ws.protocol.close_rcvd is not None else 1006
                reason = ws.protocol.close_rcvd.reason if ws.protocol.close_rcvd is not None else ""
                body = {"status": "disconnected", "message": {"code": code, "reason": reason}}
                self._fire("mod_audio_stream::disconnect", json.dumps(body, separators=(",", ":")))
            else:
                self._fire("mod_audio_fork::disconnect")  # CONNECTION_DROPPED, no body
        self.closed.set()

    def _auth_headers(self) -> list[tuple[str, str]]:
        user = self.ch.variables.get("MOD_AUDIO_BASIC_AUTH_USERNAME")
        if not user:
            return []
        password = self.ch.variables.get("MOD_AUDIO_BASIC_AUTH_PASSWORD", "")
        return [("Authorization", build_authorization_basic(user, password))]

    def _ssl(self) -> ssl.SSLContext | None:
        if not self.spec.url.lower().startswith("wss://"):
            return None
        ctx = ssl.create_default_context()
        if (self.ch.variables.get("MOD_AUDIO_FORK_ALLOW_SELFSIGNED") or "").lower() in ("true", "yes", "on", "1"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    # -- sending -----------------------------------------------------------------------------------------
    async def _writer(self, ws: ClientConnection) -> None:
        """libwebsockets' WRITEABLE callback: one text frame at a time, then close if asked, then all pending audio."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._texts or self.closing or self._audio:
                    if self._texts:
                        text = self._texts.popleft()
                        if text == "" and self.graceful:
                            await ws.send(b"")
                            continue
                        self.sent_text.append((self._now(), text))
                        await ws.send(text)
                    elif self.closing:
                        await ws.close(1000, "")
                        return
                    else:
                        data = bytes(self._audio)
                        self._audio.clear()
                        self.send_times.append(self._now())
                        self.sent_frames += 1
                        self.sent_bytes += len(data)
                        await ws.send(data)
        except ConnectionClosed:
            return

    async def _sender(self) -> None:
        """The READ media bug: 20 ms of the caller (resampled to the fork rate) per frame, absolute schedule."""
        loop = asyncio.get_running_loop()
        interval = self.sim.frame_interval
        start, n = loop.time(), 0
        size = self.spec.sampling * 20 // 1000
        capacity = 320 * self.spec.sampling // 8000 * self.spec.channels * 50 * self.sim.fork_buffer_secs
        while True:
            n += 1  # the first frame is read one frame after the connect
            await asyncio.sleep(max(0.0, start + n * interval - loop.time()))
            if self.state != "connected" or self.closing:
                return
            if not self.paused and not self.graceful:
                frame = self._frame(size)
                if len(self._audio) + len(frame) > capacity:
                    self._audio.clear()  # the write pointer goes back to zero: buffered audio is lost
                    if not self.overrun_notified:
                        self.overrun()
                self._audio += frame
                self._wake.set()

    def _frame(self, size: int) -> bytes:
        audio = self.audio
        if self._caller_version != audio.caller_version:
            self._caller_version, self._caller_pos = audio.caller_version, 0
        leg = audio.samples_per_frame
        while len(self._buf_read) < size:
            chunk, self._caller_pos = audio.read_caller(self._caller_pos, leg)
            self._buf_read += self._rs_read.process(chunk)
        read, self._buf_read = self._buf_read[:size], self._buf_read[size:]
        if self.spec.mix == "mono":
            return samples_to_pcm(read)
        while len(self._buf_write) < size:
            written = audio.heard_frames[self._heard_seen :]
            self._heard_seen = len(audio.heard_frames)
            chunk = list(pcm_to_samples(written[-1][1])) if written else [0] * leg
            self._buf_write += self._rs_write.process(chunk)
        write, self._buf_write = self._buf_write[:size], self._buf_write[size:]
        if self.spec.mix == "mixed":
            return samples_to_pcm([a + b for a, b in zip(read, write, strict=True)])
        return samples_to_pcm([s for pair in zip(read, write, strict=True) for s in pair])

    # -- the write side: streaming playout --------------------------------------------------------------
    def dub(self, frame: list[int], now: float) -> None:
        """WRITE_REPLACE: add the streamed audio to a frame written to the caller; answer marks on the socket."""
        if self.playout is None:
            return
        data, notes = self.playout.tick(len(frame))
        for i, s in enumerate(data):
            frame[i] += s
        for name, event in notes:
            self.mark_replies.append((now, name, event))
            if self.state == "connected" and not self.closing:
                self._texts.append(mark_reply(name, event))
                self._wake.set()

    # -- receiving ---------------------------------------------------------------------------------------
    def _on_stream_text(self, text: str) -> None:
        """mod_audio_stream: ``streamAudio`` -> temp file + ``::play`` (data minus audioData, plus file); else
        ``::json``."""
        obj = cjson_parse(text)
        if obj is INVALID:
            return
        data = obj.get_item("data") if isinstance(obj, JObj) else None
        if isinstance(obj, JObj) and obj.get_item("type") == "streamAudio" and isinstance(data, JObj):
            content = data.detach("audioData")
            raw_type = data.get_item("audioDataType") == "raw"
            ext = _RAW_EXT.get(valueint(data.get_item("sampleRate")), "") if raw_type else ""
            if isinstance(content, str) and ext:
                self._write_temp_file(data, base64.b64decode(content + "=" * (-len(content) % 4)), ext)
                self._fire("mod_audio_stream::play", cjson_print(data))
                return
        self._fire("mod_audio_stream::json", text)

    def _on_binary(self, data: bytes) -> None:
        self.received_binary_frames += 1
        self.received_binary_bytes += len(data)
        if self.playout is not None and data:
            self.playout.feed(data)

    def _on_text(self, text: str) -> None:
        self.received_text.append((self._now(), text))
        if not self.attached:
            return
        if self.spec.module == "mod_audio_stream":
            self._on_stream_text(text)
            return
        obj = cjson_parse(text)
        if obj is INVALID:
            return
        kind = obj.get_item("type") if isinstance(obj, JObj) else None
        kind = kind if isinstance(kind, str) else "json"
        data = obj.get_item("data") if isinstance(obj, JObj) else None
        body = cjson_print(data) if data is not None else None
        if kind == "playAudio":
            if self.spec.play_audio_events and data is not None:
                self._play_audio(data)
        elif kind == "killAudio":
            self.kill_times.append(self._now())
            self._fire("mod_audio_fork::kill_audio")
            self.audio.set_break()
            if self.playout is not None:
                self.playout.kill()
        elif kind == "mark" and self.spec.jambonz:
            name = data.get_item("name") if isinstance(data, JObj) else None
            if isinstance(name, str) and self.playout is not None:
                self.playout.add_mark(name)
        elif kind == "clearMarks" and self.spec.jambonz:
            if self.playout is not None:
                self.playout.clear_marks()
        elif kind in ("transcription", "transfer", "disconnect", "error"):
            self._fire(f"mod_audio_fork::{kind}", body)
        elif kind == "json":
            self._fire("mod_audio_fork::json", cjson_print(obj))

    def _play_audio(self, data: Any) -> None:
        if not isinstance(data, JObj):
            self._fire("mod_audio_fork::play_audio", cjson_print(data))
            return
        content = data.detach("audioContent")
        ctype = data.get_item("audioContentType")
        valid = isinstance(content, str)
        ext = ""
        if ctype == "raw":
            ext = _RAW_EXT.get(valueint(data.get_item("sampleRate")), ".r16")
        elif ctype in ("wave", "wav"):
            ext = ".wav"
        else:
            valid = False
        if valid:
            try:
                raw = base64.b64decode(content + "=" * (-len(content) % 4))
            except (binascii.Error, ValueError):
                raw = b""
            self._write_temp_file(data, raw, ext)
        self._fire("mod_audio_fork::play_audio", cjson_print(data))

    def _write_temp_file(self, data: JObj, raw: bytes, ext: str) -> None:
        """The module's temp file ``<temp_dir>/<uuid>_<n>.tmp<ext>`` (``n``: the global counter); named in ``data``."""
        path = f"{self.sim.temp_dir}/{self.ch.uuid}_{self.sim.play_count}.tmp{ext}"
        self.sim.play_count += 1
        self.sim.files[path] = raw
        data.append(("file", path))
