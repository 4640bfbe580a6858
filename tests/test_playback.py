"""The pacer: real-time release with a bounded lead, tail padding, marks, barge-in, bounded queue."""

from __future__ import annotations

from orchestrator.media.playback import Pacer

RATE = 8000
MS = RATE * 2 // 1000  # bytes per ms


def _run(p: Pacer, until: float, step: float = 0.02, start: float = 0.0) -> list[tuple[float, bytes, list[str]]]:
    out = []
    t = start
    while t <= until + 1e-9:
        chunk, marks = p.poll(t)
        if chunk or marks:
            out.append((round(t, 3), chunk or b"", marks))
        t += step
    return out


def test_burst_then_real_time_never_ahead_beyond_prebuffer_and_lead() -> None:
    p = Pacer(RATE, lead_ms=40)
    audio = bytes(range(256)) * (2000 * MS // 256)  # 2 s, distinct bytes so order shows
    p.push(audio, 0.0)
    out = _run(p, 3.0)
    first = out[0]
    assert first[0] == 0.0 and len(first[1]) == 160 * MS  # the module's whole first prebuffer at once
    assert all(len(c) == 80 * MS for _, c, _ in out[1:])  # then whole 80 ms units: no tail left in FreeSWITCH
    sent = 0
    for t, chunk, _ in out:
        sent += len(chunk)
        assert min(sent, len(audio)) <= (t * 1000 + 200) * MS + 1  # never more than real time + 200 ms ahead
    data = b"".join(c for _, c, _ in out)
    assert data[: len(audio)] == audio  # intact, in order
    assert set(data[len(audio) :]) <= {0} and len(data) - len(audio) < 80 * MS  # then at most a silent pad
    total, last_audio = 0, 0.0
    for t, chunk, _ in out:
        total += len(chunk)
        if total >= len(audio):
            last_audio = t
            break
    assert 1.72 <= last_audio <= 1.82  # the last piece goes out ~200 ms before it is due


def test_audio_arriving_in_real_time_goes_out_as_each_unit_completes() -> None:
    p = Pacer(RATE)
    frames = [bytes([i % 250 + 1, 0]) * (20 * MS // 2) for i in range(200)]
    sent = bytearray()
    for i, frame in enumerate(frames):
        t = i * 0.02
        p.push(frame, t)
        chunk, _ = p.poll(t)
        if chunk:
            sent += chunk
        unit_done = (i + 1) * 20 >= 160 and ((i + 1) * 20 - 160) % 80 == 0
        assert (chunk is not None) == unit_done, f"frame {i}"  # held only until FreeSWITCH would use it
    assert bytes(sent) == b"".join(frames)


def test_tail_is_padded_once_the_agent_goes_quiet() -> None:
    p = Pacer(RATE, idle_ms=60)
    p.push(b"\x05\x00" * (300 * MS // 2), 0.0)  # 300 ms: 200 + then 20 ms steps
    out = _run(p, 1.0)
    data = b"".join(c for _, c, _ in out)
    assert data[: 300 * MS] == b"\x05\x00" * (300 * MS // 2)
    pad = data[300 * MS :]
    assert set(pad) == {0} and len(pad) == 20 * MS  # 160 + 80 + 60 (+20 silence) ms
    assert p._pending == 0  # nothing of the utterance waits in FreeSWITCH's prebuffer (model)
    assert not p.busy


def test_no_padding_while_the_agent_keeps_talking() -> None:
    p = Pacer(RATE, idle_ms=60)
    for i in range(50):
        p.push(b"\x07\x00" * (20 * MS // 2), i * 0.02)
        chunk, _ = p.poll(i * 0.02)
        if chunk:
            assert chunk == b"\x07\x00" * (len(chunk) // 2)  # no silence slipped in


def test_marks_reported_when_the_audio_before_them_is_played() -> None:
    p = Pacer(RATE)
    p.push(bytes(1000 * MS), 0.0)
    p.mark("m1")
    p.push(bytes(500 * MS), 0.0)
    p.mark("m2")
    out = _run(p, 3.0, step=0.01)
    when = {m: t for t, _, marks in out for m in marks}
    assert abs(when["m1"] - 1.0) <= 0.02
    assert abs(when["m2"] - 1.5) <= 0.02


def test_clear_drops_queue_and_ends_pending_marks() -> None:
    p = Pacer(RATE)
    p.push(bytes(3000 * MS), 0.0)
    p.mark("a")
    p.poll(0.0)
    assert p.clear(0.5) == ["a"]
    assert p.queued_ms == 0 and p._pending == 0  # nothing stale waits in FreeSWITCH's prebuffer either
    p.push(b"\x01\x00" * (100 * MS // 2), 0.6)
    chunk, _ = p.poll(0.6)
    assert chunk == b"\x01\x00" * (80 * MS // 2)  # the next utterance starts at once (whole unit)
    chunk, _ = p.poll(0.7)
    assert chunk == b"\x01\x00" * (20 * MS // 2) + bytes(60 * MS)  # its tail, padded, once the agent is quiet


def test_queue_is_bounded_and_overflow_counted() -> None:
    p = Pacer(RATE, max_seconds=1.0)
    p.push(bytes(1500 * MS), 0.0)
    assert p.queued_ms == 1000 and p.dropped_bytes == 500 * MS


def test_file_mode_sends_whole_segments_one_ahead() -> None:
    p = Pacer(RATE, lead_ms=800, prebuffer_ms=0, chunk_ms=0, min_send_ms=400, pad=False)
    for i in range(100):  # 2 s arriving in real time in 20 ms pieces
        p.push(bytes(20 * MS), i * 0.02)
    out = _run(p, 4.0)
    sizes = [len(c) // MS for _, c, _ in out]
    assert sizes[0] == 800 and all(s == 400 for s in sizes[1:-1]) and sum(sizes) == 2000


def test_file_mode_burst_still_goes_in_whole_segments() -> None:
    p = Pacer(RATE, lead_ms=800, prebuffer_ms=0, chunk_ms=0, min_send_ms=400, pad=False)
    p.push(bytes(3000 * MS), 0.0)  # the agent sends 3 s at once, then goes quiet
    sizes = [len(c) // MS for _, c, _ in _run(p, 5.0)]
    assert sizes == [800, 400, 400, 400, 400, 400, 200]
