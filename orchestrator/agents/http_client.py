"""The HTTP GET client for agents' signed-URL requests: h11 (sans-I/O HTTP/1.1) on asyncio streams, keep-alive pool.

Why not httpx here (it is used elsewhere, e.g. the CLI): this request is on every ElevenLabs call's setup path, and
httpx + httpcore + anyio cost ~0.9 ms of CPU per GET on a kept-alive loopback connection, this client ~0.08 ms
(both measured on one machine with ``python bench/e2e.py --protocols elevenlabs``'s agents and in a micro-benchmark
of 2000 GETs; the call-setup budget is 2 ms). It does one thing: ``GET`` with headers, a deadline and a bounded
body, over ``http://`` or verified ``https://``, reusing idle connections per origin. No redirects (a 3xx is
an answer like any other), no proxies, no decompression (``Accept-Encoding: identity`` unless the caller says
otherwise), no cookies.

Errors: :class:`HttpError` (the peer's HTTP could not be read: closed without an answer, not HTTP, body cut short,
body too large), ``OSError`` / ``ssl.SSLError`` / ``socket.gaierror`` from connecting, ``TimeoutError`` when the
deadline passes, ``ValueError`` for an unusable URL or header. A kept-alive connection the server closed while idle
is retried once on a new connection (GET is idempotent); a new connection is never retried.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import h11

#: header block bound (h11 refuses a larger incomplete event)
MAX_HEADERS = 16 * 1024
_READ = 65536


class HttpError(Exception):
    """The server's answer could not be read as HTTP/1.1 (or broke a bound)."""


@dataclass(frozen=True, slots=True)
class Response:
    """A complete answer."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class _Stale(Exception):
    """A reused connection ended before any byte of an answer."""


@dataclass(slots=True)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    http: h11.Connection = field(
        default_factory=lambda: h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEADERS)
    )
    idle_since: float = 0.0

    def close(self) -> None:
        self.writer.close()


class HttpClient:
    """GETs with a pool of kept-alive connections per ``(scheme, host, port)``; one per media bridge."""

    def __init__(
        self,
        ssl_context: Callable[[], ssl.SSLContext],
        *,
        max_idle_per_origin: int = 20,
        idle_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        user_agent: str = "sipagent",
    ) -> None:
        self._ssl_context = ssl_context
        self._max_idle = max_idle_per_origin
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._user_agent = user_agent
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self.is_closed = False
        self.opened = 0  # connections opened (tests and benchmarks read it)

    async def get(self, url: str, headers: Mapping[str, str], *, timeout: float, max_body: int) -> Response:
        """``GET url``: the whole answer within ``timeout`` seconds, its body at most ``max_body`` bytes."""
        if self.is_closed:
            raise RuntimeError("HTTP client is closed")
        key, target = _origin(url)
        request = self._request(key, target, headers)
        async with asyncio.timeout(timeout):
            conn = self._take_idle(key)
            if conn is not None:
                try:
                    return await self._exchange(key, conn, request, max_body)
                except _Stale:
                    pass  # the server closed it while it was idle: once more on a new connection
            conn = await self._open(key)
            try:
                return await self._exchange(key, conn, request, max_body)
            except _Stale:
                raise HttpError("connection closed without an answer") from None

    async def aclose(self) -> None:
        """Close the idle connections; later GETs are refused."""
        self.is_closed = True
        pool, self._idle = self._idle, {}
        for conns in pool.values():
            for conn in conns:
                conn.close()

    def _request(self, key: tuple[str, str, int], target: str, headers: Mapping[str, str]) -> h11.Request:
        scheme, host, port = key
        authority = f"[{host}]" if ":" in host else host
        if port != (443 if scheme == "https" else 80):
            authority = f"{authority}:{port}"
        names = {name.lower() for name in headers}
        fields = [("Host", authority)]
        if "user-agent" not in names:
            fields.append(("User-Agent", self._user_agent))
        if "accept-encoding" not in names:
            fields.append(("Accept-Encoding", "identity"))
        fields += [(name, value) for name, value in headers.items() if name.lower() != "host"]
        try:
            return h11.Request(method="GET", target=target, headers=fields)
        except h11.LocalProtocolError as exc:
            raise ValueError(f"unusable request: {exc}") from None

    def _take_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        conns = self._idle.get(key)
        now = self._clock()
        while conns:
            conn = conns.pop()
            fresh = now - conn.idle_since <= self._idle_seconds
            if fresh and not conn.writer.is_closing() and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    async def _open(self, key: tuple[str, str, int]) -> _Connection:
        scheme, host, port = key
        if scheme == "https":
            reader, writer = await asyncio.open_connection(host, port, ssl=self._ssl_context(), server_hostname=host)
        else:
            reader, writer = await asyncio.open_connection(host, port)
        self.opened += 1
        return _Connection(reader, writer)

    async def _exchange(
        self, key: tuple[str, str, int], conn: _Connection, request: h11.Request, max_body: int
    ) -> Response:
        done = False
        try:
            response = await self._roundtrip(conn, request, max_body)
            done = True
        finally:
            if not done:
                conn.close()
        http = conn.http
        if http.our_state is h11.DONE and http.their_state is h11.DONE and not self.is_closed:
            http.start_next_cycle()
            conns = self._idle.setdefault(key, [])
            if len(conns) < self._max_idle:
                conn.idle_since = self._clock()
                conns.append(conn)
                return response
        conn.close()
        return response

    async def _roundtrip(self, conn: _Connection, request: h11.Request, max_body: int) -> Response:
        http = conn.http
        conn.writer.write(http.send(request) + http.send(h11.EndOfMessage()))
        started = False  # any byte of an answer seen
        status = 0
        headers: list[tuple[bytes, bytes]] = []
        body = bytearray()
        while True:
            try:
                event = http.next_event()
            except h11.RemoteProtocolError as exc:
                raise HttpError(f"not an HTTP/1.1 answer ({exc})") from None
            if event is h11.NEED_DATA:
                try:
                    data = await conn.reader.read(_READ)
                except (ConnectionResetError, BrokenPipeError):
                    if not started:
                        raise _Stale from None
                    raise
                if not data and not started:
                    raise _Stale
                started = started or bool(data)
                try:
                    http.receive_data(data)
                except h11.RemoteProtocolError as exc:
                    raise HttpError(f"not an HTTP/1.1 answer ({exc})") from None
            elif isinstance(event, h11.InformationalResponse):
                continue
            elif isinstance(event, h11.Response):
                status, headers = event.status_code, list(event.headers)
                for name, value in headers:
                    if name == b"content-length" and value.isdigit() and int(value) > max_body:
                        raise HttpError(f"answer larger than {max_body} bytes")
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > max_body:
                    raise HttpError(f"answer larger than {max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return Response(status, headers, bytes(body))
            elif isinstance(event, h11.ConnectionClosed):
                raise HttpError("connection closed before the answer was complete")
            else:  # pragma: no cover - h11.PAUSED cannot happen before EndOfMessage
                raise HttpError(f"unexpected HTTP event {type(event).__name__}")


def _origin(url: str) -> tuple[tuple[str, str, int], str]:
    """``((scheme, host, port), request target)`` of an ``http://`` / ``https://`` URL, or ``ValueError``."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"not an http(s) URL (scheme {scheme!r})")
    host = parts.hostname
    if not host:
        raise ValueError("no host in the URL")
    port = parts.port or (443 if scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return (scheme, host, port), target
