"""Every way setting up the agent connection fails ends the call the configured way, with its own outcome.

DNS, TCP, TLS (untrusted certificate, wrong host name, not TLS at all), the signed-URL request (refused,
timeout, non-2xx, not JSON, no or a bad ``signed_url``, too large, a broken HTTP answer), the WebSocket
handshake (refused, wrong ``Sec-WebSocket-Accept``, closed or garbage mid-handshake) and an agent that
connects and then says nothing: each on loopback against a fake, each checked on the call control fake
(hang-up, or the fallback prompt), in the record's ``media.outcome`` and ``detail``, and in the metrics —
and no exception escapes as an unhandled task error.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fake_agents import FakeElevenLabs, FakeHttp, FakeRawAgent, ScriptedServer, server_tls
from test_bridge import Harness, run_clocks, wait_until

from orchestrator.agents import connect
from orchestrator.agents.http_client import HttpClient
from orchestrator.config.selfsigned import generate
from orchestrator.media import session as session_module

CID = "c0ffee00-0000-4000-8000-000000000001"
PROMPT = "/usr/share/sorry.wav"
OK_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
)


@pytest.fixture(autouse=True)
async def nothing_escapes(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[Any]]:
    """Collect exceptions that escape a session's tasks or reach the loop's exception handler."""
    escaped: list[Any] = []
    original = session_module.Session._done

    def done(self: session_module.Session, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            escaped.append(task.exception())
        original(self, task)

    monkeypatch.setattr(session_module.Session, "_done", done)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: escaped.append(context))
    yield escaped
    loop.set_exception_handler(None)
    assert escaped == []


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA with a certificate for 127.0.0.1 (``right``) and one for another name only (``other.test``)."""
    d = tmp_path_factory.mktemp("agent-tls")
    generate(d / "right", ["agent.test"], ["127.0.0.1"])
    generate(d / "other", ["other.test"])
    return d


def trust(monkeypatch: pytest.MonkeyPatch, ca: Path) -> None:
    """Make the bridge trust ``ca`` (instead of the system store) for agents and signed-URL requests."""
    ctx = ssl.create_default_context(cafile=str(ca))
    monkeypatch.setattr(connect, "_tls_context", lambda: ctx)


async def failed(h: Harness, prompt: bool = False) -> dict[str, Any]:
    """Wait for the call to be ended the configured way; then the record's media summary."""
    await wait_until(lambda: h.control.calls, timeout=5)
    if prompt:
        assert h.control.calls[0][:3] == ("prompt", CID, PROMPT)
    else:
        assert h.control.calls[0] == ("hangup", CID, "error", "orchestrator")
    h.notice("hangup", CID)
    record = h.control.records[CID]
    outcome = record["outcome"]
    if prompt:
        assert h.control.calls[0][3] == outcome
    assert f'sipagent_media_errors_total{{kind="{outcome}"}} 1.0' in h.bridge.metrics.render().decode()
    assert f'sipagent_media_sessions_ended_total{{outcome="{outcome}"}} 1.0' in h.bridge.metrics.render().decode()
    connected = outcome in ("agent_first_message_timeout", "agent_closed")
    assert (record["agent_connect_ms"] is not None) is connected
    return record


def raw(url: str, **more: Any) -> dict[str, Any]:
    return {"protocol": "raw", "url": url, "connect_timeout_seconds": 2, **more}


def eleven(url: str, **more: Any) -> dict[str, Any]:
    return {"protocol": "elevenlabs", "agent_id": "agent_1", "api_key": "xi-secret", "url": url, **more}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- DNS and TCP ------------------------------------------------------------------------------------
