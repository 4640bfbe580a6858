"""Interop edges (issue 15, item 7) without FreeSWITCH: DTMF modes per trunk (validated, rendered), late offer in the
profiles. The real switch runs them in tests/integration/test_interop_live.py; the tracker's side (codec change,
late-offer answer, the inband generator's own digits) is in tests/test_tracker.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_controller import (
    Harness,
    h,  # noqa: F401  (the fixture: a controller on the simulator)
)
from test_dead_media import BASE

from orchestrator.config import check_text
from orchestrator.render import render_deployment
from orchestrator.render.plan import INBAND_APPS, build

INBAND = {
    "dtmf_type": "none",
    "rtp_info_when_no_2833": "false",
    "execute_on_answer_sipagent_dtmf_detect": "start_dtmf",
    "execute_on_answer_sipagent_dtmf_generate": "start_dtmf_generate write",
}


def _plan(tmp: Path, fs: str = "", trunk: str = ""):  # type: ignore[no-untyped-def]
    result = check_text(BASE % (fs, trunk), "d.yaml", {}, tmp)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    return result, build(result.deployment, tmp)


def _dtmf_vars(variables: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {k: v for k, v in variables if "dtmf" in k or k == "rtp_info_when_no_2833"}


@pytest.mark.parametrize(
    ("fs", "trunk", "profile", "expected"),
    [
        ("", "", "rfc2833", {}),  # the default: nothing per call
        ("", "    dtmf: {mode: info}\n", "rfc2833", {"dtmf_type": "info"}),
        ("", "    dtmf: {mode: inband}\n", "rfc2833", INBAND),
        (", dtmf: {mode: info}", "", "info", {}),
        (", dtmf: {mode: info}", "    dtmf: {mode: rfc2833}\n", "info", {"dtmf_type": "rfc2833"}),
        (", dtmf: {mode: inband}", "", "none", {k: v for k, v in INBAND.items() if k != "dtmf_type"}),
    ],
)
def test_dtmf_mode_per_trunk(tmp_path: Path, fs: str, trunk: str, profile: str, expected: dict[str, str]) -> None:
    result, plan = _plan(tmp_path, fs, trunk)
    [gateway] = [g for p in plan.profiles for g in p.gateways]
    assert _dtmf_vars(plan.contexts[0].variables) == expected and _dtmf_vars(gateway.variables) == expected
    assert plan.dtmf_type == profile
    files = render_deployment(result.deployment, tmp_path)
    tcp = files["sip_profiles/tcp.xml"].content.decode()
    assert f'<param name="dtmf-type" value="{profile}"/>' in tcp
    assert '<param name="liberal-dtmf" value="true"/>' in tcp  # SIP INFO digits are taken on every trunk
    assert '<param name="enable-3pcc" value="proxy"/>' in tcp  # late offer: INVITE without SDP
    dialplan = files["dialplan/sipagent.xml"].content.decode()
    for name, value in expected.items():
        assert f'<action application="set" data="{name}={value}"/>' in dialplan


@pytest.mark.parametrize("where", ["fs", "trunk"])
def test_unknown_dtmf_mode_is_refused_with_its_place(tmp_path: Path, where: str) -> None:
    fs, trunk = (", dtmf: {mode: tones}", "") if where == "fs" else ("", "    dtmf: {mode: tones}\n")
    result = check_text(BASE % (fs, trunk), "d.yaml", {}, tmp_path)
    [error] = [str(d) for d in result.errors]
    assert "dtmf" in error and "mode" in error and "rfc2833" in error and "inband" in error


# -- the call side on the simulator --------------------------------------------------------------------


async def test_sip_info_digits_reach_the_agent_side_as_dtmf(h: Harness) -> None:  # noqa: F811
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    await h.sim.remote_dtmf(uuid, "5#", via="info")  # DTMF-Source: ENDPOINT
    await h.wait("dtmf", uuid, digit="#")
    assert [n.data["digit"] for n in h.notices if n.kind == "dtmf"] == ["5", "#"]


async def test_inband_digits_both_ways_and_the_generators_echo_is_not_received(h: Harness) -> None:  # noqa: F811
    uuid = await _inband_call(h)
    await h.wait("fork_connected", uuid)
    await h.sim.remote_dtmf(uuid, "37", via="inband")  # the detector's digits: DTMF-Source INBAND_AUDIO
    await h.wait("dtmf", uuid, digit="7")
    await h.controller.send_dtmf(uuid, "9*", 120)  # the generator fires DTMF (APP) for each: not the caller's
    assert h.sim.channels[uuid].dtmf_sent == ["9*@120"]
    await h.sim.remote_dtmf(uuid, "1", via="inband")
    await h.wait("dtmf", uuid, digit="1")
    assert [n.data["digit"] for n in h.notices if n.kind == "dtmf"] == ["3", "7", "1"]
    assert h.controller.tracker.calls[uuid].dtmf_in == "371"


async def _inband_call(harness: Harness) -> str:
    channel = await harness.sim.inbound_call(
        destination="+15550000001",
        caller_id="+15551230000",
        context="trunk-carrier",
        variables={
            "sipagent_trunk": "carrier",
            "sipagent_agent": "support",
            "sipagent_number": "+15550000001",
            "dtmf_type": "none",
            **dict(INBAND_APPS),
        },
        park_timeout="10:NORMAL_TEMPORARY_FAILURE",
    )
    return channel.uuid


async def test_codec_change_restarts_the_fork_at_16k(h: Harness) -> None:  # noqa: F811
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    h.notices.clear()
    await h.sim.change_codec(uuid, "G722", 16000)
    change = await h.wait("codec", uuid)
    assert change.data == {"codec": "G722", "rate": 16000, "previous_rate": 8000, "fork_restarted": True}
    await h.wait("fork_connected", uuid)  # the new fork is accepted (a fresh token) and connects
    forks = [c for c in h.sim.received_commands if c.startswith(f"api uuid_audio_fork {uuid}")]
    assert " stop " in forks[-2] + " " and " 16k " in forks[-1] and " 8k " in forks[0]
    assert h.controller.tracker.calls[uuid].rate == 16000


async def test_on_an_inband_trunk_the_agents_digits_are_played_as_tones(tmp_path: Path) -> None:
    from audio_tools import goertzel_digits
    from simulator import SimulatedFreeSwitch
    from test_controller import PASSWORD, deployment_text, make_controller

    from orchestrator.calls.tracker import Notice

    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    notices: list[Notice] = []
    text = deployment_text([sim.port]).replace("  - name: carrier\n", "  - name: carrier\n    dtmf: {mode: inband}\n")
    controller = await make_controller(text, tmp_path, notices)
    harness = Harness([sim], controller, notices, tmp_path)
    try:
        uuid = await _inband_call(harness)
        await harness.wait("fork_connected", uuid)
        await controller.send_dtmf(uuid, "19w*", 100)
        [sent] = [c for c in sim.received_commands if c.startswith(f"api uuid_broadcast {uuid}")]
        assert sent == (
            f"api uuid_broadcast {uuid} file_string://tone_stream://d=100;w=100;19!silence_stream://500!"
            "tone_stream://d=100;w=100;* aleg"
        )
        assert not sim.channels[uuid].dtmf_sent  # not uuid_send_dtmf: its generator needs frames to mix into
        audio = sim.channel_audio(sim.channels[uuid])
        deadline = asyncio.get_running_loop().time() + 5
        while goertzel_digits(audio.heard_pcm()) != "19*" and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert goertzel_digits(audio.heard_pcm()) == "19*"  # what the caller hears
        assert controller.tracker.calls[uuid].dtmf_out == "19w*"
    finally:
        await controller.stop()
        await sim.stop()
