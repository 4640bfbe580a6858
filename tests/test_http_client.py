"""The signed-URL HTTP client (``orchestrator.agents.http_client``): keep-alive reuse, stale connections, bounds,
deadlines, and hostile answers (anything a server sends ends as a response or an ``HttpError``, nothing else)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fake_agents import FakeHttp, ScriptedServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrator.agents import connect
from orchestrator.agents.http_client import HttpClient, HttpError, _Connection


def client(**kw: Any) -> HttpClient:
    return HttpClient(connect.tls_context, **kw)


async def test_requests_share_one_kept_alive_connection() -> None:
    async with FakeHttp(200, {"signed_url": "wss://x/y"}, after="keep") as api:
        http = client()
        for _ in range(5):
            r = await http.get(api.url("http", "/s?agent_id=a"), {"xi-api-key": "k"}, timeout=2, max_body=1000)
            assert r.status == 200 and b"signed_url" in r.body
        assert http.opened == 1 and len(api.requests) == 5
        head = api.requests[0].lower()
        assert head.startswith(b"get /s?agent_id=a http/1.1\r\n")
        assert f"host: 127.0.0.1:{api.port}".encode() in head and b"xi-api-key: k" in head
        assert b"accept-encoding: identity" in head
        await http.aclose()
    with pytest.raises(RuntimeError):
        await http.get(api.url("http"), {}, timeout=1, max_body=10)


async def test_a_connection_the_server_closed_while_idle_is_retried_once_on_a_new_one() -> None:
    async with FakeHttp(200, {"ok": 1}, after="close") as api:
        http = client()
        for _ in range(3):
            assert (await http.get(api.url("http"), {}, timeout=2, max_body=100)).status == 200
        assert len(api.requests) == 3 and http.opened == 3
        await http.aclose()


async def test_a_new_connection_closed_without_an_answer_is_an_error_not_retried() -> None:
    async with ScriptedServer(b"") as api:
        http = client()
        with pytest.raises(HttpError, match="without an answer"):
            await http.get(api.url("http"), {}, timeout=2, max_body=100)
        assert len(api.requests) == 1
        await http.aclose()


async def test_connection_close_answers_are_not_kept() -> None:
    async with FakeHttp(200, b"{}", headers={"Connection": "close"}, after="keep") as api:
        http = client()
        await http.get(api.url("http"), {}, timeout=2, max_body=100)
        await http.get(api.url("http"), {}, timeout=2, max_body=100)
        assert http.opened == 2
        await http.aclose()


async def test_idle_connections_expire_on_the_injected_clock() -> None:
    now = [0.0]
    async with FakeHttp(200, b"{}", after="keep") as api:
        http = client(idle_seconds=30, clock=lambda: now[0])
        await http.get(api.url("http"), {}, timeout=2, max_body=100)
        now[0] = 29.0
        await http.get(api.url("http"), {}, timeout=2, max_body=100)
        assert http.opened == 1
        now[0] = 60.0
        await http.get(api.url("http"), {}, timeout=2, max_body=100)
        assert http.opened == 2
        await http.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",  # announced too large: refused unread
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"800\r\n" + b"x" * 0x800 + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + b"y" * 3000,  # read until close
    ],
    ids=["content-length", "chunked", "until-close"],
)
async def test_bodies_larger_than_the_bound_are_refused(answer: bytes) -> None:
    async with ScriptedServer(answer) as api:
        http = client()
        with pytest.raises(HttpError, match="larger than 1000 bytes"):
            await http.get(api.url("http"), {}, timeout=2, max_body=1000)
        await http.aclose()


async def test_redirects_are_answers_not_followed() -> None:
    async with FakeHttp(302, b"", headers={"Location": "http://elsewhere.example/"}) as api:
        http = client()
        r = await http.get(api.url("http"), {}, timeout=2, max_body=100)
        assert r.status == 302 and len(api.requests) == 1
        await http.aclose()


async def test_the_deadline_covers_the_whole_request() -> None:
    async with ScriptedServer([b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n\r\n"], pause=5, after="stall") as api:
        http = client()
        with pytest.raises(TimeoutError):
            await http.get(api.url("http"), {}, timeout=0.3, max_body=100)
        await http.aclose()


@pytest.mark.parametrize(
    ("url", "headers"),
    [
        ("ftp://h/x", {}),
        ("http:///x", {}),
        ("http://h:99999/x", {}),
        ("http://127.0.0.1:1/x", {"X-Bad": "a\r\nInjected: 1"}),
        ("http://127.0.0.1:1/x", {"Bad Name": "v"}),
    ],
    ids=["scheme", "no-host", "port", "crlf-value", "bad-name"],
)
async def test_unusable_urls_and_headers_are_refused_before_connecting(url: str, headers: dict[str, str]) -> None:
    http = client()
    with pytest.raises(ValueError):
        await http.get(url, headers, timeout=1, max_body=10)
    assert http.opened == 0


class _Writer:
    """Stands in for a StreamWriter: collects writes."""

    def __init__(self) -> None:
        self.data = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=400),
        st.lists(
            st.sampled_from(
                [
                    b"HTTP/1.1 200 OK\r\n",
                    b"HTTP/1.0 404 x\r\n",
                    b"HTTP/1.1 100 Continue\r\n\r\n",
                    b"Content-Length: 3\r\n",
                    b"Content-Length: -1\r\n",
                    b"Content-Length: 99999999999999999999\r\n",
                    b"Transfer-Encoding: chunked\r\n",
                    b"Connection: close\r\n",
                    b"\r\n",
                    b"abc",
                    b"5\r\nhello\r\n0\r\n\r\n",
                    b"zz\r\n",
                    b"\x00\xff",
                ]
            ),
            max_size=12,
        ).map(b"".join),
    )
)
def test_any_answer_is_a_response_or_an_http_error(answer: bytes) -> None:
    async def go() -> None:
        reader = asyncio.StreamReader()
        reader.feed_data(answer)
        reader.feed_eof()
        conn = _Connection(reader, _Writer())  # type: ignore[arg-type]
        http = client()
        request = http._request(("http", "h", 80), "/", {})
        try:
            r = await http._exchange(("http", "h", 80), conn, request, 100)
        except HttpError:
            return
        except Exception as exc:  # _Stale is the one other allowed end: nothing came back
            assert type(exc).__name__ == "_Stale" and not answer, exc
            return
        assert 100 <= r.status < 1000 and len(r.body) <= 100

    asyncio.run(go())