@pytest.mark.parametrize("signed", [False, True], ids=["websocket", "signed-url"])
async def test_dns_failure_is_agent_unreachable(monkeypatch: pytest.MonkeyPatch, signed: bool) -> None:
    async def no_such_name(host: str, *args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", no_such_name)
    url = "ws://agent.example.invalid:8000/v1/convai/conversation"
    async with Harness(eleven(url) if signed else raw(url), on_failure="prompt", fallback_prompt=PROMPT) as h:
        await h.fork()
        record = await failed(h, prompt=True)
    assert record["outcome"] == "agent_unreachable"
    assert "agent.example.invalid" in record["detail"] or "not resolved" in record["detail"]


@pytest.mark.parametrize("signed", [False, True], ids=["websocket", "signed-url"])
async def test_refused_tcp_is_agent_unreachable(signed: bool) -> None:
    url = f"ws://127.0.0.1:{free_port()}/v1/convai/conversation"
    async with Harness(eleven(url) if signed else raw(url)) as h:
        await h.fork()
        record = await failed(h)
    assert record["outcome"] == "agent_unreachable"
    assert ("signed URL request" in record["detail"]) is signed


async def test_tcp_reset_during_the_handshake_is_a_handshake_failure() -> None:
    async with ScriptedServer(after="reset") as server, Harness(raw(server.url())) as h:
        await h.fork()
        record = await failed(h)
    assert record["outcome"] in ("agent_handshake_failed", "agent_unreachable")


# -- TLS ----------------------------------------------------------------------------------------------
async def test_trusted_certificate_for_the_right_address_connects(monkeypatch: pytest.MonkeyPatch, certs: Path) -> None:
    trust(monkeypatch, certs / "right" / "ca.crt")
    async with FakeRawAgent(tls=server_tls(certs / "right", "agent.test")) as agent, Harness(raw(agent.url)) as h:
        await h.fork()
        await agent.wait_session()
        await agent.wait_for(lambda: agent.session.of_type("start"))
        assert h.control.calls == []  # the control case for the two below


@pytest.mark.parametrize(
    ("ca", "served", "expect"),
    [
        (None, "right", "certificate not accepted"),  # the system store does not know the test CA
        ("other", "other", "certificate not accepted"),  # trusted, but issued for other.test, not 127.0.0.1
        ("right", "other", "certificate not accepted"),  # a certificate from a CA that is not trusted
    ],
    ids=["untrusted-ca", "wrong-host-name", "other-ca"],
)
async def test_bad_certificates_are_agent_tls_failed(
    monkeypatch: pytest.MonkeyPatch, certs: Path, ca: str | None, served: str, expect: str
) -> None:
    if ca is not None:
        trust(monkeypatch, certs / ca / "ca.crt")
    tls = server_tls(certs / served, "agent.test" if served == "right" else "other.test")
    async with (
        FakeRawAgent(tls=tls) as agent,
        Harness(raw(agent.url), on_failure="prompt", fallback_prompt=PROMPT) as h,
    ):
        await h.fork()
        record = await failed(h, prompt=True)
        assert agent.sessions == []  # no WebSocket was ever opened
    assert record["outcome"] == "agent_tls_failed" and expect in record["detail"]


async def test_a_server_that_does_not_speak_tls_is_agent_tls_failed() -> None:
    async with (
        ScriptedServer(b"HTTP/1.1 400 Bad Request\r\n\r\n", immediately=True) as server,
        Harness(raw(server.url("wss"))) as h,
    ):
        await h.fork()
        record = await failed(h)
    assert record["outcome"] == "agent_tls_failed"


async def test_tls_on_the_signed_url_request(monkeypatch: pytest.MonkeyPatch, certs: Path) -> None:
    tls = server_tls(certs / "right", "agent.test")
    async with FakeHttp(200, {"signed_url": "wss://127.0.0.1:1/x"}, tls=tls) as api:
        async with Harness(eleven(api.url("wss"))) as h:  # the test CA is not trusted
            await h.fork()
            record = await failed(h)
        assert record["outcome"] == "agent_tls_failed" and "signed URL request" in record["detail"]
        assert api.requests == []


# -- the signed-URL request ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "body", "expect"),
    [
        (401, {"detail": "invalid api key"}, "HTTP 401"),
        (500, b"oops", "HTTP 500"),
        (302, b"", "HTTP 302"),  # redirects are not followed
        (200, b"<html>not json</html>", "not JSON"),
        (200, {"url": "wss://x"}, "signed_url"),
        (200, {"signed_url": "https://api.example/x"}, "signed_url"),
        (200, {"signed_url": 7}, "signed_url"),
        (200, [1, 2], "signed_url"),
        (200, {"signed_url": "wss://"}, "unusable agent URL"),
        (200, b"x" * 100_000, "larger than"),
    ],
)
async def test_bad_signed_url_answers_are_agent_signed_url_failed(status: int, body: object, expect: str) -> None:
    async with FakeHttp(status, body) as api, Harness(eleven(api.url())) as h:
        await h.fork()
        record = await failed(h)
        assert api.requests and b"xi-api-key: xi-secret" in api.requests[0]
        assert b"accept-encoding: identity" in api.requests[0].lower()  # read raw: no decompression bomb
    assert record["outcome"] == "agent_signed_url_failed" and expect in record["detail"]
    assert "xi-secret" not in record["detail"]


