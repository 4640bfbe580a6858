"""The media bridge on a real FreeSWITCH: caller audio to the agent, agent audio to the caller, barge-in, latency.

Runs on the switch under test (see switch.py) when ``sipp`` is installed; skips otherwise, saying why.
The playback mode is the one the loaded mod_audio_fork supports: ``file`` with drachtio's module,
``streaming`` with the jambonz fork. A FreeSWITCH started here (``FREESWITCH_BIN``) runs both: its
installed module, and the jambonz fork from ``FREESWITCH_STREAMING_FORK`` (its ``mod_audio_fork.so``,
loaded in place of the installed one) when that is set. sipp plays the carrier
(a 440 Hz PCMU tone), a fake raw agent plays the agent (a 1 kHz tone), and what the caller hears is
recorded on the channel (``uuid_record``, stereo: the right channel is what FreeSWITCH sends).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_tools import dominant_frequency, tone
from deployments import loopback_example, render_and_start
from fake_agents import FakeRawAgent
from rtp import RtpPeer
from sipp_scenarios import uac
from switch import BIN, MODE, FreeSwitch, free_port, requires_switch, suite_env, suite_ports

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_file
from orchestrator.media.bridge import MediaBridge
from orchestrator.media.fork import Tokens

STREAMING_FORK = os.environ.get("FREESWITCH_STREAMING_FORK", "")
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "freeswitch-1.10.12"
pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
]


class MediaEnv:
    def __init__(self, fs: FreeSwitch, mode: str, ports: dict[str, int], work: Path) -> None:
        self.fs, self.mode, self.ports, self.work = fs, mode, ports, work


def _mod_dir_with(fork_so: str, root: Path) -> Path:
    """A module directory like the installed one, with another mod_audio_fork.so."""
    installed = Path(os.environ.get("FREESWITCH_MOD_DIR") or Path(BIN).resolve().parents[1] / "lib/freeswitch/mod")
    mods = root / "mod"
    mods.mkdir()
    for entry in installed.iterdir():
        if entry.name != "mod_audio_fork.so":
            (mods / entry.name).symlink_to(entry)
    (mods / "mod_audio_fork.so").symlink_to(Path(fork_so).resolve())
    return mods


def media_deployment(work: Path, ports: dict[str, int], **media: Any) -> dict[str, Any]:
    """The loopback example with a PCMU-only office PBX whose number goes to a raw 8 kHz agent on
    ``ports["agent"]``, and the media bridge on ``ports["bridge"]`` with ``media`` settings."""
    doc = loopback_example(work, ports)
    doc["trunks"][1]["inbound"]["codecs"] = ["PCMU"]
    doc["agents"][1] = {"name": "sales", "protocol": "raw", "url": f"ws://127.0.0.1:{ports['agent']}/agent"}
    doc["agents"][1]["audio_format"] = "pcm_8000"
    doc["orchestrator"]["media"] = {"port": ports["bridge"], **media}
    return doc


@pytest.fixture(scope="module", params=["streaming", "file"])
def media_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaEnv]:
    mode = request.param
    started_here_with_jambonz = MODE == "process" and mode == "streaming" and STREAMING_FORK
    if MODE == "process" and mode == "streaming" and not STREAMING_FORK:
        pytest.skip("streaming playback: set FREESWITCH_STREAMING_FORK to the jambonz mod_audio_fork.so")
    root = tmp_path_factory.mktemp(f"fsmedia-{mode}")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("bridge", "agent")
    doc = media_deployment(
        work, ports, playback=mode, on_failure="prompt", fallback_prompt="tone_stream://%(1000,0,800)"
    )
    mods = _mod_dir_with(STREAMING_FORK, root) if started_here_with_jambonz else None
    fs = render_and_start(doc, root, work, mod_dir=mods)
    if MODE != "process" and mode not in fs.playback_modes:
        fs.stop()
        pytest.skip(f"{mode} playback: the loaded mod_audio_fork does {' and '.join(fs.playback_modes)} playback")
    try:
        yield MediaEnv(fs, mode, ports, work)
    finally:
        fs.stop()


class Running:
    def __init__(self, controller: Controller, bridge: MediaBridge, agent: FakeRawAgent, notices: list[Notice]) -> None:
        self.controller, self.bridge, self.agent, self.notices = controller, bridge, agent, notices


@pytest.fixture()
async def running(media_env: MediaEnv, request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    modes = getattr(request, "param", {})
    result = check_file(media_env.work / "deployment.yaml", suite_env())
    assert result.deployment is not None
    notices: list[Notice] = []
    controller = Controller(result.deployment, result.base_dir, tokens=Tokens(b"media-test"))
    bridge = MediaBridge(result.deployment, controller.tokens, controller, controller.metrics)
    controller.add_listener(bridge.on_notice)
    controller.add_listener(notices.append)
    async with FakeRawAgent(rate=8000, port=media_env.ports["agent"], **modes) as agent:
        await bridge.start()
        await controller.start()
        await controller.nodes["fs1"].client.wait_connected(10)
        try:
            yield Running(controller, bridge, agent, notices)
        finally:
            await controller.stop()
            await bridge.stop()


async def wait_for(notices: list[Notice], kind: str, timeout: float = 20) -> Notice:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in notices:
            if n.kind == kind:
                return n
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kind} notice; got {[n.kind for n in notices]}")


async def caller(env: MediaEnv) -> asyncio.subprocess.Process:
    text = (FIXTURES / "05-audio-fork" / "uac.xml").read_text()
    text = text.replace("05-audio-fork/tone440-pcmu.wav", str(FIXTURES / "05-audio-fork" / "tone440-pcmu.wav"))
    xml = env.work / f"uac-{env.mode}.xml"
    xml.write_text(text)
    return await sipp_call(env, xml)


async def sipp_call(env: MediaEnv, xml: Path) -> asyncio.subprocess.Process:
    """sipp calls the sales number from 127.0.0.2 with scenario ``xml``."""
    return await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), f"127.0.0.1:{env.ports['tcp']}", "-s", "+15557650101", "-m", "1", "-nostdin",
        "-t", "t1", "-i", "127.0.0.2", "-p", str(free_port()), "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip


def heard(path: Path) -> np.ndarray:
    """The right channel (what FreeSWITCH sent to the caller) of a stereo recording."""
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    return data[:, 1].astype(np.float64)


def tone_span(samples: np.ndarray, freq: float = 1000, rate: int = 8000) -> tuple[float, float]:
    """First and last 10 ms window (seconds) where ``freq`` dominates with real energy."""
    win = rate // 100
    on = []
    for i in range(0, len(samples) - win, win):
        chunk = samples[i : i + win]
        if np.sqrt(np.mean(chunk**2)) > 500:
            spectrum = np.abs(np.fft.rfft(chunk * np.hanning(win)))
            if abs(np.argmax(spectrum) * rate / win - freq) <= 100:
                on.append(i / rate)
    assert on, "the agent's tone was never heard"
    return on[0], on[-1] + 0.01


async def test_audio_both_ways_barge_in_and_playback_latency(media_env: MediaEnv, running: Running) -> None:
    env, r = media_env, running
    proc = await caller(env)
    answered = await wait_for(r.notices, "answered")
    uuid = answered.call.uuid
    session = await r.agent.wait_session()
    await wait_for(r.notices, "fork_connected")
    # caller → agent: the 440 Hz tone the caller streams arrives at the agent
    audio = await r.agent.wait_audio(8000 * 2, timeout=10)
    assert abs(dominant_frequency(audio[4000:16000], 8000) - 440) < 15
    # record what the caller hears (added after the fork, so the streamed audio is in it)
    rec = env.work / f"heard-{env.mode}.wav"
    await r.controller.nodes["fs1"].client.api(f"uuid_setvar {uuid} RECORD_STEREO true")
    t_rec = time.monotonic()
    await r.controller.nodes["fs1"].client.api(f"uuid_record {uuid} start {rec}")
    await asyncio.sleep(0.5)
    # agent → caller: 3 s of 1 kHz sent at once, interrupted after 1.5 s
    t_send = time.monotonic()
    await r.agent.send_audio(tone(1000, 8000, 3000))
    await asyncio.sleep(1.5)
    t_clear = time.monotonic()
    await r.agent.send_clear()
    await asyncio.sleep(1.0)
    await r.controller.nodes["fs1"].client.api(f"uuid_record {uuid} stop {rec}")
    await r.agent.send_hangup("done")
    await wait_for(r.notices, "ended")
    assert await asyncio.wait_for(proc.wait(), 15) == 0
    await r.agent.wait_for(lambda: session.closed.is_set())
    first, last = tone_span(heard(rec))
    latency = t_rec + first - t_send
    stop_after_clear = t_rec + last - t_clear
    print(f"\n[{env.mode}] agent audio heard {latency * 1000:.0f} ms after it was sent; "
          f"silent {stop_after_clear * 1000:.0f} ms after the clear")  # fmt: skip
    assert session.of_type("start")[0]["call"]["called_number"] == "+15557650101"
    if env.mode == "streaming":
        assert latency < 0.12  # the first 160 ms unit goes at once: heard within a few frames
        assert stop_after_clear < 0.06  # killAudio: silent within a frame or two
    else:
        assert latency < 1.0
        assert stop_after_clear < 0.3
    record: dict[str, Any] = r.controller.ended[uuid]
    assert record["media"]["outcome"] == "agent_hangup" and record["media"]["detail"] == "done"
    assert record["media"]["interruptions"] == 1
    assert record["media"]["frames"]["from_caller"] > 100


@pytest.mark.parametrize("running", [{"reject": 503}], indirect=True)
async def test_unreachable_agent_plays_the_fallback_prompt_then_hangs_up(media_env: MediaEnv, running: Running) -> None:
    env, r = media_env, running
    proc = await caller(env)
    answered = await wait_for(r.notices, "answered")
    ended = await wait_for(r.notices, "ended")
    assert await asyncio.wait_for(proc.wait(), 15) == 0  # the caller got a BYE
    record: dict[str, Any] = r.controller.ended[answered.call.uuid]
    assert record["media"]["outcome"] == "agent_handshake_failed"
    assert record["hangup_by"] == "orchestrator" and record["result"] == "agent_failed"
    assert record["timings"]["duration_seconds"] >= 0.9  # the 1 s prompt was played first
    assert ended.call.hangup is not None and ended.call.hangup.cause == "NORMAL_TEMPORARY_FAILURE"


async def test_caller_bye_closes_the_agent_socket(media_env: MediaEnv, running: Running) -> None:
    env, r = media_env, running
    proc = await sipp_call(env, uac(env.work / f"bye-{env.mode}.xml", 200, codec="PCMU", hold_ms=1500))
    session = await r.agent.wait_session(timeout=10)
    assert await asyncio.wait_for(proc.wait(), 20) == 0  # the caller's BYE was answered
    await r.agent.wait_for(lambda: session.closed.is_set(), timeout=5)
    assert session.close_code == 1000 and session.of_type("stop")
    ended = await wait_for(r.notices, "ended")
    assert ended.call.hangup_by == "remote"
    record: dict[str, Any] = r.controller.ended[ended.call.uuid]
    assert record["media"]["outcome"] == "completed" and not r.bridge.sessions


async def test_dtmf_both_ways(media_env: MediaEnv, running: Running) -> None:
    """RFC 2833 digits from the caller reach the agent; the agent's digits reach the caller as RFC 2833."""
    env, r = media_env, running
    peer = await RtpPeer.open()  # the caller's phone: sipp signals with its address in the SDP
    xml = uac(env.work / f"dtmf-{env.mode}.xml", 200, codec="PCMU", hold_ms=15000, far_end_bye=True)
    xml.write_text(xml.read_text().replace("[media_port]", str(peer.port)).replace("[media_ip]", peer.host))
    try:
        proc = await sipp_call(env, xml)
        uuid = (await wait_for(r.notices, "answered")).call.uuid
        session = await r.agent.wait_session(timeout=10)
        await wait_for(r.notices, "fork_connected")
        media_port = await r.controller.nodes["fs1"].client.api(f"uuid_getvar {uuid} local_media_port")
        peer.aim("127.0.0.1", int(media_port.strip()))
        await peer.send_digits("1#")
        await r.agent.wait_for(lambda: [m["digit"] for m in session.of_type("dtmf")] == ["1", "#"], timeout=5)
        await r.agent.send_dtmf("12#", request_id="d1")
        await r.agent.wait_for(lambda: peer.digits_heard == "12#", timeout=5)
        assert next(m for m in session.of_type("result") if m["id"] == "d1")["ok"] is True
        await r.agent.send_hangup("done")
        assert await asyncio.wait_for(proc.wait(), 15) == 0  # the phone got FreeSWITCH's BYE and answered it
        await r.agent.wait_for(lambda: session.closed.is_set(), timeout=5)
    finally:
        await peer.close()
    await wait_for(r.notices, "ended")
    record: dict[str, Any] = r.controller.ended[uuid]
    assert record["dtmf"] == {"received": "1#", "sent": "12#"}
