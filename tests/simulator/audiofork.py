"""mod_audio_fork as a real WebSocket client (``sim.fork_websocket = True``).

Faithful to FreeSWITCH 1.10.12 with drachtio's mod_audio_fork (fixture 05) and jambonz's 30f21899 with bidirectional
streaming (fixture 10), and to their sources (lws_glue.cpp, audio_pipe.cpp, mod_audio_fork.c):

* ``uuid_audio_fork <uuid> start <url> <mono|mixed|stereo> <8k|16k|N> [bugname] [metadata]`` (drachtio: 7 argument
  slots, so metadata is the rest of the line) or exactly 10 tokens ``... <bugname> <metadata> <bidir> <stream>
  <stream-rate>`` (jambonz). Arguments are split and unescaped like ``switch_separate_string`` (blanks split, single
  quotes group, ``\\\\`` ``\\'`` ``\\s`` ``\\n`` ... unescape). ``+OK Success`` comes first; ``fork_connect_delay``
  later the client connects: ``GET <path>`` with libwebsockets' headers in its order (Host without port, ``Origin:
  http://<host>``, ``Sec-WebSocket-Protocol: audio.drachtio.org``, no User-Agent, no extensions; Basic auth from
  ``MOD_AUDIO_BASIC_AUTH_USERNAME/PASSWORD``). Failure (refused, DNS, handshake rejected, timeout) fires
  ``mod_audio_fork::connect_failed`` ``{"reason":"Unable to connect"}`` (recorded for a refused port; libwebsockets'
  text for other failures is not recorded). Success fires ``::connect``, sends the metadata as the first text frame,
  then L16 of the caller every 20 ms (absolute schedule; 320 B at 8k, 640 B at 16k, x2 for stereo; frames that could
  not be written are coalesced into one message like libwebsockets does). The audio waiting to be written is bounded by
  ``fork_buffer_secs`` (MOD_AUDIO_FORK_BUFFER_SECS, 2): when the server stops reading (TCP backpressure) the buffer is
  dropped and ``::buffer_overrun`` fires once.
* Server text: ``transcription``/``transfer``/``disconnect``/``error`` -> ``::<type>`` with ``data`` as body; JSON
  without a string ``type`` (or ``"type":"json"``) -> ``::json`` with the whole object; ``killAudio`` ->
  ``::kill_audio`` (no body) + CF_BREAK on the channel (ends a ``uuid_broadcast`` playback); ``playAudio`` (drachtio
  form, or jambonz with bidir=true stream=false) -> the audio is kept in ``sim.files`` as
  ``/tmp/<uuid>_<n>.tmp.r8|.r16|...|.wav`` (``n`` counts per simulator, like the module's global counter) and
  ``::play_audio`` fires with ``data`` minus ``audioContent`` plus ``file``; anything else, non-JSON text and (outside
  streaming) binary frames: nothing. JSON is read and re-printed like FreeSWITCH's cJSON 1.7 (case-insensitive keys,
  order and duplicates kept, ``%1.15g`` numbers, trailing text after the JSON ignored).
* jambonz streaming (bidir=true, stream=true, stream-rate != 0): see :class:`StreamPlayout` -- prebuffer, 80 ms
  moves, tail holdback, marks, the -1 sample quirk, killAudio / clearMarks / ``stop_play``. ``playAudio`` is ignored.
* Closing: ``stop [bugname] [text]`` sends the text, then close 1000 ""; hangup closes 1000 "" after CHANNEL_HANGUP;
  neither fires ``::disconnect``. The server closing (close frame echoed with its code and reason) or dropping TCP
  fires ``::disconnect`` without body (libwebsockets' CLIENT_CLOSED in state CONNECTED -- both cases take that path).
  The media bug stays attached after ``connect_failed``/``disconnect``: a later ``stop`` answers ``+OK Success``
  (recorded), a ``start`` with the same bug name ``-ERR Operation Failed``, hangup fires its MEDIA_BUG_STOP (15-misc).

Approximations: speex is replaced by :class:`~simulator.media.Resampler`; a fork stopped while still connecting has
its socket closed once open (the real module leaks it); ``pause``/``resume``/``graceful-shutdown`` only stop/restart
the audio (graceful-shutdown sends one empty binary frame); ``stop_play`` acts on the default bug ``audio_fork``
whatever form started it; the caller's audio is read per fork from the start of what ``set_caller_audio`` set.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import math
import ssl
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.headers import build_authorization_basic
from websockets.http11 import Request

from . import fsstrings
from .channel import atoi
from .media import ChannelAudio, Resampler, pcm_to_samples, samples_to_pcm

if TYPE_CHECKING:  # pragma: no cover
    from .channel import SimChannel
    from .server import SimulatedFreeSwitch

SUBPROTOCOL = "audio.drachtio.org"
DEFAULT_BUG = "audio_fork"
MAX_MARKS = 30
FORK_USAGE = (
    "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown | stop_play ] [wss-url | path] "
    "[mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] [bugname] [metadata] "
    "[bidirectionalAudio_enabled] [bidirectionalAudio_stream_enabled] [bidirectionalAudio_stream_samplerate]\n"
)
OK, FAILED = "+OK Success\n", "-ERR Operation Failed\n"
_RAW_EXT = {8000: ".r8", 16000: ".r16", 24000: ".r24", 32000: ".r32", 48000: ".r48", 64000: ".r64"}


# =====================================================================================================
# argument splitting (switch_separate_string with ' ')
# =====================================================================================================
def fs_separate(text: str, limit: int) -> list[str]:
    """``switch_separate_string(buf, ' ', argv, limit)`` (:mod:`.fsstrings`): the last slot keeps the rest."""
    return fsstrings.separate(text, " ", limit)


# =====================================================================================================
# cJSON 1.7 (FreeSWITCH 1.10.12 src/cJSON.c) reading and printing
# =====================================================================================================
class JObj(list):  # type: ignore[type-arg]
    """A cJSON object: ordered (key, value) pairs, duplicates kept; lookups are case-insensitive, first match wins."""

    def get_item(self, key: str) -> Any:
        low = key.lower()
        return next((v for k, v in self if k.lower() == low), None)

    def detach(self, key: str) -> Any:
        low = key.lower()
        for i, (k, v) in enumerate(self):
            if k.lower() == low:
                del self[i]
                return v
        return None


_INVALID = object()
_DECODER = json.JSONDecoder(object_pairs_hook=JObj, parse_constant=lambda c: _raise(c))


def _raise(c: str) -> Any:
    raise ValueError(c)


def cjson_parse(text: str) -> Any:
    """``cJSON_Parse``: leading bytes <= 32 skipped, text after the value ignored; :data:`_INVALID` on failure."""
    s = text.lstrip("".join(chr(c) for c in range(33)))
    try:
        value, _ = _DECODER.raw_decode(s)
    except ValueError:
        return _INVALID
    return value


def cjson_print(value: Any) -> str:
    """``cJSON_PrintUnformatted``."""
    if isinstance(value, JObj):
        return "{" + ",".join(f"{_cj_str(k)}:{cjson_print(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(cjson_print(v) for v in value) + "]"
    if isinstance(value, str):
        return _cj_str(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    try:
        d = float(value)
    except OverflowError:
        return "null"
    if not math.isfinite(d):
        return "null"
    s = f"{d:1.15g}"  # C's %1.15g, then %1.17g when that does not round-trip
    return s if float(s) == d else f"{d:1.17g}"


def _cj_str(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


def _valueint(v: Any) -> int:
    """cJSON's ``valueint`` of a number (saturated to int); 0 for anything else."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return 0
    if isinstance(v, float) and not math.isfinite(v):
        return 0
    return max(-(2**31), min(2**31 - 1, int(v)))


