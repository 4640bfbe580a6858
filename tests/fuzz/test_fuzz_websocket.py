"""The sans-I/O WebSocket fed arbitrary and mutated bytes at arbitrary boundaries, both sides.

Properties: nothing but events comes out (no exception, whatever the bytes); after :class:`Closed` nothing more
does and the state says closed; a closed server answered with an HTTP status or a close frame; and a valid frame
stream gives the same messages however it is cut into reads."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.media.websocket import Binary, Closed, Opened, Request, State, Text, WebSocket

URL = "ws://127.0.0.1:9/calls/c0ffee00?token=t"
VALID_CLOSE = {1000, 1001, 1002, 1003, 1005, 1006, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the given positions (any number of reads, empty ones included)."""
    points = sorted({min(max(0, c), len(data)) for c in cuts})
    out, last = [], 0
    for p in points:
        out.append(data[last:p])
        last = p
    out.append(data[last:])
    return out


def feed(ws: WebSocket, chunks: list[bytes]) -> list[Any]:
    """Every chunk in turn, checking the event stream as it goes."""
    events: list[Any] = []
    for chunk in chunks:
        got = ws.receive_data(chunk)
        assert isinstance(got, list)
        if any(isinstance(e, Closed) for e in events):
            assert got == []  # nothing after Closed
        events += got
        out = ws.data_to_send()
        assert isinstance(out, bytes)
    closed = [e for e in events if isinstance(e, Closed)]
    assert len(closed) <= 1
    if closed:
        assert ws.state is State.CLOSED and events[-1] is closed[0]
        assert closed[0].code in VALID_CLOSE or 3000 <= closed[0].code < 5000
    return events


def opened_pair() -> tuple[WebSocket, WebSocket]:
    server = WebSocket.server(subprotocols=["audio.drachtio.org"], max_message=1 << 16)
    client = WebSocket.client(URL, subprotocols=["audio.drachtio.org"], max_message=1 << 16)
    assert isinstance(server.receive_data(client.data_to_send())[0], Request)
    server.accept()
    assert isinstance(client.receive_data(server.data_to_send())[0], Opened)
    return server, client


cuts = st.lists(st.integers(min_value=0, max_value=70000), max_size=12)
junk = st.binary(max_size=4096)


# -- arbitrary bytes, each state --------------------------------------------------------------------
@given(data=junk, cuts=cuts)
def test_server_handshake_takes_any_bytes(data: bytes, cuts: list[int]) -> None:
    server = WebSocket.server()
    events = feed(server, chunked(data, cuts))
    assert all(isinstance(e, Request | Closed) for e in events)
    if any(isinstance(e, Closed) for e in events):
        closed = next(e for e in events if isinstance(e, Closed))
        assert 400 <= closed.status < 600  # answered with an HTTP error before closing
    if b"\r\n\r\n" in data or len(data) > 16384:
        assert events, "a whole request head (or too much of one) was left undecided"


def _request_prefix() -> bytes:
    return WebSocket.client(URL).data_to_send()


@given(
    head=st.sampled_from([b"", b"GET ", b"GET /calls/x HTTP/1.1\r\n", b"GET /calls/x HTTP/1.1\r\nHost: a\r\n"]),
    data=junk,
    cuts=cuts,
)
def test_server_takes_any_bytes_after_a_plausible_start(head: bytes, data: bytes, cuts: list[int]) -> None:
    events = feed(WebSocket.server(), chunked(head + data, cuts))
    if b"\r\n\r\n" in head + data:
        assert events, "a whole request head was left undecided"


@given(position=st.integers(min_value=0, max_value=400), byte=st.integers(0, 255), data=junk, cuts=cuts)
def test_server_takes_a_mutated_upgrade_request(position: int, byte: int, data: bytes, cuts: list[int]) -> None:
    request = bytearray(_request_prefix())
    if position < len(request):
        request[position] = byte
    server = WebSocket.server()
    events = feed(server, chunked(bytes(request) + data, cuts))
    if any(isinstance(e, Request) for e in events) and server.state is not State.CLOSED:
        server.accept()  # whatever came early is read now
        feed(server, [b""])


