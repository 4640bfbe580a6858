"""The sans-I/O ESL session driven by every conversation recorded with FreeSWITCH 1.10.12, without sockets:
the bytes it writes are the recorded ones, each reply is paired with the command that asked for it, and the
handshake's states, refusals and misuses are what FreeSWITCH and we do."""

from __future__ import annotations

import ast
import random
import re
from pathlib import Path

import pytest

from orchestrator.esl import protocol as p
from orchestrator.esl import session as s
from orchestrator.esl.session import NEED_DATA, EslSession, SessionState

TESTS = Path(__file__).resolve().parent
SHARED = TESTS.parents[1] / "shared" / "fixtures" / "freeswitch-1.10.12"
if not SHARED.is_dir():  # a worktree: shared/ is beside the main checkout
    SHARED = TESTS.parents[2] / "shared" / "fixtures" / "freeswitch-1.10.12"
LOCAL = TESTS / "fixtures_esl"
#: every recorded ESL conversation but 16-esl-edge, which sends what this client never does on purpose
#: (blank and garbage commands, verbs in capitals, ``api`` without a command): FreeSWITCH leaves some unanswered
TRANSCRIPTS = sorted(t for d in (SHARED, LOCAL) for t in d.rglob("esl*.txt") if "16-esl-edge" not in t.parts)

GREETING = b"Content-Type: auth/request\n\n"
OK = b"Content-Type: command/reply\nReply-Text: +OK accepted\n\n"
SUBSCRIBED = b"Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n"
INVALID = b"Content-Type: command/reply\nReply-Text: -ERR invalid\n\n"
_BYE = b"Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
DISCONNECT = b"Content-Type: text/disconnect-notice\nContent-Length: %d\n\n%s" % (len(_BYE), _BYE)
DENIED = b"Content-Type: text/rude-rejection\nContent-Length: 24\n\nAccess Denied, go away.\n"


def plain_event(name: str) -> bytes:
    block = f"Event-Name: {name}\nUnique-ID: u1\n\n".encode()
    return b"Content-Length: %d\nContent-Type: text/event-plain\n\n%s" % (len(block), block)


def api_response(body: bytes) -> bytes:
    return b"Content-Type: api/response\nContent-Length: %d\n\n%s" % (len(body), body)


def transcript(path: Path) -> list[tuple[str, bytes]]:
    """``(SEND|RECV|EOF, bytes)`` steps of an ``esl.txt`` transcript."""
    out: list[tuple[str, bytes]] = []
    for line in path.read_text().splitlines():
        m = re.match(r"\[\s*[\d.]+\] (SEND|RECV) \d+ bytes: (b'.*'|b\".*\")$", line)
        if m:
            out.append((m.group(1), ast.literal_eval(m.group(2))))
        elif re.match(r"\[\s*[\d.]+\] RECV EOF", line):
            out.append(("EOF", b""))
    return out


def drain(session: EslSession) -> list[s.SessionEvent]:
    """Every event until the session needs data, is closed, or waits for us (auth, subscribe)."""
    out: list[s.SessionEvent] = []
    while session.state not in s.OUR_TURN and session.state is not SessionState.CLOSED:
        if (event := session.next_event()) is NEED_DATA:
            break
        out.append(event)
    return out


def feed(session: EslSession, data: bytes, chunk: int | None = None) -> list[s.SessionEvent]:
    """``data`` in reads of at most ``chunk`` bytes (random sizes), the events after each."""
    if chunk is None or not data:
        session.receive_data(data)
        return drain(session)
    rnd, out, i = random.Random(chunk), [], 0
    while i < len(data):
        n = rnd.randint(1, chunk)
        session.receive_data(data[i : i + n])
        out += drain(session)
        i += n
    return out


