"""Media bridge benchmark: N calls at real-time 20 ms cadence through the bridge to an echo agent.

    python bench/media.py [--calls 50,200,500] [--rates 8000,16000] [--seconds 10]
                          [--protocols raw,elevenlabs,twilio] [--agent-format pcm_16000] [--chunk-ms 20]
                          [--reference] [--workers N]

Three processes on loopback, like production: the **bridge** (pinned to CPU 0 when there are two or
more), the **fork clients** playing FreeSWITCH's mod_audio_fork (one WebSocket per call, metadata,
then one L16 frame every 20 ms per call at a random phase, as calls' RTP arrives) and the **echo
agent**, both pinned to the other CPU. The echo agent speaks the protocol under test and sends every
audio message straight back as that protocol's agent audio (raw: the binary frame; ElevenLabs: an
``audio`` event with the chunk's base64; Twilio: a ``media`` event). Each call's audio goes
fork → bridge (adapter: resampling, encoding) → agent → bridge (adapter, pacer) → fork.

``--protocols`` picks the agent protocols (each measured in its own run); ``--agent-format`` the
agent's audio format for raw and ElevenLabs (default ``pcm_16000``, so 8 kHz calls are resampled both
ways; ``same`` = the call's rate, no resampling; Twilio is always μ-law 8 kHz); ``--chunk-ms`` the
bridge's ``agent_chunk_ms`` (caller audio per message to the agent).

Printed per (calls, rate): the bridge's CPU in % of one core per call (utime+stime over a steady
window) and the calls per core that implies; the bridge's added latency p50/p99 each way (time from
reading a message to writing it on, every message sampled); the round trip seen by the fork clients
(two bridge passes, the echo agent and four loopback hops); the bridge's RSS growth per call; frames
actually delivered (so a load generator that cannot keep up shows). ``--reference`` also runs the
obvious design (``websockets``' asyncio server and client, one task per direction per call, the same
protocol adapters, no pacing) under the same load in the same run and prints the CPU ratio. Goals
(issues 4 and 12): ≥ 500 calls per core at 16 kHz, p99 added latency < 2 ms at 200 calls, ≤ 200 KB per call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.media import dialects, fork
from orchestrator.media.websocket import Binary, Closed, Opened, Request, Text, WebSocket

SECRET = b"bench-secret"
FRAME_MS = 20


def _pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _cpu() -> tuple[float, float]:
    t = os.times()
    return t.user, t.system


# -- echo agent ----------------------------------------------------------------------------------
_EL_IN = '{"user_audio_chunk":"'
_EL_OUT = '{"type":"audio","audio_event":{"audio_base_64":"%s","event_id":1}}'
_TW_OUT = '{"event":"media","streamSid":"%s","media":{"payload":"%s"}}'


class _Echo(asyncio.Protocol):
    """Sends each audio message back as agent audio of the same protocol (recognised by its content)."""

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        self.ws = WebSocket.server()
        self.sid = ""

    def data_received(self, data: bytes) -> None:
        for ev in self.ws.receive_data(data):
            if type(ev) is Binary:
                self.t.write(self.ws.binary(ev.data))
            elif type(ev) is Text:
                text = ev.data
                if text.startswith(_EL_IN):  # ElevenLabs caller audio: {"user_audio_chunk":"<b64>"}
                    self.t.write(self.ws.text(_EL_OUT % text[len(_EL_IN) : -2]))
                elif text.startswith('{"event":"media"'):  # Twilio media: payload is the last string field but one
                    payload = text[text.index('"payload":"') + 11 : text.index('"}', text.index('"payload":"'))]
                    self.t.write(self.ws.text(_TW_OUT % (self.sid, payload)))
                elif '"event": "start"' in text or '"event":"start"' in text:
                    self.sid = json.loads(text)["streamSid"]
            elif type(ev) is Request:
                self.ws.accept()
            elif type(ev) is Closed:
                self.t.close()
        out = self.ws.data_to_send()
        if out:
            self.t.write(out)


def echo_agent(conn: Any) -> None:
    """Process: an agent that sends every audio message straight back (see :class:`_Echo`)."""
    _pin(1)
    loop = _loop()
    server = loop.run_until_complete(loop.create_server(_Echo, "127.0.0.1", 0, backlog=2048))
    conn.send(server.sockets[0].getsockname()[1])

    async def wait() -> None:
        while not conn.poll():
            await asyncio.sleep(0.1)

    loop.run_until_complete(wait())


# -- bridge ----------------------------------------------------------------------------------------
def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def agent_format(protocol: str, rate: int, requested: str) -> str:
    """The agent's audio format in a case (``requested``: a format, or ``same`` as the call)."""
    if protocol == "twilio":
        return "ulaw_8000"
    return f"pcm_{rate}" if requested == "same" else requested


