"""An attended (warm) transfer attempt, sans-I/O: the target leg's way from dialling to bridged or failed.

The caller stays with the agent (its fork keeps running) while the orchestrator originates the target through
a trunk (``originate … &park()``). The target's leg moves through :class:`Stage`:

``dialing`` (originate sent) → ``ringing`` (180/183) → ``answered`` (CHANNEL_ANSWER; the leg parks next) →
``briefing`` (the announcement plays to the target: ``uuid_broadcast``, done at its CHANNEL_EXECUTE_COMPLETE) →
``bridging`` (the caller's fork is stopped and ``uuid_bridge caller target`` sent) → ``bridged``
(CHANNEL_BRIDGE); or ``failed`` from any stage before ``bridged``: the target was busy, declined, did not answer
within the ring timeout, hung up during the brief, the caller hung up, the bridge was refused, or nothing
happened before the attempt's deadline.

Each method takes the time (FreeSWITCH's clock or the tracker's) and returns the :class:`Step` the tracker
turns into commands; nothing here sends anything. The tracker (:mod:`orchestrator.calls.tracker`) routes the
target leg's events here by its UUID (ours: ``origination_uuid``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from orchestrator.calls import outcome

#: the brief text kept for the record and the INVITE header (the agent's words, bounded)
MAX_BRIEF = 1024


class Stage(enum.StrEnum):
    """Where the target leg is."""

    DIALING = "dialing"
    RINGING = "ringing"
    ANSWERED = "answered"
    BRIEFING = "briefing"
    BRIDGING = "bridging"
    BRIDGED = "bridged"
    FAILED = "failed"


class Step(enum.Enum):
    """What the tracker does next."""

    NOTHING = "nothing"
    BRIEF = "brief"  # play the announcement to the target
    BRIDGE = "bridge"  # stop the caller's fork, uuid_bridge caller target
    CANCEL = "cancel"  # hang the target leg up; the call goes on with the agent
    REFORK = "refork"  # hang the target leg up and fork the caller again (its fork was stopped for the bridge)
    FAILED = "failed"  # the target leg is gone: tell the agent


#: stages in which the attempt is over
DONE = frozenset({Stage.BRIDGED, Stage.FAILED})

#: why an attempt failed, in the words the agent is told (the record keeps the reason word too)
REASONS = {
    "busy": "the target is busy",
    "no_answer": "the target did not answer",
    "rejected": "the target declined",
    "not_found": "the target does not exist",
    "unavailable": "the target is unavailable",
    "cancelled": "the target leg was cancelled",
    "incompatible": "the target cannot take the call's media",
    "auth_failed": "the trunk refused the credentials",
    "target_hung_up": "the target hung up before being connected",
    "caller_hung_up": "the caller hung up",
    "bridge_failed": "the caller could not be connected to the target",
    "timeout": "the attempt had no outcome in time",
    "originate_failed": "the target could not be dialled",
}


@dataclass
class Attempt:
    """One attended transfer: the target leg (``leg``: its UUID) and how far it got."""

    leg: str
    target: str  # as asked (E.164 or sip: URI)
    trunk: str
    brief: str
    announcement: str  # played to the target before the bridge ("" : none)
    ring_timeout: int  # seconds (FreeSWITCH's originate_timeout)
    started_at: float
    due: float  # no outcome by then: the attempt fails (the controller arms a timer)
    stage: Stage = Stage.DIALING
    created: bool = False  # FreeSWITCH created the leg (its HANGUP_COMPLETE will tell how it ended)
    created_at: float | None = None  # when, by FreeSWITCH's clock (CHANNEL_CREATE)
    ringing_at: float | None = None
    answered_at: float | None = None
    briefed_at: float | None = None
    bridged_at: float | None = None
    failed_at: float | None = None
    reason: str = ""  # why it failed (:data:`REASONS`)
    sip_status: int | None = None  # the target's final SIP status, when it sent one (486, 603 …)
    sip_phrase: str = ""
    cause: str = ""  # the target leg's hang-up cause
    fork_stopped: bool = False  # the caller's fork was stopped for the bridge

    @property
    def active(self) -> bool:
        """Not bridged nor failed yet."""
        return self.stage not in DONE

    @property
    def ring_seconds(self) -> float | None:
        """From the INVITE (the leg's creation; else the request) to the answer, or to the failure when it never
        answered."""
        end = self.answered_at if self.answered_at is not None else self.failed_at
        start = self.created_at if self.created_at is not None else self.started_at
        return round(max(0.0, end - start), 3) if end is not None else None

    # -- the target leg's events ------------------------------------------------------------------
    def leg_created(self, when: float | None = None) -> None:
        """CHANNEL_CREATE of the target leg: it exists in FreeSWITCH (since ``when``)."""
        self.created = True
        if self.created_at is None:
            self.created_at = when

    def progress(self, when: float) -> None:
        """180 / 183 from the target."""
        self.created = True
        if self.stage is Stage.DIALING:
            self.stage = Stage.RINGING
            self.ringing_at = when

    def answered(self, when: float) -> None:
        """CHANNEL_ANSWER of the target leg (it parks next: :meth:`parked`)."""
        self.created = True
        if self.stage in (Stage.DIALING, Stage.RINGING):
            self.stage = Stage.ANSWERED
            self.answered_at = when

    def parked(self) -> Step:
        """The answered target leg is in its park (``&park()``): brief it or bridge it now."""
        if self.stage is not Stage.ANSWERED:
            return Step.NOTHING
        if self.announcement:
            self.stage = Stage.BRIEFING
            return Step.BRIEF
        return self._bridge()

    def brief_done(self, when: float) -> Step:
        """The announcement has played to the target (or could not be played: the brief text is in the record)."""
        if self.stage is not Stage.BRIEFING:
            return Step.NOTHING
        self.briefed_at = when
        return self._bridge()

    def _bridge(self) -> Step:
        self.stage = Stage.BRIDGING
        self.fork_stopped = True
        return Step.BRIDGE

    def bridged(self, when: float) -> bool:
        """CHANNEL_BRIDGE of the caller and the target: the transfer succeeded (True the first time)."""
        if self.stage is not Stage.BRIDGING:
            return False
        self.stage = Stage.BRIDGED
        self.bridged_at = when
        return True

    def leg_ended(self, hangup: outcome.Hangup, when: float) -> Step:
        """CHANNEL_HANGUP_COMPLETE of the target leg: before the bridge, the attempt failed."""
        self.cause = self.cause or hangup.cause
        if not self.active:
            return Step.NOTHING
        if self.answered_at is None:
            reason = hangup.result if hangup.result in REASONS else "unavailable"
            status = hangup.sip_status
            if status is not None and status >= 300 and status != 487:  # 487: we cancelled it (ring timeout)
                self.sip_status, self.sip_phrase = status, hangup.sip_phrase[:128]
        else:
            reason = "target_hung_up"
        return self._fail(reason, when, refork=self.fork_stopped, cancel=False)

    def originate_failed(self, cause: str, when: float) -> Step:
        """The originate's ``-ERR <CAUSE>``: only news when FreeSWITCH never created the leg (gateway down …)."""
        if not self.active or self.created:
            return Step.NOTHING
        self.cause = cause[:64]
        result = outcome.CAUSE_RESULTS.get(cause, "originate_failed")
        return self._fail(result if result in REASONS else "originate_failed", when, refork=False, cancel=False)

    # -- the caller's side and the clock ----------------------------------------------------------
    def caller_gone(self, when: float) -> Step:
        """The caller hung up during the attempt: the target leg is cancelled."""
        if not self.active:
            return Step.NOTHING
        return self._fail("caller_hung_up", when, refork=False, cancel=True)

    def bridge_failed(self, when: float) -> Step:
        """``uuid_bridge`` was refused: the target leg goes, the caller goes back to the agent."""
        if self.stage is not Stage.BRIDGING:
            return Step.NOTHING
        return self._fail("bridge_failed", when, refork=True, cancel=True)

    def expire(self, now: float) -> Step:
        """The deadline passed without an outcome (FreeSWITCH's events never came)."""
        if not self.active or now < self.due:
            return Step.NOTHING
        return self._fail("timeout", now, refork=self.fork_stopped, cancel=True)

    def _fail(self, reason: str, when: float, *, refork: bool, cancel: bool) -> Step:
        self.stage = Stage.FAILED
        self.reason = reason
        self.failed_at = when
        if refork:
            return Step.REFORK
        return Step.CANCEL if cancel else Step.FAILED

    # -- what is told ------------------------------------------------------------------------------
    def detail(self) -> str:
        """The failure in words (the agent's tool result adds the SIP status)."""
        if self.stage is Stage.BRIDGED:
            return "bridged"
        text = REASONS.get(self.reason, self.reason)
        if self.reason == "no_answer":
            text += f" within {self.ring_timeout} s"
        elif self.sip_phrase:
            text = f"{self.sip_phrase}: {text}"
        return text

    def to_dict(self) -> dict[str, Any]:
        """The record's and the API's view of the attempt."""
        return {
            "leg": self.leg,
            "trunk": self.trunk,
            "stage": self.stage,
            "brief": self.brief,
            "announcement": self.announcement or None,
            "ring_timeout_seconds": self.ring_timeout,
            "started_at": _round(self.started_at),
            "created_at": _round(self.created_at),
            "ringing_at": _round(self.ringing_at),
            "answered_at": _round(self.answered_at),
            "briefed_at": _round(self.briefed_at),
            "bridged_at": _round(self.bridged_at),
            "failed_at": _round(self.failed_at),
            "ring_seconds": self.ring_seconds,
            "answered": self.answered_at is not None,
            "reason": self.reason or None,
            "sip_status": self.sip_status,
            "sip_phrase": self.sip_phrase or None,
            "cause": self.cause or None,
        }


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def clean_brief(text: object) -> str:
    """The brief as kept: printable text, blanks collapsed, at most :data:`MAX_BRIEF` characters ("" for none)."""
    if not isinstance(text, str):
        return ""
    out = "".join(c if c.isprintable() else " " for c in text)
    return " ".join(out.split())[:MAX_BRIEF]
