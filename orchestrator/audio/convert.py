"""Audio conversion, sans-I/O: resampling and G.711 per call, one frame at a time.

A :class:`Converter` turns a stream of frames from one rate/encoding into another. It keeps its
state between calls (resampler history, an odd trailing byte of L16), so frames fed one by one
join without clicks and give the same samples as converting the whole stream at once.

Encodings: ``l16`` (signed 16-bit little-endian mono), ``ulaw`` and ``alaw`` (G.711, one byte a
sample). Rates: 8000, 16000, 22050, 24000, 44100, 48000.

Resampling between 8, 16, 24 and 48 kHz (a call's 8 or 16 kHz and the agent formats' usual rates) is
:class:`orchestrator.audio.resample.Resampler`, a polyphase FIR filter: pass band flat to 0.85 × the lower
Nyquist frequency (3.4 kHz at 8 kHz), stop band from that Nyquist frequency on, measured ≥ 90 dB; a fixed
delay of 4.8 ms for ratios with 8 kHz (2.4 ms for 16↔24/48 kHz, 1.6 ms for 24↔48 kHz), every output sample
returned in the call that completes it; 6-15 µs per 20 ms frame, libsoxr VR 10-78 µs (its module docstring has
the design and the measurements; ``bench/audio.py`` the comparison).

To and from 22050 and 44100 Hz it is libsoxr (``soxr.ResampleStream``, int16) in its **variable-rate
mode** (``vr=True``), chosen for latency; ``engine="soxr"`` uses it for every ratio (the reference the
benchmark compares against). Measured on 20 ms frames, the constant-rate presets buffer internally and
release output in bursts: MQ/HQ add 64 ms on average (up to 117 ms) for 8 kHz⇄16 kHz, LQ 32 ms and loses
8 dB at 3.4 kHz, QQ adds nothing but does not filter at all (a 5 kHz tone aliases to 3 kHz at full level).
The variable-rate engine returns every frame's worth of output at once with a fixed delay (15 ms for 16→8
kHz, 30 ms for 8→16 kHz, 10 ms for 24→16 kHz; 11-15 ms between 22.05/44.1 and 16 kHz, 27-30 ms with 8 kHz),
a pass band flat almost to the Nyquist frequency and aliases and images 101-109 dB down — except for tones
within ~1.5 % above the output's Nyquist frequency, which alias just below it (27 dB down at 1.005 ×) — for
9-68 µs a frame (measured in ``bench/audio.py``). It needs a python-soxr with ``vr`` (1.1 tested; 0.5.x
lacks it).

μ-law/A-law use the stdlib ``audioop`` (the ``audioop-lts`` package on Python ≥ 3.13).
L16 is taken as native int16, which is little-endian on every platform we run on.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import soxr

from orchestrator.audio.resample import Resampler, supports

with warnings.catch_warnings():  # deprecated in 3.11/3.12; audioop-lts provides it from 3.13
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

ENCODINGS = ("l16", "ulaw", "alaw")
RATES = (8000, 16000, 22050, 24000, 44100, 48000)


def rms(pcm: bytes) -> float:
    """The RMS of L16 samples (an odd trailing byte ignored; 0 for no samples)."""
    return float(audioop.rms(pcm[: len(pcm) // 2 * 2], 2)) if len(pcm) >= 2 else 0.0


def parse_format(name: str) -> tuple[str, int]:
    """An agent audio format name (``pcm_16000``, ``ulaw_8000``, ``alaw_8000``) → (encoding, rate)."""
    kind, _, rate_text = name.partition("_")
    encoding = {"pcm": "l16", "ulaw": "ulaw", "alaw": "alaw"}.get(kind)
    rate = int(rate_text) if rate_text.isdigit() else 0
    if encoding is None or rate not in RATES or (encoding != "l16" and rate != 8000):
        raise ValueError(f"unsupported audio format '{name}'")
    return encoding, rate


class Converter:
    """Convert a stream of audio frames between rates and encodings (one instance per direction per call).

    ``engine``: ``auto`` (the polyphase resampler where it applies, libsoxr otherwise) or ``soxr`` (libsoxr
    for every ratio)."""

    __slots__ = (
        "_carry",
        "_decode",
        "_encode",
        "_passthrough",
        "_resampler",
        "_stream",
        "dst_encoding",
        "dst_rate",
        "src_encoding",
        "src_rate",
    )

    def __init__(
        self,
        src_rate: int,
        dst_rate: int,
        src_encoding: str = "l16",
        dst_encoding: str = "l16",
        *,
        engine: Literal["auto", "soxr"] = "auto",
    ) -> None:
        for rate in (src_rate, dst_rate):
            if rate not in RATES:
                raise ValueError(f"unsupported sample rate {rate}: use one of {', '.join(map(str, RATES))}")
        for encoding in (src_encoding, dst_encoding):
            if encoding not in ENCODINGS:
                raise ValueError(f"unsupported encoding '{encoding}': use one of {', '.join(ENCODINGS)}")
        if engine not in ("auto", "soxr"):
            raise ValueError(f"unknown resampling engine '{engine}': use auto or soxr")
        self.src_rate, self.dst_rate = src_rate, dst_rate
        self.src_encoding, self.dst_encoding = src_encoding, dst_encoding
        identity = src_rate == dst_rate and src_encoding == dst_encoding
        #: G.711 → same G.711: nothing to do, ever (no partial samples in a one-byte encoding)
        self._passthrough = identity and src_encoding != "l16"
        self._decode = {"ulaw": audioop.ulaw2lin, "alaw": audioop.alaw2lin}.get(src_encoding)
        self._encode = {"ulaw": audioop.lin2ulaw, "alaw": audioop.lin2alaw}.get(dst_encoding)
        self._carry = b""  # odd trailing byte of L16 input, completed by the next call
        self._resampler: Resampler | None = None
        self._stream: soxr.ResampleStream | None = None
        if src_rate != dst_rate and engine == "auto" and supports(src_rate, dst_rate):
            self._resampler = Resampler(src_rate, dst_rate)
        self.reset()

    def reset(self) -> None:
        """Forget the stream so far (e.g. after a barge-in flushed it): history and any partial sample."""
        self._carry = b""
        if self._resampler is not None:
            self._resampler.reset()
        elif self.src_rate != self.dst_rate:
            # a fresh stream, not clear(): clear() does not fully reset the variable-rate engine
            self._stream = soxr.ResampleStream(self.src_rate, self.dst_rate, 1, dtype="int16", vr=True)

    def convert(self, data: bytes) -> bytes:
        """Convert the next piece of the stream (any length). Same format in and out: returns ``data`` itself."""
        if self._passthrough:
            return data
        if self._decode is not None:
            data = self._decode(data, 2)
        else:  # L16: complete a sample split across calls
            if self._carry:
                data = self._carry + data
                self._carry = b""
            if len(data) & 1:
                self._carry = data[-1:]
                data = data[:-1]
        if self._resampler is not None:
            data = self._resampler.resample(data)
        elif self._stream is not None and data:
            data = self._stream.resample_chunk(np.frombuffer(data, dtype=np.int16)).tobytes()
        if self._encode is not None:
            data = self._encode(data, 2)
        return data
