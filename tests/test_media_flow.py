"""Calls end to end without FreeSWITCH: the simulator (its mod_audio_fork is a real WebSocket client), the real
controller and media bridge, and fake agents — the same paths the real-FreeSWITCH tests take."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_tools import dominant_frequency, tone
from fake_agents import FakeAgent, FakeElevenLabs, FakeRawAgent, FakeTwilioAgent
from simulator import SimulatedFreeSwitch

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_text
from orchestrator.esl.client import Backoff
from orchestrator.media import dialects, fork
from orchestrator.media.bridge import MediaBridge

PASSWORD = "sim-pass"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Flow:
    def __init__(self, sim: SimulatedFreeSwitch, controller: Controller, bridge: MediaBridge, agent: FakeAgent) -> None:
        self.sim, self.controller, self.bridge, self.agent = sim, controller, bridge, agent
        self.notices: list[Notice] = []

    async def wait(self, kind: str, timeout: float = 5.0) -> Notice:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.notices:
                if n.kind == kind:
                    return n
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind}; got {[n.kind for n in self.notices]}")

    async def inbound(self, codec: str = "PCMU", rate: int = 8000) -> str:
        ch = await self.sim.inbound_call(
            destination="+15550000001",
            caller_id="+15551230000",
            context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": "bot", "sipagent_number": "+15550000001"},
            sip_headers={"X-Customer-Id": "42", "X-Secret-Internal": "nope"},
            park_timeout="10:NORMAL_TEMPORARY_FAILURE",
            codec=codec,
            rate=rate,
        )
        return ch.uuid


@pytest.fixture()
async def flow(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Flow]:
    spec: dict[str, Any] = getattr(request, "param", {})
    agent_cls: Callable[..., FakeAgent] = spec.get("agent", FakeRawAgent)
    agent = await agent_cls(**spec.get("agent_args", {})).start()
    sim = SimulatedFreeSwitch(PASSWORD)
    sim.fork_websocket = True
    await sim.start()
    port = free_port()
    agent_yaml = spec.get("agent_yaml", "{protocol: raw, url: '%s', audio_format: pcm_8000}") % agent.url
    media = spec.get("media", "{}")
    text = f"""
freeswitch: {{bind_ip: 127.0.0.1, event_socket: {{password: {PASSWORD}}}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}, headers: [X-Customer-Id]}}
    outbound: {{address: sbc.carrier.example}}
numbers: [{{number: "+15550000001", trunk: carrier, agent: bot}}]
agents: [{{name: bot, {agent_yaml[1:-1]}}}]
orchestrator:
  media_url: ws://127.0.0.1:{port}
  media: {{port: {port}, {media[1:-1]}}}
  records: null
  nodes: [{{name: fs1, port: {sim.port}}}]
