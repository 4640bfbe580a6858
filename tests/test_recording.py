"""Call recording: policy, commands, the controller against the simulator (uuid_record, RECORD_START/STOP), the API,
the agents' record tool, file modes and retention."""

from __future__ import annotations

import asyncio
import json
import math
import os
import stat
import wave
from array import array
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fake_agents import FakeElevenLabs, FakeRawAgent
from simulator import SimulatedFreeSwitch
from test_bridge import Harness as BridgeHarness
from test_bridge import wait_until
from test_controller import API_TOKEN, PASSWORD, Harness, make_controller

from orchestrator.agents.base import CallInfo, RecordAction
from orchestrator.agents.elevenlabs import ElevenLabsProtocol
from orchestrator.agents.raw import RawProtocol
from orchestrator.api.http import create_app
from orchestrator.calls import recording as rec
from orchestrator.calls.recording_files import RecordingFiles
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_text
from orchestrator.config.model import ElevenLabsAgent, RawAgent, RecordingSettings
from orchestrator.esl import commands

CID = "c0ffee00-0000-4000-8000-000000000001"


def deployment(port: int, directory: Path, *, policy: str = "always", extra: str = "", number_policy: str = "") -> str:
    number_recording = f", recording: {number_policy}" if number_policy else ""
    return f"""
freeswitch:
  bind_ip: 127.0.0.1
  event_socket: {{password: {PASSWORD}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
    outbound: {{address: sbc.carrier.example, caller_id: "+15550009999"}}
    recording: {policy}
numbers:
  - {{number: "+15550000001", trunk: carrier, agent: support{number_recording}}}
agents:
  - {{name: support, protocol: raw, url: "ws://127.0.0.1:9000/a"}}
orchestrator:
  media_url: ws://127.0.0.1:8090
  records: calls.jsonl
  api: {{token: {API_TOKEN}}}
  nodes: [{{name: fs1, port: {port}}}]
  recording:
    directory: {directory}
{extra}"""


async def harness(tmp: Path, **kw: Any) -> tuple[SimulatedFreeSwitch, Harness]:
    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    notices: list[Notice] = []
    controller = await make_controller(deployment(sim.port, tmp / "rec", **kw), tmp, notices)
    return sim, Harness([sim], controller, notices, tmp)


@pytest.fixture()
async def always(tmp_path: Path) -> AsyncIterator[Harness]:
    sim, h = await harness(tmp_path)
    try:
        yield h
    finally:
        await h.controller.stop()
        await sim.stop()


@pytest.fixture()
async def on_demand(tmp_path: Path) -> AsyncIterator[Harness]:
    sim, h = await harness(tmp_path, policy="on_demand")
    try:
        yield h
    finally:
        await h.controller.stop()
        await sim.stop()


def tone(freq: float, seconds: float, rate: int = 8000, level: float = 8000) -> bytes:
    return array(
        "h", (int(level * math.sin(2 * math.pi * freq * i / rate)) for i in range(int(seconds * rate)))
    ).tobytes()


def dominant(samples: np.ndarray, rate: int) -> float:
    """The strongest frequency of ``samples`` (numpy FFT), 0 for silence."""
    if not len(samples) or np.abs(samples).max() < 100:
        return 0.0
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