def send(session: EslSession, data: bytes) -> bytes:
    """What our side of the session writes for the recorded command ``data``."""
    line, _, rest = data.decode().partition("\n")
    if session.state is SessionState.GREETED:
        assert line.startswith("auth ")
        return session.auth(line.removeprefix("auth "))
    if session.state is SessionState.AUTHENTICATED:
        words = line.split(" ")
        if words[0] != "event" or len(words) < 3:  # a command-only client: nothing to subscribe
            assert session.subscribe([]) == b"" and session.state is SessionState.READY
        else:
            names = words[2:]
            custom = names[names.index("CUSTOM") + 1 :] if "CUSTOM" in names else []
            events = names[: names.index("CUSTOM")] if "CUSTOM" in names else names
            return session.subscribe(events, custom, words[1])
    headers = dict(h.split(": ", 1) for h in rest.strip("\n").splitlines()) or None
    encoded, _ = session.command(line, headers=headers)
    return encoded


def replay(path: Path, chunk: int | None = None) -> tuple[EslSession, list[s.SessionEvent]]:
    """The recorded conversation through a session: what it sends must be the recorded bytes."""
    session, events = EslSession(), []
    refused_locally = False
    for kind, data in transcript(path):
        if kind == "SEND":
            if session.state is SessionState.GREETED and not data.startswith(b"auth "):
                with pytest.raises(p.LocalProtocolError, match="before the session is ready"):
                    session.command(data.decode().split("\n", 1)[0])
                refused_locally = True  # 01 sends `api status` before auth: we never would; skip its answer
                continue
            refused_locally = False
            assert send(session, data) == data
        elif kind == "RECV" and refused_locally:
            assert data == b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n"
        else:
            events += feed(session, data, chunk)
    return session, events


def test_transcripts_found() -> None:
    assert len(TRANSCRIPTS) >= 30, (SHARED, LOCAL)


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=[str(t.relative_to(t.parents[2])) for t in TRANSCRIPTS])
def test_every_recorded_conversation_replays(path: Path) -> None:
    session, events = replay(path)
    assert isinstance(events[0], p.AuthRequest) and isinstance(events[1], s.Authenticated | s.AuthRejected)
    replies = [e for e in events if isinstance(e, s.Reply)]
    for reply in replies:  # each reply is of the kind its command gets
        api = reply.pending.line.startswith("api ")
        assert isinstance(reply.message, p.ApiResponse if api else p.CommandReply), reply.pending.line
        if reply.pending.line.startswith("bgapi "):
            assert reply.message.text.startswith("+OK Job-UUID: ")
    assert session.state in (SessionState.READY, SessionState.CLOSED)
    assert not any(isinstance(e, s.ConnectionClosed) for e in events[:-1])
    for chunk in (61, 1500):  # any read boundaries: the same events (1-byte reads: test_esl_protocol)
        assert replay(path, chunk)[1] == events


def test_basics_conversation() -> None:
    """01: greeting, auth, api/bgapi replies paired with their commands, BACKGROUND_JOB events, exit."""
    session, events = replay(SHARED / "01-esl-basics" / "esl.txt")
    assert events[1] == s.Authenticated("+OK accepted")
    paired = [(e.pending.line, e.message) for e in events if isinstance(e, s.Reply)]
    assert [line for line, _ in paired[:3]] == ["api status", "api version", "api no_such_command"]
    assert paired[0][1].body.startswith("UP 0 years")  # type: ignore[union-attr]
    assert ("api uuid_exists 00000000-0000-0000-0000-000000000000", p.ApiResponse("false")) in paired
    job = next(line for line, _ in paired if "Job-UUID" not in line and line.startswith("bgapi status"))
    assert job == "bgapi status"
    assert paired[-1][0] == "exit" and paired[-1][1].text == "+OK bye"  # type: ignore[union-attr]
    assert isinstance(events[-2], p.DisconnectNotice) and events[-1] == s.ConnectionClosed() and not session.pending


def test_wrong_password_conversation() -> None:
    session, events = replay(SHARED / "01-esl-basics" / "esl-wrongpass.txt")
    assert events == [p.AuthRequest(), s.AuthRejected("-ERR invalid")]
    assert session.state is SessionState.CLOSED and session.next_event() == s.ConnectionClosed()
    with pytest.raises(p.LocalProtocolError):
        session.command("api status")


