"""Raw L16 + JSON adapter, sans-I/O."""

from __future__ import annotations

import json

import numpy as np
import pytest
from audio_tools import dominant_frequency, tone

from orchestrator import agents
from orchestrator.agents.base import (
    CallInfo,
    Clear,
    Hangup,
    Mark,
    Play,
    ProtocolViolation,
    SendDtmf,
    Transcript,
    TransferAction,
)
from orchestrator.agents.raw import RawProtocol
from orchestrator.audio.convert import Converter
from orchestrator.config.model import RawAgent

CALL = CallInfo(
    "5f0c3f7e-2b1a-4c8e-9d3f-0123456789ab",
    "inbound",
    "+4915112345678",
    "+4930123456",
    "bot",
    "carrier",
    16000,
    {"lang": "de"},
)


def adapter(audio_format: str = "pcm_16000", rate: int = 16000) -> RawProtocol:
    config = RawAgent(name="bot", protocol="raw", url="ws://127.0.0.1:9000/agent", audio_format=audio_format)
    return RawProtocol(CallInfo(**{**CALL.__dict__, "rate": rate}), config)


def test_factory_builds_the_raw_adapter() -> None:
    proto = agents.create(CALL, RawAgent(name="bot", protocol="raw", url="ws://127.0.0.1:9000/agent"))
    assert isinstance(proto, RawProtocol) and proto.binary_audio


def test_start_message() -> None:
    (message,) = adapter(audio_format="pcm_24000").open()
    assert json.loads(message) == {
        "type": "start",
        "call": {
            "call_id": CALL.call_id,
            "direction": "inbound",
            "caller_id": "+4915112345678",
            "called_number": "+4930123456",
            "agent": "bot",
            "trunk": "carrier",
            "rate": 16000,
            "variables": {"lang": "de"},
        },
        "audio": {"encoding": "l16", "sample_rate": 24000},
    }


def test_same_rate_passes_the_same_bytes_both_ways() -> None:
    proto = adapter(audio_format="pcm_16000", rate=16000)
    frame = tone(440, 16000, 20)
    assert proto.audio(frame) is frame
    agent_audio = tone(880, 16000, 100)
    (play,) = proto.receive(agent_audio)
    assert play == Play(agent_audio) and play.pcm is agent_audio


def test_resampled_both_ways() -> None:
    proto = adapter(audio_format="pcm_24000", rate=8000)
    caller = tone(1000, 8000, 1000)
    sent = b"".join(m for i in range(0, len(caller), 320) if (m := proto.audio(caller[i : i + 320])) is not None)
    assert isinstance(sent, bytes) and dominant_frequency(sent, 24000) == pytest.approx(1000, abs=10)
    reference = Converter(8000, 24000).convert(caller)
    assert np.abs(np.frombuffer(sent, "<i2").astype(int) - np.frombuffer(reference, "<i2").astype(int)).max() <= 2
    agent_audio = tone(700, 24000, 1000)
    out = b"".join(a.pcm for i in range(0, len(agent_audio), 960) for a in proto.receive(agent_audio[i : i + 960]))
    assert dominant_frequency(out, 8000) == pytest.approx(700, abs=10)


def test_odd_binary_frames_join() -> None:
    proto = adapter()
    data = tone(300, 16000, 20)
    first, second = proto.receive(data[:101]), proto.receive(data[101:])
    assert first[0].pcm + second[0].pcm == data
    assert proto.receive(b"") == []


def test_messages_to_the_agent() -> None:
    proto = adapter()
    assert [json.loads(m) for m in proto.dtmf("#")] == [{"type": "dtmf", "digit": "#"}]
    assert proto.dtmf("?") == []
    assert [json.loads(m) for m in proto.mark_played("m1")] == [{"type": "mark", "name": "m1"}]
    assert [json.loads(m) for m in proto.tool_result("t1", "transfer started")] == [
        {"type": "result", "id": "t1", "ok": True, "detail": "transfer started"}
    ]
    assert json.loads(proto.tool_result("d1", "busy", is_error=True)[0])["ok"] is False
    assert [json.loads(m) for m in proto.close("caller hung up")] == [{"type": "stop", "reason": "caller hung up"}]


