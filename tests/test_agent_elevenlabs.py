"""ElevenLabs adapter, sans-I/O: messages out, actions in, audio compared sample by sample."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from audio_tools import dominant_frequency, tone

from orchestrator import agents
from orchestrator.agents.base import (
    AgentEvent,
    AgentInfo,
    CallInfo,
    Clear,
    Ending,
    Hangup,
    Play,
    ProtocolViolation,
    Send,
    SendDtmf,
    Transcript,
    TransferAction,
)
from orchestrator.agents.elevenlabs import ElevenLabsProtocol, parse_signed_url, public_url, signed_url_request
from orchestrator.audio.convert import Converter, audioop
from orchestrator.config.model import ElevenLabsAgent

CALL_ID = "5f0c3f7e-2b1a-4c8e-9d3f-0123456789ab"


def make_call(rate: int = 8000, **variables: str) -> CallInfo:
    return CallInfo(
        call_id=CALL_ID,
        direction="inbound",
        caller_id="+4915112345678",
        called_number="+4930123456",
        agent="support",
        trunk="carrier",
        rate=rate,
        variables=variables,
    )


def make_config(**overrides: object) -> ElevenLabsAgent:
    return ElevenLabsAgent.model_validate(
        {"name": "support", "protocol": "elevenlabs", "agent_id": "agent_1", **overrides}
    )


def adapter(rate: int = 8000, audio_format: str = "pcm_16000", **variables: str) -> ElevenLabsProtocol:
    return ElevenLabsProtocol(make_call(rate, **variables), make_config(audio_format=audio_format))


def audio_message(pcm: bytes, event_id: int) -> str:
    return json.dumps(
        {"type": "audio", "audio_event": {"audio_base_64": base64.b64encode(pcm).decode(), "event_id": event_id}}
    )


def frames(pcm: bytes, rate: int) -> list[bytes]:
    size = rate // 50 * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def played(actions: list) -> bytes:
    return b"".join(a.pcm for a in actions if isinstance(a, Play))


def test_factory_builds_the_elevenlabs_adapter() -> None:
    proto = agents.create(make_call(), make_config())
    assert isinstance(proto, ElevenLabsProtocol) and not proto.binary_audio


def test_open_sends_call_variables_without_system_keys() -> None:
    proto = adapter(customer="42", system__caller_id="spoofed", caller_id="from-header")
    (message,) = proto.open()
    data = json.loads(message)
    assert data == {
        "type": "conversation_initiation_client_data",
        "dynamic_variables": {
            "customer": "42",
            "caller_id": "+4915112345678",  # the call's own facts win over a variable of the same name
            "called_number": "+4930123456",
            "call_id": CALL_ID,
            "direction": "inbound",
        },
    }


def test_caller_audio_is_resampled_to_the_agent_format() -> None:
    proto = adapter(rate=8000, audio_format="pcm_16000")
    sent = bytearray()
    for frame in frames(tone(1000, 8000, 1000), 8000):
        message = proto.audio(frame)
        if message is None:
            continue
        data = json.loads(message)
        assert list(data) == ["user_audio_chunk"]
        sent += base64.b64decode(data["user_audio_chunk"])
    assert len(sent) // 2 >= 16000 * 0.96
    assert dominant_frequency(bytes(sent), 16000) == pytest.approx(1000, abs=10)


def test_caller_audio_in_ulaw_is_the_g711_of_the_frame() -> None:
    proto = adapter(rate=8000, audio_format="ulaw_8000")
    frame = tone(700, 8000, 20)
    message = proto.audio(frame)
    assert message is not None
    assert base64.b64decode(json.loads(message)["user_audio_chunk"]) == audioop.lin2ulaw(frame, 2)


def test_same_format_passes_audio_through_unchanged() -> None:
    proto = adapter(rate=16000, audio_format="pcm_16000")
    frame = tone(440, 16000, 20)
    assert base64.b64decode(json.loads(proto.audio(frame))["user_audio_chunk"]) == frame
    agent_pcm = tone(330, 16000, 40)
    assert proto.receive(audio_message(agent_pcm, 1)) == [Play(agent_pcm, 1)]


def test_metadata_reports_the_conversation() -> None:
    proto = adapter()
    event = {
        "conversation_id": "conv_1",
        "agent_output_audio_format": "pcm_16000",
        "user_input_audio_format": "pcm_16000",
    }
    actions = proto.receive(
        json.dumps({"type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": event})
    )
    assert actions == [AgentInfo(event)]


def test_metadata_with_other_formats_adapts_and_warns() -> None:
    proto = adapter(rate=8000, audio_format="pcm_16000")
    event = {"conversation_id": "c", "agent_output_audio_format": "pcm_24000", "user_input_audio_format": "ulaw_8000"}
    actions = proto.receive(
        json.dumps({"type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": event})
    )
    assert actions[0] == AgentInfo(event)
    warnings = [a for a in actions if isinstance(a, ProtocolViolation)]
    assert len(warnings) == 2 and all("following the agent" in w.detail for w in warnings)
    assert proto.input_format == "ulaw_8000" and proto.output_format == "pcm_24000"
    frame = tone(500, 8000, 20)
    assert base64.b64decode(json.loads(proto.audio(frame))["user_audio_chunk"]) == audioop.lin2ulaw(frame, 2)
    out = played(proto.receive(audio_message(tone(1000, 24000, 500), 1)))
    assert dominant_frequency(out, 8000) == pytest.approx(1000, abs=10)


def test_metadata_with_unsupported_format_keeps_the_configured_one() -> None:
    proto = adapter(audio_format="pcm_16000")
    event = {"conversation_id": "c", "agent_output_audio_format": "mp3_44100"}
    actions = proto.receive(
        json.dumps({"type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": event})
    )
    assert isinstance(actions[1], ProtocolViolation) and "not supported" in actions[1].detail
    assert proto.output_format == "pcm_16000"


def test_ping_is_answered_at_once_with_the_same_event_id() -> None:
    proto = adapter()
    for event_id in (1, 7, 123456):
        actions = proto.receive(json.dumps({"type": "ping", "ping_event": {"event_id": event_id, "ping_ms": 250}}))
        assert len(actions) == 1 and isinstance(actions[0], Send)
        assert json.loads(actions[0].message) == {"type": "pong", "event_id": event_id}


def test_agent_audio_is_converted_to_the_call_rate() -> None:
    proto = adapter(rate=8000, audio_format="pcm_16000")
    agent_audio = tone(1000, 16000, 1000)
    out = b"".join(played(proto.receive(audio_message(chunk, 1))) for chunk in frames(agent_audio, 16000))
    assert len(out) // 2 >= 8000 * 0.97
    assert dominant_frequency(out, 8000) == pytest.approx(1000, abs=10)
    # the same samples as converting the whole utterance at once (the stream joins the chunks)
    whole = Converter(16000, 8000).convert(agent_audio)
    diff = np.frombuffer(out, "<i2").astype(int) - np.frombuffer(whole, "<i2").astype(int)
    assert np.abs(diff).max() <= 2


def test_ulaw_agent_audio_is_decoded() -> None:
    proto = adapter(rate=8000, audio_format="ulaw_8000")
    pcm = tone(600, 8000, 100)
    ulaw = audioop.lin2ulaw(pcm, 2)
    assert proto.receive(audio_message(ulaw, 3)) == [Play(audioop.ulaw2lin(ulaw, 2), 3)]


def test_interruption_clears_and_drops_stale_audio() -> None:
    proto = adapter(rate=16000)
    a, b, c = tone(300, 16000, 20), tone(400, 16000, 20), tone(500, 16000, 20)
    assert proto.receive(audio_message(a, 1)) == [Play(a, 1)]
    assert proto.receive(audio_message(b, 2)) == [Play(b, 2)]
    assert proto.receive(json.dumps({"type": "interruption", "interruption_event": {"event_id": 2}})) == [Clear()]
    assert proto.receive(audio_message(b, 2)) == []  # late audio of the interrupted response
    assert proto.receive(audio_message(a, 1)) == []
    assert proto.receive(audio_message(c, 3)) == [Play(c, 3)]  # the next response plays
    # an older interruption arriving late does not lower the bar
    assert proto.receive(json.dumps({"type": "interruption", "interruption_event": {"event_id": 1}})) == [Clear()]
    assert proto.receive(audio_message(b, 2)) == []


def test_interruption_restarts_the_output_resampler() -> None:
    proto = adapter(rate=8000, audio_format="pcm_16000")
    utterance = tone(1000, 16000, 200)
    first = played(proto.receive(audio_message(utterance, 1)))
    proto.receive(json.dumps({"type": "interruption", "interruption_event": {"event_id": 1}}))
    assert played(proto.receive(audio_message(utterance, 2))) == first  # no tail of the old utterance


def tool_call(name: str, parameters: dict | None = None, call_id: str = "tc_1") -> str:
    body: dict = {"tool_name": name, "tool_call_id": call_id}
    if parameters is not None:
        body["parameters"] = parameters
    return json.dumps({"type": "client_tool_call", "client_tool_call": body})


def tool_results(actions: list) -> list[dict]:
    return [json.loads(a.message) for a in actions if isinstance(a, Send)]


def test_end_call_answers_then_hangs_up() -> None:
    proto = adapter()
    actions = proto.receive(tool_call("end_call", {}))
    assert isinstance(actions[0], Send) and actions[1] == Hangup("end_call")
    (result,) = tool_results(actions)
    assert result["type"] == "client_tool_result" and result["tool_call_id"] == "tc_1" and result["is_error"] is False


@pytest.mark.parametrize("tool", ["transfer_call", "transfer"])
@pytest.mark.parametrize("parameter", ["number", "target", "destination"])
def test_transfer_tools(tool: str, parameter: str) -> None:
    proto = adapter()
    assert proto.receive(tool_call(tool, {parameter: "+4930999"}, "tc_9")) == [TransferAction("+4930999", "tc_9")]


def test_transfer_to_sip_uri_and_numeric_parameter() -> None:
    proto = adapter()
    assert proto.receive(tool_call("transfer_call", {"target": "sip:desk@pbx.example.com"})) == [
        TransferAction("sip:desk@pbx.example.com", "tc_1")
    ]
    assert proto.receive(tool_call("transfer_call", {"number": 4930999})) == [TransferAction("4930999", "tc_1")]


@pytest.mark.parametrize("parameters", [None, {}, {"number": ""}, {"number": "+49 30"}, {"number": "a\nb"}])
def test_transfer_without_a_usable_target_is_an_error_result(parameters: dict | None) -> None:
    (result,) = tool_results(adapter().receive(tool_call("transfer_call", parameters)))
    assert result["is_error"] is True and result["tool_call_id"] == "tc_1"


def test_send_dtmf_tool() -> None:
    proto = adapter()
    assert proto.receive(tool_call("send_dtmf", {"digits": "12#*"}, "d1")) == [SendDtmf("12#*", "d1")]
    assert proto.receive(tool_call("send_dtmf", {"digits": 42}, "d2")) == [SendDtmf("42", "d2")]
    for bad in ({"digits": "12x"}, {"digits": ""}, {}, {"digits": True}):
        (result,) = tool_results(proto.receive(tool_call("send_dtmf", bad)))
        assert result["is_error"] is True


def test_unknown_tool_is_answered_with_an_error() -> None:
    (result,) = tool_results(adapter().receive(tool_call("book_flight", {"to": "LIS"}, "tc_7")))
    assert result == {
        "type": "client_tool_result",
        "tool_call_id": "tc_7",
        "result": "unknown tool 'book_flight'",
        "is_error": True,
    }


def test_tool_result_message() -> None:
    (message,) = adapter().tool_result("tc_3", "transfer started")
    assert json.loads(message) == {
        "type": "client_tool_result",
        "tool_call_id": "tc_3",
        "result": "transfer started",
        "is_error": False,
    }
    (message,) = adapter().tool_result("tc_4", "busy", is_error=True)
    assert json.loads(message)["is_error"] is True


def test_transcripts() -> None:
    proto = adapter()
    assert proto.receive(
        json.dumps({"type": "agent_response", "agent_response_event": {"agent_response": " Hello! "}})
    ) == [Transcript("agent", "Hello!")]
    assert proto.receive(
        json.dumps({"type": "user_transcript", "user_transcription_event": {"user_transcript": "Hi there"}})
    ) == [Transcript("user", "Hi there")]
    correction = {"original_agent_response": "Hello wor", "corrected_agent_response": "Hello"}
    assert proto.receive(
        json.dumps({"type": "agent_response_correction", "agent_response_correction_event": correction})
    ) == [Transcript("agent", "Hello", replace=True)]
    assert (
        proto.receive(json.dumps({"type": "user_transcript", "user_transcription_event": {"user_transcript": " "}}))
        == []
    )


def test_ignored_messages() -> None:
    proto = adapter()
    assert proto.receive(json.dumps({"type": "vad_score", "vad_score_event": {"vad_score": 0.9}})) == []
    assert proto.receive(json.dumps({"type": "internal_tentative_agent_response", "x": 1})) == []
    assert proto.close("hangup") == []


@pytest.mark.parametrize(
    ("message", "where", "detail"),
    [
        ("{not json", "agent message #1", "invalid JSON"),
        ("[1, 2]", "agent message #1", "JSON object"),
        (b"\x00\x01", "agent message #1", "binary"),
        (json.dumps({"audio_event": {}}), "agent message #1", "type"),
        (json.dumps({"type": "audio"}), "type 'audio'", "audio_event"),
        (json.dumps({"type": "audio", "audio_event": {"event_id": 1}}), "type 'audio'", "audio_base_64"),
        (
            json.dumps({"type": "audio", "audio_event": {"event_id": 1, "audio_base_64": "%%%"}}),
            "type 'audio'",
            "base64",
        ),
        (
            json.dumps({"type": "audio", "audio_event": {"event_id": "x", "audio_base_64": ""}}),
            "type 'audio'",
            "event_id",
        ),
        (json.dumps({"type": "ping", "ping_event": {}}), "type 'ping'", "ping_event.event_id"),
        (json.dumps({"type": "interruption"}), "type 'interruption'", "interruption_event"),
        (
            json.dumps({"type": "agent_response", "agent_response_event": {"agent_response": 5}}),
            "type 'agent_response'",
            "string",
        ),
        (
            json.dumps({"type": "client_tool_call", "client_tool_call": {"tool_name": "end_call"}}),
            "type 'client_tool_call'",
            "tool_call_id",
        ),
        (
            json.dumps(
                {
                    "type": "client_tool_call",
                    "client_tool_call": {"tool_name": "x", "tool_call_id": "1", "parameters": []},
                }
            ),
            "type 'client_tool_call'",
            "parameters",
        ),
        (json.dumps({"type": "conversation_initiation_metadata"}), "type 'conversation_initiation_metadata'", "event"),
    ],
)
def test_malformed_messages_are_protocol_violations(message: str | bytes, where: str, detail: str) -> None:
    (violation,) = adapter().receive(message)
    assert isinstance(violation, ProtocolViolation)
    assert where in violation.where and detail in violation.detail


def test_violations_count_messages() -> None:
    proto = adapter()
    proto.receive(json.dumps({"type": "vad_score"}))
    (violation,) = proto.receive(json.dumps({"type": "ping"}))
    assert violation.where == "agent message #2 (type 'ping')"


def test_dtmf_becomes_a_contextual_update() -> None:
    proto = adapter()
    (message,) = proto.dtmf("5")
    assert json.loads(message) == {"type": "contextual_update", "text": "The caller pressed the keypad key 5."}
    assert proto.dtmf("x") == [] and proto.dtmf("12") == []


def test_public_url() -> None:
    assert public_url(make_config()) == "wss://api.elevenlabs.io/v1/convai/conversation?agent_id=agent_1"
    config = make_config(agent_id="a b/&c", url="wss://api.eu.residency.elevenlabs.io/v1/convai/conversation?x=1")
    assert public_url(config) == "wss://api.eu.residency.elevenlabs.io/v1/convai/conversation?x=1&agent_id=a%20b%2F%26c"


def test_signed_url_request() -> None:
    assert signed_url_request(make_config()) is None
    url, headers = signed_url_request(
        make_config(api_key="xi-secret", url="wss://api.us.elevenlabs.io/v1/convai/conversation")
    )
    assert url == "https://api.us.elevenlabs.io/v1/convai/conversation/get-signed-url?agent_id=agent_1"
    assert headers == {"xi-api-key": "xi-secret"}
    url, _ = signed_url_request(make_config(api_key="k", url="ws://127.0.0.1:9000/v1/convai/conversation"))
    assert url == "http://127.0.0.1:9000/v1/convai/conversation/get-signed-url?agent_id=agent_1"


def test_parse_signed_url() -> None:
    assert parse_signed_url(b'{"signed_url": "wss://api.elevenlabs.io/v1/convai/conversation?agent_id=a&token=t"}') == (
        "wss://api.elevenlabs.io/v1/convai/conversation?agent_id=a&token=t"
    )
    for body in (b"nope", b"[]", b"{}", b'{"signed_url": "https://x"}', b'{"signed_url": 3}'):
        with pytest.raises(ValueError):
            parse_signed_url(body)


# -- corrections, server-side tools, errors ------------------------------------------------------------
def test_correction_replaces_the_agent_line() -> None:
    correction = {"original_agent_response": "Let me tell you about", "corrected_agent_response": " Let me "}
    message = json.dumps({"type": "agent_response_correction", "agent_response_correction_event": correction})
    assert adapter().receive(message) == [Transcript("agent", "Let me", replace=True)]


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (
            {"tool_name": "end_call", "tool_call_id": "end_1", "tool_type": "system", "is_error": False},
            [
                AgentEvent(
                    "tool", {"tool": "end_call", "tool_type": "system", "tool_call_id": "end_1", "is_error": False}
                ),
                Ending("end_call"),
            ],
        ),
        (  # a failed end_call does not end anything
            {"tool_name": "end_call", "is_error": True},
            [AgentEvent("tool", {"tool": "end_call", "is_error": True}, error=True)],
        ),
        (
            {"tool_name": "skip_turn", "tool_type": "system", "is_error": False, "is_called": True, "event_id": 3},
            [AgentEvent("tool", {"tool": "skip_turn", "tool_type": "system", "is_error": False})],
        ),
    ],
)
def test_agent_tool_response_is_recorded_and_end_call_announces_the_close(
    event: dict[str, object], expected: list[object]
) -> None:
    assert adapter().receive(json.dumps({"type": "agent_tool_response", "agent_tool_response": event})) == expected


def test_server_side_transfer_is_recorded_with_a_note() -> None:
    event = {"tool_name": "transfer_to_number", "tool_type": "system", "is_error": False}
    (action,) = adapter().receive(json.dumps({"type": "agent_tool_response", "agent_tool_response": event}))
    assert isinstance(action, AgentEvent) and action.data["tool"] == "transfer_to_number"
    assert "transfer_call" in action.data["note"] and not action.error


@pytest.mark.parametrize(
    ("message", "data"),
    [
        (  # ElevenLabs' documented error event, sent before it closes
            {
                "type": "error",
                "error_event": {"code": 1008, "message": "Invalid override", "error_type": "override_error"},
            },
            {"type": "error", "code": 1008, "error_type": "override_error", "message": "Invalid override"},
        ),
        (
            {"type": "client_error", "client_error_event": {"message": "bad audio chunk", "code": "x"}},
            {"type": "client_error", "message": "bad audio chunk"},
        ),
        ({"type": "client_error", "message": "top level\nline"}, {"type": "client_error", "message": "top level line"}),
        ({"type": "client_error"}, {"type": "client_error"}),
        ({"type": "error", "error_event": {"code": True, "message": 5}}, {"type": "error"}),
    ],
)
def test_errors_are_recorded_as_agent_errors(message: dict[str, object], data: dict[str, object]) -> None:
    assert adapter().receive(json.dumps(message)) == [AgentEvent("error", data, error=True)]


def test_agent_strings_are_bounded_and_printable() -> None:
    huge = "x" * 100_000
    event = {"tool_name": huge, "tool_call_id": "\x00\ud800id", "is_error": False}
    (action,) = adapter().receive(json.dumps({"type": "agent_tool_response", "agent_tool_response": event}))
    assert len(action.data["tool"]) <= 301 and action.data["tool_call_id"] == "\ufffd\ufffdid"
    (line,) = adapter().receive(
        json.dumps({"type": "agent_response", "agent_response_event": {"agent_response": huge}})
    )
    assert len(line.text) <= 4001
    (result,) = adapter().receive(tool_call("transfer_call", {"number": "bad target " + huge}))
    assert len(json.loads(result.message)["result"]) < 200
    (violation,) = adapter().receive(
        json.dumps({"type": "client_tool_call", "client_tool_call": {"tool_name": "x", "tool_call_id": huge}})
    )
    assert isinstance(violation, ProtocolViolation) and "tool_call_id" in violation.detail


# -- per-call conversation overrides -------------------------------------------------------------------
def test_overrides_go_into_conversation_initiation_client_data() -> None:
    overrides = {"first_message": "Hallo!", "language": "de", "voice_id": "v_1", "prompt": "Be brief."}
    proto = ElevenLabsProtocol(make_call(), make_config(), overrides)
    (init,) = proto.open()
    assert json.loads(init)["conversation_config_override"] == {
        "agent": {"first_message": "Hallo!", "language": "de", "prompt": {"prompt": "Be brief."}},
        "tts": {"voice_id": "v_1"},
    }
    (voice_only,) = ElevenLabsProtocol(make_call(), make_config(), {"voice_id": "v_2"}).open()
    assert json.loads(voice_only)["conversation_config_override"] == {"tts": {"voice_id": "v_2"}}
    (plain,) = adapter().open()
    assert "conversation_config_override" not in json.loads(plain)


@pytest.mark.parametrize(
    ("parameters", "action"),
    [
        (
            {"number": "+4930999", "mode": "attended", "brief": "Refund for order 12"},
            TransferAction("+4930999", "tc_1", "attended", "Refund for order 12"),
        ),
        (
            {"number": "+4930999", "mode": "Warm", "summary": "VIP"},
            TransferAction("+4930999", "tc_1", "attended", "VIP"),
        ),
        ({"number": "+4930999", "mode": "cold", "brief": "ignored"}, TransferAction("+4930999", "tc_1")),
    ],
)
def test_attended_transfer_tool(parameters: dict[str, object], action: TransferAction) -> None:
    assert adapter().receive(tool_call("transfer_call", parameters)) == [action]


def test_attended_transfer_tool_with_a_bad_mode_is_an_error_result() -> None:
    (result,) = tool_results(adapter().receive(tool_call("transfer_call", {"number": "+4930999", "mode": "hot"})))
    assert result["is_error"] is True and "mode" in result["result"]
