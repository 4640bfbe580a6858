"""The sans-I/O ESL protocol against every byte FreeSWITCH 1.10.12 sent in the recorded scenarios."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from orchestrator.esl import protocol as p

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "freeswitch-1.10.12"
if not FIXTURES.is_dir():  # CI clones main with ../shared beside it
    FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "freeswitch-1.10.12"
ALL_BIN = sorted(FIXTURES.rglob("*.bin"))


def parse_all(data: bytes, chunks: int | None = None) -> list[p.Message]:
    parser = p.Parser()
    if chunks is None:
        out = parser.feed(data)
    else:
        rnd = random.Random(chunks)
        out, i = [], 0
        while i < len(data):
            n = rnd.randint(1, chunks)
            out += parser.feed(data[i : i + n])
            i += n
    assert parser.buffered == 0
    return out


def events(name: str) -> list[p.Event]:
    return [m for m in parse_all((FIXTURES / name).read_bytes()) if isinstance(m, p.Event)]


def test_fixtures_present() -> None:
    assert len(ALL_BIN) >= 20, FIXTURES


@pytest.mark.parametrize("path", ALL_BIN, ids=[str(b.relative_to(FIXTURES)) for b in ALL_BIN])
def test_every_recording_parses_in_any_chunking(path: Path) -> None:
    data = path.read_bytes()
    whole = parse_all(data)
    assert isinstance(whole[0], p.AuthRequest)
    assert all(not isinstance(m, p.UnknownFrame) for m in whole)
    for chunk in (1, 7, 64, 1500):
        assert parse_all(data, chunk) == whole
    for m in whole:
        if isinstance(m, p.Event):
            assert m.name and m.get("Event-Sequence").isdigit()


def test_basics_replies() -> None:
    msgs = parse_all((FIXTURES / "01-esl-basics" / "esl.bin").read_bytes())
    replies = [m for m in msgs if isinstance(m, p.CommandReply)]
    assert replies[0].text == "-ERR command not found"  # api before auth
    assert replies[1].text == "+OK accepted" and replies[1].ok
    apis = [m.body for m in msgs if isinstance(m, p.ApiResponse)]
    assert apis[0].startswith("UP 0 years") and "is ready" in apis[0]
    assert "-ERR no_such_command Command not found!\n" in apis
    assert "false" in apis  # uuid_exists: no trailing newline
    bg = [r for r in replies if r.text.startswith("+OK Job-UUID")]
    assert bg and all(r.job_uuid and r.text.endswith(r.job_uuid) for r in bg)
    jobs = [m for m in msgs if isinstance(m, p.Event) and m.name == "BACKGROUND_JOB"]
    assert any(j.body == "-ERR no_such_command Command not found!\n" for j in jobs)
    assert any(j.get("Job-UUID") == "11111111-2222-3333-4444-555555555555" for j in jobs)
    assert isinstance(msgs[-1], p.DisconnectNotice)


def test_wrong_password() -> None:
    msgs = parse_all((FIXTURES / "01-esl-basics" / "esl-wrongpass.bin").read_bytes())
    assert [type(m) for m in msgs] == [p.AuthRequest, p.CommandReply, p.DisconnectNotice]
    assert msgs[1].text == "-ERR invalid"


def test_plain_and_json_events_agree() -> None:
    """Fixture 02 recorded the same call on a plain and a json listener: same decoded headers."""
    plain = events("02-inbound-call/esl.bin")
    js = events("02-inbound-call/esl-json.bin")
    assert [e.get("Event-Sequence") for e in plain] == [e.get("Event-Sequence") for e in js]
    for a, b in zip(plain, js, strict=True):
        assert a.name == b.name
        for key in ("Unique-ID", "Channel-State", "variable_sip_h_X-Campaign", "DTMF-Digit", "Caller-Caller-ID-Name"):
            assert a.get(key) == b.get(key), (a.name, key)


def test_url_decoding_and_variables() -> None:
    evs = events("02-inbound-call/esl.bin")
    create = next(e for e in evs if e.name == "CHANNEL_CREATE")
    assert create.variable("sip_h_X-Campaign") == "spring sale"
    assert create.variable("sip_h_X-Customer-Id") == "42"
    assert create.uuid and create["Call-Direction"] == "inbound"
    digits = [e.get("DTMF-Digit") for e in evs if e.name == "DTMF"]
    assert digits == ["1", "#"]
    sdp = create.variable("switch_r_sdp")
    assert "\r\n" in sdp and sdp.startswith("v=0")


def test_event_bodies() -> None:
    """BACKGROUND_JOB carries the originate result as the event body (inner Content-Length)."""
    for cause, body in (
        ("486", "-ERR USER_BUSY\n"),
        ("404", "-ERR UNALLOCATED_NUMBER\n"),
        ("488", "-ERR INCOMPATIBLE_DESTINATION\n"),
    ):
        job = next(e for e in events(f"04-originate-failures/{cause}/esl.bin") if e.name == "BACKGROUND_JOB")
        assert job.body == body
    ok = next(e for e in events("03-originate-answered/esl.bin") if e.name == "BACKGROUND_JOB")
    assert re.fullmatch(r"\+OK [0-9a-f-]{36}\n", ok.body)
    notify = [e for e in events("06-refer/notify-603/esl.bin") if e.subclass == "sofia::notify_refer"]
    assert notify and notify[0].body.startswith("SIP/2.0 603")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n", "malformed header line"),
        (b"Content-Type: api/response\nContent-Length: ten\n\n", "bad Content-Length"),
        (b"Content-Type: api/response\nContent-Length: 999999999999\n\n", "exceeds"),
        (b"X" * (p.MAX_HEADER_BYTES + 10), "header block too long"),
        (b"Just-A-Header: 1\n\n", "without Content-Type"),
        (b"Content-Type: text/event-json\nContent-Length: 5\n\n[1,2]", "not an object"),
        (b"Content-Type: text/event-json\nContent-Length: 3\n\n{x}", "not valid JSON"),
    ],
)
def test_garbage_raises_protocol_error(data: bytes, message: str) -> None:
    parser = p.Parser()
    with pytest.raises(p.RemoteProtocolError, match=message):
        parser.feed(data)


def test_buffer_is_bounded_while_waiting_for_a_blank_line() -> None:
    parser = p.Parser(max_header=1024)
    parser.feed(b"Content-Type: api/response\n")
    with pytest.raises(p.RemoteProtocolError):
        for _ in range(100):
            parser.feed(b"Filler: " + b"y" * 100 + b"\n")


def test_unknown_content_type_is_kept() -> None:
    [m] = p.Parser().feed(b"Content-Type: text/event-xml\nContent-Length: 4\n\n<x/>")
    assert isinstance(m, p.UnknownFrame) and m.body == b"<x/>"


def test_commands_are_encoded_and_injection_is_refused() -> None:
    assert p.api("status") == b"api status\n\n"
    assert p.bgapi("originate x", "j-1") == b"bgapi originate x\nJob-UUID: j-1\n\n"
    assert p.subscribe(["CHANNEL_ANSWER", "DTMF"], ["sofia::notify_refer"]) == (
        b"event plain CHANNEL_ANSWER DTMF CUSTOM sofia::notify_refer\n\n"
    )
    with pytest.raises(ValueError, match="line breaks"):
        p.api("uuid_kill x\n\napi fsctl shutdown")
    with pytest.raises(ValueError):
        p.subscribe(["ALL"], fmt="xml")


@pytest.mark.parametrize("path", ALL_BIN, ids=[str(b.relative_to(FIXTURES)) for b in ALL_BIN])
def test_lazy_lookup_agrees_with_full_decode(path: Path) -> None:
    """Event.get (finds one header in the raw block) returns exactly what the decoded dict holds."""
    decoded = [m for m in parse_all(path.read_bytes()) if isinstance(m, p.Event)]
    lazy = [m for m in parse_all(path.read_bytes()) if isinstance(m, p.Event)]
    for full, fresh in zip(decoded, lazy, strict=True):
        for name, value in full.headers.items():
            assert fresh.get(name) == value, (name, value)
        assert fresh.get("No-Such-Header", "x") == "x"


def test_empty_values_and_prefix_names() -> None:
    text = "Event-Name: CUSTOM\nEmpty:\nEmpty-Two: \nVariable: a%20b\nVariable-Long: c"
    ev = p.parse_plain_event(text)
    assert ev.get("Empty") == "" and ev.get("Empty-Two") == ""
    assert ev.get("Variable") == "a b" and ev.get("Variable-Long") == "c"
    assert "Empty" in ev and "Nope" not in ev
    assert ev.headers == {"Event-Name": "CUSTOM", "Empty": "", "Empty-Two": "", "Variable": "a b", "Variable-Long": "c"}


def test_garbage_inside_an_event() -> None:
    with pytest.raises(p.RemoteProtocolError):
        p.parse_plain_event("not a header\nX: y")
    ev = p.parse_plain_event("Event-Name: X\n???")
    with pytest.raises(p.RemoteProtocolError, match="malformed header line"):
        _ = ev.headers


def _frame(ctype: bytes, body: bytes, length: bytes | None = None) -> bytes:
    return b"Content-Type: %s\nContent-Length: %s\n\n%s" % (
        ctype,
        length if length is not None else b"%d" % len(body),
        body,
    )


# every way a length can be not a number of ASCII digits: str.isdigit() takes most of these, int() some
BAD_LENGTHS = ["²", "٣", "５", "𝟗", "¹²", "-1", "+1", " 1", "1 ", "0x10", "1e3", "1_0", "", "9" * 19, "9" * 5000, "½"]


@pytest.mark.parametrize("length", BAD_LENGTHS, ids=[repr(x[:8]) for x in BAD_LENGTHS])
def test_bad_frame_length_is_a_protocol_error(length: str) -> None:
    data = b"Content-Type: api/response\nContent-Length: " + length.encode() + b"\n\nxyz"
    if not length:  # "Content-Length:" with an empty value
        data = b"Content-Type: api/response\nContent-Length:\n\nxyz"
    with pytest.raises(p.RemoteProtocolError, match="bad Content-Length"):
        p.Parser().feed(data)


@pytest.mark.parametrize("length", [x for x in BAD_LENGTHS if x], ids=[repr(x[:8]) for x in BAD_LENGTHS if x])
def test_bad_event_body_length_is_a_protocol_error(length: str) -> None:
    with pytest.raises(p.RemoteProtocolError, match="bad Content-Length in event"):
        p.Parser().feed(
            _frame(b"text/event-plain", b"Event-Name: CUSTOM\nContent-Length: " + length.encode() + b"\n\nab")
        )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "RecursionError"),
        (b'{"a":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001, "RecursionError"),
        (b"[" * 100_000, "RecursionError|not valid JSON"),
        (b'{"a": ' + b"1" * 5000 + b"}", "ValueError"),  # int() digit limit
        (b'{"a": -' + b"1" * 5000 + b"}", "ValueError"),
        (b'"just a string"', "not an object"),
        (b"null", "not an object"),
        (b"", "not valid JSON"),
        (b'{"a": "b"} trailing', "not valid JSON"),
        (b"\xff\xfe{}", "not valid JSON"),
    ],
)
def test_hostile_json_events_are_protocol_errors(body: bytes, message: str) -> None:
    with pytest.raises(p.RemoteProtocolError, match=message):
        p.Parser().feed(_frame(b"text/event-json", body))


def test_json_event_oddities_are_made_safe() -> None:
    body = b'{"Event-Name": "X", "Unique-ID": "\\ud800a\\udfff", "Big": 1e400, "Pair": "\\ud83d\\ude00", "_body": "\\udc00"}'
    [ev] = p.Parser().feed(_frame(b"text/event-json", body))
    assert ev.uuid == "\ufffda\ufffd" and ev.body == "\ufffd" and ev.get("Pair") == "😀"
    assert ev.get("Big") == "Infinity"
    for value in (*ev.headers.values(), ev.body):
        value.encode("utf-8")  # every value can go into a command or a log line


def test_event_body_is_counted_in_bytes_even_when_not_utf8() -> None:
    body = b"\xff\xfe\xfdabc\n\nrest"
    inner = b"Event-Name: CUSTOM\nContent-Length: %d\n\n%s" % (len(body), body)
    [ev] = p.Parser().feed(_frame(b"text/event-plain", inner + b"TRAILING"))
    assert ev.body == body.decode("utf-8", "replace")  # exactly Content-Length bytes, not a char more


def test_encoded_nul_does_not_split_a_header() -> None:
    ev = p.parse_plain_event("Event-Name: X\nVariable-A: a%00Unique-ID: forged\nUnique-ID: real")
    assert ev.uuid == "real" and ev.headers["Unique-ID"] == "real"
    assert ev.headers["Variable-A"] == ev.get("Variable-A") == "a\x00Unique-ID: forged"


def test_a_spent_parser_keeps_refusing() -> None:
    parser = p.Parser()
    with pytest.raises(p.RemoteProtocolError):
        parser.feed(b"Content-Type: api/response\nContent-Length: \xc2\xb2\n\n")
    with pytest.raises(p.RemoteProtocolError):
        parser.feed(b"Content-Type: auth/request\n\n")
