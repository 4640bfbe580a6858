"""The first-speech heuristic of answering-machine detection (orchestrator.media.amd), sans-I/O: levels and a
clock in, verdicts out. Frame patterns first, then the recorded greetings (tests/greetings.py) frame by frame."""

from __future__ import annotations

import greetings
import pytest

from orchestrator.audio.convert import rms
from orchestrator.config.model import MachineDetection
from orchestrator.media.amd import BeepHeard, Decided, Detector, Speak, Verdict, level_dbfs

SPEECH, SILENCE = -20.0, -70.0


class Clock:
    """Frames arrive every 20 ms; the detector's clock follows them."""

    def __init__(self, mode: str = "notify", **settings: object) -> None:
        self.ms = 100_000  # whole milliseconds: no float drift in the sums
        self.d = Detector(MachineDetection(mode=mode, **settings), self.now)  # type: ignore[arg-type]
        self.out: list[object] = []

    @property
    def now(self) -> float:
        return self.ms / 1000

    @now.setter
    def now(self, value: float) -> None:
        self.ms = round(value * 1000)

    def feed(self, level: float, ms: int) -> list[object]:
        got: list[object] = []
        for _ in range(ms // 20):
            self.ms += 20
            got += self.d.frame(level, 20, self.now)
            got += self.d.poll(self.now)
        self.out += got
        return got

    def wait(self, seconds: float) -> list[object]:
        self.now += seconds
        got = list(self.d.poll(self.now))
        self.out += got
        return got


def only(items: list[object], kind: type) -> list[object]:
    return [i for i in items if isinstance(i, kind)]


def test_a_short_hello_then_silence_is_a_person() -> None:
    c = Clock()
    assert c.feed(SILENCE, 400) == []  # ringing ends, the callee lifts the handset
    assert c.feed(SPEECH, 600) == []  # "Hello?"
    assert c.feed(SILENCE, 780) == []  # not yet: 800 ms of silence end a greeting
    [verdict] = c.feed(SILENCE, 20)
    assert isinstance(verdict, Decided) and verdict.verdict is Verdict.HUMAN and verdict.reason == "short_greeting"
    assert verdict.speech_ms == 600 and verdict.greeting_ms == 600 and verdict.verdict_ms == 1800
    assert c.d.finished and c.feed(SPEECH, 5000) == []  # decided once


def test_a_long_greeting_is_a_machine_while_it_still_plays() -> None:
    c = Clock()
    c.feed(SILENCE, 200)
    for _ in range(6):  # words with short pauses: continuous-ish
        c.feed(SPEECH, 400)
        c.feed(SILENCE, 200)
    [verdict] = only(c.out, Decided)
    assert verdict.verdict is Verdict.MACHINE and verdict.reason == "long_greeting"  # type: ignore[attr-defined]
    assert (verdict.greeting_ms, verdict.speech_ms, verdict.verdict_ms) == (3020, 2020, 3220)  # type: ignore[attr-defined]
    assert c.d.finished is False  # notify: mod_avmd may still tell the agent about the beep
    assert c.d.beep(c.now + 2) == [BeepHeard(round((c.now + 2 - 100) * 1000))]
    assert c.d.finished


def test_a_greeting_between_the_limits_then_silence_is_unknown() -> None:
    c = Clock()
    c.feed(SPEECH, 2200)  # "Hello, this is Anna Smith speaking"
    c.feed(SILENCE, 800)
    [verdict] = only(c.out, Decided)
    assert verdict.verdict is Verdict.UNKNOWN and verdict.reason == "medium_greeting"  # type: ignore[attr-defined]


def test_no_speech_is_unknown_after_no_speech_seconds() -> None:
    c = Clock(no_speech_seconds=3)
    assert c.d.deadline == pytest.approx(103.0)
    assert c.feed(SILENCE, 2980) == []
    [verdict] = c.feed(SILENCE, 40)
    assert isinstance(verdict, Decided) and verdict.verdict is Verdict.UNKNOWN and verdict.reason == "no_speech"
    assert verdict.verdict_ms == 3000 and verdict.speech_ms == 0


def test_no_frames_at_all_the_clock_still_decides() -> None:
    c = Clock()
    assert c.wait(4.9) == []
    [verdict] = c.wait(0.2)
    assert isinstance(verdict, Decided) and verdict.reason == "no_speech"


def test_a_click_is_not_a_greeting() -> None:
    c = Clock(min_speech_ms=120)
    c.feed(SPEECH, 60)  # a click on the line
    c.feed(SILENCE, 1000)
    assert c.out == []
    c.feed(SPEECH, 500)
    c.feed(SILENCE, 800)
    [verdict] = only(c.out, Decided)
    assert verdict.verdict is Verdict.HUMAN and verdict.greeting_ms == 500  # type: ignore[attr-defined]


def test_wait_for_beep_speaks_at_the_beep() -> None:
    c = Clock("wait_for_beep")
    c.feed(SPEECH, 3100)
    [verdict] = only(c.out, Decided)
    assert verdict.verdict is Verdict.MACHINE and c.d.waiting  # type: ignore[attr-defined]
    c.feed(SPEECH, 1000)
    c.feed(SILENCE, 400)
    assert only(c.out, Speak) == []
    c.now += 0.2
    [speak] = c.d.beep(c.now)
    assert speak == Speak("beep", round((c.now - 100) * 1000)) and c.d.finished and not c.d.waiting


def test_wait_for_beep_without_a_beep_speaks_when_the_greeting_ends() -> None:
    c = Clock("wait_for_beep", greeting_end_silence_ms=1500)
    c.feed(SPEECH, 3500)
    c.feed(SILENCE, 1480)
    assert only(c.out, Speak) == []
    [speak] = c.feed(SILENCE, 20)
    assert isinstance(speak, Speak) and speak.reason == "greeting_end"


def test_wait_for_beep_gives_up_waiting_at_beep_timeout() -> None:
    c = Clock("wait_for_beep", beep_timeout_seconds=10)
    c.feed(SPEECH, 3100)
    c.feed(SPEECH, 6000)  # a greeting that never ends
    assert only(c.out, Speak) == []
    [speak] = c.feed(SPEECH, 1000)
    assert isinstance(speak, Speak) and speak.reason == "timeout" and speak.speak_ms == 10000


def test_a_beep_before_any_verdict_is_a_machine_and_wait_for_beep_speaks_at_once() -> None:
    c = Clock("wait_for_beep")
    c.feed(SPEECH, 1200)  # "Leave a message."
    c.feed(SILENCE, 300)
    verdict, speak = c.d.beep(c.now)
    assert isinstance(verdict, Decided) and verdict.verdict is Verdict.MACHINE and verdict.reason == "beep"
    assert isinstance(speak, Speak) and speak.reason == "beep"


def test_hangup_mode_needs_nothing_after_a_machine() -> None:
    c = Clock("hangup")
    c.feed(SPEECH, 3100)
    assert c.d.finished and c.d.deadline is None and c.d.beep(c.now) == []


def test_a_person_is_final_and_a_later_beep_changes_nothing() -> None:
    c = Clock("wait_for_beep")
    c.feed(SPEECH, 500)
    c.feed(SILENCE, 800)
    assert only(c.out, Decided)[0].verdict is Verdict.HUMAN  # type: ignore[attr-defined]
    assert c.d.beep(c.now) == [] and c.d.finished


def test_settings_are_bounded_and_ordered() -> None:
    with pytest.raises(ValueError, match="must be below machine_speech_ms"):
        MachineDetection(human_speech_max_ms=3000, machine_speech_ms=2000)
    assert MachineDetection.model_validate("hangup").given() == {"mode": "hangup"}


@pytest.mark.parametrize(("make", "verdict"), [(greetings.hello, Verdict.HUMAN), (greetings.machine, Verdict.MACHINE)])
def test_the_recorded_greetings(make: object, verdict: Verdict) -> None:
    """Each greeting at 8 and 16 kHz, 20 ms frames, levels from the audio itself."""
    for rate in (8000, 16000):
        pcm = make(rate)  # type: ignore[operator]
        c = Clock()
        frame = rate * 2 // 50
        for i in range(0, len(pcm) - frame + 1, frame):
            c.ms += 20
            c.out += c.d.frame(level_dbfs(rms(pcm[i : i + frame])), 20, c.now) + c.d.poll(c.now)
        [decided] = only(c.out, Decided)
        assert decided.verdict is verdict, (greetings.source(), rate, decided)  # type: ignore[attr-defined]
        if verdict is Verdict.MACHINE:
            assert 3000 <= decided.verdict_ms <= 3400  # type: ignore[attr-defined]  # decided during the greeting
        else:
            assert decided.speech_ms < 1500 and decided.verdict_ms < 2500  # type: ignore[attr-defined]


def test_level_dbfs() -> None:
    assert level_dbfs(0) == -120.0
    assert level_dbfs(32768) == pytest.approx(0.0)
    assert level_dbfs(327.68) == pytest.approx(-40.0)
