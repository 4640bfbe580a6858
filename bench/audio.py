"""Resampling benchmark: libsoxr's variable-rate stream vs the polyphase resampler, per 20 ms frame.

    python bench/audio.py [--rounds 15] [--frames 400] [--scan] [--pairs 16000:8000,8000:16000]

Per ratio, in the same run: the µs per 20 ms frame of each engine (frame after frame through one stream, as a
call's converter sees them; rounds of each engine interleaved, the median round printed) and the speed ratio;
each engine's delay (measured: the output cross-correlated with the exactly resampled input, plus any output it
still holds back); its stop-band attenuation (measured: tones swept over the whole input band, fed in 20 ms
frames; the strongest output component that is not the tone itself — an alias or an image — relative to a
1 kHz tone of the same level, −0.8 dBFS). Then the whole ``Converter`` path for each agent protocol's usual
case, both directions per frame. ``--scan`` prints the polyphase design's trade-off: stop-band target →
taps, measured attenuation, µs per frame, delay.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import soxr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.audio.convert import Converter
from orchestrator.audio.resample import RATES, Resampler

PAIRS = [(s, d) for s in RATES for d in RATES if s != d]
AMPLITUDE = 30000  # −0.8 dBFS
Engine = Callable[[bytes], bytes]


def soxr_engine(src: int, dst: int) -> Engine:
    stream = soxr.ResampleStream(src, dst, 1, dtype="int16", vr=True)
    return lambda data: bytes(stream.resample_chunk(np.frombuffer(data, dtype=np.int16)).tobytes())


def poly_engine(src: int, dst: int, attenuation_db: float | None = None) -> Engine:
    r = Resampler(src, dst) if attenuation_db is None else Resampler(src, dst, attenuation_db=attenuation_db)
    return r.resample


def frames(x: np.ndarray, rate: int) -> list[bytes]:
    n = rate // 50
    return [x[i : i + n].astype("<i2").tobytes() for i in range(0, len(x), n)]


def run(engine: Engine, pieces: list[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(engine(p) for p in pieces), dtype="<i2").astype(np.float64)


def noise_frames(rate: int, count: int, seed: int = 7) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return frames(np.round(rng.normal(0, 4000, rate // 50 * count)).clip(-32768, 32767), rate)


def time_per_frame(
    makers: dict[str, Callable[[], Callable[[Any], Any]]], pieces: list[Any], rounds: int
) -> dict[str, float]:
    """µs per piece of each engine: a stream per engine, rounds interleaved, the median round."""
    engines = {name: make() for name, make in makers.items()}
    results: dict[str, list[float]] = {name: [] for name in engines}
    for engine in engines.values():  # warm up
        for p in pieces[:50]:
            engine(p)
    for _ in range(rounds):
        for name, engine in engines.items():
            start = time.perf_counter()
            for p in pieces:
                engine(p)
            results[name].append((time.perf_counter() - start) / len(pieces) * 1e6)
    return {name: statistics.median(values) for name, values in results.items()}


def delay_ms(make: Callable[[], Engine], src: int, dst: int) -> float:
    """Input → output delay: the output's lag behind the ideal resampled signal, plus samples held back."""
    rng = np.random.default_rng(3)
    low = min(src, dst) / 2
    freqs = rng.uniform(100, 0.8 * low, 24)
    phases = rng.uniform(0, 2 * np.pi, 24)

    def signal(rate: int, n: int) -> np.ndarray:
        t = np.arange(n)[:, None] / rate
        return np.sin(2 * np.pi * freqs * t + phases).sum(axis=1) * (8000 / np.sqrt(12))

    seconds = 1
    x = np.round(signal(src, src * seconds))
    engine = make()
    out: list[bytes] = []
    held: list[float] = []
    n_in = 0
    for p in frames(x, src):
        out.append(engine(p))
        n_in += len(p) // 2
        emitted = sum(len(o) for o in out) // 2
        held.append(-(-n_in * dst // src) - emitted)
    y = np.frombuffer(b"".join(out), dtype="<i2").astype(np.float64)
    ideal = signal(dst, len(y) + dst // 10)
    # the output y[k] ≈ ideal[k - lag]: search lags 0..100 ms on the steady part
    start = dst // 10
    seg = y[start:]
    lags = np.arange(0, dst // 10)
    score = np.array([np.dot(seg, ideal[start - lag : start - lag + len(seg)]) for lag in lags])
    k = int(np.argmax(score))
    shift = 0.0
    if 0 < k < len(score) - 1:
        a, b, c = score[k - 1 : k + 2]
        shift = 0.5 * (a - c) / (a - 2 * b + c)
    steady_held = statistics.mean(held[len(held) // 4 :])
    return (k + shift + steady_held) / dst * 1000


def _spectrum_db(y: np.ndarray) -> np.ndarray:
    w = np.kaiser(len(y), 20.0)
    return 20 * np.log10(np.abs(np.fft.rfft(y * w)) / (w.sum() / 2) + 1e-30)


def stopband_db(make: Callable[[], Engine], src: int, dst: int, steps: int = 60) -> tuple[float, float]:
    """How far below a 1 kHz tone of the same level the strongest alias or image of a swept tone is (dB):
    (for tones outside the guard band 0.85-1.15 × the lower Nyquist, whose aliases and images cannot land in
    the pass band; for every tone)."""
    low = min(src, dst) / 2
    n = src  # one second per tone
    t = np.arange(n) / src
    skip = dst // 10  # past the start-up transient

    def through(freq: float) -> np.ndarray:
        return _spectrum_db(run(make(), frames(np.round(AMPLITUDE * np.sin(2 * np.pi * freq * t)), src))[skip:])

    reference = float(through(1000.0).max())
    edges = low * np.array([0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 1.005, 1.01, 1.02, 1.05, 1.1, 1.15, 1.2])
    sweep = np.concatenate([np.linspace(60, src / 2 - 60, steps), edges])
    guarded = anywhere = -np.inf
    for freq in sweep[sweep < src / 2 - 30]:
        spectrum = through(float(freq))
        bins = np.arange(len(spectrum)) * dst / (2 * (len(spectrum) - 1))
        if freq < dst / 2:  # the tone itself may pass (attenuated in the transition band): not counted
            spectrum = spectrum[np.abs(bins - freq) > 30]
        level = float(spectrum.max())
        anywhere = max(anywhere, level)
        if abs(freq - low) >= 0.15 * low:
            guarded = max(guarded, level)
    return reference - guarded, reference - anywhere


def table(rounds: int, count: int, pairs: list[tuple[int, int]]) -> None:
    print(
        "| ratio | soxr VR µs/frame | polyphase µs/frame | speed-up | soxr VR delay | polyphase delay |"
        " soxr VR stop band: outside guard / anywhere | polyphase stop band: outside guard / anywhere |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for src, dst in pairs:
        makers: dict[str, Callable[[], Engine]] = {
            "soxr": lambda s=src, d=dst: soxr_engine(s, d),
            "poly": lambda s=src, d=dst: poly_engine(s, d),
        }
        cost = time_per_frame(makers, noise_frames(src, count), rounds)
        delays = {name: delay_ms(make, src, dst) for name, make in makers.items()}
        stops = {name: stopband_db(make, src, dst) for name, make in makers.items()}
        print(
            f"| {src // 1000}→{dst // 1000} kHz | {cost['soxr']:.1f} | {cost['poly']:.1f} | "
            f"{cost['soxr'] / cost['poly']:.1f}× | {delays['soxr']:.1f} ms | {delays['poly']:.1f} ms | "
            f"{stops['soxr'][0]:.0f} / {stops['soxr'][1]:.0f} dB | "
            f"{stops['poly'][0]:.0f} / {stops['poly'][1]:.0f} dB |",
            flush=True,
        )


def converter_paths(rounds: int, count: int) -> None:
    """The whole Converter path per agent protocol's usual case: both directions of a call, per 20 ms frame."""
    cases = [
        ("8 kHz call ⇄ pcm_16000 (ElevenLabs, raw)", 8000, 16000, "l16", "l16"),
        ("16 kHz call ⇄ ulaw 8 kHz (Twilio)", 16000, 8000, "l16", "ulaw"),
    ]
    print()
    print("| Converter path, per frame both ways | soxr VR µs | polyphase µs | speed-up |")
    print("| --- | --- | --- | --- |")
    for label, call, agent, call_enc, agent_enc in cases:
        caller = noise_frames(call, count, seed=11)
        agent_audio = [Converter(call, agent, call_enc, agent_enc).convert(p) for p in caller]  # its format
        pieces = list(zip(caller, agent_audio, strict=True))

        def both(engine: str, c: int = call, a: int = agent, ce: str = call_enc, ae: str = agent_enc) -> Any:
            to_agent = Converter(c, a, ce, ae, engine=engine)  # type: ignore[arg-type]
            from_agent = Converter(a, c, ae, ce, engine=engine)  # type: ignore[arg-type]
            return lambda pair: (to_agent.convert(pair[0]), from_agent.convert(pair[1]))

        cost = time_per_frame({"soxr": lambda: both("soxr"), "poly": lambda: both("auto")}, pieces, rounds)
        print(f"| {label} | {cost['soxr']:.1f} | {cost['poly']:.1f} | {cost['soxr'] / cost['poly']:.1f}× |", flush=True)


def scan(rounds: int, count: int, pairs: list[tuple[int, int]]) -> None:
    """The polyphase design's trade-off: stop-band target → taps, measured attenuation, cost, delay."""
    print()
    print("| ratio | target | taps (per phase) | measured stop band | µs/frame | delay |")
    print("| --- | --- | --- | --- | --- | --- |")
    for src, dst in pairs:
        targets = (60.0, 70.0, 80.0, 90.0, 100.0)
        makers: dict[str, Callable[[], Engine]] = {
            f"{a:.0f}": (lambda s=src, d=dst, a=a: poly_engine(s, d, a)) for a in targets
        }
        cost = time_per_frame(makers, noise_frames(src, count), rounds)
        for a in targets:
            r = Resampler(src, dst, attenuation_db=a)
            stop = stopband_db(makers[f"{a:.0f}"], src, dst, steps=30)[1]
            print(
                f"| {src // 1000}→{dst // 1000} kHz | {a:.0f} dB | {len(r.filter.taps)} ({r.filter.phase_taps}) | "
                f"{stop:.1f} dB | {cost[f'{a:.0f}']:.1f} | {r.delay * 1000:.2f} ms |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--frames", type=int, default=400, help="20 ms frames per engine per round")
    parser.add_argument("--pairs", help="src:dst,... (default: every supported ratio)")
    parser.add_argument("--scan", action="store_true", help="also print the design trade-off (16→8, 8→16, 48→8)")
    args = parser.parse_args()
    pairs = PAIRS
    if args.pairs:
        pairs = [(int(a), int(b)) for a, b in (p.split(":") for p in args.pairs.split(","))]
    table(args.rounds, args.frames, pairs)
    converter_paths(args.rounds, args.frames)
    if args.scan:
        scan(args.rounds, args.frames, [(16000, 8000), (8000, 16000), (48000, 8000)])


if __name__ == "__main__":
    main()
