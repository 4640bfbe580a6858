"""The sans-I/O WebSocket: interop with the ``websockets`` library both ways, framing edge cases, RFC violations."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from orchestrator.media.websocket import Binary, Closed, Opened, Request, State, Text, WebSocket


def _opened_pair() -> tuple[WebSocket, WebSocket]:
    server = WebSocket.server(subprotocols=["audio.drachtio.org"])
    client = WebSocket.client("ws://127.0.0.1:9/calls/x?token=t", subprotocols=["audio.drachtio.org"])
    events = server.receive_data(client.data_to_send())
    assert isinstance(events[0], Request) and events[0].path == "/calls/x?token=t"
    server.accept()
    opened = client.receive_data(server.data_to_send())
    assert isinstance(opened[0], Opened) and opened[0].subprotocol == "audio.drachtio.org"
    return server, client


def _client_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame, built by hand so that invalid frames can be made too."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    head = bytes((first, 0x80 | n)) if n < 126 else bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Opcode:
    CONT, TEXT, BINARY, CLOSE, PING = 0, 1, 2, 8, 9


def test_messages_both_ways_and_any_split() -> None:
    server, client = _opened_pair()
    payloads = [os.urandom(n) for n in (0, 1, 125, 126, 640, 65535, 65536, 200_000)]
    stream = b"".join(client.binary(p) for p in payloads) + client.text('héllo {"a": 1}')
    for step in (1, 7, 640, 1500, len(stream)):
        server2, client2 = _opened_pair()
        stream = b"".join(client2.binary(p) for p in payloads) + client2.text('héllo {"a": 1}')
        got = []
        for i in range(0, len(stream), step):
            got.extend(server2.receive_data(stream[i : i + step]))
        assert [e.data for e in got] == [*payloads, 'héllo {"a": 1}']
    back = b"".join(server.binary(p) for p in payloads)
    assert [e.data for e in client.receive_data(back)] == payloads


def test_fragmented_message_and_ping_between_fragments() -> None:
    server, _ = _opened_pair()
    data = (
        _client_frame(Opcode.TEXT, b"hel", fin=False)
        + _client_frame(Opcode.PING, b"p")
        + _client_frame(Opcode.CONT, b"lo", fin=True)
    )
    events = server.receive_data(data)
    assert events == [Text("hello")]
    pong = server.data_to_send()
    assert pong == b"\x8a\x01p"  # unmasked pong echoing the ping payload


@pytest.mark.parametrize(
    ("frame", "code", "why"),
    [
        (b"\x82\x03abc", 1002, "masked"),  # unmasked client frame
        (None, 1002, "reserved"),
        (_client_frame(Opcode.TEXT, b"\xff\xfe"), 1007, "UTF-8"),
        (_client_frame(Opcode.PING, b"x" * 126, fin=True), 1002, "control"),
        (_client_frame(Opcode.CONT, b"x"), 1002, "continuation"),
        (_client_frame(Opcode.BINARY, b"x" * 2048), 1009, "limit"),
        (_client_frame(Opcode.CLOSE, b"\x03\xe8"[:1]), 1002, "1-byte"),
        (_client_frame(Opcode.CLOSE, (999).to_bytes(2, "big")), 1002, "invalid close code"),
    ],
)
def test_violations_close_with_the_rfc_code(frame: bytes | None, code: int, why: str) -> None:
    server = WebSocket.server(max_message=1024)
    client = WebSocket.client("ws://127.0.0.1:9/x")
    server.receive_data(client.data_to_send())
    server.accept()
    server.data_to_send()
    if frame is None:
        frame = _client_frame(Opcode.BINARY, b"x", rsv1=True)
    events = server.receive_data(frame)
    assert isinstance(events[-1], Closed)
    assert events[-1].code == code and why in (events[-1].error or "")
    sent = server.data_to_send()
    assert sent[:2] == b"\x88\x02" and int.from_bytes(sent[2:4], "big") == code
    assert server.receive_data(_client_frame(Opcode.BINARY, b"more")) == []  # nothing after closing


def test_close_handshake_echo_and_initiated() -> None:
    server, client = _opened_pair()
    events = server.receive_data(client.close(4000, "server done"))
    assert events == [Closed(4000, "server done")]
    assert client.receive_data(server.data_to_send()) == [Closed(4000, "server done")]
    s2, c2 = _opened_pair()
    frame = s2.close(1000, "")
    assert c2.receive_data(frame) == [Closed(1000, "")]
    assert s2.receive_data(c2.data_to_send()) == [Closed(1000, "")]
    assert s2.data_to_send() == b""  # no second close frame


KEY = "dGhlIHNhbXBsZSBub25jZQ=="
UPGRADE = (
    f"Host: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n"
)


def _status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello on the plain port
        (b"\x00\xff\xfe garbage", 400),
        (b"get /calls/x HTTP/1.1\r\n", 400),  # methods are upper case
        (b"HELLO", 0),  # could still become a request line: wait (the handshake timeout ends it)
        (b"HELLOWORLDHELLOWORLD", 400),  # no method is that long
        (b"GET\r\n\r\n", 400),
        (b"GET /x\r\n\r\n", 400),  # HTTP/0.9
        (b"GET /x HTTP/2.0\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nHost: a\x01b\r\n\r\n", 400),  # control character in a value
        (b"GET /\xe9 HTTP/1.1\r\nHost: a\r\n\r\n", 400),  # non-ASCII path
        (b"GET /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", 400),
        (b"GET /x HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431),  # too many headers
        (b"GET /x HTTP/1.1\r\nX: " + b"y" * 9000 + b"\r\n\r\n", 431),  # one header line too long
        (b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\n\r\n", 414),
        (b"GET /x HTTP/1.1\r\n" + (b"X-Pad: " + b"y" * 6000 + b"\r\n") * 3 + b"\r\n", 431),  # head over 16 KiB
        (b"GET /x HTTP/1.1\r\n" + (b"X-Pad: " + b"y" * 6000 + b"\r\n") * 3 + b"X", 431),  # no end in sight
        (b"POST /calls/x HTTP/1.1\r\n" + UPGRADE.encode() + b"\r\n", 405),
        (b"GET /calls/x HTTP/1.0\r\n" + UPGRADE.encode() + b"\r\n", 505),
        (b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", 426),  # plain HTTP, not an upgrade
        (b"GET /x HTTP/1.1\r\n" + UPGRADE.replace("Version: 13", "Version: 8").encode() + b"\r\n", 400),
        (b"GET /x HTTP/1.1\r\n" + UPGRADE.replace(KEY, "c2hvcnQ=").encode() + b"\r\n", 400),  # key not 16 bytes
        (b"GET /x HTTP/1.1\r\n" + UPGRADE.replace(KEY, "not base64!").encode() + b"\r\n", 400),
        (b"GET /x HTTP/1.1\r\n" + UPGRADE.replace(f"Sec-WebSocket-Key: {KEY}\r\n", "").encode() + b"\r\n", 400),
        (b"GET /x HTTP/1.1\r\n" + UPGRADE.replace("Upgrade: websocket", "Upgrade: h2c").encode() + b"\r\n", 426),
    ],
)
@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_invalid_requests_are_answered_with_an_http_error_and_closed(data: bytes, status: int, chunk: int) -> None:
    server = WebSocket.server()
    events: list[object] = []
    for i in range(0, len(data), chunk):
        events += server.receive_data(data[i : i + chunk])
        if events:
            break
    response = server.data_to_send()
    if status == 0:
        assert events == [] and response == b"" and server.state is not State.CLOSED
        return
    assert len(events) == 1 and isinstance(events[0], Closed) and events[0].status == status, events
    assert _status(response) == status and b"Connection: close" in response
    assert server.state is State.CLOSED and server.subprotocol is None
    assert server.receive_data(b"GET / HTTP/1.1\r\n\r\n") == [] and server.data_to_send() == b""  # done for good
    assert b"y" * 100 not in response and b"\xfc" not in response  # the peer's bytes are not echoed


def test_only_a_valid_upgrade_is_a_request_and_early_bytes_wait_for_accept() -> None:
    client = WebSocket.client("ws://127.0.0.1:9/calls/x?token=t")
    request = client.data_to_send()
    server = WebSocket.server()
    early = client.text('{"meta":1}') + client.binary(b"\x01" * 320)  # sent before the 101 arrived
    events = server.receive_data(request + early[:5])
    assert len(events) == 1 and isinstance(events[0], Request) and events[0].path == "/calls/x?token=t"
    assert server.receive_data(early[5:]) == [] and server.data_to_send() == b""  # held until the decision
    server.accept()
    assert _status(server.data_to_send()) == 101
    assert server.receive_data(b"") == [Text('{"meta":1}'), Binary(b"\x01" * 320)]


def test_too_much_before_the_upgrade_is_answered_413() -> None:
    client = WebSocket.client("ws://127.0.0.1:9/calls/x")
    server = WebSocket.server()
    assert isinstance(server.receive_data(client.data_to_send())[0], Request)
    events = server.receive_data(b"\x00" * 70000)
    assert isinstance(events[0], Closed) and events[0].status == 413
    assert _status(server.data_to_send()) == 413
    server.accept()  # too late: nothing happens
    assert server.data_to_send() == b"" and server.state is State.CLOSED


@pytest.mark.parametrize(
    "response",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"\x00" * 20000,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: wrong\r\n\r\n",
    ],
)
def test_client_closes_on_an_invalid_response(response: bytes) -> None:
    client = WebSocket.client("ws://127.0.0.1:9/agent")
    client.data_to_send()
    events = client.receive_data(response)
    assert len(events) == 1 and isinstance(events[0], Closed) and events[0].code in (1002, 1006)
    assert client.state is State.CLOSED and client.receive_data(b"more") == []


@pytest.mark.parametrize("chunk", [1, 10, 1000])
def test_client_reads_a_refusal_with_its_body_in_any_chunking(chunk: int) -> None:
    client = WebSocket.client("ws://127.0.0.1:9/agent")
    client.data_to_send()
    body = b"x" * 300
    response = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 300\r\n\r\n" + body
    events: list[object] = []
    for i in range(0, len(response), chunk):
        events += client.receive_data(response[i : i + chunk])
    assert len(events) == 1 and isinstance(events[0], Closed) and "403" in (events[0].error or "")


def test_reject_answers_http_status() -> None:
    server = WebSocket.server()
    client = WebSocket.client("ws://127.0.0.1:9/x")
    server.receive_data(client.data_to_send())
    server.reject(403, "bad token")
    response = server.data_to_send()
    assert response.startswith(b"HTTP/1.1 403")
    events = client.receive_data(response)
    assert isinstance(events[0], Closed) and "403" in (events[0].error or "")


async def test_server_interoperates_with_websockets_client() -> None:
    got: list[object] = []

    class P(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.ws = WebSocket.server(subprotocols=["audio.drachtio.org"])

        def data_received(self, data: bytes) -> None:
            for ev in self.ws.receive_data(data):
                if isinstance(ev, Request):
                    self.ws.accept()
                elif isinstance(ev, Binary | Text):
                    got.append(ev.data)
                    self.t.write(self.ws.binary(ev.data) if isinstance(ev, Binary) else self.ws.text(ev.data))  # type: ignore[attr-defined]
            self.t.write(self.ws.data_to_send())
            if self.ws.state is State.CLOSED:
                self.t.close()

    server = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    payload = os.urandom(70000)
    async with connect(f"ws://127.0.0.1:{port}/calls/a", subprotocols=["audio.drachtio.org"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "audio.drachtio.org"
        await ws.send('{"meta": "data"}')
        await ws.send(payload)
        assert await ws.recv() == '{"meta": "data"}'
        assert await ws.recv() == payload
        await ws.ping()
    server.close()
    assert got == ['{"meta": "data"}', payload]


async def test_client_interoperates_with_websockets_server() -> None:
    async def echo(ws: object) -> None:
        async for message in ws:  # type: ignore[attr-defined]
            await ws.send(message)  # type: ignore[attr-defined]

    async with serve(echo, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        ws = WebSocket.client(f"ws://127.0.0.1:{port}/agent", headers={"Authorization": "Bearer x"})
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(ws.data_to_send() + b"")
        events: list[object] = []
        while not any(isinstance(e, Opened) for e in events):
            events += ws.receive_data(await reader.read(65536))
        writer.write(ws.binary(b"\x01\x02" * 400) + ws.text("ok"))
        while sum(isinstance(e, Binary | Text) for e in events) < 2:
            events += ws.receive_data(await reader.read(65536))
        assert [e.data for e in events if isinstance(e, Binary | Text)] == [b"\x01\x02" * 400, "ok"]  # type: ignore[attr-defined]
        writer.write(ws.close(1000, "bye"))
        while not any(isinstance(e, Closed) for e in events):
            events += ws.receive_data(await reader.read(65536))
        writer.close()


# -- state, end of stream, close timeout ------------------------------------------------------------------
def _open_pair(close_timeout: float = 2.0) -> tuple[WebSocket, WebSocket]:
    server = WebSocket.server(close_timeout=close_timeout)
    client = WebSocket.client("ws://127.0.0.1:9/calls/x")
    assert isinstance(server.receive_data(client.data_to_send())[0], Request)
    server.accept()
    assert isinstance(client.receive_data(server.data_to_send())[0], Opened)
    return server, client


def test_states_through_a_close_we_start() -> None:
    server, client = _open_pair()
    assert server.state is State.OPEN and not server.close_expected()
    frame = server.close(1000, "bye")
    assert server.state is State.CLOSING and server.close_expected() and server.close(1000) == b""
    assert server.text("late") and server.state is State.CLOSING  # framing still works; the I/O layer checks state
    (closed,) = client.receive_data(frame)
    assert isinstance(closed, Closed) and client.state is State.CLOSED and not client.close_expected()
    (answer,) = server.receive_data(client.data_to_send())
    assert isinstance(answer, Closed) and answer.code == 1000 and server.state is State.CLOSED


def test_receive_eof_reports_a_lost_connection_once() -> None:
    server, _ = _open_pair()
    assert server.receive_eof() == [Closed(1006, "")]
    assert server.state is State.CLOSED and server.receive_eof() == [] and server.receive_data(b"\x82\x00") == []
    connecting = WebSocket.server()
    assert connecting.state is State.CONNECTING and connecting.receive_eof() == [Closed(1006, "")]


def test_receive_eof_after_a_close_handshake_is_no_news() -> None:
    server, client = _open_pair()
    client.receive_data(server.close(1000))
    server.receive_data(client.data_to_send())
    assert server.receive_eof() == []


async def test_a_close_the_peer_never_answers_ends_tcp_after_the_close_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.media.fork_connection import close_transport

    class Transport:
        def __init__(self) -> None:
            self.data, self.closed = b"", False

        def write(self, data: bytes) -> None:
            self.data += data

        def close(self) -> None:
            self.closed = True

    armed: list[float] = []
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "call_later", lambda delay, callback: armed.append(delay) or callback())
    server, _ = _open_pair(close_timeout=0.25)
    t = Transport()
    close_transport(t, server, 1001, "")  # type: ignore[arg-type]
    assert t.data[:1] == b"\x88" and armed == [0.25] and t.closed  # the timer the WebSocket asked for
    t2 = Transport()
    close_transport(t2, server, 1000, "")  # type: ignore[arg-type]
    assert t2.data == b"" and t2.closed and armed == [0.25]  # nothing to close: at once