@pytest.mark.parametrize(
    ("message", "action"),
    [
        ({"type": "hangup", "reason": "done"}, Hangup("done")),
        ({"type": "hangup"}, Hangup("agent_hangup")),
        ({"type": "hangup", "reason": "  "}, Hangup("agent_hangup")),
        ({"type": "transfer", "target": "+4930999", "id": "t1"}, TransferAction("+4930999", "t1")),
        ({"type": "transfer", "target": "sip:desk@pbx.example.com"}, TransferAction("sip:desk@pbx.example.com", None)),
        ({"type": "dtmf", "digits": "12#", "id": 5}, SendDtmf("12#", "5")),
        ({"type": "clear"}, Clear()),
        ({"type": "mark", "name": "x"}, Mark("x")),
        ({"type": "transcript", "role": "agent", "text": "Hello"}, Transcript("agent", "Hello")),
        ({"type": "transcript", "role": "user", "text": " Hi "}, Transcript("user", "Hi")),
    ],
)
def test_control_messages_from_the_agent(message: dict, action: object) -> None:
    assert adapter().receive(json.dumps(message)) == [action]


def test_hangup_reason_is_bounded() -> None:
    (hangup,) = adapter().receive(json.dumps({"type": "hangup", "reason": "x" * 500}))
    assert hangup == Hangup("x" * 64)


@pytest.mark.parametrize(
    ("message", "where", "detail"),
    [
        ("{", "agent message #1", "invalid JSON"),
        ('"hangup"', "agent message #1", "JSON object"),
        (json.dumps({"kind": "hangup"}), "agent message #1", "type"),
        (json.dumps({"type": "dance"}), "type 'dance'", "unknown type"),
        (json.dumps({"type": "hangup", "reason": 3}), "type 'hangup'", "reason"),
        (json.dumps({"type": "transfer"}), "type 'transfer'", "'target' is missing"),
        (json.dumps({"type": "transfer", "target": "two words"}), "type 'transfer'", "target"),
        (json.dumps({"type": "transfer", "target": "+1", "id": [1]}), "type 'transfer'", "'id'"),
        (json.dumps({"type": "dtmf", "digits": "12x"}), "type 'dtmf'", "digits"),
        (json.dumps({"type": "mark"}), "type 'mark'", "name"),
        (json.dumps({"type": "transcript", "role": "narrator", "text": "x"}), "type 'transcript'", "role"),
        (json.dumps({"type": "transcript", "role": "agent"}), "type 'transcript'", "text"),
    ],
)
def test_malformed_messages_are_protocol_violations(message: str, where: str, detail: str) -> None:
    (violation,) = adapter().receive(message)
    assert isinstance(violation, ProtocolViolation)
    assert where in violation.where and detail in violation.detail


def test_clear_restarts_the_output_resampler() -> None:
    proto = adapter(audio_format="pcm_24000", rate=8000)
    utterance = tone(1000, 24000, 100)
    first = proto.receive(utterance)[0].pcm
    assert proto.receive(json.dumps({"type": "clear"})) == [Clear()]
    assert proto.receive(utterance)[0].pcm == first


@pytest.mark.parametrize(
    ("message", "action"),
    [
        (
            {"type": "transfer", "target": "+4930999", "mode": "attended", "brief": " VIP\ncaller ", "id": "t1"},
            TransferAction("+4930999", "t1", "attended", "VIP caller"),
        ),
        ({"type": "transfer", "target": "+4930999", "mode": "warm"}, TransferAction("+4930999", None, "attended")),
        # a blind transfer briefs nobody: the brief is dropped
        ({"type": "transfer", "target": "+4930999", "mode": "blind", "brief": "x"}, TransferAction("+4930999")),
    ],
)
def test_attended_transfer_request(message: dict[str, object], action: TransferAction) -> None:
    assert adapter().receive(json.dumps(message)) == [action]


@pytest.mark.parametrize(
    ("extra", "detail"),
    [
        ({"mode": "lukewarm"}, "'mode'"),
        ({"mode": "attended", "brief": 7}, "'brief'"),
        ({"mode": "attended", "brief": "x" * 1025}, "longer"),
    ],
)
def test_bad_attended_transfer_requests_are_violations(extra: dict[str, object], detail: str) -> None:
    (violation,) = adapter().receive(json.dumps({"type": "transfer", "target": "+4930999", **extra}))
    assert isinstance(violation, ProtocolViolation) and detail in violation.detail
