"""Answering-machine detection on outbound calls, the call side (sans-I/O): which settings a call gets, what
FreeSWITCH's mod_avmd says, and what the call record keeps (docs/call-flow.md#answering-machine-detection).

The far end's speech is measured by the media bridge (:mod:`orchestrator.media.amd`: it has the audio); the
beep is FreeSWITCH's (mod_avmd, started with the ``avmd_start`` application through ``uuid_broadcast``: its
``avmd <uuid> start`` API never detects anything in 1.10.12 -- the API path leaves the session's settings
zeroed, 0 detectors -- as measured in tests/integration/test_amd_live.py). The bridge reports its verdict to
the controller (:meth:`Controller.machine_detection`), which records it, hangs up in ``hangup`` mode and stops
mod_avmd once it is no longer needed.

Precedence: each field comes from the most specific level that sets it -- the call (POST /v1/calls), the agent,
the trunk's outbound section, ``orchestrator.machine_detection`` -- else the model's default (mode ``off``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrator.config.model import Deployment, MachineDetection

#: mod_avmd's CUSTOM event subclasses (mod_avmd.c avmd_events_str)
BEEP, START, STOP = "avmd::beep", "avmd::start", "avmd::stop"
EVENTS = [BEEP, START, STOP]
#: the arguments of ``avmd_start``: listen to what the far end sends on an outbound leg (READ_REPLACE bug)
AVMD_ARGS = "inbound_channel=0,outbound_channel=1"
#: the record's ``result`` for a call hung up because a machine answered (``hangup`` mode)
MACHINE_DETECTED = "machine_detected"


class Invalid(ValueError):
    """Per-call settings that cannot be used (the API answers 400 with the reason)."""


def resolve(
    deployment: Deployment, *, trunk: str, agent: str, request: MachineDetection | dict[str, Any] | str | None = None
) -> MachineDetection:
    """The call's settings: each field from the call, else the agent, else the trunk, else the orchestrator."""
    levels: list[MachineDetection | None] = [deployment.orchestrator.machine_detection]
    t = next((t for t in deployment.trunks if t.name == trunk), None)
    levels.append(t.outbound.machine_detection if t is not None and t.outbound is not None else None)
    a = next((a for a in deployment.agents if a.name == agent), None)
    levels.append(a.machine_detection if a is not None else None)
    if request is not None and not isinstance(request, MachineDetection):
        try:
            request = MachineDetection.model_validate(request)
        except ValueError as exc:
            raise Invalid(f"machine_detection: {_first_error(exc)}") from None
    levels.append(request)
    merged: dict[str, object] = {}
    for level in levels:
        if level is not None:
            merged.update(level.given())
    try:
        settings = MachineDetection.model_validate(merged)
        settings.check_order()
        return settings
    except ValueError as exc:  # e.g. the call's human_speech_max_ms above the trunk's machine_speech_ms
        raise Invalid(f"machine_detection (merged with the agent's and trunk's): {_first_error(exc)}") from None


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"])
        return f"{where + ': ' if where else ''}{first['msg']}"
    return str(exc)


@dataclass(frozen=True)
class Beep:
    """An ``avmd::beep`` event: when (FreeSWITCH's clock, epoch seconds) and the tone mod_avmd measured."""

    at: float
    frequency: float | None
    amplitude: float | None


def beep(headers: dict[str, str], when: float | None) -> Beep | None:
    """The beep an ``avmd::beep`` event reports (``Beep-Status: DETECTED``; mod_avmd.c avmd_fire_event)."""
    if headers.get("Beep-Status") != "DETECTED" or when is None:
        return None
    return Beep(when, _number(headers.get("Frequency")), _number(headers.get("Amplitude")))


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return round(value, 1) if value is not None and 0 <= value < 1e9 else None


@dataclass
class MachineState:
    """One call's detection: its settings and what is known so far (the record's ``machine_detection``)."""

    settings: MachineDetection
    avmd: str = "off"  # off (not wanted), unavailable (mod_avmd not loaded), starting, running, stopped
    beep_at: float | None = None  # FreeSWITCH's clock
    beep_frequency: float | None = None
    verdict: str = ""  # human | machine | unknown, from the media bridge
    report: dict[str, Any] = field(default_factory=dict)  # the bridge's figures (verdict_ms, speech_ms …)
    verdict_at: float | None = None  # this process's clock, when the verdict reached the controller
    action: str = ""  # what the controller did: hangup
    done: bool = False  # the bridge needs nothing more (mod_avmd stopped)

    def to_dict(self, answered_at: float | None) -> dict[str, Any]:
        """The record's and the API's view."""
        out: dict[str, Any] = {"mode": self.settings.mode, "beep_detection": self.avmd}
        out["verdict"] = self.verdict or None
        out.update(self.report)
        if answered_at is not None and self.verdict_at is not None:
            out["answer_to_verdict_ms"] = max(0, round((self.verdict_at - answered_at) * 1000))
        out["beep"] = self.beep_at is not None
        if self.beep_at is not None:
            out["beep_at"] = round(self.beep_at, 3)
            if answered_at is not None:
                out["beep_ms"] = max(0, round((self.beep_at - answered_at) * 1000))
            out["beep_frequency"] = self.beep_frequency
        if self.action:
            out["action"] = self.action
        return out


#: what the media bridge may report (anything else is dropped): name -> type
REPORT_FIELDS: dict[str, type] = {
    "verdict_ms": int,
    "speech_ms": int,
    "greeting_ms": int,
    "reason": str,
    "speak_ms": int,
    "speak_reason": str,
}
VERDICTS = ("human", "machine", "unknown")


def accept_report(state: MachineState, data: dict[str, Any], now: float) -> None:
    """Merge the bridge's report into ``state`` (bounded; the first verdict stays)."""
    for key, kind in REPORT_FIELDS.items():
        value = data.get(key)
        if isinstance(value, str) and kind is str:
            state.report[key] = value[:64]
        elif isinstance(value, int) and not isinstance(value, bool) and kind is int:
            state.report[key] = max(0, min(value, 10**7))
    verdict = data.get("verdict")
    if verdict in VERDICTS and not state.verdict:
        state.verdict = verdict
        state.verdict_at = now
    if data.get("done") is True:
        state.done = True