def test_handshake_states_and_bytes() -> None:
    session = EslSession()
    assert session.state is SessionState.AWAIT_GREETING and session.next_event() is NEED_DATA
    assert feed(session, GREETING) == [p.AuthRequest()] and session.state is SessionState.GREETED
    assert session.auth("ClueCon") == b"auth ClueCon\n\n" and session.state is SessionState.AUTHENTICATING
    assert feed(session, OK) == [s.Authenticated("+OK accepted")] and session.state is SessionState.AUTHENTICATED
    data = session.subscribe(["CHANNEL_ANSWER"], ["sofia::notify_refer"], "json")
    assert data == b"event json CHANNEL_ANSWER CUSTOM sofia::notify_refer\n\n"
    assert session.state is SessionState.SUBSCRIBING
    assert feed(session, SUBSCRIBED) == [s.Subscribed("+OK event listener enabled plain")]
    assert session.state is SessionState.READY and not session.pending
    assert session.api("status", token="t")[0] == b"api status\n\n"
    assert session.bgapi("status", "j-1")[0] == b"bgapi status\nJob-UUID: j-1\n\n"
    [reply, bg] = feed(session, api_response(b"UP") + OK)
    assert isinstance(reply, s.Reply) and reply.pending.token == "t" and reply.message == p.ApiResponse("UP")
    assert isinstance(bg, s.Reply) and bg.pending.line == "bgapi status"
    assert feed(session, b"") == [s.ConnectionClosed()] and session.state is SessionState.CLOSED


def test_command_only_client_is_ready_without_subscribing() -> None:
    session = EslSession()
    feed(session, GREETING)
    session.auth("ClueCon")
    feed(session, OK)
    assert session.subscribe([], []) == b"" and session.state is SessionState.READY


def test_backlog_frames_behind_the_subscription_answer_wait_for_ready() -> None:
    """FreeSWITCH sends events right behind ``+OK event listener enabled``: one read holds both."""
    session = EslSession()
    feed(session, GREETING)
    session.auth("ClueCon")
    feed(session, OK)
    session.subscribe(["ALL"])
    session.receive_data(SUBSCRIBED + plain_event("CHANNEL_CREATE") + plain_event("CHANNEL_PARK"))
    assert isinstance(session.next_event(), s.Subscribed) and session.state is SessionState.READY
    assert session.backlog == 2
    assert [e.name for e in drain(session)] == ["CHANNEL_CREATE", "CHANNEL_PARK"]  # type: ignore[union-attr]


def test_events_before_ready_are_handed_out_and_disconnect_notices_dropped() -> None:
    session = EslSession()
    events = feed(session, plain_event("HEARTBEAT") + DISCONNECT + GREETING)
    assert [type(e) for e in events] == [p.Event, p.AuthRequest]


def test_late_reply_of_abandoned_command_is_dropped() -> None:
    session = ready_session()
    _, first = session.api("uuid_deflect x sip:a@b")
    session.api("status")
    session.abandon(first)  # the caller gave up waiting
    events = feed(session, api_response(b"+OK") + api_response(b"UP"))
    assert [(r.pending.line, r.message.body) for r in events] == [("api status", "UP")]  # type: ignore[union-attr]


def test_api_refused_by_the_socket_gets_a_command_reply() -> None:
    session = ready_session()
    session.api("status")
    [reply] = feed(session, b"Content-Type: command/reply\nReply-Text: -ERR command not found\n\n")
    assert isinstance(reply, s.Reply) and isinstance(reply.message, p.CommandReply)


