"""ElevenLabs Agents conversation WebSocket, sans-I/O.

Connecting: a public agent is reached at :func:`public_url`; with an API key, the bridge first does
the GET described by :func:`signed_url_request` and connects to :func:`parse_signed_url` of the answer.

To the agent:

- on open, ``conversation_initiation_client_data`` with ``dynamic_variables``: the call variables
  (keys starting ``system__`` dropped: ElevenLabs reserves them, and fills ``system__caller_id`` only
  for its own telephony) plus ``caller_id``, ``called_number``, ``call_id`` and ``direction``;
- caller audio as ``{"user_audio_chunk": <base64>}`` in the agent's input format, one message per
  piece the bridge hands over (``orchestrator.media.agent_chunk_ms``: ElevenLabs takes any chunk size);
- ``pong`` for every ``ping``, right away. ``ping_ms`` is ElevenLabs' own latency figure; its
  examples delay the pong by it to *simulate* latency, which a real client must not do;
- ``client_tool_result`` answering ``client_tool_call``;
- a caller's DTMF digit as ``contextual_update`` ("The caller pressed the keypad key 5."): it reaches
  the agent's context without interrupting it or forcing a reply per digit, so multi-digit entries
  work; the agent reacts on its next turn. Hold and resume by the caller's side (a re-INVITE sendonly or
  inactive, then sendrecv) are ``contextual_update`` too ("The caller put the call on hold …");
- answering-machine detection on an outbound call (:class:`MachineUpdate`): the verdict as ``contextual_update``
  ("An answering machine or voicemail answered …", "A person answered …"); with wait_for_beep, once the greeting
  is over, ``user_message`` ("[The voicemail greeting has ended …] Leave your message now."): a contextual update
  never makes the agent speak, and the machine gives it no turn, so the cue is a user turn (it appears as a user
  line in ElevenLabs' transcript).

From the agent: ``audio`` → :class:`Play` (dropped when its ``event_id`` is at or below the last
``interruption``'s), ``interruption`` → :class:`Clear`, transcripts → :class:`Transcript`
(``agent_response_correction`` replaces the agent line it corrects), client tools ``end_call``,
``transfer_call``/``transfer`` (``number``, ``target`` or ``destination``; ``mode``: ``blind`` (default) or
``attended``, and for attended ``brief``: what the person taking the call should know), ``send_dtmf``
(``digits``) and ``record`` (``action``: start, stop, pause or resume the call's recording) → actions;
any other tool is answered with an error result. ``agent_tool_response``
(a tool ElevenLabs ran itself: ``end_call``, ``transfer_to_number`` …) → :class:`AgentEvent` for the
record, and for ``end_call`` also :class:`Ending` (ElevenLabs closes the connection next). ``error``
(``error_event``: ``code``, ``message``, ``error_type``; sent before ElevenLabs closes on an error)
and ``client_error`` → :class:`AgentEvent` counted as an agent error. ``vad_score`` and types this
adapter does not know are ignored (ElevenLabs adds types over time).

Per call, ``overrides`` (first message, language, voice, prompt: the agent's, the number's and the
call's merged by the bridge) go into ``conversation_initiation_client_data`` as
``conversation_config_override: {"agent": {"first_message", "language", "prompt": {"prompt"}},
"tts": {"voice_id"}}``; the agent's *Security* settings must allow each overridden field, or
ElevenLabs closes the connection (1008, ``override_error``).
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit, urlunsplit

from orchestrator import dtmf
from orchestrator.agents import _wire
from orchestrator.agents._wire import Malformed, get
from orchestrator.agents.base import (
    RECORD_ACTIONS,
    Action,
    AgentEvent,
    AgentInfo,
    AgentProtocol,
    CallInfo,
    Clear,
    Ending,
    Hangup,
    MachineUpdate,
    Message,
    Play,
    ProtocolViolation,
    RecordAction,
    Send,
    SendDtmf,
    Transcript,
    TransferAction,
)
from orchestrator.audio.convert import Converter, parse_format
from orchestrator.config.model import ElevenLabsAgent

SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
TRANSFER_TOOLS = ("transfer_call", "transfer")
TRANSFER_PARAMETERS = ("number", "target", "destination")
#: an attended transfer's brief for the target (the first one given)
BRIEF_PARAMETERS = ("brief", "summary")
#: the client tool that starts, stops, pauses or resumes the call's recording (parameter ``action``)
RECORD_TOOL = "record"
#: ElevenLabs' own transfer tools act on its telephony integrations, not on a call bridged here
SERVER_TRANSFER_TOOLS = ("transfer_to_number", "transfer_to_sip_uri")
#: what the agent is told of answering-machine detection (contextual_update; the cue to speak is a user_message)
VERDICT_TEXT = {
    ("human", "continue"): "A person answered this call (not an answering machine).",
    ("unknown", "continue"): "It is not clear whether a person or an answering machine answered this call.",
    ("machine", "continue"): "An answering machine or voicemail answered this call, not a person.",
    ("machine", "wait"): (
        "An answering machine or voicemail answered this call. Stay silent while its greeting plays: you will be "
        "told when to leave your message."
    ),
    ("machine", "hangup"): "An answering machine or voicemail answered this call: the call is being ended.",
}
SPEAK_NOW = {
    "beep": "[The voicemail greeting has ended and the beep has played.] Leave your message now.",
    "greeting_end": "[The voicemail greeting has ended.] Leave your message now.",
    "timeout": "[The voicemail is recording now.] Leave your message now.",
}
BEEP_PLAYED = "The voicemail beep has played: the machine is recording from now on."
MAX_TEXT = 4000  # a transcript line
MAX_FIELD = 300  # a name, an id, an error message


def public_url(config: ElevenLabsAgent) -> str:
    """The conversation URL of a public agent: the configured URL with ``agent_id``."""
    separator = "&" if "?" in config.url else "?"
    return f"{config.url}{separator}agent_id={quote(config.agent_id, safe='')}"


def signed_url_request(config: ElevenLabsAgent) -> tuple[str, dict[str, str]] | None:
    """The GET (URL, headers) that fetches a signed URL for a private agent; None without an API key.

    The host is the configured WebSocket URL's (regional hosts work), over https (http for ws://).
    """
    if config.api_key is None:
        return None
    parts = urlsplit(config.url)
    scheme = "http" if parts.scheme == "ws" else "https"
    url = urlunsplit((scheme, parts.netloc, SIGNED_URL_PATH, f"agent_id={quote(config.agent_id, safe='')}", ""))
    return url, {"xi-api-key": config.api_key.get_secret_value()}


def parse_signed_url(body: bytes) -> str:
    """The ``signed_url`` from the answer to :func:`signed_url_request`; ValueError if there is none."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"the signed-URL answer is not JSON: {exc}") from None
    url = data.get("signed_url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url.startswith(("wss://", "ws://")):
        raise ValueError("the signed-URL answer has no WebSocket 'signed_url'")
    return url


class ElevenLabsProtocol(AgentProtocol):
    """One call's ElevenLabs conversation."""

    def __init__(self, call: CallInfo, config: ElevenLabsAgent, overrides: Mapping[str, str] | None = None) -> None:
        super().__init__(call)
        self.config = config
        self.overrides = dict(overrides or {})
        self.input_format = self.output_format = config.audio_format
        self._to_agent = self._input_converter(config.audio_format)
        self._from_agent = self._output_converter(config.audio_format)
        self._interrupted: int | None = None  # event_id of the last interruption
        self._received = 0
        self._dispatch = self._message  # bound once: no method object per message

    def _input_converter(self, name: str) -> Converter:
        encoding, rate = parse_format(name)
        return Converter(self.call.rate, rate, "l16", encoding)

    def _output_converter(self, name: str) -> Converter:
        encoding, rate = parse_format(name)
        return Converter(rate, self.call.rate, encoding, "l16")

    # -- to the agent ------------------------------------------------------------------------------
    def open(self) -> list[Message]:
        variables = {k: v for k, v in _wire.call_facts(self.call).items() if not k.startswith("system__")}
        message: dict[str, Any] = {"type": "conversation_initiation_client_data", "dynamic_variables": variables}
        override = conversation_config_override(self.overrides)
        if override:
            message["conversation_config_override"] = override
        return [json.dumps(message)]

    def audio(self, pcm: bytes) -> Message | None:
        data = self._to_agent.convert(pcm)
        if not data:
            return None
        return '{"user_audio_chunk":"' + binascii.b2a_base64(data, newline=False).decode("ascii") + '"}'

    def dtmf(self, digit: str) -> list[Message]:
        key = dtmf.key(digit)
        if key is None:
            return []
        text = f"The caller pressed the keypad key {key}."
        return [json.dumps({"type": "contextual_update", "text": text})]

    def hold(self, held: bool) -> list[Message]:
        text = (
            "The caller put the call on hold: they cannot hear you until they resume it."
            if held
            else "The caller took the call off hold and can hear you again."
        )
        return [json.dumps({"type": "contextual_update", "text": text})]

    def machine(self, update: MachineUpdate) -> list[Message]:
        if update.event == "speak":
            text = SPEAK_NOW.get(update.reason, SPEAK_NOW["timeout"])
            return [json.dumps({"type": "user_message", "text": text})]
        if update.event == "beep":
            return [json.dumps({"type": "contextual_update", "text": BEEP_PLAYED})]
        text = VERDICT_TEXT.get((update.verdict, update.action)) or VERDICT_TEXT[(update.verdict, "continue")]
        return [json.dumps({"type": "contextual_update", "text": text})]

    def tool_result(self, tool_call_id: str, result: str, is_error: bool = False) -> list[Message]:
        message = {"type": "client_tool_result", "tool_call_id": tool_call_id, "result": result, "is_error": is_error}
        return [json.dumps(message)]

    # -- from the agent ----------------------------------------------------------------------------
    def receive(self, message: Message) -> list[Action]:
        self._received += 1
        return _wire.receive_json(message, "type", self._received, self._dispatch)

    def _message(self, kind: str, data: dict[str, Any]) -> list[Action]:
        handler = self._handlers.get(kind)
        return handler(self, data) if handler is not None else []

    def _metadata(self, data: dict[str, Any]) -> list[Action]:
        event = get(data, "conversation_initiation_metadata_event", dict)
        info = {
            k: _wire.clean(event[k], MAX_FIELD)
            for k in ("conversation_id", "agent_output_audio_format", "user_input_audio_format")
            if isinstance(event.get(k), str)
        }
        actions: list[Action] = [AgentInfo(info)]
        for key, attr, make in (
            ("user_input_audio_format", "input_format", self._input_converter),
            ("agent_output_audio_format", "output_format", self._output_converter),
        ):
            announced = info.get(key)
            if announced is None or announced == getattr(self, attr):
                continue
            where = f"agent message #{self._received} (type 'conversation_initiation_metadata')"
            try:
                converter = make(announced)
            except ValueError:
                detail = f"{key} '{announced}' is not supported; keeping the configured '{getattr(self, attr)}'"
                actions.append(ProtocolViolation(where, detail))
                continue
            detail = f"{key} is '{announced}' but the configuration says '{getattr(self, attr)}': following the agent"
            actions.append(ProtocolViolation(where, detail))
            setattr(self, attr, announced)
            if attr == "input_format":
                self._to_agent = converter
            else:
                self._from_agent = converter
        return actions

    def _audio(self, data: dict[str, Any]) -> list[Action]:
        event = get(data, "audio_event", dict)
        eid = _wire.event_id(event.get("event_id"), "audio_event.event_id")
        payload = get(event, "audio_base_64", str, "audio_event.")
        if self._interrupted is not None and eid <= self._interrupted:
            return []
        try:
            raw = binascii.a2b_base64(payload, strict_mode=True)
        except binascii.Error as exc:
            raise Malformed(f"'audio_event.audio_base_64' is not base64: {exc}") from None
        pcm = self._from_agent.convert(raw)
        return [Play(pcm, eid)] if pcm else []

    def _interruption(self, data: dict[str, Any]) -> list[Action]:
        event = get(data, "interruption_event", dict)
        eid = _wire.event_id(event.get("event_id"), "interruption_event.event_id")
        self._interrupted = eid if self._interrupted is None else max(eid, self._interrupted)
        self._from_agent.reset()  # the tail of the interrupted utterance must not leak into the next
        return [Clear()]

    def _ping(self, data: dict[str, Any]) -> list[Action]:
        event = get(data, "ping_event", dict)
        eid = _wire.event_id(event.get("event_id"), "ping_event.event_id")
        return [Send(json.dumps({"type": "pong", "event_id": eid}))]

    def _agent_response(self, data: dict[str, Any]) -> list[Action]:
        text = get(get(data, "agent_response_event", dict), "agent_response", str, "agent_response_event.")
        return _line("agent", text)

    def _correction(self, data: dict[str, Any]) -> list[Action]:
        event = get(data, "agent_response_correction_event", dict)
        text = get(event, "corrected_agent_response", str, "agent_response_correction_event.")
        return _line("agent", text, replace=True)

    def _user_transcript(self, data: dict[str, Any]) -> list[Action]:
        event = get(data, "user_transcription_event", dict)
        text = get(event, "user_transcript", str, "user_transcription_event.")
        return _line("user", text)

    def _agent_tool(self, data: dict[str, Any]) -> list[Action]:
        event = get(data, "agent_tool_response", dict)
        name = get(event, "tool_name", str, "agent_tool_response.")
        info: dict[str, Any] = {"tool": _wire.clean(name, MAX_FIELD)}
        for key in ("tool_type", "tool_call_id"):
            if isinstance(event.get(key), str):
                info[key] = _wire.clean(event[key], MAX_FIELD)
        failed = event.get("is_error") is True
        info["is_error"] = failed
        if name in SERVER_TRANSFER_TOOLS:
            info["note"] = "ElevenLabs' own transfer cannot move this SIP call: give the agent the transfer_call tool"
        actions: list[Action] = [AgentEvent("tool", info, error=failed)]
        if name == "end_call" and not failed:
            actions.append(Ending("end_call"))
        return actions

    def _error(self, data: dict[str, Any]) -> list[Action]:
        kind = data["type"]
        event = next((data[k] for k in ("error_event", f"{kind}_event", kind) if isinstance(data.get(k), dict)), data)
        info: dict[str, Any] = {"type": kind}
        code = event.get("code")
        if isinstance(code, int) and not isinstance(code, bool) and 0 <= code < 100000:
            info["code"] = code
        for key in ("error_type", "message", "reason"):
            if isinstance(event.get(key), str) and event[key].strip():
                info[key] = _wire.clean(event[key].strip(), MAX_FIELD)
        return [AgentEvent("error", info, error=True)]

    def _tool_call(self, data: dict[str, Any]) -> list[Action]:
        call = get(data, "client_tool_call", dict)
        name = get(call, "tool_name", str, "client_tool_call.")
        call_id = get(call, "tool_call_id", str, "client_tool_call.")
        if len(call_id) > MAX_FIELD:
            raise Malformed(f"'client_tool_call.tool_call_id' is longer than {MAX_FIELD} characters")
        parameters = call.get("parameters")
        parameters = {} if parameters is None else parameters
        if not isinstance(parameters, dict):
            raise Malformed("'client_tool_call.parameters' is not an object")

        def fail(reason: str) -> list[Action]:
            return [Send(m) for m in self.tool_result(call_id, reason, is_error=True)]

        if name == "end_call":
            return [*(Send(m) for m in self.tool_result(call_id, "The call is being ended.")), Hangup("end_call")]
        if name in TRANSFER_TOOLS:
            target = next((parameters[k] for k in TRANSFER_PARAMETERS if parameters.get(k) not in (None, "")), None)
            if target is None:
                return fail(f"missing parameter: give the destination as one of {', '.join(TRANSFER_PARAMETERS)}")
            if not isinstance(target, str | int) or isinstance(target, bool):
                return fail("the destination must be a phone number or SIP URI (a string)")
            target = str(target).strip()
            if not _wire.valid_target(target):
                return fail(f"'{_wire.clean(target, 64)}' is not a phone number or SIP URI")
            brief = next((parameters[k] for k in BRIEF_PARAMETERS if parameters.get(k) not in (None, "")), None)
            try:
                mode, text = _wire.transfer_mode(parameters.get("mode"), brief)
            except Malformed as exc:
                return fail(str(exc))
            return [TransferAction(target, call_id, mode, text)]
        if name == "send_dtmf":
            digits = parameters.get("digits")
            digits = str(digits).strip() if isinstance(digits, str | int) and not isinstance(digits, bool) else ""
            normal = dtmf.sequence(digits)
            if normal is None:
                return fail(f"'digits' must be {dtmf.SEQUENCE_RULE}")
            return [SendDtmf(normal, call_id)]
        if name == RECORD_TOOL:
            action = parameters.get("action")
            if not isinstance(action, str) or action.strip().lower() not in RECORD_ACTIONS:
                return fail(f"'action' must be one of {', '.join(RECORD_ACTIONS)}")
            return [RecordAction(action.strip().lower(), call_id)]
        return fail(f"unknown tool '{_wire.clean(name, 64)}'")

    _handlers: ClassVar[dict[str, Callable[[ElevenLabsProtocol, dict[str, Any]], list[Action]]]] = {
        "conversation_initiation_metadata": _metadata,
        "audio": _audio,
        "interruption": _interruption,
        "ping": _ping,
        "agent_response": _agent_response,
        "agent_response_correction": _correction,
        "user_transcript": _user_transcript,
        "client_tool_call": _tool_call,
        "agent_tool_response": _agent_tool,
        "error": _error,
        "client_error": _error,
    }


def _line(role: str, text: str, replace: bool = False) -> list[Action]:
    text = _wire.clean(text.strip(), MAX_TEXT, keep_newlines=True)
    return [Transcript(role, text, replace)] if text else []


def conversation_config_override(overrides: Mapping[str, str]) -> dict[str, Any]:
    """ElevenLabs' ``conversation_config_override`` for the call's overrides (empty when there are none)."""
    # an empty first message is one: the agent waits for the caller to speak first
    agent: dict[str, Any] = {k: overrides[k] for k in ("first_message", "language") if overrides.get(k) is not None}
    if overrides.get("prompt"):
        agent["prompt"] = {"prompt": overrides["prompt"]}
    override: dict[str, Any] = {}
    if agent:
        override["agent"] = agent
    if overrides.get("voice_id"):
        override["tts"] = {"voice_id": overrides["voice_id"]}
    return override
