"""Answering-machine detection on outbound calls, end to end on the simulator: the callee's recorded greeting
(tests/greetings.py) is what the far end says, the simulator's mod_avmd hears the beep, the real controller and
media bridge decide, the fake agents hear the verdict; plus the settings' precedence, the rendered modules and
the simulator's mod_avmd against what the real one does (tests/integration/test_amd_live.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import greetings
import httpx
import numpy as np
import pytest
from audio_tools import tone
from fake_agents import FakeAgent, FakeElevenLabs, FakeRawAgent, FakeTwilioAgent
from simulator import SimulatedFreeSwitch

from orchestrator.api.http import create_app
from orchestrator.calls import machine
from orchestrator.calls.controller import CallError, Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_text
from orchestrator.esl.client import Backoff
from orchestrator.media import fork
from orchestrator.media.bridge import MediaBridge
from orchestrator.render import render_deployment

PASSWORD = "sim-pass"
TO = "+15557654321"


def deployment_text(sim_port: int, media_port: int, agent: str, machine_detection: str = "") -> str:
    return f"""
freeswitch: {{bind_ip: 127.0.0.1, event_socket: {{password: {PASSWORD}}}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
    outbound: {{address: sbc.carrier.example, machine_detection: {{mode: notify, no_speech_seconds: 4}}}}
numbers: [{{number: "+15550000001", trunk: carrier, agent: bot}}]
agents: [{{name: bot, {agent}{machine_detection}}}]
orchestrator:
  media_url: ws://127.0.0.1:{media_port}
  media: {{port: {media_port}}}
  records: null
  nodes: [{{name: fs1, port: {sim_port}}}]
"""


class Flow:
    def __init__(self, sim: SimulatedFreeSwitch, controller: Controller, agent: FakeAgent) -> None:
        self.sim, self.controller, self.agent = sim, controller, agent
        self.notices: list[Notice] = []

    async def wait(self, kind: str, timeout: float = 15.0, **data: Any) -> Notice:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.notices:
                if n.kind == kind and all(n.data.get(k) == v for k, v in data.items()):
                    return n
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} {data}; got {[(n.kind, n.data) for n in self.notices]}")

    async def call(self, greeting: bytes, **kwargs: Any) -> str:
        """An outbound call the callee answers with ``greeting``."""
        self.sim.set_originate_outcome(TO, "answer")
        call = await self.controller.originate(trunk="carrier", to=TO, agent="bot", **kwargs)
        deadline = time.monotonic() + 5
        while call.uuid not in self.sim.channels:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.002)
        self.sim.set_caller_audio(call.uuid, greeting)
        return call.uuid

    def commands(self, prefix: str) -> list[str]:
        lines = [c.removeprefix("api ").removeprefix("bgapi ") for c in self.sim.received_commands]
        return [c for c in lines if c.startswith(prefix)]


@pytest.fixture()
async def flow(tmp_path: Path, request: pytest.FixtureRequest, unused_tcp_port: int) -> AsyncIterator[Flow]:
    spec: dict[str, Any] = getattr(request, "param", {})
    agent_cls: Callable[..., FakeAgent] = spec.get("agent", FakeRawAgent)
    agent = await agent_cls(**spec.get("agent_args", {"rate": 8000} if agent_cls is FakeRawAgent else {})).start()
    sim = SimulatedFreeSwitch(PASSWORD)
    sim.fork_websocket = True
    if spec.get("avmd", True):
        sim.modules.add("mod_avmd")
    await sim.start()
    agent_yaml = spec.get("agent_yaml", "protocol: raw, url: '%s', audio_format: pcm_8000") % agent.url
    text = deployment_text(sim.port, unused_tcp_port, agent_yaml, spec.get("agent_machine", ""))
    result = check_text(text, "d.yaml", {}, tmp_path)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    controller = Controller(result.deployment, tmp_path, tokens=fork.Tokens(b"k"), backoff=Backoff(0.02, 0.1))
    bridge = MediaBridge(result.deployment, controller.tokens, controller, controller.metrics)
    f = Flow(sim, controller, agent)
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


def _tone_frames(frames: list[tuple[float, bytes]], freq: float) -> list[float]:
    """Times of the frames the callee heard where ``freq`` dominates."""
    out = []
    for t, data in frames:
        x = np.frombuffer(data, dtype="<i2").astype(np.float64)
        if len(x) and np.sqrt(np.mean(x**2)) > 500:
            spectrum = np.abs(np.fft.rfft(x))
            if abs(np.argmax(spectrum) * 8000 / len(x) - freq) < 60:
                out.append(t)
    return out


async def test_wait_for_beep_holds_the_agent_until_the_beep_then_it_leaves_its_message(flow: Flow) -> None:
    f = flow
    uuid = await f.call(greetings.machine(), machine_detection={"mode": "wait_for_beep"})
    session = await f.agent.wait_session()
    await f.agent.send_audio(tone(600, 8000, 1000))  # the agent's first words: held back, never heard
    verdict = await f.agent.wait_for(lambda: [m for m in session.of_type("machine_detection")])
    first = session.of_type("machine_detection")[0]
    assert first["event"] == "verdict" and first["verdict"] == "machine" and first["action"] == "wait"
    assert first["reason"] == "long_greeting" and 3000 <= first["verdict_ms"] <= 4000 and first["speech_ms"] > 2000
    assert verdict is None
    beep = await f.wait("machine", event="beep")
    assert 900 < beep.data["frequency"] < 1100  # mod_avmd's measure of the 1 kHz beep
    await f.agent.wait_for(lambda: len(session.of_type("machine_detection")) >= 2)
    speak = session.of_type("machine_detection")[1]
    assert speak == {"type": "machine_detection", "event": "speak", "verdict": "machine", "reason": "beep"}
    spoke_at = asyncio.get_running_loop().time()
    await f.agent.send_audio(tone(1000, 8000, 600))  # the message
    await asyncio.sleep(0.9)
    ch = f.sim.channels[uuid]
    assert _tone_frames(ch.audio.heard_frames, 600) == []  # the first words went nowhere
    heard = _tone_frames(ch.audio.heard_frames, 1000)
    assert heard and min(heard) >= spoke_at  # the message played after the beep
    await asyncio.sleep(0.1)
    assert f.commands(f"avmd {uuid} stop")  # mod_avmd's threads freed once it was no longer needed
    record = f.controller.describe(uuid)
    assert record is not None
    md = record["machine_detection"]
    assert md["verdict"] == "machine" and md["mode"] == "wait_for_beep" and md["beep"] is True
    assert md["speak_reason"] == "beep" and md["beep_detection"] == "stopped"
    assert greetings.beep_at_ms() <= md["beep_ms"] <= greetings.beep_at_ms() + 800
    assert md["answer_to_verdict_ms"] >= md["verdict_ms"] - 50
    beeps = [n for n in f.notices if n.kind == "machine" and n.data.get("event") == "beep"]
    assert len(beeps) == 1  # mod_avmd fires avmd::beep twice: counted once
    await f.controller.hangup(uuid)
    ended = await f.wait("ended")
    assert ended.call.media["machine_held_back_ms"] == 1000
    text = f.controller.metrics.render().decode()
    assert 'sipagent_machine_detection_total{mode="wait_for_beep",trunk="carrier",verdict="machine"} 1.0' in text


async def test_hangup_mode_ends_a_machine_call_as_machine_detected(flow: Flow) -> None:
    f = flow
    uuid = await f.call(greetings.machine(), machine_detection="hangup")
    session = await f.agent.wait_session()
    ended = await f.wait("ended")
    [verdict] = session.of_type("machine_detection")
    assert verdict["verdict"] == "machine" and verdict["action"] == "hangup"
    record = f.controller.describe(uuid)
    assert record is not None and record["result"] == machine.MACHINE_DETECTED
    assert record["hangup_by"] == "orchestrator" and record["machine_detection"]["action"] == "hangup"
    assert ended.call.hangup is not None and ended.call.hangup.cause == "NORMAL_CLEARING"


async def test_a_person_is_told_and_hears_the_agent_at_once(flow: Flow) -> None:
    f = flow
    uuid = await f.call(greetings.hello(), machine_detection={"mode": "wait_for_beep"})
    session = await f.agent.wait_session()
    await f.agent.send_audio(tone(1000, 8000, 400))  # held until the verdict, then played
    await f.agent.wait_for(lambda: session.of_type("machine_detection"))
    [verdict] = session.of_type("machine_detection")
    assert verdict["verdict"] == "human" and verdict["action"] == "continue" and verdict["reason"] == "short_greeting"
    assert verdict["verdict_ms"] < 2500
    await asyncio.sleep(0.8)
    assert _tone_frames(f.sim.channels[uuid].audio.heard_frames, 1000)  # released, not dropped
    await asyncio.sleep(0.1)
    assert f.commands(f"avmd {uuid} stop")
    await f.controller.hangup(uuid)
    record = await _ended_record(f, uuid)
    assert record["machine_detection"]["verdict"] == "human" and record["machine_detection"]["beep"] is False
    assert record["result"] == "completed"


async def _ended_record(f: Flow, uuid: str) -> dict[str, Any]:
    await f.wait("ended")
    record = f.controller.describe(uuid)
    assert record is not None
    return record


@pytest.mark.parametrize(
    "flow",
    [{"agent": FakeElevenLabs, "agent_yaml": "protocol: elevenlabs, agent_id: a1, url: '%s', audio_format: pcm_8000"}],
    indirect=True,
)
async def test_elevenlabs_gets_a_contextual_update_then_a_user_turn_to_speak(flow: Flow) -> None:
    f = flow
    await f.call(greetings.machine(), machine_detection="wait_for_beep")
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("user_message"), timeout=15)
    updates = [m["text"] for m in session.of_type("contextual_update")]
    assert any("answering machine or voicemail answered" in t and "Stay silent" in t for t in updates)
    [cue] = session.of_type("user_message")
    assert "beep has played" in cue["text"] and "Leave your message now" in cue["text"]


@pytest.mark.parametrize(
    "flow", [{"agent": FakeTwilioAgent, "agent_yaml": "protocol: twilio, url: '%s'"}], indirect=True
)
async def test_twilio_gets_answered_by_in_its_envelope(flow: Flow) -> None:
    f = flow
    await f.call(greetings.hello())  # the trunk's notify mode
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("machineDetection"))
    [event] = session.of_type("machineDetection")
    body = event["machineDetection"]
    assert body["answeredBy"] == "human" and body["event"] == "verdict" and body["action"] == "continue"
    assert event["streamSid"].startswith("MZ") and event["sequenceNumber"].isdigit()


@pytest.mark.parametrize(
    "flow", [{"agent": FakeTwilioAgent, "agent_yaml": "protocol: twilio, url: '%s'"}], indirect=True
)
async def test_marks_of_held_audio_are_answered_when_it_is_dropped(flow: Flow) -> None:
    """Twilio: audio and a mark sent while the greeting plays; the audio is dropped, the mark echoed at once, in
    order (nothing before it will ever be heard); after the cue, audio and marks flow as usual."""
    f = flow
    await f.call(greetings.machine(), machine_detection="wait_for_beep")
    session = await f.agent.wait_session()
    await f.agent.send_audio(tone(600, 8000, 400))
    await f.agent.send_mark("greeting-1")
    await f.agent.wait_for(lambda: session.of_type("mark"), timeout=15)
    assert session.of_type("machineDetection")[0]["machineDetection"]["action"] == "wait"
    assert [m["mark"]["name"] for m in session.of_type("mark")] == ["greeting-1"]
    await f.agent.wait_for(lambda: len(session.of_type("machineDetection")) == 2, timeout=15)
    assert session.of_type("machineDetection")[1]["machineDetection"]["answeredBy"] == "machine_end_beep"
    await f.agent.send_audio(tone(1000, 8000, 200))
    await f.agent.send_mark("message-1")
    await f.agent.wait_for(lambda: len(session.of_type("mark")) == 2, timeout=5)


@pytest.mark.parametrize("flow", [{"avmd": False}], indirect=True)
async def test_without_mod_avmd_the_speech_heuristic_still_decides(flow: Flow) -> None:
    f = flow
    uuid = await f.call(greetings.machine(), machine_detection="wait_for_beep")
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: len(session.of_type("machine_detection")) >= 2, timeout=15)
    speak = session.of_type("machine_detection")[1]
    assert speak["reason"] == "greeting_end"  # no beep detector: the silence after the beep ends the greeting
    assert f.commands("uuid_broadcast") == []  # avmd_start would hang the call up where mod_avmd is missing
    record = f.controller.describe(uuid)
    assert record is not None and record["machine_detection"]["beep_detection"] == "unavailable"


async def test_no_audio_at_all_is_unknown_by_the_clock(flow: Flow) -> None:
    """The fork connects but the far end sends nothing the bridge gets: the no-speech deadline still decides."""
    f = flow
    f.sim.frame_interval = 3600.0  # the simulated channel's media clock stands still: no frame reaches the fork
    await f.call(b"", machine_detection={"mode": "hangup", "no_speech_seconds": 0.5})
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("machine_detection"), timeout=5)
    [verdict] = session.of_type("machine_detection")
    assert verdict["verdict"] == "unknown" and verdict["reason"] == "no_speech" and verdict["action"] == "continue"


async def test_off_and_unknown(flow: Flow) -> None:
    f = flow
    uuid = await f.call(b"\x00\x00" * 8000 * 6, machine_detection={"mode": "notify", "no_speech_seconds": 1.5})
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("machine_detection"))
    [verdict] = session.of_type("machine_detection")
    assert verdict["verdict"] == "unknown" and verdict["reason"] == "no_speech" and verdict["speech_ms"] == 0
    await f.controller.hangup(uuid)
    await f.wait("ended")
    other = await f.call(greetings.machine(), machine_detection="off")
    session2 = await f.agent.wait_session(2)
    await asyncio.sleep(0.5)
    assert session2.of_type("machine_detection") == [] and f.controller.describe(other)["machine_detection"] is None  # type: ignore[index]
    assert "machine_detection" not in session2.of_type("start")[0]["call"]["variables"]


# -- settings -------------------------------------------------------------------------------------------
def _deployment(tmp_path: Path, agent_machine: str = "", orchestrator: str = "") -> Any:
    text = deployment_text(1, 2, "protocol: raw, url: 'ws://127.0.0.1:9/'", agent_machine)
    text = text.replace("  records: null\n", f"  records: null\n{orchestrator}")
    result = check_text(text, "d.yaml", {}, tmp_path)
    assert result.errors == [], [str(d) for d in result.errors]
    return result.deployment


def test_precedence_field_by_field(tmp_path: Path) -> None:
    d = _deployment(
        tmp_path,
        ", machine_detection: {machine_speech_ms: 4000}",
        "  machine_detection: {mode: hangup, beep: false, human_speech_max_ms: 1200}\n",
    )
    s = machine.resolve(d, trunk="carrier", agent="bot")
    # orchestrator: beep off and 1.2 s; trunk: notify, 4 s of no speech; agent: 4 s greetings
    assert (s.mode, s.beep, s.human_speech_max_ms, s.no_speech_seconds, s.machine_speech_ms) == (
        "notify", False, 1200, 4, 4000,
    )  # fmt: skip
    call = machine.resolve(d, trunk="carrier", agent="bot", request={"mode": "wait_for_beep", "beep": True})
    assert (call.mode, call.beep, call.machine_speech_ms) == ("wait_for_beep", True, 4000)
    assert machine.resolve(d, trunk="carrier", agent="bot", request="off").mode == "off"
    with pytest.raises(machine.Invalid, match="must be below machine_speech_ms"):
        machine.resolve(d, trunk="carrier", agent="bot", request={"human_speech_max_ms": 4500})
    with pytest.raises(machine.Invalid, match="mode"):
        machine.resolve(d, trunk="carrier", agent="bot", request={"mode": "sometimes"})


def test_validation_names_the_place(tmp_path: Path) -> None:
    text = deployment_text(1, 2, "protocol: raw, url: 'ws://127.0.0.1:9/'", ", machine_detection: {mode: maybe}")
    result = check_text(text, "d.yaml", {}, tmp_path)
    assert result.deployment is None
    assert any("agents" in str(e) and "machine_detection" in str(e) and "maybe" in str(e) for e in result.errors)
    text = deployment_text(1, 2, "protocol: raw, url: 'ws://127.0.0.1:9/'", ", machine_detection: {min_speech_ms: 5}")
    assert check_text(text, "d.yaml", {}, tmp_path).deployment is None


def test_mod_avmd_is_rendered_only_when_detection_is_configured(tmp_path: Path) -> None:
    d = _deployment(tmp_path)
    files = render_deployment(d, tmp_path)
    assert b'<load module="mod_avmd"/>' in files["autoload_configs/modules.conf.xml"].content
    assert b'name="outbound_channel" value="1"' in files["autoload_configs/avmd.conf.xml"].content
    text = deployment_text(1, 2, "protocol: raw, url: 'ws://127.0.0.1:9/'").replace(
        ", machine_detection: {mode: notify, no_speech_seconds: 4}", ""
    )
    plain = check_text(text, "d.yaml", {}, tmp_path).deployment
    assert plain is not None
    files = render_deployment(plain, tmp_path)
    assert b"mod_avmd" not in files["autoload_configs/modules.conf.xml"].content
    assert "autoload_configs/avmd.conf.xml" not in files


async def test_the_api_takes_machine_detection_and_refuses_bad_values(flow: Flow) -> None:
    f = flow
    f.sim.set_originate_outcome(TO, "answer")
    app = create_app(f.controller, "tok")
    auth = {"Authorization": "Bearer tok"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        bad = await c.post("/v1/calls", headers=auth, json={"trunk": "carrier", "to": TO, "agent": "bot",
                                                            "machine_detection": {"mode": "sometimes"}})  # fmt: skip
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        merged = await c.post("/v1/calls", headers=auth, json={"trunk": "carrier", "to": TO, "agent": "bot",
                                                               "machine_detection": {"human_speech_max_ms": 3500}})  # fmt: skip
        assert merged.status_code == 400 and merged.json()["error"]["code"] == "invalid_machine_detection"
        ok = await c.post("/v1/calls", headers=auth, json={"trunk": "carrier", "to": TO, "agent": "bot",
                                                           "machine_detection": "hangup"})  # fmt: skip
        assert ok.status_code == 201 and ok.json()["machine_detection"]["mode"] == "hangup"
        got = await c.get(f"/v1/calls/{ok.json()['id']}", headers=auth)
        assert got.json()["machine_detection"]["verdict"] is None
    with pytest.raises(CallError):
        await f.controller.originate(trunk="carrier", to=TO, agent="bot", machine_detection={"beep": "loud"})


# -- the simulator's mod_avmd, as the real one behaves ------------------------------------------------------
async def _esl_events(sim: SimulatedFreeSwitch) -> tuple[asyncio.StreamWriter, list[dict[str, str]]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    events: list[dict[str, str]] = []

    async def read() -> None:
        while True:
            head = await reader.readuntil(b"\n\n")
            headers = dict(line.split(": ", 1) for line in head.decode().strip().split("\n") if ": " in line)
            body = await reader.readexactly(int(headers["Content-Length"])) if "Content-Length" in headers else b""
            if headers.get("Content-Type") == "text/event-plain":
                from urllib.parse import unquote

                events.append(
                    {k: unquote(v) for k, v in (ln.split(": ", 1) for ln in body.decode().splitlines() if ": " in ln)}
                )

    asyncio.get_running_loop().create_task(read())
    writer.write(f"auth {PASSWORD}\n\nevent plain CUSTOM avmd::start avmd::beep avmd::stop\n\n".encode())
    await writer.drain()
    return writer, events


async def test_simulated_avmd_fires_each_event_twice_and_only_the_app_detects() -> None:
    sim = SimulatedFreeSwitch(PASSWORD)
    sim.modules.add("mod_avmd")
    await sim.start()
    try:
        writer, events = await _esl_events(sim)
        sim.set_originate_outcome(TO, "answer")
        results = []
        for how in ("app", "api"):
            uuid = f"0000000{len(results)}-aaaa-bbbb-cccc-000000000000"
            await sim.run_api(f"originate {{origination_uuid={uuid}}}sofia/gateway/carrier/{TO} &park()")
            sim.set_caller_audio(uuid, b"\x00\x00" * 1600 + greetings.beep(8000) + b"\x00\x00" * 8000)
            if how == "app":
                assert (
                    await sim.run_api(f"uuid_broadcast {uuid} avmd_start::{machine.AVMD_ARGS} aleg")
                    == "+OK Message sent\n"
                )
            else:
                assert (await sim.run_api(f"avmd {uuid} start")).startswith(f"+OK\n [{uuid}] [")
            await asyncio.sleep(1.2)
            stop = await sim.run_api(f"avmd {uuid} stop")
            assert stop == f"+OK\n [{uuid}] [{sim.channels[uuid].name}] stopped\n\n"
            await asyncio.sleep(0.05)
            results.append([e for e in events if e.get("Unique-ID") == uuid])
        app, api = results
        assert [e["Event-Subclass"] for e in app] == ["avmd::start"] * 2 + ["avmd::beep"] * 2 + ["avmd::stop"] * 2
        assert [e["Event-Subclass"] for e in api] == ["avmd::start"] * 2 + ["avmd::stop"] * 2  # never a beep
        bare, full = app[2], app[3]
        assert "Channel-Name" not in bare and "Channel-Name" in full and bare["Frequency"] == full["Frequency"]
        assert bare["Beep-Status"] == "DETECTED" and 950 < float(bare["Frequency"]) < 1050
        assert int(bare["Detection-time"]) > 0 and bare["Call-command"] == "avmd"
        stop = api[2]
        assert stop["Beep-Status"] == "DETECTED" and stop["Total-time"] == "-" + api[0]["Start-time"]  # as measured
        assert (
            await sim.run_api(f"avmd {uuid} stop")
            == f"+ERR, avmd has not yet been started on\n [{uuid}] [{sim.channels[uuid].name}]\n\n"
        )
        sim.modules.discard("mod_avmd")
        await sim.run_api(f"uuid_broadcast {uuid} avmd_start::{machine.AVMD_ARGS} aleg")
        await asyncio.sleep(0.3)
        assert uuid not in sim.channels  # "Invalid Application": the call is hung up
        writer.close()
    finally:
        await sim.stop()
