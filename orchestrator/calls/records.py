"""Call records: one JSON object per ended call, appended to a JSONL file."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from orchestrator.calls.machine import MACHINE_DETECTED
from orchestrator.calls.tracker import Call

log = logging.getLogger("sipagent.records")


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


#: media outcomes (docs/media.md) that mean the call was ended because its media path failed
MEDIA_FAILURES = frozenset({"media_failed", "media_lost"})
#: ... or because its agent failed (never reached, broke off, stalled, or the bridge failed on its input)
AGENT_FAILURES = frozenset(
    {
        "agent_unreachable",
        "agent_tls_failed",
        "agent_signed_url_failed",
        "agent_handshake_failed",
        "agent_connect_timeout",
        "agent_connect_failed",
        "agent_first_message_timeout",
        "agent_closed",
        "agent_stalled",
        "bridge_error",
    }
)


def result(call: Call) -> str:
    """What happened, in one word: FreeSWITCH's result, unless the orchestrator ended an answered call because
    its agent (``agent_failed``) or its media path (``media_failed``) failed — the media outcome says which —, or a
    trunk's inbound limit refused it (``limit_exceeded``: 503 with Retry-After, ``limit`` says which), or an answering
    machine answered an outbound call in machine detection's ``hangup`` mode (``machine_detected``)."""
    if call.refused == "limit_exceeded":
        return "limit_exceeded"  # a trunk's inbound limit refused it (503 + Retry-After): not the far end failing
    if call.machine is not None and call.machine.action == "hangup" and call.hangup_by == "orchestrator":
        return MACHINE_DETECTED  # hangup mode: an answering machine answered
    base = call.hangup.result if call.hangup else "unknown"
    outcome = (call.media or {}).get("outcome")
    if base == "completed" and call.hangup_by == "orchestrator":
        if outcome in AGENT_FAILURES:
            return "agent_failed"
        if outcome in MEDIA_FAILURES:
            return "media_failed"
    return base


def quality(call: Call) -> dict[str, Any]:
    """The record's ``quality``: FreeSWITCH's figures at hang-up (``mos``, ``packets_in`` …, as always) and, for a
    call that was sampled while up, ``series`` (the live samples, oldest first) and ``summary`` (over all samples:
    ``mos_min``, ``mos_avg``, ``jitter_ms_max``, ``loss_pct_max``, ``low_events`` …; calls/quality.py)."""
    out: dict[str, Any] = dict(call.quality)
    track = call.live_quality
    if track is not None and track.samples:
        out["series"] = track.points()
        out["summary"] = track.summary()
    return out


def build(call: Call, lost: bool = False) -> dict[str, Any]:
    """The record of an ended call."""
    # every timing is FreeSWITCH's (tracker: one clock); a clock step on the node still never gives a negative time
    setup = max(0.0, call.answered_at - call.created_at) if call.answered_at and call.created_at else None
    duration = (call.ended_at or 0) - call.answered_at if call.answered_at and call.ended_at else 0.0
    if call.direction == "inbound":
        caller, callee = call.remote, call.number
    else:
        caller, callee = call.number, call.remote
    return {
        "id": call.uuid,
        "node": call.node,
        "direction": call.direction,
        "from": caller,
        "to": callee,
        "trunk": call.trunk,
        "agent": call.agent,
        "sip_call_id": call.sip_call_id,
        "source": call.source or None,
        "codec": call.codec,
        "rate": call.rate,
        "codec_changes": call.codec_changes,
        "srtp": call.srtp or None,
        "progress": call.progress,
        "timings": {
            "created": _round(call.created_at),
            "ringing": _round(call.progress_at),
            "early_media": _round(call.early_media_at),
            "answered": _round(call.answered_at),
            "ended": _round(call.ended_at),
            "setup_seconds": _round(setup),
            "duration_seconds": _round(max(duration, 0.0)),
        },
        "result": result(call),
        "hangup": call.hangup.to_dict() if call.hangup else None,
        "hangup_by": call.hangup_by or None,
        "originate_error": call.originate_error or None,
        "refused": call.refused or None,
        "limit": call.limit or None,
        "hold": {"count": call.holds, "seconds": _round(call.held_seconds)} if call.holds else None,
        "route": {"number": call.route, "rule": call.rule} if call.route else None,
        "transfer": call.transfer.to_dict() if call.transfer else None,
        "dtmf": {"received": call.dtmf_in, "sent": call.dtmf_out},
        "quality": quality(call),
        "fork": call.fork,
        "reattached": call.reattached,
        "lost": lost,
        "media": call.media or None,
        "recording": call.recording.to_dict() if call.recording and call.recording.state != "none" else None,
        "machine_detection": call.machine.to_dict(call.answered_at) if call.machine is not None else None,
    }


class RecordWriter:
    """Appends records to a JSONL file from a background task (disk writes never block the loop).

    Records that arrive within ``linger`` seconds of each other go to disk in one write from one worker-thread hop
    (a burst of calls costs one hop, not one each); the file is opened per write, so log rotation needs no signal.
    """

    def __init__(self, path: Path, linger: float = 0.2) -> None:
        self.path = path
        self.linger = linger
        self._queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.written = 0

    def start(self) -> None:
        """Start the writer task."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name="call-records")

    def write(self, record: dict[str, Any]) -> None:
        """Queue a record."""
        self._queue.put_nowait(record)

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._task is not None:
            self._queue.put_nowait(None)
            await self._task
            self._task = None

    async def _run(self) -> None:
        done = False
        while not done:
            batch = [await self._queue.get()]
            if batch[0] is not None and self.linger > 0:
                await asyncio.sleep(self.linger)
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            done = batch[-1] is None
            lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in batch if r is not None)
            if lines:
                try:
                    await asyncio.to_thread(self._append, lines)
                    self.written += lines.count("\n")
                except OSError as exc:
                    log.error("cannot write call records to %s: %s", self.path, exc)

    def _append(self, lines: str) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(lines)
