"""The media bridge end to end on loopback: a fork client playing mod_audio_fork, fake agents, a fake controller."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import pytest
from audio_tools import dominant_frequency, tone
from fake_agents import FakeElevenLabs, FakeRawAgent, FakeTwilioAgent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from orchestrator.config.model import Deployment
from orchestrator.media import dialects, fork
from orchestrator.media.bridge import MediaBridge

TOKENS = fork.Tokens(b"test-secret")


class Control:
    """Records what the bridge asks of the call controller."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.records: dict[str, dict[str, Any]] = {}
        self.transfer_error: Exception | None = None
        self.transfer_kwargs: list[dict[str, Any]] = []  # what each transfer asked besides the target
        self.record_error: Exception | None = None
        self.claimed: set[str] = set()  # tokens used: each is good once
        self.ended: set[str] = set()  # calls that are over (their forks are refused)

    async def hangup(self, uuid: str, reason: str = "completed", by: str = "api") -> None:
        self.calls.append(("hangup", uuid, reason, by))

    async def transfer(self, uuid: str, target: str, **kw: Any) -> None:
        self.calls.append(("transfer", uuid, target))
        self.transfer_kwargs.append(kw)
        if self.transfer_error:
            raise self.transfer_error

    async def send_dtmf(self, uuid: str, digits: str, duration_ms: int = 100) -> None:
        self.calls.append(("dtmf", uuid, digits))

    async def record(self, uuid: str, action: str) -> dict[str, Any]:
        self.calls.append(("record", uuid, action))
        if self.record_error:
            raise self.record_error
        return {"state": "recording"}

    async def machine_detection(self, uuid: str, data: dict[str, Any]) -> None:
        self.calls.append(("machine_detection", uuid, data))

    async def play_and_hangup(self, uuid: str, prompt: str, reason: str, by: str) -> None:
        self.calls.append(("prompt", uuid, prompt, reason))

    async def flush_playback(self, uuid: str) -> None:
        self.calls.append(("flush", uuid))

    def media_update(self, uuid: str, data: dict[str, Any], final: bool = False) -> None:
        self.records.setdefault(uuid, {}).update(data)

    async def claim_fork(self, uuid: str, token: str) -> bool:
        if uuid in self.ended or token in self.claimed:
            return False
        self.claimed.add(token)
        return True

    def kinds(self) -> list[str]:
        return [c[0] for c in self.calls]


class Fork:
    """What mod_audio_fork does: upgrade with the subprotocol, metadata text frame, then L16 frames."""

    def __init__(self, ws: ClientConnection, rate: int) -> None:
        self.ws = ws
        self.rate = rate
        self.audio = bytearray()  # what the bridge sent back (streaming playback)
        self.audio_times: list[tuple[float, int]] = []  # (arrival, bytes so far)
        self.texts: list[str] = []
        self.closed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.audio += message
                    self.audio_times.append((time.monotonic(), len(self.audio)))
                else:
                    self.texts.append(message)
        except ConnectionClosed:
            pass
        self.closed.set()

    async def send_audio(self, pcm: bytes, realtime: bool = True) -> None:
        frame = self.rate * 2 // 50
        for i in range(0, len(pcm), frame):
            await self.ws.send(pcm[i : i + frame])
            if realtime:
                await asyncio.sleep(0.02)

    async def wait_audio(self, nbytes: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.audio) < nbytes:
            assert time.monotonic() < deadline, f"only {len(self.audio)} of {nbytes} bytes came back"
            await asyncio.sleep(0.01)


def run_clocks(session: Any, seconds: float) -> None:
    """Fake time for a session's decisions: carry out what its lifecycle decides ``seconds`` from now."""
    session.expire(time.monotonic() + seconds)


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def deployment(agent: dict[str, Any], **media: Any) -> Deployment:
    return Deployment.model_validate(
        {
            "freeswitch": {"bind_ip": "127.0.0.1", "event_socket": {"password": "x"}},
            "agents": [{"name": "bot", **agent}],
            "orchestrator": {"media": media},
        }
    )


