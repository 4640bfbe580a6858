"""Dead media and hold: a call whose RTP stops is hung up (MEDIA_TIMEOUT, recorded as media_timeout); a hold
(re-INVITE sendonly/inactive) is not dead media while the holder sends RTP (sendonly: music on hold), and the agent
is told about hold and resume. A hold without RTP times out like any call (FreeSWITCH 1.10.12, measured).

On the simulator (tests/simulator/deadmedia.py, FreeSWITCH 1.10.12's media timeout and hold handling) with the real
controller, media bridge and a fake agent; tests/integration/test_dead_media_live.py does it on a real switch.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fake_agents import FakeElevenLabs, FakeTwilioAgent
from simulator.deadmedia import timeouts
from test_media_flow import Flow, _record, flow

from orchestrator.agents.base import CallInfo
from orchestrator.agents.elevenlabs import ElevenLabsProtocol
from orchestrator.agents.raw import RawProtocol
from orchestrator.agents.twilio import TwilioProtocol
from orchestrator.config import check_text
from orchestrator.config.model import ElevenLabsAgent, RawAgent
from orchestrator.render.plan import BACKSTOP_FACTOR, build

__all__ = ["flow"]  # the fixture, from test_media_flow

#: the rendered trunk's variable: 30 s without RTP (times 0.01 in the simulator)
TIMEOUTS = {"media_timeout": "30000"}


async def _call(f: Flow) -> str:
    f.sim.media_time_scale = 0.01
    ch = await f.sim.inbound_call(
        destination="+15550000001",
        context="trunk-carrier",
        variables={"sipagent_trunk": "carrier", "sipagent_agent": "bot", "sipagent_number": "+15550000001", **TIMEOUTS},
        park_timeout="10:NORMAL_TEMPORARY_FAILURE",
    )
    await f.wait("fork_connected")
    return ch.uuid


async def test_rtp_that_stops_hangs_the_call_up_as_media_timeout(flow: Flow) -> None:
    f = flow
    uuid = await _call(f)
    session = await f.agent.wait_session()
    f.sim.stop_rtp(uuid)
    await f.agent.wait_for(lambda: session.closed.is_set())
    record = await _record(f, uuid)
    assert record["result"] == "media_timeout" and record["hangup"]["cause"] == "MEDIA_TIMEOUT"
    assert record["hangup_by"] == "freeswitch" and record["hangup"]["disposition"] == "send_bye"
    assert record["hold"] is None


async def test_hold_keeps_the_call_and_the_agent_hears_hold_and_resume(flow: Flow) -> None:
    f = flow
    uuid = await _call(f)
    session = await f.agent.wait_session()
    assert f.sim.hold(uuid, "sendonly")  # the holder sends (music on hold)
    await f.agent.wait_for(lambda: session.of_type("hold"))
    assert session.of_type("hold")[0] == {"type": "hold", "held": True}
    assert f.controller.call(uuid) is not None and f.controller.call(uuid).summary()["held"]  # type: ignore[union-attr]
    await asyncio.sleep(3 * 30 * f.sim.media_time_scale)  # three media timeouts long: RTP flows, nothing times out
    assert f.controller.call(uuid) is not None
    assert f.sim.unhold(uuid)
    await f.agent.wait_for(lambda: len(session.of_type("hold")) == 2)
    assert session.of_type("hold")[1] == {"type": "hold", "held": False}
    f.sim.stop_rtp(uuid)  # resumed, then the RTP stops: the media timeout
    record = await _record(f, uuid)
    assert record["result"] == "media_timeout" and record["hold"]["count"] == 1 and record["hold"]["seconds"] > 0
    assert [e["held"] for e in record["media"]["agent_events"] if e["kind"] == "hold"] == [True, False]
    labels = {"trunk": "carrier"}
    assert f.controller.metrics.registry.get_sample_value("sipagent_holds_total", labels) == 1


async def test_a_hold_without_rtp_times_out_like_any_call(flow: Flow) -> None:
    f = flow
    uuid = await _call(f)
    f.sim.channels[uuid].setvar("media_hold_timeout", "6000000")  # FreeSWITCH's re-INVITE leaves it unused
    assert f.sim.hold(uuid, "inactive")  # no RTP while held
    record = await _record_within(f, uuid)
    assert record["result"] == "media_timeout" and record["hold"]["count"] == 1
    # the CHANNEL_UNHOLD FreeSWITCH fires at the hang-up of a held call closes the hold in the record
    assert [e["held"] for e in record["media"]["agent_events"] if e["kind"] == "hold"][:1] == [True]


async def _record_within(f: Flow, uuid: str) -> dict[str, object]:
    for _ in range(500):
        if uuid in f.controller.ended:
            return f.controller.ended[uuid]
        await asyncio.sleep(0.01)
    raise AssertionError("the call did not end")


@pytest.mark.parametrize(
    "flow",
    [{"agent": FakeTwilioAgent, "agent_yaml": "{protocol: twilio, url: '%s'}"}],
    indirect=True,
)
async def test_twilio_agent_gets_hold_and_unhold_events(flow: Flow) -> None:
    f = flow
    uuid = await _call(f)
    session = await f.agent.wait_session()
    await f.agent.wait_for(lambda: session.of_type("start"))
    f.sim.hold(uuid, "sendonly")  # music on hold: RTP goes on
    await f.agent.wait_for(lambda: session.of_type("hold"))
    f.sim.unhold(uuid)
    await f.agent.wait_for(lambda: session.of_type("unhold"))
    held = session.of_type("hold")[0]
    assert held["hold"] == {"track": "inbound_track"} and held["streamSid"] == session.of_type("start")[0]["streamSid"]


@pytest.mark.parametrize(
    "flow",
    [{"agent": FakeElevenLabs, "agent_yaml": "{protocol: elevenlabs, agent_id: a1, url: '%s'}"}],
    indirect=True,
)
async def test_elevenlabs_agent_gets_a_contextual_update(flow: Flow) -> None:
    f = flow
    uuid = await _call(f)
    session = await f.agent.wait_session()
    f.sim.hold(uuid, "sendonly")
    await f.agent.wait_for(lambda: session.of_type("contextual_update"))
    assert "on hold" in session.of_type("contextual_update")[0]["text"]


def test_adapters_hold_messages() -> None:
    call = CallInfo("c1", "inbound", "+1555", "+1556", "bot", "carrier", 8000)
    raw = RawAgent(name="bot", protocol="raw", url="ws://127.0.0.1:9/a")
    eleven = ElevenLabsAgent(name="bot", protocol="elevenlabs", agent_id="a1")
    assert json.loads(RawProtocol(call, raw).hold(True)[0]) == {"type": "hold", "held": True}
    update = json.loads(ElevenLabsProtocol(call, eleven).hold(False)[0])
    assert update["type"] == "contextual_update" and "off hold" in update["text"]
    twilio = TwilioProtocol(call)
    twilio.open()
    event = json.loads(twilio.hold(False)[0])
    assert event["event"] == "unhold" and event["sequenceNumber"] == "2" and event["streamSid"] == twilio.stream_sid


# -- configuration and rendering ------------------------------------------------------------------------

BASE = """
freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: pw}%s}
trunks:
  - name: carrier
