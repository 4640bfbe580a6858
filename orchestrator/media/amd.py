"""Answering-machine detection from the callee's first speech, sans-I/O (docs/call-flow.md#answering-machine-detection).

A :class:`Detector` is fed the level of every frame of the far end's audio the fork delivers (``frame``: RMS
in dBFS and the frame's length), the beeps FreeSWITCH's mod_avmd hears (``beep``) and the time (``poll``,
``deadline``: the clock is the caller's). It decides once, from the moment the call's audio starts:

* **human** -- a short greeting: speech (at least ``min_speech_ms`` of frames at or above
  ``speech_threshold_dbfs``) spanning at most ``human_speech_max_ms``, then ``silence_after_speech_ms`` of
  silence ("Hello?" ... waiting for an answer);
* **machine** -- a long greeting: speech spanning more than ``machine_speech_ms`` with no pause as long as
  ``silence_after_speech_ms`` (decided while it still plays), or a beep before any verdict;
* **unknown** -- no speech within ``no_speech_seconds``, or a greeting between the two lengths followed by
  silence (a person giving their name, or a terse machine: the cautious answer; it acts as human).

The greeting's span is measured in audio time (frames x 20 ms, so late or bunched frames do not stretch it);
the timeouts and the reported ``verdict_ms`` are clock time since the detector started. With ``wait_for_beep``
a machine verdict is followed, once, by :class:`Speak`: at the beep, after ``greeting_end_silence_ms`` of
silence, or ``beep_timeout_seconds`` after the start at the latest.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from orchestrator.config.model import MachineDetection


class Verdict(enum.StrEnum):
    """Who answered."""

    HUMAN = "human"
    MACHINE = "machine"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Decided:
    """The verdict, why (``short_greeting``, ``long_greeting``, ``beep``, ``medium_greeting``, ``no_speech``,
    ``undecided``) and the figures behind it."""

    verdict: Verdict
    reason: str
    verdict_ms: int  # clock time from the start
    speech_ms: int  # audio judged speech
    greeting_ms: int  # from the first speech to the end of the last


@dataclass(frozen=True)
class Speak:
    """wait_for_beep: the machine's greeting is over (``beep``, ``greeting_end``, ``timeout``): leave the message."""

    reason: str
    speak_ms: int


@dataclass(frozen=True)
class BeepHeard:
    """A beep after a machine verdict that did not wait for it (notify): for the agent's information."""

    beep_ms: int


Decision = Decided | Speak | BeepHeard


def level_dbfs(rms: float) -> float:
    """The RMS of 16-bit samples in dB below full scale (silence: -120)."""
    return 20 * math.log10(rms / 32768) if rms >= 1 else -120.0


class Detector:
    """One call's first-speech analysis (create it when the call's audio starts)."""

    def __init__(self, settings: MachineDetection, now: float) -> None:
        self.s = settings
        self.start = now
        self.audio_ms = 0.0
        self.speech_ms = 0.0
        self.first: float | None = None  # audio ms where the greeting's speech began
        self.last_end = 0.0  # audio ms where its latest speech frame ended
        self.silence_ms = 0.0  # the current run of silence
        self.decided: Decided | None = None
        self.spoken: Speak | None = None
        self.beep_told = False
        self.finished = False  # nothing more to decide: the beep detector may stop

    @property
    def waiting(self) -> bool:
        """A machine answered and the agent waits for the end of its greeting (wait_for_beep)."""
        return self.decided is not None and self.decided.verdict is Verdict.MACHINE and self._waits()

    def _waits(self) -> bool:
        return self.s.mode == "wait_for_beep" and self.spoken is None

    def _ms(self, now: float) -> int:
        return max(0, round((now - self.start) * 1000))

    def _decide(self, verdict: Verdict, reason: str, now: float) -> list[Decision]:
        greeting = self.last_end - self.first if self.first is not None else 0.0
        self.decided = Decided(verdict, reason, self._ms(now), round(self.speech_ms), round(greeting))
        self.silence_ms = 0.0
        out: list[Decision] = [self.decided]
        if verdict is not Verdict.MACHINE or self.s.mode == "hangup":
            self.finished = True
        elif reason == "beep" and self._waits():
            out += self._speak("beep", now)
        return out

    def _speak(self, reason: str, now: float) -> list[Decision]:
        self.spoken = Speak(reason, self._ms(now))
        self.finished = True
        return [self.spoken]

    # -- input --------------------------------------------------------------------------------------
    def frame(self, level: float, ms: float, now: float) -> list[Decision]:
        """One frame of the far end's audio: its level (dBFS) and length."""
        if self.finished or ms <= 0:
            return []
        self.audio_ms += ms
        speech = level >= self.s.speech_threshold_dbfs
        if self.decided is not None:  # a machine's greeting, waiting for its end
            self.silence_ms = 0.0 if speech else self.silence_ms + ms
            if self.silence_ms >= self.s.greeting_end_silence_ms:
                return self._speak("greeting_end", now)
            return []
        if speech:
            if self.first is None:
                self.first = self.audio_ms - ms
            self.speech_ms += ms
            self.last_end = self.audio_ms
            self.silence_ms = 0.0
            if self.last_end - self.first > self.s.machine_speech_ms and self.speech_ms >= self.s.min_speech_ms:
                return self._decide(Verdict.MACHINE, "long_greeting", now)
            return []
        self.silence_ms += ms
        if self.first is None or self.silence_ms < self.s.silence_after_speech_ms:
            return []
        if self.speech_ms < self.s.min_speech_ms:  # a click or a burst of noise: not a greeting
            self.first, self.speech_ms = None, 0.0
            return []
        if self.last_end - self.first <= self.s.human_speech_max_ms:
            return self._decide(Verdict.HUMAN, "short_greeting", now)
        return self._decide(Verdict.UNKNOWN, "medium_greeting", now)

    def beep(self, now: float) -> list[Decision]:
        """mod_avmd heard a beep."""
        if self.decided is None:
            return self._decide(Verdict.MACHINE, "beep", now)
        if self.waiting:
            return self._speak("beep", now)
        if self.decided.verdict is Verdict.MACHINE and not self.beep_told and self.s.mode == "notify":
            self.beep_told = self.finished = True
            return [BeepHeard(self._ms(now))]
        return []

    # -- time ---------------------------------------------------------------------------------------
    @property
    def deadline(self) -> float | None:
        """When :meth:`poll` has something to decide at the latest (None: only input can decide)."""
        if self.finished:
            return None
        if self.decided is None:
            if self.first is None:
                return self.start + self.s.no_speech_seconds
            return self.start + self._cap()
        return self.start + self.s.beep_timeout_seconds

    def _cap(self) -> float:
        """Undecided this long (frames stopped coming mid-greeting): unknown."""
        s = self.s
        return s.no_speech_seconds + (s.machine_speech_ms + s.silence_after_speech_ms) / 1000

    def poll(self, now: float) -> list[Decision]:
        """What the time decides by ``now``."""
        due = self.deadline
        if due is None or now < due:
            return []
        if self.decided is None:
            return self._decide(Verdict.UNKNOWN, "no_speech" if self.first is None else "undecided", now)
        if self.waiting:
            return self._speak("timeout", now)
        self.finished = True  # notify: no beep within beep_timeout_seconds
        return []
