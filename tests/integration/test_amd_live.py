"""Answering-machine detection on a real FreeSWITCH: outbound calls to a sipp UAS that answers with a recorded
greeting (tests/greetings.py, μ-law RTP through sipp's rtp_stream), the real controller and media bridge, a fake
raw agent.

* a voicemail greeting ending in a 1 kHz beep, wait_for_beep: the first-speech heuristic says machine while the
  greeting plays, mod_avmd (``avmd_start`` through ``uuid_broadcast``) hears the beep, the agent is told to
  speak; what the agent said before is never sent to the callee, its message after the beep is (the switch's
  own stereo recording of the call shows it);
* a short "Hello?": human, mod_avmd stopped;
* hangup mode: a machine is hung up on, recorded ``machine_detected``, and the UAS gets the BYE;
* each in both playback modes (file: drachtio's module; streaming: jambonz's, with FREESWITCH_STREAMING_FORK);
* mod_avmd's ``avmd <uuid> start`` API, by contrast, never reports the beep in 1.10.12 (why the orchestrator runs
  the application).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import greetings
import numpy as np
import pytest
from audio_tools import tone
from deployments import render_and_start
from fake_agents import FakeRawAgent
from live import live_orchestrator
from switch import MODE, FreeSwitch, free_port, requires_switch, suite_ports
from test_freeswitch_media import STREAMING_FORK, _mod_dir_with, media_deployment

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice

pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
    pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox (the greetings' μ-law files)"),
]
TO = "+15557654321"

UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="UAS answers with a recorded greeting">
  <recv request="INVITE" crlf="true"/>
  <send retrans="500">
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Contact: <sip:[local_ip]:[local_port];transport=[transport]>
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0 101
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
      a=ptime:20

    ]]>
  </send>
  <recv request="ACK" crlf="true"/>
  <nop><action><exec rtp_stream="GREETING,1,0"/></action></nop>
  <recv request="BYE" timeout="40000"/>
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
</scenario>
"""


class Env:
    def __init__(self, fs: FreeSwitch, ports: dict[str, int], work: Path) -> None:
        self.fs, self.ports, self.work = fs, ports, work


@pytest.fixture(scope="module", params=["file", "streaming"])
def amd_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    mode = request.param
    if mode == "streaming" and not (MODE == "process" and STREAMING_FORK):
        pytest.skip("streaming playback: a switch this suite starts with FREESWITCH_STREAMING_FORK (jambonz module)")
    root = tmp_path_factory.mktemp(f"fsamd-{mode}")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("bridge", "agent", "uas")
    doc = media_deployment(work, ports, playback=mode)
    doc["trunks"][1]["outbound"] = {
        "address": "127.0.0.1",
        "port": ports["uas"],
        "transport": "tcp",
        "media_encryption": "disabled",
        "caller_id": "+15557650100",
        "codecs": ["PCMU"],
        "machine_detection": {"mode": "notify"},  # renders mod_avmd; each test's call says its own mode
    }
    for name, pcm in (("machine", greetings.machine(8000)), ("hello", greetings.hello(8000))):
        greetings.write_pcmu_wav(pcm, 8000, work / f"{name}-pcmu.wav")
        (work / f"uas-{name}.xml").write_text(UAS.replace("GREETING", str(work / f"{name}-pcmu.wav")))
    fs = render_and_start(doc, root, work, mod_dir=_mod_dir_with(STREAMING_FORK, root) if mode == "streaming" else None)
    try:
        yield Env(fs, ports, work)
    finally:
        fs.stop()


class Running:
    def __init__(self, env: Env, controller: Controller, agent: FakeRawAgent, notices: list[Notice]) -> None:
        self.env, self.controller, self.agent, self.notices = env, controller, agent, notices

    async def wait(self, kind: str, timeout: float = 30, **data: Any) -> Notice:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.notices:
                if n.kind == kind and all(n.data.get(k) == v for k, v in data.items()):
                    return n
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {kind} {data}; got {[(n.kind, n.data) for n in self.notices]}")

    async def uas(self, greeting: str) -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(self.env.work / f"uas-{greeting}.xml"), "-m", "1", "-nostdin", "-t", "t1",
            "-i", "127.0.0.1", "-p", str(self.env.ports["uas"]), "-mi", "127.0.0.1",
            "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(self.env.work),
        )  # fmt: skip
        await asyncio.sleep(0.4)
        return proc


@pytest.fixture()
async def running(amd_env: Env) -> AsyncIterator[Running]:
    async with live_orchestrator(amd_env.work, amd_env.ports["agent"], b"amd-test", synced=True) as live:
        yield Running(amd_env, live.controller, live.agent, live.notices)


def spans(path: Path, channel: int, win_s: float = 0.1) -> list[tuple[float, float, float]]:
    """(second, dominant Hz, RMS) per window of one channel of a stereo WAV."""
    with wave.open(str(path)) as w:
        rate = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)[:, channel].astype(np.float64)
    win = int(rate * win_s)
    out = []
    for i in range(0, len(x) - win, win):
        chunk = x[i : i + win]
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(win)))
        spectrum[0] = 0
        out.append((i / rate, float(np.argmax(spectrum) * rate / win), float(np.sqrt(np.mean(chunk**2)))))
    return out


def machine_messages(session: Any) -> list[dict[str, Any]]:
    return session.of_type("machine_detection")  # type: ignore[no-any-return]


