"""Call state, sans-I/O: FreeSWITCH events in, commands and notifications out.

:class:`CallTracker` knows every call this orchestrator handles, on every node. ``handle(node,
event)`` updates the call and returns what to do next: :class:`Api` commands to run on that node
and :class:`Notice` items for the rest of the orchestrator (agents, records, metrics). Nothing here
does I/O, so the whole call lifecycle is tested by feeding events.

Inbound: the rendered dialplan parks the call with ``sipagent_*`` variables (docs/call-flow.md);
on ``CHANNEL_PARK`` the tracker claims it (``uuid_park``, which also cancels the hand-off
timeout), prepares it and answers; on ``CHANNEL_ANSWER`` it starts the audio fork at the codec's
rate. Outbound calls are registered before ``originate`` with the UUID we chose, so every event of
the new channel is recognised. Resync after a (re)connection rebuilds calls from ``uuid_dump``.

States are :class:`enum.StrEnum` members (:class:`CallState`, :class:`ForkState`, :class:`NoticeKind`,
:class:`TransferStatus`): each is its value, so records, API answers, metric labels and log lines read
exactly the words they always did, and comparing with those words still works.
"""

from __future__ import annotations

import enum
import hmac
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from orchestrator import channelvars, dtmf
from orchestrator.calls import attended as att
from orchestrator.calls import machine as amd
from orchestrator.calls import outcome
from orchestrator.calls import recording as rec
from orchestrator.calls.deadmedia import Watch
from orchestrator.calls.quality import Track
from orchestrator.channelvars import ANSWER_VARIABLES, RECORDING_PATH, TRANSFER_OF
from orchestrator.channelvars import PREFIX as VAR
from orchestrator.config.model import RecordingSettings
from orchestrator.config.routing import Table
from orchestrator.esl import commands
from orchestrator.esl.protocol import Event
from orchestrator.media import dialects, fork
from orchestrator.media.dialects import ForkEvent

Direction = Literal["inbound", "outbound"]

#: events the tracker needs (plus the CUSTOM subclasses below)
EVENTS = [
    "CHANNEL_CREATE",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER",
    "CHANNEL_PARK",
    "CHANNEL_BRIDGE",
    "CHANNEL_UNBRIDGE",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_HOLD",
    "CHANNEL_UNHOLD",
    "DTMF",
    "BACKGROUND_JOB",
    "RECORD_START",
    "RECORD_STOP",
    "CHANNEL_EXECUTE_COMPLETE",  # the recording announcement has played
    "CODEC",  # a re-INVITE changed the codec: the fork restarts at the new rate
]
CUSTOM = [*dialects.EVENT_SUBCLASSES, "sofia::notify_refer", *amd.EVENTS]

#: an attended transfer fails this long after its ring and brief time-outs if FreeSWITCH never said how it went
ATTENDED_SLACK = 10.0

_SIPFRAG = re.compile(r"SIP/2\.0 (\d{3})\s*(.*)")
_TMPFILE = re.compile(r"/[A-Za-z0-9_./-]+\.(tmp\.r8|tmp\.r16|tmp\.r24|tmp\.r32|tmp\.r48|tmp\.wav|r8|r16|wav)")


@dataclass(frozen=True)
class Api:
    """Run ``api <command>`` on ``node`` (for ``call``; ``then`` names a follow-up for the tracker)."""

    node: str
    command: str
    call: str = ""
    optional: bool = False  # its failure does not stop the commands after it


class CallState(enum.StrEnum):
    """Where a call is (its value is what the API, records and logs show)."""

    NEW = "new"
    CLAIMED = "claimed"  # inbound: taken from the dialplan's park, being answered
    DIALING = "dialing"  # outbound: originate sent, no channel yet
    RINGING = "ringing"
    EARLY = "early"  # outbound: early media (183)
    ANSWERED = "answered"
    TRANSFERRING = "transferring"
    BRIDGED = "bridged"  # a bridge transfer connected the caller to its target
    ENDED = "ended"


class ForkState(enum.StrEnum):
    """The call's audio fork towards the media bridge."""

    NONE = "none"  # never started
    STARTING = "starting"  # the start command was sent; waiting for the module to connect
    CONNECTED = "connected"
    FAILED = "failed"
    CLOSED = "closed"


class NoticeKind(enum.StrEnum):
    """What a :class:`Notice` says."""

    PROGRESS = "progress"
    ANSWERED = "answered"
    DTMF = "dtmf"
    FORK_CONNECTED = "fork_connected"
    FORK_FAILED = "fork_failed"
    FORK_DISCONNECTED = "fork_disconnected"
    FORK_BUFFER_OVERRUN = "fork_buffer_overrun"
    FORK_ERROR = "fork_error"
    TRANSFER = "transfer"
    HANGUP = "hangup"
    ENDED = "ended"
    QUALITY_LOW = "quality_low"  # the call's MOS fell below orchestrator.quality.min_mos (calls/quality.py)
    QUALITY_OK = "quality_ok"  # ... and came back
    HOLD = "hold"  # the far end put the call on hold (re-INVITE sendonly/inactive) or resumed it: data {"held": bool}
    RECORDING = "recording"  # the call's recording started, stopped, was paused or resumed (data: state)
    CODEC = "codec"  # the far end changed the codec mid-call (data: codec, rate, previous_rate, fork_restarted)
    MACHINE = "machine"  # answering-machine detection: data {"event": "beep", "frequency"} or {"event": "verdict", …}


#: fork module events passed on as they are
_FORK_NOTICES = {ForkEvent.BUFFER_OVERRUN: NoticeKind.FORK_BUFFER_OVERRUN, ForkEvent.ERROR: NoticeKind.FORK_ERROR}


