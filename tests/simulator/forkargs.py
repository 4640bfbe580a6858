"""The fork modules' command lines, taken apart (pure): ``uuid_audio_fork`` / ``uuid_audio_stream`` arguments and
the parsed ``start`` (:class:`ForkSpec`).

Models the argument handling of drachtio's / jambonz's ``mod_audio_fork.c`` (``fork_function``: 7 argument slots for
drachtio, so metadata is the rest of the line, or exactly 10 tokens for jambonz) and amigniter's
``mod_audio_stream.c`` (``stream_function``, 6 slots), both split by ``switch_separate_string`` (:mod:`.fsstrings`).
The replies are the modules' strings; the commands themselves run in :mod:`.audiofork`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from . import fsstrings
from .channel import atoi

DEFAULT_BUG = "audio_fork"
STREAM_BUG = "audio_stream"
FORK_USAGE = (
    "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown | stop_play ] [wss-url | path] "
    "[mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] [bugname] [metadata] "
    "[bidirectionalAudio_enabled] [bidirectionalAudio_stream_enabled] [bidirectionalAudio_stream_samplerate]\n"
)
STREAM_USAGE = (
    "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] [wss-url | path] "
    "[mono | mixed | stereo] [8000 | 16000] [metadata]\n"
)
OK, FAILED = "+OK Success\n", "-ERR Operation Failed\n"
MIXES = ("mono", "mixed", "stereo")


def fs_separate(text: str, limit: int) -> list[str]:
    """``switch_separate_string(buf, ' ', argv, limit)`` (:mod:`.fsstrings`): the last slot keeps the rest."""
    return fsstrings.separate(text, " ", limit)


def name_or_text(argv: list[str], i: int) -> tuple[str | None, str | None]:
    """``[bugname] [text]`` from ``argv[i]`` on: two slots are both; one is the text when it starts with ``{`` or
    ``[`` (JSON), else the bug name."""
    if len(argv) > i + 1:
        return argv[i], argv[i + 1]
    if len(argv) > i:
        return (None, argv[i]) if argv[i][:1] in ("{", "[") else (argv[i], None)
    return None, None


def sampling_rate(token: str) -> int:
    """``8k`` / ``16k`` or a number of Hz (``atoi``: 0 for garbage)."""
    return 16000 if token == "16k" else 8000 if token == "8k" else atoi(token)


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
        """The channel's record of the fork (``ch.fork`` / ``ch.forks``; ``args`` from ``start`` on)."""
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


def parse_start(arg: str, argv: list[str], attached: Collection[str]) -> tuple[ForkSpec, list[str]] | str:
    """``uuid_audio_fork <uuid> start <url> <mix> <rate> [bugname] [metadata] [bidir stream stream-rate]``: the
    spec and the arguments as the module split them, or the reply when it refuses (``""``: it only logs).
    ``argv`` is the 10-slot split of ``arg``; ``attached`` the channel's bug names."""
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
    else:
        bugname, metadata = name_or_text(argv, 5)
    mix = argv[3]
    if mix not in MIXES:
        return ""  # "invalid mix type" is logged and nothing is written
    rate_token = argv[4]
    sampling = sampling_rate(rate_token)
    bug = bugname or DEFAULT_BUG
    if sampling <= 0 or bug in attached:
        return FAILED  # resampler init fails / "bug already attached"
    return ForkSpec(argv[2], mix, rate_token, sampling, bug, bugname, metadata, jambonz, **extra), argv


def parse_stream_start(argv: list[str], attached: Collection[str]) -> ForkSpec | str:
    """``uuid_audio_stream <uuid> start <url> <mix> [rate] [metadata]`` (``argv``: the 6-slot split): the spec or
    the reply."""
    if len(argv) < 4 or STREAM_BUG in attached:
        return FAILED
    mix = argv[3]
    rate_token = argv[4] if len(argv) > 4 else "8k"
    sampling = sampling_rate(rate_token)
    metadata = argv[5] if len(argv) > 5 else None
    if mix not in MIXES or sampling <= 0:
        return FAILED
    return ForkSpec(argv[2], mix, rate_token, sampling, STREAM_BUG, None, metadata, module="mod_audio_stream")