"""
    result = check_text(text, "d.yaml", {}, tmp_path)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    controller = Controller(result.deployment, tmp_path, tokens=fork.Tokens(b"k"), backoff=Backoff(0.02, 0.1))
    bridge = MediaBridge(result.deployment, controller.tokens, controller, controller.metrics)
    f = Flow(sim, controller, bridge, agent)
    controller.add_listener(bridge.on_notice)
    controller.add_listener(f.notices.append)
    await bridge.start()
    await controller.start()
    await asyncio.wait_for(controller.nodes["fs1"].synced.wait(), 5)
    try:
        yield f
    finally:
        await controller.stop()
        await bridge.stop()
        await sim.stop()
        await agent.stop()


def _runs(frames: list[tuple[float, bytes]], freq: float, rate: int = 8000) -> list[float]:
    """Times of the heard frames where ``freq`` dominates with real energy."""
    out = []
    for t, data in frames:
        x = np.frombuffer(data, dtype="<i2").astype(np.float64)
        if len(x) and np.sqrt(np.mean(x**2)) > 500 and abs(dominant_frequency(data, rate) - freq) < 60:
            out.append(t)
    return out


async def test_inbound_call_audio_both_ways_paced_and_barge_in(flow: Flow) -> None:
    f = flow
    uuid = await f.inbound()
    f.sim.set_caller_audio(uuid, tone(440, 8000, 3000))
    await f.wait("answered")
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("start"))
    start = session.of_type("start")[0]["call"]
    assert (start["caller_id"], start["called_number"], start["rate"]) == ("+15551230000", "+15550000001", 8000)
    assert start["variables"]["customer_id"] == "42"  # the configured X- header
    assert not any("secret" in k for k in start["variables"])  # and only that one
    heard_by_agent = await f.agent.wait_audio(8000 * 2, timeout=5)  # a second of the caller
    assert abs(dominant_frequency(heard_by_agent[1600:16000], 8000) - 440) < 10
    client = f.sim.fork_client(uuid)
    assert client is not None and client.subprotocol == dialects.SUBPROTOCOL
    t0 = asyncio.get_running_loop().time()
    await f.agent.send_audio(tone(1000, 8000, 2000))  # 2 s in one burst
    await asyncio.sleep(1.0)
    kill_sent = asyncio.get_running_loop().time()
    await f.agent.send_clear()
    await asyncio.sleep(0.5)
    tone_at = _runs(client.heard_frames, 1000)
    assert tone_at, "the caller never heard the agent"
    assert tone_at[0] - t0 < 0.08  # the first unit is heard on one of the next frames
    assert max(tone_at) <= kill_sent + 0.045  # silent within a frame or two of the interruption
    assert 0.85 < len(tone_at) * 0.02 < 1.1  # about the second before the interruption, paced
    assert client.kill_times and not client.mark_replies
    # FreeSWITCH was never more than prebuffer + lead ahead: it held no stale audio to play after the kill
    assert client.received_binary_bytes <= (1000 + 160 + 40 + 80) * 16


@pytest.mark.parametrize("flow", [{"media": "{agent_chunk_ms: 60}"}], indirect=True)
async def test_caller_audio_goes_to_the_agent_in_agent_chunk_ms_messages(flow: Flow) -> None:
    f = flow
    uuid = await f.inbound()
    f.sim.set_caller_audio(uuid, tone(440, 8000, 3000))
    session = await f.agent.wait_session()
    heard = await f.agent.wait_audio(8000 * 2, timeout=5)
    assert abs(dominant_frequency(heard[1600:16000], 8000) - 440) < 10
    await f.sim.remote_dtmf(uuid, "5")
    await f.agent.wait_for(lambda: session.of_type("dtmf"))
    await asyncio.sleep(0.2)
    await f.sim.remote_hangup(uuid)
    record = await _record(f, uuid)
    await f.agent.wait_for(lambda: session.closed.is_set())
    sizes = [a for a in session.arrivals if isinstance(a, int)]
    key = next(i for i, a in enumerate(session.arrivals) if isinstance(a, dict) and a.get("type") == "dtmf")
    cut = len([a for a in session.arrivals[:key] if isinstance(a, int)]) - 1  # the message the key press sent early
    # 60 ms a message (960 bytes at 8 kHz) but the one sent at the key press (the audio before it goes first)
    # and the last one (sent when the call ended)
    assert all(n == 960 for i, n in enumerate(sizes[:-1]) if i != cut), sizes
    assert 0 < sizes[cut] <= 960 and 0 < sizes[-1] <= 960
    frames = record["media"]["frames"]
    assert frames["dropped_to_agent"] == 0
    assert frames["to_agent"] == frames["from_caller"]  # counted in 20 ms frames: none lost, none kept back
    assert sum(sizes) == frames["from_caller"] * 320 == len(session.audio)


@pytest.mark.parametrize(
    "flow",
    [{"agent": FakeTwilioAgent, "agent_yaml": "{protocol: twilio, url: '%s'}"}],
    indirect=True,
)
async def test_twilio_dtmf_both_ways_marks_and_remote_hangup(flow: Flow) -> None:
    f = flow
    uuid = await f.inbound()
    await f.wait("fork_connected")
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("start"))
    await f.sim.remote_dtmf(uuid, "5")
    await f.agent.wait_for(lambda: session.of_type("dtmf"))
    assert session.of_type("dtmf")[0]["dtmf"]["digit"] == "5"
    await f.agent.send_audio(tone(700, 8000, 500))
    await f.agent.send_mark("greeting-done")
    t0 = time.monotonic()
    await f.agent.wait_for(lambda: session.of_type("mark"), timeout=3)
    assert 0.4 < time.monotonic() - t0 < 0.8  # reported once the half second was played
    await f.sim.remote_hangup(uuid)
    await f.agent.wait_for(lambda: session.closed.is_set())
    assert session.close_code == 1000 and session.of_type("stop")
    record = await _record(f, uuid)
    assert record["media"]["outcome"] == "completed" and record["media"]["agent_protocol"] == "twilio"


async def _record(f: Flow, uuid: str) -> dict[str, Any]:
    deadline = time.monotonic() + 3
    while uuid not in f.controller.ended:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    return f.controller.ended[uuid]


@pytest.mark.parametrize(
    "flow",
    [{"agent": FakeElevenLabs, "agent_yaml": "{protocol: elevenlabs, agent_id: a1, url: '%s'}"}],
    indirect=True,
)
async def test_elevenlabs_tools_drive_the_call(flow: Flow) -> None:
    f = flow
    f.sim.set_refer_outcome("*", "200")
    uuid = await f.inbound(codec="G722", rate=16000)
    await f.wait("fork_connected")
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("conversation_initiation_client_data"))
    spec = f.sim.fork_client(uuid).spec  # type: ignore[union-attr]
    assert spec.sampling == 16000 and spec.stream_rate_token == "16000"  # wideband call: 16 kHz both ways
    await f.agent.send_tool_call("send_dtmf", {"digits": "12#"}, tool_call_id="d1")
    await f.agent.wait_for(lambda: session.of_type("client_tool_result"))
    assert f.sim.channels[uuid].dtmf_sent == ["12#@100"]  # uuid_send_dtmf reached FreeSWITCH
    await f.agent.send_agent_response("Transferring you now.")
    await f.agent.send_tool_call("transfer_call", {"number": "sip:desk@pbx.example"}, tool_call_id="t1")
    transfer = await f.wait("transfer")
    assert transfer.data["succeeded"] is True
    await f.agent.wait_for(lambda: len(session.of_type("client_tool_result")) == 2)
    results = {r["tool_call_id"]: r for r in session.of_type("client_tool_result")}
    assert results["t1"]["is_error"] is False and "succeeded (SIP 200" in results["t1"]["result"]
    record = await _record(f, uuid)
    assert record["media"]["transcript"][0]["text"] == "Transferring you now."
    assert record["media"]["agent"]["conversation_id"] == "conv_fake"
    assert record["transfer"]["status"] == "succeeded"


@pytest.mark.parametrize("flow", [{"media": "{playback: file, file_segment_ms: 400}"}], indirect=True)
async def test_file_playback_through_play_audio_and_broadcast(flow: Flow) -> None:
    f = flow
    uuid = await f.inbound()
    await f.wait("fork_connected")
    await f.agent.wait_session()
    client = f.sim.fork_client(uuid)
    assert client is not None and not client.spec.jambonz  # the drachtio form: no streaming back
    await f.agent.send_audio(tone(1000, 8000, 1200))
    await asyncio.sleep(1.6)
    ch = f.sim.channels[uuid]
    heard = _runs(ch.audio.heard_frames, 1000)
    assert 1.0 <= len(heard) * 0.02 <= 1.3  # all of it, from files the controller broadcast
    assert [e for e in ch.events if e.name == "CUSTOM" and "play_audio" in (e.get("Event-Subclass") or "")]


@pytest.mark.parametrize(
    "flow",
    [
        {
            "agent_args": {"handshake": False},
            "agent_yaml": "{protocol: raw, url: '%s', connect_timeout_seconds: 0.3}",
        }
    ],
    indirect=True,
)
async def test_agent_that_never_answers_ends_the_call_with_a_reason(flow: Flow) -> None:
    f = flow
    uuid = await f.inbound()
    ended = await f.wait("ended", timeout=5)
    assert ended.call.uuid == uuid and ended.call.hangup_by == "orchestrator"
    record = await _record(f, uuid)
    assert record["media"]["outcome"] == "agent_connect_timeout"
    assert record["result"] == "agent_failed"  # not "completed": the agent never spoke
    assert (
        'sipagent_calls_total{direction="inbound",result="agent_failed"} 1.0' in f.controller.metrics.render().decode()
    )
    assert uuid not in f.sim.channels or not f.sim.channels[uuid].alive


@pytest.mark.parametrize(
    "flow", [{"media": "{fork_module: mod_audio_stream, playback: file, file_segment_ms: 400}"}], indirect=True
)
async def test_mod_audio_stream_fork_and_file_playback(flow: Flow) -> None:
    f = flow
    uuid = await f.inbound()
    f.sim.set_caller_audio(uuid, tone(440, 8000, 2000))
    await f.wait("fork_connected")
    session = await f.agent.wait_session()
    heard_by_agent = await f.agent.wait_audio(8000, timeout=5)
    assert abs(dominant_frequency(heard_by_agent[1600:8000], 8000) - 440) < 10
    client = f.sim.fork_client(uuid)
    assert client is not None and client.spec.module == "mod_audio_stream"  # type: ignore[union-attr]
    assert client.subprotocol is None and '"agent":"bot"' in (client.metadata or "")
    await f.agent.send_audio(tone(1000, 8000, 800))
    await asyncio.sleep(1.2)
    ch = f.sim.channels[uuid]
    assert 0.7 <= len(_runs(ch.audio.heard_frames, 1000)) * 0.02 <= 0.9
    assert [e for e in ch.events if e.name == "CUSTOM" and e.get("Event-Subclass") == "mod_audio_stream::play"]
    await f.agent.send_audio(tone(1000, 8000, 3000))
    await asyncio.sleep(0.3)
    await f.agent.send_clear()
    await asyncio.sleep(0.4)
    before = len(_runs(ch.audio.heard_frames, 1000))
    await asyncio.sleep(0.5)
    assert len(_runs(ch.audio.heard_frames, 1000)) == before  # uuid_break stopped the file
    await f.sim.remote_hangup(uuid)
    await f.agent.wait_for(lambda: session.closed.is_set())


async def test_fork_that_cannot_connect_ends_the_call_as_media_failed(flow: Flow) -> None:
    f = flow
    f.sim.set_fork_outcome("*", "connect_failed")
    uuid = await f.inbound()
    ended = await f.wait("ended", timeout=5)
    assert ended.call.uuid == uuid and ended.call.hangup_by == "orchestrator"
    record = await _record(f, uuid)
    assert record["media"]["outcome"] == "media_failed" and record["result"] == "media_failed"
    assert 'sipagent_fork_failures_total{reason="connect_failed"} 1.0' in f.controller.metrics.render().decode()


@pytest.mark.parametrize(
    "flow",
    [
        {
            "agent": FakeElevenLabs,
            "agent_yaml": "{protocol: elevenlabs, agent_id: a1, url: '%s', transfer_timeout_seconds: 0.5}",
        }
    ],
    indirect=True,
)
@pytest.mark.parametrize("notify", ["603", None])
async def test_a_failed_or_silent_refer_is_reported_to_the_agent(flow: Flow, notify: str | None) -> None:
    f = flow
    f.sim.set_refer_outcome("*", notify)
    uuid = await f.inbound()
    await f.wait("fork_connected")
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("conversation_initiation_client_data"))
    await f.agent.send_tool_call("transfer_call", {"number": "sip:desk@pbx.example"}, tool_call_id="t1")
    await f.agent.wait_for(lambda: session.of_type("client_tool_result"), timeout=3)
    (result,) = session.of_type("client_tool_result")
    assert result["tool_call_id"] == "t1" and result["is_error"] is True
    if notify == "603":  # the NOTIFY's status reaches the agent (the simulator, like sofia-sip, ends the dialog)
        assert (await f.wait("transfer")).data["sip_status"] == 603
        assert "SIP 603" in result["result"] and "call has ended" in result["result"]
    else:
        assert "no outcome within 0.5 s" in result["result"]
        assert f.sim.channels[uuid].alive  # the call stays with the agent


@pytest.mark.parametrize(
    "flow",
    [
        {
            "agent": FakeElevenLabs,
            "agent_yaml": "{protocol: elevenlabs, agent_id: a1, url: '%s', overrides: {language: de, voice_id: v1}}",
        }
    ],
    indirect=True,
)
async def test_outbound_call_variables_and_overrides_reach_the_agent(flow: Flow) -> None:
    """API → originate (channel variables) → fork metadata → ElevenLabs conversation_config_override."""
    f = flow
    f.sim.set_originate_outcome("+15557654321", "answer")
    call = await f.controller.originate(
        trunk="carrier", to="+15557654321", agent="bot",
        variables={"lead": "it's {7}, 50%41"}, agent_overrides={"first_message": "Hallo, hier ist {Anna}!", "voice_id": "v2"},
    )  # fmt: skip
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("conversation_initiation_client_data"))
    [init] = session.of_type("conversation_initiation_client_data")
    assert init["dynamic_variables"]["lead"] == "it's {7}, 50%41"
    agent = init["conversation_config_override"]["agent"]
    assert agent["first_message"] == "Hallo, hier ist {Anna}!" and agent["language"] == "de"  # call < agent merge
    assert init["conversation_config_override"]["tts"]["voice_id"] == "v2"  # the call's voice wins
    await f.controller.hangup(call.uuid)
    await f.wait("ended")
