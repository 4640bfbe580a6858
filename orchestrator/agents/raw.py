"""The raw protocol, sans-I/O: binary L16 audio both ways, JSON text messages for control.

Audio: binary frames of L16 mono little-endian at the agent's ``audio_format`` rate
(``pcm_8000`` … ``pcm_48000``), both ways, any length (an odd trailing byte waits for the next frame).
The caller's audio is sent as the bridge hands it over (normally 20 ms a frame).

Control messages (JSON objects in text frames, distinguished by ``type``):

=========================  ===============================================================================
Bridge → agent
=========================  ===============================================================================
``start``                  first message: ``{"type":"start","call":{"call_id","direction","caller_id",
                           "called_number","agent","trunk","rate","variables":{…}},"audio":{"encoding":
                           "l16","sample_rate":16000}}``. ``call.rate`` is the telephone side's rate;
                           ``audio.sample_rate`` is the rate of the audio on this connection.
``dtmf``                   the caller pressed a key: ``{"type":"dtmf","digit":"5"}``
``mark``                   the agent audio sent before the agent's mark ``name`` has been heard:
                           ``{"type":"mark","name":"x"}``
``hold``                   the caller's side put the call on hold (re-INVITE sendonly/inactive) or resumed it:
                           ``{"type":"hold","held":true}`` / ``{"type":"hold","held":false}``
``machine_detection``      answering-machine detection on an outbound call: ``{"type":"machine_detection",
                           "event":"verdict","verdict":"human"|"machine"|"unknown","action":"continue"|"wait"|
                           "hangup","reason":"long_greeting","verdict_ms":3020,"speech_ms":2900,…}``; with
                           ``wait_for_beep`` (action ``wait``: the agent's audio is held back meanwhile) then
                           ``{"type":"machine_detection","event":"speak","verdict":"machine","reason":"beep"|
                           "greeting_end"|"timeout"}``: leave the message now; with ``notify`` possibly
                           ``{"event":"beep",…}`` (docs/call-flow.md#answering-machine-detection)
``result``                 outcome of a ``transfer``, ``dtmf`` or ``record`` request that had an ``id``:
                           ``{"type":"result","id":"…","ok":true,"detail":"…"}``
``stop``                   the call ended; the bridge closes the connection next: ``{"type":"stop",
                           "reason":"…"}``
=========================  ===============================================================================

=========================  ===============================================================================
Agent → bridge
=========================  ===============================================================================
``hangup``                 end the call: ``{"type":"hangup","reason":"done"}`` (``reason`` optional)
``transfer``               ``{"type":"transfer","target":"+4930123456" | "sip:…","id":"t1"}`` (``id``
                           optional: give one to get a ``result``); ``"mode":"attended"`` (default
                           ``blind``: REFER) dials the target through the call's trunk while the caller
                           stays with you and connects them once it answered; ``"brief":"…"`` (attended
                           only, at most 1024 characters) is what the target should know
``dtmf``                   send digits to the caller: ``{"type":"dtmf","digits":"12#","id":"d1"}``
``record``                 the call's recording: ``{"type":"record","action":"start"|"stop"|"pause"|
                           "resume","id":"r1"}`` (``id`` optional; what is allowed depends on the call's
                           recording policy: docs/operations.md#call-recording)
``clear``                  barge-in: drop agent audio not yet played: ``{"type":"clear"}``
``mark``                   ``{"type":"mark","name":"x"}``: answered with a ``mark`` once the audio sent
                           before it has been heard
``transcript``             a line for the call record: ``{"type":"transcript","role":"agent"|"user",
                           "text":"…"}``
=========================  ===============================================================================

Anything else from the agent (unknown type, missing or mistyped field, invalid JSON) is reported as a
:class:`ProtocolViolation` and otherwise ignored.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from orchestrator import dtmf
from orchestrator.agents import _wire
from orchestrator.agents._wire import Malformed, get
from orchestrator.agents.base import (
    RECORD_ACTIONS,
    Action,
    AgentProtocol,
    CallInfo,
    Clear,
    Hangup,
    MachineUpdate,
    Mark,
    Message,
    Play,
    RecordAction,
    SendDtmf,
    Transcript,
    TransferAction,
)
from orchestrator.audio.convert import Converter, parse_format
from orchestrator.config.model import RawAgent

MAX_REASON = 64
MAX_NAME = 256  # mark names, request ids
MAX_TEXT = 4000  # a transcript line


class RawProtocol(AgentProtocol):
    """One call's raw L16 + JSON connection."""

    binary_audio = True

    def __init__(self, call: CallInfo, config: RawAgent) -> None:
        super().__init__(call)
        self.config = config
        _, self.rate = parse_format(config.audio_format)
        self._to_agent = Converter(call.rate, self.rate)
        self._from_agent = Converter(self.rate, call.rate)
        self._received = 0
        self._dispatch = self._control  # bound once: no method object per message

    # -- to the agent ------------------------------------------------------------------------------
    def open(self) -> list[Message]:
        start = {
            "type": "start",
            "call": dataclasses.asdict(self.call),
            "audio": {"encoding": "l16", "sample_rate": self.rate},
        }
        return [json.dumps(start)]

    def audio(self, pcm: bytes) -> Message | None:
        return self._to_agent.convert(pcm) or None

    def dtmf(self, digit: str) -> list[Message]:
        key = dtmf.key(digit)
        if key is None:
            return []
        return [json.dumps({"type": "dtmf", "digit": key})]

    def mark_played(self, name: str) -> list[Message]:
        return [json.dumps({"type": "mark", "name": name})]

    def hold(self, held: bool) -> list[Message]:
        return [json.dumps({"type": "hold", "held": held})]

    def machine(self, update: MachineUpdate) -> list[Message]:
        message: dict[str, Any] = {"type": "machine_detection", "event": update.event, "verdict": update.verdict}
        if update.event == "verdict":
            message["action"] = update.action
        if update.reason:
            message["reason"] = update.reason
        message.update({k: v for k, v in update.data.items() if k not in message})
        return [json.dumps(message)]

    def tool_result(self, tool_call_id: str, result: str, is_error: bool = False) -> list[Message]:
        return [json.dumps({"type": "result", "id": tool_call_id, "ok": not is_error, "detail": result})]

    def close(self, reason: str) -> list[Message]:
        return [json.dumps({"type": "stop", "reason": reason})]

    # -- from the agent ----------------------------------------------------------------------------
    def receive(self, message: Message) -> list[Action]:
        self._received += 1
        if isinstance(message, bytes):
            pcm = self._from_agent.convert(message)
            return [Play(pcm)] if pcm else []
        return _wire.receive_json(message, "type", self._received, self._dispatch)

    def _control(self, kind: str, data: dict[str, Any]) -> list[Action]:
        if kind == "hangup":
            reason = data.get("reason")
            if reason is not None and not isinstance(reason, str):
                raise Malformed("'reason' is not a string")
            reason = _wire.clean((reason or "").strip()[:MAX_REASON], MAX_REASON)
            return [Hangup(reason or "agent_hangup")]
        if kind == "transfer":
            target = get(data, "target", str).strip()
            if not _wire.valid_target(target):
                raise Malformed(f"'target' '{_wire.clean(target, 64)}' is not a phone number or SIP URI")
            mode, brief = _wire.transfer_mode(data.get("mode"), data.get("brief"))
            return [TransferAction(target, self._request_id(data), mode, brief)]
        if kind == "dtmf":
            digits = dtmf.sequence(get(data, "digits", str))
            if digits is None:
                raise Malformed(f"'digits' must be {dtmf.SEQUENCE_RULE}")
            return [SendDtmf(digits, self._request_id(data))]
        if kind == "record":
            action = get(data, "action", str)
            if action not in RECORD_ACTIONS:
                raise Malformed(f"'action' '{_wire.clean(action, 20)}' is not one of {', '.join(RECORD_ACTIONS)}")
            return [RecordAction(action, self._request_id(data))]
        if kind == "clear":
            self._from_agent.reset()
            return [Clear()]
        if kind == "mark":
            name = get(data, "name", str)
            if len(name) > MAX_NAME:
                raise Malformed(f"'name' is longer than {MAX_NAME} characters")
            return [Mark(name)]
        if kind == "transcript":
            role = get(data, "role", str)
            if role not in ("agent", "user"):
                raise Malformed(f"'role' is '{_wire.clean(role, 20)}', not 'agent' or 'user'")
            text = _wire.clean(get(data, "text", str).strip(), MAX_TEXT, keep_newlines=True)
            return [Transcript(role, text)] if text else []
        raise Malformed(f"unknown type '{_wire.clean(kind, 40)}'")

    @staticmethod
    def _request_id(data: dict[str, Any]) -> str | None:
        value = data.get("id")
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise Malformed("'id' is not a string")
        value = str(value)
        if len(value) > MAX_NAME:
            raise Malformed(f"'id' is longer than {MAX_NAME} characters")
        return value
