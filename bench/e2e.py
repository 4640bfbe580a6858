"""End-to-end benchmark: the whole ``sipagent run`` process under a steady flow of calls, per agent protocol.

    python bench/e2e.py [--protocols elevenlabs,twilio,raw] [--concurrent 50] [--hold 20] [--seconds 20]
                        [--setup-calls 100] [--setup-rate 25] [--setup-hold 1] [--workers N] [--tls]
                        [--profile DIR] [--keep] [--json FILE] [--quick]
    FREESWITCH_BIN=/opt/freeswitch/bin/freeswitch FREESWITCH_STREAMING_FORK=.../mod_audio_fork.so \\
        python bench/e2e.py --real [--fs-cpu 1] [...]

Processes, like production, on loopback (each protocol gets its own fresh set, so its figures are clean):

1. **the system under test**: ``sipagent run deployment.yaml`` — the real CLI, as ``python -m orchestrator run`` with
   this checkout first on ``PYTHONPATH`` (the venv's ``sipagent`` script would run whichever checkout the venv was
   installed from, e.g. another worktree's), on a generated deployment with three agents (ElevenLabs
   ``pcm_16000`` with an ``api_key``, so every call first GETs a signed URL; Twilio μ-law 8 kHz; raw ``pcm_16000``),
   one number routed to each, ESL pointed at the simulator, the media bridge and the HTTP API on free loopback
   ports, call records to a file. Pinned to CPU 0. With
   ``--workers N`` (``orchestrator.media.workers: N``) its worker processes are counted too (CPU and RSS are summed
   over the process tree) and nothing is pinned, so the workers can spread (the load generators then share the
   cores with them: read those figures as throughput, not as a clean per-call cost).
2. **the simulator** (``tests/simulator``, ``SimulatedFreeSwitch`` with ``fork_websocket = True``): inbound PCMU
   calls arrive over ESL at a steady rate and each is hung up (BYE) a fixed time after it arrived; its
   mod_audio_fork client connects to the bridge, sends the caller's audio (a 440 Hz tone with noise, a burst each
   second) at real 20 ms cadence and plays what comes back (jambonz streaming playout). Pinned to CPU 1.
3. **the fake agents** (this file: asyncio protocols on ``orchestrator.media.websocket``): echo the caller's audio
   back in the agent's own format, like an agent replying — ElevenLabs ``conversation_initiation_metadata`` then an
   ``audio`` event (base64, ``event_id``) per ``user_audio_chunk``, and the signed-URL GET on the same port;
   Twilio ``media`` with the ``streamSid``; raw binary. ``--tls`` serves ``wss://``/``https://`` with a CA made here
   (``orchestrator.config.selfsigned``), trusted by ``sipagent run`` through ``SSL_CERT_FILE``, so the TLS
   handshake is part of every call's setup. Pinned to CPU 1.

Phases per protocol: start, warm-up calls, idle (CPU and RSS baseline), **steady** (calls arrive every
hold/concurrent seconds and last ``--hold`` s; after a ramp of one hold time the window of ``--seconds`` starts:
about ``concurrent`` calls are up and calls keep arriving and ending during it) and **setup** (``--setup-calls``
short calls of ``--setup-hold`` s arriving at ``--setup-rate`` a second, measured from the first arrival until
every record is written).

Printed per protocol:

* ``cpu%/call`` — ``sipagent run``'s CPU (utime+stime of the process tree over the steady window, % of one core)
  divided by the mean number of calls up in the window (from the simulator's channel lifetimes). It includes the
  setups and teardowns that happen in the window, as a measurement with sipp does; ``idle`` is the process's own
  CPU with no calls (% of a core, not per call);
* ``setup ms`` — call-setup CPU per call (ESL events and commands, answer, fork start and claim, signed URL, TCP/TLS
  and WebSocket to the agent, the record; teardown included). Both phases are modelled as
  ``cpu - idle·time = calls·S + call_seconds·M`` (S: CPU per call set up and torn down, M: media CPU per call
  second); the steady phase (many call seconds, few setups) and the setup phase (many setups, few call seconds)
  give two equations, solved for S and M. ``media%`` is M as % of a core per call;
* ``added p50/p99`` — the bridge's own added latency each way, from ``sipagent_media_added_latency_seconds`` on the
  API's ``/metrics``, scraped before and after the window, the difference interpolated within the histogram's
  buckets (coarse: the buckets are 50/100/250/500 µs, 1/2/5 ms …). The bridge samples one message in 16;
  ``--workers`` re-exports the workers' histograms, which are summed;
* ``KB/call`` — RSS of the process tree at steady concurrency (median of samples in the window) minus its idle RSS
  (after the warm-up), divided by the mean number of calls up;
* ``rtt p50/p99`` — a sanity figure from the simulator side: the caller's audio carries a loud 10 ms burst once a
  second; the time from the fork client sending the frame that starts a burst to it receiving the message in which
  the burst's echo starts (the first second of each call, while the agent connects, is left out). It covers two
  bridge passes, the agent's echo, the resamplers' fixed delay (30 + 15 ms for a 16 kHz agent, none for Twilio's
  μ-law 8 kHz) and the pacer waiting for a whole 80 ms unit (the bursts fall at each frame of a unit in turn: 0-60
  ms). Tens of ms is normal; it shows stalls, not the bridge's own cost;
* ``calls ok`` — from the call records file: calls whose media outcome is ``completed`` with frames to the agent
  and to the caller, of all calls placed (every phase); ``drop`` — frames dropped to the agent plus playback ms
  dropped, summed; ``sent`` — caller frames the simulator sent over what real time asks (below ~98 %: the load
  generator could not keep up, the figures are not trustworthy);
* ``sim%``/``agents%`` — the load generators' CPU on their core (near 100 %: they are the limit);
* ratio to FreeSWITCH — ``cpu%/call`` over FreeSWITCH's own per-call CPU: 0.6–0.9 % of a core with a streaming fork
  (``../shared/reference/freeswitch-costs.md``) and 0.88 % measured with this load in issue 12; the goal is 0.25.

``--profile DIR`` records ``sipagent run`` with py-spy during each steady window and each setup phase
(``--nonblocking --gil``: samples
of the thread holding the GIL, so idle waits are left out; py-spy runs on CPU 1) and prints the top functions by
own time and by total time below the event loop (raw stacks in DIR). A Python function's own time includes the C it
calls (``AgentConnection.send`` includes the socket write); the loop's own C code (uvloop, its reads and polls)
is one line. The profiler loads CPU 1 and reads the process's memory: take the figures from a run without it.

``--real`` (needs ``FREESWITCH_BIN``; ``FREESWITCH_STREAMING_FORK`` for the jambonz module, which streaming playback
needs) runs the same load through a real FreeSWITCH started on the rendered deployment (the integration suite's
helpers, ``tests/integration``), with sipp (Debian ``sip-tester``) placing PCMU calls that stream a 440 Hz tone
(``rtp_stream``, RTP both ways) and hang up after the hold time (``-r``/``-l``/``-m``), every call forked to the
protocol's agent; it prints FreeSWITCH's and ``sipagent run``'s CPU per concurrent call over the same window (the
calls up from ``show channels count`` each second) and their ratio, the added latency, and from the records whether
every call completed with frames both ways and RTP both ways (``rtp_audio_in/out_packet_count``). ``sipagent run``
is on CPU 0, FreeSWITCH on ``--fs-cpu`` (1: with sipp and the agents, which use ~20 % of it at 50 calls). No setup
phase here: the FreeSWITCH figure is per concurrent call with setups included, like the simulator's ``cpu%/call``.

Timings drift ~20 % on a shared 2-core machine: compare figures from one run.
"""

