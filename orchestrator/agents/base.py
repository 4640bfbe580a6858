"""The contract between the media bridge and an agent protocol (sans-I/O).

An adapter turns call events into WebSocket messages for the agent and the agent's messages into
actions on the call. It never touches a socket or a clock: the bridge feeds it and executes what it
returns. Audio crossing the contract is always **L16 mono, little-endian, at the call's rate**
(``CallInfo.rate``: 8000 or 16000); each adapter converts to and from its agent's own format with
its own per-call :mod:`orchestrator.audio.convert` converters, so frames join without clicks.

Messages to the agent are ``str`` (a text frame) or ``bytes`` (a binary frame).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

Message = str | bytes


@dataclass(frozen=True)
class CallInfo:
    """What an agent learns about the call when it connects."""

    call_id: str  # FreeSWITCH channel UUID
    direction: str  # inbound | outbound
    caller_id: str  # E.164 or whatever the trunk sent
    called_number: str
    agent: str  # agent name in the deployment
    trunk: str
    rate: int  # 8000 | 16000: the call (fork) audio rate
    variables: dict[str, str] = field(default_factory=dict)  # call variables (X- headers, API variables)


@dataclass(frozen=True)
class MachineUpdate:
    """What answering-machine detection learned on an outbound call (docs/call-flow.md#answering-machine-detection).

    ``event``: ``verdict`` (``verdict`` is human, machine or unknown; ``action`` says what follows: ``continue``,
    ``wait`` -- wait_for_beep: stay silent, your audio is held back until told to speak --, or ``hangup``),
    ``speak`` (wait_for_beep: the greeting is over, ``reason`` beep, greeting_end or timeout: leave the message
    now) or ``beep`` (notify: the voicemail beep played). ``data`` holds the figures (``verdict_ms``,
    ``speech_ms``, ``reason`` …) for protocols that pass them on.
    """

    event: str  # verdict | speak | beep
    verdict: str  # human | machine | unknown
    action: str = "continue"  # verdict: continue | wait | hangup
    reason: str = ""
    data: dict[str, Any] = field(default_factory=dict)


# -- actions: what an adapter asks the bridge to do -------------------------------------------------
@dataclass(frozen=True)
class Send:
    """Send a message to the agent (a reply: pong, tool result, Twilio mark echo …)."""

    message: Message


@dataclass(frozen=True)
class Play:
    """Agent audio for the caller: L16 at the call rate. ``event_id`` groups audio of one utterance."""

    pcm: bytes
    event_id: int | None = None


@dataclass(frozen=True)
class Clear:
    """Barge-in: drop every bit of agent audio not yet heard (flush queues and FreeSWITCH's buffer)."""


@dataclass(frozen=True)
class Mark:
    """Tell the agent (via :meth:`AgentProtocol.mark_played`) when the audio queued before this point was heard."""

    name: str


@dataclass(frozen=True)
class Hangup:
    """End the call once the caller has heard the audio already sent (the agent hangs up).

    The record's outcome is ``agent_hangup``; ``reason`` (the agent's words, e.g. ``end_call``) is its detail.
    """

    reason: str = "agent_hangup"


@dataclass(frozen=True)
class Ending:
    """The agent said it is ending the conversation and will close its connection (ElevenLabs' ``end_call``).

    Whatever close follows is the agent hanging up, not a failure; the bridge hangs up itself if the
    close does not come soon.
    """

    reason: str


#: what a :class:`TransferAction` may ask: ``blind`` (REFER: the call leaves at once) or ``attended`` (the target is
#: dialled while the caller stays with the agent, and connected to the caller once it answered)
TRANSFER_MODES = ("blind", "attended")
#: the longest brief an agent may give for an attended transfer (characters)
MAX_BRIEF = 1024


@dataclass(frozen=True)
class TransferAction:
    """Transfer the call to ``target`` (E.164 or sip: URI); ``mode`` attended: ``brief`` is for the target."""

    target: str
    tool_call_id: str | None = None  # set when the agent asked through a tool call: answer with tool_result
    mode: str = "blind"
    brief: str = ""


@dataclass(frozen=True)
class SendDtmf:
    """Send DTMF digits to the caller."""

    digits: str
    tool_call_id: str | None = None


@dataclass(frozen=True)
class RecordAction:
    """Start, stop, pause or resume the call's recording (``action``; the call's policy decides what is allowed)."""

    action: str  # start | stop | pause | resume
    tool_call_id: str | None = None


#: what a :class:`RecordAction` may ask
RECORD_ACTIONS = ("start", "stop", "pause", "resume")


@dataclass(frozen=True)
class Transcript:
    """A line of the conversation for the call record (role: ``agent`` or ``user``).

    ``replace``: the line takes the place of the last line of the same role (ElevenLabs corrects an
    agent line that was cut short by the caller's barge-in).
    """

    role: str
    text: str
    replace: bool = False


@dataclass(frozen=True)
class AgentInfo:
    """Facts the agent reported about the session (e.g. ElevenLabs conversation id)."""

    data: dict[str, Any]


@dataclass(frozen=True)
class AgentEvent:
    """Something the agent reported for the call record: a tool it ran itself, an error it sent.

    ``kind`` is a short word (``tool``, ``error``); ``data`` holds bounded, printable strings, numbers
    and booleans; ``error`` counts it as an agent error in the metrics.
    """

    kind: str
    data: dict[str, Any]
    error: bool = False


@dataclass(frozen=True)
class ProtocolViolation:
    """A message the adapter could not understand; the bridge logs it (with ``where``) and goes on."""

    where: str  # e.g. "agent message #12 (type 'audio')"
    detail: str


Action = (
    Send
    | Play
    | Clear
    | Mark
    | Hangup
    | Ending
    | TransferAction
    | SendDtmf
    | RecordAction
    | Transcript
    | AgentInfo
    | AgentEvent
    | ProtocolViolation
)


class AgentProtocol(ABC):
    """One call's conversation with one agent. Create one per call."""

    #: whether the agent wants binary frames (raw L16) rather than text
    binary_audio: bool = False

    def __init__(self, call: CallInfo) -> None:
        self.call = call

    @abstractmethod
    def open(self) -> list[Message]:
        """Messages to send right after the WebSocket is connected (before any audio)."""

    @abstractmethod
    def audio(self, pcm: bytes) -> Message | None:
        """Caller audio (L16 at the call rate, any length) → the message carrying it, if any yet."""

    @abstractmethod
    def receive(self, message: Message) -> list[Action]:
        """A message from the agent → actions."""

    def dtmf(self, digit: str) -> list[Message]:
        """A DTMF digit the caller pressed."""
        return []

    def mark_played(self, name: str) -> list[Message]:
        """Audio before mark ``name`` has been heard by the caller."""
        return []

    def hold(self, held: bool) -> list[Message]:
        """The far end put the call on hold (``held``: a re-INVITE sendonly/inactive; FreeSWITCH's CHANNEL_HOLD)
        or took it off hold (CHANNEL_UNHOLD). While held the caller hears nothing of the agent."""
        return []

    def machine(self, update: MachineUpdate) -> list[Message]:
        """Answering-machine detection's verdict and, with wait_for_beep, the cue to speak (outbound calls)."""
        return []

    def tool_result(self, tool_call_id: str, result: str, is_error: bool = False) -> list[Message]:
        """The outcome of a tool call the agent made (transfer, DTMF …)."""
        return []

    def close(self, reason: str) -> list[Message]:
        """Messages to send before the bridge closes the agent connection (call ended)."""
        return []
