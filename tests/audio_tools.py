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