from __future__ import annotations

import argparse
import array
import bisect
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.agents.elevenlabs import SIGNED_URL_PATH  # noqa: E402
from orchestrator.media.websocket import Binary, Closed, Request, Text, WebSocket  # noqa: E402

FRAME_MS = 20
RATE = 8000  # the callers' codec: PCMU
FRAME_BYTES = RATE * 2 * FRAME_MS // 1000
ESL_PASSWORD = "bench-esl"
API_TOKEN = "bench-api-token"
API_KEY = "bench-xi-key"
EL_PATH = "/v1/convai/conversation"
PROTOCOLS = {  # protocol -> (agent name, number)
    "elevenlabs": ("eleven", "+15550000001"),
    "twilio": ("twilio", "+15550000002"),
    "raw": ("raw", "+15550000003"),
}
FS_PER_CALL = (0.6, 0.9)  # % of a core per call, ../shared/reference/freeswitch-costs.md
FS_ISSUE = 0.88  # % of a core per call, issue 12 (real FreeSWITCH, this load, ElevenLabs agent)
GOAL = 0.25


def _pin(cpu: int) -> None:
    with contextlib.suppress(AttributeError, OSError):
        if (os.cpu_count() or 1) > 1:
            os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


# -- /proc accounting ------------------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                children[int(_stat(int(entry))[1])].append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu_of(pids: list[int]) -> tuple[float, float]:
    """(user, system) seconds of ``pids`` (their live threads; exited children are not counted)."""
    user = system = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat(pid)
            user += int(fields[11]) / _TICK
            system += int(fields[12]) / _TICK
    return user, system