class TransferStatus(enum.StrEnum):
    """How a :class:`TransferAttempt` went."""

    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Notice:
    """Something the rest of the orchestrator should know: ``kind`` and the call it concerns."""

    kind: NoticeKind
    call: Call
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TransferAttempt:
    """A transfer attempt and how it went (``attended``: the target leg of an attended transfer)."""

    method: Literal["refer", "bridge", "attended"]
    target: str
    status: TransferStatus = TransferStatus.PENDING
    sip_status: int | None = None
    detail: str = ""
    mode: Literal["blind", "attended"] = "blind"
    attended: att.Attempt | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record's and the API's view."""
        out = dict(vars(self))
        if self.attended is not None:
            out["attended"] = self.attended.to_dict()
        return out


@dataclass(eq=False)
class Call:
    """One call, inbound or outbound, as the orchestrator knows it."""

    uuid: str
    node: str
    direction: Direction
    trunk: str = ""
    agent: str = ""
    number: str = ""  # ours: the called number (inbound) or the caller ID we present (outbound)
    remote: str = ""  # theirs: the caller (inbound) or the destination (outbound)
    source: str = ""  # behind an edge: where the carrier's INVITE came from (X-Sipagent-Source), else ""
    state: CallState = CallState.NEW
    created_at: float = 0.0
    progress_at: float | None = None
    early_media_at: float | None = None
    answered_at: float | None = None
    hangup_at: float | None = None
    ended_at: float | None = None
    progress: list[int] = field(default_factory=list)
    codec: str = ""
    rate: int = 0
    srtp: str = ""
    sip_call_id: str = ""
    variables: dict[str, str] = field(default_factory=dict)  # what the agent gets
    hangup: outcome.Hangup | None = None
    hangup_by: str = ""  # remote, agent, api, orchestrator, freeswitch
    transfer: TransferAttempt | None = None
    fork: ForkState = ForkState.NONE
    fork_nonce: str = field(default="", repr=False)  # the started fork's token nonce, until the bridge claims it
    fork_codec_rate: int = 0  # the codec rate when the fork was last started (mod_audio_fork sizes itself by it)
    codec_changes: int = 0  # mid-call codec changes (re-INVITE)
    originate_error: str = ""
    quality: dict[str, float] = field(default_factory=dict)
    dtmf_in: str = ""
    dtmf_out: str = ""
    reattached: bool = False
    media: dict[str, Any] = field(default_factory=dict)  # the media bridge's summary (agent, frames, transcript)
    agent_overrides: dict[str, str] = field(default_factory=dict)  # per-call agent settings (API)
    refused: str = ""  # why the rendered dialplan refused an inbound call (srtp_required, unknown_number, ...)
    limit: str = ""  # refused limit_exceeded: which of the trunk's limits (max_calls, calls_per_second)
    held_since: float | None = None  # the far end holds the call since (CHANNEL_HOLD), until CHANNEL_UNHOLD
    holds: int = 0  # how often the far end put the call on hold
    held_seconds: float = 0.0  # for how long in all (ended holds)
    recording: rec.Recording | None = None  # set at the answer (calls/recording.py)
    route: str = ""  # inbound: the numbers[] entry (number or block) that answered
    rule: int | None = None  # inbound: the index of the entry's rule that chose the agent (None: the entry's own)
    machine: amd.MachineState | None = None  # outbound answering-machine detection (calls/machine.py)
    live_quality: Track | None = field(default=None, repr=False)  # sampled while up (calls/sampler.py)
    dead_media: Watch | None = field(default=None, repr=False)  # RTP outside holds (calls/deadmedia.py)

    @property
    def quality_series(self) -> list[dict[str, Any]]:
        """The live quality samples of the call, oldest first (bounded: orchestrator.quality.series_length)."""
        return self.live_quality.points() if self.live_quality is not None else []

    @property
    def active(self) -> bool:
        """True until FreeSWITCH reported the hang-up."""
        return self.state != CallState.ENDED

    def summary(self) -> dict[str, Any]:
        """The call's state for the API."""
        return {
            "id": self.uuid,
            "node": self.node,
            "direction": self.direction,
            "state": self.state,
            "trunk": self.trunk,
            "agent": self.agent,
            "number": self.number,
            "remote": self.remote,
            "progress": self.progress,
            "codec": self.codec,
            "rate": self.rate,
            "srtp": self.srtp,
            "created_at": self.created_at,
            "answered_at": self.answered_at,
            "ended_at": self.ended_at,
            "hangup": self.hangup.to_dict() if self.hangup else None,
            "hangup_by": self.hangup_by or None,
            "transfer": self.transfer.to_dict() if self.transfer else None,
            "fork": self.fork,
            "quality": self.live_quality.current() if self.live_quality is not None else None,
            "held": self.held_since is not None,
            "recording": self.recording.to_dict() if self.recording is not None else None,
            "machine_detection": self.machine.to_dict(self.answered_at) if self.machine is not None else None,
        }


def _ts(value: str) -> float | None:
    """FreeSWITCH microsecond timestamps ("0" = not happened) to epoch seconds."""
    return int(value) / 1e6 if value.isascii() and value.isdigit() and value != "0" else None


#: call ids the tracker adopts: what FreeSWITCH generates (and our uuid4s), never anything a command could misread
_CALL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")
#: inbound header values passed on to the agent are cut to this (the fork metadata is capped at 8 KiB)
MAX_VARIABLE_VALUE = 1024


def fork_rate(rate: int) -> str:
    """The ``uuid_audio_fork`` sampling argument for a codec rate: 16k for wideband, else 8k."""
    return "16k" if rate >= 16000 else "8k"


@dataclass
class Policy:
    """What the tracker needs from the deployment (kept small so tests build it easily)."""

    agents: dict[str, str]  # agent name -> protocol
    routing: Table  # the deployment's numbers and blocks: which agent answers (config/routing.py)
    fork_command: Callable[[Call], str]  # builds the `uuid_audio_fork <uuid> start …` command
    fork_module: str = "mod_audio_fork"  # or mod_audio_stream
    nonce: Callable[[], str] = fork.new_nonce  # one per fork start: its token is good for that start only
    headers: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # trunk -> [(X-header, variable)]
    answer_variables: dict[str, str] = field(default_factory=lambda: dict(ANSWER_VARIABLES))
    recording_policy: Callable[[Call], str] = lambda call: "off"  # calls/recording.py policy_for
    recording: RecordingSettings = field(default_factory=RecordingSettings)


