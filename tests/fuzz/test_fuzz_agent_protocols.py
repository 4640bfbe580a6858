"""Property-based: whatever an agent sends, each protocol adapter answers with actions, never an exception.

Arbitrary JSON (deep, huge numbers, NaN/Infinity, wrong types, lone surrogates), arbitrary text and
bytes, and messages shaped like each protocol's own with fuzzed fields go through ``receive()``; valid
messages round-trip to the action they stand for. The agent side of the WebSocket framing gets
arbitrary bytes after a real handshake. Bounded: a few hundred examples per property, no deadline.
"""

from __future__ import annotations

import base64
import contextlib
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.agents import _wire
from orchestrator.agents.base import (
    AgentEvent,
    AgentInfo,
    CallInfo,
    Clear,
    Ending,
    Hangup,
    Mark,
    Play,
    ProtocolViolation,
    Send,
    SendDtmf,
    Transcript,
    TransferAction,
)
from orchestrator.agents.elevenlabs import ElevenLabsProtocol
from orchestrator.agents.raw import RawProtocol
from orchestrator.agents.twilio import TwilioProtocol
from orchestrator.config.model import ElevenLabsAgent, RawAgent, TwilioAgent
from orchestrator.media.websocket import WebSocket

ACTIONS = (Send, Play, Clear, Mark, Hangup, Ending, TransferAction, SendDtmf, Transcript, AgentInfo, AgentEvent,
           ProtocolViolation)  # fmt: skip
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CALL = CallInfo("5f0c3f7e-2b1a-4c8e-9d3f-0123456789ab", "inbound", "+4915112345678", "+4930123456", "a", "t", 8000)


def adapters() -> list[Any]:
    eleven = ElevenLabsAgent.model_validate({"name": "a", "protocol": "elevenlabs", "agent_id": "x"})
    twilio = TwilioAgent.model_validate({"name": "a", "protocol": "twilio", "url": "ws://127.0.0.1:1/x"})
    raw = RawAgent.model_validate({"name": "a", "protocol": "raw", "url": "ws://127.0.0.1:1/x"})
    return [ElevenLabsProtocol(CALL, eleven), TwilioProtocol(CALL, twilio), RawProtocol(CALL, raw)]


ADAPTERS = adapters()  # reused: their state between examples is part of what is fuzzed
RAW_8K = RawProtocol(CALL, RawAgent.model_validate({"name": "a", "protocol": "raw", "url": "ws://h/x",
                                                    "audio_format": "pcm_8000"}))  # fmt: skip


def check(actions: Any) -> None:
    assert isinstance(actions, list)
    for action in actions:
        assert isinstance(action, ACTIONS), action
        if isinstance(action, Play):
            assert isinstance(action.pcm, bytes) and len(action.pcm) % 2 == 0
        if isinstance(action, Send):
            assert isinstance(action.message, str | bytes)
            if isinstance(action.message, str):
                json.loads(action.message)  # what goes back to the agent is valid JSON
        if isinstance(action, Transcript | AgentEvent | ProtocolViolation):
            text = json.dumps(action.__dict__, ensure_ascii=False)  # records and logs can take it
            text.encode()


# -- hostile JSON ---------------------------------------------------------------------------------------
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**20, max_value=10**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["\ud800", "\x00", "A" * 300, "0x1f", "-1", "1e400", "²"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
TYPES = [
    "audio", "interruption", "ping", "agent_response", "agent_response_correction", "user_transcript",
    "client_tool_call", "conversation_initiation_metadata", "agent_tool_response", "error", "client_error",
    "hangup", "transfer", "dtmf", "clear", "mark", "transcript", "vad_score", "unknown",
]  # fmt: skip
EVENTS = ["media", "mark", "clear", "start", "stop", "connected", "dtmf"]
FIELDS = [
    "audio_event", "interruption_event", "ping_event", "agent_response_event", "agent_response_correction_event",
    "user_transcription_event", "client_tool_call", "conversation_initiation_metadata_event",
    "agent_tool_response", "error_event", "client_error_event", "media", "mark", "streamSid", "reason", "target",
    "id", "digits", "name", "role", "text", "message",
]  # fmt: skip
inner_fields = st.dictionaries(
    st.sampled_from(
        ["event_id", "audio_base_64", "agent_response", "corrected_agent_response", "user_transcript", "tool_name",
         "tool_call_id", "parameters", "payload", "name", "code", "message", "is_error", "number", "digits",
         "conversation_id", "agent_output_audio_format", "user_input_audio_format", "tool_type"]
    ) | st.text(max_size=8),
    json_values,
    max_size=6,
)  # fmt: skip
shaped = st.builds(
    lambda kind, event, fields, extra: {**extra, "type": kind, "event": event, **fields},
    st.sampled_from(TYPES) | json_values,
    st.sampled_from(EVENTS) | json_values,
    st.dictionaries(st.sampled_from(FIELDS), inner_fields | json_values, max_size=4),
    st.dictionaries(st.text(max_size=8), json_values, max_size=2),
)


def dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


@FUZZ
@given(value=json_values | shaped)
def test_any_json_gives_only_actions(value: Any) -> None:
    for adapter in ADAPTERS:
        check(adapter.receive(dumps(value)))


@FUZZ
@given(message=st.text(max_size=200) | st.binary(max_size=300))
def test_any_text_or_bytes_gives_only_actions(message: str | bytes) -> None:
    for adapter in ADAPTERS:
        check(adapter.receive(message))


@settings(max_examples=30, deadline=None)
@given(depth=st.integers(min_value=50, max_value=200_000), opener=st.sampled_from(["[", '{"a":']))
def test_deep_nesting_is_a_protocol_violation(depth: int, opener: str) -> None:
    text = '{"type":"audio","audio_event":' + opener * depth
    for adapter in ADAPTERS:
        (violation,) = adapter.receive(text)
        assert isinstance(violation, ProtocolViolation)


@settings(max_examples=60, deadline=None)
@given(
    number=st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "9" * 5000, "1" * 400])
    | st.integers().map(str),
    key=st.sampled_from(["event_id", "code", "ping_ms"]),
)
def test_extreme_numbers_never_raise(number: str, key: str) -> None:
    for kind, field in (("ping", "ping_event"), ("audio", "audio_event"), ("interruption", "interruption_event")):
        text = f'{{"type":"{kind}","{field}":{{"{key}":{number},"audio_base_64":""}}}}'
        for adapter in ADAPTERS:
            check(adapter.receive(text))