# =====================================================================================================
# the start command
# =====================================================================================================
@dataclass
class ForkSpec:
    """A parsed ``uuid_audio_fork ... start``."""

    url: str
    mix: str
    rate_token: str
    sampling: int
    bug: str  # effective bug name
    bugname: str | None  # as given
    metadata: str | None
    jambonz: bool = False
    bidirectional: str | None = None
    stream: str | None = None
    stream_rate_token: str | None = None
    module: str = "mod_audio_fork"  # or "mod_audio_stream" (amigniter's open-source edition)

    @property
    def channels(self) -> int:
        return 2 if self.mix == "stereo" else 1

    @property
    def stream_rate(self) -> int:
        return atoi(self.stream_rate_token or "")

    @property
    def streaming(self) -> bool:
        """jambonz bidirectional streaming (WRITE_REPLACE bug)."""
        return self.jambonz and self.bidirectional == "true" and self.stream == "true" and self.stream_rate != 0

    @property
    def play_audio_events(self) -> bool:
        """Whether ``playAudio`` writes a file and fires ``::play_audio``."""
        return self.module == "mod_audio_fork" and (
            not self.jambonz or (self.bidirectional == "true" and self.stream != "true")
        )

    def as_dict(self, args: list[str]) -> dict[str, Any]:
        fork: dict[str, Any] = {
            "url": self.url,
            "mix": self.mix,
            "rate": self.rate_token,
            "bugname": self.bugname,
            "metadata": self.metadata,
            "bug": self.bug,
            "args": args,
            "client": None,
        }
        if self.jambonz:
            fork.update(bidirectional=self.bidirectional, stream=self.stream, stream_rate=self.stream_rate_token)
        return fork


