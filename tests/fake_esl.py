"""A scripted event socket on loopback: each accepted connection runs one script, so a test can make
FreeSWITCH (or something pretending to be it) misbehave at exactly one point of the conversation."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

Script = Callable[["Peer"], Awaitable[None]]

GREETING = b"Content-Type: auth/request\n\n"
OK = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
INVALID = b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n"
_BYE = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
DISCONNECT = b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n%s" % (len(_BYE), _BYE)
_DENIED = b"Access Denied, go away.\n"
DENIED = b"Content-Type: text/rude-rejection\nContent-Length: %d\n\n%s" % (len(_DENIED), _DENIED)


def api_response(body: bytes) -> bytes:
    """An ``api/response`` frame."""
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)


def plain_event(name: str, **headers: str) -> bytes:
    """A ``text/event-plain`` frame (values are not URL-encoded: keep them plain)."""
    block = f"Event-Name: {name}\n" + "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in headers.items()) + "\n"
    body = block.encode()
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(body), body)


class Peer:
    """One accepted connection, as its script sees it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, index: int) -> None:
        self.reader, self.writer, self.index = reader, writer, index
        self.commands: list[str] = []

    async def command(self) -> str:
        """The next command the client sent (its first line; header lines are kept in ``commands`` too)."""
        data = await self.reader.readuntil(b"\n\n")
        text = data.decode().strip("\n")
        self.commands.append(text)
        return text.split("\n", 1)[0]

    def send(self, data: bytes) -> None:
        """Write raw bytes."""
        self.writer.write(data)

    async def handshake(self, password: str = "ClueCon", subscribe: bool = True) -> None:
        """Greet, check the password, accept the subscription: what FreeSWITCH does for a good client."""
        self.send(GREETING)
        line = await self.command()
        if line != f"auth {password}":
            self.send(INVALID + DISCONNECT)
            await self.writer.drain()
            self.writer.close()
            raise ConnectionAbortedError("wrong password")
        self.send(OK)
        if subscribe:
            assert (await self.command()).startswith("event ")
            self.send(OK)

    async def serve_commands(self) -> None:
        """Answer ``api`` with ``+OK`` and others with ``+OK`` until the client leaves."""
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                line = await self.command()
                self.send(api_response(b"+OK\n") if line.startswith("api ") else OK)

    async def until_closed(self) -> None:
        """Wait for the client to close the connection."""
        with contextlib.suppress(ConnectionError):
            while await self.reader.read(65536):
                pass


class FakeEsl:
    """``scripts[i]`` runs the i-th connection (the last one runs every later connection)."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = scripts
        self.accepted = 0
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def __aenter__(self) -> FakeEsl:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        index = self.accepted
        self.accepted += 1
        script = self.scripts[min(index, len(self.scripts) - 1)]
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            await script(Peer(reader, writer, index))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # CancelledError too: asyncio 3.11's start_server callback chokes on a cancelled handler
        finally:
            self.tasks.discard(task)
            writer.close()


async def good(peer: Peer) -> None:
    """A well-behaved FreeSWITCH."""
    await peer.handshake()
    await peer.serve_commands()
