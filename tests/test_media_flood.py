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
import contextlib
import functools
import logging
import multiprocessing as mp
import os
import random
import resource
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from audio_tools import dominant_frequency, tone
from fake_agents import FakeRawAgent
from simulator import SimulatedFreeSwitch

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Call, Notice
from orchestrator.config import check_text
from orchestrator.esl.client import Backoff
from orchestrator.media import fork, workers
from orchestrator.media.admission import derive_limits

PASSWORD = "sim-pass"
NOFILE = 256
TIMEOUT = 1.0  # handshake and metadata timeouts of the worker


def hog(trigger: str, hold: float = 2.0) -> None:
    """Thread: once ``trigger`` exists, take every free descriptor of the process for ``hold`` seconds."""
    while not os.path.exists(trigger):
        time.sleep(0.01)
    held = []
    with contextlib.suppress(OSError):
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    os.write(2, f"HOGGED {len(held)} descriptors\n".encode())
    time.sleep(hold)
    for fd in held:
        os.close(fd)
    os.write(2, b"RELEASED\n")


def limited_worker(
    deployment: Any, secret: bytes, index: int, path: str, *, nofile: int, loop: str, trigger: str, log: str
) -> None:
    """A media worker process under a descriptor limit it cannot raise; its output goes to ``log``."""
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    threading.Thread(target=hog, args=(trigger,), daemon=True).start()
    if loop == "uvloop":
        workers.worker_main(deployment, secret, index, path)
        return
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker{index} %(name)s %(levelname)s %(message)s")
    asyncio.run(workers._worker(deployment, secret, index, path))


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
    hog: str
    log: Path

    def worker_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

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
    trigger = str(tmp_path / "hog")
    log = tmp_path / "worker.log"
    worker = functools.partial(limited_worker, nofile=NOFILE, loop=loop_kind, trigger=trigger, log=str(log))
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
        yield Env(sim, controller, pool, agent, port, notices, trigger, log)
    finally:
        await controller.stop()
        await pool.stop()
        await sim.stop()
        await agent.stop()


# -- hostile clients (their own process, like an attacker) ---------------------------------------------
@dataclass
class Flood:
    port: int
    until: float = 0.0
    open: int = 0
    peak: int = 0
    made: Counter[str] = field(default_factory=Counter)
    answers: Counter[tuple[str, str]] = field(default_factory=Counter)
    held: dict[str, float] = field(default_factory=dict)  # longest a connection of each kind stayed open
    unanswered: int = 0  # closed by the server without a word (what an EMFILE drop looks like)
    connect_errors: int = 0
    last_close: float = 0.0

    async def client(self, kind: str, payload: bytes = b"", drip: bytes = b"", sustained: bool = True) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0 = loop.time()
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.connect_errors += 1
                await asyncio.sleep(0.05)
                if not sustained or loop.time() > self.until:
                    return
                continue
            self.made[kind] += 1
            self.open += 1
            self.peak = max(self.peak, self.open)
            data = b""
            try:
                if payload:
                    writer.write(payload)
                async with asyncio.timeout(15):
                    read = asyncio.ensure_future(reader.read(65536))
                    for b in drip:
                        done, _ = await asyncio.wait({read}, timeout=0.2)
                        if done:
                            break
                        writer.write(bytes([b]))
                    data = await read
                    while chunk := await reader.read(65536):
                        data += chunk
            except (ConnectionError, OSError):
                pass
            finally:
                self.open -= 1
                writer.close()
            now = loop.time()
            self.last_close = now
            self.held[kind] = max(self.held.get(kind, 0.0), now - t0)
            answer = data.split(b"\r\n", 1)[0].decode("latin-1")[9:12] if data.startswith(b"HTTP/1.1") else ""
            if answer == "101":  # upgraded: what came after the handshake is a close frame
                frame = data.split(b"\r\n\r\n", 1)[1]
                answer = f"ws{int.from_bytes(frame[2:4], 'big')}" if frame[:1] == b"\x88" else "101"
            self.answers[(kind, answer or "none")] += 1
            self.unanswered += not data
            if not sustained or now > self.until:
                return
            if kind not in ("idle", "slowloris"):
                await asyncio.sleep(0.02)


def upgrade(path: str) -> bytes:
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def waiting_calls(controller: Controller, n: int) -> list[str]:
    """Calls the controller believes are waiting for their forks, whose forks will never send metadata."""
    urls = []
    for i in range(n):
        uuid = f"5171e000-0000-4000-8000-{i:012d}"
        call = Call(uuid, "fs1", "inbound", agent="bot", state="answered", fork="starting", fork_nonce=fork.new_nonce())
        controller.tracker.calls[uuid] = call
        urls.append(f"/calls/{uuid}?token={controller.tokens.token(uuid, call.fork_nonce)}")
    return urls


