"""The ESL parser (and session) against arbitrary and mutated input: messages or RemoteProtocolError, nothing
else, whatever the bytes and wherever the reads split them; a valid stream parses the same in any chunking."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from orchestrator.esl import protocol as p

TESTS = Path(__file__).resolve().parents[1]
FIXTURE_DIRS = [TESTS / "fixtures_esl", TESTS.parents[1] / "shared" / "fixtures" / "freeswitch-1.10.12"]
if not FIXTURE_DIRS[1].is_dir():  # a worktree: shared/ is beside the main checkout
    FIXTURE_DIRS[1] = TESTS.parents[2] / "shared" / "fixtures" / "freeswitch-1.10.12"


def split_frames(data: bytes) -> list[bytes]:
    """A recording cut into its frames (independently of the parser under test)."""
    out, pos = [], 0
    while pos < len(data):
        end = data.index(b"\n\n", pos)
        length = 0
        for line in data[pos:end].split(b"\n"):
            if line.startswith(b"Content-Length: "):
                length = int(line[16:])
        out.append(data[pos : end + 2 + length])
        pos = end + 2 + length
    return out


def _frames() -> list[bytes]:
    seen: dict[bytes, None] = {}
    for d in FIXTURE_DIRS:
        for path in sorted(d.rglob("*.bin")):
            for f in split_frames(path.read_bytes()):
                if len(f) < 6000:  # keep examples small; the big ones are covered by tests/test_esl_protocol.py
                    seen.setdefault(f, None)
    return list(seen)


FRAMES = _frames()
#: bytes that tend to break parsers: separators, non-ASCII digits, escapes, invalid UTF-8, huge numbers
TOKENS = [
    b"\n", b"\n\n", b"\r\n", b":", b": ", b"%", b"%00", b"%0A", b"%ZZ", b"\x00", b"\xff", b"\xc2", b"\xed\xa0\x80",
    "²".encode(), "٣".encode(), "５".encode(), b"-1", b"+1", b"9" * 30, b"9" * 5000, b"Content-Length: ",
    b"Content-Length: \xc2\xb2\n", b"Content-Type: text/event-json\n", b"Content-Type: text/event-plain\n",
    b"Content-Type: api/response\n", b"Content-Type: command/reply\n", b"[" * 3000, b"{\"a\":" * 2000,
    b'"\\ud800"', b"1e400", b"\\u0000",
]  # fmt: skip
#: what a Content-Length could say instead of ASCII digits
LENGTHS = ["²".encode(), "٣".encode(), "５".encode(), "𝟗".encode(), b"-1", b"+1", b" 1", b"1 ", b"0x1", b"9" * 30,
           b"9" * 5000, b"", b"1e3", b"\xff"]  # fmt: skip
OPS = ["length", "length", "value", "value", "flip", "insert", "delete", "replace", "truncate"]


def feed_all(data: bytes, cuts: list[int]) -> tuple[list[p.Message], p.RemoteProtocolError | None]:
    """Feed ``data`` split at ``cuts``; the messages and the error that ended it, if any."""
    parser = p.Parser(max_body=1 << 20)
    out: list[p.Message] = []
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for a, b in itertools.pairwise(bounds):
        try:
            out += parser.feed(data[a:b])
        except p.RemoteProtocolError as exc:
            try:  # a spent parser keeps refusing
                parser.feed(b"Content-Type: auth/request\n\n")
            except p.RemoteProtocolError:
                pass
            else:
                raise AssertionError("parser accepted input after a protocol error") from None
            return out, exc
    return out, None


def touch(msg: p.Message) -> None:
    """Use a message the way the client and the controller do; only RemoteProtocolError may come out."""
    if isinstance(msg, p.Event):
        for name in ("Event-Name", "Unique-ID", "Job-UUID", "Content-Length", "variable_sipagent_agent"):
            msg.get(name)
        _ = (msg.name, msg.uuid, msg.subclass, msg.body, repr(msg), "Unique-ID" in msg)
        try:
            headers = msg.headers
        except p.RemoteProtocolError:
            return
        for k, v in headers.items():
            assert isinstance(k, str) and isinstance(v, str)
            v.encode("utf-8")  # no lone surrogates: every value can go into a command or a log
    elif isinstance(msg, p.CommandReply):
        _ = (msg.ok, msg.job_uuid, msg.text.encode("utf-8"))
    elif isinstance(msg, p.ApiResponse | p.DisconnectNotice | p.RudeRejection):
        _ = msg.body.encode("utf-8")


cuts = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12)


@given(st.binary(max_size=2000), cuts)
def test_arbitrary_bytes(data: bytes, where: list[int]) -> None:
    messages, _ = feed_all(data, where)
    for m in messages:
        touch(m)


@given(st.lists(st.sampled_from(FRAMES), min_size=1, max_size=6), st.data())
def test_mutated_real_frames(frames: list[bytes], data: st.DataObject) -> None:
    frames = list(frames)
    for _ in range(data.draw(st.integers(0, 3), label="body mutations")):  # inside a frame, its length kept right
        i = data.draw(st.integers(0, len(frames) - 1), label="frame")
        head, sep, body = frames[i].partition(b"\n\n")
        at = data.draw(st.integers(0, len(body)), label="body at")
        body = (
            body[:at]
            + data.draw(st.sampled_from(TOKENS), label="body token")
            + body[at + data.draw(st.integers(0, 20)) :]
        )
        frames[i] = re.sub(rb"Content-Length: \d+", b"Content-Length: %d" % len(body), head, count=1) + sep + body
    stream = bytearray(b"".join(frames))
    for _ in range(data.draw(st.integers(0, 6), label="mutations")):
        at = data.draw(st.integers(0, len(stream)), label="at")
        op = data.draw(st.sampled_from(OPS), label="op")
        if op in ("value", "length"):  # a header's value (any, or a Content-Length, outer or inner) replaced
            key = b": " if op == "value" else b"Content-Length: "
            starts = [i + len(key) for i in range(len(stream)) if stream.startswith(key, i)]
            if starts:
                start = data.draw(st.sampled_from(starts), label="header")
                end = stream.find(b"\n", start)
                value = data.draw(st.sampled_from(TOKENS if op == "value" else LENGTHS), label="value")
                stream[start : end if end >= 0 else len(stream)] = value
        elif op == "flip" and at < len(stream):
            stream[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            stream[at:at] = data.draw(st.sampled_from(TOKENS) | st.binary(max_size=8), label="insert")
        elif op == "delete":
            del stream[at : at + data.draw(st.integers(1, 40))]
        elif op == "replace":
            stream[at : at + data.draw(st.integers(1, 12))] = data.draw(st.sampled_from(TOKENS), label="with")
        else:
            del stream[at:]
    messages, _ = feed_all(bytes(stream), data.draw(cuts, label="cuts"))
    for m in messages:
        touch(m)


@given(st.lists(st.sampled_from(FRAMES), min_size=1, max_size=8), cuts)
def test_valid_stream_same_in_any_chunking(frames: list[bytes], where: list[int]) -> None:
    stream = b"".join(frames)
    whole, error = feed_all(stream, [])
    assert error is None and len(whole) == len(frames)
    chunked, error = feed_all(stream, where)
    assert error is None and chunked == whole
    for m in whole:
        touch(m)


names = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,30}", fullmatch=True).filter(lambda n: n != "Content-Length")
values = st.text(st.characters(exclude_categories=["Cs"]), max_size=60)


@given(st.dictionaries(names, values, min_size=1, max_size=8), st.binary(max_size=200), cuts)
def test_plain_events_round_trip(headers: dict[str, str], body: bytes, where: list[int]) -> None:
    """An event FreeSWITCH-style (values URL-encoded, body counted in bytes) reads back exactly."""
    block = "".join(f"{k}: {quote(v, safe='')}\n" for k, v in headers.items())
    inner = block.encode() + (b"Content-Length: %d\n\n%s" % (len(body), body) if body else b"\n")
    frame = b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(inner), inner)
    [whole], error = feed_all(frame, [])
    assert error is None and feed_all(frame, where) == ([whole], None)
    assert isinstance(whole, p.Event)
    for k, v in headers.items():
        assert whole.get(k) == v and whole.headers[k] == v
    assert whole.body == body.decode("utf-8", "replace")


@given(st.dictionaries(names, st.text(max_size=40) | st.integers() | st.floats(), max_size=8), st.text(max_size=80))
def test_json_events_round_trip(headers: dict[str, object], body: str) -> None:
    data = json.dumps({**headers, "_body": body}).encode()
    [event] = p.Parser().feed(b"Content-Type: text/event-json\nContent-Length: %d\n\n%s" % (len(data), data))
    assert isinstance(event, p.Event) and event.body == body
    for k, v in headers.items():
        assert event.get(k) == (v if isinstance(v, str) else json.dumps(v))


@given(
    st.binary(max_size=300), st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"), max_size=60)
)
def test_replies_round_trip(body: bytes, text: str) -> None:
    data = b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)
    data += b"Content-Type: command/reply\nReply-Text: %s\n\n" % text.encode()
    reply = p.CommandReply(text, {"Content-Type": "command/reply", "Reply-Text": text})
    assert p.Parser().feed(data) == [p.ApiResponse(body.decode("utf-8", "replace")), reply]


@given(st.lists(st.sampled_from(FRAMES) | st.binary(max_size=80), max_size=8), st.integers(0, 3))
def test_session_in_any_handshake_step_raises_only_remote_protocol_errors(chunks: list[bytes], step: int) -> None:
    """Recorded frames and garbage, in any order, at any step of the handshake: the session hands out events or
    raises RemoteProtocolError (and then stays spent), never anything else."""
    from orchestrator.esl import session as s

    session = s.EslSession(max_frame=1 << 20)
    session.receive_data(b"Content-Type: auth/request\n\n")
    if step >= 1:
        session.next_event()
        session.auth("ClueCon")
    if step >= 2:
        session.receive_data(b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
        session.next_event()
        session.subscribe(["ALL"])
    if step >= 3:
        session.receive_data(b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n")
        session.next_event()
    try:
        for chunk in [*chunks, b""]:
            session.receive_data(chunk)
            while session.state not in s.OUR_TURN and (event := session.next_event()) is not s.NEED_DATA:
                if isinstance(event, s.ConnectionClosed):
                    break
                if isinstance(event, p.Message):
                    touch(event)
    except p.RemoteProtocolError:
        assert session.state is s.SessionState.CLOSED
        try:
            session.next_event()
        except p.RemoteProtocolError:
            return
        raise AssertionError("session handed out events after a protocol error") from None
