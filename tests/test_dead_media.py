"""Dead media and hold: a call whose RTP stops is hung up (MEDIA_TIMEOUT, recorded as media_timeout); a hold
(re-INVITE sendonly/inactive) switches to the hold timeout instead, and the agent is told about hold and resume.

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
from orchestrator.render.plan import build

__all__ = ["flow"]  # the fixture, from test_media_flow

#: the rendered trunk's variables: 30 s without RTP, 10 minutes on hold (times 0.01 in the simulator)
TIMEOUTS = {"media_timeout": "30000", "media_hold_timeout": "600000"}


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
    assert f.sim.hold(uuid, "inactive")  # the far end sends no RTP while on hold
    await f.agent.wait_for(lambda: session.of_type("hold"))
    assert session.of_type("hold")[0] == {"type": "hold", "held": True}
    assert f.controller.call(uuid) is not None and f.controller.call(uuid).summary()["held"]  # type: ignore[union-attr]
    # three media timeouts long without RTP: on hold the hold timeout (20 times longer here) applies
    await asyncio.sleep(3 * 30 * f.sim.media_time_scale)
    assert f.controller.call(uuid) is not None
    assert f.sim.unhold(uuid)
    await f.agent.wait_for(lambda: len(session.of_type("hold")) == 2)
    assert session.of_type("hold")[1] == {"type": "hold", "held": False}
    # resumed, RTP stops again: the media timeout is back
    f.sim.stop_rtp(uuid)
    record = await _record(f, uuid)
    assert record["result"] == "media_timeout" and record["hold"]["count"] == 1 and record["hold"]["seconds"] > 0
    assert [e["held"] for e in record["media"]["agent_events"] if e["kind"] == "hold"] == [True, False]
    labels = {"trunk": "carrier"}
    assert f.controller.metrics.registry.get_sample_value("sipagent_holds_total", labels) == 1


async def test_a_call_held_too_long_times_out_on_the_hold_timeout(flow: Flow) -> None:
    f = flow
    uuid = await _call(f)
    f.sim.channels[uuid].setvar("media_hold_timeout", "60000")  # 0.6 s here
    assert f.sim.hold(uuid, "inactive")
    record = await _record_within(f, uuid)
    assert record["result"] == "media_timeout" and record["hold"]["count"] == 1


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


def _variables(tmp: Path, fs: str = "", trunk: str = "") -> tuple[dict[str, str], dict[str, str]]:
    result = check_text(BASE % (fs, trunk), "d.yaml", {}, tmp)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    plan = build(result.deployment, tmp)
    [gateway] = [g for p in plan.profiles for g in p.gateways]
    return dict(plan.contexts[0].variables), dict(gateway.variables)


@pytest.mark.parametrize(
    ("fs", "trunk", "expected"),
    [
        ("", "", ("60000", "600000")),  # freeswitch.media_timeout_seconds (60) and FreeSWITCH's 10 times
        ("", "    media_timeout_seconds: 30\n", ("30000", "300000")),
        ("", "    media_timeout_seconds: 30\n    hold_timeout_seconds: 3600\n", ("30000", "3600000")),
        (", media_timeout_seconds: 0", "    media_timeout_seconds: 20\n", ("20000", "200000")),
        ("", "    media_timeout_seconds: 0\n", None),  # off for this trunk
        (", media_timeout_seconds: 0", "", None),
    ],
)
def test_media_and_hold_timeouts_per_trunk(
    tmp_path: Path, fs: str, trunk: str, expected: tuple[str, str] | None
) -> None:
    context, gateway = _variables(tmp_path, fs, trunk)
    for variables in (context, gateway):
        got = (variables.get("media_timeout"), variables.get("media_hold_timeout"))
        assert got == (expected or (None, None))


def test_a_hold_timeout_needs_a_media_timeout(tmp_path: Path) -> None:
    for fs, trunk in (("", "    media_timeout_seconds: 0\n    hold_timeout_seconds: 60\n"),
                      (", media_timeout_seconds: 0", "    hold_timeout_seconds: 60\n")):  # fmt: skip
        result = check_text(BASE % (fs, trunk), "d.yaml", {}, tmp_path)
        messages = [str(d) for d in result.errors]
        assert any("hold_timeout_seconds needs a media timeout" in m for m in messages), messages


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
