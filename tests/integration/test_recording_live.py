"""Call recording on a real FreeSWITCH: the caller's 440 Hz on one channel, the agent's 1 kHz on the other.

sipp calls the sales number from 127.0.0.2 streaming a 440 Hz PCMU tone (fixture 05's pcap), a fake raw agent
answers with 1 kHz; the agent's recording policy is ``always`` with an announcement (a tone FreeSWITCH plays
before the fork and the recording start). The stereo WAV FreeSWITCH wrote is read back: channel 0 carries
440 Hz, channel 1 the agent's 1 kHz (numpy FFT), the pause (``uuid_record mask``) is silence, the file is 0600 in a
0700 directory, and the record has path, duration and size. Both playback modes, as in test_freeswitch_media; a
second test records on demand as FLAC and Ogg/Vorbis through ``mod_sndfile`` (the compressed formats this switch
has: no mod_shout) and checks the channel count with ``soxi``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import time
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from audio_tools import tone
from deployments import render_and_start
from fake_agents import FakeRawAgent
from switch import MODE, requires_switch, suite_env, suite_ports
from test_freeswitch_media import STREAMING_FORK, MediaEnv, _mod_dir_with, caller, media_deployment, wait_for

from orchestrator.calls.controller import Controller
from orchestrator.calls.recording_files import RecordingFiles
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_file
from orchestrator.config.model import Deployment, RecordingSettings
from orchestrator.esl.protocol import CommandError
from orchestrator.media.bridge import MediaBridge
from orchestrator.media.fork import Tokens

pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
]
ANNOUNCEMENT = "tone_stream://%(400,0,600)"


@pytest.fixture(scope="module", params=["streaming", "file"])
def rec_env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaEnv]:
    mode = request.param
    if MODE != "process":
        pytest.skip("the recording checks read FreeSWITCH's files: a switch this suite starts (FREESWITCH_BIN)")
    if mode == "streaming" and not STREAMING_FORK:
        pytest.skip("streaming playback: set FREESWITCH_STREAMING_FORK to the jambonz mod_audio_fork.so")
    root = tmp_path_factory.mktemp(f"fsrec-{mode}")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("bridge", "agent")
    doc = media_deployment(work, ports, playback=mode)
    doc["agents"][1]["recording"] = "always"
    doc["orchestrator"]["recording"] = {"directory": str(root / "recordings"), "announcement": ANNOUNCEMENT}
    mods = _mod_dir_with(STREAMING_FORK, root) if mode == "streaming" else None
    fs = render_and_start(doc, root, work, mod_dir=mods)
    try:
        yield MediaEnv(fs, mode, ports, work)
    finally:
        fs.stop()


class Running:
    def __init__(self, controller: Controller, agent: FakeRawAgent, notices: list[Notice]) -> None:
        self.controller, self.agent, self.notices = controller, agent, notices


def _with_recording(deployment: Deployment, **settings: Any) -> Deployment:
    o = deployment.orchestrator
    recording = RecordingSettings(**{**o.recording.model_dump(), **settings})
    agents = [a.model_copy(update={"recording": settings.get("policy")}) for a in deployment.agents]
    return deployment.model_copy(
        update={"orchestrator": o.model_copy(update={"recording": recording}), "agents": agents}
    )


@pytest.fixture()
async def running(rec_env: MediaEnv, request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    result = check_file(rec_env.work / "deployment.yaml", suite_env())
    assert result.deployment is not None, [str(d) for d in result.errors]
    deployment = result.deployment
    settings = getattr(request, "param", None)
    if settings:
        deployment = _with_recording(deployment, **settings)
    notices: list[Notice] = []
    controller = Controller(deployment, result.base_dir, tokens=Tokens(b"rec-test"))
    bridge = MediaBridge(deployment, controller.tokens, controller, controller.metrics)
    controller.add_listener(bridge.on_notice)
    controller.add_listener(notices.append)
    async with FakeRawAgent(rate=8000, port=rec_env.ports["agent"]) as agent:
        await bridge.start()
        await controller.start()
        await controller.nodes["fs1"].client.wait_connected(10)
        try:
            yield Running(controller, agent, notices)
        finally:
            await controller.stop()
            await bridge.stop()


async def wait_recording(notices: list[Notice], state: str, timeout: float = 20) -> Notice:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n in notices:
            if n.kind == "recording" and n.data.get("state") == state:
                return n
        await asyncio.sleep(0.02)
    raise AssertionError(f"no recording {state}; got {[(n.kind, n.data) for n in notices if n.kind == 'recording']}")


def spans(samples: np.ndarray, rate: int, win_s: float = 0.1) -> list[tuple[float, float, float]]:
    """(start second, dominant Hz, RMS) per window."""
    win = int(rate * win_s)
    out = []
    for i in range(0, len(samples) - win, win):
        chunk = samples[i : i + win]
        rms = float(np.sqrt(np.mean(chunk**2)))
        spectrum = np.abs(np.fft.rfft(chunk * np.hanning(win)))
        spectrum[0] = 0
        out.append((i / rate, float(np.argmax(spectrum) * rate / win), rms))
    return out


async def test_caller_and_agent_on_their_own_channels(rec_env: MediaEnv, running: Running) -> None:
    env, r = rec_env, running
    proc = await caller(env)
    uuid = (await wait_for(r.notices, "answered")).call.uuid
    started = await wait_recording(r.notices, "recording")
    path = Path(started.data["path"])
    assert path.name == f"{uuid}.wav" and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    session = await r.agent.wait_session()
    await wait_for(r.notices, "fork_connected")
    client = r.controller.nodes["fs1"].client
    assert (await client.api(f"uuid_getvar {uuid} sipagent_recording_path")).strip() == str(path)
    await asyncio.sleep(0.5)
    await r.agent.send_audio(tone(1000, 8000, 1500))  # the agent speaks
    await asyncio.sleep(2.0)
    await r.controller.record(uuid, "pause")  # e.g. a card number is read
    await r.agent.send_audio(tone(1000, 8000, 1000))
    await asyncio.sleep(1.5)
    await r.controller.record(uuid, "resume")
    await asyncio.sleep(0.5)
    await r.agent.send_hangup("done")
    await wait_for(r.notices, "ended")
    assert await asyncio.wait_for(proc.wait(), 15) == 0
    await r.agent.wait_for(lambda: session.closed.is_set())
    await asyncio.sleep(0.2)  # the 0600 of RECORD_STOP runs in a thread
    record: dict[str, Any] = r.controller.ended[uuid]
    rec = record["recording"]
    mode = stat.S_IMODE(path.stat().st_mode)
    print(f"\n[{env.mode}] recording: {rec}; file mode {mode:04o}")
    assert mode == 0o600
    assert rec["state"] == "stopped" and rec["path"] == str(path) and rec["announced"] is True
    assert rec["size_bytes"] == path.stat().st_size and rec["duration_seconds"] > 4
    assert rec["completion_cause"] and len(rec["pauses"]) == 1
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2 and w.getframerate() == 8000
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2).astype(np.float64)
    assert abs(len(data) / 8000 - rec["duration_seconds"]) < 0.05
    left, right = spans(data[:, 0], 8000), spans(data[:, 1], 8000)
    caller_on = [f for _, f, rms in left if rms > 300]
    agent_on = [f for _, f, rms in right if rms > 300]
    print(f"[{env.mode}] channel 0: {len(caller_on)} loud windows, median {np.median(caller_on):.0f} Hz; "
          f"channel 1: {len(agent_on)} loud windows, median {np.median(agent_on):.0f} Hz")  # fmt: skip
    assert abs(np.median(caller_on) - 440) < 15  # the caller on channel 0
    assert len(agent_on) >= 10 and abs(np.median(agent_on) - 1000) < 15  # the agent on channel 1
    assert all(abs(f - 1000) < 50 for f in agent_on)  # no 440 Hz leaking into the agent's channel
    # the pause: silence in both channels while the agent's second tone played (it is not in the file)
    paused_at = rec["pauses"][0][0] - rec["started_at"]
    quiet = [(t, a, b) for (t, _, a), (_, _, b) in zip(left, right, strict=True) if 0.3 < t - paused_at < 1.2]
    assert quiet and all(a < 50 and b < 50 for _, a, b in quiet), quiet


@pytest.mark.parametrize("running", [{"policy": "on_demand", "format": "flac", "announcement": None}], indirect=True)
async def test_on_demand_flac_and_ogg(rec_env: MediaEnv, running: Running) -> None:
    env, r = rec_env, running
    if env.mode != "file":
        pytest.skip("the formats do not depend on the playback mode: checked once")
    if shutil.which("soxi") is None:
        pytest.skip("needs soxi (Debian package sox)")
    proc = await caller(env)
    uuid = (await wait_for(r.notices, "answered")).call.uuid
    await r.agent.wait_session()
    await wait_for(r.notices, "fork_connected")
    assert not any(n.kind == "recording" for n in r.notices)  # on demand: nothing yet
    await r.controller.record(uuid, "start")
    started = await wait_recording(r.notices, "recording")
    await r.agent.send_audio(tone(1000, 8000, 1000))
    await asyncio.sleep(1.5)
    await r.controller.record(uuid, "stop")
    stopped = await wait_recording(r.notices, "stopped")
    path = Path(stopped.data["path"])
    assert path == Path(started.data["path"]) and path.suffix == ".flac"
    info = subprocess.run(["soxi", str(path)], capture_output=True, text=True, check=True).stdout
    print(f"\n{info}")
    assert "Channels       : 2" in info and "FLAC" in info
    await r.agent.send_hangup("done")
    await wait_for(r.notices, "ended")
    assert await asyncio.wait_for(proc.wait(), 15) == 0
    # Ogg/Vorbis: the same call flow on the same switch, another controller setting; local_files off, so the file
    # keeps the mode FreeSWITCH gave it (its umask: ours, it was started by this process)
    r.controller.deployment = _with_recording(
        r.controller.deployment, policy="on_demand", format="ogg", local_files=False
    )
    r.controller.tracker.policy.recording = r.controller.deployment.orchestrator.recording
    r.controller.recording_files = RecordingFiles(r.controller.deployment.orchestrator.recording)
    r.notices.clear()
    proc = await caller(env)
    uuid = (await wait_for(r.notices, "answered")).call.uuid
    await wait_for(r.notices, "fork_connected")
    await r.controller.record(uuid, "start")
    await wait_recording(r.notices, "recording")
    await asyncio.sleep(1.5)
    await r.controller.record(uuid, "stop")
    stopped = await wait_recording(r.notices, "stopped")
    ogg = Path(stopped.data["path"])
    info = subprocess.run(["soxi", str(ogg)], capture_output=True, text=True, check=True).stdout
    print(info)
    assert ogg.suffix == ".ogg" and "Channels       : 2" in info and "Vorbis" in info
    umask = os.umask(0)
    os.umask(umask)
    created = stat.S_IMODE(ogg.stat().st_mode)
    print(f"FreeSWITCH created the file {created:04o} (umask {umask:03o})")
    assert created == 0o666 & ~umask
    # MP3: mod_sndfile knows libsndfile's MPEG format but cannot write it (a PCM subtype is forced)
    probe = ogg.parent / "probe.mp3"
    with pytest.raises(CommandError) as refused:
        await r.controller.nodes["fs1"].client.api(f"uuid_record {uuid} start {probe}")
    print(f"mp3: {refused.value}")
    wav_size = 2 * 2 * 8000 * 1.5
    print(f"sizes: flac {path.stat().st_size} B, ogg {ogg.stat().st_size} B (WAV would be about {wav_size:.0f} B)")
    await r.agent.send_hangup("done")
    await wait_for(r.notices, "ended")
    assert await asyncio.wait_for(proc.wait(), 15) == 0