class Harness:
    def __init__(self, agent: dict[str, Any], **media: Any) -> None:
        self.control = Control()
        self.bridge = MediaBridge(deployment(agent, **media), TOKENS, self.control, port=0)

    async def __aenter__(self) -> Harness:
        await self.bridge.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.bridge.stop()

    async def fork(self, call_id: str = "c0ffee00-0000-4000-8000-000000000001", rate: int = 16000, **meta: Any) -> Fork:
        url = fork.fork_url(f"ws://127.0.0.1:{self.bridge.port}", call_id, TOKENS.token(call_id))
        ws = await connect(url, subprotocols=[dialects.SUBPROTOCOL], origin="http://127.0.0.1")  # type: ignore[list-item,arg-type]
        assert ws.subprotocol == dialects.SUBPROTOCOL
        metadata = {
            "call_id": call_id,
            "direction": "inbound",
            "agent": "bot",
            "trunk": "carrier",
            "caller_id": "+15551230000",
            "called_number": "+15557650001",
            "rate": rate,
            "variables": {"campaign": "O'Brien \\ spring", "x_tier": "gold"},
            **meta,
        }
        await ws.send(json.dumps(metadata))
        return Fork(ws, rate)

    def notice(self, kind: str, call_id: str, **data: Any) -> None:
        call = type("C", (), {"uuid": call_id})()
        self.bridge.on_notice(type("N", (), {"kind": kind, "call": call, "data": data})())


