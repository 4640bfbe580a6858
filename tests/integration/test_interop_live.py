"""Interop edges on a real FreeSWITCH (issue 15, item 7): late offer, SIP INFO and in-band DTMF, codec change.

Runs on the switch under test (see switch.py) when ``sipp`` is installed; skips otherwise, saying why. sipp does the
signalling from 127.0.0.2 (the office PBX: RFC 2833), 127.0.0.8 (a trunk with ``dtmf.mode: info``) and 127.0.0.9
(``dtmf.mode: inband``); a phone on 127.0.0.2 (:class:`rtp.AudioPeer`) sends a 440 Hz tone and hears what
FreeSWITCH sends; a fake raw agent (8 kHz) answers every number through the real media bridge.

* late offer: an INVITE without SDP is answered with FreeSWITCH's offer in the 200 OK, sipp's ACK carries the
  answer, and audio flows both ways (the agent hears 440 Hz, the phone hears the agent's 1 kHz);
* SIP INFO: ``application/dtmf-relay`` INFOs from sipp reach the agent as digits; the agent's digits reach sipp as
  INFOs (sipp's message log);
* in-band: DTMF tones in the phone's audio reach the agent as digits; the agent's digits are tones in the RTP the
  phone receives (Goertzel), and no digit is reported twice;
* codec change: a re-INVITE from PCMU to G.722 restarts the fork at 16 kHz and the agent still gets its 8 kHz
  audio with the tone at 440 Hz (not 220 or 880), and the phone hears the agent's 1 kHz in G.722.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_tools import dominant_frequency, tone
from deployments import loopback_example, render_and_start
from fake_agents import FakeRawAgent
from live import live_orchestrator, record_of, wait_for
from rtp import AudioPeer, goertzel_digits
from switch import BIN, MODE, FreeSwitch, free_port, requires_switch, suite_ports

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.media.bridge import MediaBridge

pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
]

STREAMING_FORK = os.environ.get("FREESWITCH_STREAMING_FORK", "")
PBX = "+15557650101"  # office-pbx (127.0.0.2): RFC 2833
INFO, INFO_SOURCE = "+15557650801", "127.0.0.8"
INBAND, INBAND_SOURCE = "+15557650901", "127.0.0.9"
WIDE, WIDE_SOURCE = "+15557651001", "127.0.0.10"  # PCMU and G.722


class Env:
    def __init__(self, fs: FreeSwitch, ports: dict[str, int], work: Path, playback: str) -> None:
        self.fs, self.ports, self.work, self.playback = fs, ports, work, playback


def _mod_dir_with(fork_so: str, root: Path) -> Path:
    """A module directory like the installed one, with the jambonz mod_audio_fork.so (streaming playback)."""
    installed = Path(os.environ.get("FREESWITCH_MOD_DIR") or Path(BIN).resolve().parents[1] / "lib/freeswitch/mod")
    mods = root / "mod"
    mods.mkdir()
    for entry in installed.iterdir():
        if entry.name != "mod_audio_fork.so":
            (mods / entry.name).symlink_to(entry)
    (mods / "mod_audio_fork.so").symlink_to(Path(fork_so).resolve())
    return mods


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("fsinterop")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("bridge", "agent")
    streaming = MODE == "process" and bool(STREAMING_FORK)
    playback = "streaming" if streaming else "file"
    doc = loopback_example(
        work, ports, **({"log_level": os.environ["FS_LOG_LEVEL"]} if "FS_LOG_LEVEL" in os.environ else {})
    )
    doc["trunks"][1]["inbound"]["codecs"] = ["PCMU"]
    for name, source, mode, codecs in (
        ("infodtmf", INFO_SOURCE, "info", ["PCMU"]),
        ("inbanddtmf", INBAND_SOURCE, "inband", ["PCMU"]),
        ("wideband", WIDE_SOURCE, None, ["PCMU", "G722"]),
    ):
        trunk: dict[str, Any] = {
            "name": name,
            "inbound": {"transports": ["tcp"], "auth": {"acl": [source]}, "codecs": codecs},
        }
        if mode:
            trunk["dtmf"] = {"mode": mode}
        doc["trunks"].append(trunk)
    for number, trunk in ((INFO, "infodtmf"), (INBAND, "inbanddtmf"), (WIDE, "wideband")):
        doc["numbers"].append({"number": number, "trunk": trunk, "agent": "sales"})
    doc["agents"][1] = {"name": "sales", "protocol": "raw", "url": f"ws://127.0.0.1:{ports['agent']}/agent"}
    doc["agents"][1]["audio_format"] = "pcm_8000"
    doc["orchestrator"]["media"] = {"port": ports["bridge"], "playback": playback}
    mods = _mod_dir_with(STREAMING_FORK, root) if streaming else None
    fs = render_and_start(doc, root, work, mod_dir=mods)
    try:
        yield Env(fs, ports, work, playback)
    finally:
        fs.stop()


class Running:
    def __init__(self, controller: Controller, bridge: MediaBridge, agent: FakeRawAgent, notices: list[Notice]) -> None:
        self.controller, self.bridge, self.agent, self.notices = controller, bridge, agent, notices

    async def api(self, command: str) -> str:
        return await self.controller.nodes["fs1"].client.api(command)


@pytest.fixture()
async def running(env: Env) -> AsyncIterator[Running]:
    async with live_orchestrator(env.work, env.ports["agent"], b"interop-test") as live:
        yield Running(live.controller, live.bridge, live.agent, live.notices)


async def sipp(env: Env, xml: Path, number: str, source: str) -> asyncio.subprocess.Process:
    """sipp runs ``xml`` once from ``source`` to ``number``, its messages logged to ``<xml>.log``."""
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), f"127.0.0.1:{env.ports['tcp']}", "-s", number, "-m", "1", "-nostdin", "-t", "t1",
        "-i", source, "-p", str(free_port()), "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2), "-timeout", "60",
        "-trace_msg", "-message_file", str(xml.with_suffix(".log")), "-trace_err",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip


_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="interop">
"""