def _deployment(
    agent_port: int, protocol: str, rate: int, port: int = 8090, fmt: str = "same", chunk_ms: int = 20
) -> Any:
    from orchestrator.config.model import Deployment

    agent: dict[str, Any] = {"name": "echo", "protocol": protocol, "url": f"ws://127.0.0.1:{agent_port}/agent"}
    if protocol == "elevenlabs":
        agent.update(agent_id="x", audio_format=agent_format(protocol, rate, fmt))
    elif protocol == "raw":
        agent["audio_format"] = agent_format(protocol, rate, fmt)
    return Deployment.model_validate(
        {
            "freeswitch": {"bind_ip": "127.0.0.1", "event_socket": {"password": "x"}},
            "agents": [agent],
            "orchestrator": {"media": {"listen_ip": "127.0.0.1", "port": port, "agent_chunk_ms": chunk_ms}},
        }
    )


class _NoControl:
    """Call control for the bench: nothing to hang up or transfer; every fork with a good token is expected."""

    def media_update(self, uuid: str, data: dict[str, Any], final: bool = False) -> None:
        pass

    async def claim_fork(self, uuid: str, token: str) -> bool:
        return True

    async def hangup(self, *args: Any, **kwargs: Any) -> None:
        pass


def _proc_cpu(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def bridge_process(conn: Any, agent_port: int, protocol: str, design: str, rate: int, fmt: str, chunk_ms: int) -> None:
    """Process: the bridge under test; reports its port, then CPU/latency/memory on request."""
    loop = _loop()
    asyncio.set_event_loop(loop)
    pool = None
    if design.startswith("workers"):  # the main process only relays; the workers carry the calls
        from orchestrator.media.workers import WorkerPool
        from orchestrator.metrics import Metrics

        port = _free_port()
        dep = _deployment(agent_port, protocol, rate, port, fmt, chunk_ms)
        pool = WorkerPool(dep, _NoControl(), Metrics(), SECRET, int(design.split("x")[1]))
        loop.run_until_complete(pool.start())
        bridge = None
    elif design == "reference":
        _pin(0)
        port = loop.run_until_complete(_reference_bridge(_deployment(agent_port, protocol, rate, 8090, fmt)))
        bridge = None
    else:
        _pin(0)
        from orchestrator.media import agent_connection, fork_connection
        from orchestrator.media import bridge as b

        fork_connection.SAMPLE_EVERY = agent_connection.SAMPLE_EVERY = 1  # every message's latency
        dep = _deployment(agent_port, protocol, rate, 8090, fmt, chunk_ms)
        bridge = b.MediaBridge(dep, fork.Tokens(SECRET), _NoControl(), port=0)
        loop.run_until_complete(bridge.start())
        port = bridge.port
    conn.send(port)
    print(f"bridge pid {os.getpid()} (for a profiler: py-spy record --pid …)", file=sys.stderr, flush=True)
    to_agent: list[float] = []
    to_caller: list[float] = []
    pids = [p.pid for p in pool.processes] if pool is not None else []

    def cpu() -> tuple[float, float]:
        user, system = _cpu()
        for pid in pids:
            u, s_ = _proc_cpu(pid)
            user, system = user + u, system + s_
        return user, system

    def rss() -> int:
        return _rss() + sum(_proc_rss(pid) for pid in pids)

    async def serve() -> None:
        while True:
            await asyncio.sleep(0.05)
            if bridge is not None:
                to_agent.extend(bridge.latency_to_agent)
                bridge.latency_to_agent.clear()
                to_caller.extend(bridge.latency_to_caller)
                bridge.latency_to_caller.clear()
            if conn.poll():
                cmd = conn.recv()
                if cmd == "mark":
                    to_agent.clear()
                    to_caller.clear()
                    conn.send((cpu(), time.monotonic(), rss()))
                elif cmd == "stop":
                    conn.send((cpu(), time.monotonic(), rss(), to_agent, to_caller))
                    if pool is not None:
                        await pool.stop()
                    return

    loop.run_until_complete(serve())
    os._exit(0)  # skip interpreter teardown of thousands of live objects


async def _reference_bridge(deployment: Any) -> int:
    """The obvious design: websockets' asyncio server and client, a task per direction per call, the same adapters."""
    import logging

    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve
    from websockets.exceptions import ConnectionClosed

    from orchestrator import agents
    from orchestrator.agents.base import CallInfo, Play

    logging.getLogger("websockets").setLevel(logging.CRITICAL)
    config = deployment.agents[0]

    async def handler(ws: Any) -> None:
        meta = json.loads(await ws.recv())
        info = CallInfo(meta["call_id"], "inbound", "", "", "echo", "", meta["rate"])
        adapter = agents.create(info, config)
        async with connect(config.url, compression=None) as agent:
            for message in adapter.open():
                await agent.send(message)

            async def up() -> None:
                async for message in ws:
                    out = adapter.audio(message)
                    if out is not None:
                        await agent.send(out)

            async def down() -> None:
                async for message in agent:
                    for action in adapter.receive(message):
                        if type(action) is Play:
                            await ws.send(action.pcm)

            with contextlib.suppress(ConnectionClosed):
                await asyncio.gather(up(), down())

    server = await serve(handler, "127.0.0.1", 0, subprotocols=[dialects.SUBPROTOCOL], compression=None)
    return server.sockets[0].getsockname()[1]


# -- fork clients ----------------------------------------------------------------------------------
class _Fork(asyncio.Protocol):
    def __init__(self, call_id: str, url: str, rate: int, ready: asyncio.Future[None]) -> None:
        self.ws = WebSocket.client(url, subprotocols=[dialects.SUBPROTOCOL])
        self.call_id = call_id
        self.rate = rate
        self.frame = rate * 2 * FRAME_MS // 1000
        self.ready = ready
        self.sent: list[float] = []
        self.received = 0
        self.rtts: list[float] = []

    def connection_made(self, transport: Any) -> None:
        self.t = transport
        transport.write(self.ws.data_to_send())

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        for ev in self.ws.receive_data(data):
            if type(ev) is Binary:
                before = self.received
                self.received += len(ev.data)
                first = -(-before // self.frame)  # frames whose first byte arrived now
                last = (self.received - 1) // self.frame
                for k in range(first, last + 1):
                    if k < len(self.sent):
                        self.rtts.append(now - self.sent[k])
            elif type(ev) is Opened:
                meta = {"call_id": self.call_id, "agent": "echo", "rate": self.rate, "direction": "inbound"}
                self.t.write(self.ws.text(json.dumps(meta)))
                self.ready.set_result(None)

    def send_frame(self, payload: bytes) -> None:
        self.sent.append(time.monotonic())
        self.t.write(self.ws.binary(payload))


def load_process(conn: Any, bridge_port: int, calls: int, rate: int, warmup: float, seconds: float) -> None:
    """Process: ``calls`` fork clients sending 20 ms frames at real time, each at its own phase."""
    _pin(1)
    loop = _loop()
    asyncio.set_event_loop(loop)
    tokens = fork.Tokens(SECRET)

    async def run() -> dict[str, Any]:
        forks = []
        for i in range(calls):
            cid = f"00000000-0000-4000-8000-{i:012d}"
            url = fork.fork_url(f"ws://127.0.0.1:{bridge_port}", cid, tokens.token(cid))
            ready = loop.create_future()
            f = _Fork(cid, url, rate, ready)
            await loop.create_connection(lambda f=f: f, "127.0.0.1", bridge_port)
            await ready
            forks.append(f)
        payload = bytes(random.getrandbits(8) for _ in range(rate * 2 * FRAME_MS // 1000))
        period = FRAME_MS / 1000
        start = loop.time() + 0.05
        phases = sorted((random.random() * period, f) for f in forks)
        conn.send("connected")
        n = 0
        end_warm = start + warmup
        end = end_warm + seconds
        marked = False
        while True:
            base = start + n * period
            if base >= end:
                break
            if not marked and base >= end_warm:
                conn.send("steady")
                marked = True
                for f in forks:
                    f.rtts.clear()
                sent0 = sum(len(f.sent) for f in forks)
                recv0 = sum(f.received for f in forks)
            for phase, f in phases:
                delay = base + phase - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                f.send_frame(payload)
            n += 1
        await asyncio.sleep(0.3)
        sent = sum(len(f.sent) for f in forks) - sent0
        received = (sum(f.received for f in forks) - recv0) / len(payload)
        rtts = sorted(r for f in forks for r in f.rtts)
        return {"sent": sent, "received": received, "rtts": rtts}

    conn.send(loop.run_until_complete(run()))
    os._exit(0)


# -- driver ----------------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def run_case(
    calls: int, rate: int, seconds: float, protocol: str, design: str, fmt: str = "same", chunk_ms: int = 20
) -> dict[str, Any]:
    """One measurement."""
    ctx = mp.get_context("spawn")
    a_parent, a_child = ctx.Pipe()
    agent = ctx.Process(target=echo_agent, args=(a_child,), daemon=True)
    agent.start()
    agent_port = a_parent.recv()
    b_parent, b_child = ctx.Pipe()
    bridge = ctx.Process(target=bridge_process, args=(b_child, agent_port, protocol, design, rate, fmt, chunk_ms))
    bridge.start()
    bridge_port = b_parent.recv()
    b_parent.send("mark")
    _, _, rss_idle = b_parent.recv()
    l_parent, l_child = ctx.Pipe()
    warmup = 2.0
    load = ctx.Process(target=load_process, args=(l_child, bridge_port, calls, rate, warmup, seconds), daemon=True)
    load.start()
    assert l_parent.recv() == "connected"
    assert l_parent.recv() == "steady"
    b_parent.send("mark")
    cpu0, t0, _ = b_parent.recv()
    result = l_parent.recv()
    b_parent.send("stop")
    cpu1, t1, rss, to_agent, to_caller = b_parent.recv()
    bridge.join(timeout=5)  # the bridge (and its workers) first: an agent going away would be logged per call
    a_parent.send("stop")
    for p in (load, bridge, agent):
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
    nominal = calls * seconds * 1000 / FRAME_MS
    cpu_pct = (cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1]) / (t1 - t0) * 100
    sys_share = (cpu1[1] - cpu0[1]) / max(cpu1[0] + cpu1[1] - cpu0[0] - cpu0[1], 1e-9)
    return {
        "calls": calls,
        "rate": rate,
        "design": design,
        "protocol": protocol,
        "cpu_per_call": cpu_pct / calls,
        "cpu_total": cpu_pct,
        "sys_share": sys_share,
        "to_agent_p50": _pct(to_agent, 0.5) * 1e3,
        "to_agent_p99": _pct(to_agent, 0.99) * 1e3,
        "to_caller_p50": _pct(to_caller, 0.5) * 1e3,
        "to_caller_p99": _pct(to_caller, 0.99) * 1e3,
        "rtt_p50": _pct(result["rtts"], 0.5) * 1e3,
        "rtt_p99": _pct(result["rtts"], 0.99) * 1e3,
        "kb_per_call": (rss - rss_idle) / calls / 1024,
        "delivered": result["sent"] / nominal,
        "echoed": result["received"] / max(result["sent"], 1),
    }


def main() -> None:
    """Run the matrix and print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", default="50,200,500")
    parser.add_argument("--rates", default="8000,16000")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--protocols", "--protocol", default="raw", help="comma-separated: raw, elevenlabs, twilio")
    parser.add_argument("--agent-format", default="pcm_16000", help="raw/ElevenLabs agent format, or 'same'")
    parser.add_argument("--chunk-ms", type=int, default=60, help="media.agent_chunk_ms of the bridge (default 60)")
    parser.add_argument("--reference", action="store_true", help="also run the obvious websockets design")
    parser.add_argument("--workers", type=int, default=0, help="also run the bridge as N worker processes")
    args = parser.parse_args()
    protocols = args.protocols.split(",")
    print(
        f"cpus={os.cpu_count()} python={sys.version.split()[0]} window={args.seconds}s "
        f"agent_format={args.agent_format} chunk_ms={args.chunk_ms}"
    )
    header = (
        f"{'design':10} {'protocol':10} {'format':9} {'calls':>5} {'rate':>5} {'cpu%/call':>9} {'calls/core':>10} "
        f"{'to_agent p50/p99 ms':>20} {'to_caller p50/p99 ms':>21} {'rtt p50/p99 ms':>15} {'KB/call':>8} "
        f"{'sent':>5} {'echo':>5} {'kernel':>6}"
    )
    print(header)
    results = []
    for protocol in protocols:
        for rate in [int(r) for r in args.rates.split(",")]:
            for calls in [int(c) for c in args.calls.split(",")]:
                designs = ["bridge"] + (["reference"] if args.reference else [])
                designs += [f"workersx{args.workers}"] if args.workers else []
                for design in designs:
                    r = run_case(calls, rate, args.seconds, protocol, design, args.agent_format, args.chunk_ms)
                    results.append(r)
                    print(
                        f"{design:10} {protocol:10} {agent_format(protocol, rate, args.agent_format):9} {calls:5d} "
                        f"{rate:5d} {r['cpu_per_call']:9.3f} {100 / r['cpu_per_call']:10.0f} "
                        f"{r['to_agent_p50']:9.3f}/{r['to_agent_p99']:<9.3f} {r['to_caller_p50']:10.3f}/"
                        f"{r['to_caller_p99']:<9.3f} {r['rtt_p50']:7.2f}/{r['rtt_p99']:<7.2f} {r['kb_per_call']:8.1f} "
                        f"{r['delivered']:5.0%} {r['echoed']:5.0%} {r['sys_share']:6.0%}",
                        flush=True,
                    )
    if args.reference:
        for key in sorted({(r["protocol"], r["rate"], r["calls"]) for r in results}):
            pair = {r["design"]: r for r in results if (r["protocol"], r["rate"], r["calls"]) == key}
            if "reference" in pair and "bridge" in pair:
                ratio = pair["reference"]["cpu_per_call"] / pair["bridge"]["cpu_per_call"]
                print(f"ratio (reference CPU / bridge CPU) {key[0]} {key[2]} calls {key[1]} Hz: {ratio:.1f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
