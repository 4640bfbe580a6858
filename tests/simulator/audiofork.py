"""The fork modules' API commands in the simulator: ``uuid_audio_fork`` (mod_audio_fork) and ``uuid_audio_stream``
(mod_audio_stream), with mod_audio_fork as a real WebSocket client (``sim.fork_websocket = True``).

The pieces: :mod:`.forkargs` (arguments and the parsed ``start``, pure), :mod:`.cjson` (cJSON emulation, pure),
:mod:`.playout` (jambonz's streaming playout, pure), :mod:`.forkclient` (the WebSocket client, I/O) and
:mod:`.forkglue` (the media bug on the channel). This module is the commands; the behaviour they model:

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

from typing import TYPE_CHECKING

from .forkargs import (
    DEFAULT_BUG,
    FAILED,
    FORK_USAGE,
    OK,
    STREAM_BUG,
    STREAM_USAGE,
    fs_separate,
    name_or_text,
    parse_start,
    parse_stream_start,
)

if TYPE_CHECKING:  # pragma: no cover
    from .forkclient import ForkClient
    from .server import SimulatedFreeSwitch


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
        parsed = parse_start(arg, argv, ch.bugs)
        if isinstance(parsed, str):
            return parsed
        spec, args = parsed
        sim.start_fork(ch, spec, args[1:])
        return OK
    if sub in ("stop", "send_text"):
        if sub == "send_text" and len(argv) < 3:
            return ""  # logged, no reply (goto done)
        name, text = name_or_text(argv, 2)
        fork = ch.bugs.get(DEFAULT_BUG if name is None else name)
        if fork is None:
            return FAILED
        if sub == "stop":
            sim.stop_fork(ch, fork, text)
            return OK
        fork.setdefault("sent", []).append((sub, text))
        if fork.get("client") is not None and text is not None:
            fork["client"].send_text(text)
        return OK
    if sub in ("pause", "resume", "graceful-shutdown", "stop_play"):
        fork = ch.bugs.get(argv[2] if len(argv) > 2 and sub != "stop_play" else DEFAULT_BUG)
        if fork is None:
            return FAILED
        fork.setdefault("sent", []).append((sub, " ".join(argv[2:])))
        client: ForkClient | None = fork.get("client")
        if client is not None:
            client.control(sub)
        return OK
    return FAILED


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
        spec = parse_stream_start(argv, ch.bugs)
        if isinstance(spec, str):
            return spec
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