async def test_calls_share_one_http_client_for_their_signed_url_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """No per-call client (and so no per-call TLS context or CA bundle load): the bridge makes one at start,
    every call's signed-URL request goes through it on one kept-alive connection, and stop() closes it."""
    made: list[HttpClient] = []
    real = connect.HttpClient

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(self)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(connect, "HttpClient", Counting)
    calls = [f"c0ffee00-0000-4000-8000-00000000000{i}" for i in range(1, 4)]
    async with FakeHttp(401, {"detail": "no"}, after="keep") as api, Harness(eleven(api.url())) as h:
        assert h.bridge.http is not None and len(made) == 1
        for n, call_id in enumerate(calls, 1):
            await h.fork(call_id)
            await wait_until(lambda n=n: len(api.requests) == n, timeout=5)  # type: ignore[misc]
        await wait_until(lambda: len(h.control.calls) == len(calls), timeout=5)
        assert len(api.requests) == len(calls) and len(made) == 1
        assert made[0].opened == 1  # one after the other: the same connection, kept alive
    assert made[0].is_closed and h.bridge.http is None


async def test_a_ws_signed_url_for_a_wss_agent_is_refused(monkeypatch: pytest.MonkeyPatch, certs: Path) -> None:
    trust(monkeypatch, certs / "right" / "ca.crt")
    tls = server_tls(certs / "right", "agent.test")
    signed = {"signed_url": "ws://127.0.0.1:1/x?token=secret-token"}
    async with FakeHttp(200, signed, tls=tls) as api, Harness(eleven(api.url("wss"))) as h:
        await h.fork()
        record = await failed(h)
    assert record["outcome"] == "agent_signed_url_failed" and "not wss://" in record["detail"]
    assert "secret-token" not in record["detail"]


@pytest.mark.parametrize(
    "answer",
    [b"", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab"],
    ids=["closed-without-answer", "not-http", "body-cut-short"],
)
async def test_broken_signed_url_http_is_agent_signed_url_failed(answer: bytes) -> None:
    async with ScriptedServer(answer) as api, Harness(eleven(api.url())) as h:
        await h.fork()
        record = await failed(h)
    assert record["outcome"] == "agent_signed_url_failed"


async def test_signed_url_request_without_an_answer_is_agent_connect_timeout() -> None:
    async with ScriptedServer(after="stall") as api, Harness(eleven(api.url(), connect_timeout_seconds=0.3)) as h:
        await h.fork()
        record = await failed(h)
    assert record["outcome"] == "agent_connect_timeout"
    assert "0.3 s" in record["detail"] or "in time" in record["detail"]


async def test_a_signed_url_to_a_dead_agent_is_agent_unreachable() -> None:
    signed = {"signed_url": f"ws://127.0.0.1:{free_port()}/x?token=t0ken"}
    async with FakeHttp(200, signed) as api, Harness(eleven(api.url())) as h:
        await h.fork()
        record = await failed(h)
    assert record["outcome"] == "agent_unreachable" and "t0ken" not in record["detail"]


async def test_a_good_signed_url_connects() -> None:
    async with FakeElevenLabs(api_key="xi-secret") as agent, Harness(eleven(agent.url)) as h:
        await h.fork()
        await agent.wait_for(lambda: agent.sessions and agent.session.of_type("conversation_initiation_client_data"))
        assert agent.session.query["token"] == "signed-token" and h.control.calls == []


# -- the WebSocket handshake --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 500 Internal Server Error\r\n\r\n",
        [b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello", b" world"],  # the body in a second segment
        OK_101 % b"bm90IHRoZSByaWdodCBrZXk=",  # wrong Sec-WebSocket-Accept
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",  # no Upgrade header
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",  # not HTTP at all
        b"HTTP/1.1 101 Swit",  # closed in the middle of the answer
        b"",  # closed without an answer
        b"X-Filler: " + b"y" * 20_000,  # an answer head that never ends
    ],
    ids=["403", "500", "200-split-body", "wrong-accept", "no-upgrade", "garbage", "cut-short", "closed", "huge"],
)
async def test_failed_websocket_handshakes_are_agent_handshake_failed(answer: bytes | list[bytes]) -> None:
    async with (
        ScriptedServer(answer, after="stall" if isinstance(answer, list) else "close") as server,
        Harness(raw(server.url()), on_failure="prompt", fallback_prompt=PROMPT) as h,
    ):
        await h.fork()
        record = await failed(h, prompt=True)
    assert record["outcome"] == "agent_handshake_failed"
    assert record["detail"].startswith(f"agent 127.0.0.1:{server.port}: ")


