"""What the media-port flood tests run in processes of their own: the hostile clients (:class:`FloodProcess`) and
a media worker under a descriptor limit (:func:`limited_worker`) with a thread that can take every free descriptor
(:func:`hog`). Kept apart from the test modules so that a spawned process imports only what it runs: the flood
process nothing of the project, the worker the media worker (not the test module's simulator and controller).

The flood runs until :meth:`FloodProcess.stop` (or ``seconds``, whichever comes first), the hog until its release
file exists (or ``hold`` seconds): the tests wait for events, not for fixed times."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import random
import resource
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

NOFILE = 256  # the worker's descriptor limit


def hog(trigger: str, release: str, hold: float = 10.0) -> None:
    """Thread: once ``trigger`` exists, take every free descriptor of the process until ``release`` exists (at most
    ``hold`` seconds)."""
    while not os.path.exists(trigger):
        time.sleep(0.01)
    held = []
    with contextlib.suppress(OSError):
        while True:
            held.append(os.open("/dev/null", os.O_RDONLY))
    os.write(2, f"HOGGED {len(held)} descriptors\n".encode())
    deadline = time.monotonic() + hold
    while not os.path.exists(release) and time.monotonic() < deadline:  # stat() needs no descriptor
        time.sleep(0.01)
    for fd in held:
        os.close(fd)
    os.write(2, b"RELEASED\n")


def limited_worker(
    deployment: Any,
    secret: bytes,
    index: int,
    path: str,
    *,
    nofile: int,
    loop: str,
    trigger: str,
    log: str,
    release: str = "",
) -> None:
    """A media worker process under a descriptor limit it cannot raise; its output goes to ``log``. The hog takes
    the descriptors once ``trigger`` exists and gives them back once ``release`` (default: ``trigger``.release)
    does."""
    from orchestrator.media import workers  # here: the flood process needs none of it

    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    threading.Thread(target=hog, args=(trigger, release or f"{trigger}.release"), daemon=True).start()
    if loop == "uvloop":
        workers.worker_main(deployment, secret, index, path)
        return
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker{index} %(name)s %(levelname)s %(message)s")
    asyncio.run(workers._worker(deployment, secret, index, path))


# -- hostile clients (their own process, like an attacker) ---------------------------------------------
@dataclass
class Flood:
    port: int
    until: float = 0.0
    stopped: bool = False  # told to stop while still on (not ended by its ``seconds``)
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


def flood_process(conn: Any, port: int, seconds: float, silent: list[str], sustained: bool, idle: int) -> None:
    """Process: the hostile clients, for ``seconds`` or until told to stop (reconnecting when ``sustained``);
    sends back what they saw."""

    async def run() -> Flood:
        loop = asyncio.get_running_loop()
        flood = Flood(port)
        flood.until = loop.time() + seconds

        def on_stop() -> None:
            conn.recv()
            now = loop.time()
            flood.stopped = now < flood.until
            flood.until = min(flood.until, now)
            loop.remove_reader(conn.fileno())

        loop.add_reader(conn.fileno(), on_stop)
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
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(conn.fileno())
        return flood

    conn.send("ready")
    assert conn.recv() == "go"
    flood = asyncio.run(run())
    conn.send({k: v for k, v in vars(flood).items()})
    conn.close()


class FloodProcess:
    """The hostile process: :meth:`ready` waits until it is up, :meth:`go` lets its clients loose, :meth:`stop`
    ends the flood (else it ends ``seconds`` after :meth:`go`), :meth:`result` waits for what they saw."""

    def __init__(self, port: int, seconds: float, silent: list[str], sustained: bool = True, idle: int = 120) -> None:
        ctx = mp.get_context("spawn")
        self.port = port
        self.pipe, child = ctx.Pipe()
        self.proc = ctx.Process(target=flood_process, args=(child, port, seconds, silent, sustained, idle), daemon=True)
        self.proc.start()
        self._ready = False

    async def ready(self) -> FloodProcess:
        if not self._ready:
            assert await asyncio.to_thread(self.pipe.recv) == "ready"
            self._ready = True
        return self

    async def go(self) -> FloodProcess:
        await self.ready()
        self.pipe.send("go")
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):  # already over (its ``seconds`` ran out) and gone
            self.pipe.send("stop")

    async def result(self) -> Flood:
        data = await asyncio.to_thread(self.pipe.recv)
        await asyncio.to_thread(self.proc.join, 5)
        flood = Flood(self.port)
        for k, v in data.items():
            setattr(flood, k, v)
        return flood