async def test_voicemail_greeting_then_beep_the_agent_leaves_its_message_after_it(running: Running) -> None:
    r = running
    uas = await r.uas("machine")
    call = await r.controller.originate(trunk="office-pbx", to=TO, agent="sales", machine_detection="wait_for_beep")
    uuid = call.uuid
    await r.wait("answered")
    client = r.controller.nodes["fs1"].client
    recording = r.env.work / f"{uuid}-heard.wav"
    await client.api(f"uuid_setvar {uuid} RECORD_STEREO true")
    await client.api(f"uuid_record {uuid} start {recording}")  # channel 0: the callee, 1: what it was sent
    session = await r.agent.wait_session()
    await r.agent.send_audio(tone(600, 8000, 1500))  # "Hi, is this John?": held back, then dropped
    await r.agent.wait_for(lambda: machine_messages(session), timeout=15)
    verdict = machine_messages(session)[0]
    assert verdict["verdict"] == "machine" and verdict["action"] == "wait" and verdict["reason"] == "long_greeting"
    beep = await r.wait("machine", event="beep")
    await r.agent.wait_for(lambda: len(machine_messages(session)) >= 2, timeout=15)
    speak = machine_messages(session)[1]
    assert speak["event"] == "speak" and speak["reason"] == "beep"
    await r.agent.send_audio(tone(1000, 8000, 1500))  # the message
    await asyncio.sleep(2.5)
    md = r.controller.describe(uuid)["machine_detection"]  # type: ignore[index]
    await client.api(f"uuid_record {uuid} stop {recording}")
    await r.controller.hangup(uuid)
    await r.wait("ended")
    await asyncio.wait_for(uas.wait(), 15)
    print(f"\nmachine ({r.controller.deployment.orchestrator.media.playback}): verdict {md['verdict_ms']} ms after the audio started ({md['answer_to_verdict_ms']} ms after the "
          f"answer), {md['speech_ms']} ms of speech; beep at {md['beep_ms']} ms ({beep.data['frequency']} Hz by "
          f"mod_avmd; in the greeting at {greetings.beep_at_ms()} ms); spoke at {md['speak_ms']} ms")  # fmt: skip
    assert 3000 <= md["verdict_ms"] <= 4500 and md["speech_ms"] > 2000
    assert md["beep"] is True and 800 < md["beep_frequency"] < 1100
    assert greetings.beep_at_ms() <= md["beep_ms"] <= greetings.beep_at_ms() + 1500
    assert md["speak_reason"] == "beep" and md["beep_detection"] == "stopped"
    sent = spans(recording, 1)
    assert not [s for s in sent if s[2] > 300 and abs(s[1] - 600) < 40]  # the first words never reached the callee
    message = [t for t, hz, level in sent if level > 300 and abs(hz - 1000) < 40]
    assert message and min(message) * 1000 >= md["beep_ms"] - 300  # the message came after the beep
    heard = spans(recording, 0)
    assert [t for t, hz, level in heard if level > 300 and abs(hz - 1000) < 40]  # the beep, as the switch got it


async def test_a_short_hello_is_a_person(running: Running) -> None:
    r = running
    uas = await r.uas("hello")
    call = await r.controller.originate(trunk="office-pbx", to=TO, agent="sales", machine_detection="wait_for_beep")
    session = await r.agent.wait_session()
    await r.agent.wait_for(lambda: machine_messages(session), timeout=15)
    [verdict] = machine_messages(session)
    assert verdict["verdict"] == "human" and verdict["action"] == "continue"
    await asyncio.sleep(0.3)
    md = r.controller.describe(call.uuid)["machine_detection"]  # type: ignore[index]
    print(f"\nhello: {md['verdict']} ({md['reason']}) {md['verdict_ms']} ms after the audio started, "
          f"{md['answer_to_verdict_ms']} ms after the answer, {md['speech_ms']} ms of speech")  # fmt: skip
    assert md["verdict_ms"] < 2500 and md["beep"] is False and md["beep_detection"] == "stopped"
    await r.controller.hangup(call.uuid)
    await r.wait("ended")
    await asyncio.wait_for(uas.wait(), 15)


async def test_hangup_mode_hangs_up_on_the_machine(running: Running) -> None:
    r = running
    uas = await r.uas("machine")
    call = await r.controller.originate(trunk="office-pbx", to=TO, agent="sales", machine_detection="hangup")
    ended = await r.wait("ended", timeout=20)
    assert await asyncio.wait_for(uas.wait(), 15) == 0  # the UAS got its BYE
    record = r.controller.describe(call.uuid)
    assert record is not None and record["result"] == "machine_detected" and record["hangup_by"] == "orchestrator"
    assert ended.call.hangup is not None and ended.call.hangup.cause == "NORMAL_CLEARING"
    print(f"\nhangup: machine_detected {record['machine_detection']['answer_to_verdict_ms']} ms after the answer, "
          f"call of {record['timings']['duration_seconds']} s")  # fmt: skip


async def test_the_avmd_api_start_never_hears_the_beep(running: Running) -> None:
    r = running
    uas = await r.uas("machine")
    call = await r.controller.originate(
        trunk="office-pbx", to=TO, agent="sales", machine_detection={"mode": "notify", "beep": False}
    )
    await r.wait("answered")
    client = r.controller.nodes["fs1"].client
    assert "started!" in await client.api(f"avmd {call.uuid} start")
    await asyncio.sleep(greetings.beep_at_ms() / 1000 + 2)
    assert not [n for n in r.notices if n.kind == "machine" and n.data.get("event") == "beep"]
    assert (await client.api(f"uuid_getvar {call.uuid} avmd_detect")).strip() in ("", "_undef_")
    await r.controller.hangup(call.uuid)
    await r.wait("ended")
    await asyncio.wait_for(uas.wait(), 15)
