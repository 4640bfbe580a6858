"""The media port under hostile input: every connection that is not a call's fork is answered and closed in
bounded time, caps hold, accepted forks are never the ones closed, and malformed input closes only its own
connection (one log line, no traceback, counted)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

import pytest
from fake_agents import FakeRawAgent
from test_bridge import TOKENS, Harness, wait_until
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from orchestrator.media import fork

CALL = "c0ffee00-0000-4000-8000-000000000001"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def upgrade(path: str, extra: str = "") -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


async def raw(port: int, send: bytes = b"", drip: bytes = b"", every: float = 0.05, timeout: float = 5.0) -> Any:
    """A hostile client: sends ``send`` at once and ``drip`` a byte at a time; returns (answer, seconds to close)."""
    t0 = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def dripping() -> None:
        for b in drip:
            await asyncio.sleep(every)
            if writer.is_closing():
                return
            writer.write(bytes([b]))

    task = asyncio.create_task(dripping())
    if send:
        writer.write(send)
    data = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    elapsed = time.monotonic() - t0
    task.cancel()
    writer.close()
    return data, elapsed


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def errors(h: Harness, kind: str) -> float:
    for line in h.bridge.metrics.render().decode().splitlines():
        if line.startswith(f'sipagent_media_errors_total{{kind="{kind}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


FAST = {"handshake_timeout_seconds": 0.5, "metadata_timeout_seconds": 0.5}


@pytest.mark.parametrize(
    ("send", "drip", "answer", "kind", "slow"),
    [
        (b"", b"", 408, "fork_handshake_timeout", True),  # connects, says nothing
        (b"GET /calls/x HTTP/1.1\r\nHost: a\r\n", b"X-a: b\r\n" * 40, 408, "fork_handshake_timeout", True),  # slowloris
        (b"\x16\x03\x01\x02\x00\x01\x00", b"", 400, "fork_bad_request", False),  # TLS on the plain port
        (b"\x00" * 64, b"", 400, "fork_bad_request", False),
        (b"GET /calls/x HTTP/1.1\r\n" + b"X: " + b"y" * 20000, b"", 431, "fork_bad_request", False),
        (upgrade("/calls/x").replace(b"GET", b"PUT"), b"", 405, "fork_bad_request", False),
        (b"GET /calls/x HTTP/1.1\r\nHost: a\r\n\r\n", b"", 426, "fork_bad_request", False),
        (upgrade("/calls/x").replace(b"Version: 13", b"Version: 7"), b"", 400, "fork_bad_request", False),
        (upgrade("/calls/x").replace(KEY.encode(), b"AAAA"), b"", 400, "fork_bad_request", False),
        (upgrade("/elsewhere"), b"", 404, "fork_rejected", False),
        (upgrade("/calls/"), b"", 404, "fork_rejected", False),
        (upgrade("/calls/a/b"), b"", 404, "fork_rejected", False),
        (upgrade("/calls/%0a%1b?token=x"), b"", 404, "fork_rejected", False),  # a call id that is no call id
        (upgrade("//[bad/calls/x"), b"", 400, "fork_rejected", False),  # urlsplit raises on this
        (upgrade("/calls/x?token=nope"), b"", 403, "fork_rejected", False),
        (upgrade("/calls/x?token=" + "0" * 48), b"", 403, "fork_rejected", False),
        (upgrade(f"/calls/x?token={TOKENS.token('y')}"), b"", 403, "fork_rejected", False),  # another call's
        (upgrade("/calls/x?" + "&".join(f"a{i}=b" for i in range(500))), b"", 400, "fork_rejected", False),
        (upgrade("/calls/x?token=a&token=b"), b"", 403, "fork_rejected", False),
    ],
)
async def test_hostile_connections_are_answered_and_closed(
    send: bytes, drip: bytes, answer: int, kind: str, slow: bool
) -> None:
    async with Harness({"protocol": "raw", "url": "ws://127.0.0.1:9/a"}, **FAST) as h:
        data, elapsed = await raw(h.bridge.port, send, drip)
        assert status(data) == answer, data[:200]
        assert b"Connection: close" in data
        assert (0.4 < elapsed < 1.5) if slow else elapsed < 0.4
        assert errors(h, kind) == 1
        await wait_until(lambda: not h.bridge.forks, timeout=1)
        assert h.bridge.gate.total == 0


async def test_upgraded_fork_that_never_sends_metadata_is_closed_1008() -> None:
    async with Harness({"protocol": "raw", "url": "ws://127.0.0.1:9/a"}, **FAST) as h:
        t0 = time.monotonic()
        ws = await connect(fork.fork_url(f"ws://127.0.0.1:{h.bridge.port}", CALL, TOKENS.token(CALL)))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)
        assert ws.close_code == 1008 and 0.4 < time.monotonic() - t0 < 1.5
        assert errors(h, "fork_metadata_timeout") == 1
        await wait_until(lambda: not h.bridge.forks, timeout=3)


async def test_a_fork_may_send_its_metadata_with_its_request() -> None:
    """Bytes pipelined after the upgrade request are read once the token has been claimed."""
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}, **FAST) as h:
        from orchestrator.media.websocket import WebSocket

        client = WebSocket.client(fork.fork_url(f"ws://127.0.0.1:{h.bridge.port}", CALL, TOKENS.token(CALL)))
        meta = json.dumps({"call_id": CALL, "agent": "bot", "rate": 8000})
        _, writer = await asyncio.open_connection("127.0.0.1", h.bridge.port)
        writer.write(client.data_to_send() + client.text(meta) + client.binary(b"\x01\x02" * 160) * 10)
        await wait_until(lambda: CALL in h.bridge.sessions and h.bridge.sessions[CALL].stats.frames_in == 10)
        await agent.wait_audio(1)
        writer.close()


async def test_token_is_good_once_and_not_for_an_ended_call() -> None:
    async with FakeRawAgent() as agent, Harness({"protocol": "raw", "url": agent.url}) as h:
        base = f"ws://127.0.0.1:{h.bridge.port}"
        url = fork.fork_url(base, CALL, TOKENS.token(CALL))
        ws = await connect(url)
        with pytest.raises(InvalidStatus) as again:
            await connect(url)  # the same token while the call is up
        assert again.value.response.status_code == 403
        await ws.close()
        with pytest.raises(InvalidStatus) as after:
            await connect(url)  # and after its fork closed
        assert after.value.response.status_code == 403
        h.control.ended.add("c0ffee00-0000-4000-8000-000000000002")
        other = "c0ffee00-0000-4000-8000-000000000002"
        with pytest.raises(InvalidStatus) as ended:
            await connect(fork.fork_url(base, other, TOKENS.token(other)))  # a fresh, well-made token, call over
        assert ended.value.response.status_code == 403
        assert errors(h, "fork_rejected") == 3
        _ = agent


async def test_claim_that_takes_too_long_is_answered_503() -> None:
    async with Harness({"protocol": "raw", "url": "ws://127.0.0.1:9/a"}, **FAST) as h:

        async def never(uuid: str, token: str) -> bool:
            await asyncio.sleep(30)
            return True

        h.control.claim_fork = never  # type: ignore[method-assign]
        t0 = time.monotonic()
        data, _ = await raw(h.bridge.port, upgrade(f"/calls/{CALL}?token={TOKENS.token(CALL)}"))
        assert status(data) == 503 and time.monotonic() - t0 < 1.5
        assert not h.bridge.claims


async def test_claim_that_fails_is_answered_503() -> None:
    async with Harness({"protocol": "raw", "url": "ws://127.0.0.1:9/a"}, **FAST) as h:

        async def broken(uuid: str, token: str) -> bool:
            raise ConnectionError("control link down")

        h.control.claim_fork = broken  # type: ignore[method-assign]
        data, _ = await raw(h.bridge.port, upgrade(f"/calls/{CALL}?token={TOKENS.token(CALL)}"))
        assert status(data) == 503


# -- caps -----------------------------------------------------------------------------------------------
async def test_a_real_fork_gets_in_while_idle_connections_hold_every_slot() -> None:
    async with (
        FakeRawAgent(rate=8000) as agent,
        Harness(
            {"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"},
            max_connections=8,
            max_pending_connections=4,
            handshake_timeout_seconds=30,
        ) as h,
    ):
        port = h.bridge.port
        first = await h.fork("c0ffee00-0000-4000-8000-000000000001", rate=8000)  # an accepted call
        await agent.wait_session(1)
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(40)]
        await asyncio.sleep(0.1)
        assert h.bridge.gate.total <= 8  # the rest wait in the kernel's backlog, not on a descriptor
        second = await h.fork("c0ffee00-0000-4000-8000-000000000002", rate=8000)  # arrives during the flood
        await agent.wait_session(2)
        for f in (first, second):
            await f.send_audio(bytes(range(256)) * 5, realtime=False)
        for s in agent.sessions:
            await agent.wait_audio(1280, session=s)

        # all but the newest few (the handshake cap, whose handshake time is long) are closed: wait for those
        reads = [asyncio.ensure_future(reader.read(1000)) for reader, _ in idle]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3):
                while sum(r.done() for r in reads) < 40 - 4:
                    await asyncio.wait(reads, return_when=asyncio.FIRST_COMPLETED)
        await asyncio.wait(reads, timeout=0.1)
        answers = [status(r.result()) if r.done() else None for r in reads]
        for r in reads:
            r.cancel()
        for _, writer in idle:
            writer.close()
        assert answers.count(503) >= 40 - 4, answers
        assert h.bridge.gate.peak <= 8
        assert errors(h, "fork_evicted") >= 36
        assert not first.closed.is_set() and not second.closed.is_set()  # accepted forks were never touched


async def test_newcomer_waits_in_the_backlog_while_accepted_forks_fill_the_port() -> None:
    async with (
        FakeRawAgent(rate=8000) as agent,
        Harness({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}, max_connections=2) as h,
    ):
        forks = [await h.fork(f"c0ffee00-0000-4000-8000-00000000000{i}", rate=8000) for i in (1, 2)]
        await agent.wait_session(2)
        third = "c0ffee00-0000-4000-8000-000000000003"
        reader, writer = await asyncio.open_connection("127.0.0.1", h.bridge.port)
        writer.write(upgrade(f"/calls/{third}?token={TOKENS.token(third)}"))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(100), 0.5)  # not taken: no descriptor is spent on it
        assert h.bridge.gate.total == 2
        await forks[0].ws.close()  # a call ends …
        assert status(await asyncio.wait_for(reader.read(1000), 2)) == 101  # … and the waiting fork gets in
        writer.close()
        assert not forks[1].closed.is_set()


async def test_handshake_cap_closes_the_oldest_first() -> None:
    async with Harness(
        {"protocol": "raw", "url": "ws://127.0.0.1:9/a"}, max_pending_connections=3, handshake_timeout_seconds=30
    ) as h:
        conns = []
        for _ in range(6):
            conns.append(await asyncio.open_connection("127.0.0.1", h.bridge.port))
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        reads = [asyncio.ensure_future(reader.read(1000)) for reader, _ in conns]
        await asyncio.wait(reads, timeout=0.2)
        answers = [status(r.result()) if r.done() else None for r in reads]
        for r, (_, writer) in zip(reads, conns, strict=True):
            r.cancel()
            writer.close()
        assert answers == [503, 503, 503, None, None, None]


# -- malformed input ------------------------------------------------------------------------------------
BAD_METADATA = [
    ('{"agent":"bot","rate":1e400}', 1008),
    ('{"agent":"bot","rate":NaN}', 1008),
    ('{"agent":"bot","rate":-16000}', 1008),
    ('{"agent":"bot","rate":"16000"}', 1008),
    ('{"agent":"bot","rate":' + "9" * 5000 + "}", 1008),
    ("[" * 100000, 1009),
    ("[" * 4000 + "]" * 4000, 1008),
    ('{"agent":"bot","variables":' + '{"a":' * 1000 + "1" + "}" * 1001, 1008),
    ("[1,2,3]", 1008),
    ('"just a string"', 1008),
    ("null", 1008),
    ('{"agent":"bot","direction":["in"]}', 1008),
    ('{"agent":"bot","variables":["a"]}', 1008),
    ('{"agent":"bot","variables":{"a":1}}', 1008),
    ('{"agent":"bot","variables":{"a":null}}', 1008),
    ('{"agent":"bot","caller_id":123}', 1008),
    ('{"agent":{"name":"bot"}}', 1008),
    ('{"agent":"nobody"}', 1008),
    ('{"agent":"bot","call_id":"another-call"}', 1008),
    ('{"agent":"bot","variables":{"x":"' + "y" * 20000 + '"}}', 1009),
]


@pytest.mark.parametrize(("text", "code"), BAD_METADATA)
async def test_malformed_metadata_closes_only_its_fork(text: str, code: int, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        FakeRawAgent(rate=8000) as agent,
        Harness({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}) as h,
    ):
        good = await h.fork("c0ffee00-0000-4000-8000-000000000001", rate=8000)
        await agent.wait_session(1)
        bad_id = "c0ffee00-0000-4000-8000-000000000002"
        ws = await connect(fork.fork_url(f"ws://127.0.0.1:{h.bridge.port}", bad_id, TOKENS.token(bad_id)))
        await ws.send(text)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 3)
        assert ws.close_code == code
        await good.send_audio(bytes(range(256)) * 5, realtime=False)
        await agent.wait_audio(1280)  # the other call carries on
        assert errors(h, "fork_metadata") == 1 and bad_id not in h.bridge.sessions
    logged = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any(r.exc_info or "Fatal error" in r.getMessage() or "Traceback" in r.getMessage() for r in logged)
    assert len([r for r in logged if "metadata" in r.getMessage()]) == 1


async def test_invalid_utf8_text_closes_1007(caplog: pytest.LogCaptureFixture) -> None:
    async with Harness({"protocol": "raw", "url": "ws://127.0.0.1:9/a"}) as h:
        from orchestrator.media.websocket import WebSocket

        client = WebSocket.client(fork.fork_url(f"ws://127.0.0.1:{h.bridge.port}", CALL, TOKENS.token(CALL)))
        reader, writer = await asyncio.open_connection("127.0.0.1", h.bridge.port)
        writer.write(client.data_to_send())
        await reader.readuntil(b"\r\n\r\n")
        key, payload = b"\x01\x02\x03\x04", b"\xff\xfe"  # a text frame whose payload is not UTF-8
        writer.write(b"\x81\x82" + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload)))
        data = await asyncio.wait_for(reader.read(100), 2)
        assert data[:2] == b"\x88\x02" and int.from_bytes(data[2:4], "big") == 1007
        writer.close()
        assert errors(h, "fork_protocol") == 1


async def test_an_exception_inside_a_callback_closes_that_fork_only(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with (
        FakeRawAgent(rate=8000) as agent,
        Harness({"protocol": "raw", "url": agent.url, "audio_format": "pcm_8000"}, fork_grace_seconds=5) as h,
    ):
        good = await h.fork("c0ffee00-0000-4000-8000-000000000001", rate=8000)
        bad = await h.fork("c0ffee00-0000-4000-8000-000000000002", rate=8000)
        await agent.wait_session(2)
        session = h.bridge.sessions["c0ffee00-0000-4000-8000-000000000002"]

        def explode(pcm: bytes) -> None:
            raise OverflowError("cannot convert float infinity to integer")

        session.caller_audio = explode  # type: ignore[method-assign]
        await bad.ws.send(b"\x00" * 320)
        await asyncio.wait_for(bad.closed.wait(), 3)
        await good.send_audio(bytes(range(256)) * 5, realtime=False)
        await agent.wait_audio(1280, session=agent.sessions[0])
        assert errors(h, "fork_internal") == 1
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("internal error" in m and "OverflowError" in m for m in messages)
    assert not any("Fatal error" in m for m in messages)
    assert not any(r.exc_info for r in caplog.records if r.levelno >= logging.WARNING)


async def test_flood_of_rejections_logs_a_few_lines_and_counts_them_all(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with Harness({"protocol": "raw", "url": "ws://127.0.0.1:9/a"}) as h:
        for _ in range(40):
            await raw(h.bridge.port, b"\x00garbage")
        assert errors(h, "fork_bad_request") == 40
    lines = [r for r in caplog.records if "garbage" in r.getMessage() or "not an HTTP request" in r.getMessage()]
    assert len(lines) <= 6
    assert not any("websockets" in r.name for r in caplog.records)  # the library's per-connection lines are off
