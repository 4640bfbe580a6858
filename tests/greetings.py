"""Recorded greetings for the answering-machine detection tests: a person's short "Hello?" and a voicemail
greeting ending in a beep, as L16 mono at a call's rate.

Spoken by espeak-ng and assembled by sox when both are installed (Debian: espeak-ng, sox); otherwise
synthesized here with numpy (voiced bursts: a 140 Hz harmonic series under syllable envelopes), so the
simulator tests run anywhere. The beep is a 1 kHz sine of 500 ms at -9 dBFS after 400 ms of silence, in both.
``source()`` says which was used.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

HELLO_TEXT = "Hello?"
MACHINE_TEXT = "Hi, you have reached John Smith. Please leave a message after the tone."
BEEP_HZ, BEEP_MS, BEEP_GAP_MS = 1000, 500, 400
TAIL_MS = 3000  # silence after each greeting


def source() -> str:
    """``espeak-ng`` or ``numpy``: what makes the greetings here."""
    return "espeak-ng" if shutil.which("espeak-ng") and shutil.which("sox") else "numpy"


def _read(path: Path) -> bytes:
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2 and w.getnchannels() == 1
        return w.readframes(w.getnframes())


@functools.cache
def _spoken(text: str, rate: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        raw, out = Path(tmp) / "raw.wav", Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-w", str(raw), text], check=True, capture_output=True)
        subprocess.run(
            ["sox", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(out)], check=True, capture_output=True
        )
        return _read(out)


def _syllables(count: int, rate: int, seed: int) -> np.ndarray:
    """Speech-like audio: ``count`` voiced syllables of 150-260 ms with 40-120 ms gaps (pauses after every 4)."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    for i in range(count):
        n = int(rate * rng.uniform(0.15, 0.26))
        t = np.arange(n) / rate
        f0 = 140 * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
        phase = 2 * np.pi * np.cumsum(f0) / rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
        parts.append(voiced * np.hanning(n) * 6000)
        gap = 0.3 if (i + 1) % 4 == 0 else rng.uniform(0.04, 0.12)
        parts.append(np.zeros(int(rate * gap)))
    return np.concatenate(parts)


def _pcm(x: np.ndarray) -> bytes:
    return np.clip(x, -32768, 32767).astype("<i2").tobytes()


def _silence(ms: int, rate: int) -> bytes:
    return b"\x00\x00" * (rate * ms // 1000)


def beep(rate: int) -> bytes:
    """The voicemail beep: 1 kHz, 500 ms, -9 dBFS."""
    t = np.arange(rate * BEEP_MS // 1000) / rate
    return _pcm(np.sin(2 * np.pi * BEEP_HZ * t) * 0.5 * 32767)


def hello(rate: int = 8000) -> bytes:
    """A person answering: "Hello?" (about 0.7 s), then silence."""
    spoken = _spoken(HELLO_TEXT, rate) if source() == "espeak-ng" else _pcm(_syllables(3, rate, 1))
    return spoken + _silence(TAIL_MS, rate)


def machine(rate: int = 8000) -> bytes:
    """A voicemail greeting (about 4-5 s of speech), 400 ms of silence, the beep, then silence."""
    spoken = _spoken(MACHINE_TEXT, rate) if source() == "espeak-ng" else _pcm(_syllables(18, rate, 2))
    return spoken + _silence(BEEP_GAP_MS, rate) + beep(rate) + _silence(TAIL_MS, rate)


def beep_at_ms(rate: int = 8000) -> int:
    """Where the beep starts in :func:`machine`."""
    spoken = len(machine(rate)) // 2 - rate * (BEEP_GAP_MS + BEEP_MS + TAIL_MS) // 1000
    return spoken * 1000 // rate + BEEP_GAP_MS


def write_pcmu_wav(pcm: bytes, rate: int, path: Path) -> Path:
    """The greeting as a μ-law WAV (what sipp's rtp_stream plays), through sox."""
    with tempfile.TemporaryDirectory() as tmp:
        lin = Path(tmp) / "lin.wav"
        with wave.open(str(lin), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(pcm)
        subprocess.run(["sox", str(lin), "-e", "u-law", "-r", "8000", str(path)], check=True, capture_output=True)
    return path
