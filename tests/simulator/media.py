"""Channel audio of the simulator: what the caller says, what FreeSWITCH writes to the caller, file playback.

Modelled on FreeSWITCH 1.10.12 (fixture 10, ``rtp-analysis.txt``; switch_ivr.c / switch_ivr_play_say.c v1.10.12):

* a channel writes a 20 ms frame (RTP to the caller) only while something WRITES: the park loop, when
  ``send_silence_when_idle`` held a non-zero integer at the moment that park loop first had media (park of an answered
  channel, or the answer of a parked one -- ``switch_ivr_park`` reads it once per park), or a playback started by
  ``uuid_broadcast``. Otherwise nothing is sent and nothing is heard;
* every written frame passes the channel's WRITE_REPLACE media bugs (streaming forks), which add their audio; the
  result is what the caller hears: :attr:`ChannelAudio.heard_frames`, ``[(loop.time(), L16 at the leg rate)]``;
* ``uuid_broadcast <uuid> <path>``: 5 lead frames (100 ms) are read first, then CHANNEL_EXECUTE(playback),
  PLAYBACK_START, the file 20 ms per frame, PLAYBACK_STOP (``Playback-Status: done|break``) and
  CHANNEL_EXECUTE_COMPLETE (``FILE PLAYED``). CF_BREAK (``uuid_break``, a fork's ``killAudio``) ends the current
  playback at the next frame (one last silent frame is written, as recorded); ``uuid_break <uuid> all`` also drops the
  queued broadcasts. Playable: ``silence_stream://<ms>`` (-1 = endless), files a fork's ``playAudio`` wrote
  (``sim.files``), ``.r8``/``.r16``/... raw L16 and 16-bit mono ``.wav`` files on disk.

The frame clock only runs while something writes AND someone observes (a fork is attached or a playback runs), so
idle calls cost nothing. Unmodelled: PRIVATE_COMMAND of the broadcast, the playback of a call that hangs up mid-file
(it just stops), codecs (samples are L16 at the leg's codec rate).
"""

from __future__ import annotations

import asyncio
import io
import math
import re
import sys
import wave
from array import array
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover
    from .channel import SimChannel
    from .server import SimulatedFreeSwitch

_BIG_ENDIAN = sys.byteorder == "big"
_RAW_RATE = re.compile(r"\.r(8|16|24|32|48|64)$")