async def api(sim: SimulatedFreeSwitch, arg: str) -> str:
    """``uuid_audio_fork`` (mod_audio_fork.c ``fork_function``); returns the api/response body."""
    argv = fs_separate(arg, 10)
    if len(argv) < 2 or (argv[1] == "start" and len(argv) < 4):
        return FORK_USAGE
    ch = sim.channels.get(argv[0])
    if ch is None or not ch.alive:
        return FAILED
    sub = argv[1].lower()
    if sub == "start":
        return _start(sim, ch, arg, argv)
    if sub == "stop":
        bug, text = DEFAULT_BUG, None
        if len(argv) > 3:
            bug, text = argv[2], argv[3]
        elif len(argv) > 2:
            if argv[2][:1] in ("{", "["):
                text = argv[2]
            else:
                bug = argv[2]
        fork = ch.bugs.get(bug)
        if fork is None:
            return FAILED
        sim.stop_fork(ch, fork, text)
        return OK
    if sub == "send_text":
        if len(argv) < 3:
            return ""  # logged, no reply (goto done)
        bug, text = DEFAULT_BUG, None
        if len(argv) > 3:
            bug, text = argv[2], argv[3]
        elif argv[2][:1] in ("{", "["):
            text = argv[2]
        else:
            bug = argv[2]
        fork = ch.bugs.get(bug)
        if fork is None:
            return FAILED
        fork.setdefault("sent", []).append((sub, text))
        if fork.get("client") is not None and text is not None:
            fork["client"].send_text(text)
        return OK
    if sub in ("pause", "resume", "graceful-shutdown", "stop_play"):
        bug = argv[2] if len(argv) > 2 and sub != "stop_play" else DEFAULT_BUG
        fork = ch.bugs.get(bug)
        if fork is None:
            return FAILED
        fork.setdefault("sent", []).append((sub, " ".join(argv[2:])))
        client: ForkClient | None = fork.get("client")
        if client is not None:
            client.control(sub)
        return OK
    return FAILED


STREAM_BUG = "audio_stream"
STREAM_USAGE = (
    "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] [wss-url | path] "
    "[mono | mixed | stereo] [8000 | 16000] [metadata]\n"
)
STREAM_ERROR = '{"status":"error","message":{"code":1,"error":"Connection error"}}'


async def stream_api(sim: SimulatedFreeSwitch, arg: str) -> str:
    """``uuid_audio_stream`` (amigniter mod_audio_stream.c ``stream_function``, open-source edition):
    ``<uuid> start <url> <mono|mixed|stereo> [8k|16k|N] [metadata]`` (6 slots: metadata is the rest of the line),
    ``stop [text]``, ``send_text <text>``, ``pause``, ``resume``."""
    argv = fs_separate(arg, 6)
    if len(argv) < 2:
        return STREAM_USAGE
    ch = sim.channels.get(argv[0])
    if ch is None or not ch.alive:
        return FAILED
    sub = argv[1].lower()
    if sub == "start":
        if len(argv) < 4 or STREAM_BUG in ch.bugs:
            return FAILED
        mix = argv[3]
        rate_token = argv[4] if len(argv) > 4 else "8k"
        sampling = 16000 if rate_token == "16k" else 8000 if rate_token == "8k" else atoi(rate_token)
        metadata = argv[5] if len(argv) > 5 else None
        if mix not in ("mono", "mixed", "stereo") or sampling <= 0:
            return FAILED
        spec = ForkSpec(argv[2], mix, rate_token, sampling, STREAM_BUG, None, metadata, module="mod_audio_stream")
        sim.start_fork(ch, spec, argv[1:])
        return OK
    fork = ch.bugs.get(STREAM_BUG)
    if fork is None:
        return FAILED
    if sub == "stop":
        sim.stop_fork(ch, fork, argv[2] if len(argv) > 2 else None)
        return OK
    if sub == "send_text" and len(argv) > 2:
        if fork.get("client") is not None:
            fork["client"].send_text(argv[2])
        return OK
    if sub in ("pause", "resume"):
        if fork.get("client") is not None:
            fork["client"].control(sub)
        return OK
    return FAILED


