"""Twilio Media Streams adapter, sans-I/O."""

from __future__ import annotations

import base64
import json
import re

import pytest
from audio_tools import dominant_frequency, tone

from orchestrator import agents
from orchestrator.agents.base import CallInfo, Clear, Mark, Play, ProtocolViolation, TransferAction
from orchestrator.agents.twilio import ACCOUNT_SID, TwilioProtocol, call_sid
from orchestrator.audio.convert import audioop
from orchestrator.config.model import TwilioAgent

CALL_ID = "5f0c3f7e-2b1a-4c8e-9d3f-0123456789ab"


def make_call(rate: int = 8000, **variables: str) -> CallInfo:
    return CallInfo(CALL_ID, "outbound", "+4930123456", "+4915112345678", "sales", "carrier", rate, variables)


def make_config() -> TwilioAgent:
    return TwilioAgent(name="sales", protocol="twilio", url="wss://agent.example.com/twilio")


def adapter(rate: int = 8000, **variables: str) -> TwilioProtocol:
    return TwilioProtocol(make_call(rate, **variables), make_config())


def frames(pcm: bytes, rate: int) -> list[bytes]:
    size = rate // 50 * 2
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def media(payload: bytes, stream_sid: str | None) -> str:
    message: dict = {"event": "media", "media": {"payload": base64.b64encode(payload).decode()}}
    if stream_sid is not None:
        message["streamSid"] = stream_sid
    return json.dumps(message)


def test_factory_builds_the_twilio_adapter() -> None:
    assert isinstance(agents.create(make_call(), make_config()), TwilioProtocol)