def flood_process(conn: Any, port: int, seconds: float, silent: list[str], sustained: bool, idle: int) -> None:
    """Process: the hostile clients, for ``seconds`` (reconnecting when ``sustained``); sends back what they saw."""

    async def run() -> Flood:
        flood = Flood(port)
        flood.until = asyncio.get_running_loop().time() + seconds
        rng = random.Random(7)
        c = flood.client
        jobs = [c("idle", sustained=sustained) for _ in range(idle)]
        if sustained:
            jobs += [c("slowloris", b"GET /calls/x HTTP/1.1\r\n", b"X-Slow: " + b"a" * 200) for _ in range(60)]
            jobs += [c("garbage", bytes(rng.getrandbits(8) for _ in range(300))) for _ in range(40)]
            jobs += [c("forged", upgrade(f"/calls/x{i}?token={'ab' * 24}")) for i in range(40)]
            jobs += [c("oversized", b"GET /calls/x HTTP/1.1\r\nX: " + b"y" * 40000) for _ in range(20)]
            jobs += [c("silent", upgrade(url), sustained=False) for url in silent]  # a token is good once
        tasks = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.gather(*tasks)
        return flood

    conn.send("ready")
    assert conn.recv() == "go"
    flood = asyncio.run(run())
    conn.send({k: v for k, v in vars(flood).items()})
    conn.close()


class FloodProcess:
    """The hostile process: :meth:`go` lets its clients loose, :meth:`result` waits for what they saw."""

    def __init__(self, port: int, seconds: float, silent: list[str], sustained: bool = True, idle: int = 120) -> None:
        ctx = mp.get_context("spawn")
        self.port = port
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=flood_process, args=(child, port, seconds, silent, sustained, idle), daemon=True)
        self.proc.start()

    async def go(self) -> FloodProcess:
        assert await asyncio.to_thread(self.pipe.recv) == "ready"
        self.pipe.send("go")
        return self

    async def result(self) -> Flood:
        data = await asyncio.to_thread(self.pipe.recv)
        await asyncio.to_thread(self.proc.join, 5)
        flood = Flood(self.port)
        for k, v in data.items():
            setattr(flood, k, v)
        return flood


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
    loop = asyncio.get_running_loop()
    seconds = 6.0
    t0 = loop.time()
    hostile = await FloodProcess(e.port, seconds, waiting_calls(e.controller, 30)).go()
    await asyncio.sleep(0.7)  # the flood is on
    uuid, connect_s = await real_call(e)
    await audio_both_ways(e, uuid)
    assert loop.time() < t0 + seconds  # all of that happened while the flood went on
    flood = await hostile.result()
    cleared = flood.last_close - flood.until
    await asyncio.sleep(1.3)  # the worker's counters arrive once a second
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
    errors = e.worker_errors()
    assert errors["fork_handshake_timeout"] + errors["fork_evicted"] > 0 and errors["fork_internal"] == 0
    assert errors["accept_failed"] == 0
    assert e.controller.call(uuid) is not None and e.controller.call(uuid).fork == "connected"  # still up


@pytest.mark.parametrize("env", [("uvloop", ""), ("asyncio", "")], indirect=True, ids=["uvloop", "asyncio"])
async def test_port_recovers_once_descriptors_free_up_after_emfile(env: Env) -> None:
    """Something else in the worker takes every descriptor for 2 s: accept() fails with EMFILE; the port comes back."""
    e = env
    hostile = FloodProcess(e.port, 0.0, [], sustained=False, idle=50)
    Path(e.hog).write_text("hog")
    deadline = time.monotonic() + 5
    while "HOGGED" not in e.worker_log():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    await hostile.go()  # they arrive while nothing is free
    flood = await hostile.result()
    waited = time.monotonic() - t0
    assert "RELEASED" in e.worker_log()
    await asyncio.sleep(1.3)
    report("EMFILE", flood, e, f"; the 50 connections were answered within {waited:.2f} s")
    assert flood.answers == Counter({("idle", "408"): 50})  # none dropped: they waited in the backlog
    assert e.worker_errors()["accept_failed"] >= 1
    uuid, connect_s = await real_call(e)  # and a call's fork connects as usual
    await audio_both_ways(e, uuid)
    logs = e.worker_log()
    print(f"real fork connected {connect_s:.2f} s after the call")
    assert "Traceback" not in logs and "socket.accept() out of system resource" not in logs
    assert 1 <= logs.count("accept() failed") <= 5  # one line, then counted quietly
