"""Audio conversion: resampling keeps the pitch, frame-by-frame equals one-shot, G.711 round trips."""

from __future__ import annotations

import numpy as np
import pytest
from audio_tools import dominant_frequency, tone

from orchestrator.audio.convert import RATES, Converter, audioop, parse_format


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int32)


def feed(converter: Converter, data: bytes, size: int) -> bytes:
    return b"".join(converter.convert(data[i : i + size]) for i in range(0, len(data), size))


@pytest.mark.parametrize(
    ("src", "dst"), [(8000, 16000), (16000, 8000), (16000, 24000), (24000, 16000), (48000, 8000), (22050, 16000)]
)
def test_resampled_tone_keeps_its_frequency(src: int, dst: int) -> None:
    out = Converter(src, dst).convert(tone(1000, src, 1000))
    expected = dst * (1000 - 30) // 1000  # everything but the resampler's fixed delay
    assert expected <= len(out) // 2 <= dst
    assert dominant_frequency(out, dst) == pytest.approx(1000, abs=10)
    steady = samples(out)[dst // 10 :]  # past the start-up transient: the amplitude survives
    # (from the RMS, not the largest sample: which phases of the sine the samples hit depends on the delay)
    assert 7600 < np.sqrt(2 * np.mean(steady.astype(np.float64) ** 2)) < 8400


@pytest.mark.parametrize(("src", "dst"), [(8000, 16000), (16000, 8000), (24000, 16000), (22050, 16000)])
@pytest.mark.parametrize("piece", ["frame", 333, 7])
def test_frame_by_frame_equals_one_shot(src: int, dst: int, piece: str | int) -> None:
    data = tone(1000, src, 500) + tone(440, src, 500)
    size = src // 50 * 2 if piece == "frame" else piece
    whole = samples(Converter(src, dst).convert(data))
    pieces = samples(feed(Converter(src, dst), data, size))
    assert len(pieces) == len(whole)
    assert np.abs(pieces - whole).max() <= 2  # libsoxr rounds int16 output per call: at most an LSB or two
    # no clicks at the joins: no sample-to-sample step larger than the one-shot output has anywhere
    assert np.abs(np.diff(pieces)).max() <= np.abs(np.diff(whole)).max() + 4


def test_encoding_conversion_frame_by_frame_matches_one_shot() -> None:
    data = tone(1000, 16000, 300)
    whole = Converter(16000, 8000, "l16", "ulaw").convert(data)
    pieces = feed(Converter(16000, 8000, "l16", "ulaw"), data, 640)
    assert len(pieces) == len(whole)
    assert np.abs(samples(audioop.ulaw2lin(pieces, 2)) - samples(audioop.ulaw2lin(whole, 2))).max() <= 64


@pytest.mark.parametrize(("encoding", "decode"), [("ulaw", audioop.ulaw2lin), ("alaw", audioop.alaw2lin)])
def test_g711_round_trip_error_is_bounded(encoding: str, decode: object) -> None:
    pcm = tone(1000, 8000, 200, amplitude=20000) + tone(300, 8000, 200, amplitude=300)
    encoded = Converter(8000, 8000, "l16", encoding).convert(pcm)
    assert len(encoded) == len(pcm) // 2
    back = Converter(8000, 8000, encoding, "l16").convert(encoded)
    original, decoded = samples(pcm), samples(back)
    # logarithmic companding: the error grows with the level, about 1/32 of it at most (3 % + a few LSB)
    assert np.all(np.abs(decoded - original) <= np.abs(original) // 16 + 16)
    assert dominant_frequency(back[:3200], 8000) == pytest.approx(1000, abs=10)


def test_g711_with_resampling() -> None:
    ulaw = Converter(16000, 8000, "l16", "ulaw").convert(tone(1000, 16000, 500))
    back = Converter(8000, 16000, "ulaw", "l16").convert(ulaw)
    assert dominant_frequency(back, 16000) == pytest.approx(1000, abs=10)


@pytest.mark.parametrize(("rate", "encoding"), [(16000, "l16"), (8000, "l16"), (8000, "ulaw"), (8000, "alaw")])
def test_identity_returns_the_same_object(rate: int, encoding: str) -> None:
    converter = Converter(rate, rate, encoding, encoding)
    data = bytes(range(200)) * 2
    assert converter.convert(data) is data


def test_odd_trailing_byte_is_carried() -> None:
    data = tone(1000, 16000, 100)
    identity = Converter(16000, 16000)
    assert identity.convert(data[:101]) == data[:100]
    assert identity.convert(data[101:201]) == data[100:200]  # the carried byte completes the next sample
    assert identity.convert(data[201:]) == data[200:]

    whole = samples(Converter(16000, 8000).convert(data))
    for size in (333, 321, 1):
        odd = samples(feed(Converter(16000, 8000), data, size))
        assert len(odd) == len(whole) and np.abs(odd - whole).max() <= 2

    ulaw = Converter(16000, 16000, "l16", "ulaw")
    assert len(ulaw.convert(data[:5])) == 2 and len(ulaw.convert(data[5:8])) == 2


def test_reset_forgets_history_and_partial_sample() -> None:
    data = tone(1000, 16000, 200)
    converter = Converter(16000, 8000)
    first = converter.convert(data)
    converter.convert(b"\x01")
    converter.reset()
    assert converter.convert(data) == first


def test_every_supported_pair_converts() -> None:
    for src in RATES:
        for dst in RATES:
            out = Converter(src, dst).convert(tone(1000, src, 200))
            assert abs(len(out) // 2 - dst // 5) <= dst * 32 // 1000, (src, dst)


def test_rejects_unknown_rates_and_encodings() -> None:
    with pytest.raises(ValueError, match="sample rate"):
        Converter(11025, 8000)
    with pytest.raises(ValueError, match="encoding"):
        Converter(8000, 8000, "opus")


def test_parse_format() -> None:
    assert parse_format("pcm_16000") == ("l16", 16000)
    assert parse_format("ulaw_8000") == ("ulaw", 8000)
    assert parse_format("alaw_8000") == ("alaw", 8000)
    for bad in ("pcm_11025", "ulaw_16000", "mp3_44100", "pcm", "pcm_x"):
        with pytest.raises(ValueError):
            parse_format(bad)


def test_tone_and_dominant_frequency() -> None:
    pcm = tone(440, 8000, 100, amplitude=1000)
    assert len(pcm) == 1600
    assert np.abs(samples(pcm)).max() == 1000
    assert dominant_frequency(pcm, 8000) == pytest.approx(440, abs=2)
    assert dominant_frequency(tone(3333, 16000, 250), 16000) == pytest.approx(3333, abs=2)
    assert dominant_frequency(b"", 8000) == 0.0
