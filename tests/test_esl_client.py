"""The event-socket client never dies: hostile frames, refusals and bugs end one connection, it reconnects."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest
from fake_esl import DENIED, GREETING, OK, FakeEsl, Peer, api_response, good, plain_event

from orchestrator.esl import protocol as p
from orchestrator.esl.client import (
    AccessDenied,
    AuthenticationFailed,
    Backoff,
    ConnectionLost,
    Endpoint,
    EslClient,
    HandshakeTimeout,
)


async def until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def client_for(fs: FakeEsl, **kw: Any) -> EslClient:
    kw.setdefault("connect_timeout", 2.0)
    kw.setdefault("backoff", Backoff(0.01, 0.05))
    return EslClient(Endpoint("127.0.0.1", fs.port, "ClueCon", "fs-test"), events=["CHANNEL_ANSWER"], **kw)


def esl_logs(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sipagent.esl" and r.levelno >= level]


def frame(ctype: str, body: bytes, length: bytes | None = None) -> bytes:
    return b"Content-Type: %s\nContent-Length: %s\n\n%s" % (ctype.encode(), length or b"%d" % len(body), body)


def plain(block: bytes) -> bytes:
    return frame("text/event-plain", block)


def jsonev(body: bytes) -> bytes:
    return frame("text/event-json", body)


#: frames FreeSWITCH never sends, each of a different kind of damage
HOSTILE = {
    "length-superscript-two": b"Content-Type: api/response\nContent-Length: \xc2\xb2\n\nxx",
    "length-arabic-indic-digit": "Content-Type: api/response\nContent-Length: ٣\n\nabc".encode(),
    "length-fullwidth-digit": "Content-Type: api/response\nContent-Length: ５\n\nabcde".encode(),
    "length-negative": b"Content-Type: api/response\nContent-Length: -1\n\n",
    "length-plus": b"Content-Type: api/response\nContent-Length: +1\n\nx",
    "length-hex": b"Content-Type: api/response\nContent-Length: 0x10\n\n",
    "length-spaces": b"Content-Type: api/response\nContent-Length:  5 \n\nabcde",
    "length-23-digits": b"Content-Type: api/response\nContent-Length: 99999999999999999999999\n\n",
    "length-5000-digits": b"Content-Type: api/response\nContent-Length: " + b"9" * 5000 + b"\n\n",
    "length-over-max-frame": b"Content-Type: api/response\nContent-Length: 5000\n\n",
    "header-not-utf8": b"Content-Type: \xff\xfe\xfd\n\n",
    "header-nul-bytes": b"\x00\x00\x00\n\n",
    "header-crlf": b"Content-Type: api/response\r\nContent-Length: 0\r\n\r\n",
    "header-no-colon": b"Content-Type api/response\n\n",
    "header-only-name": b"Reply-Text\n\n",
    "header-no-content-type": b"Reply-Text: +OK\n\n",
    "header-block-endless": b"Content-Type: api/response\n" + b"X-Filler: " + b"y" * 70000,
    "http-response": b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n",
    "binary-garbage": bytes(range(256)) * 4,
    "rude-rejection-later": DENIED,
    "plain-length-superscript": plain(b"Event-Name: CUSTOM\nContent-Length: \xc2\xb2\n\nab"),
    "plain-length-negative": plain(b"Event-Name: CUSTOM\nContent-Length: -3\n\nabc"),
    "plain-length-5000-digits": plain(b"Event-Name: CUSTOM\nContent-Length: " + b"7" * 5000 + b"\n\nab"),
    "plain-not-headers": plain(b"no header here\n\n"),
    "plain-empty": plain(b""),
    "plain-blank-first": plain(b"\n\nEvent-Name: X\n"),
    "json-deep-arrays": jsonev(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "json-deep-objects": jsonev(b'{"a":' + b'{"a":' * 50_000 + b"1" + b"}" * 50_001),
    "json-unclosed-deep": jsonev(b"[" * 200_000),
    "json-5000-digit-int": jsonev(b'{"Event-Name": ' + b"1" * 5000 + b"}"),
    "json-not-object": jsonev(b"[1, 2]"),
    "json-invalid": jsonev(b"{Event-Name: x}"),
    "json-not-utf8": jsonev(b'{"Event-Name": "\xff\xfe"}\xff'),
    "json-empty": jsonev(b""),
}


@pytest.mark.parametrize("data", HOSTILE.values(), ids=HOSTILE.keys())
async def test_hostile_frame_ends_that_connection_only(data: bytes, caplog: pytest.LogCaptureFixture) -> None:
    async def hostile(peer: Peer) -> None:
        await peer.handshake()
        await peer.command()  # the client is connected and waits for an answer: send this instead
        peer.send(data)
        await peer.until_closed()

    async with FakeEsl(hostile, good) as fs:
        client = client_for(fs, max_frame=4096)
        await client.start()
        try:
            await client.wait_connected(2)
            with pytest.raises(ConnectionLost):
                await client.api("status")
            await until(lambda: client.connections >= 2 and client.connected)
            assert client.failures == 1 and client.last_error and client.last_exception is not None
            assert await client.api("status") == "+OK\n"  # the new connection works
        finally:
            await client.stop()
    [record] = esl_logs(caplog)  # logged once, with the node and the reason
    assert "fs-test" in record.getMessage() and client.last_error[:20] in record.getMessage()


UNSOLICITED = {
    "reply-without-command": b"Content-Type: command/reply\nReply-Text: +OK\n\n",
    "api-response-without-command": api_response(b"+OK\n"),
    **HOSTILE,
}


@pytest.mark.parametrize("data", UNSOLICITED.values(), ids=UNSOLICITED.keys())
async def test_hostile_frame_out_of_the_blue(data: bytes) -> None:
    """The same frames (and replies nobody asked for) while no command is waiting."""

    async def hostile(peer: Peer) -> None:
        await peer.handshake()
        await asyncio.sleep(0.05)
        peer.send(data)
        await peer.until_closed()

    async with FakeEsl(hostile, good) as fs:
        client = client_for(fs, max_frame=4096)
        await client.start()
        try:
            await until(lambda: client.failures == 1 and client.connected)
            assert fs.accepted == 2
            assert await client.api("status") == "+OK\n"
        finally:
            await client.stop()


async def test_frame_cut_short_then_reconnect() -> None:
    async def cut(peer: Peer) -> None:
        await peer.handshake()
        peer.send(b"Content-Type: api/response\nContent-Length: 100\n\nonly part of it")
        await peer.writer.drain()

    async with FakeEsl(cut, good) as fs:
        client = client_for(fs)
        await client.start()
        try:
            await until(lambda: client.connections >= 2 and client.connected)
            assert isinstance(client.last_exception, ConnectionLost)
        finally:
            await client.stop()


async def _silent(peer: Peer) -> None:
    await peer.until_closed()


async def _greet_then_close(peer: Peer) -> None:
    peer.send(GREETING)
    await peer.command()


def _greeting(data: bytes) -> Callable[[Peer], Any]:
    async def script(peer: Peer) -> None:
        peer.send(data)
        await peer.until_closed()

    return script


def _auth_answer(data: bytes) -> Callable[[Peer], Any]:
    async def script(peer: Peer) -> None:
        peer.send(GREETING)
        await peer.command()
        peer.send(data)
        await peer.until_closed()

    return script


def _subscribe_answer(data: bytes) -> Callable[[Peer], Any]:
    async def script(peer: Peer) -> None:
        await peer.handshake(subscribe=False)
        await peer.command()
        peer.send(data)
        await peer.until_closed()

    return script


HANDSHAKE = {
    "silence": (_silent, HandshakeTimeout),
    "greet-then-close": (_greet_then_close, ConnectionLost),
    "greeting-http": (_greeting(HOSTILE["http-response"]), p.RemoteProtocolError),
    "greeting-bad-length": (_greeting(HOSTILE["length-superscript-two"]), p.RemoteProtocolError),
    "greeting-is-an-event": (_greeting(plain_event("HEARTBEAT")), HandshakeTimeout),
    "greeting-is-a-reply": (_greeting(OK), p.RemoteProtocolError),
    "greeting-unknown-type": (
        _greeting(b"Content-Type: text/event-xml\nContent-Length: 4\n\n<x/>"),
        p.RemoteProtocolError,
    ),
    "greeting-rude-rejection": (_greeting(DENIED), AccessDenied),
    "auth-answered-by-api-response": (_auth_answer(api_response(b"+OK accepted")), p.RemoteProtocolError),
    "auth-answered-by-bad-length": (_auth_answer(HOSTILE["length-arabic-indic-digit"]), p.RemoteProtocolError),
    "auth-answered-by-rude-rejection": (_auth_answer(DENIED), AccessDenied),
    "auth-answered-by-nothing": (_auth_answer(b""), HandshakeTimeout),
    "auth-answered-twice": (_auth_answer(OK + OK), p.RemoteProtocolError),
    "subscription-refused": (
        _subscribe_answer(b"Content-Type: command/reply\nReply-Text: -ERR no\n\n"),
        p.RemoteProtocolError,
    ),
    "subscription-answered-by-garbage": (_subscribe_answer(HOSTILE["json-deep-arrays"]), p.RemoteProtocolError),
}


@pytest.mark.parametrize(("script", "error"), HANDSHAKE.values(), ids=HANDSHAKE.keys())
async def test_hostile_handshake_then_reconnect(script: Any, error: type[BaseException]) -> None:
    async with FakeEsl(script, good) as fs:
        client = client_for(fs, connect_timeout=0.3)
        await client.start()
        try:
            await until(lambda: client.connected)
            assert fs.accepted == 2 and client.connections == 1 and client.failures == 1
            assert isinstance(client.last_exception, error), repr(client.last_exception)
        finally:
            await client.stop()


async def test_event_handler_errors_do_not_end_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def events(peer: Peer) -> None:
        await peer.handshake()
        for i in range(3):
            peer.send(plain_event("CHANNEL_ANSWER", Unique_ID=f"u{i}"))
        await peer.serve_commands()

    seen: list[str] = []

    def handler(event: p.Event) -> None:
        seen.append(event.uuid)
        raise ValueError(f"handler bug on {event.uuid}")

    async with FakeEsl(events) as fs:
        client = client_for(fs, on_event=handler)
        await client.start()
        try:
            await until(lambda: len(seen) == 3)
            assert await client.api("status") == "+OK\n"
            assert client.connected and client.connections == 1 and client.failures == 0
        finally:
            await client.stop()
    assert len([r for r in esl_logs(caplog, logging.ERROR) if "event handler failed" in r.getMessage()]) == 3


async def test_unexpected_exception_in_a_connection_is_logged_and_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    async def event_then_wait(peer: Peer) -> None:
        await peer.handshake()
        peer.send(plain_event("CHANNEL_ANSWER", Unique_ID="u1"))
        await peer.until_closed()

    async with FakeEsl(event_then_wait, good) as fs:
        client = client_for(fs)
        real = client._dispatch
        calls = {"n": 0}

        def dispatch(item: object) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise KeyError("a bug in the client")  # not an error type the connection expects
            real(item)

        client._dispatch = dispatch  # type: ignore[method-assign]
        await client.start()
        try:
            await until(lambda: client.connections >= 2 and client.connected)
            assert isinstance(client.last_exception, KeyError)
        finally:
            await client.stop()
    [record] = esl_logs(caplog)
    assert record.levelno == logging.ERROR and "KeyError" in record.getMessage() and record.exc_info


async def test_supervisor_failure_is_logged_and_it_restarts(caplog: pytest.LogCaptureFixture) -> None:
    async def close(peer: Peer) -> None:
        await peer.handshake()

    async with FakeEsl(close, good) as fs:
        client = client_for(fs)
        real = client._drop_link
        calls = {"n": 0}

        def drop(reason: Any) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("bug while dropping the link")
            real(reason)

        client._drop_link = drop  # type: ignore[method-assign]
        await client.start()
        try:
            await until(lambda: client.connections >= 2 and client.connected)
            assert client.restarts == 1
        finally:
            await client.stop()
    assert any("supervisor failed" in r.getMessage() and r.levelno == logging.ERROR for r in esl_logs(caplog))


async def test_supervisor_task_that_dies_is_started_again(caplog: pytest.LogCaptureFixture) -> None:
    async with FakeEsl(good) as fs:
        client = client_for(fs)
        real_supervise, real_drop = client._supervise, client._drop_link
        calls = {"supervise": 0, "drop": 0}

        async def supervise() -> None:
            calls["supervise"] += 1
            if calls["supervise"] == 1:
                raise RuntimeError("supervisor bug")
            await real_supervise()

        def drop(reason: Any) -> None:
            calls["drop"] += 1
            if calls["drop"] == 1:
                raise RuntimeError("bug in the recovery too")
            real_drop(reason)

        client._supervise = supervise  # type: ignore[method-assign]
        client._drop_link = drop  # type: ignore[method-assign]
        await client.start()
        try:
            await until(lambda: client.connected)
            assert client.restarts == 2 and calls["supervise"] == 2
        finally:
            await client.stop()
    assert any(r.levelno == logging.CRITICAL and "starting it again" in r.getMessage() for r in esl_logs(caplog))


async def test_hooks_that_raise_do_not_stop_the_client(caplog: pytest.LogCaptureFixture) -> None:
    async def close(peer: Peer) -> None:
        await peer.handshake()

    def on_disconnect() -> None:
        raise RuntimeError("disconnect hook bug")

    async def on_connect() -> None:
        raise RuntimeError("connect hook bug")

    async with FakeEsl(close, close, good) as fs:
        client = client_for(fs, on_disconnect=on_disconnect, on_connect=on_connect)
        await client.start()
        try:
            await until(lambda: client.connections >= 3 and client.connected)
        finally:
            await client.stop()
    messages = [r.getMessage() for r in esl_logs(caplog, logging.ERROR)]
    assert any("on_disconnect hook failed" in m for m in messages)
    assert any("on_connect hook failed" in m for m in messages)


async def test_reply_of_the_wrong_kind_is_a_protocol_error_for_that_connection() -> None:
    async def wrong_kind(peer: Peer) -> None:
        await peer.handshake()
        await peer.command()
        peer.send(api_response(b"+OK"))  # a command/reply was owed
        await peer.until_closed()

    async with FakeEsl(wrong_kind, good) as fs:
        client = client_for(fs)
        await client.start()
        try:
            await client.wait_connected(2)
            with pytest.raises(ConnectionLost):  # at once, not after the command timeout
                await client.command("filter Unique-ID x", timeout=1.5)
            await until(lambda: client.connections >= 2 and client.connected)
            assert isinstance(client.last_exception, p.RemoteProtocolError)
            assert (await client.command("filter Unique-ID x")).ok
        finally:
            await client.stop()


async def test_backoff_grows_while_connections_keep_failing() -> None:
    """A peer that accepts and then sends garbage each time gets slower retries, not a tight loop."""

    async def garbage(peer: Peer) -> None:
        await peer.handshake()
        peer.send(UNSOLICITED["reply-without-command"])
        await peer.until_closed()

    async with FakeEsl(garbage) as fs:
        client = client_for(fs, backoff=Backoff(0.01, 1.0))
        await client.start()
        try:
            await until(lambda: client.failures >= 4)
            assert client.backoff._next >= 0.08  # 0.01, 0.02, 0.04, 0.08: not reset by each short connection
        finally:
            await client.stop()


def test_backoff_is_bounded_and_jittered() -> None:
    backoff = Backoff(initial=0.2, maximum=30.0)
    delays = [backoff.next() for _ in range(40)]
    assert all(0.16 <= d <= 36.0 for d in delays)
    assert delays[0] < 0.25 and min(delays[-10:]) >= 24.0
    assert len({round(d, 6) for d in delays[-10:]}) > 1  # jittered, not lock-step
    backoff.reset()
    assert backoff.next() < 0.25


async def test_fail_fast_reports_why_the_node_is_down() -> None:
    async def wrong(peer: Peer) -> None:
        await peer.handshake(password="other")

    async with FakeEsl(wrong) as fs:
        client = client_for(fs)
        await client.start()
        try:
            with pytest.raises(AuthenticationFailed) as info:
                await client.wait_connected(2, fail_fast=True)
            assert type(info.value) is AuthenticationFailed and "-ERR invalid" in str(info.value)
            with pytest.raises(TimeoutError):
                await client.wait_connected(0.05)
        finally:
            await client.stop()


@pytest.mark.parametrize("host", ["a\x00b", "a" * 70 + ".example", "a..b", "no-such-node.invalid", "a\nb"])
async def test_unusable_host_names_are_name_errors(host: str) -> None:
    import socket

    client = EslClient(Endpoint(host, 8021, "ClueCon", "fs-test"), events=[], backoff=Backoff(0.01, 0.05))
    await client.start()
    try:
        with pytest.raises(socket.gaierror):
            await client.wait_connected(2, fail_fast=True)
    finally:
        await client.stop()


async def test_password_with_a_line_break_is_refused_before_sending(caplog: pytest.LogCaptureFixture) -> None:
    async def greet(peer: Peer) -> None:
        peer.send(GREETING)
        await peer.until_closed()

    async with FakeEsl(greet) as fs:
        client = EslClient(Endpoint("127.0.0.1", fs.port, "pw\napi fsctl shutdown", "fs-test"), events=[])
        await client.start()
        try:
            with pytest.raises(AuthenticationFailed, match="line break"):
                await client.wait_connected(2, fail_fast=True)
        finally:
            await client.stop()
    assert not any(r.exc_info for r in caplog.records) and "fsctl" not in caplog.text