def _start(sim: SimulatedFreeSwitch, ch: SimChannel, arg: str, argv: list[str]) -> str:
    jambonz = len(argv) > 9
    if not jambonz:
        argv = fs_separate(arg, 7)  # drachtio: 7 slots, metadata is the rest of the line
    if len(argv) < 5:
        return FAILED  # the module would dereference a missing rate
    bugname: str | None = None
    metadata: str | None = None
    extra: dict[str, str] = {}
    if jambonz:
        bugname = argv[5] or None
        metadata = argv[6] or None
        extra = {"bidirectional": argv[7], "stream": argv[8], "stream_rate_token": argv[9]}
    elif len(argv) > 6:
        bugname, metadata = argv[5], argv[6]
    elif len(argv) > 5:
        if argv[5][:1] in ("{", "["):
            metadata = argv[5]
        else:
            bugname = argv[5]
    mix = argv[3]
    if mix not in ("mono", "mixed", "stereo"):
        return ""  # "invalid mix type" is logged and nothing is written
    rate_token = argv[4]
    sampling = 16000 if rate_token == "16k" else 8000 if rate_token == "8k" else atoi(rate_token)
    bug = bugname or DEFAULT_BUG
    if sampling <= 0 or bug in ch.bugs:
        return FAILED  # resampler init fails / "bug already attached"
    spec = ForkSpec(argv[2], mix, rate_token, sampling, bug, bugname, metadata, jambonz, **extra)
    sim.start_fork(ch, spec, argv[1:])
    return OK


# =====================================================================================================
# jambonz streaming playout
# =====================================================================================================
class StreamPlayout:
    """jambonz mod_audio_fork's playback of server audio (``processIncomingBinary`` / ``dub_speech_frame``).

    * Binary frames arrive in pieces of at most ``rx_chunk`` (1024) bytes -- libwebsockets' rx buffer -- an odd byte
      is carried over; pending marks enter the audio as one sample 0xFFFF (-1) each in front of the next piece.
    * The prebuffer (stream rate) is moved to the playout buffer (resampled to the leg rate) only when it holds
      ``1280 * df`` samples (160 ms at a stream rate <= leg rate; df = stream rate // leg rate, at least 1), later
      ``640 * df`` (80 ms): what remains below that stays until more audio comes (tail holdback; measured: 1 s in one
      32000 B frame keeps 72 ms back, 97 x 333 B 74 ms, 2 x 16000 B 20 ms, 500 x 64 B 60 ms -- as in rtp-analysis).
    * Each written frame takes up to one frame of samples. While marks are in use or cleared, every -1 sample pops a
      mark (cleared ones silently, in-use ones answer ``playout``) and is dropped from the audio -- a real -1 sample is
      taken for a marker too. With nothing buffered and no such marks, one mark left in the inventory (sent after the
      last audio) answers ``playout`` per frame. The resampler destroys the markers, so with stream rate != leg rate
      marks only come back through that empty-buffer path (or ``cleared``).
    * killAudio: at the next frame the playout buffer (not the prebuffer) is emptied, every in-use and inventory mark
      answers ``cleared`` and the in-use ones move to the cleared queue (they swallow the next markers: off by one).
      clearMarks moves in-use and inventory marks to the cleared queue without a reply. ``stop_play`` empties the
      playout buffer now and leaves the marks alone. At most 30 marks (in use + inventory); more are dropped.
    """

    def __init__(self, stream_rate: int, leg_rate: int, rx_chunk: int = 1024):
        self.df = stream_rate // leg_rate if stream_rate > leg_rate else 1
        self.threshold = 320 * self.df * 4
        self.rx_chunk = rx_chunk
        self.resampler = Resampler(stream_rate, leg_rate) if stream_rate != leg_rate else None
        self.prebuffer: list[int] = []
        self.playout: deque[int] = deque()
        self.carry = b""
        self.clear_pending = False
        self.marks_on = False
        self.inventory: deque[str] = deque()
        self.in_use: deque[str] = deque()
        self.cleared: deque[str] = deque()

    # -- from the server -------------------------------------------------------------------------------
    def feed(self, message: bytes) -> None:
        """One binary WebSocket message."""
        for i in range(0, len(message), self.rx_chunk):
            self._piece(message[i : i + self.rx_chunk])

    def _piece(self, data: bytes) -> None:
        if self.carry:
            data, self.carry = self.carry + data, b""
        if len(data) % 2:
            data, self.carry = data[:-1], data[-1:]
        if self.marks_on and self.inventory:
            self.prebuffer.extend([-1] * len(self.inventory))
            self.in_use.extend(self.inventory)
            self.inventory.clear()
        self.prebuffer.extend(pcm_to_samples(data))
        if len(self.prebuffer) < self.threshold:
            return
        self.threshold = 320 * self.df * 2
        full = len(self.prebuffer) // self.df * self.df
        chunk, self.prebuffer = self.prebuffer[:full], self.prebuffer[full:]
        self.playout.extend(self.resampler.process(chunk) if self.resampler else chunk)

    def add_mark(self, name: str) -> bool:
        """``{"type":"mark"}``; False when dropped (30 pending)."""
        if self.marks_on and len(self.in_use) + len(self.inventory) >= MAX_MARKS:
            return False
        self.marks_on = True
        self.inventory.append(name)
        return True

    def clear_marks(self) -> None:
        """``{"type":"clearMarks"}``."""
        if self.marks_on:
            self.cleared.extend(self.in_use)
            self.cleared.extend(self.inventory)
            self.in_use.clear()
            self.inventory.clear()

    def kill(self) -> None:
        """killAudio: empty the playout buffer at the next frame."""
        self.clear_pending = True

    def stop_play(self) -> None:
        """``uuid_audio_fork <uuid> stop_play``."""
        self.playout.clear()

    # -- each written frame --------------------------------------------------------------------------------
    def tick(self, n: int) -> tuple[list[int], list[tuple[str, str]]]:
        """Samples to add to a frame of ``n`` samples, and mark notifications ``(name, "playout"|"cleared")``."""
        notes: list[tuple[str, str]] = []
        if self.clear_pending:
            self.clear_pending = False
            self.playout.clear()
            if self.marks_on and (self.in_use or self.inventory):
                notes = [(name, "cleared") for name in (*self.in_use, *self.inventory)]
                self.cleared.extend(self.in_use)
                self.in_use.clear()
                self.inventory.clear()
            return [], notes
        take = min(len(self.playout), n)
        pop = self.playout.popleft
        if self.marks_on and (self.in_use or self.cleared):
            data: list[int] = []
            for _ in range(take):
                s = pop()
                if s != -1:
                    data.append(s)
                elif self.cleared:
                    self.cleared.popleft()
                elif self.in_use:
                    notes.append((self.in_use.popleft(), "playout"))
            return data, notes
        data = [pop() for _ in range(take)]
        if not take and self.marks_on and self.inventory:
            notes.append((self.inventory.popleft(), "playout"))
        return data, notes


