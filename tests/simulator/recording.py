"""``uuid_record`` of the simulator: the recording media bug, its file and its RECORD_START / RECORD_STOP.

Modelled on FreeSWITCH 1.10.12: ``mod_commands.c`` ``session_record_function`` (arguments, replies),
``switch_ivr_async.c`` ``switch_ivr_record_session_event`` / ``record_callback`` / ``send_record_stop_event``
(events, variables, files) and ``mod_sndfile.c`` (the file), with what fixture 10 recorded
(``record-analysis.txt``, ``esl.txt``):

* ``uuid_record <uuid> start <path> [<limit>] [{vars}]`` (``switch_separate_string`` into 5; the vars are
  URL-decoded, then split like a ``{…}`` block): ``+OK Success``; the file is created at once (mode 0666 less the
  process umask, as ``mod_sndfile`` creates it; a missing directory is made 0755 less the umask), then RECORD_START
  (the channel's headers and variables, ``Record-File-Path``, then ``Recording-Variable-<name>`` per var). The same
  path again: ``+OK Success`` and nothing else ("Already recording");
* stereo (``RECORD_STEREO=true``, a var or a channel variable): channel 0 is the read stream (what the caller
  sent), channel 1 the write stream (what the caller heard). The record bug sees the frames written to the caller
  after the WRITE_REPLACE bugs attached *before* it have added their audio: a recording started before a streaming
  fork has a silent channel 1 (fixture 10);
* ``stop <path>|all``: RECORD_STOP fires before the reply (``+OK Success``); the variables ``record_file_size``,
  ``record_samples``, ``record_seconds``, ``record_ms`` and ``record_completion_cause`` are set first
  (``success-maxtime`` when stopped, ``success-silence`` at a hang-up); the hang-up removes every recording in
  CS_HANGUP, before CHANNEL_HANGUP_COMPLETE;
* ``mask``/``unmask`` write silence in both channels meanwhile (the file keeps its length); ``pause``/``resume``
  leave those frames out;
* ``RECORD_MIN_SEC`` (default 0) discards a shorter file; an empty one is discarded (``RECORD_DISCARDED=true``).

Unmodelled: encodings other than WAV (a ``.flac``/``.ogg`` path gets WAV data), native recordings (a path without
an extension), ``<limit>``, silence detection, recording a channel without media (refused here).
"""

from __future__ import annotations

import asyncio
import os
import wave
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import unquote

from . import fsstrings
from .media import samples_to_pcm

if TYPE_CHECKING:  # pragma: no cover
    from .channel import SimChannel
    from .server import SimulatedFreeSwitch

USAGE = "-USAGE: <uuid> [start|stop|mask|unmask] <path> [<limit>] [<recording_vars>]\n"


class _Sink(list):  # type: ignore[type-arg]
    """An observer's ``heard_frames`` that keeps nothing (the recording keeps its own frames)."""

    def append(self, item: object) -> None:
        return None


@dataclass
class SimRecording:
    """One recording media bug on a channel."""

    heard_frames = _Sink()

    sim: SimulatedFreeSwitch = field(repr=False)
    ch: SimChannel = field(repr=False)
    path: str
    variables: list[tuple[str, str]]
    stereo: bool
    min_sec: int
    started: float
    writes: list[tuple[float, list[int]]] = field(default_factory=list)  # (loop time, frame) of the write stream
    masks: list[list[float]] = field(default_factory=list)  # [on, off] loop times
    pauses: list[list[float]] = field(default_factory=list)
    attached: bool = True

    def dub(self, frame: list[int], now: float) -> None:
        """A WriteBug that only listens: what the caller hears, as far as the bugs attached before it made it."""
        if self.attached:
            self.writes.append((now, list(frame)))

    def toggle(self, kind: str, on: bool, now: float) -> None:
        spans = self.masks if kind == "mask" else self.pauses
        if on and not (spans and spans[-1][1] == float("inf")):
            spans.append([now, float("inf")])
        elif not on and spans and spans[-1][1] == float("inf"):
            spans[-1][1] = now

    def frames(self, now: float) -> tuple[list[int], list[int], int]:
        """(channel 0, channel 1, frames) from the start to ``now``: paused frames left out, masked ones silent."""
        interval = self.sim.frame_interval
        audio = self.sim.channel_audio(self.ch)
        n = audio.samples_per_frame
        total = int((now - self.started) / interval + 1e-6)
        writes = sorted(self.writes, key=lambda w: w[0])
        left: list[int] = []
        right: list[int] = []
        pos, wi, kept = 0, 0, 0
        for k in range(total):
            t = self.started + k * interval
            caller, pos = audio.read_caller(pos, n)
            heard = [0] * n
            while wi < len(writes) and writes[wi][0] < t + interval:
                if writes[wi][0] >= t:
                    heard = writes[wi][1][:n] + [0] * max(0, n - len(writes[wi][1]))
                wi += 1
            if any(a <= t < b for a, b in self.pauses):
                continue
            if any(a <= t < b for a, b in self.masks):
                caller, heard = [0] * n, [0] * n
            left += caller
            right += heard
            kept += 1
        return left, right, kept

    def write_file(self, now: float) -> int:
        """Write the WAV; returns the samples written (per channel)."""
        left, right, _ = self.frames(now)
        rate = self.ch.rate
        if self.stereo:
            mixed = [s for pair in zip(left, right, strict=True) for s in pair]
        else:
            mixed = [a + b for a, b in zip(left, right, strict=True)]
        # the file exists (created at the start, with its mode): rewrite it in place, as libsndfile does
        with open(self.path, "r+b") as raw:
            raw.truncate(0)
            with wave.open(raw, "wb") as w:
                w.setnchannels(2 if self.stereo else 1)
                w.setsampwidth(2)
                w.setframerate(rate)
                w.writeframes(samples_to_pcm(mixed))
        return len(left)