class CallTracker:
    """All calls, fed by events from every node."""

    def __init__(self, policy: Policy, clock: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.calls: dict[str, Call] = {}
        self.clock = clock
        #: attended transfers' target legs (their UUID, ours) -> the call they are dialled for
        self.legs: dict[str, str] = {}
        #: the nodes that have mod_avmd loaded (``module_exists mod_avmd`` at each connection): only there may
        #: ``avmd_start`` run -- an application FreeSWITCH does not know hangs the call up
        self.avmd_nodes: set[str] = set()

    # -- entry points ---------------------------------------------------------------------------
    def handle(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        """Process one event from ``node``; returns commands and notices."""
        name = event.name
        if event.uuid in self.legs:
            return self._leg_event(event)
        if name == "CUSTOM":
            return self._custom(node, event)
        handler = _HANDLERS.get(name)
        if handler is None:
            return [], []
        return handler(self, node, event)

    def expect_outbound(
        self, uuid: str, node: str, *, trunk: str, agent: str, destination: str, caller_id: str
    ) -> Call:
        """Register an outbound call before its ``originate`` is sent (its UUID is ours)."""
        call = Call(
            uuid,
            node,
            "outbound",
            trunk=trunk,
            agent=agent,
            number=caller_id,
            remote=destination,
            state=CallState.DIALING,
            created_at=self.clock(),
        )
        call.variables = {"caller_id": caller_id, "called_number": destination, "trunk": trunk, "call_id": uuid}
        self.calls[uuid] = call
        return call

    def originate_result(self, uuid: str, body: str) -> list[Notice]:
        """The BACKGROUND_JOB body of our ``originate``: ``+OK <uuid>`` or ``-ERR <CAUSE>``."""
        call = self.calls.get(uuid)
        if call is None or body.startswith("+OK"):
            return []
        call.originate_error = body.strip().removeprefix("-ERR").strip()
        if call.state == CallState.DIALING:  # no channel was ever created (e.g. gateway unknown or down)
            call.hangup = outcome.Hangup(
                call.originate_error or "NORMAL_TEMPORARY_FAILURE",
                None,
                None,
                "",
                "",
                outcome.CAUSE_RESULTS.get(call.originate_error, "failed"),
            )
            return self._end(call, "freeswitch")
        return []

    def mark_hangup_by(self, uuid: str, who: str) -> None:
        """Remember who asked for the hang-up we are about to send."""
        call = self.calls.get(uuid)
        if call is not None and not call.hangup_by:
            call.hangup_by = who

    def start_transfer(self, uuid: str, method: Literal["refer", "bridge"], target: str) -> Call | None:
        """Note a transfer attempt (the controller sends the command)."""
        call = self.calls.get(uuid)
        if call is None or call.state == CallState.ENDED:
            return None
        call.transfer = TransferAttempt(method, target)
        call.state = CallState.TRANSFERRING
        return call

    def transfer_failed(self, uuid: str, detail: str) -> list[Notice]:
        """The transfer command itself failed: the call stays with the agent."""
        call = self.calls.get(uuid)
        if call is None or call.transfer is None:
            return []
        a = call.transfer.attended
        if a is not None:
            if not a.active:
                return []
            a.stage, a.reason, a.failed_at = att.Stage.FAILED, "originate_failed", self.clock()
            self.legs.pop(a.leg, None)
        call.transfer.status, call.transfer.detail = TransferStatus.FAILED, detail
        if call.state == CallState.TRANSFERRING:
            call.state = CallState.ANSWERED
        return [Notice(NoticeKind.TRANSFER, call, {"succeeded": False, "detail": detail})]

    # -- attended transfers (calls/attended.py) -------------------------------------------------
    def start_attended(
        self,
        uuid: str,
        leg: str,
        *,
        target: str,
        trunk: str,
        brief: str,
        announcement: str,
        ring_timeout: int,
        brief_timeout: int,
    ) -> Call | None:
        """Note an attended transfer whose target leg ``leg`` (a UUID of ours) the controller originates now."""
        call = self.calls.get(uuid)
        if call is None or call.state == CallState.ENDED:
            return None
        now = self.clock()
        due = now + ring_timeout + (brief_timeout if announcement else 0) + ATTENDED_SLACK
        attempt = att.Attempt(leg, target, trunk, brief, announcement, ring_timeout, now, due)
        call.transfer = TransferAttempt("attended", target, mode="attended", attended=attempt)
        call.state = CallState.TRANSFERRING
        self.legs[leg] = uuid
        return call

    def _attempt(self, uuid: str) -> tuple[Call, att.Attempt] | None:
        call = self.calls.get(uuid)
        a = call.transfer.attended if call is not None and call.transfer is not None else None
        return (call, a) if call is not None and a is not None else None

    def attended_originate_result(self, leg: str, body: str) -> tuple[list[Api], list[Notice]]:
        """The BACKGROUND_JOB body of the target leg's ``originate`` (``-ERR <CAUSE>``: news if no leg was made)."""
        found = self._attempt(self.legs.get(leg, ""))
        if found is None or body.startswith("+OK") or found[1].leg != leg:
            return [], []
        call, a = found
        cause = body.strip().removeprefix("-ERR").strip().split(" ")[0][:64] or "NORMAL_TEMPORARY_FAILURE"
        return self._attended_step(call, a, a.originate_failed(cause, self.clock()), leg_alive=False)

    def attended_expired(self, uuid: str) -> tuple[list[Api], list[Notice]]:
        """The attempt's deadline (:attr:`~orchestrator.calls.attended.Attempt.due`) passed: fail it if still on."""
        found = self._attempt(uuid)
        if found is None:
            return [], []
        call, a = found
        return self._attended_step(call, a, a.expire(self.clock()))

    def attended_bridge_failed(self, uuid: str) -> tuple[list[Api], list[Notice]]:
        """``uuid_bridge`` was refused: the target leg goes, the caller goes back to the agent."""
        found = self._attempt(uuid)
        if found is None:
            return [], []
        call, a = found
        return self._attended_step(call, a, a.bridge_failed(self.clock()))

    def attended_brief_failed(self, leg: str) -> tuple[list[Api], list[Notice]]:
        """The announcement could not be played to the target: it is connected without it (the brief text is in
        the record)."""
        found = self._attempt(self.legs.get(leg, ""))
        if found is None or found[1].leg != leg:
            return [], []
        call, a = found
        return self._attended_step(call, a, a.brief_done(self.clock()))

    def _leg_event(self, event: Event) -> tuple[list[Api], list[Notice]]:
        """An event of an attended transfer's target leg."""
        leg = event.uuid
        found = self._attempt(self.legs[leg])
        if found is None or found[1].leg != leg:
            if event.name == "CHANNEL_HANGUP_COMPLETE":
                self.legs.pop(leg, None)
            return [], []
        call, a = found
        when = _when(event) or self.clock()
        name = event.name
        if name == "CHANNEL_CREATE":
            a.leg_created(_ts(event.get("Caller-Channel-Created-Time")) or when)
        elif name in ("CHANNEL_PROGRESS", "CHANNEL_PROGRESS_MEDIA"):
            a.progress(when)
        elif name == "CHANNEL_ANSWER":
            a.answered(when)
        elif name == "CHANNEL_PARK":
            return self._attended_step(call, a, a.parked())
        elif name == "CHANNEL_EXECUTE_COMPLETE":
            if event.get("Application") == "playback" and event.get("Application-Data") == a.announcement:
                return self._attended_step(call, a, a.brief_done(when))
        elif name == "CHANNEL_BRIDGE":
            return self._attended_bridged(call, a, event)
        elif name == "CHANNEL_HANGUP_COMPLETE":
            self.legs.pop(leg, None)
            hangup = outcome.from_variables(event.variable, a.answered_at is not None)
            return self._attended_step(call, a, a.leg_ended(hangup, when), leg_alive=False)
        return [], []

    def _attended_bridged(self, call: Call, a: att.Attempt, event: Event) -> tuple[list[Api], list[Notice]]:
        """CHANNEL_BRIDGE of the caller with the target leg: the attended transfer succeeded."""
        pair = {event.get("Bridge-A-Unique-ID"), event.get("Bridge-B-Unique-ID")}
        if pair != {call.uuid, a.leg} or not a.bridged(_when(event) or self.clock()):
            return [], []
        assert call.transfer is not None
        call.transfer.status = TransferStatus.SUCCEEDED
        call.transfer.detail = "bridged"
        call.state = CallState.BRIDGED
        data = {"succeeded": True, "bridged": True, "mode": "attended", "ring_seconds": a.ring_seconds}
        return [], [Notice(NoticeKind.TRANSFER, call, data)]

    def _attended_step(
        self, call: Call, a: att.Attempt, step: att.Step, leg_alive: bool = True
    ) -> tuple[list[Api], list[Notice]]:
        """Commands and notices for what the attempt decided."""
        node = call.node
        if step is att.Step.NOTHING:
            return [], []
        if step is att.Step.BRIEF:
            return [Api(node, commands.uuid_broadcast_prompt(a.leg, a.announcement), a.leg)], []
        if step is att.Step.BRIDGE:
            stop = Api(node, dialects.dialect(self.policy.fork_module).stop(call.uuid), call.uuid, optional=True)
            return [stop, Api(node, commands.uuid_bridge(call.uuid, a.leg), call.uuid)], []
        # the attempt failed: the target leg goes (unless it went already); the caller stays with the agent
        actions: list[Api] = []
        if leg_alive and step in (att.Step.CANCEL, att.Step.REFORK):
            cause = "NORMAL_CLEARING" if a.answered_at is not None else "ORIGINATOR_CANCEL"
            actions.append(Api(node, commands.uuid_kill(a.leg, cause), a.leg))
        if not leg_alive:
            self.legs.pop(a.leg, None)
        continues = call.active and a.reason != "caller_hung_up"
        if step is att.Step.REFORK and continues:
            actions.append(self._fork(call))  # its fork was stopped for the bridge: back to the agent
        assert call.transfer is not None
        call.transfer.status = TransferStatus.FAILED
        call.transfer.sip_status = a.sip_status
        call.transfer.detail = a.detail()
        if call.state == CallState.TRANSFERRING:
            call.state = CallState.ANSWERED
        data: dict[str, Any] = {
            "succeeded": False,
            "detail": call.transfer.detail,
            "call_continues": continues,
            "mode": "attended",
            "reason": a.reason,
        }
        if a.sip_status is not None:
            data["sip_status"] = a.sip_status
        return actions, [Notice(NoticeKind.TRANSFER, call, data)]

    def _caller_gone(self, call: Call) -> tuple[list[Api], list[Notice]]:
        """The caller hung up: an attended transfer still under way is cancelled (its target leg hung up)."""
        a = call.transfer.attended if call.transfer is not None else None
        if a is None or not a.active:
            return [], []
        return self._attended_step(call, a, a.caller_gone(self.clock()))

    def resync(
        self, node: str, dumps: dict[str, Event], keep: set[str] | frozenset[str] = frozenset()
    ) -> tuple[list[Api], list[Notice]]:
        """Reconcile ``node``'s calls with its live channels (``uuid_dump`` of each, by uuid).

        Calls we knew that are gone ended while the link was down: their record says so. Channels
        we did not know (the orchestrator restarted) are re-attached; the ones in the hand-off park
        are claimed; answered ones get a new audio fork (the old media connection died with the
        process). Calls in ``keep`` (listed by the node, but their dump could not be read) stay as they are.
        """
        actions: list[Api] = []
        notices: list[Notice] = self._lost(node, set(dumps) | set(keep))
        for uuid, dump in dumps.items():
            known = self.calls.get(uuid)
            if known is not None:
                if known.state == CallState.DIALING and dump.get("Answer-State") == "answered":
                    a, n = self._answered(node, dump)
                    actions += a
                    notices += n
                continue
            a, n = self._reattach(node, dump)
            actions += a
            notices += n
        return actions, notices

    def _lost(self, node: str, live: set[str]) -> list[Notice]:
        """End ``node``'s calls whose channel is not ``live`` any more (they ended while the link was down)."""
        notices: list[Notice] = []
        for uuid, call in list(self.calls.items()):
            if call.node == node and uuid not in live and call.state != CallState.DIALING:
                call.hangup = outcome.Hangup("UNKNOWN", None, None, "", "", "lost")
                call.hangup_by = call.hangup_by or "unknown"
                notices += self._end(call, "unknown", lost=True)
        return notices

    def node_lost(self, node: str) -> list[Notice]:
        """``node`` has been unreachable too long: end every call on it as lost (dialing ones included).

        If the node comes back with some of them still up, the resync adopts them again as new calls.
        """
        notices: list[Notice] = []
        for call in [c for c in self.calls.values() if c.node == node]:
            call.hangup = outcome.Hangup("UNKNOWN", None, None, "", "", "node_lost")
            call.hangup_by = call.hangup_by or "unknown"
            notices += self._end(call, "unknown", lost=True)
        return notices

    def _reattach(self, node: str, dump: Event) -> tuple[list[Api], list[Notice]]:
        """Adopt a live channel of ours we did not know: claim it, fork it again, or wait for its answer.

        An attended transfer's target leg that is not bridged yet lost its attempt with the restart: hung up."""
        owner = dump.variable(TRANSFER_OF)
        if owner and dump.uuid not in self.legs and _CALL_ID.fullmatch(dump.uuid):
            if dump.variable("bridge_uuid"):
                return [], []  # bridged: the caller talks to it, nothing of ours to do
            return [Api(node, commands.uuid_kill(dump.uuid, "NORMAL_CLEARING"), dump.uuid)], []
        call = self._from_channel(node, dump)
        if call is None:
            return [], []
        uuid = call.uuid
        call.reattached = True
        self.calls[uuid] = call
        if dump.get("Answer-State") == "answered" or dump.get("Channel-Call-State") == "ACTIVE":
            if call.direction == "inbound":
                self._routed(call, dump)
            call.state = CallState.ANSWERED
            call.answered_at = _ts(dump.get("Caller-Channel-Answered-Time")) or self.clock()
            self._codec(call, dump)
            call.recording = rec.Recording(self.policy.recording_policy(call))
            path = dump.variable(RECORDING_PATH)
            if path and self.policy.recording.directory and path == self._recording_path(call):
                # recorded before the restart: FreeSWITCH's recording goes on (a pause is not known here)
                call.recording.path, call.recording.state = path, rec.RecState.RECORDING
            if dump.variable("bridge_uuid"):
                # transferred to a person before the restart: the caller talks to them, not to an agent
                call.state = CallState.BRIDGED
                return [], [Notice(NoticeKind.ANSWERED, call, {"reattached": True})]
            stop = Api(node, dialects.dialect(self.policy.fork_module).stop(uuid), uuid)
            return [stop, self._fork(call)], [Notice(NoticeKind.ANSWERED, call, {"reattached": True})]
        if call.direction == "inbound":
            return self._claim(call, dump.get("Channel-State")), []
        call.state = CallState.RINGING
        return [], []

    # -- channel events -------------------------------------------------------------------------
    def _from_channel(self, node: str, event: Event) -> Call | None:
        """A call from a channel's variables, if it is ours (it carries sipagent_* variables)."""
        agent = event.variable(VAR + "agent")
        direction = event.variable(VAR + "direction") or event.get("Call-Direction") or "inbound"
        uuid = event.uuid
        if not agent or not _CALL_ID.fullmatch(uuid):
            return None
        call = Call(uuid, node, "outbound" if direction == "outbound" else "inbound", agent=agent)
        call.trunk = event.variable(VAR + "trunk")
        call.created_at = _ts(event.get("Caller-Channel-Created-Time")) or self.clock()
        call.sip_call_id = event.variable("sip_call_id")
        if call.direction == "inbound":
            self._inbound_variables(call, event)
        else:
            _outbound_variables(call, event)
        return call

    def _routed(self, call: Call, event: Event) -> None:
        """A claimed call re-attached: the agent and rule decided when it was claimed (set on its channel)."""
        routed = event.variable(channelvars.ROUTED_AGENT)
        if routed and routed in self.policy.agents:
            call.agent = routed
        rule = event.variable(channelvars.RULE)
        call.rule = int(rule) if rule.isascii() and rule.isdigit() and len(rule) <= 3 else None

    def _inbound_variables(self, call: Call, event: Event) -> None:
        """An inbound call's numbers and what its agent gets: caller, called number and the trunk's X- headers."""
        call.number = event.variable(VAR + "number") or event.get("Caller-Destination-Number")
        call.route = event.variable(channelvars.ROUTE)[:64]
        call.remote = event.get("Caller-Caller-ID-Number")
        call.source = event.variable(VAR + "source")[:128]
        call.variables = {
            "caller_id": call.remote,
            "caller_name": event.get("Caller-Caller-ID-Name"),
            "called_number": call.number,
            "call_id": call.uuid,
            "sip_call_id": call.sip_call_id,
            "trunk": call.trunk,
        }
        # only the trunk's configured X- headers reach the agent; read straight from sip_h_*
        # (copying them in the dialplan would run them through variable expansion)
        for header, variable in self.policy.headers.get(call.trunk, ()):
            value = event.variable("sip_h_" + header)
            if value:
                call.variables[variable] = _bounded(value)

    def _park(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        uuid = event.uuid
        call = self.calls.get(uuid)
        if call is None:
            if event.get("Call-Direction") != "inbound" or not event.variable(VAR + "trunk"):
                return [], []
            call = self._from_channel(node, event)
            if call is None:  # parked by a trunk context without an agent: not ours to answer
                return [], []
            self.calls[uuid] = call
            return self._claim(call, event.get("Channel-State")), []
        if (
            call.transfer
            and call.transfer.method == "bridge"
            and (call.state == CallState.BRIDGED or call.transfer.status == TransferStatus.PENDING)
        ):
            # a bridged transfer failed and the inline dialplan parked the call again: back to the agent
            assert call.transfer is not None
            call.transfer.status = TransferStatus.FAILED
            call.state = CallState.ANSWERED
            return [self._fork(call)], [
                Notice(NoticeKind.TRANSFER, call, {"succeeded": False, "detail": "bridge failed"})
            ]
        return [], []  # our own uuid_park re-parks the channel: nothing new

    def _claim(self, call: Call, channel_state: str = "CS_EXECUTE") -> list[Api]:
        at = datetime.fromtimestamp(self.clock(), UTC)
        decision = self.policy.routing.decide(call.trunk, call.number, call.remote, at)
        if (
            decision is None
            or decision.entry.number.agent != call.agent  # the dialplan's route names the entry's own agent
            or (call.route and call.route != decision.entry.number.number)
            or decision.agent not in self.policy.agents
        ):
            # the rendered dialplan and this orchestrator's deployment disagree: refuse cleanly (404)
            call.hangup_by = "orchestrator"
            return [Api(call.node, commands.uuid_kill(call.uuid, "UNALLOCATED_NUMBER"), call.uuid)]
        call.state = CallState.CLAIMED
        call.agent, call.rule, call.route = decision.agent, decision.rule, decision.entry.number.number
        variables = {
            **self.policy.answer_variables,
            channelvars.ROUTED_AGENT: decision.agent,
            channelvars.RULE: "none" if decision.rule is None else str(decision.rule),
        }
        actions = [
            Api(call.node, commands.uuid_setvar_multi(call.uuid, variables), call.uuid),
            Api(call.node, commands.uuid_answer(call.uuid), call.uuid),
        ]
        if channel_state != "CS_PARK":
            # still in the dialplan's timed park: uuid_park re-parks it without the timeout. A channel
            # already in CS_PARK was claimed before (by an earlier orchestrator): parking it again would
            # leave it in CS_PARK with no park loop reading its media (tests/fixtures_esl/11-park-claim)
            actions.insert(0, Api(call.node, commands.uuid_park(call.uuid), call.uuid))
        return actions

    def _codec(self, call: Call, event: Event) -> None:
        call.codec = event.get("Channel-Read-Codec-Name") or event.variable("read_codec") or call.codec
        rate = event.get("Channel-Read-Codec-Rate") or event.variable("read_rate")
        if outcome.number(rate):
            call.rate = int(rate)
        call.srtp = event.variable("rtp_secure_media_negotiated") or call.srtp

    def _fork(self, call: Call) -> Api:
        call.fork = ForkState.STARTING
        call.fork_codec_rate = call.rate
        call.fork_nonce = self.policy.nonce()
        return Api(call.node, self.policy.fork_command(call), call.uuid)

    def claim_fork(self, uuid: str, nonce: str) -> bool:
        """The media bridge asks to accept a fork whose token carries ``nonce``: yes once, for a live call
        whose latest fork start minted it and that is still waiting for that fork."""
        call = self.calls.get(uuid)
        if call is None or not call.active or call.fork != ForkState.STARTING or not call.fork_nonce or not nonce:
            return False
        if not hmac.compare_digest(call.fork_nonce, nonce):
            return False
        call.fork_nonce = ""
        return True

    def _answered(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        call = self.calls.get(event.uuid)
        if call is None or call.answered_at is not None:
            return [], []
        call.answered_at = _ts(event.get("Caller-Channel-Answered-Time")) or _when(event) or self.clock()
        call.state = CallState.ANSWERED
        self._codec(call, event)
        self._call_id(call, event)
        call.recording = rec.Recording(self.policy.recording_policy(call))
        if not call.rate:
            # answered without a codec yet: a late offer (INVITE without SDP) is answered before the ACK brings the
            # far end's answer, and a media bug added now finds no read codec (mod_audio_fork dereferences it:
            # FreeSWITCH 1.10.12 crashed, measured). The fork starts at the CODEC event the ACK's negotiation fires.
            return [], [Notice(NoticeKind.ANSWERED, call)]
        return self._start_media(call), [Notice(NoticeKind.ANSWERED, call)]

    def _start_media(self, call: Call) -> list[Api]:
        """The answered call's fork (and its recording, when the policy says always)."""
        assert call.recording is not None
        if call.recording.policy == "always" and self.policy.recording.directory:
            actions = self.start_recording(call.uuid, fork=True)
        else:
            actions = [self._fork(call)]
        return actions + self._start_avmd(call)

    # -- answering-machine detection (calls/machine.py) -------------------------------------------------
    def _start_avmd(self, call: Call) -> list[Api]:
        """At the answer of an outbound call with machine detection: mod_avmd's ``avmd_start`` (where loaded)."""
        m = call.machine
        if m is None or m.settings.mode == "off" or not m.settings.beep or m.avmd != "off":
            return []  # off, or started before (the fork restarts on a codec change, mod_avmd needs not)
        if call.node not in self.avmd_nodes:
            m.avmd = "unavailable"
            return []
        m.avmd = "starting"
        return [Api(call.node, commands.avmd_start(call.uuid, amd.AVMD_ARGS), call.uuid)]

    def stop_avmd(self, uuid: str) -> list[Api]:
        """The media bridge needs no beep any more: stop mod_avmd (its detector threads) if it runs."""
        call = self.calls.get(uuid)
        m = call.machine if call is not None else None
        if call is None or m is None or m.avmd not in ("starting", "running"):
            return []
        m.avmd = "stopped"
        return [Api(call.node, commands.avmd_stop(uuid), uuid)]

    def _avmd_event(self, call: Call, event: Event) -> tuple[list[Api], list[Notice]]:
        """avmd::start / avmd::beep / avmd::stop. mod_avmd fires each twice (avmd_fire_event: a copy at once, and
        the original through the session's queue with the channel's headers): the first counts."""
        m = call.machine
        if m is None:
            return [], []
        sub = event.subclass
        if sub == amd.START:
            if m.avmd == "starting":
                m.avmd = "running"
            return [], []
        if sub == amd.STOP:
            m.avmd = "stopped" if m.avmd in ("starting", "running") else m.avmd
            return [], []
        beep = amd.beep(event.headers, _when(event) or self.clock())
        if beep is None or m.beep_at is not None:
            return [], []
        m.beep_at, m.beep_frequency = beep.at, beep.frequency
        return [], [Notice(NoticeKind.MACHINE, call, {"event": "beep", "frequency": beep.frequency})]

    # -- recording (calls/recording.py) ---------------------------------------------------------
    def _recording_path(self, call: Call) -> str:
        return rec.file_path(self.policy.recording, call.uuid)

    def start_recording(self, uuid: str, fork: bool = False) -> list[Api]:
        """Start the call's recording (the announcement first, when there is one); ``fork``: at the answer, the
        audio fork is started too -- before the recording, so the recording hears what the fork plays, and after
        the announcement, so the agent does not talk over it."""
        call = self.calls.get(uuid)
        if call is None or call.recording is None or not self.policy.recording.directory:
            return []
        r = call.recording
        r.path = self._recording_path(call)
        r.requested_at = r.requested_at or self.clock()
        r.detail = ""
        prompt = self.policy.recording.announcement
        if prompt and not r.announced:
            r.state = rec.RecState.ANNOUNCING
            r.fork_waits = fork
            return [Api(call.node, commands.uuid_broadcast_prompt(uuid, prompt), uuid)]
        return ([self._fork(call)] if fork else []) + self._record_start(call)

    def _record_start(self, call: Call) -> list[Api]:
        assert call.recording is not None
        call.recording.state = rec.RecState.STARTING
        return [
            Api(call.node, commands.uuid_setvar_multi(call.uuid, {RECORDING_PATH: call.recording.path}), call.uuid),
            Api(call.node, commands.uuid_record(call.uuid, "start", call.recording.path, rec.variables()), call.uuid),
        ]

    def announcement_done(self, uuid: str) -> list[Api]:
        """The announcement played (or could not be played): the recording starts (and the fork, if it waited)."""
        call = self.calls.get(uuid)
        if call is None or call.recording is None or call.recording.state != rec.RecState.ANNOUNCING:
            return []
        call.recording.announced = True
        actions = [self._fork(call)] if call.recording.fork_waits else []
        call.recording.fork_waits = False
        return actions + self._record_start(call)

    def recording_failed(self, uuid: str, detail: str) -> list[Notice]:
        """``uuid_record start`` was refused: the call goes on unrecorded."""
        call = self.calls.get(uuid)
        if call is None or call.recording is None:
            return []
        call.recording.state = rec.RecState.FAILED
        call.recording.detail = detail[:256]
        return [Notice(NoticeKind.RECORDING, call, {"state": rec.RecState.FAILED, "detail": call.recording.detail})]

    def _execute_complete(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        call = self.calls.get(event.uuid)
        prompt = self.policy.recording.announcement
        if (
            call is None
            or call.recording is None
            or call.recording.state != rec.RecState.ANNOUNCING
            or event.get("Application") != "playback"
            or event.get("Application-Data") != prompt
        ):
            return [], []
        return self.announcement_done(call.uuid), []

    def _record_event(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        call = self.calls.get(event.uuid)
        path = event.get("Record-File-Path")
        if call is None or call.recording is None or not self.policy.recording.directory:
            return [], []
        if path != self._recording_path(call):
            return [], []  # a recording someone else started on the channel (fs_cli, another tool): not ours
        when = _when(event) or self.clock()
        r = call.recording
        if event.name == "RECORD_START":
            if not rec.started(r, path, when):
                return [], []
        elif not rec.stopped(r, path, when, event.variable):
            return [], []
        return [], [Notice(NoticeKind.RECORDING, call, {"state": r.state, "path": r.path})]

    def _create(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        call = self.calls.get(event.uuid)
        if call is not None and call.state == CallState.DIALING:
            call.state = CallState.RINGING
            # from here on the call's timings are FreeSWITCH's (its clock stamps every later event)
            call.created_at = _ts(event.get("Caller-Channel-Created-Time")) or _when(event) or call.created_at
            self._call_id(call, event)
        return [], []

    @staticmethod
    def _call_id(call: Call, event: Event) -> None:
        """The SIP Call-ID, once FreeSWITCH has one (an outbound leg gets it when the INVITE goes out)."""
        if not call.sip_call_id:
            call.sip_call_id = event.variable("sip_call_id")[:256]

    def _progress(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        call = self.calls.get(event.uuid)
        if call is None or call.direction != "outbound":
            return [], []
        media = event.name == "CHANNEL_PROGRESS_MEDIA"
        status = 183 if media else 180
        if status not in call.progress:
            call.progress.append(status)
        self._call_id(call, event)
        when = _when(event) or self.clock()
        if media:
            call.early_media_at = call.early_media_at or when
            call.state = CallState.EARLY
        else:
            call.progress_at = call.progress_at or when
            if call.state in (CallState.DIALING, CallState.RINGING):
                call.state = CallState.RINGING
        return [], [Notice(NoticeKind.PROGRESS, call, {"status": status})]

    def _bridge(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        call = self.calls.get(event.uuid)
        if call is None or call.transfer is None:
            return [], []
        if call.transfer.attended is not None and event.name == "CHANNEL_BRIDGE":
            return self._attended_bridged(call, call.transfer.attended, event)
        if call.transfer.method != "bridge":
            return [], []
        if event.name == "CHANNEL_BRIDGE":
            call.transfer.status = TransferStatus.SUCCEEDED
            call.state = CallState.BRIDGED
            return [], [Notice(NoticeKind.TRANSFER, call, {"succeeded": True, "bridged": True})]
        return [], []

    def _codec_event(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        """CODEC: the channel's codec was set -- at the negotiation, or by a re-INVITE that changed it.

        mod_audio_fork takes the read codec's rate when it starts (its resamplers, buffer sizes and, with
        bidirectional streaming, the rate it writes back) and keeps it; the media bug then hands it frames at the
        new codec's rate (switch_core_media_bug_read reads the session's read_impl). So a change of rate under a
        running fork restarts the fork at the new rate; the media bridge keeps the agent's conversation (the new
        fork attaches to the same session, which converts between the fork's rate and the agent's)."""
        call = self.calls.get(event.uuid)
        if call is None or call.state == CallState.ENDED:
            return [], []
        previous = call.rate
        self._codec(call, event)
        if call.answered_at is None or call.rate == previous:
            return [], []
        if not previous:  # answered before the codec was set (late offer): the media starts now
            if call.fork == ForkState.NONE and call.recording is not None and call.state == CallState.ANSWERED:
                return self._start_media(call), []
            return [], []
        call.codec_changes += 1
        data: dict[str, Any] = {"codec": call.codec, "rate": call.rate, "previous_rate": previous}
        restart = call.fork in (ForkState.STARTING, ForkState.CONNECTED) and call.rate != call.fork_codec_rate
        data["fork_restarted"] = restart
        if not restart:
            return [], [Notice(NoticeKind.CODEC, call, data)]
        stop = Api(node, dialects.dialect(self.policy.fork_module).stop(call.uuid), call.uuid)
        return [stop, self._fork(call)], [Notice(NoticeKind.CODEC, call, data)]

    def _dtmf(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        call = self.calls.get(event.uuid)
        digit = dtmf.key(event.get("DTMF-Digit"))
        if call is None or digit is None or event.get("DTMF-Source") == "APP":
            # DTMF-Source APP: a digit we sent that the inband generator turns into tones (generate_on_dtmf
            # fires a DTMF event for it), not one the far end pressed
            return [], []
        call.dtmf_in += digit
        duration = event.get("DTMF-Duration")
        return [], [Notice(NoticeKind.DTMF, call, {"digit": digit, "duration": outcome.number(duration) or 0})]

    def _hold(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        """CHANNEL_HOLD / CHANNEL_UNHOLD: the far end's re-INVITE held (sendonly, inactive) or resumed the call
        (switch_channel_mark_hold fires each once per change). While held, FreeSWITCH's hold timeout applies."""
        call = self.calls.get(event.uuid)
        if call is None or call.state == CallState.ENDED:
            return [], []
        held = event.name == "CHANNEL_HOLD"
        when = _when(event) or self.clock()
        if held == (call.held_since is not None):
            return [], []
        if held:
            call.held_since = when
            call.holds += 1
        else:
            assert call.held_since is not None
            call.held_seconds += max(0.0, when - call.held_since)
            call.held_since = None
        return [], [Notice(NoticeKind.HOLD, call, {"held": held})]

    def _hangup(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        call = self.calls.get(event.uuid)
        if call is None or call.hangup_at is not None:
            return [], []
        call.hangup_at = _ts(event.get("Caller-Channel-Hangup-Time")) or _when(event) or self.clock()
        actions, notices = self._caller_gone(call)
        return actions, [*notices, Notice(NoticeKind.HANGUP, call)]

    def _hangup_complete(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        call = self.calls.get(event.uuid)
        if call is None:
            return [], self._refused(node, event)
        if not call.hangup_by:
            disposition = event.variable("sip_hangup_disposition")
            call.hangup_by = "remote" if disposition.startswith("recv_") else "freeswitch"
        self._codec(call, event)
        self._call_id(call, event)
        call.hangup = outcome.from_variables(event.variable, call.answered_at is not None)
        call.quality = _quality(event)
        if call.transfer and call.transfer.status == TransferStatus.PENDING and call.hangup.cause == "BLIND_TRANSFER":
            call.transfer.status = TransferStatus.SUCCEEDED
        actions, notices = self._caller_gone(call)
        return actions, notices + self._end(call, call.hangup_by, when=_when(event))

    def _refused(self, node: str, event: Event) -> list[Notice]:
        """An inbound call the rendered dialplan refused before parking it (``sipagent_refused`` says why:
        ``srtp_required`` → 488, ``unknown_number`` → 404): never ours to answer, but it gets a record."""
        reason = event.variable(VAR + "refused")
        trunk = event.variable(VAR + "trunk")
        uuid = event.uuid
        if not reason or not trunk or event.get("Call-Direction") != "inbound" or not _CALL_ID.fullmatch(uuid):
            return []
        call = Call(uuid, node, "inbound", trunk=trunk[:64])
        call.number = event.get("Caller-Destination-Number")[:64]
        call.remote = event.get("Caller-Caller-ID-Number")[:64]
        call.created_at = _ts(event.get("Caller-Channel-Created-Time")) or _when(event) or self.clock()
        call.hangup_at = _ts(event.get("Caller-Channel-Hangup-Time"))
        call.hangup_by = "freeswitch"
        call.refused = reason[:64]
        if call.refused == "limit_exceeded":
            call.limit = event.variable(VAR + "limit")[:32]
        self._codec(call, event)
        self._call_id(call, event)
        call.hangup = outcome.from_variables(event.variable, answered=False)
        return self._end(call, "freeswitch", when=_when(event))

    def _end(self, call: Call, by: str, lost: bool = False, when: float | None = None) -> list[Notice]:
        call.state = CallState.ENDED
        call.hangup_by = call.hangup_by or by
        call.ended_at = when or self.clock()
        if call.held_since is not None:  # hung up while held
            call.held_seconds += max(0.0, call.ended_at - call.held_since)
            call.held_since = None
        call.fork = ForkState.CLOSED if call.fork != ForkState.NONE else ForkState.NONE
        if call.transfer is not None and call.transfer.attended is not None:
            self.legs.pop(call.transfer.attended.leg, None)
        self.calls.pop(call.uuid, None)
        return [Notice(NoticeKind.ENDED, call, {"lost": lost})]

    # -- CUSTOM events --------------------------------------------------------------------------
    def _custom(self, node: str, event: Event) -> tuple[list[Api], list[Notice]]:
        # sofia::notify_refer names the channel "UniqueID" (no hyphen; fixture 06)
        call = self.calls.get(event.uuid or event.get("UniqueID"))
        if call is None:
            return [], []
        sub = event.subclass
        meaning = dialects.event(sub)
        if meaning is ForkEvent.CONNECTED:
            call.fork = ForkState.CONNECTED
            return [], [Notice(NoticeKind.FORK_CONNECTED, call)]
        if meaning is ForkEvent.CONNECT_FAILED:
            call.fork = ForkState.FAILED
            return [], [Notice(NoticeKind.FORK_FAILED, call, {"reason": event.body})]
        if meaning is ForkEvent.DISCONNECTED:
            if call.fork == ForkState.STARTING:  # the fork we stopped to restart it (codec change)
                return [], []
            if call.fork == ForkState.CONNECTED:
                call.fork = ForkState.CLOSED
            return [], [Notice(NoticeKind.FORK_DISCONNECTED, call, {"body": event.body})]
        if meaning is ForkEvent.BUFFER_OVERRUN or meaning is ForkEvent.ERROR:
            return [], [Notice(_FORK_NOTICES[meaning], call, {"body": event.body})]
        if meaning is ForkEvent.PLAY_FILE:  # file playback: the module wrote it
            return self._play_file(call, event.body), []
        if sub == "sofia::notify_refer":
            return self._notify_refer(call, event)
        if sub in amd.EVENTS:
            return self._avmd_event(call, event)
        return [], []

    def _play_file(self, call: Call, body: str) -> list[Api]:
        try:
            path = json.loads(body).get("file", "")
        except (ValueError, AttributeError):
            path = ""
        if not isinstance(path, str) or not _TMPFILE.fullmatch(path) or call.state == CallState.ENDED:
            return []
        return [Api(call.node, commands.uuid_broadcast(call.uuid, path, "aleg"), call.uuid)]

    def _notify_refer(self, call: Call, event: Event) -> tuple[list[Api], list[Notice]]:
        if call.transfer is None or call.transfer.method != "refer":
            return [], []
        m = _SIPFRAG.search(event.body)
        if m is None:
            return [], []
        status = int(m.group(1))
        if status < 200:
            return [], []  # 100 Trying / 180 Ringing at the target: keep waiting
        call.transfer.sip_status = status
        call.transfer.detail = m.group(2).strip()
        if status < 300:
            call.transfer.status = TransferStatus.SUCCEEDED
            # the transfer target took the call: our leg is done (FreeSWITCH does not BYE on its own
            # when sip_refer_continue_after_reply is set)
            call.hangup_by = call.hangup_by or "transfer"
            return [Api(call.node, commands.uuid_kill(call.uuid, "BLIND_TRANSFER"), call.uuid)], [
                Notice(NoticeKind.TRANSFER, call, {"succeeded": True, "sip_status": status})
            ]
        call.transfer.status = TransferStatus.FAILED
        data = {"succeeded": False, "sip_status": status, "detail": call.transfer.detail, "call_continues": True}
        if event.get("subscription-substate") == "terminated":
            # Measured with FreeSWITCH 1.10.12 / sofia-sip 1.13.17: when the final NOTIFY terminates the
            # refer subscription, the SIP stack sends BYE to the peer by itself, yet the channel stays
            # up with nobody on the other end. Clean it up instead of leaving the agent talking to no one.
            data["call_continues"] = False
            call.hangup_by = call.hangup_by or "transfer"
            return [Api(call.node, commands.uuid_kill(call.uuid, "NORMAL_CLEARING"), call.uuid)], [
                Notice(NoticeKind.TRANSFER, call, data)
            ]
        call.state = CallState.ANSWERED
        return [], [Notice(NoticeKind.TRANSFER, call, data)]


def _outbound_variables(call: Call, event: Event) -> None:
    """An outbound call's numbers and what its agent gets: what the API gave, carried on the channel."""
    call.number = event.variable("origination_caller_id_number")
    call.remote = event.variable(VAR + "destination")
    call.variables = {
        "caller_id": call.number,
        "called_number": call.remote,
        "trunk": call.trunk,
        "call_id": call.uuid,
    }
    # the API's variables travel on the channel (sipagent_var_*): a re-attached call keeps them
    prefix, overrides = "variable_" + VAR + "var_", "variable_" + VAR + "override_"
    for name, value in event.headers.items():
        if name.startswith(prefix) and value and name[len(prefix) :] not in call.variables:
            call.variables[name[len(prefix) :]] = _bounded(value)
        elif name.startswith(overrides) and value:
            call.agent_overrides[name[len(overrides) :]] = _bounded(value)


def _quality(event: Event) -> dict[str, float]:
    """RTCP/RTP quality FreeSWITCH computed for the call (``rtp_audio_in_*``)."""
    out: dict[str, float] = {}
    for key, name in (
        ("mos", "rtp_audio_in_mos"),
        ("quality_percentage", "rtp_audio_in_quality_percentage"),
        ("jitter_min_variance", "rtp_audio_in_jitter_min_variance"),
        ("jitter_max_variance", "rtp_audio_in_jitter_max_variance"),
        ("jitter_loss_rate", "rtp_audio_in_jitter_loss_rate"),
        ("jitter_burst_rate", "rtp_audio_in_jitter_burst_rate"),
        ("packets_in", "rtp_audio_in_packet_count"),
        ("packets_skipped", "rtp_audio_in_skip_packet_count"),
        ("flaw_total", "rtp_audio_in_flaw_total"),
        ("packets_out", "rtp_audio_out_packet_count"),
    ):
        value = event.variable(name)
        try:
            out[key] = float(value)
        except ValueError:
            continue
    return out


def _bounded(value: str) -> str:
    """A value from the far end, cut to :data:`MAX_VARIABLE_VALUE` characters."""
    return value[:MAX_VARIABLE_VALUE]


def _when(event: Event) -> float | None:
    """When FreeSWITCH says the event happened (its clock: every timing of a call comes from it)."""
    return _ts(event.get("Event-Date-Timestamp"))


_HANDLERS: dict[str, Callable[[CallTracker, str, Event], tuple[list[Api], list[Notice]]]] = {
    "CHANNEL_CREATE": CallTracker._create,
    "CHANNEL_PROGRESS": CallTracker._progress,
    "CHANNEL_PROGRESS_MEDIA": CallTracker._progress,
    "CHANNEL_ANSWER": CallTracker._answered,
    "CHANNEL_PARK": CallTracker._park,
    "CHANNEL_BRIDGE": CallTracker._bridge,
    "CHANNEL_UNBRIDGE": CallTracker._bridge,
    "CHANNEL_HANGUP": CallTracker._hangup,
    "CHANNEL_HANGUP_COMPLETE": CallTracker._hangup_complete,
    "CHANNEL_HOLD": CallTracker._hold,
    "CHANNEL_UNHOLD": CallTracker._hold,
    "DTMF": CallTracker._dtmf,
    "RECORD_START": CallTracker._record_event,
    "RECORD_STOP": CallTracker._record_event,
    "CHANNEL_EXECUTE_COMPLETE": CallTracker._execute_complete,
    "CODEC": CallTracker._codec_event,
}