@given(data=junk, cuts=cuts)
def test_open_server_takes_any_bytes(data: bytes, cuts: list[int]) -> None:
    server, client = opened_pair()
    events: list[object] = []
    sent = b""
    for chunk in chunked(data, cuts):
        events += server.receive_data(chunk)
        sent += server.data_to_send()
    assert all(isinstance(e, Text | Binary | Closed) for e in events)
    if server.state is State.CLOSED:  # it said so with a close frame (or echoed the peer's)
        assert isinstance(client.receive_data(sent)[-1], Closed)


@given(data=junk, cuts=cuts)
def test_client_takes_any_response(data: bytes, cuts: list[int]) -> None:
    client = WebSocket.client(URL)
    client.data_to_send()
    events = feed(client, chunked(data, cuts))
    assert all(isinstance(e, Opened | Text | Binary | Closed) for e in events)


@given(data=junk, cuts=cuts)
def test_open_client_takes_any_bytes(data: bytes, cuts: list[int]) -> None:
    _, client = opened_pair()
    events = feed(client, chunked(data, cuts))
    assert all(isinstance(e, Text | Binary | Closed) for e in events)


# -- valid streams ----------------------------------------------------------------------------------
messages = st.lists(
    st.one_of(
        st.binary(max_size=3000).map(lambda b: ("binary", b)),
        st.text(max_size=500).map(lambda t: ("text", t)),
        st.binary(max_size=125).map(lambda b: ("ping", b)),
    ),
    max_size=20,
)


def _stream(sender: WebSocket, items: list[tuple[str, Any]]) -> bytes:
    out = b""
    for kind, value in items:
        out += (
            sender.binary(value) if kind == "binary" else sender.text(value) if kind == "text" else sender.ping(value)
        )
    return out


def _expected(items: list[tuple[str, Any]]) -> list[Any]:
    return [Binary(v) if k == "binary" else Text(v) for k, v in items if k != "ping"]


@given(items=messages, cuts=cuts, close=st.booleans())
def test_client_frames_parse_the_same_in_any_chunking(items: list[Any], cuts: list[int], close: bool) -> None:
    server, client = opened_pair()
    stream = _stream(client, items) + (client.close(4000, "bye") if close else b"")
    events = feed(server, chunked(stream, cuts))
    assert events == _expected(items) + ([Closed(4000, "bye")] if close else [])


@given(items=messages, cuts=cuts)
def test_server_frames_parse_the_same_in_any_chunking(items: list[Any], cuts: list[int]) -> None:
    server, client = opened_pair()
    stream = _stream(server, items)
    assert feed(client, chunked(stream, cuts)) == _expected(items)


@given(items=messages, split=st.integers(1, 2000), cuts=cuts)
def test_fragmented_messages_reassemble(items: list[Any], split: int, cuts: list[int]) -> None:
    """Text and binary messages sent as fragments (client frames built by hand) come out whole."""
    server, _ = opened_pair()
    key = b"\x11\x22\x33\x44"

    def frame(first: int, payload: bytes) -> bytes:
        n = len(payload)
        head = bytes((first, 0x80 | n)) if n < 126 else bytes((first, 0x80 | 126)) + n.to_bytes(2, "big")
        return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))

    stream = b""
    for kind, value in items:
        if kind == "ping":
            continue
        payload = value if kind == "binary" else value.encode()
        parts = [payload[i : i + split] for i in range(0, len(payload), split)] or [b""]
        for i, part in enumerate(parts):
            opcode = (2 if kind == "binary" else 1) if i == 0 else 0
            stream += frame((0x80 if i == len(parts) - 1 else 0) | opcode, part)
    assert feed(server, chunked(stream, cuts)) == _expected(items)


@given(items=messages, position=st.integers(0, 10000), byte=st.integers(0, 255), cuts=cuts)
def test_mutated_frame_streams_give_events_or_close(
    items: list[Any], position: int, byte: int, cuts: list[int]
) -> None:
    server, client = opened_pair()
    stream = bytearray(_stream(client, items))
    if stream:
        stream[position % len(stream)] = byte
    feed(server, chunked(bytes(stream), cuts))
    _, client2 = opened_pair()
    back = bytearray(_stream(server, items))
    if back:
        back[position % len(back)] = byte
    feed(client2, chunked(bytes(back), cuts))