_INVITE = """
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Interop" <sip:+15550001234@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:+15550001234@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
{body}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rrs="true"/>
"""

_SDP = """      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 {version} IN IP4 {host}
      s=-
      c=IN IP4 {host}
      t=0 0
      m=audio {port} RTP/AVP {pt} 101
      a=rtpmap:{pt} {codec}
      a=rtpmap:101 telephone-event/8000
      a=fmtp:101 0-16
      a=sendrecv
"""

_ACK = """
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: {cseq} ACK
      Max-Forwards: 70
{body}
    ]]>
  </send>
"""

_REQUEST = """
  <pause milliseconds="{pause}"/>
  <send retrans="500">
    <![CDATA[

      {method} sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Interop" <sip:+15550001234@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} {method}
      Contact: <sip:+15550001234@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
{body}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
"""

_NO_BODY = "      Content-Length: 0\n"

_ANSWER_REQUEST = """
  <recv request="{method}" timeout="{timeout}"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""


def _sdp(peer: AudioPeer, codec: str = "PCMU", version: int = 1) -> str:
    pt, rtpmap = ("9", "G722/8000") if codec == "G722" else ("0", "PCMU/8000")
    return _SDP.format(host=peer.host, port=peer.port, pt=pt, codec=rtpmap, version=version)


def _info(digit: str, cseq: int, pause: int = 300) -> str:
    body = (
        "      Content-Type: application/dtmf-relay\n      Content-Length: [len]\n\n"
        f"      Signal={digit}\n      Duration=160\n"
    )
    return _REQUEST.format(pause=pause, method="INFO", cseq=cseq, body=body)


def scenario(path: Path, body: str) -> Path:
    path.write_text(_HEAD + body + "</scenario>\n")
    return path


async def _aim(r: Running, peer: AudioPeer, uuid: str) -> None:
    await wait_for(r.notices, "fork_connected")
    peer.aim("127.0.0.1", int((await r.api(f"uuid_getvar {uuid} local_media_port")).strip()))


async def test_late_offer_is_answered_and_carries_audio_both_ways(env: Env, running: Running) -> None:
    r = running
    peer = await AudioPeer.open()
    body = _INVITE.format(body=_NO_BODY)
    # the 200 OK is FreeSWITCH's offer: sipp checks it has one, and answers in the ACK
    body = body.replace(
        '<recv response="200" rrs="true"/>',
        '<recv response="200" rrs="true">\n    <action><ereg regexp="m=audio [0-9]+ RTP/AVP 0" search_in="body" '
        'check_it="true" assign_to="offer"/></action>\n  </recv>',
    )
    body += _ACK.format(cseq=1, body=_sdp(peer)) + _ANSWER_REQUEST.format(method="BYE", timeout=30000)
    xml = scenario(env.work / "late-offer.xml", body.replace("</scenario>", "") + '<Reference variables="offer"/>\n')
    try:
        proc = await sipp(env, xml, PBX, "127.0.0.2")
        uuid = (await wait_for(r.notices, "answered")).call.uuid
        session = await r.agent.wait_session(timeout=10)
        await _aim(r, peer, uuid)
        mark = len(session.audio)
        await r.agent.wait_for(lambda: len(session.audio) >= mark + 8000 * 2 * 2, timeout=10)  # 2 s of the caller
        heard_by_agent = dominant_frequency(bytes(session.audio[-8000:]), 8000)
        await r.agent.send_audio(tone(1000, 8000, 1500))
        await r.agent.wait_for(lambda: len(peer.heard["PCMU"]) >= 8000 * 2 * 3, timeout=10)
        await asyncio.sleep(1.0)
        heard_by_caller = peer.heard["PCMU"][-8000 * 2 :]
        await r.agent.send_hangup("done")
        assert await asyncio.wait_for(proc.wait(), 15) == 0, (env.work / "late-offer.log").read_text()[-3000:]
        await r.agent.wait_for(lambda: session.closed.is_set(), timeout=5)
    finally:
        await peer.close()
    print(f"\nlate offer: the agent hears {heard_by_agent:.0f} Hz, the caller hears "
          f"{dominant_frequency(bytes(heard_by_caller), 8000):.0f} Hz")  # fmt: skip
    assert abs(heard_by_agent - 440) < 15
    assert _heard_tone(peer.heard["PCMU"], 1000, 8000)
    record = await record_of(r.controller, uuid)
    assert (
        record["codec"] == "PCMU" and record["result"] == "completed" and record["media"]["outcome"] == "agent_hangup"
    )


def _received_info_digits(log: str) -> list[str]:
    """The digits of the INFO requests sipp received, in order (its -trace_msg log)."""
    digits = []
    for block in re.split(r"\n-{10,}[^\n]*\n", log):
        if "message received" in block and re.search(r"^INFO sip:", block, re.M):
            m = re.search(r"Signal=\s*(\S)", block)
            if m:
                digits.append(m.group(1))
    return digits


def _heard_tone(pcm: bytearray, freq: float, rate: int) -> bool:
    """Some 100 ms window of ``pcm`` (L16) with real energy is dominated by ``freq``."""
    x = np.frombuffer(bytes(pcm[: len(pcm) & ~1]), dtype="<i2").astype(np.float64)
    n = rate // 10
    for i in range(0, len(x) - n, n):
        w = x[i : i + n]
        if np.sqrt(np.mean(w**2)) > 300 and abs(dominant_frequency(w.astype("<i2").tobytes(), rate) - freq) < 20:
            return True
    return False


async def test_sip_info_dtmf_both_ways(env: Env, running: Running) -> None:
    r = running
    peer = await AudioPeer.open()
    body = _INVITE.format(body=_sdp(peer)) + _ACK.format(cseq=1, body=_NO_BODY)
    body += _info("5", 2, pause=3000) + _info("#", 3)
    for _ in "12#":
        body += _ANSWER_REQUEST.format(method="INFO", timeout=20000)
    body += _ANSWER_REQUEST.format(method="BYE", timeout=20000)
    xml = scenario(env.work / "info.xml", body)
    try:
        proc = await sipp(env, xml, INFO, INFO_SOURCE)
        uuid = (await wait_for(r.notices, "answered")).call.uuid
        session = await r.agent.wait_session(timeout=10)
        await _aim(r, peer, uuid)
        await r.agent.wait_for(lambda: [m["digit"] for m in session.of_type("dtmf")] == ["5", "#"], timeout=15)
        assert (await r.api(f"uuid_getvar {uuid} dtmf_type")).strip() == "info"
        await r.agent.send_dtmf("12#", request_id="d1")
        await r.agent.wait_for(lambda: any(m.get("id") == "d1" for m in session.of_type("result")), timeout=5)
        await asyncio.sleep(1.0)
        await r.agent.send_hangup("done")
        code = await asyncio.wait_for(proc.wait(), 20)
    finally:
        await peer.close()
    log = (env.work / "info.log").read_text()
    received = _received_info_digits(log)
    print(f"\nSIP INFO: the agent got 5# from sipp; sipp's log has INFO digits {received}")
    assert code == 0, log[-3000:]
    assert received == ["1", "2", "#"]
    assert not peer.decoder.digits  # no RFC 2833 events went out
    record = await record_of(r.controller, uuid)
    assert record["dtmf"] == {"received": "5#", "sent": "12#"}


async def test_inband_dtmf_from_the_caller_reaches_the_agent(env: Env, running: Running) -> None:
    r = running
    peer = await AudioPeer.open()
    body = _INVITE.format(body=_sdp(peer)) + _ACK.format(cseq=1, body=_NO_BODY)
    body += _ANSWER_REQUEST.format(method="BYE", timeout=30000)
    xml = scenario(env.work / "inband.xml", body)
    try:
        proc = await sipp(env, xml, INBAND, INBAND_SOURCE)
        uuid = (await wait_for(r.notices, "answered")).call.uuid
        session = await r.agent.wait_session(timeout=10)
        await _aim(r, peer, uuid)
        await asyncio.sleep(0.5)
        await peer.send_tones("37#")
        await r.agent.wait_for(lambda: [m["digit"] for m in session.of_type("dtmf")] == ["3", "7", "#"], timeout=10)
        assert (await r.api(f"uuid_getvar {uuid} dtmf_type")).strip() == "none"
        await r.agent.send_dtmf("19*", request_id="d1")
        await r.agent.wait_for(lambda: any(m.get("id") == "d1" for m in session.of_type("result")), timeout=5)
        await asyncio.sleep(1.5)
        await r.agent.send_hangup("done")
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        await peer.close()
    print("\ninband: the agent got 37# from the caller's tones")
    assert not peer.decoder.digits  # the agent's digits never went out as RFC 2833 events (nor as INFO)
    record = await record_of(r.controller, uuid)
    assert record["dtmf"] == {"received": "37#", "sent": "19*"}  # the generator's own DTMF events are not received


async def test_the_agents_digits_are_tones_in_the_callers_audio(env: Env, running: Running) -> None:
    r = running
    peer = await AudioPeer.open()
    body = _INVITE.format(body=_sdp(peer)) + _ACK.format(cseq=1, body=_NO_BODY)
    body += _ANSWER_REQUEST.format(method="BYE", timeout=30000)
    xml = scenario(env.work / "inband-out.xml", body)
    try:
        proc = await sipp(env, xml, INBAND, INBAND_SOURCE)
        uuid = (await wait_for(r.notices, "answered")).call.uuid
        await r.agent.wait_session(timeout=10)
        await _aim(r, peer, uuid)
        start = len(peer.heard["PCMU"])
        await r.agent.send_dtmf("19*", request_id="d1")
        try:
            await r.agent.wait_for(lambda: goertzel_digits(bytes(peer.heard["PCMU"][start:])) == "19*", timeout=8)
        finally:
            await r.agent.send_hangup("done")
            await asyncio.wait_for(proc.wait(), 15)
    finally:
        await peer.close()


@pytest.mark.skipif(importlib.util.find_spec("G722") is None, reason="needs the g722 package (test extra)")
async def test_codec_change_restarts_the_fork_at_the_new_rate(env: Env, running: Running) -> None:
    r = running
    peer = await AudioPeer.open()
    body = _INVITE.format(body=_sdp(peer, "PCMU")) + _ACK.format(cseq=1, body=_NO_BODY)
    body += _REQUEST.format(pause=4000, method="INVITE", cseq=2, body=_sdp(peer, "G722", version=2))
    body += _ACK.format(cseq=2, body=_NO_BODY) + _ANSWER_REQUEST.format(method="BYE", timeout=30000)
    xml = scenario(env.work / "codec-change.xml", body)
    try:
        proc = await sipp(env, xml, WIDE, WIDE_SOURCE)
        uuid = (await wait_for(r.notices, "answered")).call.uuid
        session = await r.agent.wait_session(timeout=10)
        await _aim(r, peer, uuid)
        mark = len(session.audio)
        await r.agent.wait_for(lambda: len(session.audio) >= mark + 8000 * 2 * 2, timeout=10)
        before = dominant_frequency(bytes(session.audio[-8000:]), 8000)
        change = await wait_for(r.notices, "codec", timeout=15)
        peer.switch_codec("G722")
        mark = len(session.audio)
        await r.agent.wait_for(lambda: len(session.audio) >= mark + 8000 * 2 * 2, timeout=10)
        after = dominant_frequency(bytes(session.audio[-8000 * 2 :]), 8000)
        await r.agent.send_audio(tone(1000, 8000, 1500))
        await r.agent.wait_for(lambda: len(peer.heard["G722"]) >= 16000 * 2 * 2, timeout=10)
        await asyncio.sleep(1.0)
        await r.agent.send_hangup("done")
        assert await asyncio.wait_for(proc.wait(), 15) == 0, (env.work / "codec-change.log").read_text()[-3000:]
    finally:
        await peer.close()
    print(f"\ncodec change ({env.playback} playback): {change.data}; the agent hears {before:.0f} Hz before and "
          f"{after:.0f} Hz after; the caller hears the agent in G.722")  # fmt: skip
    assert change.data["codec"] == "G722" and change.data["rate"] == 16000 and change.data["fork_restarted"]
    assert abs(before - 440) < 15 and abs(after - 440) < 15
    assert _heard_tone(peer.heard["G722"], 1000, 16000)
    record = await record_of(r.controller, uuid)
    assert record["codec"] == "G722" and record["rate"] == 16000 and record["codec_changes"] == 1
    assert record["media"]["outcome"] == "agent_hangup"
    assert [e["rate"] for e in record["media"]["agent_events"] if e["kind"] == "fork_rate"] == [16000]