def test_open_sends_connected_then_start() -> None:
    proto = adapter(order="A-17")
    connected, start = (json.loads(m) for m in proto.open())
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start["event"] == "start" and start["sequenceNumber"] == "1"
    assert start["streamSid"] == start["start"]["streamSid"] == proto.stream_sid
    assert re.fullmatch(r"MZ[0-9a-f]{32}", proto.stream_sid)
    assert start["start"] == {
        "accountSid": ACCOUNT_SID,
        "streamSid": proto.stream_sid,
        "callSid": "CA5f0c3f7e2b1a4c8e9d3f0123456789ab",
        "tracks": ["inbound"],
        "customParameters": {
            "order": "A-17",
            "caller_id": "+4930123456",
            "called_number": "+4915112345678",
            "call_id": CALL_ID,
            "direction": "outbound",
        },
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    assert re.fullmatch(r"AC[0-9a-f]{32}", ACCOUNT_SID)


def test_stream_sid_is_random_per_call_and_call_sid_derived() -> None:
    assert adapter().stream_sid != adapter().stream_sid
    assert call_sid(CALL_ID) == "CA5f0c3f7e2b1a4c8e9d3f0123456789ab"
    other = call_sid("not-a-uuid")
    assert re.fullmatch(r"CA[0-9a-f]{32}", other) and other == call_sid("not-a-uuid")


def test_media_sequence_chunks_timestamps_and_payload() -> None:
    proto = adapter(rate=8000)
    proto.open()
    caller = tone(1000, 8000, 200)
    messages = [json.loads(proto.audio(f)) for f in frames(caller, 8000)]
    assert [m["sequenceNumber"] for m in messages] == [str(n) for n in range(2, 12)]
    assert [m["media"]["chunk"] for m in messages] == [str(n) for n in range(1, 11)]
    assert [m["media"]["timestamp"] for m in messages] == [str(20 * n) for n in range(10)]
    assert all(
        m["event"] == "media" and m["streamSid"] == proto.stream_sid and m["media"]["track"] == "inbound"
        for m in messages
    )
    payload = b"".join(base64.b64decode(m["media"]["payload"]) for m in messages)
    assert payload == audioop.lin2ulaw(caller, 2)  # 8 kHz call: exactly the G.711 of the caller's audio


def test_media_from_a_16k_call_decodes_back_to_the_tone() -> None:
    proto = adapter(rate=16000)
    messages = [json.loads(m) for f in frames(tone(1000, 16000, 1000), 16000) if (m := proto.audio(f)) is not None]
    pcm = audioop.ulaw2lin(b"".join(base64.b64decode(m["media"]["payload"]) for m in messages), 2)
    assert dominant_frequency(pcm, 8000) == pytest.approx(1000, abs=10)
    # timestamps follow the audio actually sent
    sent = 0
    for m in messages:
        assert m["media"]["timestamp"] == str(sent // 8)
        sent += len(base64.b64decode(m["media"]["payload"]))


def test_sequence_numbers_span_all_events() -> None:
    proto = adapter()
    proto.open()
    proto.audio(tone(440, 8000, 20))
    dtmf, mark, stop = proto.dtmf("7")[0], proto.mark_played("m1")[0], proto.close("hangup")[0]
    assert json.loads(dtmf) == {
        "event": "dtmf",
        "sequenceNumber": "3",
        "dtmf": {"track": "inbound_track", "digit": "7"},
        "streamSid": proto.stream_sid,
    }
    assert json.loads(mark) == {
        "event": "mark",
        "sequenceNumber": "4",
        "mark": {"name": "m1"},
        "streamSid": proto.stream_sid,
    }
    assert json.loads(stop) == {
        "event": "stop",
        "sequenceNumber": "5",
        "stop": {"accountSid": ACCOUNT_SID, "callSid": proto.call_sid},
        "streamSid": proto.stream_sid,
    }
    assert proto.close("again") == []
    assert proto.dtmf("x") == []


def test_agent_media_plays_at_the_call_rate() -> None:
    proto = adapter(rate=8000)
    pcm = tone(500, 8000, 100)
    ulaw = audioop.lin2ulaw(pcm, 2)
    assert proto.receive(media(ulaw, proto.stream_sid)) == [Play(audioop.ulaw2lin(ulaw, 2))]
    assert proto.receive(media(ulaw, None)) == [Play(audioop.ulaw2lin(ulaw, 2))]  # streamSid optional

    proto16 = adapter(rate=16000)
    out = b"".join(
        a.pcm
        for f in frames(audioop.lin2ulaw(tone(1000, 8000, 1000), 2), 4000)
        for a in proto16.receive(media(f, None))
    )
    assert dominant_frequency(out, 16000) == pytest.approx(1000, abs=10)


def test_mark_and_clear() -> None:
    proto = adapter()
    assert proto.receive(
        json.dumps({"event": "mark", "streamSid": proto.stream_sid, "mark": {"name": "greeting"}})
    ) == [Mark("greeting")]
    assert proto.receive(json.dumps({"event": "clear", "streamSid": proto.stream_sid})) == [Clear()]


def test_other_events_are_ignored() -> None:
    proto = adapter()
    assert proto.receive(json.dumps({"event": "stop", "streamSid": proto.stream_sid})) == []
    assert proto.receive(json.dumps({"event": "custom", "data": 1})) == []


def test_foreign_stream_sid_is_dropped_and_reported() -> None:
    proto = adapter()
    (violation,) = proto.receive(media(b"\xff" * 160, "MZ" + "1" * 32))
    assert isinstance(violation, ProtocolViolation)
    assert violation.where == "agent message #1 (event 'media')" and "streamSid" in violation.detail


@pytest.mark.parametrize(
    ("message", "where", "detail"),
    [
        ("nope", "agent message #1", "invalid JSON"),
        (b"\xff\xff", "agent message #1", "binary"),
        (json.dumps({"media": {}}), "agent message #1", "event"),
        (json.dumps({"event": "media"}), "event 'media'", "'media'"),
        (json.dumps({"event": "media", "media": {}}), "event 'media'", "media.payload"),
        (json.dumps({"event": "media", "media": {"payload": "***"}}), "event 'media'", "base64"),
        (json.dumps({"event": "mark", "mark": {"name": 3}}), "event 'mark'", "mark.name"),
    ],
)
def test_malformed_messages_are_protocol_violations(message: str | bytes, where: str, detail: str) -> None:
    (violation,) = adapter().receive(message)
    assert isinstance(violation, ProtocolViolation)
    assert where in violation.where and detail in violation.detail


def test_transfer_extension_and_its_result() -> None:
    proto = adapter()
    proto.open()
    body = {"target": "+4930999", "mode": "attended", "brief": "VIP", "id": "t1"}
    message = json.dumps({"event": "transfer", "streamSid": proto.stream_sid, "transfer": body})
    assert proto.receive(message) == [TransferAction("+4930999", "t1", "attended", "VIP")]
    blind = json.dumps({"event": "transfer", "transfer": {"target": "sip:desk@pbx.example.com"}})
    assert proto.receive(blind) == [TransferAction("sip:desk@pbx.example.com")]
    (result,) = [json.loads(m) for m in proto.tool_result("t1", "The transfer failed", is_error=True)]
    assert result == {
        "event": "transferResult",
        "sequenceNumber": "2",  # start was 1
        "transferResult": {"id": "t1", "ok": False, "detail": "The transfer failed"},
        "streamSid": proto.stream_sid,
    }
    for bad in ({"target": "two words"}, {"target": "+4930999", "mode": "hot"}, {"target": "+1", "id": 5}):
        (violation,) = proto.receive(json.dumps({"event": "transfer", "transfer": bad}))
        assert isinstance(violation, ProtocolViolation)
