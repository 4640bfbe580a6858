"""The fork modules' dialects, sans-I/O: everything that differs between drachtio's and jambonz's
``mod_audio_fork`` and ``mod_audio_stream``, in one place.

A :class:`Dialect` says how to start and stop a call's fork (its API command and arguments), what its
events mean (:class:`ForkEvent`, from the ``CUSTOM`` event subclasses it fires), how the bridge asks it
to play agent audio (a file-playback message; streaming sends binary L16 and is the same for all) and to
cut playback short (``killAudio``, which mod_audio_stream lacks), and which playback modes a build can
do (from its ``show api`` row). The call tracker, the controller, the bridge and ``sipagent doctor`` all
ask this module; none of them names a module's command or event.

The drachtio and jambonz builds of mod_audio_fork speak the same dialect; the jambonz one also takes the
bidirectional-streaming arguments (``… true true <rate>``), which :func:`playback_modes` recognises.
Wire details: ``../shared/reference/media-protocols.md``; checked against real modules in tests/integration.
"""

from __future__ import annotations

import binascii
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.esl import quoting

#: the WebSocket subprotocol mod_audio_fork asks for (mod_audio_stream asks for none)
SUBPROTOCOL = "audio.drachtio.org"
#: the media bug name our forks run under (mod_audio_fork takes one; mod_audio_stream's is fixed)
BUG_NAME = "sipagent"
#: mod_audio_fork takes at most this much metadata (the JSON after the bug name)
MAX_METADATA = 8192
FORK_RATES = ("8k", "16k")
STREAM_RATES = (8000, 16000, 24000, 48000)


class ForkEvent(enum.Enum):
    """What a fork module's ``CUSTOM`` event means for the call."""

    CONNECTED = "connected"
    CONNECT_FAILED = "connect_failed"
    DISCONNECTED = "disconnected"
    BUFFER_OVERRUN = "buffer_overrun"
    ERROR = "error"
    PLAY_FILE = "play_file"  # file playback: the module wrote a file for FreeSWITCH to play


class MetadataTooLarge(ValueError):
    """The metadata would exceed what mod_audio_fork takes (:data:`MAX_METADATA`)."""


def escape_argument(text: str) -> str:
    """Escape one argument for FreeSWITCH's API argument splitting (control characters refused)."""
    if any(ord(c) < 32 for c in text):
        raise ValueError("control characters cannot be passed as an API argument")
    return quoting.clean_escape(text)


def _file_message(kind: str, content_type: str, content: str, pcm: bytes, rate: int) -> str:
    b64 = binascii.b2a_base64(pcm, newline=False).decode()
    return f'{{"type":"{kind}","data":{{"{content_type}":"raw","sampleRate":{rate},"{content}":"{b64}"}}}}'


