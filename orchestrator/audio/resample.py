"""Streaming polyphase FIR resampler for the simple ratios telephony uses, sans-I/O (numpy only).

:class:`Resampler` converts L16 between any two of 8, 16, 24 and 48 kHz (ratios ``up``/``down`` of 2, 3, 3/2
and 6 either way), one piece of the stream per call, and keeps its history between calls: feeding frames one
by one gives, bit for bit, the samples of feeding the whole stream at once, whatever the pieces' lengths, and
every output sample comes out in the call that completes its input (after ``J`` input samples,
``⌈J·dst/src⌉`` output samples) — no buffering beyond the filter's own constant delay.

**Filter** (designed once per ratio per process, cached): a Kaiser-windowed sinc at ``up`` × the input rate,
pass band flat (±0.0003 dB) to 0.85 × the lower Nyquist frequency (3.4 kHz when 8 kHz is involved, 6.8 kHz
for 16↔24/48 kHz), stop band from the lower Nyquist frequency itself, so nothing above it aliases (down) or
images (up) back in. Kaiser's formula estimates the length; taps are added until the designed filter
*measures* ≥ 90 dB over the whole stop band (90.0-90.5 dB). ``python bench/audio.py`` sweeps tones over the
input band through the stream and finds the worst alias or image 90-93 dB below a same-level pass-band tone
(96-101 dB for tones outside the 0.85-1.15 guard band around the Nyquist frequency). The delay is the
linear-phase filter's half length: 4.8 ms for ratios involving 8 kHz, 2.4 ms for 16↔24/48 kHz, 1.6 ms for
24↔48 kHz (libsoxr's variable-rate stream: 15 ms for 16→8 kHz, 30 ms for 8→16 kHz, 10 ms for 24→16 kHz).

**Tap count** (``bench/audio.py --scan``, 16→8 kHz; 8→16 and 48→8 kHz alike): the cost hardly moves with
the taps — per-call overhead dominates, the product is a third of a call — so the choice is delay against
attenuation, about 0.6 ms per 10 dB: 60 dB = 101 taps, 3.1 ms; 70 dB = 130, 4.0 ms; 80 dB = 147, 4.6 ms;
**90 dB = 155 taps, 4.8 ms**; 100 dB = 173, 5.4 ms, at 5.6-6.9 µs a frame with no trend beyond this
machine's timing noise (48→8 kHz: 292-514 taps, 9.1-10.3 µs). 90 dB puts the worst alias of a −0.8 dBFS tone
at about one LSB, int16's own rounding level; more buys nothing an int16 stream can carry (and far more than
G.711's ~38 dB SNR needs).

**Computation**, vectorised per call: ``matrix`` holds ``BLOCKS`` (16) groups of ``up`` outputs (a *row*)
over the ``width`` input samples they read; a call copies its rows' input windows (overlapping strided views
of the int16 history buffer) into float64 rows and takes one matrix product (BLAS ``dgemm``), then rounds
(half to even), saturates and converts — about ten numpy calls whatever the length, none per sample. The
taps are quantised to multiples of 2⁻³⁶ so that every product with an int16 sample and every partial sum is
an exactly representable float64: the result cannot depend on how BLAS blocks or orders the sums, which is
what makes any chunking give the same samples. float32 was no faster for 8↔16 kHz (16→8: 4.9 µs a frame
against float64's 5.0, 8→16: 7.2 against 6.1), faster only where the product is large (48→8 kHz: 6.6
against 9.7 µs), and not exact: 14-36 samples of 2 s of noise differed by one LSB between chunkings. A
20 ms frame after whole frames (the steady case) takes a path with its views made at construction. Pieces
are processed in steps of at most 80 ms (less where ``m·n·k`` would exceed 2¹⁸, where OpenBLAS would start
sharing the product between threads). The float64 rows and products are scratch shared per ratio by the
streams of a thread (40-140 KB each); a stream holds its int16 history (1-6.5 KB): about 5-10 KB per
stream measured, libsoxr's variable-rate stream 17-31 KB.

**Cost** (``bench/audio.py``: both engines in one run, a stream each fed 20 ms frames, median of rounds;
this 2-core machine was shared, absolute µs drift ±30 % between runs): 6-15 µs a frame against libsoxr
VR's 10-78 µs — 1.6× faster for 16→8 kHz (libsoxr's cheapest), 2.0× for 8→16 kHz, 2.4-5.7× for the
ratios with 24 or 48 kHz; a call's whole conversion both ways 1.8× cheaper (8 kHz call ⇄ ``pcm_16000``:
17 against 32 µs a frame; 16 kHz call ⇄ ``ulaw_8000``: 14 against 25 µs). A second of audio in one call:
150-350 µs (libsoxr 350-1300 µs).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import NDArray

#: the rates this resampler converts between (any two different ones); 22050 and 44100 Hz stay with libsoxr
RATES = (8000, 16000, 24000, 48000)
#: the pass band is flat up to this fraction of the lower of the two Nyquist frequencies (3.4 kHz of 4 kHz)
PASS_BAND = 0.85
#: the stop band starts at the lower Nyquist frequency itself: nothing above it aliases or images back in
STOP_BAND = 1.0
#: stop-band attenuation the taps are chosen for (measured on the designed filter, not just Kaiser's estimate)
ATTENUATION_DB = 90.0
#: groups of ``up`` outputs per row of the matrix product (16 measured best, 8-20 within noise; divides 160)
BLOCKS = 16

_L16 = np.dtype("<i2")
_SINGLE_THREAD = 1 << 18  # OpenBLAS's dgemm stays on one thread up to m·n·k = 65536 × 4
_EXACT_BITS = 52  # |every partial sum| < 2**52 units of the taps' last bit: float64 adds them exactly


def supports(src_rate: int, dst_rate: int) -> bool:
    """Whether :class:`Resampler` handles this pair of rates (two different rates of :data:`RATES`)."""
    return src_rate != dst_rate and src_rate in RATES and dst_rate in RATES


@dataclass(frozen=True, slots=True, eq=False)
class Filter:
    """One ratio's low-pass and its computation layout, designed once per process and shared by every stream.

    The prototype ``taps`` run at ``up`` × the input rate (DC gain ``up``, symmetric); output ``n`` is the dot
    product of every ``up``-th tap from ``n·down mod up`` on with the input ending at sample ``⌊n·down/up⌋``.
    ``matrix`` computes one *row* of ``blocks`` × ``up`` outputs from ``width`` input samples, each row's input
    starting ``row_in`` (``blocks`` × ``down``) samples after the previous one's: a call's output is one matrix
    product of its rows of input with ``matrix``.
    """

    up: int
    down: int
    taps: NDArray[np.float64]
    phase_taps: int
    stopband_db: float  # measured: the largest response at and above the stop-band edge, in dB (negative)
    passband_db: float  # measured: the largest deviation from 0 dB up to the pass-band edge
    blocks: int
    row_in: int
    row_out: int
    width: int
    matrix: NDArray[np.float64]

    @property
    def delay_taps(self) -> float:
        """The group delay in samples of ``up`` × the input rate."""
        return (len(self.taps) - 1) / 2


_FILTERS: dict[tuple[int, int, float, int], Filter] = {}


def kaiser_beta(attenuation_db: float) -> float:
    """Kaiser's window parameter for a stop band ``attenuation_db`` down (Kaiser 1974)."""
    a = attenuation_db
    if a > 50:
        return 0.1102 * (a - 8.7)
    if a >= 21:
        return 0.5842 * math.pow(a - 21, 0.4) + 0.07886 * (a - 21)
    return 0.0


