"""One call's media decisions, sans-I/O: what ends the call, when, and with which outcome.

The asyncio :class:`~orchestrator.media.session.Session` tells a :class:`Lifecycle` what happened
(the agent connected, sent its first message, announced its end, closed; the fork dropped; a
transfer was asked for or answered) with the time ``now``; the lifecycle changes its :class:`Phase`
and answers with a decision for the session to carry out — :class:`Failed` (end the call the
configured way), :class:`HangingUp` (the agent hangs up), :class:`TransferAnswer` (tell the agent
how its transfer went) — or ``None``. Time-outs are deadlines: :attr:`Lifecycle.deadline` is the
earliest one, and :meth:`Lifecycle.poll` turns those that passed into decisions. Like the
:class:`~orchestrator.media.playback.Pacer`, it never reads a clock itself, so its tests run on fake time.

The rules:

- **fail once**: the first failure ends the call; anything after it (or after a hang-up) is no news.
- **first message**: an agent that connects but says nothing it understands within
  ``first_message_timeout`` fails (``agent_first_message_timeout``).
- **ending grace**: after the agent announced its end (ElevenLabs' ``end_call``), its close is a
  hang-up; if no close comes within :data:`ENDING_GRACE`, the bridge hangs up for it.
- **fork grace**: a fork that drops while the call is up fails the call (``media_lost``) unless the
  call ends, or FreeSWITCH forks again, within ``fork_grace``.
- **stall**: an agent that stopped reading for longer than ``stall_seconds`` fails (``agent_stalled``).
- **outcome precedence** when the agent closes (:meth:`Lifecycle.agent_closed`): after a transfer took
  the call away, nothing; a protocol error, a failure; after an announced end, a hang-up; a normal
  close (1000/1005) after its first message, a hang-up; anything else a failure (``agent_closed``).
- **transfers**: one at a time, each answered once: by its outcome, its refusal, or after
  ``transfer_timeout``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from orchestrator.agents._wire import clean

#: after the agent announced its end, wait this long for its close before hanging up
ENDING_GRACE = 5.0
#: an agent closing with these (after its first message) hangs up
NORMAL_CLOSE = (1000, 1005)


class Phase(enum.StrEnum):
    """Where the call's media is: ``connecting`` → ``open`` → ``ending`` → ``ended``."""

    CONNECTING = "connecting"  # the agent connection is being opened (caller audio is buffered)
    OPEN = "open"  # the conversation is under way
    ENDING = "ending"  # an outcome is decided; the hang-up is under way
    ENDED = "ended"  # FreeSWITCH reported the hang-up


# as module constants: an Enum member read off its class costs ~0.2 µs on Python 3.11 (the session checks per message)
CONNECTING, OPEN, ENDING, ENDED = Phase.CONNECTING, Phase.OPEN, Phase.ENDING, Phase.ENDED


@dataclass(slots=True, frozen=True)
class Failed:
    """The media path broke: end the call the configured way, with ``reason`` as its outcome."""

    reason: str
    detail: str


@dataclass(slots=True, frozen=True)
class HangingUp:
    """The agent ends the call (outcome ``agent_hangup``): hang up once the caller heard what was sent."""

    detail: str


@dataclass(slots=True, frozen=True)
class TransferAnswer:
    """A transfer's result, for the agent's tool call (``tool_call_id``) and the call's events."""

    tool_call_id: str | None
    target: str
    ok: bool
    text: str


Decision = Failed | HangingUp | TransferAnswer


@dataclass(slots=True)
class PendingTransfer:
    """A transfer the agent asked for, waiting for its outcome until ``due``."""

    tool_call_id: str | None
    target: str
    due: float
    limit: float


def describe(data: dict[str, Any]) -> str:
    """``key=value`` pairs of an agent event, for a log line or a detail."""
    return ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("t", "kind"))


def transfer_text(target: str, data: dict[str, Any]) -> tuple[bool, str]:
    """What the controller's ``transfer`` notice means for the agent: (succeeded, the sentence it is told)."""
    succeeded = data.get("succeeded") is True
    continues = data.get("call_continues") is not False and not succeeded
    status = data.get("sip_status")
    said = data.get("detail")
    sip = f"SIP {status}" if isinstance(status, int) and not isinstance(status, bool) else ""
    if isinstance(said, str) and said.strip():
        sip = f"{sip} {clean(said.strip(), 120)}".strip()
    why = f" ({sip})" if sip else ""
    if succeeded:
        return True, f"The transfer to {target} succeeded{why}: the call has left this conversation."
    if continues:
        return False, f"The transfer to {target} failed{why}: the caller is still on the line with you."
    return False, f"The transfer to {target} failed{why} and the call has ended."


