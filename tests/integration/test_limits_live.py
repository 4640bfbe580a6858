"""Trunk limits and dead-media handling on a real FreeSWITCH (issue 15, items 3 and 5).

Runs on the switch under test (see switch.py) when ``sipp`` is installed; skips otherwise, saying why. The loopback
example's office PBX (sipp from 127.0.0.2) takes at most 2 calls at once; a ``deadmedia`` trunk (sipp from
127.0.0.7) hangs a call up after 3 s without RTP. A fake raw agent serves both, through
the real media bridge (file playback: every mod_audio_fork build does it).

* a 3rd concurrent call to the 2-call trunk gets 503 with ``Retry-After: 7`` (sipp checks the header) and a record
  ``limit_exceeded``;
* a call whose RTP (a phone on 127.0.0.2) stops is hung up by the orchestrator with MEDIA_TIMEOUT (its watch of
  the packet count, calls/deadmedia.py), recorded ``media_timeout``;
* a call the caller re-INVITEs to ``sendonly`` for 5 s (longer than the media timeout), its phone sending RTP on (music
  on hold), stays up, and the agent is told ``hold`` then, after the ``sendrecv`` re-INVITE, the resume; the
  caller's BYE ends it;
* a held call whose far end sends *no* RTP outlives the media timeout: FreeSWITCH 1.10.12 alone would hang it up
  (the hold re-INVITE's activate_rtp sets ``media_timeout`` again over ``media_hold_timeout``), so the orchestrator
  applies the timeout outside holds and FreeSWITCH keeps only 10 times it.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from deployments import loopback_example, render_and_start
from fake_agents import FakeRawAgent
from live import live_orchestrator, record_of
from rtp import RtpPeer
from sipp_scenarios import uac
from switch import FreeSwitch, free_port, requires_switch, suite_ports

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.media.bridge import MediaBridge

pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
]

LIMITED = "+15557650101"  # office-pbx: inbound.limits.max_calls 2
DEAD = "+15557650401"  # deadmedia: media_timeout_seconds 3
DEAD_SOURCE = "127.0.0.7"


class Env:
    def __init__(self, fs: FreeSwitch, ports: dict[str, int], work: Path) -> None:
        self.fs, self.ports, self.work = fs, ports, work


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("fslimits")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("bridge", "agent")
    doc = loopback_example(work, ports)
    doc["trunks"][1]["inbound"]["codecs"] = ["PCMU"]
    doc["trunks"][1]["inbound"]["limits"] = {"max_calls": 2, "retry_after_seconds": 7}
    doc["trunks"].append(
        {
            "name": "deadmedia",
            "media_timeout_seconds": 3,
            "inbound": {"transports": ["tcp"], "auth": {"acl": [DEAD_SOURCE]}, "codecs": ["PCMU"]},
        }
    )
    doc["numbers"].append({"number": DEAD, "trunk": "deadmedia", "agent": "sales"})
    doc["agents"][1] = {"name": "sales", "protocol": "raw", "url": f"ws://127.0.0.1:{ports['agent']}/agent"}
    doc["agents"][1]["audio_format"] = "pcm_8000"
    doc["orchestrator"]["media"] = {"port": ports["bridge"], "playback": "file"}
    fs = render_and_start(doc, root, work)
    try:
        yield Env(fs, ports, work)
    finally:
        fs.stop()


class Running:
    def __init__(self, controller: Controller, bridge: MediaBridge, agent: FakeRawAgent, notices: list[Notice]) -> None:
        self.controller, self.bridge, self.agent, self.notices = controller, bridge, agent, notices


@pytest.fixture()
async def running(env: Env) -> AsyncIterator[Running]:
    async with live_orchestrator(env.work, env.ports["agent"], b"limits-test") as live:
        yield Running(live.controller, live.bridge, live.agent, live.notices)


async def wait_for(notices: list[Notice], kind: str, count: int = 1, timeout: float = 20) -> list[Notice]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = [n for n in notices if n.kind == kind]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {count} {kind} notice(s); got {[n.kind for n in notices]}")


async def sipp(env: Env, xml: Path, number: str, source: str = "127.0.0.2") -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), f"127.0.0.1:{env.ports['tcp']}", "-s", number, "-m", "1", "-nostdin", "-t", "t1",
        "-i", source, "-p", str(free_port()), "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2), "-timeout", "40",
        "-trace_err", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip


async def test_third_concurrent_call_gets_503_with_retry_after(env: Env, running: Running) -> None:
    r = running
    held = uac(env.work / "limit-held.xml", 200, codec="PCMU", hold_ms=8000)
    first, second = await sipp(env, held, LIMITED), await sipp(env, held, LIMITED)
    answered = await wait_for(r.notices, "answered", 2)
    refused_xml = uac(env.work / "limit-refused.xml", 503, codec="PCMU")
    check = (
        '<recv response="503">\n    <action><ereg regexp="^ *7 *$" search_in="hdr" header="Retry-After:" '
        'check_it="true" assign_to="retry_after"/></action>\n  </recv>'
    )
    text = refused_xml.read_text().replace('<recv response="503"/>', check)
    refused_xml.write_text(text.replace("</scenario>", '<Reference variables="retry_after"/></scenario>'))
    third = await sipp(env, refused_xml, LIMITED)
    assert await asyncio.wait_for(third.wait(), 20) == 0  # 503 with Retry-After: 7, ACKed
    [ended] = await wait_for(r.notices, "ended")
    record = r.controller.ended[ended.call.uuid]
    assert (record["result"], record["refused"], record["limit"]) == ("limit_exceeded", "limit_exceeded", "max_calls")
    assert record["hangup"]["sip_status"] == 503 and record["trunk"] == "office-pbx" and record["sip_call_id"]
    labels = {"trunk": "office-pbx", "direction": "inbound", "limit": "max_calls"}
    assert r.controller.metrics.registry.get_sample_value("sipagent_limit_refusals_total", labels) == 1
    assert all(n.call.uuid in r.controller.tracker.calls for n in answered)  # the two calls were not touched
    assert await asyncio.wait_for(first.wait(), 20) == 0 and await asyncio.wait_for(second.wait(), 20) == 0
    # both ended: the trunk takes a call again (mod_hash released their counts at hang-up)
    r.notices.clear()
    again = await sipp(env, uac(env.work / "limit-again.xml", 200, codec="PCMU", hold_ms=500), LIMITED)
    assert await asyncio.wait_for(again.wait(), 20) == 0
    await wait_for(r.notices, "answered")


async def test_rtp_that_stops_is_hung_up_as_media_timeout(env: Env, running: Running) -> None:
    r = running
    peer = await RtpPeer.open()  # the caller's phone: sends RTP until it is closed
    xml = uac(env.work / "dead-rtp.xml", 200, codec="PCMU", hold_ms=30000, far_end_bye=True)
    xml.write_text(xml.read_text().replace("[media_port]", str(peer.port)).replace("[media_ip]", peer.host))
    try:
        proc = await sipp(env, xml, DEAD, DEAD_SOURCE)
        [answered] = [n for n in await wait_for(r.notices, "answered") if n.call.trunk == "deadmedia"]
        uuid = answered.call.uuid
        await wait_for(r.notices, "fork_connected")
        media_port = await r.controller.nodes["fs1"].client.api(f"uuid_getvar {uuid} local_media_port")
        peer.aim("127.0.0.1", int(media_port.strip()))
        await asyncio.sleep(1.5)  # RTP flows for a while (shorter than the 3 s timeout) ...
        assert uuid in r.controller.tracker.calls
        await peer.close()  # ... then stops
        assert await asyncio.wait_for(proc.wait(), 30) == 0  # FreeSWITCH's BYE reached the caller
        record = await record_of(r.controller, uuid)
        assert record["result"] == "media_timeout" and record["hangup"]["cause"] == "MEDIA_TIMEOUT"
        # the orchestrator's watch saw the packet count stop (calls/deadmedia.py); FreeSWITCH's own timer is 10 x
        assert record["hangup_by"] == "orchestrator" and record["quality"]["packets_in"] > 0
    finally:
        await peer.close()


_REINVITE = """
  <pause milliseconds="{pause}"/>
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Scenario" <sip:+15550001234@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:+15550001234@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 {version} IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a={direction}

    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""