def pcm_to_samples(data: bytes) -> array:
    """Little-endian L16 bytes -> int16 samples (an odd trailing byte is ignored)."""
    a = array("h")
    a.frombytes(data[: len(data) // 2 * 2])
    if _BIG_ENDIAN:  # pragma: no cover
        a.byteswap()
    return a


def samples_to_pcm(samples: Sequence[int]) -> bytes:
    """int samples -> little-endian L16 bytes, clipped to int16 (like FreeSWITCH's vector_normalize)."""
    a = array("h", [32767 if s > 32767 else -32768 if s < -32768 else s for s in samples])
    if _BIG_ENDIAN:  # pragma: no cover
        a.byteswap()
    return a.tobytes()


class Resampler:
    """A stateful resampler standing in for speex: box average for integer down-sampling ratios (16k -> 8k), linear
    interpolation otherwise. Chunks can be fed one after the other without clicks or drift."""

    def __init__(self, src: int, dst: int):
        self.src, self.dst = src, dst
        self.ratio = src // dst if src > dst and src % dst == 0 else 0
        self.rest: list[int] = []
        self.pos = 0  # next output position, in 1/dst input samples from the start of the next chunk
        self.last = 0

    def process(self, x: Sequence[int]) -> list[int]:
        """Resample one chunk."""
        if self.src == self.dst:
            return list(x)
        if self.ratio:
            r = self.ratio
            buf = self.rest + list(x) if self.rest else list(x)
            n = len(buf) // r * r
            self.rest = buf[n:]
            return [(sum(buf[i : i + r]) + r // 2) // r for i in range(0, n, r)]
        out: list[int] = []
        n, pos, dst, last = len(x), self.pos, self.dst, self.last
        while True:
            i, f = divmod(pos, dst)
            if i >= n:
                break
            a = x[i] if i >= 0 else last
            if f:
                if i + 1 >= n:
                    break
                a = round(a + (x[i + 1] - a) * f / dst)
            out.append(a)
            pos += self.src
        self.pos = pos - n * dst
        if n:
            self.last = x[-1]
        return out


class WriteBug(Protocol):
    """A WRITE_REPLACE media bug: sees every frame written to the caller and may add audio to it."""

    def dub(self, frame: list[int], now: float) -> None:
        """Mix this bug's audio into ``frame`` (samples at the leg rate, in place); ``now``: the frame's time."""


@dataclass
class Playback:
    """One ``uuid_broadcast`` playback."""

    path: str
    samples: array | None  # None: silence
    total: int | None  # samples; None = endless
    ready_at: float = 0.0
    pos: int = 0
    app_uuid: str = ""
    broken: bool = False
    started: bool = False


@dataclass
class ChannelAudio:
    """The audio of one channel (``ch.audio``): the caller's speech, the frames written to the caller, playback."""

    sim: SimulatedFreeSwitch = field(repr=False)
    ch: SimChannel = field(repr=False)
    #: what the caller heard: (loop.time() of the frame, L16 at the leg rate), one entry per written 20 ms frame
    heard_frames: list[tuple[float, bytes]] = field(default_factory=list)
    caller: array = field(default_factory=lambda: array("h"))
    caller_loop: bool = False
    caller_version: int = 0
    queue: deque[Playback] = field(default_factory=deque)
    current: Playback | None = None
    bugs: list[WriteBug] = field(default_factory=list)  # WRITE_REPLACE bugs, in attach order
    observers: list[Any] = field(default_factory=list)  # fork clients recording what is heard
    _task: asyncio.Task[Any] | None = None
    _timer: asyncio.TimerHandle | None = None

    @property
    def rate(self) -> int:
        """The leg's codec rate."""
        return self.ch.rate

    @property
    def samples_per_frame(self) -> int:
        """Samples in one 20 ms frame at the leg rate."""
        return self.rate * 20 // 1000

    def heard_pcm(self) -> bytes:
        """Everything heard so far, concatenated (L16 at the leg rate)."""
        return b"".join(data for _, data in self.heard_frames)

    # -- the caller ---------------------------------------------------------------------------------------
    def set_caller(self, pcm: bytes, loop: bool) -> None:
        """What the caller says from now on (L16 at the leg rate); forks start reading it at their next frame."""
        self.caller = pcm_to_samples(pcm)
        self.caller_loop = loop
        self.caller_version += 1

    def read_caller(self, pos: int, n: int) -> tuple[list[int], int]:
        """``n`` samples of the caller's speech from ``pos`` (silence when exhausted); returns (samples, new pos)."""
        src = self.caller
        if not src:
            return [0] * n, pos + n
        if self.caller_loop:
            out: list[int] = []
            while len(out) < n:
                p = pos % len(src)
                take = min(n - len(out), len(src) - p)
                out.extend(src[p : p + take])
                pos += take
            return out, pos
        chunk = list(src[pos : pos + n])
        return chunk + [0] * (n - len(chunk)), pos + n

    # -- the frame clock ------------------------------------------------------------------------------
    def park_writes(self) -> bool:
        """Whether the park loop writes silence frames (``send_silence_when_idle``)."""
        ch = self.ch
        return ch.parked and ch.park_sval != 0

    def writing(self) -> bool:
        """Whether something writes frames to the caller now."""
        return self.ch.alive and (self.current is not None or self.park_writes() or self._next_ready() is not None)

    def kick(self) -> None:
        """(Re)start the frame clock if something writes and someone listens."""
        if self._task is not None or not self.ch.alive:
            return
        if not (self.observers or self.current or self.queue):
            return
        if self.writing():
            self._task = self.sim.spawn(self._run())
        elif self.queue and self._timer is None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(max(loop.time(), self.queue[0].ready_at), self._timer_fired)

    def close(self) -> None:
        """Forget queued playbacks and timers (the simulator stops)."""
        self.queue.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timer_fired(self) -> None:
        self._timer = None
        self.kick()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.sim.frame_interval
        start, n = loop.time(), 0
        try:
            while self.ch.alive and self._tick(loop.time()):
                n += 1
                await asyncio.sleep(max(0.0, start + n * interval - loop.time()))
        finally:
            self._task = None
        if self.queue and self.ch.alive:
            self.kick()  # a broadcast still in its lead frames

    def _next_ready(self) -> Playback | None:
        if self.queue and self.queue[0].ready_at <= asyncio.get_running_loop().time():
            return self.queue[0]
        return None

    def _tick(self, now: float) -> bool:
        """Write one frame, if anything writes; returns False when nothing does."""
        frame = self._base_frame()
        if frame is None:
            return False
        for bug in list(self.bugs):
            bug.dub(frame, now)
        data = samples_to_pcm(frame)
        self.heard_frames.append((now, data))
        for obs in self.observers:
            obs.heard_frames.append((now, data))
        return True

    def _base_frame(self) -> list[int] | None:
        n = self.samples_per_frame
        pb = self.current
        while pb is None and self._next_ready() is not None:
            pb = self._start(self.queue.popleft())
        if pb is not None:
            if pb.broken:  # CF_BREAK seen at the top of the playback loop: one last (silent) frame
                self._finish(pb, "break")
                return [0] * n
            if pb.samples is None:
                frame = [0] * n
            else:
                frame = list(pb.samples[pb.pos : pb.pos + n])
                frame += [0] * (n - len(frame))
            pb.pos += n
            if pb.total is not None and pb.pos >= pb.total:
                self._finish(pb, "done")
            return frame
        if self.park_writes():
            return [0] * n
        return None

    # -- playback ---------------------------------------------------------------------------------------
    def broadcast(self, path: str) -> None:
        """Queue a ``uuid_broadcast`` playback (it starts after the lead frames)."""
        samples, total = load_audio(self.sim, path, self.rate)
        ready = asyncio.get_running_loop().time() + self.sim.broadcast_lead_frames * self.sim.frame_interval
        self.queue.append(Playback(path, samples, total, ready_at=ready))
        self.kick()

    def set_break(self, all_: bool = False) -> None:
        """CF_BREAK: the current playback ends at its next frame; ``all_`` also drops the queued ones."""
        if all_:
            self.queue.clear()
        if self.current is not None:
            self.current.broken = True

    def _start(self, pb: Playback) -> Playback | None:
        ch = self.ch
        self.current = pb
        pb.app_uuid = ch.execute("playback", pb.path)
        pb.started = True
        if pb.total == -1:  # not found: no PLAYBACK_START/STOP
            self._finish(pb, "missing")
            return None
        ch.fire("PLAYBACK_START", post=[("Playback-File-Path", pb.path)])
        return pb

    def _finish(self, pb: Playback, how: str) -> None:
        ch = self.ch
        self.current = None
        if how != "missing":
            played = min(pb.pos, pb.total) if pb.total is not None else pb.pos
            ms = played * 1000 // self.rate
            ch.setvars(
                [
                    ("playback_last_offset_pos", str(played)),
                    ("playback_seconds", str(ms // 1000)),
                    ("playback_ms", str(ms)),
                    ("playback_samples", str(played)),
                ]
            )
            status = "break" if how == "break" else "done"
            ch.fire("PLAYBACK_STOP", post=[("Playback-File-Path", pb.path), ("Playback-Status", status)])
        response = "FILE NOT FOUND" if how == "missing" else "FILE PLAYED"
        ch.setvar("current_application_response", response)
        ch.execute_complete("playback", pb.path, response=response, app_uuid=pb.app_uuid)


#: libteletone's DTMF map (libteletone_generate.c teletone_init_session: its row of 7 8 9 C is at 859 Hz, not 852)
_DTMF_FREQS = {
    "1": (697.0, 1209.0), "2": (697.0, 1336.0), "3": (697.0, 1477.0), "A": (697.0, 1633.0),
    "4": (770.0, 1209.0), "5": (770.0, 1336.0), "6": (770.0, 1477.0), "B": (770.0, 1633.0),
    "7": (859.0, 1209.0), "8": (859.0, 1336.0), "9": (859.0, 1477.0), "C": (859.0, 1633.0),
    "*": (941.0, 1209.0), "0": (941.0, 1336.0), "#": (941.0, 1477.0), "D": (941.0, 1633.0),
}  # fmt: skip


def _tone(freqs: Sequence[float], on_ms: int, off_ms: int, rate: int) -> array:
    """``on_ms`` of the summed sines (each at about -10 dBFS), then ``off_ms`` of silence."""
    n = on_ms * rate // 1000
    amp = 0.3 * 32767 / max(1, len(freqs))
    out = array("h", (int(amp * sum(math.sin(2 * math.pi * f * i / rate) for f in freqs)) for i in range(n)))
    out.extend(array("h", bytes(2 * (off_ms * rate // 1000))))
    return out


def teletone(script: str, rate: int) -> array | None:
    """What ``tone_stream://<script>`` plays, for the part of libteletone's script language the project uses:
    ``d=<ms>`` and ``w=<ms>`` (the duration and the gap of each key), ``v=``/``L=``/``l=`` (volume and loops:
    ignored), ``%(on,off,f1[,f2…])`` tones and runs of keys (0-9 * # A-D, DTMF). None for anything else."""
    duration, wait = 200, 0
    out = array("h")
    for segment in script.split(";"):
        segment = segment.strip()
        if not segment:
            continue
        if segment[:2] in ("d=", "w=", "v=", "L=", "l=", "c=", "r=", ">=", "<=", "+="):
            value = segment[2:]
            if segment[0] in "dw":
                if not value.isdigit():
                    return None
                duration, wait = (int(value), wait) if segment[0] == "d" else (duration, int(value))
            continue
        for m in re.finditer(r"%\(([^)]*)\)|([0-9*#A-D])|(.)", segment):
            if m.group(1) is not None:
                parts = m.group(1).split(",")
                try:
                    on, off, freqs = int(parts[0]), int(parts[1]), [float(f) for f in parts[2:]]
                except (ValueError, IndexError):
                    return None
                out.extend(_tone(freqs, on, off, rate))
            elif m.group(2) is not None:
                out.extend(_tone(_DTMF_FREQS[m.group(2)], duration, wait, rate))
            else:
                return None
    return out


def load_audio(sim: SimulatedFreeSwitch, path: str, rate: int) -> tuple[array | None, int | None]:
    """Samples at ``rate`` and their count for a playable path; ``(None, -1)`` when it cannot be found.

    ``file_string://a!b!…`` plays its parts in turn, ``tone_stream://`` through :func:`teletone`."""
    if path.startswith("file_string://"):
        joined = array("h")
        for part in path[len("file_string://") :].split("!"):
            samples, count = load_audio(sim, part, rate)
            if count is None or count < 0:
                return None, -1
            joined.extend(samples if samples is not None else array("h", bytes(2 * count)))
        return joined, len(joined)
    if path.startswith("tone_stream://"):
        tones = teletone(path[len("tone_stream://") :], rate)
        return (None, -1) if tones is None else (tones, len(tones))
    if path.startswith("silence_stream://"):
        spec = path[len("silence_stream://") :].split(",")[0]
        try:
            ms = int(spec)
        except ValueError:
            ms = 0
        return None, (None if ms < 0 else ms * rate // 1000)
    data = sim.files.get(path)
    if data is None:
        try:
            data = Path(path).read_bytes()
        except OSError:
            return None, -1
    m = _RAW_RATE.search(path)
    if m:
        src, samples = int(m.group(1)) * 1000, pcm_to_samples(data)
    elif path.endswith(".wav"):
        try:
            with wave.open(io.BytesIO(data)) as w:
                if w.getsampwidth() != 2 or w.getnchannels() != 1:
                    return None, -1
                src, samples = w.getframerate(), pcm_to_samples(w.readframes(w.getnframes()))
        except (wave.Error, EOFError):
            return None, -1
    else:
        return None, -1
    out = array("h", Resampler(src, rate).process(samples)) if src != rate else samples
    return out, len(out)
