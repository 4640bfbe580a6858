"""The media port under a flood on a real FreeSWITCH: a real call's mod_audio_fork gets through.

The media bridge runs as a worker process limited to 256 file descriptors (as in tests/test_media_flood.py);
310+ hostile clients (idle sockets, slowloris headers, garbage, forged tokens, oversized heads) keep the port
busy from their own process, and 30 upgrades with valid tokens that never send metadata, while sipp calls FreeSWITCH with a 440 Hz tone. The call's fork must connect, the
caller's audio must reach the agent and the agent's reach FreeSWITCH; every hostile connection is answered and
closed by the port's timeouts and caps. Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import test_freeswitch_media as media
from audio_tools import dominant_frequency, tone
from deployments import render_and_start
from fake_agents import FakeRawAgent
from flood_tools import NOFILE, FloodProcess, limited_worker
from switch import suite_env, suite_ports
from test_media_flood import waiting_calls

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_file
from orchestrator.media import workers
from orchestrator.media.fork import Tokens

pytestmark = media.pytestmark
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def flood_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[media.MediaEnv]:
    root = tmp_path_factory.mktemp("fsflood")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("bridge", "agent")
    # file playback: what every mod_audio_fork build does
    doc = media.media_deployment(
        work, ports, playback="file", handshake_timeout_seconds=TIMEOUT, metadata_timeout_seconds=TIMEOUT
    )
    fs = render_and_start(doc, root, work)
    try:
        yield media.MediaEnv(fs, "file", ports, work)
    finally:
        fs.stop()


async def test_a_real_call_is_served_while_the_media_port_is_flooded(
    flood_env: media.MediaEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = flood_env
    log = tmp_path / "worker.log"
    worker = functools.partial(
        limited_worker, nofile=NOFILE, loop="uvloop", trigger=str(tmp_path / "never"), log=str(log)
    )
    monkeypatch.setattr(workers, "worker_main", worker)
    result = check_file(env.work / "deployment.yaml", suite_env())
    assert result.deployment is not None
    notices: list[Notice] = []
    controller = Controller(result.deployment, result.base_dir, tokens=Tokens(b"flood-live"))
    pool = workers.WorkerPool(result.deployment, controller, controller.metrics, controller.tokens.secret, 1)
    controller.add_listener(pool.on_notice)
    controller.add_listener(notices.append)
    async with FakeRawAgent(rate=8000, port=env.ports["agent"]) as agent:
        await pool.start()
        await controller.start()
        try:
            await asyncio.wait_for(controller.nodes["fs1"].synced.wait(), 10)  # resync done: our waiting calls stay
            seconds = 8.0
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            hostile = await FloodProcess(env.ports["bridge"], seconds, waiting_calls(controller, 30)).go()
            await asyncio.sleep(1.0)  # the flood is on
            t_call = time.monotonic()
            proc = await media.caller(env)
            uuid = (await media.wait_for(notices, "fork_connected")).call.uuid
            connect_s = time.monotonic() - t_call
            session = await agent.wait_session(timeout=10)
            heard = await agent.wait_audio(8000 * 2, timeout=10, session=session)  # a second of the caller
            assert abs(dominant_frequency(heard[4000:16000], 8000) - 440) < 15
            await agent.send_audio(tone(1000, 8000, 1500), session=session)  # played to the caller from files
            await asyncio.sleep(2.0)
            assert loop.time() < t0 + seconds + 1.0  # all of that while the flood went on
            flood = await hostile.result()
            await agent.send_hangup("done", session=session)
            deadline = time.monotonic() + 15
            while uuid not in controller.ended and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
            await asyncio.sleep(1.3)  # the worker's last metrics and media summary
            record = controller.ended[uuid]
            print(
                f"\n[flood on FreeSWITCH] hostile connections {sum(flood.made.values())} {dict(flood.made)}, "
                f"at most {flood.peak} at once, answers {dict(sorted(flood.answers.items()))}, unanswered "
                f"{flood.unanswered}; the real fork connected {connect_s:.2f} s after the INVITE; frames "
                f"{record['media']['frames'] if record.get('media') else None}"
            )
            assert sum(flood.made.values()) >= 300 and flood.peak >= 300 and flood.connect_errors == 0
            assert {a for (k, a) in flood.answers if k == "silent"} <= {"ws1008", "503"}  # upgraded, then timed out
            assert flood.unanswered == 0, flood.answers  # every hostile connection got an answer and a close
            assert max(flood.held.values()) < 2 * TIMEOUT + 1.5
            assert record["fork"] == "closed" and record["result"] == "completed"
            assert record["hangup_by"] == "agent"
            frames = record["media"]["frames"]
            assert frames["from_caller"] > 100 and frames["from_agent"] > 0 and frames["to_caller"] > 0
        finally:
            await controller.stop()
            await pool.stop()
    assert "Traceback" not in log.read_text()
