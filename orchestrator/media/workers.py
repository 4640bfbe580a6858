"""Media bridge across processes: N worker processes share the fork port, the main process keeps call control.

One Python process moves the audio of a few hundred calls per core (``bench/media.py``); a host with
more cores runs ``orchestrator.media.workers`` bridge processes. They all listen on the media port
with ``SO_REUSEPORT``, so the kernel spreads the forks' connections over them, and each connects back
to the main process over a Unix socket (newline-delimited JSON):

* main → worker: call notices (``dtmf``, ``transfer``, ``hold``, ``machine``, ``hangup``, ``ended``) for every
  call — a worker ignores calls it does not carry; ``stop``;
* worker → main: call actions (``hangup``, ``transfer``, ``send_dtmf``, ``record``, ``machine_detection``,
  ``play_and_hangup``,
  ``flush_playback``) answered by ``{"id", "ok", "error"}``; ``claim_fork`` (may this fork connection
  serve the call? asked during its handshake) answered by ``{"id", "ok", "result": true|false}``;
  ``media`` updates for the call record;
  ``metrics`` — the worker's Prometheus exposition, re-exported by the main process with a ``worker``
  label, once a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from orchestrator.config.model import Deployment
from orchestrator.media import fork
from orchestrator.media.bridge import MediaBridge
from orchestrator.metrics import Metrics

log = logging.getLogger("sipagent.media.workers")

#: (fork_failed: the controller ends the call)
NOTICES = ("dtmf", "transfer", "hold", "machine", "hangup", "ended", "fork_buffer_overrun")
ACTIONS = (
    "hangup",
    "transfer",
    "send_dtmf",
    "record",
    "machine_detection",
    "play_and_hangup",
    "flush_playback",
    "claim_fork",
)
MAX_LINE = 1 << 20
MEDIA_GRACE = 2.0  # seconds


class RemoteError(Exception):
    """A call action the main process refused (``code`` as the controller's :class:`CallError`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


# -- main process ----------------------------------------------------------------------------------
class WorkerPool:
    """Starts the worker processes and serves their call actions."""

    def __init__(self, deployment: Deployment, control: Any, metrics: Metrics, secret: bytes, count: int) -> None:
        self.deployment = deployment
        self.control = control
        if hasattr(control, "media_grace"):  # a call's record waits (at most this) for its worker's media summary
            control.media_grace = max(control.media_grace, MEDIA_GRACE)
        self.metrics = metrics
        self.secret = secret
        self.count = count
        self._dir = tempfile.mkdtemp(prefix="sipagent-media-")
        self.path = str(Path(self._dir) / "control.sock")
        self.processes: list[Any] = []
        self.links: dict[int, asyncio.StreamWriter] = {}
        self.exposition: dict[int, str] = {}
        self._server: asyncio.AbstractServer | None = None
        self._connected = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        metrics.registry.register(_WorkerCollector(self))

    async def start(self, timeout: float = 30.0) -> None:
        """Listen for the workers, start them, wait until all are connected and listening."""
        self._server = await asyncio.start_unix_server(self._serve, self.path, limit=MAX_LINE)
        os.chmod(self.path, 0o600)
        ctx = mp.get_context("spawn")
        for index in range(self.count):
            proc = ctx.Process(
                target=worker_main,
                args=(self.deployment, self.secret, index, self.path),
                name=f"sipagent-media-{index}",
                daemon=True,
            )
            proc.start()
            self.processes.append(proc)
        async with asyncio.timeout(timeout):
            await self._connected.wait()
        log.info("%d media workers listening on port %d", self.count, self.deployment.orchestrator.media.port)

    async def stop(self) -> None:
        """Stop the workers (their calls stay up in FreeSWITCH) and the control socket."""
        for writer in self.links.values():
            if not writer.is_closing():
                with contextlib.suppress(ConnectionError, RuntimeError):
                    writer.write(b'{"op":"stop"}\n')
        for proc in self.processes:
            await asyncio.to_thread(proc.join, 10)
            if proc.is_alive():
                proc.kill()
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
            os.rmdir(self._dir)

    def on_notice(self, notice: Any) -> None:
        """Broadcast the call notices the bridge needs to every worker."""
        if notice.kind not in NOTICES:
            return
        line = json.dumps({"op": "notice", "kind": notice.kind, "call": notice.call.uuid, "data": notice.data})
        data = line.encode() + b"\n"
        for writer in self.links.values():
            if not writer.is_closing():
                with contextlib.suppress(ConnectionError, RuntimeError):
                    writer.write(data)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = -1
        try:
            while line := await reader.readline():
                msg = json.loads(line)
                op = msg.get("op")
                if op == "hello":
                    index = int(msg["worker"])
                    self.links[index] = writer
                    if len(self.links) == self.count:
                        self._connected.set()
                elif op in ACTIONS:
                    task = asyncio.create_task(self._act(writer, msg))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                elif op == "media":
                    self.control.media_update(msg["call"], msg["data"], final=msg.get("final") is True)
                elif op == "metrics":
                    self.exposition[index] = msg["text"]
        except (ConnectionError, ValueError) as exc:
            log.warning("media worker %d: control link failed: %s", index, exc)
        finally:
            self.links.pop(index, None)
            if index >= 0:
                log.warning("media worker %d disconnected", index)

    async def _act(self, writer: asyncio.StreamWriter, msg: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"op": "reply", "id": msg["id"], "ok": True}
        try:
            result = await getattr(self.control, msg["op"])(*msg.get("args", []), **msg.get("kwargs", {}))
            if result is not None:
                reply["result"] = result
        except Exception as exc:
            reply.update(ok=False, code=getattr(exc, "code", "error"), error=getattr(exc, "message", None) or str(exc))
        if not writer.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                writer.write(json.dumps(reply).encode() + b"\n")


class _WorkerCollector(Collector):
    """Every worker's metrics, labelled with the worker's index."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[Any]:
        for index, text in sorted(self.pool.exposition.items()):
            for family in text_string_to_metric_families(text):
                if not family.name.startswith(("sipagent_media", "sipagent_agent")):
                    continue
                for sample in family.samples:
                    sample.labels["worker"] = str(index)
                yield family


# -- worker process --------------------------------------------------------------------------------
@dataclass
class _Call:
    uuid: str


@dataclass
class _Notice:
    kind: str
    call: _Call
    data: dict[str, Any] = field(default_factory=dict)


class RemoteControl:
    """The call controller, as seen from a worker: requests over the control link."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self._next = 0
        self._waiting: dict[int, asyncio.Future[Any]] = {}

    def _send(self, msg: dict[str, Any]) -> None:
        self.writer.write(json.dumps(msg).encode() + b"\n")

    async def _request(self, op: str, *args: Any, **kwargs: Any) -> Any:
        self._next += 1
        request_id = self._next
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._send({"op": op, "id": request_id, "args": list(args), "kwargs": kwargs})
        try:
            async with asyncio.timeout(30):
                return await future
        finally:
            self._waiting.pop(request_id, None)

    def reply(self, msg: dict[str, Any]) -> None:
        """An answer from the main process."""
        future = self._waiting.pop(msg["id"], None)
        if future is None or future.done():
            return
        if msg.get("ok"):
            future.set_result(msg.get("result"))
        else:
            future.set_exception(RemoteError(msg.get("code", "error"), msg.get("error", "")))

    async def hangup(self, uuid: str, reason: str = "completed", by: str = "api") -> None:
        await self._request("hangup", uuid, reason, by=by)

    async def transfer(
        self,
        uuid: str,
        target: str,
        *,
        method: str | None = "refer",
        trunk: str | None = None,
        mode: str | None = None,
        brief: str | None = None,
    ) -> None:
        await self._request("transfer", uuid, target, method=method, trunk=trunk, mode=mode, brief=brief)

    async def send_dtmf(self, uuid: str, digits: str, duration_ms: int = 100) -> None:
        await self._request("send_dtmf", uuid, digits, duration_ms)

    async def record(self, uuid: str, action: str) -> dict[str, Any]:
        result = await self._request("record", uuid, action)
        return result if isinstance(result, dict) else {}

    async def machine_detection(self, uuid: str, data: dict[str, Any]) -> None:
        await self._request("machine_detection", uuid, data)

    async def play_and_hangup(self, uuid: str, prompt: str, reason: str, by: str) -> None:
        await self._request("play_and_hangup", uuid, prompt, reason, by)

    async def flush_playback(self, uuid: str) -> None:
        await self._request("flush_playback", uuid)

    def media_update(self, uuid: str, data: dict[str, Any], final: bool = False) -> None:
        self._send({"op": "media", "call": uuid, "data": data, "final": final})

    async def claim_fork(self, uuid: str, token: str) -> bool:
        return await self._request("claim_fork", uuid, token) is True


def worker_main(deployment: Deployment, secret: bytes, index: int, path: str) -> None:
    """Entry point of a worker process."""
    from orchestrator import logs

    logs.setup_worker(deployment, secret, index)  # the level of `sipagent run`, its secrets redacted
    try:
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(_worker(deployment, secret, index, path))


async def _worker(deployment: Deployment, secret: bytes, index: int, path: str) -> None:
    reader, writer = await asyncio.open_unix_connection(path, limit=MAX_LINE)
    control = RemoteControl(writer)
    metrics = Metrics()
    bridge = MediaBridge(deployment, fork.Tokens(secret), control, metrics, reuse_port=True)
    await bridge.start()
    writer.write(json.dumps({"op": "hello", "worker": index}).encode() + b"\n")

    async def report() -> None:
        while True:
            await asyncio.sleep(1.0)
            writer.write(json.dumps({"op": "metrics", "text": metrics.render().decode()}).encode() + b"\n")

    reporter = asyncio.create_task(report())
    try:
        while line := await reader.readline():
            msg = json.loads(line)
            op = msg.get("op")
            if op == "notice":
                bridge.on_notice(_Notice(msg["kind"], _Call(msg["call"]), msg.get("data") or {}))
            elif op == "reply":
                control.reply(msg)
            elif op == "stop":
                break
    finally:
        reporter.cancel()
        await bridge.stop()