@dataclass(frozen=True, slots=True)
class Dialect:
    """One fork module as the orchestrator drives it."""

    module: str  # mod_audio_fork, mod_audio_stream
    api: str  # its API command
    events: Mapping[str, ForkEvent]  # CUSTOM event subclass -> meaning
    kill_audio: str | None  # the text message that cuts playback short, if the module has one
    can_stream_back: bool  # some build of it plays binary audio sent back (jambonz's mod_audio_fork)
    names_its_bug: bool  # start/stop take our bug name (mod_audio_stream's is fixed)
    file_message_fields: tuple[str, str, str]  # file playback: message type, content-type key, content key

    def start(
        self,
        call_uuid: str,
        url: str,
        rate: str,
        metadata: dict[str, Any],
        mix: str = "mono",
        stream_rate: int | None = None,
    ) -> str:
        """The fork's start command (API arguments), metadata escaped; ``stream_rate`` asks for audio back.

        mod_audio_fork: ``uuid_audio_fork <uuid> start <url> <mix> <rate> <bug> <metadata>``, with
        ``stream_rate`` the jambonz form ``… <metadata> true true <stream_rate>`` (bidirectional streaming).
        mod_audio_stream: ``uuid_audio_stream <uuid> start <url> <mix> <rate> <metadata>`` (its bug name is
        fixed; the metadata is the rest of the line, split and unescaped the same way).
        """
        if rate not in FORK_RATES:
            raise ValueError("fork rate must be 8k or 16k")
        text = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode()) > MAX_METADATA:
            raise MetadataTooLarge(f"fork metadata exceeds {MAX_METADATA} bytes")
        if any(c in url for c in " '\\\n"):
            raise ValueError("fork URL cannot contain blanks, quotes or backslashes")
        if stream_rate is not None and not self.can_stream_back:
            raise ValueError(f"{self.module} cannot stream audio back")
        bug = f" {BUG_NAME}" if self.names_its_bug else ""
        command = f"{self.api} {call_uuid} start {url} {mix} {rate}{bug} {escape_argument(text)}"
        if stream_rate is not None:
            if stream_rate not in STREAM_RATES:
                raise ValueError("stream rate must be 8000, 16000, 24000 or 48000")
            command += f" true true {stream_rate}"
        return command

    def stop(self, call_uuid: str) -> str:
        """The command that stops the call's fork."""
        return f"{self.api} {call_uuid} stop" + (f" {BUG_NAME}" if self.names_its_bug else "")

    def is_start(self, command: str) -> bool:
        """Whether an API command is one of this module's fork starts."""
        return command.startswith(self.api + " ") and " start " in command

    def file_message(self, pcm: bytes, rate: int) -> str:
        """The text message that hands L16 ``pcm`` to the module to write to a file and play."""
        return _file_message(*self.file_message_fields, pcm, rate)


MOD_AUDIO_FORK = Dialect(
    module="mod_audio_fork",
    api="uuid_audio_fork",
    events={
        "mod_audio_fork::connect": ForkEvent.CONNECTED,
        "mod_audio_fork::connect_failed": ForkEvent.CONNECT_FAILED,
        "mod_audio_fork::disconnect": ForkEvent.DISCONNECTED,
        "mod_audio_fork::buffer_overrun": ForkEvent.BUFFER_OVERRUN,
        "mod_audio_fork::error": ForkEvent.ERROR,
        "mod_audio_fork::play_audio": ForkEvent.PLAY_FILE,
    },
    kill_audio='{"type":"killAudio"}',  # streaming: empties the playout buffer; file: breaks the playback
    can_stream_back=True,
    names_its_bug=True,
    file_message_fields=("playAudio", "audioContentType", "audioContent"),
)
MOD_AUDIO_STREAM = Dialect(
    module="mod_audio_stream",
    api="uuid_audio_stream",
    events={
        "mod_audio_stream::connect": ForkEvent.CONNECTED,
        "mod_audio_stream::error": ForkEvent.CONNECT_FAILED,
        "mod_audio_stream::disconnect": ForkEvent.DISCONNECTED,
        "mod_audio_stream::play": ForkEvent.PLAY_FILE,
    },
    kill_audio=None,
    can_stream_back=False,
    names_its_bug=False,
    file_message_fields=("streamAudio", "audioDataType", "audioData"),
)
DIALECTS = {d.module: d for d in (MOD_AUDIO_FORK, MOD_AUDIO_STREAM)}
_EVENTS = {sub: meaning for d in DIALECTS.values() for sub, meaning in d.events.items()}
#: every fork event subclass of every module (what the controller subscribes to)
EVENT_SUBCLASSES = tuple(_EVENTS)


def dialect(module: str) -> Dialect:
    """The dialect of a configured ``orchestrator.media.fork_module``."""
    try:
        return DIALECTS[module]
    except KeyError:
        raise ValueError(f"unknown fork module {module!r}: use one of {', '.join(DIALECTS)}") from None


def event(subclass: str) -> ForkEvent | None:
    """What a ``CUSTOM`` event subclass means, if it is a fork module's."""
    return _EVENTS.get(subclass)


def playback_modes(api_row: str) -> tuple[str, ...]:
    """What a mod_audio_fork build can play back, from its ``show api`` row: the jambonz fork takes the
    bidirectional-audio arguments (agent audio streamed back); drachtio's and mod_audio_stream play files."""
    return ("streaming", "file") if "bidirectionalAudio" in api_row else ("file",)
