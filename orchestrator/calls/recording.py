"""Call recording, sans-I/O: which policy a call has, what each request does, what FreeSWITCH's events mean.

FreeSWITCH records (``uuid_record``, ``switch_ivr_async.c`` v1.10.12): a media bug on the caller's channel writes
one stereo file, channel 0 what the caller sent (the read stream), channel 1 what the caller heard (the write
stream: the agent), with ``RECORD_STEREO=true`` (recorded in fixture 10, checked on a real switch by
``tests/integration/test_recording_live.py``). ``RECORD_START`` fires when the bug is attached (the file is
open by then), ``RECORD_STOP`` when it is removed (``uuid_record … stop`` or the hang-up, before
``CHANNEL_HANGUP_COMPLETE``) and carries ``record_ms``, ``record_samples`` and ``record_file_size``.

The agent's streamed audio (jambonz ``mod_audio_fork``) is added to the write stream by the fork's own media bug:
the recording bug hears it only when it is attached *after* the fork's (fixture 10), so a recording always
starts after the fork start command.

Policy (``off`` / ``always`` / ``on_demand``): the called number's setting (inbound calls), else the agent's,
else the trunk's, else ``orchestrator.recording.policy``. ``always`` starts at the answer (after the
announcement, if any) and cannot be stopped, only paused; ``on_demand`` starts and stops when the API or the
agent asks. A call has one recording (one file, named by the call id): pause and resume it rather than stopping.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.config import routing
from orchestrator.config.model import Deployment, RecordingSettings

#: what the API and the agents may ask
ACTIONS = ("start", "stop", "pause", "resume")
#: file names the retention sweep may delete: ``<call id>.<format>`` and nothing else
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}\.(wav|flac|ogg)")
DAY = 86400.0


class RecState(enum.StrEnum):
    """Where a call's recording is."""

    NONE = "none"  # not asked for (yet)
    ANNOUNCING = "announcing"  # the announcement plays; the recording starts when it has
    STARTING = "starting"  # uuid_record start sent, RECORD_START not seen yet
    RECORDING = "recording"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