def hold_scenario(path: Path, media: RtpPeer | None) -> Path:
    """INVITE, 200, ACK; after 1 s a re-INVITE ``sendonly`` (hold); 5 s later ``sendrecv`` (resume); BYE 0.5 s on.
    The SDP names ``media`` (a phone sending RTP throughout) or sipp's own port (no RTP at all)."""
    xml = uac(path, 200, codec="PCMU", hold_ms=500)
    text = xml.read_text()
    hold = _REINVITE.format(pause=1000, cseq=2, version=2353687638, direction="sendonly")
    resume = _REINVITE.format(pause=5000, cseq=3, version=2353687639, direction="sendrecv")
    bye_at = text.index('  <pause milliseconds="500"/>')
    text = text[:bye_at] + hold + resume + text[bye_at:].replace("CSeq: 2 BYE", "CSeq: 4 BYE")
    if media is not None:
        text = text.replace("[media_port]", str(media.port)).replace("[media_ip]", media.host)
    path.write_text(text)
    return path


async def _aim_at_call(r: Running, peer: RtpPeer, uuid: str) -> None:
    await wait_for(r.notices, "fork_connected")
    media_port = await r.controller.nodes["fs1"].client.api(f"uuid_getvar {uuid} local_media_port")
    peer.aim("127.0.0.1", int(media_port.strip()))