%s    inbound: {transports: [tcp], auth: {acl: [192.0.2.0/24]}}
    outbound: {address: sbc.carrier.example}
numbers: [{number: "+15550000001", trunk: carrier, agent: bot}]
agents: [{name: bot, protocol: raw, url: "ws://127.0.0.1:9/a"}]
"""
#: live quality sampling off: FreeSWITCH applies the trunk's media timeout itself
UNSAMPLED = "orchestrator: {quality: {sample_seconds: 0}}\n"


def _variables(tmp: Path, fs: str = "", trunk: str = "", extra: str = "") -> tuple[dict[str, str], dict[str, str]]:
    result = check_text(BASE % (fs, trunk) + extra, "d.yaml", {}, tmp)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    plan = build(result.deployment, tmp)
    [gateway] = [g for p in plan.profiles for g in p.gateways]
    return dict(plan.contexts[0].variables), dict(gateway.variables)


@pytest.mark.parametrize(
    ("fs", "trunk", "expected"),
    [
        ("", "", "60000"),  # freeswitch.media_timeout_seconds (60)
        ("", "    media_timeout_seconds: 30\n", "30000"),
        (", media_timeout_seconds: 0", "    media_timeout_seconds: 20\n", "20000"),
        ("", "    media_timeout_seconds: 0\n", None),  # off for this trunk
        (", media_timeout_seconds: 0", "", None),
    ],
)
def test_media_timeout_per_trunk(tmp_path: Path, fs: str, trunk: str, expected: str | None) -> None:
    # without live sampling FreeSWITCH applies the timeout; with it (the default) the orchestrator does, outside
    # holds, and FreeSWITCH keeps 10 times it as a backstop
    context, gateway = _variables(tmp_path, fs, trunk, UNSAMPLED)
    for variables in (context, gateway):
        assert variables.get("media_timeout") == expected and "media_hold_timeout" not in variables
    backstop = None if expected is None else str(int(expected) * BACKSTOP_FACTOR)
    for variables in _variables(tmp_path, fs, trunk):
        assert variables.get("media_timeout") == backstop


def test_simulator_reads_the_timeouts_as_freeswitch_does() -> None:
    from simulator import SimChannel

    ch = SimChannel(
        sim=None,  # type: ignore[arg-type]
        uuid="u",
        direction="inbound",
        name="n",
        destination="+1",
        caller_id="+2",
        caller_name="",
        context="c",
        sofia_profile="tcp",
    )
    assert timeouts(ch) == (0, 0)
    ch.setvar("media_timeout", "5000")
    assert timeouts(ch) == (5000, 50000)
    ch.setvar("media_hold_timeout_audio", "7000")
    assert timeouts(ch) == (5000, 7000)


# -- the orchestrator's own dead-media watch (calls/deadmedia.py): RTP outside holds ----------------------------


def test_a_watch_counts_quiet_time_outside_holds_only() -> None:
    from orchestrator.calls.deadmedia import Watch

    w = Watch(10.0)
    assert not w.observe(0.0, 0, held=False)  # the first sample starts the count
    assert not w.observe(5.0, 250, held=False)  # growing
    assert not w.observe(14.0, 250, held=False)  # quiet for 9 s
    assert w.observe(15.0, 250, held=False)  # 10 s: dead, once
    assert not w.observe(16.0, 250, held=False)
    held = Watch(10.0)
    held.observe(0.0, 100, held=False)
    for t in range(1, 60):
        assert not held.observe(float(t), 100, held=True)  # a silent hold never counts
    assert not held.observe(65.0, 100, held=False)  # resumed: the count starts at the last held sample
    assert held.observe(69.0, 100, held=False)
    reset = Watch(3.0)
    reset.observe(0.0, 900, held=False)
    assert not reset.observe(2.0, 5, held=False)  # a new RTP session counts from 0 again: that is RTP
    assert not reset.observe(4.0, None, held=False)  # no reading: nothing decided
    assert reset.observe(5.0, 5, held=False)


async def test_the_orchestrator_hangs_up_dead_media_but_never_a_hold(tmp_path: Path) -> None:
    from simulator import SimulatedFreeSwitch
    from test_controller import PASSWORD, Harness, deployment_text

    from orchestrator.calls.controller import Controller
    from orchestrator.esl.client import Backoff
    from orchestrator.media import fork

    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    text = deployment_text([sim.port]).replace(
        "  - name: carrier\n", "  - name: carrier\n    media_timeout_seconds: 1\n"
    )
    text = text.replace("orchestrator:\n", "orchestrator:\n  quality: {sample_seconds: 1}\n")
    result = check_text(text, "d.yaml", {}, tmp_path)
    assert result.errors == [] and result.deployment is not None
    notices: list[object] = []
    controller = Controller(
        result.deployment, tmp_path, tokens=fork.Tokens(b"t"), backoff=Backoff(initial=0.02, maximum=0.1)
    )
    controller.quality.interval = 0.1  # ten samples a second: the test waits for the decision, not for seconds
    controller.add_listener(notices.append)
    await controller.start()
    h = Harness([sim], controller, notices, tmp_path)
    try:
        await asyncio.wait_for(controller.nodes["fs1"].synced.wait(), 5)
        held = await h.inbound()
        dead = await h.inbound(number="+15550000002", agent="sales")
        await h.wait("answered", held)
        await h.wait("answered", dead)
        assert sim.hold(held, "inactive")  # a hold without RTP, for three times the timeout
        sim.stop_rtp(dead)
        await h.wait("ended", dead, timeout=10)
        record = controller.ended[dead]
        assert record["result"] == "media_timeout" and record["hangup"]["cause"] == "MEDIA_TIMEOUT"
        assert record["hangup_by"] == "orchestrator"
        assert any(c.startswith(f"api uuid_kill {dead} MEDIA_TIMEOUT") for c in sim.received_commands)
        await asyncio.sleep(3)  # the held call outlives its timeout three times over ...
        assert held in controller.tracker.calls and controller.tracker.calls[held].state == "answered"
        assert sim.unhold(held)  # ... and, resumed with RTP, stays
        await asyncio.sleep(1.5)
        assert held in controller.tracker.calls and not any(f"uuid_kill {held}" in c for c in sim.received_commands)
    finally:
        await controller.stop()
        await sim.stop()