class Refusal(Exception):
    """A recording request that cannot be done now; ``code`` and ``status`` as the API reports them."""

    def __init__(self, code: str, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class Recording:
    """One call's recording, as the record and the API show it."""

    policy: str = "off"
    state: RecState = RecState.NONE
    path: str = ""
    requested_at: float | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    pauses: list[list[float | None]] = field(default_factory=list)  # [[paused_at, resumed_at or None], …]
    duration_seconds: float | None = None  # FreeSWITCH's record_ms: what the file holds
    size_bytes: int | None = None
    completion_cause: str = ""
    detail: str = ""  # why it failed
    announced: bool = False
    fork_waits: bool = field(default=False, repr=False)  # the audio fork starts when the announcement has played

    def to_dict(self) -> dict[str, Any]:
        """The record's and the API's ``recording``."""
        return {
            "policy": self.policy,
            "state": self.state,
            "path": self.path or None,
            "started_at": _round(self.started_at),
            "stopped_at": _round(self.stopped_at),
            "duration_seconds": self.duration_seconds,
            "size_bytes": self.size_bytes,
            "pauses": [[_round(a), _round(b)] for a, b in self.pauses],
            "announced": self.announced,
            "completion_cause": self.completion_cause or None,
            "detail": self.detail or None,
        }


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def policy_for(deployment: Deployment, *, direction: str, trunk: str, agent: str, number: str) -> str:
    """The call's recording policy: number (inbound: the number or block that answered it), agent, trunk, then the
    default — the first one set."""
    if direction == "inbound":
        entry = routing.table(deployment).entry(trunk, number)
        if entry is not None and entry.number.recording is not None:
            return entry.number.recording
    for a in deployment.agents:
        if a.name == agent and a.recording is not None:
            return a.recording
    for t in deployment.trunks:
        if t.name == trunk and t.recording is not None:
            return t.recording
    return deployment.orchestrator.recording.policy


def file_path(settings: RecordingSettings, call_id: str) -> str:
    """``<directory>/<call id>.<format>``."""
    assert settings.directory is not None
    return f"{settings.directory.rstrip('/')}/{call_id}.{settings.format}"


def variables() -> dict[str, str]:
    """The recording's own variables: stereo (caller left, agent right), no minimum length (a short file is kept)."""
    return {"RECORD_STEREO": "true", "RECORD_MIN_SEC": "0"}


def check(recording: Recording, action: str) -> None:
    """Whether ``action`` may be done now, or :class:`Refusal` saying why."""
    state, policy = recording.state, recording.policy
    if action not in ACTIONS:
        raise Refusal("invalid_action", f"a recording action is one of {', '.join(ACTIONS)}", 400)
    if policy == "off":
        raise Refusal("recording_off", "recording is off for this call (its number, agent, trunk or the default)")
    if action == "start":
        if state in (RecState.ANNOUNCING, RecState.STARTING, RecState.RECORDING, RecState.PAUSED):
            raise Refusal("already_recording", f"the call's recording is {state}")
        if state == RecState.STOPPED:
            raise Refusal("recording_stopped", "a call has one recording and it was stopped: pause and resume instead")
    elif action == "stop":
        if policy == "always":
            raise Refusal("recording_required", "this call is always recorded: pause it instead")
        if state not in (RecState.RECORDING, RecState.PAUSED, RecState.STARTING):
            raise Refusal("not_recording", f"the call's recording is {state}")
    elif action == "pause":
        if state != RecState.RECORDING:
            raise Refusal("not_recording", f"the call's recording is {state}, not recording")
    elif state != RecState.PAUSED:
        raise Refusal("not_paused", f"the call's recording is {state}, not paused")


def freeswitch_action(action: str, settings: RecordingSettings) -> str:
    """The ``uuid_record`` verb for a request: pause/resume are ``mask``/``unmask`` when paused parts stay silence."""
    if action in ("pause", "resume") and settings.pause_mode == "silence":
        return "mask" if action == "pause" else "unmask"
    return action


def note(recording: Recording, action: str, now: float) -> None:
    """What a request FreeSWITCH accepted changes (pause and resume: no event tells)."""
    if action == "pause":
        recording.state = RecState.PAUSED
        recording.pauses.append([now, None])
    elif action == "resume":
        recording.state = RecState.RECORDING
        if recording.pauses and recording.pauses[-1][1] is None:
            recording.pauses[-1][1] = now


def started(recording: Recording, path: str, when: float) -> bool:
    """``RECORD_START`` for ``path``: True when it is this call's recording."""
    if not path or (recording.path and path != recording.path):
        return False
    recording.path = path
    recording.started_at = recording.started_at or when
    if recording.state in (RecState.NONE, RecState.STARTING, RecState.ANNOUNCING, RecState.FAILED):
        recording.state = RecState.RECORDING
    return True


def stopped(recording: Recording, path: str, when: float, event_variable: Any) -> bool:
    """``RECORD_STOP`` for ``path`` (``event_variable(name)`` reads its ``variable_*`` headers)."""
    if not path or (recording.path and path != recording.path):
        return False
    recording.path = path
    recording.state = RecState.STOPPED
    recording.stopped_at = when
    if recording.pauses and recording.pauses[-1][1] is None:
        recording.pauses[-1][1] = when
    ms, size = event_variable("record_ms"), event_variable("record_file_size")
    if ms.isascii() and ms.isdigit():
        recording.duration_seconds = int(ms) / 1000
    if size.isascii() and size.isdigit():
        recording.size_bytes = int(size)
    recording.completion_cause = event_variable("record_completion_cause")[:64]
    if event_variable("RECORD_DISCARDED") == "true":
        recording.detail = "FreeSWITCH discarded the file (nothing was recorded)"
        recording.size_bytes = None
    return True


def expired(entries: Iterable[tuple[str, float]], now: float, days: int) -> list[str]:
    """Names of recordings (``<call id>.<format>``) whose modification time is ``days`` or more before ``now``."""
    limit = now - days * DAY
    return sorted(name for name, mtime in entries if _NAME.fullmatch(name) and mtime <= limit)
