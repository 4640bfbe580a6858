"""Twilio Media Streams, sans-I/O: the bridge plays Twilio for agents built for it (Pipecat and similar).

To the agent, as Twilio sends them: ``connected``, ``start`` (``tracks: ["inbound"]``, μ-law 8 kHz,
``customParameters`` = call variables plus ``caller_id``, ``called_number``, ``call_id``, ``direction``),
``media`` (caller audio, one message per piece the bridge hands over: ``agent_chunk_ms``), ``dtmf``, ``mark``
(echoed when the audio before it has been heard) and ``stop``; and events of this bridge's own, in the same
envelope, since Twilio has none for them: ``hold`` / ``unhold`` (``{"track": "inbound_track"}``) when the caller's
side holds or resumes the call, and ``machineDetection`` on an outbound call with answering-machine detection
(``{"answeredBy": "human"|"machine_start"|"machine_end_beep"|"machine_end_silence"|"machine_end_other"|
"unknown", "event": "verdict"|"speak"|"beep", "verdict", "action", "reason", "verdict_ms", …}``: Twilio's own
AnsweredBy words, which it reports in a status callback, never in the stream). Agents that do not know them skip
them as unknown events. Every message but
``connected`` carries ``streamSid`` and a string ``sequenceNumber`` counting from 1 (``start`` is 1). A ``media``
message's ``chunk`` counts from 1 and its ``timestamp`` is the ms of caller audio sent before it.

Identifiers: ``streamSid`` is ``MZ`` + 32 random hex digits per call; ``callSid`` is ``CA`` + the call
UUID's 32 hex digits (or a hash of another call id); ``accountSid`` is :data:`ACCOUNT_SID`, a fixed
placeholder of the right shape, since there is no Twilio account.

From the agent: ``media`` → :class:`Play`, ``mark`` → :class:`Mark`, ``clear`` → :class:`Clear`, and this bridge's
own ``transfer`` extension (Media Streams has no transfer: a Twilio app redirects the call over Twilio's REST API)
→ :class:`TransferAction`: ``{"event":"transfer","streamSid":"…","transfer":{"target":"+1555…" | "sip:…",
"mode":"blind" | "attended","brief":"…","id":"t1"}}``, answered (when it has an ``id``) with
``{"event":"transferResult","sequenceNumber":"…","transferResult":{"id":"t1","ok":false,"detail":"…"},
"streamSid":"…"}`` once the outcome is known. Other events are ignored. A message naming another ``streamSid`` is
dropped and reported: an agent mixing up its streams must not play one call's audio to another caller. A missing
``streamSid`` is accepted.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
import secrets
from typing import Any

from orchestrator import dtmf
from orchestrator.agents import _wire
from orchestrator.agents._wire import Malformed, get
from orchestrator.agents.base import (
    Action,
    AgentProtocol,
    CallInfo,
    Clear,
    MachineUpdate,
    Mark,
    Message,
    Play,
    TransferAction,
)
from orchestrator.audio.convert import Converter
from orchestrator.config.model import TwilioAgent

#: ``AC`` + 32 hex digits, as Twilio's, but all zero: a placeholder, not an account
ACCOUNT_SID = "AC" + "0" * 32
RATE = 8000
MAX_NAME = 256  # mark names
#: the end of a machine's greeting in Twilio's AnsweredBy words
ANSWERED_BY_END = {"beep": "machine_end_beep", "greeting_end": "machine_end_silence", "timeout": "machine_end_other"}


def call_sid(call_id: str) -> str:
    """``CA`` + 32 hex digits derived from the call id (the UUID's own digits when it is a UUID)."""
    digits = call_id.replace("-", "").lower()
    if not re.fullmatch(r"[0-9a-f]{32}", digits):
        digits = hashlib.sha256(call_id.encode()).hexdigest()[:32]
    return "CA" + digits


class TwilioProtocol(AgentProtocol):
    """One call's Twilio Media Stream."""

    def __init__(self, call: CallInfo, config: TwilioAgent | None = None, account_sid: str = ACCOUNT_SID) -> None:
        super().__init__(call)
        self.config = config
        self.account_sid = account_sid
        self.call_sid = call_sid(call.call_id)
        self.stream_sid = "MZ" + secrets.token_hex(16)
        self._to_agent = Converter(call.rate, RATE, "l16", "ulaw")
        self._from_agent = Converter(RATE, call.rate, "ulaw", "l16")
        self._sequence = 0
        self._chunk = 0
        self._samples = 0  # μ-law samples (= bytes) sent so far
        self._received = 0
        self._dispatch = self._message  # bound once: no method object per message
        self._stopped = False

    def _next(self) -> int:
        self._sequence += 1
        return self._sequence

    def _event(self, event: str, body: dict[str, Any]) -> str:
        message = {"event": event, "sequenceNumber": str(self._next()), event: body, "streamSid": self.stream_sid}
        return json.dumps(message)

    # -- to the agent ------------------------------------------------------------------------------
    def open(self) -> list[Message]:
        connected = json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        start = {
            "accountSid": self.account_sid,
            "streamSid": self.stream_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "customParameters": _wire.call_facts(self.call),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1},
        }
        return [connected, self._event("start", start)]

    def audio(self, pcm: bytes) -> Message | None:
        ulaw = self._to_agent.convert(pcm)
        if not ulaw:
            return None
        self._sequence += 1
        self._chunk += 1
        timestamp = self._samples * 1000 // RATE
        self._samples += len(ulaw)
        payload = binascii.b2a_base64(ulaw, newline=False).decode("ascii")
        return (
            f'{{"event":"media","sequenceNumber":"{self._sequence}","media":{{"track":"inbound",'
            f'"chunk":"{self._chunk}","timestamp":"{timestamp}","payload":"{payload}"}},'
            f'"streamSid":"{self.stream_sid}"}}'
        )

    def dtmf(self, digit: str) -> list[Message]:
        key = dtmf.key(digit)
        if key is None:
            return []
        return [self._event("dtmf", {"track": "inbound_track", "digit": key})]

    def mark_played(self, name: str) -> list[Message]:
        return [self._event("mark", {"name": name})]

    def hold(self, held: bool) -> list[Message]:
        # Twilio Media Streams has no hold event: an extension in Twilio's own envelope, which Twilio consumers
        # skip as an unknown event (Pipecat's serializer does)
        return [self._event("hold" if held else "unhold", {"track": "inbound_track"})]

    def tool_result(self, tool_call_id: str, result: str, is_error: bool = False) -> list[Message]:
        # the outcome of a ``transfer`` the agent asked for with an ``id`` (an extension, like ``hold``)
        return [self._event("transferResult", {"id": tool_call_id, "ok": not is_error, "detail": result})]

    def machine(self, update: MachineUpdate) -> list[Message]:
        # Twilio reports AMD as AnsweredBy (human, machine_start, machine_end_beep, machine_end_silence,
        # machine_end_other, unknown) in a status callback, never in the Media Stream: here it is an extension
        # event in the stream's envelope with those words
        if update.event == "verdict":
            answered_by = {"human": "human", "unknown": "unknown"}.get(update.verdict, "machine_start")
        elif update.event == "speak":
            answered_by = ANSWERED_BY_END.get(update.reason, "machine_end_other")
        else:
            answered_by = "machine_end_beep"
        body: dict[str, Any] = {"answeredBy": answered_by, "event": update.event, "verdict": update.verdict}
        if update.event == "verdict":
            body["action"] = update.action
        if update.reason:
            body["reason"] = update.reason
        body.update({k: v for k, v in update.data.items() if k not in body})
        return [self._event("machineDetection", body)]

    def close(self, reason: str) -> list[Message]:
        if self._stopped:
            return []
        self._stopped = True
        return [self._event("stop", {"accountSid": self.account_sid, "callSid": self.call_sid})]

    # -- from the agent ----------------------------------------------------------------------------
    def receive(self, message: Message) -> list[Action]:
        self._received += 1
        return _wire.receive_json(message, "event", self._received, self._dispatch)

    def _message(self, event: str, data: dict[str, Any]) -> list[Action]:
        sid = data.get("streamSid")
        if sid is not None and sid != self.stream_sid:
            shown = _wire.clean(sid, 40) if isinstance(sid, str) else type(sid).__name__
            raise Malformed(f"streamSid '{shown}' is not this call's ('{self.stream_sid}'): message dropped")
        if event == "media":
            payload = get(get(data, "media", dict), "payload", str, "media.")
            try:
                ulaw = binascii.a2b_base64(payload, strict_mode=True)
            except binascii.Error as exc:
                raise Malformed(f"'media.payload' is not base64: {exc}") from None
            pcm = self._from_agent.convert(ulaw)
            return [Play(pcm)] if pcm else []
        if event == "mark":
            name = get(get(data, "mark", dict), "name", str, "mark.")
            if len(name) > MAX_NAME:
                raise Malformed(f"'mark.name' is longer than {MAX_NAME} characters")
            return [Mark(name)]
        if event == "clear":
            self._from_agent.reset()
            return [Clear()]
        if event == "transfer":
            body = get(data, "transfer", dict)
            target = get(body, "target", str, "transfer.").strip()
            if not _wire.valid_target(target):
                raise Malformed(f"'transfer.target' '{_wire.clean(target, 64)}' is not a phone number or SIP URI")
            mode, brief = _wire.transfer_mode(body.get("mode"), body.get("brief"))
            request = body.get("id")
            if request is not None and (not isinstance(request, str) or len(request) > MAX_NAME):
                raise Malformed(f"'transfer.id' is not a string of at most {MAX_NAME} characters")
            return [TransferAction(target, request, mode, brief)]
        return []
