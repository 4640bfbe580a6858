"""The media port under a flood, with the bridge in a worker process limited to 256 file descriptors.

Main process (this test): the simulated FreeSWITCH (its mod_audio_fork is a real WebSocket client), the real
call controller, a raw agent, and 300+ hostile clients — idle sockets, slowloris headers, garbage, forged
tokens, oversized heads, and upgrades with a good token that never send metadata — most reconnecting as soon
as they are closed. Worker process: the media bridge (``orchestrator.media.workers``, uvloop or asyncio),
``RLIMIT_NOFILE`` 256, claiming tokens from the controller over the control link. A real inbound call arrives
during the flood: its fork must connect and carry audio both ways, and every hostile connection must be closed
by the timeouts and caps. Figures are printed (``pytest -s``)."""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from audio_tools import dominant_frequency, tone
from fake_agents import FakeRawAgent
from flood_tools import NOFILE, Flood, FloodProcess, limited_worker
from simulator import SimulatedFreeSwitch

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Call, Notice
from orchestrator.config import check_text
from orchestrator.esl.client import Backoff
from orchestrator.media import fork, workers
from orchestrator.media.admission import derive_limits

PASSWORD = "sim-pass"
TIMEOUT = 1.0  # handshake and metadata timeouts of the worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Env:
    sim: SimulatedFreeSwitch
    controller: Controller
    pool: workers.WorkerPool
    agent: FakeRawAgent
    port: int
    notices: list[Notice]
    hog: str  # written: the worker's hog thread takes every free descriptor
    release: str  # written: … and gives them back
    log: Path

    def worker_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    async def until(self, condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"{what} not within {timeout} s; worker log:\n{self.worker_log()}"
            await asyncio.sleep(0.01)

    async def fresh_worker_errors(self) -> Counter[str]:
        """The worker's error counters from a report it sends after this call (it reports once a second)."""
        self.pool.exposition.pop(0, None)
        await self.until(lambda: 0 in self.pool.exposition, "the worker's next metrics report", 5.0)
        return self.worker_errors()

    async def wait(self, kind: str, uuid: str, timeout: float = 10.0) -> Notice:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.notices:
                if n.kind == kind and n.call.uuid == uuid:
                    return n
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} for {uuid}: {[(n.kind, n.data) for n in self.notices]}")

    def worker_errors(self) -> Counter[str]:
        out: Counter[str] = Counter()
        for line in self.pool.exposition.get(0, "").splitlines():
            if line.startswith("sipagent_media_errors_total{"):
                kind = line.split('kind="', 1)[1].split('"', 1)[0]
                out[kind] = int(float(line.rsplit(" ", 1)[1]))
        return out


