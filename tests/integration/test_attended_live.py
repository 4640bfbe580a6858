"""Attended (warm) transfer on a real FreeSWITCH: the agent hands the caller to a person.

sipp calls the sales number from 127.0.0.2 streaming a 440 Hz tone; a fake raw agent answers through the real
media bridge and asks for an attended transfer (``{"type":"transfer","mode":"attended","brief":…}``) to a number
on the office PBX trunk, where a second sipp plays the person (UAS on ``ports["uas"]``). The controller originates
the target through the trunk's gateway while the caller stays with the agent, plays the announcement to the target
when it answers, then stops the caller's fork and ``uuid_bridge``s the two: FreeSWITCH's ``show calls`` lists them
as one bridged call, the caller's RTP flows to the target, the agent hears the outcome and is let go, and the record
says bridged. A second run with the target answering 486: the agent is told (SIP 486), the caller stays with it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from deployments import render_and_start
from fake_agents import FakeRawAgent
from live import live_orchestrator
from switch import free_port, requires_switch, suite_ports
from test_freeswitch_media import FIXTURES, MediaEnv, caller, media_deployment

from orchestrator.calls import records
from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.esl import commands

pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
]
ANNOUNCEMENT = "tone_stream://%(300,0,600)"
TARGET = "+15557654321"
BRIEF = "Ms O'Brien, billing dispute {order 12}, 50% refund"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaEnv]:
    root = tmp_path_factory.mktemp("fsattended")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("bridge", "agent", "uas")
    doc = media_deployment(work, ports, playback="file")
    doc["trunks"][1]["outbound"] = {
        "address": "127.0.0.1",
        "port": ports["uas"],
        "transport": "tcp",
        "media_encryption": "disabled",
        "caller_id": "+15557650100",
    }
    doc["orchestrator"]["transfers"] = {
        "attended": {
            "ring_timeout_seconds": 10,
            "announcement": ANNOUNCEMENT,
            "brief_header": "X-Transfer-Brief",
        }
    }
    fs = render_and_start(doc, root, work)
    try:
        yield MediaEnv(fs, "file", ports, work)
    finally:
        fs.stop()


class Running:
    def __init__(self, controller: Controller, agent: FakeRawAgent, notices: list[Notice]) -> None:
        self.controller, self.agent, self.notices = controller, agent, notices


@pytest.fixture()
async def running(env: MediaEnv) -> AsyncIterator[Running]:
    async with live_orchestrator(env.work, env.ports["agent"], b"attended-test") as live:
        yield Running(live.controller, live.agent, live.notices)


async def notice(notices: list[Notice], kind: str, timeout: float = 30, **data: Any) -> Notice:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in notices:
            if n.kind == kind and all(n.data.get(k) == v for k, v in data.items()):
                return n
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kind} notice; got {[(n.kind, n.data) for n in notices]}")


async def target(env: MediaEnv, scenario: Path, log: Path) -> asyncio.subprocess.Process:
    """sipp as the person the call is transferred to (UAS on the office PBX trunk's outbound port)."""
    log.unlink(missing_ok=True)
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(scenario), "-m", "1", "-nostdin", "-t", "t1", "-i", "127.0.0.1",
        "-p", str(env.ports["uas"]), "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2),
        "-trace_msg", "-message_file", str(log),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip
    await asyncio.sleep(0.3)  # listening
    return proc


async def out_packets(controller: Controller, uuid: str) -> int:
    """RTP packets FreeSWITCH has sent on a channel (mod_commands' mediaStats)."""
    body = await controller.nodes["fs1"].client.api(commands.media_stats(uuid))
    audio = json.loads(body)["response"]["audio"]
    return int(audio.get("out_packet_count", audio.get("outbound", {}).get("packet_count", 0)))


async def test_target_answers_is_briefed_and_bridged_to_the_caller(env: MediaEnv, running: Running) -> None:
    r = running
    log = env.work / "target-answer.log"
    uas = await target(env, FIXTURES / "03-originate-answered" / "uas.xml", log)
    proc = await caller(env)
    try:
        uuid = (await notice(r.notices, "answered")).call.uuid
        session = await r.agent.wait_session()
        await notice(r.notices, "fork_connected")
        request = {"type": "transfer", "target": TARGET, "mode": "attended", "brief": BRIEF, "id": "t1"}
        await r.agent.send_json(request, session)
        result = await notice(r.notices, "transfer")
        assert result.data["succeeded"] is True and result.data["bridged"] is True, result.data
        call = result.call
        a = call.transfer.attended
        leg = a.leg
        # FreeSWITCH holds the caller and the target as one bridged call (show calls reads the core database,
        # which lags the events a little)
        client = r.controller.nodes["fs1"].client
        assert (await client.api(f"uuid_getvar {uuid} bridge_uuid")).strip() == leg
        assert (await client.api(f"uuid_getvar {leg} bridge_uuid")).strip() == uuid
        # current_application stays park (what the simulator models): a restarted orchestrator reads bridge_uuid
        assert (await client.api(f"uuid_getvar {uuid} current_application")).strip() == "park"
        deadline = time.monotonic() + 5
        while True:
            calls = json.loads(await client.api("show calls as json"))
            pairs = {frozenset((row["uuid"], row["b_uuid"])) for row in calls.get("rows", [])}
            if frozenset((uuid, leg)) in pairs or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert frozenset((uuid, leg)) in pairs, calls
        # the caller's RTP reaches the target: FreeSWITCH sends it on the target leg at 50 packets a second
        before = await out_packets(r.controller, leg)
        await asyncio.sleep(1.0)
        sent = await out_packets(r.controller, leg) - before
        assert sent >= 35, f"only {sent} RTP packets to the target in 1 s"
        # the agent heard the outcome and was let go; the call goes on without it
        await r.agent.wait_for(lambda: session.of_type("stop"), timeout=10)
        (told,) = session.of_type("result")
        assert told["id"] == "t1" and told["ok"] is True
        assert r.controller.call(uuid).state == "bridged"
        # the brief went to the target in the INVITE, with the trunk's caller ID
        invite = log.read_text().split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
        assert f"\nX-Transfer-Brief: {BRIEF}" in invite and "<sip:+15557650100@" in invite
        assert a.answered_at is not None and a.briefed_at is not None and a.bridged_at is not None
        assert a.ring_seconds is not None and 0.2 < a.ring_seconds < 10
        print(f"attended: ring {a.ring_seconds:.2f} s, brief {a.bridged_at - a.answered_at:.2f} s, {sent} pkts/s")
        await r.controller.hangup(uuid, "completed", by="api")
        ended = await notice(r.notices, "ended")
        record = records.build(ended.call)
        t = record["transfer"]
        assert (t["method"], t["status"], t["attended"]["stage"], t["attended"]["answered"]) == (
            "attended",
            "succeeded",
            "bridged",
            True,
        )
        assert t["attended"]["brief"] == BRIEF and t["attended"]["bridged_at"] is not None
        assert r.controller.metrics.transfers.labels("attended", "succeeded")._value.get() == 1
        assert await asyncio.wait_for(uas.wait(), 15) == 0, "the target got its BYE"
        assert await asyncio.wait_for(proc.wait(), 15) == 0, "the caller got its BYE"
    finally:
        for p in (uas, proc):
            if p.returncode is None:
                p.kill()


async def test_busy_target_leaves_the_caller_with_the_agent(env: MediaEnv, running: Running) -> None:
    r = running
    uas = await target(env, FIXTURES / "04-originate-failures" / "486" / "uas.xml", env.work / "target-486.log")
    proc = await caller(env)
    try:
        uuid = (await notice(r.notices, "answered")).call.uuid
        session = await r.agent.wait_session()
        await notice(r.notices, "fork_connected")
        request = {"type": "transfer", "target": TARGET, "mode": "attended", "brief": "VIP", "id": "t2"}
        await r.agent.send_json(request, session)
        result = await notice(r.notices, "transfer")
        assert result.data["succeeded"] is False and result.data["call_continues"] is True
        assert result.data["sip_status"] == 486 and result.data["reason"] == "busy"
        await r.agent.wait_for(lambda: session.of_type("result"), timeout=10)
        (told,) = session.of_type("result")
        assert told["ok"] is False and "SIP 486 Busy Here" in told["detail"] and "still on the line" in told["detail"]
        assert await asyncio.wait_for(uas.wait(), 15) == 0
        # the conversation goes on unchanged: same fork, same agent session, caller audio still arriving
        heard = len(session.audio)
        await asyncio.sleep(1.0)
        assert len(session.audio) > heard + 8000, "the caller's audio still reaches the agent"
        call = r.controller.call(uuid)
        assert call is not None and call.state == "answered" and call.fork == "connected"
        assert not session.of_type("stop")
        calls = json.loads(await r.controller.nodes["fs1"].client.api("show calls as json"))
        assert all(row["b_uuid"] == "" for row in calls.get("rows", []) if row["uuid"] == uuid)
        await r.controller.hangup(uuid, "completed", by="api")
        ended = await notice(r.notices, "ended")
        t = records.build(ended.call)["transfer"]
        assert (t["status"], t["sip_status"], t["attended"]["reason"], t["attended"]["answered"]) == (
            "failed",
            486,
            "busy",
            False,
        )
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        for p in (uas, proc):
            if p.returncode is None:
                p.kill()