def channels(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with wave.open(str(path)) as w:
        assert w.getnchannels() == 2 and w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(float)
        return data[0::2], data[1::2], w.getframerate()


async def records(h: Harness) -> list[dict[str, Any]]:
    await h.controller.stop()
    return [json.loads(line) for line in (h.tmp / "calls.jsonl").read_text().splitlines()]


# -- policy, commands, checks (no sockets) ----------------------------------------------------------------


def _deployment(text: str, tmp: Path) -> Any:
    result = check_text(text, "d.yaml", {}, tmp)
    assert result.errors == [], [str(d) for d in result.errors]
    return result.deployment


def test_the_most_specific_policy_wins(tmp_path: Path) -> None:
    text = deployment(1, tmp_path, policy="on_demand", number_policy="always")
    text = text.replace('url: "ws://127.0.0.1:9000/a"}', 'url: "ws://127.0.0.1:9000/a", recording: "off"}')
    d = _deployment(text, tmp_path)
    inbound = {"direction": "inbound", "trunk": "carrier", "agent": "support"}
    assert rec.policy_for(d, number="+15550000001", **inbound) == "always"  # the number's
    assert rec.policy_for(d, number="+15550000777", **inbound) == "off"  # the agent's, over the trunk's
    outbound = {"direction": "outbound", "trunk": "carrier", "number": "+15550000001"}
    assert rec.policy_for(d, agent="support", **outbound) == "off"  # numbers are for inbound calls
    assert rec.policy_for(d, agent="other", **outbound) == "on_demand"  # the trunk's
    d2 = _deployment(deployment(1, tmp_path, policy="off").replace("    recording: off\n", ""), tmp_path)
    assert rec.policy_for(d2, agent="x", trunk="y", number="", direction="outbound") == "off"  # the default


@pytest.mark.parametrize(
    ("policy", "state", "action", "code"),
    [
        ("off", "none", "start", "recording_off"),
        ("on_demand", "recording", "start", "already_recording"),
        ("on_demand", "announcing", "start", "already_recording"),
        ("on_demand", "stopped", "start", "recording_stopped"),
        ("always", "recording", "stop", "recording_required"),
        ("on_demand", "none", "stop", "not_recording"),
        ("on_demand", "paused", "pause", "not_recording"),
        ("on_demand", "recording", "resume", "not_paused"),
        ("on_demand", "recording", "rewind", "invalid_action"),
    ],
)
def test_what_may_be_done_when(policy: str, state: str, action: str, code: str) -> None:
    with pytest.raises(rec.Refusal) as exc:
        rec.check(rec.Recording(policy, rec.RecState(state)), action)
    assert exc.value.code == code
    for ok_policy, ok_state, ok_action in [
        ("on_demand", "none", "start"),
        ("on_demand", "failed", "start"),
        ("on_demand", "paused", "stop"),
        ("always", "recording", "pause"),
        ("always", "paused", "resume"),
    ]:
        rec.check(rec.Recording(ok_policy, rec.RecState(ok_state)), ok_action)


def test_commands_escape_or_refuse() -> None:
    assert commands.uuid_record(CID, "start", "/r/a.wav", {"RECORD_STEREO": "true"}) == (
        f"uuid_record {CID} start /r/a.wav 0 {{RECORD_STEREO=true}}"
    )
    assert commands.uuid_record(CID, "mask", "/r/a.wav") == f"uuid_record {CID} mask /r/a.wav"
    assert commands.uuid_record(CID, "stop", "all") == f"uuid_record {CID} stop all"
    for bad in ["/r/a b.wav", "/r/../etc/x.wav", "relative.wav", "/r/a.wav\n", "all"]:
        with pytest.raises(commands.Refused):
            commands.uuid_record(CID, "start", bad)
    with pytest.raises(commands.Refused):
        commands.uuid_record(CID, "start", "/r/a.wav", {"RECORD_STEREO": "true,x=y"})
    with pytest.raises(commands.Refused):
        commands.uuid_record(CID, "erase", "/r/a.wav")
    with pytest.raises(commands.Refused):
        commands.uuid_record(f"{CID} x", "start", "/r/a.wav")
    assert commands.uuid_broadcast_prompt(CID, "tone_stream://%(500,0,800)") == (
        f"uuid_broadcast {CID} tone_stream://%(500,0,800) aleg"
    )
    for bad in ["system::rm", "/s/a b.wav", "/s/x$y.wav", "/s/../x.wav"]:
        with pytest.raises(commands.Refused):
            commands.uuid_broadcast_prompt(CID, bad)


def _validate(tmp: Path, recording: str, trunk_policy: str = "on_demand") -> list[str]:
    text = deployment(1, tmp, policy=trunk_policy).replace(f"  recording:\n    directory: {tmp}\n", recording)
    result = check_text(text, "d.yaml", {}, tmp)
    return [str(d) for d in result.diagnostics if "secret written in the file" not in str(d)]


def test_validation_names_the_problem(tmp_path: Path) -> None:
    (msg,) = _validate(tmp_path, "")
    assert "trunks[0].recording" in msg and "needs orchestrator.recording.directory" in msg
    (msg,) = _validate(tmp_path, "  recording: {directory: rec/x}\n")
    assert "orchestrator.recording.directory" in msg and "absolute directory" in msg
    (msg,) = _validate(tmp_path, "  recording: {directory: /tmp/a b}\n")
    assert "absolute directory" in msg
    (msg,) = _validate(tmp_path, f"  recording: {{directory: {tmp_path}, format: mp3}}\n")
    assert "orchestrator.recording.format" in msg and "wav" in msg
    (msg,) = _validate(tmp_path, f"  recording: {{directory: {tmp_path / 'no/such'}}}\n")
    assert "neither" in msg and "parent" in msg
    missing = tmp_path / "missing.wav"
    (msg,) = _validate(tmp_path, f"  recording: {{directory: {tmp_path}, announcement: {missing}}}\n")
    assert "orchestrator.recording.announcement" in msg and "cannot be read" in msg
    (msg,) = _validate(tmp_path, f"  recording: {{directory: {tmp_path}, announcement: 'a::b'}}\n")
    assert "'::'" in msg
    (tmp_path / "file").write_text("x")
    (msg,) = _validate(tmp_path, f"  recording: {{directory: {tmp_path / 'file'}}}\n")
    assert "is not a directory" in msg
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    open_dir.chmod(0o755)
    (msg,) = _validate(tmp_path, f"  recording: {{directory: {open_dir}}}\n")
    assert "warning" in msg and "chmod 700" in msg
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (tmp_path / "hello.wav").write_bytes(b"RIFF")
    ok = f"  recording: {{directory: {private}, announcement: {tmp_path / 'hello.wav'}, retention_days: 30}}\n"
    assert _validate(tmp_path, ok) == []
    assert _validate(tmp_path, "  recording: {directory: /nowhere/at/all, local_files: false}\n") == []
    assert _validate(tmp_path, "", trunk_policy="off") == []


# -- files: modes and retention ---------------------------------------------------------------------------


def test_directory_0700_files_0600_and_no_symlinks(tmp_path: Path) -> None:
    files = RecordingFiles(RecordingSettings(directory=str(tmp_path / "rec")))
    files.prepare()
    assert stat.S_IMODE((tmp_path / "rec").stat().st_mode) == 0o700
    path = tmp_path / "rec" / f"{CID}.wav"
    path.write_bytes(b"x" * 44)
    path.chmod(0o644)
    assert files.secure(str(path)) == 44
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (tmp_path / "secret").write_text("s")
    (tmp_path / "secret").chmod(0o644)
    link = tmp_path / "rec" / "link.wav"
    link.symlink_to(tmp_path / "secret")
    assert files.secure(str(link)) is None
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o644
    assert files.secure(str(tmp_path / "secret")) is None  # outside the directory
    remote = RecordingFiles(RecordingSettings(directory=str(tmp_path / "rec"), local_files=False))
    assert remote.secure(str(path)) is None and remote.sweep() == []


def test_retention_deletes_only_old_recordings(tmp_path: Path) -> None:
    now = 1_800_000_000.0
    files = RecordingFiles(RecordingSettings(directory=str(tmp_path), retention_days=7), clock=lambda: now)
    ages = {f"{CID}.wav": 8, "0badc0de-0000-4000-8000-000000000002.flac": 7, "fresh.ogg": 6, "notes.txt": 30}
    for name, days in ages.items():
        (tmp_path / name).write_bytes(b"x")
        os.utime(tmp_path / name, (now - days * 86400, now - days * 86400))
    (tmp_path / "old-dir.wav").mkdir()
    os.utime(tmp_path / "old-dir.wav", (0, 0))
    (tmp_path / "old-link.wav").symlink_to(tmp_path / "notes.txt")
    assert files.sweep() == ["0badc0de-0000-4000-8000-000000000002.flac", f"{CID}.wav"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.ogg", "notes.txt", "old-dir.wav", "old-link.wav"]
    assert RecordingFiles(RecordingSettings(directory=str(tmp_path))).sweep() == []  # no retention: keep all
    assert rec.expired([("x.wav", 0.0), ("../x.wav", 0.0), ("a.mp3", 0.0)], now, 1) == ["x.wav"]


async def test_retention_runs_in_the_background(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    files = RecordingFiles(
        RecordingSettings(directory=str(tmp_path), retention_days=1), clock=lambda: now[0], interval=0.01
    )
    (tmp_path / f"{CID}.wav").write_bytes(b"x")
    os.utime(tmp_path / f"{CID}.wav", (now[0], now[0]))
    files.start()
    try:
        await asyncio.sleep(0.05)
        assert (tmp_path / f"{CID}.wav").exists()
        now[0] += 86400  # a day later, by the injected clock
        await wait_until(lambda: not (tmp_path / f"{CID}.wav").exists())
        assert files.deleted == 1
    finally:
        await files.stop()


# -- the controller against the simulator ------------------------------------------------------------------


async def test_always_records_stereo_from_the_answer_after_the_fork(always: Harness) -> None:
    h = always
    uuid = await h.inbound()
    h.sim.set_caller_audio(uuid, tone(440, 1.0), loop=True)
    started = await h.wait("recording", uuid, state="recording")
    path = h.tmp / "rec" / f"{uuid}.wav"
    assert started.data["path"] == str(path)
    sent = [c for c in h.sim.received_commands if uuid in c]
    fork_at = next(i for i, c in enumerate(sent) if c.startswith("api uuid_audio_fork"))
    record_at = next(i for i, c in enumerate(sent) if c.startswith("api uuid_record"))
    assert fork_at < record_at  # the recording hears what the fork plays
    assert sent[record_at] == f"api uuid_record {uuid} start {path} 0 {{RECORD_STEREO=true,RECORD_MIN_SEC=0}}"
    assert stat.S_IMODE((h.tmp / "rec").stat().st_mode) == 0o700
    await wait_until(lambda: stat.S_IMODE(path.stat().st_mode) == 0o600)
    # something the caller hears (as a file playback would play it) lands on the other channel
    (h.tmp / "agent.r8").write_bytes(tone(1000, 0.6))
    await h.sim.run_api(f"uuid_broadcast {uuid} {h.tmp / 'agent.r8'} aleg")
    await asyncio.sleep(1.0)
    with pytest.raises(Exception, match="always recorded"):
        await h.controller.record(uuid, "stop")
    await h.sim.remote_hangup(uuid, "NORMAL_CLEARING", 200)
    await h.wait("ended", uuid)
    (record,) = await records(h)
    r = record["recording"]
    assert r["state"] == "stopped" and r["path"] == str(path) and r["policy"] == "always"
    assert r["completion_cause"] == "success-silence"
    assert r["size_bytes"] == path.stat().st_size and r["duration_seconds"] > 0.9
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    left, right, rate = channels(path)
    assert abs(dominant(left, rate) - 440) < 10
    assert abs(dominant(right, rate) - 1000) < 10
    assert abs(len(left) / rate - r["duration_seconds"]) < 0.05


async def test_outbound_calls_take_the_trunk_policy(always: Harness) -> None:
    h = always
    h.sim.set_originate_outcome("+15557654321", "answer")
    call = await h.controller.originate(trunk="carrier", to="+15557654321", agent="support")
    started = await h.wait("recording", call.uuid, state="recording")
    assert started.data["path"] == str(h.tmp / "rec" / f"{call.uuid}.wav")
    await h.controller.hangup(call.uuid, by="api")
    await h.wait("recording", call.uuid, state="stopped")
    (record,) = await records(h)
    assert record["direction"] == "outbound" and record["recording"]["policy"] == "always"


async def test_on_demand_through_the_api(on_demand: Harness) -> None:
    h = on_demand
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    assert not any(c.startswith("api uuid_record") for c in h.sim.received_commands)
    transport = httpx.ASGITransport(app=create_app(h.controller, API_TOKEN))
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api", headers=headers) as api:
        path = str(h.tmp / "rec" / f"{uuid}.wav")
        r = await api.post(f"/v1/calls/{uuid}/recording/stop")
        assert r.status_code == 409 and r.json()["error"]["code"] == "not_recording"
        r = await api.post(f"/v1/calls/{uuid}/recording/start")
        assert r.status_code == 200 and r.json()["recording"]["path"] == path
        await h.wait("recording", uuid, state="recording")
        r = await api.post(f"/v1/calls/{uuid}/recording/start")
        assert r.status_code == 409 and r.json()["error"]["code"] == "already_recording"
        r = await api.post(f"/v1/calls/{uuid}/recording/pause")
        assert r.status_code == 200 and r.json()["recording"]["state"] == "paused"
        assert f"api uuid_record {uuid} mask {path}" in h.sim.received_commands
        r = await api.post(f"/v1/calls/{uuid}/recording/resume")
        assert r.json()["recording"]["state"] == "recording"
        assert f"api uuid_record {uuid} unmask {path}" in h.sim.received_commands
        r = await api.get(f"/v1/calls/{uuid}")
        assert r.json()["recording"]["state"] == "recording" and len(r.json()["recording"]["pauses"]) == 1
        await asyncio.sleep(0.2)
        r = await api.post(f"/v1/calls/{uuid}/recording/stop")
        assert r.status_code == 200
        await h.wait("recording", uuid, state="stopped")
        r = await api.post(f"/v1/calls/{uuid}/recording/start")
        assert r.status_code == 409 and r.json()["error"]["code"] == "recording_stopped"
        r = await api.post(f"/v1/calls/{uuid}/recording/rewind")
        assert r.status_code == 400
        r = await api.post("/v1/calls/0badc0de-0000-4000-8000-000000000009/recording/start")
        assert r.status_code == 404
        r = await api.post(f"/v1/calls/{uuid}/recording/start", headers={"Authorization": "Bearer wrong"})
        assert r.status_code == 401
    await h.sim.remote_hangup(uuid, "NORMAL_CLEARING", 200)
    await h.wait("ended", uuid)
    (record,) = await records(h)
    r = record["recording"]
    assert r["state"] == "stopped" and r["completion_cause"] == "success-maxtime"
    (pause,) = r["pauses"]
    assert pause[0] <= pause[1] and r["size_bytes"] > 44


async def test_silence_and_cut_pauses(tmp_path: Path) -> None:
    for mode, verb in (("silence", "mask"), ("cut", "pause")):
        extra = f"    pause_mode: {mode}\n"
        (tmp_path / mode).mkdir()
        sim, h = await harness(tmp_path / mode, policy="on_demand", extra=extra)
        try:
            uuid = await h.inbound()
            h.sim.set_caller_audio(uuid, tone(440, 1.0), loop=True)
            await h.wait("answered", uuid)
            await h.controller.record(uuid, "start")
            await h.wait("recording", uuid, state="recording")
            await asyncio.sleep(0.4)
            await h.controller.record(uuid, "pause")
            assert any(c.startswith(f"api uuid_record {uuid} {verb} ") for c in h.sim.received_commands)
            await asyncio.sleep(0.6)
            await h.controller.record(uuid, "resume")
            await asyncio.sleep(0.4)
            await h.controller.record(uuid, "stop")
            stopped = await h.wait("recording", uuid, state="stopped")
            left, _, rate = channels(Path(stopped.data["path"]))
            seconds = len(left) / rate
            quiet = float(np.mean(np.abs(left) < 50))
            if mode == "silence":
                assert seconds > 1.3 and quiet > 0.3  # the pause is in the file, as silence
            else:
                assert seconds < 1.1 and quiet < 0.1  # the pause is left out
        finally:
            await h.controller.stop()
            await sim.stop()


async def test_announcement_plays_before_the_recording_and_the_agent(tmp_path: Path) -> None:
    prompt = tmp_path / "announce.r8"
    prompt.write_bytes(tone(600, 0.3))
    sim, h = await harness(tmp_path, extra=f"    announcement: {prompt}\n")
    try:
        uuid = await h.inbound()
        await h.wait("answered", uuid)
        await h.wait("recording", uuid, state="recording")
        sent = [c for c in h.sim.received_commands if uuid in c]
        broadcast = sent.index(f"api uuid_broadcast {uuid} {prompt} aleg")
        fork = next(i for i, c in enumerate(sent) if c.startswith("api uuid_audio_fork"))
        record = next(i for i, c in enumerate(sent) if c.startswith("api uuid_record"))
        assert broadcast < fork < record
        assert h.controller.call(uuid).recording.announced  # type: ignore[union-attr]
    finally:
        await h.controller.stop()
        await sim.stop()


async def test_a_missing_announcement_still_records(tmp_path: Path) -> None:
    (tmp_path / "later.r8").write_bytes(b"\0\0")
    sim, h = await harness(tmp_path, extra=f"    announcement: {tmp_path / 'later.r8'}\n")
    (tmp_path / "later.r8").unlink()  # gone after validation: FreeSWITCH reports FILE NOT FOUND
    try:
        uuid = await h.inbound()
        await h.wait("recording", uuid, state="recording")
        await h.wait("fork_connected", uuid)
    finally:
        await h.controller.stop()
        await sim.stop()


async def test_a_refused_start_is_a_failed_recording_and_the_call_goes_on(tmp_path: Path) -> None:
    sim, h = await harness(tmp_path)
    (tmp_path / "rec").rmdir()
    (tmp_path / "rec").write_text("not a directory")  # FreeSWITCH cannot create the file
    try:
        uuid = await h.inbound()
        failed = await h.wait("recording", uuid, state="failed")
        assert "Cannot record session" in failed.data["detail"]
        await h.wait("fork_connected", uuid)
        assert h.controller.call(uuid) is not None
    finally:
        await h.controller.stop()
        await sim.stop()


async def test_a_recording_someone_else_started_is_not_ours(on_demand: Harness) -> None:
    h = on_demand
    uuid = await h.inbound()
    await h.wait("answered", uuid)
    other = h.tmp / "elsewhere.wav"
    assert await h.sim.run_api(f"uuid_record {uuid} start {other}") == "+OK Success\n"
    await asyncio.sleep(0.1)
    assert h.controller.call(uuid).recording.state == "none"  # type: ignore[union-attr]
    await h.sim.remote_hangup(uuid, "NORMAL_CLEARING", 200)
    await h.wait("ended", uuid)
    (record,) = await records(h)
    assert record["recording"] is None and not any(n.kind == "recording" for n in h.notices)


async def test_a_restarted_orchestrator_knows_the_recording(tmp_path: Path) -> None:
    sim, h = await harness(tmp_path)
    try:
        uuid = await h.inbound()
        await h.wait("recording", uuid, state="recording")
        await h.controller.stop()
        notices: list[Notice] = []
        again = await make_controller(deployment(sim.port, tmp_path / "rec"), tmp_path, notices)
        h2 = Harness([sim], again, notices, tmp_path)
        await h2.wait("answered", uuid)
        recording = again.call(uuid).recording  # type: ignore[union-attr]
        assert recording is not None and recording.state == "recording"
        assert sum(c.startswith(f"api uuid_record {uuid} start") for c in sim.received_commands) == 1
        await sim.remote_hangup(uuid, "NORMAL_CLEARING", 200)
        await h2.wait("recording", uuid, state="stopped")
        await again.stop()
    finally:
        await sim.stop()


# -- the simulator, as FreeSWITCH answers (fixture 10 and mod_commands.c) ------------------------------------


async def test_simulator_uuid_record_replies(tmp_path: Path) -> None:
    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    try:
        ch = await sim.inbound_call(destination="+15550000001", caller_id="+15551230000", context="x")
        assert (await sim.run_api("uuid_record")).startswith("-USAGE: <uuid> [start|stop|mask|unmask]")
        assert await sim.run_api(f"uuid_record {ch.uuid} start /x/a.wav") == "-ERR Cannot record session!\n"
        sim.answer(ch)
        path = tmp_path / "r" / "a.wav"
        assert await sim.run_api("uuid_record nope start /x/a.wav") == "-ERR Cannot locate session!\n"
        assert await sim.run_api(f"uuid_record {ch.uuid} start {path} 0 %7BRECORD_STEREO%3Dtrue%7D") == "+OK Success\n"
        assert await sim.run_api(f"uuid_record {ch.uuid} start {path}") == "+OK Success\n"  # already recording
        starts = [e for e in ch.events if e.name == "RECORD_START"]
        assert len(starts) == 1
        headers = dict(starts[0].headers)
        assert headers["Record-File-Path"] == str(path) and headers["Recording-Variable-RECORD_STEREO"] == "true"
        assert headers["Event-Calling-Function"] == "record_callback" and "variable_uuid" in headers
        assert await sim.run_api(f"uuid_record {ch.uuid} mask /x/b.wav") == "-ERR Cannot mask recording session!\n"
        assert await sim.run_api(f"uuid_record {ch.uuid} pause {path}") == "+OK Success\n"
        assert await sim.run_api(f"uuid_record {ch.uuid} resume {path}") == "+OK Success\n"
        assert (await sim.run_api(f"uuid_record {ch.uuid} rewind {path}")).startswith("-USAGE")
        await asyncio.sleep(0.1)
        assert await sim.run_api(f"uuid_record {ch.uuid} stop all") == "+OK Success\n"
        (stop,) = [e for e in ch.events if e.name == "RECORD_STOP"]
        headers = dict(stop.headers)
        assert headers["Record-Completion-Cause"] == "success-maxtime"
        assert int(headers["variable_record_file_size"]) == path.stat().st_size
        assert int(headers["variable_record_ms"]) >= 80
        assert await sim.run_api(f"uuid_record {ch.uuid} stop {path}") == "-ERR Cannot stop record session!\n"
    finally:
        await sim.stop()


# -- the agents' record tool ----------------------------------------------------------------------------


def _info() -> CallInfo:
    return CallInfo(CID, "inbound", "+15551230000", "+15550000001", "support", "carrier", 8000)


def test_elevenlabs_record_tool() -> None:
    agent = ElevenLabsProtocol(_info(), ElevenLabsAgent(name="a", protocol="elevenlabs", agent_id="x"))

    def call(parameters: dict[str, Any]) -> list[Any]:
        body = {"tool_name": "record", "tool_call_id": "t1", "parameters": parameters}
        return agent.receive(json.dumps({"type": "client_tool_call", "client_tool_call": body}))

    assert call({"action": "Pause"}) == [RecordAction("pause", "t1")]
    (refused,) = call({"action": "erase"})
    assert json.loads(refused.message)["is_error"] is True and "start, stop, pause, resume" in refused.message


def test_raw_record_message() -> None:
    agent = RawProtocol(_info(), RawAgent(name="a", protocol="raw", url="ws://127.0.0.1:1/a"))
    assert agent.receive(json.dumps({"type": "record", "action": "start", "id": "r1"})) == [RecordAction("start", "r1")]
    (violation,) = agent.receive(json.dumps({"type": "record", "action": "erase"}))
    assert "not one of" in violation.detail


async def test_the_agent_tool_reaches_the_controller_and_answers() -> None:
    async with (
        FakeElevenLabs() as agent,
        BridgeHarness({"protocol": "elevenlabs", "agent_id": "a", "url": agent.url}) as h,
    ):
        await h.fork()
        await agent.wait_session()
        await agent.send_tool_call("record", {"action": "pause"}, tool_call_id="t1")
        await agent.wait_for(lambda: agent.session.of_type("client_tool_result"))
        assert ("record", CID, "pause") in h.control.calls
        (result,) = agent.session.of_type("client_tool_result")
        assert result["is_error"] is False and "paused" in result["result"]
        h.control.record_error = RuntimeError("recording is off for this call")
        await agent.send_tool_call("record", {"action": "start"}, tool_call_id="t2")
        await agent.wait_for(lambda: len(agent.session.of_type("client_tool_result")) == 2)
        second = agent.session.of_type("client_tool_result")[1]
        assert second["is_error"] is True and "off" in second["result"]
    async with FakeRawAgent() as raw, BridgeHarness({"protocol": "raw", "url": raw.url}) as h:
        await h.fork()
        await raw.wait_session()
        await raw.send_json({"type": "record", "action": "resume", "id": "r1"})
        await raw.wait_for(lambda: raw.session.of_type("result"))
        (result,) = raw.session.of_type("result")
        assert result == {"type": "result", "id": "r1", "ok": True, "detail": "The call recording is resumed."}