def mark_reply(name: str, event: str) -> str:
    """The text jambonz's ``send_mark_event`` writes (name inserted unescaped, as the module does)."""
    return '{"type": "mark", "data": {"name":"' + name + '", "event": "' + event + '"}}'


# =====================================================================================================
# the WebSocket client
# =====================================================================================================
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
        try:
            ws = await connect(
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
        if obj is _INVALID:
            return
        data = obj.get_item("data") if isinstance(obj, JObj) else None
        if isinstance(obj, JObj) and obj.get_item("type") == "streamAudio" and isinstance(data, JObj):
            content = data.detach("audioData")
            raw_type = data.get_item("audioDataType") == "raw"
            ext = _RAW_EXT.get(_valueint(data.get_item("sampleRate")), "") if raw_type else ""
            if isinstance(content, str) and ext:
                raw = base64.b64decode(content + "=" * (-len(content) % 4))
                path = f"{self.sim.temp_dir}/{self.ch.uuid}_{self.sim.play_count}.tmp{ext}"
                self.sim.play_count += 1
                self.sim.files[path] = raw
                data.append(("file", path))
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
        if obj is _INVALID:
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
            ext = _RAW_EXT.get(_valueint(data.get_item("sampleRate")), ".r16")
        elif ctype in ("wave", "wav"):
            ext = ".wav"
        else:
            valid = False
        if valid:
            try:
                raw = base64.b64decode(content + "=" * (-len(content) % 4))
            except (binascii.Error, ValueError):
                raw = b""
            path = f"{self.sim.temp_dir}/{self.ch.uuid}_{self.sim.play_count}.tmp{ext}"
            self.sim.play_count += 1
            self.sim.files[path] = raw
            data.append(("file", path))
        self._fire("mod_audio_fork::play_audio", cjson_print(data))
