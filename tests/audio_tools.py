"""Test-side audio helpers: a sine tone to send and the frequency heard back."""

from __future__ import annotations

import numpy as np


def tone(freq_hz: float, rate: int, ms: int, amplitude: int = 8000) -> bytes:
    """A sine tone as L16 (starting at phase 0)."""
    n = rate * ms // 1000
    samples = amplitude * np.sin(2 * np.pi * freq_hz * np.arange(n) / rate)
    return np.round(samples).astype("<i2").tobytes()


def dominant_frequency(pcm: bytes, rate: int) -> float:
    """The strongest frequency in L16 audio (Hann-windowed FFT with parabolic peak interpolation), in Hz."""
    x = np.frombuffer(pcm[: len(pcm) & ~1], dtype="<i2").astype(np.float64)
    if len(x) < 4:
        return 0.0
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[0] = 0.0
    k = int(np.argmax(spectrum))
    shift = 0.0
    if 0 < k < len(spectrum) - 1:
        a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
        denominator = a - 2 * b + c
        shift = 0.5 * (a - c) / denominator if denominator else 0.0
    return (k + shift) * rate / len(x)


#: DTMF tone pairs (low, high) in Hz, ITU-T Q.23
DTMF_TONES = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip


def goertzel_digits(pcm: bytes, rate: int = 8000, ms: int = 40) -> str:
    """DTMF digits in L16 audio: per ``ms`` window, the Goertzel power of the eight DTMF frequencies; a digit is a
    run of windows whose strongest low and high tones stand well above the others and the window's energy."""
    x = np.frombuffer(pcm[: len(pcm) & ~1], dtype="<i2").astype(np.float64)
    n = rate * ms // 1000
    lows, highs = (697, 770, 852, 941), (1209, 1336, 1477, 1633)
    keys = {v: k for k, v in DTMF_TONES.items()}
    out, last = [], ""
    for i in range(0, len(x) - n + 1, n):
        w = x[i : i + n]
        energy = float(np.dot(w, w)) * n / 2
        if energy < 1e8:
            last = ""
            continue
        power = {f: _goertzel(w, f, rate) for f in lows + highs}
        lo = max(lows, key=lambda f: power[f])
        hi = max(highs, key=lambda f: power[f])
        others = max([power[f] for f in lows + highs if f not in (lo, hi)] or [0.0])
        digit = (
            keys[(lo, hi)] if power[lo] + power[hi] > 0.5 * energy and min(power[lo], power[hi]) > 8 * others else ""
        )
        if digit and digit != last:
            out.append(digit)
        last = digit
    return "".join(out)


def _goertzel(w: np.ndarray, freq: float, rate: int) -> float:
    coeff = 2 * np.cos(2 * np.pi * freq / rate)
    s1 = s2 = 0.0
    for v in w:
        s1, s2 = v + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2