@pytest.fixture()
async def env(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    loop_kind, media_extra = request.param
    trigger, release = str(tmp_path / "hog"), str(tmp_path / "release")
    log = tmp_path / "worker.log"
    worker = functools.partial(
        limited_worker, nofile=NOFILE, loop=loop_kind, trigger=trigger, release=release, log=str(log)
    )
    monkeypatch.setattr(workers, "worker_main", worker)
    agent = await FakeRawAgent(rate=8000).start()
    sim = SimulatedFreeSwitch(PASSWORD)
    sim.fork_websocket = True
    await sim.start()
    port = free_port()
    text = f"""
freeswitch: {{bind_ip: 127.0.0.1, event_socket: {{password: {PASSWORD}}}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
numbers: [{{number: "+15550000001", trunk: carrier, agent: bot}}]
agents: [{{name: bot, protocol: raw, url: '{agent.url}', audio_format: pcm_8000}}]
orchestrator:
  media_url: ws://127.0.0.1:{port}
  media: {{port: {port}, handshake_timeout_seconds: {TIMEOUT}, metadata_timeout_seconds: {TIMEOUT}{media_extra}}}
  records: null
  nodes: [{{name: fs1, port: {sim.port}}}]
"""
    result = check_text(text, "d.yaml", {}, tmp_path)
    assert result.errors == [] and result.deployment is not None, [str(d) for d in result.errors]
    controller = Controller(result.deployment, tmp_path, tokens=fork.Tokens(b"flood"), backoff=Backoff(0.02, 0.1))
    pool = workers.WorkerPool(result.deployment, controller, controller.metrics, controller.tokens.secret, 1)
    notices: list[Notice] = []
    controller.add_listener(pool.on_notice)
    controller.add_listener(notices.append)
    await pool.start()
    await controller.start()
    await asyncio.wait_for(controller.nodes["fs1"].synced.wait(), 5)
    try:
        yield Env(sim, controller, pool, agent, port, notices, trigger, release, log)
    finally:
        await controller.stop()
        await pool.stop()
        await sim.stop()
        await agent.stop()


def waiting_calls(controller: Controller, n: int) -> list[str]:
    """Calls the controller believes are waiting for their forks, whose forks will never send metadata."""
    urls = []
    for i in range(n):
        uuid = f"5171e000-0000-4000-8000-{i:012d}"
        call = Call(uuid, "fs1", "inbound", agent="bot", state="answered", fork="starting", fork_nonce=fork.new_nonce())
        controller.tracker.calls[uuid] = call
        urls.append(f"/calls/{uuid}?token={controller.tokens.token(uuid, call.fork_nonce)}")
    return urls


async def real_call(e: Env) -> tuple[str, float]:
    """An inbound call; returns its uuid and how long its fork took to connect."""
    t0 = time.monotonic()
    ch = await e.sim.inbound_call(
        destination="+15550000001",
        caller_id="+15551230000",
        context="trunk-carrier",
        variables={"sipagent_trunk": "carrier", "sipagent_agent": "bot", "sipagent_number": "+15550000001"},
        park_timeout="10:NORMAL_TEMPORARY_FAILURE",
    )
    e.sim.set_caller_audio(ch.uuid, tone(440, 8000, 8000))
    await e.wait("fork_connected", ch.uuid)
    return ch.uuid, time.monotonic() - t0


async def audio_both_ways(e: Env, uuid: str) -> None:
    session = await e.agent.wait_session(timeout=5)
    heard = await e.agent.wait_audio(8000 * 2, timeout=8, session=session)  # a second of the caller
    assert abs(dominant_frequency(heard[1600:16000], 8000) - 440) < 10
    await e.agent.send_audio(tone(1000, 8000, 1000), session=session)
    client = e.sim.fork_client(uuid)
    assert client is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pcm = b"".join(data for _, data in client.heard_frames[-50:])
        if len(pcm) > 1600 and abs(dominant_frequency(pcm[-1600:], 8000) - 1000) < 20:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the caller never heard the agent")


def report(title: str, flood: Flood, e: Env, extra: str = "") -> None:
    print(
        f"\n[{title}] hostile connections made: {sum(flood.made.values())} {dict(flood.made)}; held at once (client "
        f"view) at most {flood.peak}; answers {dict(sorted(flood.answers.items()))}; closed without an answer "
        f"{flood.unanswered}; connect errors {flood.connect_errors}; longest held per kind "
        f"{ {k: round(v, 2) for k, v in flood.held.items()} }; worker counters {dict(e.worker_errors())} {extra}"
    )


# -- the tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("env", [("uvloop", ""), ("asyncio", "")], indirect=True, ids=["uvloop", "asyncio"])
async def test_real_call_is_served_during_a_flood_under_256_descriptors(env: Env) -> None:
    e = env
    limits = derive_limits(max_calls=1000, nofile=NOFILE, in_use=19)  # what the worker computes
    # the flood runs until the call below is served: all of that happens while it goes on
    hostile = await FloodProcess(e.port, 60.0, waiting_calls(e.controller, 30)).go()
    await asyncio.sleep(0.7)  # the flood is on
    uuid, connect_s = await real_call(e)
    await audio_both_ways(e, uuid)
    hostile.stop()
    flood = await hostile.result()
    assert flood.stopped  # (not over by itself)
    cleared = flood.last_close - flood.until
    errors = await e.fresh_worker_errors()
    report(
        "flood",
        flood,
        e,
        f"; real fork connected {connect_s:.2f} s after the call; hostile connections cleared {cleared:.2f} s after "
        f"the flood stopped; caps at {NOFILE} fds: {limits.descriptors} descriptors for the port, "
        f"{limits.max_pending} in the handshake",
    )
    assert sum(flood.made.values()) >= 300 and flood.peak >= 300 and flood.connect_errors == 0
    # every hostile connection was answered and closed by the bridge, in bounded time
    assert flood.unanswered == 0, flood.answers  # none dropped silently: the port never ran out of descriptors
    assert {a for (k, a) in flood.answers if k in ("idle", "slowloris")} <= {"408", "503"}
    assert {a for (k, a) in flood.answers if k == "garbage"} <= {"400", "503"}
    assert {a for (k, a) in flood.answers if k == "forged"} <= {"403", "503"}
    assert {a for (k, a) in flood.answers if k == "oversized"} <= {"431", "503"}
    assert {a for (k, a) in flood.answers if k == "silent"} <= {"ws1008", "503"}
    assert max(flood.held.values()) < 2 * TIMEOUT + 1.0
    assert cleared < TIMEOUT + 1.0
    assert errors["fork_handshake_timeout"] + errors["fork_evicted"] > 0 and errors["fork_internal"] == 0
    assert errors["accept_failed"] == 0
    assert e.controller.call(uuid) is not None and e.controller.call(uuid).fork == "connected"  # still up


@pytest.mark.parametrize("env", [("uvloop", ""), ("asyncio", "")], indirect=True, ids=["uvloop", "asyncio"])
async def test_port_recovers_once_descriptors_free_up_after_emfile(env: Env) -> None:
    """Something else in the worker takes every descriptor: accept() fails with EMFILE (retried every 0.1 s, a
    few lines logged); once they are free again the port comes back and nothing waiting in the backlog is lost."""
    e = env
    hostile = await FloodProcess(e.port, 0.0, [], sustained=False, idle=50).ready()
    Path(e.hog).write_text("hog")
    await e.until(lambda: "HOGGED" in e.worker_log(), "the hog")
    t0 = time.monotonic()
    await hostile.go()  # they arrive while nothing is free
    await e.until(lambda: "accept() failed" in e.worker_log(), "an accept() failure")
    await asyncio.sleep(1.0)  # about ten more failed retries
    Path(e.release).write_text("")
    flood = await hostile.result()
    waited = time.monotonic() - t0
    assert "RELEASED" in e.worker_log()
    errors = await e.fresh_worker_errors()
    report("EMFILE", flood, e, f"; the 50 connections were answered within {waited:.2f} s")
    assert flood.answers == Counter({("idle", "408"): 50})  # none dropped: they waited in the backlog
    assert errors["accept_failed"] >= 1
    uuid, connect_s = await real_call(e)  # and a call's fork connects as usual
    await audio_both_ways(e, uuid)
    logs = e.worker_log()
    print(f"real fork connected {connect_s:.2f} s after the call")
    assert "Traceback" not in logs and "socket.accept() out of system resource" not in logs
    assert 1 <= logs.count("accept() failed") <= 5  # one line, then counted quietly