# -- audio paths ------------------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [8000, 16000])
async def test_raw_caller_audio_reaches_agent_intact_and_agent_audio_comes_back(rate: int) -> None:
    async with (
        FakeRawAgent(rate=rate) as agent,
        Harness({"protocol": "raw", "url": agent.url, "audio_format": f"pcm_{rate}"}) as h,
    ):
        f = await h.fork(rate=rate)
        caller = bytes((i * 7) % 256 for i in range(rate * 2 // 2))  # 500 ms, a pattern (not silence)
        await f.send_audio(caller, realtime=False)
        got = await agent.wait_audio(len(caller))
        assert got[: len(caller)] == caller  # byte for byte, in order
        start = agent.session.of_type("start")[0]
        assert (
            start["call"]["caller_id"] == "+15551230000"
            and start["call"]["variables"]["campaign"] == "O'Brien \\ spring"
        )
        reply = tone(1000, rate, 400)
        await agent.send_audio(reply)
        await f.wait_audio(len(reply))
        assert bytes(f.audio[: len(reply)]) == reply
        assert agent.session.headers.get("sec-websocket-protocol") is None


async def test_caller_audio_is_sent_in_agent_chunk_ms_messages_and_a_tail_does_not_wait_for_more() -> None:
    async with (
        FakeRawAgent(rate=8000) as agent,
        Harness({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}, agent_chunk_ms=60) as h,
    ):
        f = await h.fork(rate=8000)
        await agent.wait_session()
        caller = bytes((i * 7) % 256 for i in range(320 * 7))  # 7 frames: two whole 60 ms messages and a tail
        await f.send_audio(caller, realtime=False)
        got = await agent.wait_audio(len(caller), timeout=2)  # the tail goes out although no frame follows it
        assert got == caller
        assert [a for a in agent.session.arrivals if isinstance(a, int)] == [960, 960, 320]
        session = next(iter(h.bridge.sessions.values()))
        assert session.stats.frames_to_agent == session.stats.frames_in == 7


async def test_elevenlabs_resamples_both_ways_and_keeps_the_tone() -> None:
    async with (
        FakeElevenLabs(input_format="pcm_16000", output_format="pcm_16000") as agent,
        Harness({"protocol": "elevenlabs", "agent_id": "agent_1", "url": agent.url}) as h,
    ):
        f = await h.fork(rate=8000)  # a G.711 call: 8 kHz in the call, 16 kHz at the agent
        await f.send_audio(tone(1000, 8000, 600), realtime=False)
        heard = await agent.wait_audio(16000 * 2 // 2)
        assert abs(dominant_frequency(heard[3200:], 16000) - 1000) < 10
        init = agent.session.of_type("conversation_initiation_client_data")[0]
        assert init["dynamic_variables"]["caller_id"] == "+15551230000"
        assert init["dynamic_variables"]["campaign"] == "O'Brien \\ spring"
        await agent.send_audio(tone(440, 16000, 600))
        await f.wait_audio(8000 * 2 // 2)
        assert abs(dominant_frequency(bytes(f.audio[1600:8000]), 8000) - 440) < 10
        await agent.send_ping(7)
        await agent.wait_for(lambda: agent.session.of_type("pong"))
        assert agent.session.of_type("pong")[0]["event_id"] == 7
        assert agent.session.query.get("agent_id") == "agent_1"


async def test_twilio_start_media_and_mark_after_playout() -> None:
    async with FakeTwilioAgent() as agent, Harness({"protocol": "twilio", "url": agent.url}) as h:
        f = await h.fork(rate=8000)
        await f.send_audio(tone(1000, 8000, 200), realtime=False)
        await agent.wait_audio(3000)
        start = agent.session.of_type("start")[0]["start"]
        assert start["customParameters"]["x_tier"] == "gold" and start["mediaFormat"]["encoding"] == "audio/x-mulaw"
        t0 = time.monotonic()
        await agent.send_audio(tone(500, 8000, 1000))
        await agent.send_mark("end-of-hello")
        await agent.wait_for(lambda: agent.session.of_type("mark"), timeout=3)
        elapsed = time.monotonic() - t0
        assert 0.9 < elapsed < 1.3  # reported when the second of audio has been played, not when sent
        await f.send_audio(b"", realtime=False)


# -- pacing and barge-in ----------------------------------------------------------------------------
async def test_agent_burst_is_paced_to_real_time() -> None:
    async with (
        FakeRawAgent(rate=8000) as agent,
        Harness({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}) as h,
    ):
        f = await h.fork(rate=8000)
        await agent.wait_session()
        await agent.wait_for(lambda: agent.session.of_type("start"))
        t0 = time.monotonic()
        await agent.send_audio(bytes(2 * 16000))  # 2 s in one go
        await f.wait_audio(2 * 16000, timeout=4)
        for when, total in f.audio_times:
            assert total <= ((when - t0) * 1000 + 200 + 40) * 16  # ahead of real time by the lead at most
        assert 1.7 < f.audio_times[-1][0] - t0 < 2.1


async def test_barge_in_flushes_and_kills_audio_within_a_frame() -> None:
    async with (
        FakeElevenLabs(output_format="pcm_16000") as agent,
        Harness({"protocol": "elevenlabs", "agent_id": "a", "url": agent.url}) as h,
    ):
        f = await h.fork(rate=16000)
        await agent.wait_for(lambda: agent.sessions and agent.session.of_type("conversation_initiation_client_data"))
        await agent.send_audio(bytes(32000 * 3), event_id=1)  # 3 s
        await f.wait_audio(32000 * 0.5)
        await agent.send_interruption(1)
        await wait_until(lambda: '{"type":"killAudio"}' in f.texts, timeout=1)
        n = len(f.audio)
        await agent.send_audio(tone(300, 16000, 200), event_id=1)  # stale: dropped
        await asyncio.sleep(0.3)
        assert len(f.audio) - n <= 640  # at most the frame that was already on its way
        await agent.send_audio(tone(300, 16000, 200), event_id=2)  # a new utterance plays
        await f.wait_audio(n + 6400)
        assert h.bridge.sessions[next(iter(h.bridge.sessions))].stats.interruptions == 1


# -- tools → call actions ---------------------------------------------------------------------------
async def test_elevenlabs_tools_become_call_actions_with_results() -> None:
    async with FakeElevenLabs() as agent, Harness({"protocol": "elevenlabs", "agent_id": "a", "url": agent.url}) as h:
        f = await h.fork()
        await agent.wait_for(lambda: agent.sessions and agent.session.of_type("conversation_initiation_client_data"))
        cid = "c0ffee00-0000-4000-8000-000000000001"
        await agent.send_tool_call("transfer_call", {"number": "+15550001111"}, tool_call_id="t1")
        await wait_until(lambda: ("transfer", cid, "+15550001111") in h.control.calls)
        await asyncio.sleep(0.05)
        assert not agent.session.of_type("client_tool_result")  # answered with the outcome, not at once
        h.notice("transfer", cid, succeeded=False, sip_status=603, detail="Decline", call_continues=True)
        await agent.send_tool_call("send_dtmf", {"digits": "12#"}, tool_call_id="t2")
        await agent.send_tool_call("end_call", {}, tool_call_id="t3")
        await agent.wait_for(lambda: len(agent.session.of_type("client_tool_result")) == 3)
        assert ("dtmf", cid, "12#") in h.control.calls
        assert ("hangup", cid, "completed", "agent") in h.control.calls
        results = {r["tool_call_id"]: r for r in agent.session.of_type("client_tool_result")}
        assert results["t1"]["is_error"] and "SIP 603 Decline" in results["t1"]["result"]
        assert "still on the line" in results["t1"]["result"] and not results["t2"]["is_error"]
        await agent.send_agent_response("Goodbye!")
        await wait_until(lambda: h.bridge.sessions[cid].stats.transcript)
        h.notice("hangup", cid)
        assert h.control.records[cid]["transcript"][0]["text"] == "Goodbye!"
        assert h.control.records[cid]["outcome"] == "agent_hangup"
        assert h.control.records[cid]["detail"] == "end_call"
        await asyncio.wait_for(f.closed.wait(), 3)


async def test_failed_transfer_is_reported_to_the_agent_as_an_error() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        h.control.transfer_error = RuntimeError("call is new, transfers need an answered call")
        await h.fork()
        await agent.wait_session()
        await agent.send_transfer("+15550001111", request_id="r1")
        await agent.wait_for(lambda: agent.session.of_type("result"))
        result = agent.session.of_type("result")[0]
        assert result["ok"] is False and "answered" in result["detail"]


async def test_caller_dtmf_reaches_the_agent() -> None:
    async with FakeTwilioAgent() as agent, Harness({"protocol": "twilio", "url": agent.url}) as h:
        await h.fork(rate=8000)
        await agent.wait_for(lambda: agent.sessions and agent.session.of_type("start"))
        h.notice("dtmf", "c0ffee00-0000-4000-8000-000000000001", digit="5")
        await agent.wait_for(lambda: agent.session.of_type("dtmf"))
        assert agent.session.of_type("dtmf")[0]["dtmf"]["digit"] == "5"


# -- failures -------------------------------------------------------------------------------------------
async def test_agent_connect_timeout_hangs_up_with_reason() -> None:
    async with (
        FakeRawAgent(handshake=False) as agent,
        Harness({"protocol": "raw", "url": agent.url, "connect_timeout_seconds": 0.3}) as h,
    ):
        await h.fork()
        await wait_until(lambda: h.control.calls, timeout=2)
        assert h.control.calls[0][0] == "hangup" and h.control.calls[0][3] == "orchestrator"
        sess = next(iter(h.bridge.sessions.values()))
        assert sess.outcome == "agent_connect_timeout"


async def test_agent_refused_or_unreachable_plays_fallback_prompt() -> None:
    async with (
        FakeRawAgent(reject=403) as agent,
        Harness(
            {"protocol": "raw", "url": agent.url}, on_failure="prompt", fallback_prompt="/usr/share/sorry.wav"
        ) as h,
    ):
        await h.fork()
        await wait_until(lambda: h.control.calls, timeout=2)
        assert h.control.calls[0][:4] == (
            "prompt",
            "c0ffee00-0000-4000-8000-000000000001",
            "/usr/share/sorry.wav",
            "agent_handshake_failed",
        )
    async with Harness({"protocol": "raw", "url": "ws://127.0.0.1:9/nothing-listens"}) as h:
        await h.fork()
        await wait_until(lambda: h.control.calls, timeout=2)
        assert next(iter(h.bridge.sessions.values())).outcome == "agent_unreachable"


async def test_agent_closing_mid_call_ends_only_that_call() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        f1 = await h.fork("c0ffee00-0000-4000-8000-000000000001")
        s1 = await agent.wait_session(1)
        f2 = await h.fork("c0ffee00-0000-4000-8000-000000000002")
        s2 = await agent.wait_session(2)
        await agent.close(4000, "agent crashed", session=s1)
        await wait_until(lambda: h.control.calls)
        assert h.control.calls == [("hangup", "c0ffee00-0000-4000-8000-000000000001", "error", "orchestrator")]
        await f2.send_audio(bytes(range(256)) * 5, realtime=False)
        await agent.wait_audio(1280, session=s2)  # the other call carries on
        assert h.bridge.sessions["c0ffee00-0000-4000-8000-000000000001"].outcome == "agent_closed"
        _ = f1


async def test_fork_dropping_while_call_is_up_is_media_lost() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}, fork_grace_seconds=30) as h:
        f = await h.fork()
        await agent.wait_session()
        sess = h.bridge.sessions["c0ffee00-0000-4000-8000-000000000001"]
        await f.ws.close(1000)
        await wait_until(lambda: sess.fork is None)
        run_clocks(sess, 29.9)
        assert h.control.calls == []  # the grace period is not over
        run_clocks(sess, 30)
        assert sess.outcome == "media_lost"
        await wait_until(lambda: h.control.calls, timeout=2)
        assert h.control.calls[0][0] == "hangup"
        await agent.wait_for(lambda: agent.session.closed.is_set())
        assert agent.session.close_code == 1011


async def test_hangup_closes_both_sockets_and_no_failure_is_reported() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        f = await h.fork()
        await agent.wait_session()
        sess = h.bridge.sessions["c0ffee00-0000-4000-8000-000000000001"]
        await f.send_audio(bytes(640 * 5), realtime=False)
        await agent.wait_audio(640 * 5)
        h.notice("hangup", "c0ffee00-0000-4000-8000-000000000001")
        await asyncio.wait_for(f.closed.wait(), 3)
        await agent.wait_for(lambda: agent.session.closed.is_set())
        assert agent.session.close_code == 1000 and agent.session.of_type("stop")
        run_clocks(sess, 3600)  # the fork's grace period and every other clock: nothing is due
        assert h.control.calls == [] and sess.outcome == ""
        record = h.control.records["c0ffee00-0000-4000-8000-000000000001"]
        assert record["outcome"] == "completed" and record["frames"]["from_caller"] == 5
        assert not h.bridge.sessions


async def test_slow_agent_is_bounded_then_failed() -> None:
    class Deaf(asyncio.Protocol):  # completes the handshake, then never reads again
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)

        def data_received(self, data: bytes) -> None:
            from orchestrator.media.websocket import WebSocket

            ws = WebSocket.server()
            ws.receive_data(data)
            ws.accept()
            self.t.write(ws.data_to_send())
            self.t.pause_reading()  # type: ignore[attr-defined]

    server = await asyncio.get_running_loop().create_server(Deaf, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with Harness(
        {"protocol": "raw", "url": f"ws://127.0.0.1:{port}/a"}, agent_buffer_kb=8, agent_stall_seconds=0.5
    ) as h:
        f = await h.fork()
        await wait_until(lambda: h.bridge.sessions and next(iter(h.bridge.sessions.values())).agent)
        big = bytes(64000)
        for _ in range(60):  # 60 × 2 s of audio, far more than the socket buffers hold
            await f.ws.send(big)
            await asyncio.sleep(0.02)
            if h.control.calls:
                break
        sess = next(iter(h.bridge.sessions.values()))
        assert sess.stats.dropped_to_agent > 0
        await wait_until(lambda: h.control.calls, timeout=3)
        assert sess.outcome == "agent_stalled"
    server.close()


async def test_bad_token_path_and_metadata_are_refused() -> None:
    async with Harness({"protocol": "raw", "url": "ws://127.0.0.1:9/a"}) as h:
        base = f"ws://127.0.0.1:{h.bridge.port}"
        with pytest.raises(InvalidStatus) as bad:
            await connect(f"{base}/calls/abc?token=nope")
        assert bad.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as missing:
            await connect(f"{base}/somewhere")
        assert missing.value.response.status_code == 404
        ws = await connect(fork.fork_url(base, "abc", TOKENS.token("abc")))
        await ws.send("{not json")
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)
        assert ws.close_code == 1008
        ws = await connect(fork.fork_url(base, "abd", TOKENS.token("abd")))
        await ws.send('{"agent": "nobody"}')
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 2)
        assert ws.close_code == 1008
        metrics = h.bridge.metrics.render().decode()
        assert 'sipagent_media_errors_total{kind="fork_rejected"} 2.0' in metrics
        assert 'sipagent_media_errors_total{kind="fork_metadata"} 2.0' in metrics


