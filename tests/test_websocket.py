"""The sans-I/O WebSocket: interop with the ``websockets`` library both ways, framing edge cases, RFC violations."""

from __future__ import annotations

import asyncio
import os

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

from orchestrator.media.websocket import Binary, Closed, Opened, Request, Text, WebSocket


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


def test_plain_http_request_is_refused_on_accept() -> None:
    server = WebSocket.server()
    events = server.receive_data(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
    assert isinstance(events[0], Request)
    server.accept()
    assert server.data_to_send().startswith(b"HTTP/1.1 426") and server.closed and not server.open


def test_garbage_instead_of_http_closes() -> None:
    server = WebSocket.server()
    events = server.receive_data(b"\x16\x03\x01" + b"x" * 20000)  # e.g. a TLS hello on the plain port
    assert isinstance(events[0], Closed) and "too large" in (events[0].error or "")


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