async def test_a_handshake_that_never_answers_is_agent_connect_timeout() -> None:
    async with ScriptedServer(after="stall") as server, Harness(raw(server.url(), connect_timeout_seconds=0.3)) as h:
        await h.fork()
        record = await failed(h)
    assert record["outcome"] == "agent_connect_timeout" and "WebSocket handshake" in record["detail"]


# -- connected, then silent ---------------------------------------------------------------------------------
async def test_elevenlabs_that_never_answers_the_initiation_is_agent_first_message_timeout() -> None:
    async with (
        FakeElevenLabs(metadata=False) as agent,
        Harness(
            {"protocol": "elevenlabs", "agent_id": "a", "url": agent.url, "first_message_timeout_seconds": 0.3},
            on_failure="prompt",
            fallback_prompt=PROMPT,
        ) as h,
    ):
        await h.fork()
        record = await failed(h, prompt=True)
        await agent.wait_for(lambda: agent.session.closed.is_set())
        assert agent.session.close_code == 1011
    assert record["outcome"] == "agent_first_message_timeout" and "0.3 s" in record["detail"]


async def test_only_understood_messages_count_as_the_first_message() -> None:
    async with (
        FakeElevenLabs(metadata=False) as agent,
        Harness(
            {"protocol": "elevenlabs", "agent_id": "a", "url": agent.url, "first_message_timeout_seconds": 30}
        ) as h,
    ):
        await h.fork()
        await agent.wait_session()
        await agent.send_bytes(b"\x00\x01 not json")
        await agent.send_text("[]")
        sess = h.bridge.sessions[CID]
        await wait_until(lambda: sess.stats.violations == 2)
        run_clocks(sess, 30)
        record = await failed(h)
    assert record["outcome"] == "agent_first_message_timeout"


async def test_an_answered_initiation_stops_the_first_message_clock() -> None:
    async with (
        FakeElevenLabs() as agent,
        Harness(
            {"protocol": "elevenlabs", "agent_id": "a", "url": agent.url, "first_message_timeout_seconds": 30}
        ) as h,
    ):
        await h.fork()
        await agent.wait_session()
        sess = h.bridge.sessions[CID]
        await wait_until(lambda: sess.heard)
        run_clocks(sess, 3600)
        assert h.control.calls == [] and sess.state == "open"


@pytest.mark.parametrize("limit", [None, 30])
async def test_raw_agents_may_stay_silent_unless_a_limit_is_set(limit: float | None) -> None:
    async with FakeRawAgent() as agent, Harness(raw(agent.url, first_message_timeout_seconds=limit)) as h:
        await h.fork()
        await agent.wait_session()
        sess = h.bridge.sessions[CID]
        await wait_until(lambda: sess.state == "open")
        run_clocks(sess, 3600)
        if limit is None:
            assert h.control.calls == []
            return
        record = await failed(h)
    assert record["outcome"] == "agent_first_message_timeout"


async def test_a_close_before_the_first_message_is_a_failure_even_if_normal() -> None:
    async with (
        FakeRawAgent(close_after=1, close_code=1000) as agent,
        Harness(raw(agent.url), on_failure="prompt", fallback_prompt=PROMPT) as h,
    ):
        await h.fork()
        record = await failed(h, prompt=True)
    assert record["outcome"] == "agent_closed" and "before its first message" in record["detail"]


async def test_a_bug_while_opening_is_contained(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: session_module.Session, conn: Any) -> bool:
        raise RuntimeError("bug")

    monkeypatch.setattr(session_module.Session, "agent_opened", broken)
    async with FakeRawAgent() as agent, Harness(raw(agent.url)) as h:
        await h.fork()
        record = await failed(h)
    assert record["outcome"] == "bridge_error" and "could not be processed" in record["detail"]
