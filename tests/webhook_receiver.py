"""A webhook receiver for tests: an HTTP/1.1 server on loopback (h11) that records each request, checks its
signature, and answers as the test says (a status, a delay, a ``Retry-After``, or silence)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11

from orchestrator.webhooks import signing


@dataclass
class Request:
    """One request as the receiver got it."""

    headers: dict[str, str]
    body: bytes
    at: float
    valid: bool  # the signature checked out with the receiver's secret

    @property
    def event(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    @property
    def attempt(self) -> int:
        return int(self.headers["sipagent-attempt"])


@dataclass
class Answer:
    """What the receiver answers: ``delay`` seconds later (``None`` status: no answer at all, hold the line)."""

    status: int | None = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


Behaviour = Callable[[Request, int], Answer | Awaitable[Answer]]


class Receiver:
    """``async with Receiver(secret) as r``: ``r.url``; ``r.requests`` in arrival order; ``behaviour(request, n)``
    (n: 1 for the first request) decides each answer."""

    def __init__(self, secret: bytes, behaviour: Behaviour | None = None, port: int = 0) -> None:
        self.secret = secret
        self.port = port
        self.behaviour = behaviour or (lambda _r, _n: Answer())
        self.requests: list[Request] = []
        self.server: asyncio.Server | None = None
        self.arrived = asyncio.Event()
        self._open: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/hook"

    async def __aenter__(self) -> Receiver:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for w in list(self._open):
            w.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 2)

    def events(self, valid_only: bool = True) -> list[dict[str, Any]]:
        """The events received (each once: de-duplicated by id as a receiver should), in arrival order."""
        seen: set[str] = set()
        out = []
        for r in self.requests:
            if valid_only and not r.valid:
                continue
            event = r.event
            if event["id"] not in seen:
                seen.add(event["id"])
                out.append(event)
        return out

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0, what: str = "requests") -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not predicate():
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}; got {len(self.requests)} request(s)")
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), 0.05)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                head: h11.Request | None = None
                body = b""
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        if not data:
                            return
                        conn.receive_data(data)
                    elif isinstance(event, h11.Request):
                        head = event
                    elif isinstance(event, h11.Data):
                        body += bytes(event.data)
                    elif isinstance(event, h11.EndOfMessage):
                        break
                    elif isinstance(event, h11.ConnectionClosed):
                        return
                assert head is not None
                headers = {k.decode().lower(): v.decode() for k, v in head.headers}
                valid = signing.verify(headers.get(signing.HEADER.lower(), ""), body, self.secret, time.time())
                request = Request(headers, body, time.monotonic(), valid)
                self.requests.append(request)
                self.arrived.set()
                answer = self.behaviour(request, len(self.requests))
                if not isinstance(answer, Answer):
                    answer = await answer
                if answer.delay:
                    await asyncio.sleep(answer.delay)
                if answer.status is None:
                    await asyncio.sleep(3600)  # hold the line: the sender's timeout ends it
                extra = [(k.encode(), v.encode()) for k, v in answer.headers.items()]
                writer.write(
                    conn.send(h11.Response(status_code=answer.status, headers=[(b"content-length", b"2"), *extra]))
                    or b""
                )
                writer.write(conn.send(h11.Data(data=b"ok")) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.CancelledError):
            return
        finally:
            self._open.discard(writer)
            writer.close()
