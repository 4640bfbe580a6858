"""The fake agent servers work with the adapters over real WebSocket connections."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from audio_tools import dominant_frequency, tone
from fake_agents import FakeElevenLabs, FakeRawAgent, FakeTwilioAgent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from orchestrator.agents.base import AgentInfo, CallInfo, Clear, Hangup, Mark, Play, Send, TransferAction
from orchestrator.agents.elevenlabs import ElevenLabsProtocol, parse_signed_url, public_url, signed_url_request
from orchestrator.agents.raw import RawProtocol
from orchestrator.agents.twilio import TwilioProtocol
from orchestrator.config.model import ElevenLabsAgent, RawAgent, TwilioAgent


def make_call(rate: int) -> CallInfo:
    return CallInfo(
        "5f0c3f7e-2b1a-4c8e-9d3f-0123456789ab", "inbound", "+4915112345678", "+4930123456", "a", "t", rate, {"k": "v"}
    )


async def stream(ws: ClientConnection, adapter: object, pcm: bytes, rate: int) -> None:
    size = rate // 50 * 2
    for i in range(0, len(pcm), size):
        message = adapter.audio(pcm[i : i + size])  # type: ignore[attr-defined]
        if message is not None:
            await ws.send(message)


async def receive_actions(ws: ClientConnection, adapter: object, until: type, timeout: float = 5.0) -> list:
    """Feed agent messages to the adapter until an action of type ``until`` shows up."""
    actions: list = []
    async with asyncio.timeout(timeout):
        while not any(isinstance(a, until) for a in actions):
            actions += adapter.receive(await ws.recv())  # type: ignore[attr-defined]
    return actions


async def test_elevenlabs_signed_url_conversation() -> None:
    async with FakeElevenLabs(api_key="xi-key") as fake:
        config = ElevenLabsAgent(name="el", protocol="elevenlabs", agent_id="agent_7", api_key="xi-key", url=fake.url)
        url, headers = signed_url_request(config)
        async with httpx.AsyncClient() as http:
            response = await http.get(url, headers=headers)
            assert (await http.get(url, headers={"xi-api-key": "wrong"})).status_code == 401
        assert response.status_code == 200
        signed = parse_signed_url(response.content)
        assert fake.http_requests[0]["query"] == {"agent_id": "agent_7"}

        adapter = ElevenLabsProtocol(make_call(8000), config)
        async with connect(signed) as ws:
            for message in adapter.open():
                await ws.send(message)
            info = await receive_actions(ws, adapter, AgentInfo)
            assert info[0].data["conversation_id"] == "conv_fake"
            session = fake.session
            assert session.query == {"agent_id": "agent_7", "token": "signed-token"}
            assert session.of_type("conversation_initiation_client_data")[0]["dynamic_variables"]["k"] == "v"

            await stream(ws, adapter, tone(1000, 8000, 1000), 8000)
            heard = await fake.wait_audio(16000 * 2 * 9 // 10)
            assert dominant_frequency(heard, fake.audio_rate) == pytest.approx(1000, abs=10)

            await fake.send_ping(41, ping_ms=120)
            (pong,) = await receive_actions(ws, adapter, Send)
            await ws.send(pong.message)
            await fake.wait_for(lambda: session.of_type("pong"))
            assert session.of_type("pong") == [{"type": "pong", "event_id": 41}]

            await fake.send_audio(tone(600, 16000, 500), event_id=1)
            played = await receive_actions(ws, adapter, Play)
            assert played[0].event_id == 1 and dominant_frequency(played[0].pcm, 8000) == pytest.approx(600, abs=10)

            await fake.send_interruption(1)
            assert await receive_actions(ws, adapter, Clear) == [Clear()]

            tool_id = await fake.send_tool_call("end_call")
            actions = await receive_actions(ws, adapter, Hangup)
            await ws.send(actions[0].message)
            await fake.wait_for(lambda: session.of_type("client_tool_result"))
            assert session.of_type("client_tool_result")[0]["tool_call_id"] == tool_id


async def test_elevenlabs_public_url_and_echo() -> None:
    async with FakeElevenLabs(echo=True, input_format="ulaw_8000", output_format="pcm_16000") as fake:
        config = ElevenLabsAgent(
            name="el", protocol="elevenlabs", agent_id="agent_7", url=fake.url, audio_format="ulaw_8000"
        )
        adapter = ElevenLabsProtocol(make_call(16000), config)
        async with connect(public_url(config)) as ws:
            for message in adapter.open():
                await ws.send(message)
            actions = await receive_actions(ws, adapter, AgentInfo)
            # the agent says its output is pcm_16000: the adapter follows (and warns)
            assert adapter.output_format == "pcm_16000" and len(actions) == 2
            await stream(ws, adapter, tone(800, 16000, 600), 16000)
            echoed = b""
            while len(echoed) < 16000 * 2 // 2:
                echoed += b"".join(a.pcm for a in await receive_actions(ws, adapter, Play))
            assert dominant_frequency(echoed, 16000) == pytest.approx(800, abs=10)
        assert fake.session.query == {"agent_id": "agent_7"}


async def test_twilio_echo_round_trip() -> None:
    async with FakeTwilioAgent(echo=True) as fake:
        adapter = TwilioProtocol(make_call(8000), TwilioAgent(name="tw", protocol="twilio", url=fake.url))
        async with connect(fake.url, additional_headers={"Authorization": "Bearer t"}) as ws:
            for message in adapter.open():
                await ws.send(message)
            caller = tone(1000, 8000, 400)
            await stream(ws, adapter, caller, 8000)
            echoed = b""
            while len(echoed) < len(caller):
                echoed += b"".join(a.pcm for a in await receive_actions(ws, adapter, Play))
            assert dominant_frequency(echoed, 8000) == pytest.approx(1000, abs=10)
            session = fake.session
            assert session.stream_sid == adapter.stream_sid and session.headers["authorization"] == "Bearer t"
            assert len(session.audio) == len(caller)

            await fake.send_mark("m1")
            assert await receive_actions(ws, adapter, Mark) == [Mark("m1")]
            for message in adapter.mark_played("m1"):
                await ws.send(message)
            await fake.send_clear()
            assert await receive_actions(ws, adapter, Clear) == [Clear()]
            await fake.wait_for(lambda: session.of_type("mark"))
            assert session.of_type("mark")[0]["mark"] == {"name": "m1"}


async def test_raw_echo_is_byte_identical() -> None:
    async with FakeRawAgent(echo=True, rate=16000) as fake:
        adapter = RawProtocol(make_call(16000), RawAgent(name="r", protocol="raw", url=fake.url))
        async with connect(fake.url) as ws:
            for message in adapter.open():
                await ws.send(message)
            caller = tone(440, 16000, 200)
            await stream(ws, adapter, caller, 16000)
            echoed = b""
            while len(echoed) < len(caller):
                echoed += b"".join(a.pcm for a in await receive_actions(ws, adapter, Play))
            assert echoed == caller
            assert fake.session.of_type("start")[0]["audio"] == {"encoding": "l16", "sample_rate": 16000}

            await fake.send_transfer("+4930999", request_id="t1")
            assert await receive_actions(ws, adapter, TransferAction) == [TransferAction("+4930999", "t1")]
            for message in adapter.tool_result("t1", "ok"):
                await ws.send(message)
            await fake.wait_for(lambda: fake.session.of_type("result"))
            for message in adapter.close("caller hung up"):
                await ws.send(message)
        await fake.session.closed.wait()
        assert fake.session.close_code == 1000
        assert fake.session.of_type("stop") == [{"type": "stop", "reason": "caller hung up"}]


async def test_agent_closing_mid_call() -> None:
    async with FakeRawAgent(close_after=3, close_code=4001) as fake:
        async with connect(fake.url) as ws:
            for _ in range(3):
                await ws.send(b"\x00\x00" * 320)
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001

    async with FakeRawAgent() as fake:
        async with connect(fake.url) as ws:
            await fake.wait_session()
            await fake.close(4002, "bye")
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4002


async def test_handshake_never_completes() -> None:
    async with FakeRawAgent(handshake=False) as fake:
        with pytest.raises(TimeoutError):
            async with connect(fake.url, open_timeout=0.2):
                pass
        assert fake.stalled == 1 and fake.sessions == []


async def test_rejected_handshake() -> None:
    async with FakeTwilioAgent(reject=403) as fake:
        with pytest.raises(InvalidStatus) as rejected:
            async with connect(fake.url):
                pass
        assert rejected.value.response.status_code == 403


async def test_sessions_are_kept_per_connection() -> None:
    fake = await FakeRawAgent(rate=8000).start()
    try:
        async with connect(fake.url + "?call=1") as first, connect(fake.url + "?call=2") as second:
            await first.send(json.dumps({"type": "hello"}))
            await second.send(b"\x01\x00")
            one, two = await fake.wait_session(1), await fake.wait_session(2)
            await fake.wait_for(lambda: one.messages and two.audio)
            assert (one.query, two.query) == ({"call": "1"}, {"call": "2"})
            assert one.messages == [{"type": "hello"}] and bytes(two.audio) == b"\x01\x00" and not one.audio
            await fake.send_hangup("done", session=one)
            assert json.loads(await first.recv()) == {"type": "hangup", "reason": "done"}
    finally:
        await fake.stop()