async def test_hold_is_not_dead_media_and_the_agent_hears_hold_and_resume(env: Env, running: Running) -> None:
    r = running
    peer = await RtpPeer.open()
    try:
        proc = await sipp(env, hold_scenario(env.work / "hold.xml", peer), DEAD, DEAD_SOURCE)
        [answered] = [n for n in await wait_for(r.notices, "answered") if n.call.trunk == "deadmedia"]
        uuid = answered.call.uuid
        await _aim_at_call(r, peer, uuid)
        session = await r.agent.wait_session(timeout=10)
        await r.agent.wait_for(lambda: len(session.of_type("hold")) == 2, timeout=15)
        assert [m["held"] for m in session.of_type("hold")] == [True, False]
        assert await asyncio.wait_for(proc.wait(), 20) == 0  # sipp's own BYE ended the call: never timed out
        record = await record_of(r.controller, uuid)
        assert record["result"] == "completed" and record["hangup_by"] == "remote"
        assert record["hold"]["count"] == 1 and record["hold"]["seconds"] >= 4
        assert [e["held"] for e in record["media"]["agent_events"] if e["kind"] == "hold"] == [True, False]
    finally:
        await peer.close()


async def test_a_hold_without_rtp_outlives_the_media_timeout(env: Env, running: Running) -> None:
    """FreeSWITCH 1.10.12 alone would time this call out 3 s into the hold (the hold re-INVITE puts media_timeout
    back); the orchestrator applies the timeout outside holds only, and FreeSWITCH keeps 10 x it as a backstop."""
    r = running
    proc = await sipp(env, hold_scenario(env.work / "hold-silent.xml", None), DEAD, DEAD_SOURCE)
    [answered] = [n for n in await wait_for(r.notices, "answered") if n.call.trunk == "deadmedia"]
    uuid = answered.call.uuid
    assert await asyncio.wait_for(proc.wait(), 20) == 0  # its own BYE after the 5 s hold: nobody hung it up
    record = await record_of(r.controller, uuid, timeout=15)
    assert record["result"] == "completed" and record["hangup_by"] == "remote"
    assert record["hold"]["count"] == 1 and record["hold"]["seconds"] >= 4  # held past the 3 s timeout
