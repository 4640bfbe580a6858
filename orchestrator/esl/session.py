"""One ESL connection's state, sans-I/O: bytes in, session events out; commands to bytes.

An inbound event-socket session goes through a fixed handshake (mod_event_socket, checked on
FreeSWITCH 1.10.12, ``shared/fixtures/freeswitch-1.10.12/01-esl-basics``)::

    AWAIT_GREETING --auth/request--> GREETED --auth()--> AUTHENTICATING --+OK--> AUTHENTICATED
    AUTHENTICATED --subscribe()--> SUBSCRIBING --+OK--> READY      (nothing to subscribe: READY at once)
    AUTHENTICATING --"-ERR invalid"--> CLOSED          any state --rude rejection, EOF, error--> CLOSED

:class:`EslSession` holds all of it (the table is :data:`TRANSITIONS`), in the manner of h11:
:meth:`~EslSession.receive_data` takes what the socket read (``b""`` = the peer closed),
:meth:`~EslSession.next_event` hands out one :data:`SessionEvent` at a time or :data:`NEED_DATA`,
and :meth:`~EslSession.auth`, :meth:`~EslSession.subscribe`, :meth:`~EslSession.api`,
:meth:`~EslSession.bgapi` and :meth:`~EslSession.command` return the bytes to write. FreeSWITCH answers
commands strictly in order, so each reply comes back as a :class:`Reply` paired with the
:class:`Pending` command it answers (first in, first out); a reply nobody asked for, or an
``api/response`` to a non-``api`` command, is a :class:`~orchestrator.esl.protocol.RemoteProtocolError`.

Frames that arrive in the same read as a handshake answer -- FreeSWITCH starts sending events right
behind ``+OK event listener enabled`` -- wait in the session's backlog (:attr:`EslSession.backlog`)
until :meth:`~EslSession.next_event` hands them out after that answer, so none is lost between the
handshake and READY. Events that arrive before READY are handed out as they come; a disconnect
notice during the handshake is dropped (what counts there is the answer it follows, e.g. ``-ERR
invalid``).

Errors: :class:`~orchestrator.esl.protocol.RemoteProtocolError` when what FreeSWITCH sent cannot be
parsed or is out of place (the session is then CLOSED and raises it again on every call);
:class:`~orchestrator.esl.protocol.LocalProtocolError` when we misuse the session (a command before
READY, ``auth`` before the greeting, a line break in a command); nothing is sent then.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrator.esl import protocol as p
from orchestrator.esl.protocol import LocalProtocolError, RemoteProtocolError


class SessionState(enum.Enum):
    """Where an ESL session is."""

    AWAIT_GREETING = "await_greeting"  # connected, waiting for auth/request
    GREETED = "greeted"  # our turn: send auth
    AUTHENTICATING = "authenticating"  # auth sent, waiting for its reply
    AUTHENTICATED = "authenticated"  # our turn: subscribe (or nothing)
    SUBSCRIBING = "subscribing"  # event subscription sent, waiting for its reply
    READY = "ready"  # commands may be sent; events and replies flow
    CLOSED = "closed"  # rejected, refused, closed by the peer or broken: spent


S = SessionState
#: (state, what happened) -> next state; anything else from the far end is a RemoteProtocolError,
#: from us a LocalProtocolError. Any state moves to CLOSED on a rude rejection, the peer's EOF or an error.
TRANSITIONS: dict[tuple[SessionState, str], SessionState] = {
    (S.AWAIT_GREETING, "greeting"): S.GREETED,
    (S.GREETED, "send_auth"): S.AUTHENTICATING,
    (S.AUTHENTICATING, "auth_accepted"): S.AUTHENTICATED,
    (S.AUTHENTICATING, "auth_rejected"): S.CLOSED,
    (S.AUTHENTICATED, "send_subscribe"): S.SUBSCRIBING,
    (S.AUTHENTICATED, "subscribe_nothing"): S.READY,
    (S.SUBSCRIBING, "subscribed"): S.READY,
}
#: states in which we must act (auth / subscribe) before anything more is read
OUR_TURN = {S.GREETED: "auth()", S.AUTHENTICATED: "subscribe()"}


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"


#: :meth:`EslSession.next_event`: nothing complete yet, feed more bytes
NEED_DATA: Literal[_Sentinel.NEED_DATA] = _Sentinel.NEED_DATA


@dataclass
class Pending:
    """A command waiting for its reply; ``abandoned`` ones (timed out) swallow their late reply."""

    line: str
    kind: str  # "api" → api/response, otherwise command/reply
    token: Any = None
    abandoned: bool = False


@dataclass
class Reply:
    """A reply matched to the command it answers."""

    pending: Pending
    message: p.CommandReply | p.ApiResponse


@dataclass(frozen=True)
class Authenticated:
    """FreeSWITCH accepted the password (``+OK accepted``): call :meth:`EslSession.subscribe`."""

    text: str


@dataclass(frozen=True)
class AuthRejected:
    """FreeSWITCH refused the password (``-ERR invalid``); it closes the connection."""

    text: str


@dataclass(frozen=True)
class Subscribed:
    """The event subscription was accepted: the session is READY."""

    text: str


@dataclass(frozen=True)
class ConnectionClosed:
    """The peer closed the connection (after everything it sent before was handed out)."""


_REPLIES = (p.CommandReply, p.ApiResponse)
#: a parsed frame as the session keeps it: replies already paired with their command
_Frame = Reply | p.AuthRequest | p.Event | p.DisconnectNotice | p.RudeRejection | p.UnknownFrame

SessionEvent = (
    p.AuthRequest
    | Authenticated
    | AuthRejected
    | Subscribed
    | Reply
    | p.Event
    | p.DisconnectNotice
    | p.RudeRejection
    | p.UnknownFrame
    | ConnectionClosed
)


@dataclass
class EslSession:
    """The state of one inbound ESL connection (see the module docstring)."""

    max_frame: int = p.MAX_BODY_BYTES
    state: SessionState = SessionState.AWAIT_GREETING
    #: commands sent and not answered yet, oldest first
    pending: deque[Pending] = field(default_factory=deque)
    _parser: p.Parser = field(init=False, repr=False)
    _received: list[bytes] = field(default_factory=list, repr=False)  # read, not parsed yet
    _backlog: deque[_Frame] = field(default_factory=deque, repr=False)  # parsed, not handed out
    _eof: bool = field(default=False, repr=False)
    _error: RemoteProtocolError | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._parser = p.Parser(max_body=self.max_frame)

    @property
    def backlog(self) -> int:
        """Frames received and parsed but not handed out by :meth:`next_event` yet."""
        return len(self._backlog)

    # -- bytes in, events out -----------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes read from the socket; ``b""`` means the peer closed the connection."""
        if data:
            self._received.append(data)
        else:
            self._eof = True

    def next_event(self) -> SessionEvent | Literal[_Sentinel.NEED_DATA]:
        """The next event, or :data:`NEED_DATA`.

        Raises :class:`RemoteProtocolError` when the peer broke the protocol (then on every later
        call too), :class:`LocalProtocolError` when it is our turn (:data:`OUR_TURN`).
        """
        if self.state is S.READY and self._backlog:  # the hot path: one event after another
            item = self._backlog.popleft()
            if type(item) is p.RudeRejection:
                self.state = S.CLOSED
            return item
        return self._next_event()

    def _next_event(self) -> SessionEvent | Literal[_Sentinel.NEED_DATA]:
        if self._error is not None:
            raise self._error
        state = self.state
        if state is S.CLOSED:
            return ConnectionClosed()
        if state in OUR_TURN:
            raise LocalProtocolError(f"the session waits for {OUR_TURN[state]} (state {state.name})")
        try:
            while True:
                if not self._backlog:
                    if self._received:
                        self._parse()
                    if not self._backlog:
                        if self._eof:
                            self.state = S.CLOSED
                            return ConnectionClosed()
                        return NEED_DATA
                item = self._backlog.popleft()
                if state is S.READY:
                    if isinstance(item, p.RudeRejection):
                        self.state = S.CLOSED
                    return item
                out = self._handshake(state, item)
                if out is not None:
                    return out
        except RemoteProtocolError as exc:
            self._error = exc
            self.state = S.CLOSED
            raise

    def _parse(self) -> None:
        """Parse everything read so far, pairing replies with their commands (a whole read at once, so a
        reply nobody asked for fails it before any frame of it is handed out)."""
        data = self._received[0] if len(self._received) == 1 else b"".join(self._received)
        self._received.clear()
        out: list[_Frame] = []
        pending = self.pending
        for msg in self._parser.feed(data):
            if isinstance(msg, _REPLIES):
                if not pending:
                    raise RemoteProtocolError("reply without a command", repr(msg)[:80].encode("utf-8", "replace"))
                # an api command refused by the socket itself (e.g. before auth) gets a command/reply
                if isinstance(msg, p.ApiResponse) and pending[0].kind != "api":
                    # the entry stays pending, so whoever waits for it learns the connection is gone
                    raise RemoteProtocolError(f"api/response for '{pending[0].line.split(' ', 1)[0]}'", b"")
                entry = pending.popleft()
                if not entry.abandoned:
                    out.append(Reply(entry, msg))
            else:
                out.append(msg)
        self._backlog.extend(out)

    def _handshake(self, state: SessionState, item: _Frame) -> SessionEvent | None:
        """Interpret a frame received before READY; ``None`` for one that is dropped."""
        if isinstance(item, p.Event):
            return item  # events that arrive meanwhile are handed out as they come
        if isinstance(item, p.DisconnectNotice):
            return None
        if state is S.AWAIT_GREETING:
            return self._greeting(item)
        if state is S.AUTHENTICATING:
            return self._auth_answer(item)
        return self._subscription_answer(item)

    def _greeting(self, item: _Frame) -> SessionEvent:
        if isinstance(item, p.AuthRequest):
            self._move("greeting")
            return item
        if isinstance(item, p.RudeRejection):  # the event socket's ACL refused us
            self.state = S.CLOSED
            return item
        raise RemoteProtocolError(f"expected auth/request, got {type(item).__name__}")

    def _auth_answer(self, item: _Frame) -> SessionEvent:
        if isinstance(item, p.RudeRejection):
            self.state = S.CLOSED
            return item
        if not isinstance(item, Reply) or not isinstance(item.message, p.CommandReply):
            raise RemoteProtocolError(f"expected a command/reply to auth, got {type(item).__name__}")
        if item.message.ok:
            self._move("auth_accepted")
            return Authenticated(item.message.text)
        self._move("auth_rejected")
        return AuthRejected(item.message.text)

    def _subscription_answer(self, item: _Frame) -> SessionEvent:
        if not isinstance(item, Reply) or not isinstance(item.message, p.CommandReply) or not item.message.ok:
            raise RemoteProtocolError("event subscription refused")
        self._move("subscribed")
        return Subscribed(item.message.text)

    def _move(self, what: str, local: bool = False) -> None:
        self.state = self._after(what, local)

    def _after(self, what: str, local: bool) -> SessionState:
        """The state ``what`` leads to from here (:data:`TRANSITIONS`), or the error it is."""
        new = TRANSITIONS.get((self.state, what))
        if new is None:
            error = LocalProtocolError if local else RemoteProtocolError
            raise error(f"cannot {what.replace('_', ' ')} in state {self.state.name}")
        return new

    # -- commands to bytes ------------------------------------------------------------------------
    def auth(self, password: str) -> bytes:
        """``auth <password>``, once the greeting came (a line break in it: :class:`LocalProtocolError`)."""
        new = self._after("send_auth", local=True)
        data = p.auth(password)  # before the state moves: a password that cannot be sent leaves it as it was
        self.state = new
        self.pending.append(Pending("auth", "command"))
        return data

    def subscribe(self, events: list[str], custom: list[str] = (), fmt: str = "plain") -> bytes:  # type: ignore[assignment]
        """``event <fmt> <names…> [CUSTOM <subclasses…>]`` once authenticated. With nothing to subscribe
        (a command-only client) nothing is sent and the session is READY at once."""
        if not events and not custom:
            self._move("subscribe_nothing", local=True)
            return b""
        new = self._after("send_subscribe", local=True)
        data = p.subscribe(events, custom, fmt)
        self.state = new
        self.pending.append(Pending(data.decode("utf-8").rstrip("\n"), "command"))
        return data

    def command(self, line: str, token: Any = None, headers: dict[str, str] | None = None) -> tuple[bytes, Pending]:
        """Encode a command for a READY session and note that a reply is owed (``token`` comes back in it)."""
        if self.state is not S.READY:
            raise LocalProtocolError(f"'{line.split(' ', 1)[0]}' before the session is ready (state {self.state.name})")
        data = p.command(line, headers)
        entry = Pending(line, "api" if line.startswith("api ") else "command", token)
        self.pending.append(entry)
        return data, entry

    def api(self, cmd: str, token: Any = None) -> tuple[bytes, Pending]:
        """``api <cmd>``: answered by an ``api/response`` (or a ``command/reply`` if the socket refuses it)."""
        return self.command(f"api {cmd}", token)

    def bgapi(self, cmd: str, job_uuid: str, token: Any = None) -> tuple[bytes, Pending]:
        """``bgapi <cmd>`` with our ``Job-UUID``: a ``command/reply`` now, a BACKGROUND_JOB event later."""
        return self.command(f"bgapi {cmd}", token, {"Job-UUID": job_uuid})

    @staticmethod
    def abandon(entry: Pending) -> None:
        """The caller stopped waiting for ``entry``: its late reply is matched and dropped (order stays right)."""
        entry.abandoned = True

    def close(self) -> None:
        """We are closing the connection: the session is spent."""
        self.state = S.CLOSED