def rss_of(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/statm") as f:
            total += int(f.read().split()[1]) * _PAGE
    return total


class Meter:
    """CPU and RSS of a process tree, with marks."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def mark(self) -> tuple[float, float, float]:
        """(monotonic time, user+system seconds, system seconds)."""
        user, system = cpu_of(tree(self.pid))
        return time.monotonic(), user + system, system

    def rss(self) -> int:
        return rss_of(tree(self.pid))


# -- fake agents -----------------------------------------------------------------------------------
class _AgentConn:
    """One connection to the fake agents' port: signed-URL GETs (keep-alive), then maybe a WebSocket."""

    def __init__(self, server: _Agents) -> None:
        self.server = server
        self.buf = b""
        self.ws: WebSocket | None = None
        self.kind = ""
        self.stream_sid = "MZ0"
        self.event_id = 0
        self.transport: Any = None

    # asyncio.Protocol
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        pass

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self._events(self.ws.receive_data(data))
            return
        self.buf += data
        while self.ws is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1")
            target = head.split(" ", 2)[1] if head.count(" ") >= 2 else ""
            path = target.partition("?")[0]
            if path == SIGNED_URL_PATH:
                self.buf = self.buf[end + 4 :]
                self._signed_url(head)
                continue
            self.kind = {EL_PATH: "elevenlabs", "/twilio": "twilio", "/raw": "raw"}.get(path, "raw")
            self.ws = WebSocket.server()
            early, self.buf = self.buf, b""
            self._events(self.ws.receive_data(early))

    def _signed_url(self, head: str) -> None:
        s = self.server
        s.counts["signed_url"] += 1
        if f"xi-api-key: {API_KEY}".lower() not in head.lower():
            s.counts["signed_url_bad_key"] += 1
        scheme = "wss" if s.tls else "ws"
        body = json.dumps({"signed_url": f"{scheme}://127.0.0.1:{s.port}{EL_PATH}?agent_id=el&token=t"}).encode()
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    def _events(self, events: list[Any]) -> None:
        ws = self.ws
        assert ws is not None
        write = self.transport.write
        s = self.server
        for ev in events:
            kind = type(ev)
            if kind is Binary:
                s.counts["in"] += 1
                write(ws.binary(ev.data))  # raw: the caller's L16 straight back
                s.counts["out"] += 1
            elif kind is Text:
                s.counts["in"] += 1
                self._text(ev.data, ws, write)
            elif kind is Request:
                ws.accept()
                s.counts[f"open_{self.kind}"] += 1
                self._events(ws.receive_data(b""))
            elif kind is Closed:
                self.transport.close()
        out = ws.data_to_send()
        if out:
            write(out)

    def _text(self, text: str, ws: WebSocket, write: Any) -> None:
        msg = json.loads(text)
        if self.kind == "elevenlabs":
            chunk = msg.get("user_audio_chunk")
            if chunk is not None:  # pcm_16000 both ways: the same base64 goes back as the agent's audio
                self.event_id += 1
                event = {"audio_base_64": chunk, "event_id": self.event_id}
                write(ws.text(json.dumps({"type": "audio", "audio_event": event})))
                self.server.counts["out"] += 1
            elif msg.get("type") == "conversation_initiation_client_data":
                meta = {
                    "conversation_id": "conv_bench",
                    "agent_output_audio_format": "pcm_16000",
                    "user_input_audio_format": "pcm_16000",
                }
                reply = {"type": "conversation_initiation_metadata", "conversation_initiation_metadata_event": meta}
                write(ws.text(json.dumps(reply)))
        elif self.kind == "twilio":
            event = msg.get("event")
            if event == "media":
                payload = msg["media"]["payload"]
                reply = {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
                write(ws.text(json.dumps(reply)))
                self.server.counts["out"] += 1
            elif event == "start":
                self.stream_sid = msg.get("start", {}).get("streamSid") or msg.get("streamSid") or "MZ0"


class _Agents:
    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self.port = 0
        self.counts: Counter[str] = Counter()


def agents_process(conn: Any, tls_dir: str | None) -> None:
    """Process: the fake agents of every protocol on one port; reports the port, then counts on request."""
    import asyncio

    _pin(1)
    loop = _loop()
    asyncio.set_event_loop(loop)
    tls = None
    if tls_dir:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(Path(tls_dir) / "localhost.crt", Path(tls_dir) / "localhost.key")
    agents = _Agents(tls)
    server = loop.run_until_complete(
        loop.create_server(lambda: _AgentConn(agents), "127.0.0.1", 0, backlog=4096, ssl=tls)  # type: ignore[arg-type,return-value]
    )
    agents.port = server.sockets[0].getsockname()[1]
    conn.send(agents.port)

    async def serve() -> None:
        while True:
            await asyncio.sleep(0.05)
            if conn.poll():
                cmd = conn.recv()
                t = os.times()
                conn.send((dict(agents.counts), time.monotonic(), t.user + t.system))
                if cmd == "stop":
                    return

    loop.run_until_complete(serve())
    os._exit(0)


def _loop() -> Any:
    import asyncio

    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


# -- the simulator -----------------------------------------------------------------------------------
BURST = RATE // 100  # a 10 ms burst once a second, for the round trip
LOUD = 12000  # the burst is louder than this, the rest of the caller's audio far below


def burst_at(j: int) -> int:
    """Sample where the ``j``-th burst starts: half-way through second ``j``, one frame later each second over
    four seconds, so the bursts fall at each place in the pacer's 80 ms units."""
    return j * RATE + RATE // 2 + (j % 4) * RATE * FRAME_MS // 1000


def caller_audio() -> bytes:
    """Four seconds of L16 at 8 kHz, looped by the simulator: a 440 Hz tone with noise (peaks near 6000) and a
    10 ms 1 kHz burst at 24000 each second (:func:`burst_at`), whose echo times the round trip."""
    rng = random.Random(7)
    starts = [burst_at(j) for j in range(4)]
    samples = array.array("h")
    for i in range(4 * RATE):
        x = 3000 * math.sin(2 * math.pi * 440 * i / RATE) + rng.gauss(0, 600)
        if any(b <= i < b + BURST for b in starts):
            x = 24000 * math.sin(2 * math.pi * 1000 * i / RATE)
        samples.append(int(max(-32767, min(32767, x))))
    return samples.tobytes()


def sim_process(conn: Any) -> None:
    """Process: the simulated FreeSWITCH; places calls when told, reports per-call results."""
    import asyncio

    _pin(1)
    sys.path[:0] = [str(ROOT / "tests")]
    import logging

    logging.basicConfig(level=logging.WARNING, format="simulator: %(message)s")
    loop = asyncio.new_event_loop()  # loop.time() is time.monotonic(): the fork clients' send times compare
    asyncio.set_event_loop(loop)
    loop.run_until_complete(_sim_main(conn))
    os._exit(0)


async def _sim_main(conn: Any) -> None:
    import asyncio

    from simulator import ForkClient, SimulatedFreeSwitch

    original = ForkClient._on_binary

    def on_binary(self: Any, data: bytes) -> None:  # when the echo of each caller burst came back
        a = array.array("h", data[: len(data) // 2 * 2])
        if a and (max(a) > LOUD or min(a) < -LOUD):
            state = self.__dict__.setdefault("bench", {"onsets": [], "last": -RATE})
            pos = self.received_binary_bytes // 2
            loud = [i for i, s in enumerate(a) if s > LOUD or s < -LOUD]
            if pos + loud[0] - state["last"] > RATE // 2:
                state["onsets"].append(time.monotonic())
            state["last"] = pos + loud[-1]
        original(self, data)

    ForkClient._on_binary = on_binary  # type: ignore[method-assign]

    sim = SimulatedFreeSwitch(ESL_PASSWORD)
    sim.fork_websocket = True
    await sim.start()
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[Any] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: commands.put_nowait(conn.recv()))
    conn.send(sim.port)
    pcm = caller_audio()
    results: list[dict[str, Any]] = []
    calls: set[asyncio.Task[Any]] = set()
    live: dict[str, float] = {}
    arrivals: asyncio.Task[Any] | None = None
    seq = 0

    async def one_call(number: str, agent: str, hold: float) -> None:
        nonlocal seq
        seq += 1
        start = time.monotonic()
        ch = await sim.inbound_call(
            destination=number,
            caller_id=f"+1555123{seq % 10000:04d}",
            context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": agent, "sipagent_number": number},
            park_timeout="10:NORMAL_TEMPORARY_FAILURE",
        )
        live[ch.uuid] = start
        sim.set_caller_audio(ch.uuid, pcm, loop=True)
        await asyncio.sleep(max(0.0, start + hold - time.monotonic()))
        with contextlib.suppress(KeyError):
            await sim.remote_hangup(ch.uuid)
        end = time.monotonic()
        del live[ch.uuid]
        client = sim.fork_client(ch.uuid)
        results.append(_call_result(ch.uuid, start, end, client))
        if client is not None:
            client.heard_frames.clear()
        if ch.audio is not None:
            ch.audio.heard_frames.clear()
        sim._gone.pop(ch.uuid, None)

    async def arrive(number: str, agent: str, interval: float, hold: float, count: int | None) -> None:
        t0, n = time.monotonic(), 0
        while count is None or n < count:
            task = asyncio.ensure_future(one_call(number, agent, hold))
            calls.add(task)
            task.add_done_callback(calls.discard)
            n += 1
            await asyncio.sleep(max(0.0, t0 + n * interval - time.monotonic()))

    while True:
        cmd, arg = await commands.get()
        if cmd == "load":
            arrivals = asyncio.ensure_future(arrive(**arg))
        elif cmd == "live":
            t = os.times()
            conn.send((len(live), time.monotonic(), t.user + t.system))
        elif cmd == "stop_arrivals":
            if arrivals is not None:
                arrivals.cancel()
            conn.send(None)
        elif cmd == "drain":
            if arrivals is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await arrivals
            if calls:
                await asyncio.wait(set(calls), timeout=arg)
            conn.send(results[:])
            results.clear()
        elif cmd == "exit":
            loop.remove_reader(conn.fileno())
            await sim.stop()
            conn.send(None)
            return


def _call_result(uuid: str, start: float, end: float, client: Any) -> dict[str, Any]:
    """What the simulator saw of one call: frames sent, audio back, round trips, heard audio."""
    out: dict[str, Any] = {"uuid": uuid, "start": start, "end": end, "connected": False}
    if client is None:
        return out
    sends = client.send_times
    rtts = []
    if sends and client.sent_bytes == len(sends) * FRAME_BYTES:  # one frame per message: message k = frame k
        bursts, j = [], 0
        while (k := burst_at(j) * 2 // FRAME_BYTES) < len(sends):
            bursts.append(sends[k])
            j += 1
        for t in client.__dict__.get("bench", {}).get("onsets", []):
            i = bisect.bisect_left(bursts, t) - 1  # the latest burst sent before its echo came
            if i >= 0 and bursts[i] >= sends[0] + 1.0:
                rtts.append(t - bursts[i])
    heard = 0
    for _, data in client.heard_frames:
        a = array.array("h", data)
        if a and max(a) > 1000:
            heard += 1
    out.update(
        connected=client.connected.is_set(),
        sent_frames=client.sent_frames,
        sent_bytes=client.sent_bytes,
        first_send=sends[0] if sends else None,
        received_bytes=client.received_binary_bytes,
        heard_frames=heard,
        rtts=rtts,
    )
    return out


# -- the system under test ----------------------------------------------------------------------------
def deployment_yaml(
    sim_port: int, bridge_port: int, api_port: int, agents_port: int, tls: bool, workers: int, max_calls: int
) -> str:
    ws = "wss" if tls else "ws"
    base = f"{ws}://127.0.0.1:{agents_port}"
    return f"""\
# generated by bench/e2e.py
freeswitch:
  bind_ip: 127.0.0.1
  max_calls: {max_calls}
  event_socket: {{password: "${{BENCH_ESL_PASSWORD}}"}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
    outbound: {{address: sbc.carrier.example}}
numbers:
  - {{number: "{PROTOCOLS["elevenlabs"][1]}", trunk: carrier, agent: eleven}}
  - {{number: "{PROTOCOLS["twilio"][1]}", trunk: carrier, agent: twilio}}
  - {{number: "{PROTOCOLS["raw"][1]}", trunk: carrier, agent: raw}}
agents:
  - name: eleven
    protocol: elevenlabs
    agent_id: el
    api_key: "${{BENCH_XI_KEY}}"
    url: {base}{EL_PATH}
    audio_format: pcm_16000
  - {{name: twilio, protocol: twilio, url: {base}/twilio}}
  - {{name: raw, protocol: raw, url: {base}/raw, audio_format: pcm_16000}}
orchestrator:
  media_url: ws://127.0.0.1:{bridge_port}
  media: {{listen_ip: 127.0.0.1, port: {bridge_port}, workers: {workers}}}
  api: {{listen_ip: 127.0.0.1, port: {api_port}, token: "${{BENCH_API_TOKEN}}"}}
  records: calls.jsonl
  nodes: [{{name: sim, host: 127.0.0.1, port: {sim_port}}}]
"""


def start_sipagent(work: Path, pinned: bool, tls_dir: Path | None, extra_env: dict[str, str] | None = None) -> Any:
    env = {
        **os.environ,
        "BENCH_ESL_PASSWORD": ESL_PASSWORD,
        "BENCH_XI_KEY": API_KEY,
        "BENCH_API_TOKEN": API_TOKEN,
        **(extra_env or {}),
    }
    if tls_dir is not None:
        env["SSL_CERT_FILE"] = str(tls_dir / "ca.crt")
    # the CLI of this checkout: the venv's `sipagent` script runs whichever checkout the venv was installed from
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    log = open(work / "sipagent.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "run", str(work / "deployment.yaml")],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, {0})) if pinned and (os.cpu_count() or 1) > 1 else None,
    )


def wait_healthy(api_port: int, proc: Any, work: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sipagent run exited {proc.returncode}:\n{(work / 'sipagent.log').read_text()[-3000:]}")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(f"http://127.0.0.1:{api_port}/healthz", timeout=1) as r,
        ):
            if r.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"sipagent run not healthy in {timeout} s:\n{(work / 'sipagent.log').read_text()[-3000:]}")


def stop_process(proc: Any, timeout: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# -- metrics --------------------------------------------------------------------------------------
_BUCKET = re.compile(r"^sipagent_media_added_latency_seconds_bucket\{([^}]*)\} (\S+)$", re.M)


def scrape(api_port: int) -> dict[tuple[str, float], float]:
    """Cumulative latency bucket counts by (direction, upper bound), summed over workers."""
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[tuple[str, float], float] = defaultdict(float)
    for labels, value in _BUCKET.findall(text):
        parts = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        le = math.inf if parts["le"] == "+Inf" else float(parts["le"])
        out[(parts["direction"], le)] += float(value)
    return out


def quantile(
    before: dict[tuple[str, float], float], after: dict[tuple[str, float], float], direction: str, q: float
) -> tuple[float, int]:
    """The ``q`` quantile (seconds) of the samples between two scrapes, linear within buckets; and their count."""
    bounds = sorted(le for d, le in after if d == direction)
    cum = [after[(direction, le)] - before.get((direction, le), 0.0) for le in bounds]
    total = cum[-1] if cum else 0.0
    if total <= 0:
        return float("nan"), 0
    target = q * total
    lower, below = 0.0, 0.0
    for le, c in zip(bounds, cum, strict=True):
        if c >= target:
            if math.isinf(le):
                return lower, int(total)  # beyond the last bound: report the bound
            return lower + (le - lower) * (target - below) / max(c - below, 1e-9), int(total)
        lower, below = le, c
    return lower, int(total)


# -- a run -----------------------------------------------------------------------------------------
class Rig:
    """The processes of one protocol's run and the driver's pipes to them."""

    def __init__(
        self, args: argparse.Namespace, protocol: str, work: Path, agents_port: int, tls_dir: Path | None
    ) -> None:
        self.args, self.protocol, self.work = args, protocol, work
        ctx = mp.get_context("spawn")
        self.sim_pipe, child = ctx.Pipe()
        self.sim = ctx.Process(target=sim_process, args=(child,), daemon=True)
        self.sim.start()
        sim_port = self.sim_pipe.recv()
        self.api_port, self.bridge_port = _free_port(), _free_port()
        max_calls = max(200, 4 * args.concurrent, 4 * args.setup_rate * (args.setup_hold + 2))
        (work / "deployment.yaml").write_text(
            deployment_yaml(
                sim_port,
                self.bridge_port,
                self.api_port,
                agents_port,
                tls_dir is not None,
                args.workers,
                int(max_calls),
            )
        )
        self.proc = start_sipagent(work, pinned=args.workers <= 1, tls_dir=tls_dir)
        wait_healthy(self.api_port, self.proc, work)
        self.meter = Meter(self.proc.pid)

    def sim_cmd(self, cmd: str, arg: Any = None) -> Any:
        self.sim_pipe.send((cmd, arg))
        return self.sim_pipe.recv() if cmd != "load" else None

    def load(self, interval: float, hold: float, count: int | None) -> None:
        agent, number = PROTOCOLS[self.protocol]
        self.sim_cmd("load", {"number": number, "agent": agent, "interval": interval, "hold": hold, "count": count})

    def close(self) -> None:
        with contextlib.suppress(Exception):
            stop_process(self.proc)
        with contextlib.suppress(Exception):
            self.sim_cmd("exit")
        self.sim.join(timeout=5)
        if self.sim.is_alive():
            self.sim.kill()


def _call_seconds(results: list[dict[str, Any]], t0: float, t1: float) -> float:
    return sum(max(0.0, min(r["end"], t1) - max(r["start"], t0)) for r in results)


def _setups(results: list[dict[str, Any]], t0: float, t1: float) -> float:
    """Calls set up and torn down in [t0, t1]: half a call for each arrival and for each end inside it."""
    return sum(0.5 * (t0 <= r["start"] < t1) + 0.5 * (t0 <= r["end"] < t1) for r in results)


def run_protocol(
    args: argparse.Namespace, protocol: str, agents: Any, agents_port: int, tls_dir: Path | None, work: Path
) -> dict[str, Any]:
    """One protocol: warm-up, idle, steady, setup. Returns the figures."""
    counts0 = _agents_counts(agents)
    rig = Rig(args, protocol, work, agents_port, tls_dir)
    all_results: list[dict[str, Any]] = []
    out: dict[str, Any] = {"protocol": protocol}
    try:
        # warm-up: first calls pay imports and first-use costs
        q = 0.25 if args.quick else 1.0  # the smoke run shortens the pauses between phases
        rig.load(0.2, 2.0 * q, 1 if args.quick else 3)
        all_results += rig.sim_cmd("drain", 30)
        time.sleep(1.5 * q)
        # idle
        i0 = rig.meter.mark()
        time.sleep(2.0 * q)
        i1 = rig.meter.mark()
        idle = (i1[1] - i0[1]) / (i1[0] - i0[0])
        rss_idle = rig.meter.rss()
        out["idle_pct"] = idle * 100
        # steady
        n, hold = args.concurrent, args.hold
        rig.load(hold / n, hold, None)
        time.sleep(hold + 1.0 * q)
        profiler = _start_profiler(args, rig, protocol, args.seconds)
        before = scrape(rig.api_port)
        a0 = _agents_cpu(agents)
        s0 = rig.sim_cmd("live")
        m0 = rig.meter.mark()
        rss_samples = []
        scrape_every = max(1.0, min(10.0, 0.5 * 4096 / max(1.0, n * 50 / 16)))  # the bridge keeps 4096 samples
        end = m0[0] + args.seconds
        next_scrape = m0[0] + scrape_every
        while time.monotonic() < end:
            time.sleep(min(0.5, max(0.0, end - time.monotonic())))
            rss_samples.append(rig.meter.rss())
            if time.monotonic() >= next_scrape and time.monotonic() < end - 0.5:
                scrape(rig.api_port)  # moves the bridge's samples into the histogram; read at the end
                next_scrape += scrape_every
        m1 = rig.meter.mark()
        s1 = rig.sim_cmd("live")
        a1 = _agents_cpu(agents)
        after = scrape(rig.api_port)
        if profiler is not None:
            out["profile"] = _finish_profiler(profiler)
        rig.sim_cmd("stop_arrivals")
        steady = rig.sim_cmd("drain", hold + 10)
        all_results += steady
        t0, t1 = m0[0], m1[0]
        window = t1 - t0
        cs_s = _call_seconds(steady, t0, t1)
        mean_calls = cs_s / window
        cpu_s = m1[1] - m0[1]
        out.update(
            window=window,
            mean_calls=mean_calls,
            cpu_pct=cpu_s / window * 100,
            cpu_per_call=cpu_s / window * 100 / max(mean_calls, 1e-9),
            kernel=(m1[2] - m0[2]) / max(cpu_s, 1e-9),
            kb_per_call=(_pct(rss_samples, 0.5) - rss_idle) / max(mean_calls, 1e-9) / 1024,
            sim_pct=(s1[2] - s0[2]) / (s1[1] - s0[1]) * 100,
            agents_pct=(a1[2] - a0[2]) / (a1[1] - a0[1]) * 100,
        )
        for direction in ("to_agent", "to_caller"):
            p50, count = quantile(before, after, direction, 0.5)
            p99, _ = quantile(before, after, direction, 0.99)
            out[f"{direction}_p50"], out[f"{direction}_p99"], out[f"{direction}_samples"] = p50 * 1e3, p99 * 1e3, count
        in_window = [r for r in steady if r.get("first_send") is not None]
        rtts = [x for r in in_window for x in r["rtts"]]
        out["rtt_p50"], out["rtt_p99"] = _pct(rtts, 0.5) * 1e3, _pct(rtts, 0.99) * 1e3
        sent = sum(r.get("sent_frames", 0) for r in in_window)
        nominal = sum(max(0.0, r["end"] - r["first_send"]) * 1000 / FRAME_MS for r in in_window)
        out["sent"] = sent / max(nominal, 1e-9)
        # setup: many short calls
        time.sleep(1.0 * q)
        profiler = _start_profiler(args, rig, f"{protocol}-setup")
        f0 = rig.meter.mark()
        count = args.setup_calls
        rig.load(1.0 / args.setup_rate, args.setup_hold, count)
        setup = rig.sim_cmd("drain", count / args.setup_rate + args.setup_hold + 20)
        all_results += setup
        _wait_records(work / "calls.jsonl", {r["uuid"] for r in all_results}, 10.0)
        time.sleep(0.5 * q)  # sessions closing after the records
        f1 = rig.meter.mark()
        if profiler is not None:
            out["setup_profile"] = _finish_profiler(profiler)
        cs_f = _call_seconds(setup, f0[0], f1[0])
        # two phases, two unknowns: cpu - idle·t = setups·S + call_seconds·M
        y_s, y_f = cpu_s - idle * window, (f1[1] - f0[1]) - idle * (f1[0] - f0[0])
        n_s, n_f = _setups(steady, t0, t1), float(len(setup))
        det = n_s * cs_f - n_f * cs_s
        if abs(det) > 1e-9:
            setup_cpu = (y_s * cs_f - y_f * cs_s) / det
            media = (n_s * y_f - n_f * y_s) / det
        else:
            setup_cpu = media = float("nan")
        out.update(setup_ms=setup_cpu * 1e3, media_pct=media * 100, setup_calls=len(setup), setups_in_window=n_s)
        out["phases"] = {  # the two equations' terms: CPU above idle (s), setups, call seconds
            "steady": (round(y_s, 3), n_s, round(cs_s, 1)),
            "setup": (round(y_f, 3), n_f, round(cs_f, 1)),
        }
        out.update(_records(work / "calls.jsonl", all_results))
        counts = Counter(_agents_counts(agents))
        counts.subtract(counts0)
        out["agent_counts"] = {k: v for k, v in counts.items() if v}
    finally:
        rig.close()
    return out


def _agents_cpu(agents: Any) -> tuple[dict[str, int], float, float]:
    agents.send("count")
    return agents.recv()  # type: ignore[no-any-return]


def _agents_counts(agents: Any) -> dict[str, int]:
    return _agents_cpu(agents)[0]


def _wait_records(path: Path, uuids: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            seen = {json.loads(line)["id"] for line in path.read_text().splitlines() if line.strip()}
            if uuids <= seen:
                return
        time.sleep(0.2)


def _records(path: Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Did every call connect its agent and get audio back (the records), and hear it (the simulator)."""
    records = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                records[rec["id"]] = rec
    outcomes: Counter[str] = Counter()
    ok = dropped = dropped_ms = heard = 0
    to_agent = to_caller = 0
    for r in results:
        rec = records.get(r["uuid"])
        media = (rec or {}).get("media") or {}
        frames = media.get("frames") or {}
        outcome = media.get("outcome", "no record" if rec is None else "no media")
        outcomes[outcome] += 1
        to_agent += frames.get("to_agent", 0)
        to_caller += frames.get("to_caller", 0)
        dropped += frames.get("dropped_to_agent", 0)
        dropped_ms += media.get("playback_dropped_ms", 0) or 0
        good = outcome == "completed" and frames.get("to_agent", 0) > 0 and frames.get("to_caller", 0) > 0
        ok += good and r.get("received_bytes", 0) > 0
        heard += r.get("heard_frames", 0) > 0
    return {
        "calls": len(results),
        "calls_ok": ok,
        "calls_heard": heard,
        "outcomes": dict(outcomes),
        "dropped": dropped,
        "dropped_ms": dropped_ms,
        "to_agent_msgs": to_agent,
        "to_caller_msgs": to_caller,
    }


# -- profiling ------------------------------------------------------------------------------------
def _start_profiler(args: argparse.Namespace, rig: Rig, name: str, duration: float | None = None) -> Any:
    """py-spy on ``sipagent run`` for ``duration`` s (None: until :func:`_finish_profiler` interrupts it)."""
    if not args.profile:
        return None
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not os.path.exists(exe):
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    out = Path(args.profile) / f"{name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        exe,
        "record",
        "--pid",
        str(rig.proc.pid),
        "--duration",
        str(int(duration or 600)),
        "--rate",
        "200",
        "--format",
        "raw",
        "--nonblocking",
        "--gil",
        "-o",
        str(out),
    ]
    if args.workers > 1:
        cmd.append("--subprocesses")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lambda: _pin(1))
    return proc, out, duration


def _finish_profiler(profiler: Any) -> dict[str, Any]:
    proc, out, duration = profiler
    if duration is None:
        proc.send_signal(signal.SIGINT)  # py-spy writes what it has
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)
    if not out.exists():
        return {}
    return profile_summary(out.read_text())


_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def _frame_name(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "orchestrator/", "lib/python3"):
        if marker in file:
            file = (marker if marker == "orchestrator/" else "") + file.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({file})"


_LOOP_FRAMES = ("Runner.run ", "run_forever ", "BaseEventLoop.run_forever ", "BaseEventLoop._run_once ")
LOOP = "(the event loop itself: uvloop's C code, its socket reads and polls)"


def profile_summary(raw: str, top: int = 15) -> dict[str, Any]:
    """Top functions by own samples and by total samples from py-spy's raw (collapsed stacks) output.

    Stacks are cut below the event loop (the CLI and ``asyncio.run`` frames above it are in every sample); a
    sample whose innermost Python frame is the loop's is the loop's own C code. Without ``--native`` a Python
    function's own time includes the C it calls (``transport.write`` and its ``send`` in ``AgentConnection.send``).
    """
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        cut = max((i for i, f in enumerate(frames) if f.startswith(_LOOP_FRAMES)), default=-1)
        names = [_frame_name(f) for f in frames[cut + 1 :]] or [LOOP if cut >= 0 else _frame_name(frames[-1])]
        samples += n
        own[names[-1]] += n
        for name in set(names):
            total[name] += n
    return {"samples": samples, "own": own.most_common(top), "total": total.most_common(top)}


# -- real FreeSWITCH ------------------------------------------------------------------------------
def run_real(
    args: argparse.Namespace, protocol: str, agents_port: int, agents: Any, tls_dir: Path | None, work: Path
) -> dict[str, Any]:
    """The same load through a real FreeSWITCH and sipp; both processes' CPU over the same window."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "integration")]
    from deployments import loopback_example, render_and_start
    from switch import MODE, free_port, suite_env, suite_ports

    if MODE != "process":
        raise SystemExit("--real needs FREESWITCH_BIN (a FreeSWITCH binary to start here)")
    if shutil.which("sipp") is None:
        raise SystemExit("--real needs sipp (apt-get install sip-tester)")
    streaming = os.environ.get("FREESWITCH_STREAMING_FORK", "")
    dep = work / "deployment"
    dep.mkdir(parents=True)
    ports = suite_ports("bridge", "api")
    doc = loopback_example(dep, ports, max_calls=max(200, 4 * args.concurrent))
    office = doc["trunks"][1]  # TCP, allowed by address (sipp calls from 127.0.0.2), plain RTP
    office["inbound"]["codecs"] = ["PCMU"]
    base = f"{'wss' if tls_dir else 'ws'}://127.0.0.1:{agents_port}"
    doc["agents"] = [
        {
            "name": "eleven",
            "protocol": "elevenlabs",
            "agent_id": "el",
            "api_key": "${ELEVENLABS_API_KEY}",
            "url": f"{base}{EL_PATH}",
            "audio_format": "pcm_16000",
        },
        {"name": "twilio", "protocol": "twilio", "url": f"{base}/twilio"},
        {"name": "raw", "protocol": "raw", "url": f"{base}/raw", "audio_format": "pcm_16000"},
    ]
    numbers = dict(zip(PROTOCOLS, ("+15557650101", "+15557650102", "+15557650103"), strict=True))
    doc["numbers"] = [{"number": numbers[p], "trunk": office["name"], "agent": PROTOCOLS[p][0]} for p in PROTOCOLS]
    doc["orchestrator"] = {
        "media_url": f"ws://127.0.0.1:{ports['bridge']}",
        "media": {
            "listen_ip": "127.0.0.1",
            "port": ports["bridge"],
            "playback": "streaming" if streaming else "file",
            "workers": args.workers,
        },
        "api": {"listen_ip": "127.0.0.1", "port": ports["api"], "token": "${SIPAGENT_API_TOKEN}"},
        "records": "calls.jsonl",
        "nodes": [{"name": "fs1", "port": ports["esl"]}],
    }
    mods = None
    if streaming:  # the jambonz fork in place of the installed mod_audio_fork (as the integration suite does)
        from test_freeswitch_media import _mod_dir_with

        (work / "modroot").mkdir()
        mods = _mod_dir_with(streaming, work / "modroot")
    (work / "fs").mkdir()
    fs = render_and_start(doc, work / "fs", dep, mod_dir=mods)
    assert fs.proc is not None
    fs_pid = fs.proc.pid
    if (os.cpu_count() or 1) > 1:  # threads FreeSWITCH makes later inherit their creator's CPU
        for tid in os.listdir(f"/proc/{fs_pid}/task"):
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), {args.fs_cpu % (os.cpu_count() or 1)})
    env = {**suite_env(), "ELEVENLABS_API_KEY": API_KEY}
    proc = start_sipagent(dep, pinned=args.workers <= 1, tls_dir=tls_dir, extra_env=env)
    out: dict[str, Any] = {"protocol": protocol, "mode": "real", "playback": "streaming" if streaming else "file"}
    sipp = None
    try:
        wait_healthy(ports["api"], proc, dep)
        sa, fsm = Meter(proc.pid), Meter(fs_pid)
        n, hold = args.concurrent, args.hold
        total = int(n * (hold + 1.0 + args.seconds + 5) / hold) + n
        scenario = _sipp_scenario(dep / "uac.xml", hold)
        sipp_log = open(dep / "sipp.log", "wb")  # noqa: SIM115 - lives as long as the process
        sipp = subprocess.Popen(
            ["sipp", "-sf", str(scenario), f"127.0.0.1:{ports['tcp']}", "-s", numbers[protocol],
             "-r", str(n), "-rp", str(int(hold * 1000)), "-l", str(n), "-m", str(total), "-nostdin",
             "-t", "t1", "-i", "127.0.0.2", "-p", str(free_port()),
             "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2)],
            cwd=dep, stdout=sipp_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=lambda: _pin(1),
        )  # fmt: skip
        time.sleep(hold + 1.0)
        before = scrape(ports["api"])
        a0 = _agents_cpu(agents)
        sp0 = Meter(sipp.pid).mark()
        m0, f0 = sa.mark(), fsm.mark()
        samples = []
        end = m0[0] + args.seconds
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            samples.append(_fs_channels(fs))
        m1, f1 = sa.mark(), fsm.mark()
        sp1 = Meter(sipp.pid).mark()
        a1 = _agents_cpu(agents)
        after = scrape(ports["api"])
        window = m1[0] - m0[0]
        mean_calls = sum(samples) / max(len(samples), 1)
        out.update(
            window=window,
            mean_calls=mean_calls,
            cpu_per_call=(m1[1] - m0[1]) / window * 100 / max(mean_calls, 1e-9),
            fs_cpu_per_call=(f1[1] - f0[1]) / window * 100 / max(mean_calls, 1e-9),
            sipp_pct=(sp1[1] - sp0[1]) / window * 100,
            agents_pct=(a1[2] - a0[2]) / (a1[1] - a0[1]) * 100,
        )
        for direction in ("to_agent", "to_caller"):
            out[f"{direction}_p50"] = quantile(before, after, direction, 0.5)[0] * 1e3
            out[f"{direction}_p99"] = quantile(before, after, direction, 0.99)[0] * 1e3
        sipp.send_signal(signal.SIGUSR1)  # sipp: place no more calls, end when the running ones have
        with contextlib.suppress(subprocess.TimeoutExpired):
            sipp.wait(timeout=hold + 15)
        time.sleep(2.0)
        out.update(_real_records(dep / "calls.jsonl", hold))
    finally:
        if sipp is not None and sipp.poll() is None:
            sipp.kill()
            sipp.wait()
        stop_process(proc)
        fs.stop()
    return out


def _fs_channels(fs: Any) -> int:
    m = re.search(r"(\d+) total", fs.api("show channels count"))
    return int(m.group(1)) if m else 0


def _real_records(path: Path, hold: float) -> dict[str, Any]:
    """Outcomes, and whether RTP and the agent's audio flowed both ways, from the records."""
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
    outcomes: Counter[str] = Counter()
    ok = rtp_ok = 0
    for r in recs:
        media = r.get("media") or {}
        frames = media.get("frames") or {}
        outcomes[media.get("outcome", "no media")] += 1
        ok += media.get("outcome") == "completed" and frames.get("to_agent", 0) > 0 and frames.get("to_caller", 0) > 0
        q = r.get("quality") or {}
        rtp_ok += q.get("packets_in", 0) > 0.8 * hold * 50 and q.get("packets_out", 0) > 0.8 * hold * 50
    return {"calls": len(recs), "calls_ok": ok, "rtp_ok": rtp_ok, "outcomes": dict(outcomes)}


def _sipp_scenario(path: Path, hold: float) -> Path:
    """INVITE, stream the fixture's 440 Hz PCMU tone (looped) for ``hold`` s, BYE."""
    fixtures = ROOT.parents[0] / "shared" / "fixtures" / "freeswitch-1.10.12" / "05-audio-fork"
    text = (fixtures / "uac.xml").read_text()
    text = text.replace("05-audio-fork/tone440-pcmu.wav", str(fixtures / "tone440-pcmu.wav"))
    bye = f"""
  <pause milliseconds="{int(hold * 1000)}"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Fixture Caller" <sip:+15550001234@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>"""
    head, _, _ = text.partition('  <recv request="BYE"/>')
    path.write_text(head + bye)
    return path


# -- driver ---------------------------------------------------------------------------------------
def _ratios(cpu: float) -> str:
    lo, hi = FS_PER_CALL
    return (
        f"{cpu / hi:.2f}-{cpu / lo:.2f} of FreeSWITCH's {lo}-{hi} %, {cpu / FS_ISSUE:.2f} of the issue's {FS_ISSUE} %"
    )


def print_result(r: dict[str, Any]) -> None:
    p = r["protocol"]
    print(
        f"{p:10} {r['mean_calls']:6.1f} {r['cpu_per_call']:9.3f} {r['idle_pct']:5.1f} {r['setup_ms']:8.2f} "
        f"{r['media_pct']:7.3f} {r['to_agent_p50']:7.3f}/{r['to_agent_p99']:<7.3f} "
        f"{r['to_caller_p50']:7.3f}/{r['to_caller_p99']:<7.3f} {r['rtt_p50']:6.1f}/{r['rtt_p99']:<6.1f} "
        f"{r['kb_per_call']:7.1f} {r['calls_ok']:4d}/{r['calls']:<4d} {r['dropped'] + r['dropped_ms']:5d} "
        f"{r['sent']:5.0%} {r['sim_pct']:5.0f} {r['agents_pct']:6.0f} {r['kernel']:6.0%}",
        flush=True,
    )


HEADER = (
    f"{'protocol':10} {'calls':>6} {'cpu%/call':>9} {'idle%':>5} {'setup ms':>8} {'media%':>7} "
    f"{'to_agent p50/p99 ms':>15} {'to_caller p50/p99 ms':>15} {'rtt p50/p99':>13} {'KB/call':>7} "
    f"{'calls ok':>9} {'drop':>5} {'sent':>5} {'sim%':>5} {'agents%':>6} {'kernel':>6}"
)


def main() -> None:
    """Run each protocol and print one line per protocol, then the details."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", default="elevenlabs,twilio,raw")
    parser.add_argument("--concurrent", type=int, default=50)
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each steady-phase call lasts")
    parser.add_argument("--seconds", type=float, default=20.0, help="the steady window")
    parser.add_argument("--setup-calls", type=int, default=100)
    parser.add_argument("--setup-rate", type=float, default=25.0, help="setup-phase arrivals per second")
    parser.add_argument("--setup-hold", type=float, default=1.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tls", action="store_true", help="agents on wss:// and https:// (a CA made here)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy record sipagent run in each steady window")
    parser.add_argument("--real", action="store_true", help="a real FreeSWITCH and sipp (FREESWITCH_BIN)")
    parser.add_argument("--fs-cpu", type=int, default=1, help="--real: the CPU FreeSWITCH is pinned to")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, records, deployment)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 calls of 2 s, a 1 s window")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()
    if args.quick:
        args.concurrent, args.hold, args.seconds = 4, 2.0, 1.0
        args.setup_calls, args.setup_rate, args.setup_hold = 6, 12.0, 0.5
    protocols = [p for p in args.protocols.split(",") if p]
    for p in protocols:
        if p not in PROTOCOLS:
            raise SystemExit(f"unknown protocol {p!r}: choose from {', '.join(PROTOCOLS)}")
    _pin(1)
    commit = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True)
    print(
        f"code under test: {ROOT} {commit.stdout.strip()}\n"
        f"cpus={os.cpu_count()} python={sys.version.split()[0]} concurrent={args.concurrent} hold={args.hold}s "
        f"window={args.seconds}s setup={args.setup_calls}x{args.setup_hold}s@{args.setup_rate}/s "
        f"workers={args.workers}{' (not pinned)' if args.workers > 1 else ' (pinned to CPU 0)'} tls={args.tls}"
        f"{' real FreeSWITCH' if args.real else ' simulator'}",
        flush=True,
    )
    results = []
    with contextlib.ExitStack() as stack:
        if args.keep:
            tmpdir = Path(tempfile.mkdtemp(prefix="sipagent-e2e-"))
            print(f"work directory: {tmpdir}")
        else:
            tmpdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sipagent-e2e-")))
        tls_dir = None
        if args.tls:
            from orchestrator.config.selfsigned import generate

            tls_dir = tmpdir / "tls"
            generate(tls_dir, ["localhost"], ["127.0.0.1"])
        ctx = mp.get_context("spawn")
        agents, child = ctx.Pipe()
        agents_proc = ctx.Process(target=agents_process, args=(child, str(tls_dir) if tls_dir else None), daemon=True)
        agents_proc.start()
        agents_port = agents.recv()
        try:
            if args.real:
                for p in protocols:
                    r = run_real(args, p, agents_port, agents, tls_dir, tmpdir / f"real-{p}")
                    results.append(r)
                    _print_real(r)
            else:
                print(HEADER, flush=True)
                for p in protocols:
                    work = tmpdir / p
                    work.mkdir()
                    r = run_protocol(args, p, agents, agents_port, tls_dir, work)
                    results.append(r)
                    print_result(r)
                _print_details(results)
        finally:
            agents.send("stop")
            with contextlib.suppress(EOFError):
                agents.recv()
            agents_proc.join(timeout=5)
            if agents_proc.is_alive():
                agents_proc.kill()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


def _print_details(results: list[dict[str, Any]]) -> None:
    for r in results:
        print(
            f"\n{r['protocol']}: {r['cpu_pct']:.1f} % of a core for {r['mean_calls']:.1f} calls up "
            f"(window {r['window']:.1f} s, {r['setups_in_window']:.0f} setups in it); "
            f"ratio {_ratios(r['cpu_per_call'])}; goal {GOAL}"
        )
        print(
            f"  latency samples (1 in 16 messages): to_agent {r['to_agent_samples']}, "
            f"to_caller {r['to_caller_samples']}; outcomes {r['outcomes']}; heard by caller "
            f"{r['calls_heard']}/{r['calls']}; messages to agent {r['to_agent_msgs']}, to caller "
            f"{r['to_caller_msgs']}; dropped frames {r['dropped']}, playback ms {r['dropped_ms']}"
        )
        print(f"  setup solve (CPU s above idle, setups, call seconds): {r['phases']}; agents: {r['agent_counts']}")
        for key, phase in (("profile", "steady window"), ("setup_profile", "setup phase")):
            prof = r.get(key)
            if not prof:
                continue
            print(f"  py-spy, {phase}: {prof['samples']} samples; top own time:")
            for name, n in prof["own"]:
                print(f"    {n / max(prof['samples'], 1):6.1%}  {name}")
            print("  top total time:")
            for name, n in prof["total"]:
                print(f"    {n / max(prof['samples'], 1):6.1%}  {name}")


def _print_real(r: dict[str, Any]) -> None:
    sa, fs = r["cpu_per_call"], r["fs_cpu_per_call"]
    print(
        f"real {r['protocol']} ({r['playback']} playback): {r['mean_calls']:.1f} calls up over {r['window']:.1f} s; "
        f"sipagent run {sa:.3f} %/call, FreeSWITCH {fs:.3f} %/call: ratio {sa / fs:.2f} (goal {GOAL})\n"
        f"  added latency to_agent {r['to_agent_p50']:.3f}/{r['to_agent_p99']:.3f} ms, to_caller "
        f"{r['to_caller_p50']:.3f}/{r['to_caller_p99']:.3f} ms; calls ok {r['calls_ok']}/{r['calls']}, RTP both "
        f"ways {r['rtp_ok']}/{r['calls']} {r['outcomes']}; sipp {r['sipp_pct']:.0f} %, agents {r['agents_pct']:.0f} %",
        flush=True,
    )


if __name__ == "__main__":
    main()