class Recordings:
    """Mixin of :class:`~simulator.server.SimulatedFreeSwitch`: ``uuid_record`` and the recording bugs."""

    async def api_uuid_record(self: SimulatedFreeSwitch, arg: str, job: object) -> str:
        """``uuid_record <uuid> [start|stop|pause|resume|mask|unmask] <path> [<limit>] [<recording_vars>]``."""
        argv = fsstrings.separate(arg, " ", 5) if arg else []
        if len(argv) < 3 or not all(argv[:3]):
            return USAGE
        uuid, action, path = argv[0], argv[1].lower(), argv[2]
        ch = self._chan(uuid)
        if ch is None:
            return "-ERR Cannot locate session!\n"
        if action == "start":
            return self._record_start(ch, path, argv[4] if len(argv) > 4 else "")
        if action == "stop":
            found = [r for r in ch.recordings if path == "all" or r.path == path]
            if not found:
                return "-ERR Cannot stop record session!\n"
            for r in found:
                self._record_stop(ch, r, "success-maxtime")
            return "+OK Success\n"
        words = {
            "pause": ("pause", True),
            "resume": ("pause", False),
            "mask": ("mask", True),
            "unmask": ("mask", False),
        }
        if action not in words:
            return USAGE
        kind, on = words[action]
        target = next((r for r in ch.recordings if r.path == path), None)
        if target is None:
            return f"-ERR Cannot {action} recording session!\n"
        target.toggle(kind, on, asyncio.get_running_loop().time())
        return "+OK Success\n"

    def _record_start(self: SimulatedFreeSwitch, ch: SimChannel, path: str, raw_vars: str) -> str:
        variables: list[tuple[str, str]] = []
        if raw_vars:
            variables, _ = fsstrings.create_brackets(unquote(raw_vars), "{", "}", ",")
        if any(r.path == path for r in ch.recordings):
            return "+OK Success\n"  # "Already recording [path]" (a warning in the log)
        if not ch.answered or "." not in path.rsplit("/", 1)[-1] or not path.startswith("/"):
            return "-ERR Cannot record session!\n"

        def var(name: str) -> str | None:
            for k, v in variables:
                if k == name:
                    return v
            return ch.getvar(name)

        try:
            os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666))
        except OSError:
            return "-ERR Cannot record session!\n"
        audio = self.channel_audio(ch)
        r = SimRecording(
            self,
            ch,
            path,
            variables,
            stereo=fsstrings.switch_true(var("RECORD_STEREO")),
            min_sec=max(0, int(var("RECORD_MIN_SEC") or 0)) if (var("RECORD_MIN_SEC") or "0").isdigit() else 0,
            started=asyncio.get_running_loop().time(),
        )
        ch.recordings.append(r)
        audio.bugs.append(r)
        audio.observers.append(r)
        audio.kick()
        post = [("Record-File-Path", path)] + [(f"Recording-Variable-{k}", v) for k, v in variables]
        ch.fire("RECORD_START", post=post)
        return "+OK Success\n"

    def _record_stop(self: SimulatedFreeSwitch, ch: SimChannel, r: SimRecording, cause: str) -> None:
        r.attached = False
        audio = ch.audio
        if audio is not None:
            for group in (audio.bugs, audio.observers):
                if r in group:
                    group.remove(r)
        if r in ch.recordings:
            ch.recordings.remove(r)
        now = asyncio.get_running_loop().time()
        samples = r.write_file(now)
        size = os.path.getsize(r.path)
        rate = ch.rate
        pairs = [("record_file_size", str(size))]
        discarded = samples == 0 or samples < rate * r.min_sec
        if discarded:
            os.unlink(r.path)
            cause = "empty-file" if samples == 0 else "input-too-short"
            ch.setvar("RECORD_DISCARDED", "true")
        pairs += [
            ("record_samples", str(samples)),
            ("record_seconds", str(samples // rate)),
            ("record_ms", str(samples // (rate // 1000))),
            ("record_completion_cause", cause),
        ]
        ch.setvars(pairs)
        post = [("Record-File-Path", r.path)] + [(f"Recording-Variable-{k}", v) for k, v in r.variables]
        post.append(("Record-Completion-Cause", cause))
        ch.fire("RECORD_STOP", post=post)

    def _drop_recordings(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """Hangup (CS_HANGUP): every recording bug is removed."""
        for r in list(ch.recordings):
            self._record_stop(ch, r, "success-silence")