class Lifecycle:
    """The state of one call's media and its deadlines (``now`` is always passed in)."""

    __slots__ = (
        "_ending_at",
        "_first_at",
        "_fork_at",
        "_fork_code",
        "detail",
        "ending",
        "ending_grace",
        "first_message_timeout",
        "fork_grace",
        "heard",
        "leaving",
        "outcome",
        "phase",
        "stall_seconds",
        "transfer",
        "transfer_timeout",
    )

    def __init__(
        self,
        *,
        first_message_timeout: float = 0.0,
        fork_grace: float = 1.0,
        stall_seconds: float = 5.0,
        transfer_timeout: float = 30.0,
        ending_grace: float | None = None,
    ) -> None:
        self.first_message_timeout = first_message_timeout
        self.fork_grace = fork_grace
        self.stall_seconds = stall_seconds
        self.transfer_timeout = transfer_timeout
        self.ending_grace = ENDING_GRACE if ending_grace is None else ending_grace
        self.phase = CONNECTING
        self.outcome = ""
        self.detail = ""  # what the outcome was about (failure, the agent's hang-up reason)
        self.heard = False  # the agent sent a message it understood
        self.ending: str | None = None  # the agent announced its end (reason)
        self.leaving = False  # a transfer took the call away from the agent
        self.transfer: PendingTransfer | None = None
        self._first_at: float | None = None
        self._ending_at: float | None = None
        self._fork_at: float | None = None
        self._fork_code = 0

    # -- deadlines ------------------------------------------------------------------------------
    @property
    def deadline(self) -> float | None:
        """The earliest time :meth:`poll` has something to decide (None: nothing is due)."""
        due = None
        for at in (self._first_at, self._ending_at, self._fork_at, self.transfer.due if self.transfer else None):
            if at is not None and (due is None or at < due):
                due = at
        return due

    def poll(self, now: float) -> list[Decision]:
        """The decisions of every deadline that has passed by ``now`` (earliest first)."""
        decisions: list[Decision] = []
        while (due := self.deadline) is not None and due <= now:
            decision = self._expire(due)
            if decision is not None:
                decisions.append(decision)
        return decisions

    def _expire(self, due: float) -> Decision | None:
        if self._first_at == due:
            self._first_at = None
            if self.phase is OPEN and not self.heard:
                limit = self.first_message_timeout
                return self.fail(
                    "agent_first_message_timeout", f"the agent sent nothing within {limit:g} s of connecting"
                )
            return None
        if self._fork_at == due:
            self._fork_at = None
            return self.fail("media_lost", f"FreeSWITCH's audio fork closed ({self._fork_code}) while the call is up")
        if self._ending_at == due:
            self._ending_at = None
            return self.agent_hangup(f"{self.ending}; no close followed")
        pending = self.transfer
        assert pending is not None and pending.due == due
        return self._answer(False, f"The transfer to {pending.target} had no outcome within {pending.limit:g} s.")

    def _stop(self, transfer: bool = True) -> None:
        self._first_at = self._ending_at = self._fork_at = None
        if transfer:
            self.transfer = None

    # -- the agent ------------------------------------------------------------------------------
    def opened(self, now: float) -> bool:
        """The agent's WebSocket is open (False: the call is gone already)."""
        if self.phase is not CONNECTING:
            return False
        self.phase = OPEN
        if self.first_message_timeout and not self.heard:
            self._first_at = now + self.first_message_timeout
        return True

    def understood(self) -> None:
        """The agent sent its first message it understood: the conversation is under way."""
        self.heard = True
        self._first_at = None

    def announce_end(self, reason: str, now: float) -> None:
        """The agent said it is ending: its close is a hang-up; hang up anyway after the grace time."""
        if self.phase is not OPEN or self.ending is not None:
            return
        self.ending = clean(reason, 64)
        self._ending_at = now + self.ending_grace

    def stalled(self, paused_at: float, now: float) -> Failed | None:
        """The agent's connection stopped taking data at ``paused_at``: a failure once that is too long ago."""
        if now - paused_at > self.stall_seconds:
            return self.fail("agent_stalled", "the agent stopped reading audio")
        return None

    def agent_hangup(self, detail: str) -> HangingUp | None:
        """The agent ends the call (while it is up)."""
        if self.phase is not OPEN:
            return None
        self.phase = ENDING
        self.outcome = "agent_hangup"
        self.detail = clean(detail, 300)
        self._stop(transfer=False)  # a transfer's result may still reach the agent
        return HangingUp(self.detail)

    def agent_closed(
        self, code: int, reason: str, error: str | None = None, last_error: dict[str, Any] | None = None
    ) -> Failed | HangingUp | None:
        """The agent connection ended while the call was up: what that means (see the module's rules).

        A normal close (1000, or a close frame without a code: 1005) after the agent's first message
        is the agent hanging up; so is any close after the agent announced its end. Everything else —
        1001 (the agent's server going away), 1006 (no close frame), 1011, a protocol error, or a close
        before the agent said anything — is a failure. ``last_error``: the last error the agent reported.
        """
        if self.phase is not OPEN:
            return None
        said = f"{code} {clean(reason, 120)}".strip()
        if self.leaving:  # transferred away: the call ends without the agent
            self.phase = ENDING
            self.detail = f"the agent closed ({said}) after the transfer"
            self._stop()
            return None
        if error:
            return self.fail("agent_closed", f"the agent broke the WebSocket protocol ({error}); closed with {code}")
        if self.ending is not None:
            return self.agent_hangup(f"{self.ending}; closed {said}")
        if code in NORMAL_CLOSE and self.heard:
            return self.agent_hangup(f"closed {said}")
        told = f"; it reported {describe(last_error)}" if last_error else ""
        early = "" if self.heard else " before its first message"
        return self.fail("agent_closed", f"the agent closed the connection ({said}){early}{told}")

    # -- failures and the end -------------------------------------------------------------------
    def fail(self, reason: str, detail: str) -> Failed | None:
        """The media path broke: the call ends with ``reason`` (once; None when it is ending already)."""
        if self.phase is ENDING or self.phase is ENDED:
            return None
        self.phase = ENDING
        self.outcome = reason
        self.detail = clean(detail, 300)
        self._stop()
        return Failed(reason, self.detail)

    def ended(self) -> bool:
        """FreeSWITCH reported the hang-up (False: it had already)."""
        if self.phase is ENDED:
            return False
        self.phase = ENDED
        self._stop()
        return True

    # -- the fork -------------------------------------------------------------------------------
    def fork_lost(self, code: int, now: float) -> bool:
        """The fork dropped with close ``code``: fail after the grace time unless it comes back (False: ending)."""
        if self.phase is ENDING or self.phase is ENDED or self.leaving:
            return False  # leaving: a transfer bridged the caller elsewhere and stopped the fork for it
        if self._fork_at is None:
            self._fork_at, self._fork_code = now + self.fork_grace, code
        return True

    def fork_back(self) -> None:
        """FreeSWITCH forked the call again: the fork grace period is over."""
        self._fork_at = None

    # -- transfers ------------------------------------------------------------------------------
    def transfer_requested(self, tool_call_id: str | None, target: str, now: float, control: bool) -> str | None:
        """The agent asks for a transfer: None when it goes ahead (answered later), else why not."""
        if not control or self.phase is not OPEN:
            return "no call control" if not control else "the call is ending"
        if self.transfer is not None:
            return f"a transfer to {self.transfer.target} is in progress"
        limit = self.transfer_timeout
        self.transfer = PendingTransfer(tool_call_id, target, now + limit, limit)
        return None

    def transfer_refused(self, pending: PendingTransfer, detail: str) -> TransferAnswer | None:
        """The controller refused the transfer at once (None: it was answered already)."""
        if self.transfer is not pending:
            return None
        return self._answer(False, f"The transfer to {pending.target} was refused: {clean(detail, 200)}")

    def transfer_outcome(self, data: dict[str, Any]) -> TransferAnswer | None:
        """The controller's ``transfer`` notice: the REFER's final NOTIFY, a bridge result, or a refused command."""
        if data.get("succeeded") is True or data.get("call_continues") is False:
            self.leaving = True  # the call leaves the agent: its close is no failure
            self._fork_at = None  # nor is the fork's, stopped for a bridge
        if self.transfer is None:
            return None
        ok, text = transfer_text(self.transfer.target, data)
        return self._answer(ok, text)

    def _answer(self, ok: bool, text: str) -> TransferAnswer:
        pending = self.transfer
        assert pending is not None
        self.transfer = None
        return TransferAnswer(pending.tool_call_id, pending.target, ok, text)
