"""Kamailio's RPC over the jsonrpcs datagram transport (a unix socket), for reloading the edge live.

jsonrpcs reads one JSON-RPC document per datagram on ``dgram_socket`` and sends the response to the address the
datagram came from, so the client binds a socket of its own: an abstract one by default (Linux; nothing to clean
up, no file permissions), or a file in ``reply_dir`` when Kamailio runs in another network namespace (a container
sharing the socket's directory), where an abstract address does not reach. The client connects to Kamailio's
socket, so the kernel accepts datagrams from that socket only. Each call is bounded by a timeout, each reply by
a size.

Reloads (Kamailio 5.6): ``dispatcher.reload`` re-reads the dispatcher list (refused with "Ongoing reload" within
the dispatcher's ``reload_delta``, 5 s by default, of the previous one), ``permissions.addressReload`` the address
table, ``tls.reload`` the TLS configuration. kamailio.cfg itself needs a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from orchestrator.edge.jsonrpc import ProtocolError, decode_response, encode_request

#: what ``apply`` reloads after writing dispatcher.list, address.list and tls.cfg
RELOADS = ("dispatcher.reload", "permissions.addressReload", "tls.reload")
MAX_REPLY = 256 * 1024
MAX_REQUEST = 65000  # jsonrpcs reads datagrams into a 65456-byte buffer


class RpcError(Exception):
    """Kamailio's RPC could not be used; the text says why in plain words."""


class RpcUnavailable(RpcError):
    """No Kamailio on the socket: missing, nobody bound to it, not permitted."""


class RpcTimeout(RpcError):
    """Kamailio did not answer in time (or the request was not a document it answers)."""


class RpcBadReply(RpcError):
    """An answer that is not a JSON-RPC response, or larger than allowed."""


class RpcFailed(RpcError):
    """Kamailio answered with an error (``code``, ``message``)."""

    def __init__(self, method: str, code: int, message: str) -> None:
        super().__init__(f"{method}: error {code}: {message}")
        self.method, self.code, self.message = method, code, message


@dataclass(frozen=True)
class Reloaded:
    """One reload's outcome: ``error`` is Kamailio's message when it refused, else ``result`` is its answer."""

    method: str
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether Kamailio did it."""
        return self.error is None


class RpcClient:
    """Calls over one reply socket, one at a time (``async with RpcClient(path) as rpc: await rpc.call(...)``)."""

    def __init__(
        self,
        socket_path: str | Path,
        *,
        timeout: float = 3.0,
        max_reply: int = MAX_REPLY,
        reply_dir: str | Path | None = None,
    ) -> None:
        self.socket_path = str(socket_path)
        self.timeout, self.max_reply = timeout, max_reply
        self.reply_dir = None if reply_dir is None else str(reply_dir)
        self._sock: socket.socket | None = None
        self._reply_path: str | None = None
        self._next_id = 1

    async def __aenter__(self) -> RpcClient:
        self.open()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        """Bind the reply socket and connect it to Kamailio's (errors: :class:`RpcUnavailable`)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        name = f"sipagent-rpc-{secrets.token_hex(6)}"
        directory = self.reply_dir or tempfile.gettempdir()
        try:
            if self.reply_dir is None and sys.platform == "linux":
                directory = "the abstract namespace"
                sock.bind("\0" + name)
            else:
                path = os.path.join(directory, name + ".sock")
                sock.bind(path)
                self._reply_path = path
        except OSError as exc:
            sock.close()
            self._unlink()
            raise RpcUnavailable(f"cannot bind a reply socket in {directory}: {exc.strerror or exc}") from None
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            self._unlink()
            raise RpcUnavailable(self._why(exc)) from None
        # connected: from now on only Kamailio's socket can send here; drop what anyone sent before
        with contextlib.suppress(BlockingIOError):
            while True:
                sock.recv(1)
        if self._reply_path is not None:
            os.chmod(self._reply_path, 0o666)  # Kamailio may run as another user
        self._sock = sock

    def close(self) -> None:
        """Close the reply socket (and remove its file, if it has one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._unlink()

    def _unlink(self) -> None:
        if self._reply_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._reply_path)
            self._reply_path = None

    def _why(self, exc: OSError) -> str:
        where = f"Kamailio's RPC socket {self.socket_path}"
        if exc.errno == errno.ENOENT:
            return f"{where} does not exist (is Kamailio running with jsonrpcs' datagram transport there?)"
        if exc.errno == errno.ECONNREFUSED:
            return f"nothing listens on {where} (Kamailio stopped?)"
        if exc.errno in (errno.EACCES, errno.EPERM):
            return f"not permitted to use {where} (its mode/group, dgram_mode and dgram_group)"
        if exc.errno in (errno.ENOTSOCK, errno.EPROTOTYPE):
            return f"{self.socket_path} is not a datagram socket"
        return f"cannot use {where}: {exc.strerror or exc}"

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """One RPC: its result; raises :class:`RpcFailed` with Kamailio's message, :class:`RpcTimeout`,
        :class:`RpcUnavailable` or :class:`RpcBadReply`."""
        if self._sock is None:
            raise RuntimeError("RpcClient.call outside 'async with'")
        request_id, self._next_id = self._next_id, self._next_id + 1
        data = encode_request(method, params, request_id)
        if len(data) > MAX_REQUEST:
            raise ValueError(f"{method}: request of {len(data)} bytes, jsonrpcs reads at most {MAX_REQUEST}")
        try:
            response = await asyncio.wait_for(self._exchange(data, request_id), self.timeout)
        except TimeoutError:
            raise RpcTimeout(f"{method}: no answer from Kamailio within {self.timeout:g} s") from None
        except OSError as exc:
            raise RpcUnavailable(f"{method}: {self._why(exc)}") from None
        except ProtocolError as exc:
            raise RpcBadReply(f"{method}: {exc}") from None
        if response.fault is not None:
            raise RpcFailed(method, response.fault.code, response.fault.message)
        return response.result

    async def _exchange(self, data: bytes, request_id: int) -> Any:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self._sock, data)
        while True:
            reply = await loop.sock_recv(self._sock, self.max_reply + 1)
            if len(reply) > self.max_reply:
                raise ProtocolError(f"reply larger than {self.max_reply} bytes")
            response = decode_response(reply)
            if response.id == request_id:
                return response
            # a late answer to an earlier call that timed out: not this one's


async def call(socket_path: str | Path, method: str, params: Sequence[Any] = (), **options: Any) -> Any:
    """One RPC on its own reply socket (options: timeout, max_reply, reply_dir of :class:`RpcClient`)."""
    async with RpcClient(socket_path, **options) as rpc:
        return await rpc.call(method, params)


async def reload(
    socket_path: str | Path,
    methods: Sequence[str] = RELOADS,
    *,
    timeout: float = 3.0,
    max_reply: int = MAX_REPLY,
    reply_dir: str | Path | None = None,
) -> list[Reloaded]:
    """Run each reload method in turn; one Kamailio refuses is reported and the others still run.

    Raises :class:`RpcUnavailable` / :class:`RpcTimeout` / :class:`RpcBadReply` when Kamailio cannot be used
    at all (socket missing, no answer: the remaining reloads are not tried)."""
    done: list[Reloaded] = []
    async with RpcClient(socket_path, timeout=timeout, max_reply=max_reply, reply_dir=reply_dir) as rpc:
        for method in methods:
            try:
                done.append(Reloaded(method, result=await rpc.call(method)))
            except RpcFailed as exc:
                done.append(Reloaded(method, error=f"error {exc.code}: {exc.message}"))
    return done