def ready_session() -> EslSession:
    session = EslSession()
    feed(session, GREETING)
    session.auth("ClueCon")
    feed(session, OK)
    session.subscribe(["ALL"])
    feed(session, SUBSCRIBED)
    return session


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([OK], "reply without a command"),
        ([plain_event("HEARTBEAT") + api_response(b"x")], "reply without a command"),
        ([b"Content-Type: text/event-xml\nContent-Length: 4\n\n<x/>"], "expected auth/request, got UnknownFrame"),
        ([b"HTTP/1.1 400 Bad Request\r\n\r\n"], "malformed header line"),
        ([GREETING, "auth", api_response(b"+OK accepted")], "api/response for 'auth'"),
        ([GREETING, "auth", OK + OK], "reply without a command"),
        ([GREETING, "auth", GREETING], "expected a command/reply to auth, got AuthRequest"),
        ([GREETING, "auth", OK, "subscribe", b"Content-Type: command/reply\nReply-Text: -ERR no\n\n"], "refused"),
        ([GREETING, "auth", OK, "subscribe", DENIED], "event subscription refused"),
    ],
)
def test_what_freeswitch_must_not_send_is_a_remote_protocol_error(steps: list[bytes | str], message: str) -> None:
    session = EslSession()
    with pytest.raises(p.RemoteProtocolError, match=message):
        for step in steps:
            if step == "auth":
                session.auth("ClueCon")
            elif step == "subscribe":
                session.subscribe(["ALL"])
            else:
                assert isinstance(step, bytes)
                feed(session, step)
    assert session.state is SessionState.CLOSED
    with pytest.raises(p.RemoteProtocolError, match=message):  # spent: the same error again
        session.next_event()


def test_wrong_reply_kind_keeps_the_command_pending() -> None:
    """So the client can fail its waiter at once when it drops the connection."""
    session = ready_session()
    session.command("filter Unique-ID x")
    with pytest.raises(p.RemoteProtocolError, match="api/response for 'filter'"):
        feed(session, api_response(b"OK"))
    assert [e.line for e in session.pending] == ["filter Unique-ID x"]


@pytest.mark.parametrize("where", ["greeting", "auth"])
def test_rude_rejection_closes_the_session(where: str) -> None:
    session = EslSession()
    if where == "auth":
        feed(session, GREETING)
        session.auth("ClueCon")
    [event] = feed(session, DENIED)
    assert isinstance(event, p.RudeRejection) and session.state is SessionState.CLOSED
    assert session.next_event() == s.ConnectionClosed()


def test_our_misuse_is_a_local_protocol_error_and_sends_nothing() -> None:
    session = EslSession()
    with pytest.raises(p.LocalProtocolError, match="before the session is ready"):
        session.api("status")
    with pytest.raises(p.LocalProtocolError, match="cannot send auth in state AWAIT_GREETING"):
        session.auth("ClueCon")
    with pytest.raises(p.LocalProtocolError, match="cannot send subscribe"):
        session.subscribe(["ALL"])
    feed(session, GREETING)
    with pytest.raises(p.LocalProtocolError, match=r"waits for auth\(\)"):
        session.next_event()
    with pytest.raises(p.LocalProtocolError, match="line breaks"):
        session.auth("pw\napi fsctl shutdown")
    assert session.state is SessionState.GREETED and not session.pending  # nothing was sent
    session.auth("ClueCon")
    with pytest.raises(p.LocalProtocolError):
        session.auth("ClueCon")
    feed(session, OK)
    with pytest.raises(p.LocalProtocolError, match="plain or json"):
        session.subscribe(["ALL"], fmt="xml")
    assert session.state is SessionState.AUTHENTICATED
    session.subscribe(["ALL"])
    feed(session, SUBSCRIBED)
    with pytest.raises(p.LocalProtocolError, match="line breaks"):
        session.api("uuid_kill x\n\napi fsctl shutdown")
    assert not session.pending
    session.close()
    with pytest.raises(p.LocalProtocolError):
        session.api("status")


def test_error_names() -> None:
    """One ESL base, two sides; a line break stays a ValueError (what encoding always raised)."""
    assert issubclass(p.LocalProtocolError, p.EslProtocolError) and issubclass(p.LocalProtocolError, ValueError)
    assert issubclass(p.RemoteProtocolError, p.EslProtocolError)
    assert not issubclass(p.RemoteProtocolError, p.LocalProtocolError)
    assert not hasattr(p, "ProtocolError")


def test_transitions_table_is_the_handshake() -> None:
    reached = {SessionState.AWAIT_GREETING}
    for (state, _), new in s.TRANSITIONS.items():
        assert state in reached or state in {n for n in s.TRANSITIONS.values()}
        reached.add(new)
    assert reached == set(SessionState)