@FUZZ
@given(message=st.text(max_size=100) | st.binary(max_size=100))
def test_parse_object_raises_only_malformed(message: str | bytes) -> None:
    with contextlib.suppress(_wire.Malformed):
        assert isinstance(_wire.parse_object(message), dict)


# -- valid messages round-trip ---------------------------------------------------------------------------
pcm16 = st.binary(min_size=2, max_size=2000).map(lambda b: b[: len(b) // 2 * 2])


@FUZZ
@given(event_id=st.integers(min_value=0, max_value=2**62), text=st.text(min_size=1, max_size=60))
def test_elevenlabs_valid_messages_round_trip(event_id: int, text: str) -> None:
    adapter = adapters()[0]
    (pong,) = adapter.receive(json.dumps({"type": "ping", "ping_event": {"event_id": event_id}}))
    assert isinstance(pong, Send) and json.loads(pong.message) == {"type": "pong", "event_id": event_id}
    actions = adapter.receive(json.dumps({"type": "agent_response", "agent_response_event": {"agent_response": text}}))
    expected = _wire.clean(text.strip(), 4000, keep_newlines=True)
    assert actions == ([Transcript("agent", expected)] if expected else [])
    (clear,) = adapter.receive(json.dumps({"type": "interruption", "interruption_event": {"event_id": event_id}}))
    assert isinstance(clear, Clear)


@FUZZ
@given(pcm=pcm16, name=st.text(min_size=1, max_size=50))
def test_twilio_valid_messages_round_trip(pcm: bytes, name: str) -> None:
    adapter = adapters()[1]
    payload = base64.b64encode(pcm).decode()
    for action in adapter.receive(json.dumps({"event": "media", "media": {"payload": payload}})):
        assert isinstance(action, Play)
    assert adapter.receive(json.dumps({"event": "mark", "streamSid": adapter.stream_sid, "mark": {"name": name}})) == [
        Mark(name)
    ]


@FUZZ
@given(pcm=pcm16, target=st.integers(10**6, 10**14).map(lambda n: f"+{n}"), rid=st.text(min_size=1, max_size=20))
def test_raw_valid_messages_round_trip(pcm: bytes, target: str, rid: str) -> None:
    adapter = RAW_8K
    assert adapter.receive(pcm) == [Play(pcm)]  # the call's rate: bytes through unchanged
    assert adapter.receive(json.dumps({"type": "transfer", "target": target, "id": rid})) == [
        TransferAction(target, rid)
    ]


# -- the agent side of the WebSocket --------------------------------------------------------------------------
def opened_client() -> WebSocket:
    ws = WebSocket.client("ws://127.0.0.1:9/agent")
    request = ws.data_to_send().decode()
    key = next(line.split(": ", 1)[1] for line in request.split("\r\n") if line.lower().startswith("sec-websocket-key"))
    from websockets.utils import accept_key

    head = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n\r\n"
    )
    assert [type(e).__name__ for e in ws.receive_data(head.encode())] == ["Opened"]
    return ws


@FUZZ
@given(chunks=st.lists(st.binary(max_size=200), max_size=6))
def test_agent_websocket_takes_any_bytes(chunks: list[bytes]) -> None:
    ws = opened_client()
    for chunk in chunks:
        events = ws.receive_data(chunk)
        assert all(type(e).__name__ in ("Text", "Binary", "Closed") for e in events)
        ws.data_to_send()


@FUZZ
@given(answer=st.binary(max_size=400) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_agent_handshake_takes_any_answer(answer: bytes) -> None:
    ws = WebSocket.client("ws://127.0.0.1:9/agent")
    ws.data_to_send()
    for data in (answer, b"\r\n\r\n"):
        events = ws.receive_data(data)
        assert all(type(e).__name__ in ("Opened", "Text", "Binary", "Closed") for e in events)