async def test_metrics_count_frames_each_way() -> None:
    async with (
        FakeRawAgent(rate=8000, echo=True) as agent,
        Harness({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}, agent_chunk_ms=20) as h,
    ):
        f = await h.fork(rate=8000)
        await agent.wait_session()
        await f.send_audio(bytes(320 * 10), realtime=False)
        await f.wait_audio(3200)
        text = h.bridge.metrics.render().decode()
        assert 'sipagent_media_frames_total{path="caller_to_bridge"} 10.0' in text
        assert 'sipagent_media_bytes_total{path="agent_to_bridge"} 3200.0' in text
        assert 'sipagent_media_bytes_total{path="bridge_to_caller"} 3840.0' in text  # 160 + 80 ms units (padded)
        assert "sipagent_agent_connect_seconds_count" in text


async def test_half_open_agent_connection_is_closed_on_timeout() -> None:
    async with (
        FakeRawAgent(handshake=False) as agent,
        Harness({"protocol": "raw", "url": agent.url, "connect_timeout_seconds": 0.3}) as h,
    ):
        await h.fork()
        await wait_until(lambda: h.control.calls, timeout=2)
        await asyncio.sleep(0.1)
        sess = next(iter(h.bridge.sessions.values()))
        assert sess.agent is None and sess.outcome == "agent_connect_timeout"
        assert agent.stalled == 1 and all(w.is_closing() or w.transport.is_closing() for w in agent._stalled_writers)