def _lowpass(n: int, cutoff: float, beta: float, gain: int) -> NDArray[np.float64]:
    t = np.arange(n) - (n - 1) / 2
    taps: NDArray[np.float64] = np.sinc(2 * cutoff * t) * np.kaiser(n, beta)
    taps *= gain / float(taps.sum())
    return taps


def _response_db(taps: NDArray[np.float64], gain: int, f_pass: float, f_stop: float) -> tuple[float, float]:
    """(largest stop-band response, largest pass-band deviation) in dB, frequencies in cycles per sample."""
    size = 1 << (32 * len(taps)).bit_length()  # 32-64 points per side lobe: the peaks within 0.05 dB
    h = np.abs(np.fft.rfft(taps / gain, size))
    f = np.arange(len(h)) / size
    stop = 20 * math.log10(float(h[f >= f_stop].max()))
    passband = 20 * np.log10(h[f <= f_pass])
    return stop, float(np.abs(passband).max())


def design(src_rate: int, dst_rate: int, attenuation_db: float = ATTENUATION_DB, blocks: int = BLOCKS) -> Filter:
    """The filter for ``src_rate`` → ``dst_rate`` (cached per ratio): Kaiser-windowed sinc, band edges from
    :data:`PASS_BAND` and :data:`STOP_BAND`, the fewest taps whose measured stop band reaches ``attenuation_db``."""
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    key = (up, down, attenuation_db, blocks)
    cached = _FILTERS.get(key)
    if cached is not None:
        return cached
    # frequencies in cycles per prototype sample (the prototype runs at up × the input rate)
    nyquist = 0.5 / max(up, down)
    f_pass, f_stop = PASS_BAND * nyquist, STOP_BAND * nyquist
    cutoff, beta = (f_pass + f_stop) / 2, kaiser_beta(attenuation_db)
    estimate = math.ceil((attenuation_db - 7.95) / (2.285 * 2 * math.pi * (f_stop - f_pass))) + 1
    phase_taps = -(-estimate // up)
    for _ in range(phase_taps):  # Kaiser's estimate is a dB or two off: add taps until the filter measures up
        taps = _lowpass(phase_taps * up, cutoff, beta, up)
        stop, ripple = _response_db(taps, up, f_pass, f_stop)
        if stop <= -attenuation_db:
            break
        phase_taps += 1
    else:
        raise ValueError(f"no {attenuation_db} dB stop band within {phase_taps * up} taps")

    row_in, row_out = blocks * down, blocks * up
    width = (blocks - 1) * down + (up - 1) * down // up + phase_taps
    matrix = np.zeros((width, row_out))
    for c in range(row_out):
        block, r = divmod(c, up)
        newest = block * down + r * down // up + phase_taps - 1  # the window position of its newest sample
        # taps[phase + i·up] multiplies the input sample i before the newest
        matrix[newest - phase_taps + 1 : newest + 1, c] = taps[r * down % up :: up][::-1]
    # integer multiples of 2**-shift: every product with an int16 sample and every partial sum of a column is
    # exact in float64, so the result does not depend on how BLAS splits or orders the sums (nor on chunking)
    column_sum = float(np.abs(matrix).sum(axis=0).max())
    shift = _EXACT_BITS - 15 - math.ceil(math.log2(column_sum))
    matrix = np.round(matrix * 2.0**shift) * 2.0**-shift
    matrix.setflags(write=False)
    taps.setflags(write=False)
    made = Filter(up, down, taps, phase_taps, stop, ripple, blocks, row_in, row_out, width, matrix)
    _FILTERS[key] = made
    return made


class _Scratch:
    """A filter's float64 rows and products, shared by the streams of one thread (their calls never overlap)."""

    __slots__ = ("rows", "yflat")

    def __init__(self, f: Filter, count: int) -> None:
        z = np.empty((count, f.width))
        y = np.empty((count, f.row_out))
        self.yflat = y.reshape(-1)
        self.rows = [(z[:n], y[:n]) for n in range(count + 1)]


class _Local(threading.local):
    def __init__(self) -> None:
        self.scratch: dict[Filter, _Scratch] = {}


_LOCAL = _Local()


class Resampler:
    """Resample a stream of L16 samples between two :data:`RATES`, one call per piece (any length).

    Feeding the stream in pieces gives exactly the samples of feeding it at once; the output is the input
    delayed by :attr:`delay` seconds (the first outputs are the filter's ramp-up from silence) and, after ``J``
    input samples, ``⌈J·dst/src⌉`` output samples have been returned. Rounded to the nearest integer (ties
    to even) and saturated to int16.
    """

    __slots__ = (
        "_buffer",
        "_bytes",
        "_count",
        "_fill",
        "_filter",
        "_frame",
        "_geometry",
        "_high",
        "_lag",
        "_low",
        "_matrix",
        "_pending",
        "_windows",
        "dst_rate",
        "src_rate",
    )

    def __init__(
        self, src_rate: int, dst_rate: int, *, attenuation_db: float = ATTENUATION_DB, blocks: int = BLOCKS
    ) -> None:
        if not supports(src_rate, dst_rate):
            raise ValueError(f"no polyphase resampler for {src_rate} → {dst_rate} Hz")
        self.src_rate, self.dst_rate = src_rate, dst_rate
        f = self._filter = design(src_rate, dst_rate, attenuation_db, blocks)
        self._matrix = f.matrix
        self._lag = lag = f.phase_taps - 1
        # a call's input is processed in steps of at most `chunk` samples: 80 ms, or less where the product
        # would be large enough for OpenBLAS to share it between threads (m·n·k > 2**18: slower here, and a
        # server's other cores are busy); each step's rows fit in `count` (< row_in samples are left over)
        frame = src_rate // 50
        rows = max(frame // f.row_in, min(4 * frame // f.row_in, _SINGLE_THREAD // (f.width * f.row_out) - 4))
        chunk = rows * f.row_in
        self._count = count = chunk // f.row_in + 4
        self._geometry = (f.row_in, f.row_out, lag, f.up, f.down, 2 * chunk)
        # the input from the first row still owed outputs on, always at the front: history, then the new
        # piece; int16 (the copy into the float64 rows converts), with room for the last row's window
        size = (count - 1) * f.row_in + f.width
        self._buffer = np.zeros(size, np.int16)
        self._bytes = b = self._buffer.data.cast("B")
        step = self._buffer.itemsize
        self._windows = as_strided(self._buffer, (count, f.width), (f.row_in * step, step), writeable=False)
        self._low, self._high = np.array(-32768.0), np.array(32767.0)
        # the common case, a 20 ms frame after whole frames (its rows end where it does), with its views made
        rows = frame // f.row_in if frame % f.row_in == 0 else 0
        self._frame = (
            2 * frame if rows else -1,
            rows,
            b[2 * lag : 2 * (lag + frame)],
            self._windows[:rows],
            b[: 2 * lag],
            b[2 * frame : 2 * (frame + lag)],
            f.matrix,
            self._low,
            self._high,
        )
        self._fill = lag  # samples in _buffer
        self._pending = 0  # outputs of its first row already returned
        self.reset()

    @property
    def filter(self) -> Filter:
        """The ratio's filter (shared)."""
        return self._filter

    @property
    def delay(self) -> float:
        """The constant delay from input to output, in seconds."""
        f = self._filter
        return f.delay_taps / (f.up * self.src_rate)

    def reset(self) -> None:
        """Forget the stream so far: the next call starts from silence, as a new resampler would."""
        self._buffer[:] = 0
        self._fill = self._lag  # history: silence before the stream
        self._pending = 0

    def process(self, samples: NDArray[np.int16]) -> NDArray[np.int16]:
        """:meth:`resample` for an array of samples; returns a new array."""
        data = np.ascontiguousarray(samples, dtype=_L16).tobytes()
        return np.frombuffer(self.resample(data), dtype=_L16).copy()

    def _scratch(self) -> _Scratch:
        """This thread's scratch for the filter, (re)made when missing or too small for this stream's steps."""
        scratch = _LOCAL.scratch[self._filter] = _Scratch(self._filter, self._count)
        return scratch

    def resample(self, data: bytes | memoryview) -> bytes:
        """Resample the next piece of the stream (L16, whole samples); returns every output sample it completes."""
        frame_bytes, rows, new, windows, history, kept, matrix, low, high = self._frame
        if len(data) != frame_bytes or self._fill != self._lag or self._pending:
            return self._resample(data)
        scratch = _LOCAL.scratch.get(self._filter)
        if scratch is None or len(scratch.rows) <= self._count:
            scratch = self._scratch()
        new[:] = data
        z, y = scratch.rows[rows]
        np.copyto(z, windows)
        np.dot(z, matrix, out=y)
        out = scratch.yflat[: y.size]
        np.rint(out, out=out)
        np.minimum(out, high, out=out)
        np.maximum(out, low, out=out)
        history[:] = kept
        return out.astype(_L16).tobytes()

    def _resample(self, data: bytes | memoryview) -> bytes:
        row_in, row_out, lag, up, down, chunk = self._geometry
        if len(data) > chunk:
            view = memoryview(data)
            return b"".join([self._resample(view[i : i + chunk]) for i in range(0, len(data), chunk)])
        fill = self._fill
        end = fill + (len(data) >> 1)
        self._bytes[2 * fill : 2 * end] = data
        # outputs from the first row on whose newest input sample has arrived, and the rows holding them
        available = ((end - lag) * up + down - 1) // down
        pending = self._pending
        if available <= pending:
            self._fill = end
            return b""
        rows = -(-available // row_out)
        scratch = _LOCAL.scratch.get(self._filter)
        if scratch is None or len(scratch.rows) <= self._count:
            scratch = self._scratch()
        z, y = scratch.rows[rows]
        # samples past `end` in the last row's window are stale but finite, and only meet zero taps
        np.copyto(z, self._windows[:rows])
        np.dot(z, self._matrix, out=y)
        out = scratch.yflat[pending:available]
        np.rint(out, out=out)
        np.minimum(out, self._high, out=out)
        np.maximum(out, self._low, out=out)
        result = out.astype(_L16).tobytes()
        done = available // row_out
        self._pending = available - done * row_out
        if done:  # drop the rows finished: the next one's window moves to the front
            drop = done * row_in
            self._bytes[: 2 * (end - drop)] = self._bytes[2 * drop : 2 * end]
            end -= drop
        self._fill = end
        return result
