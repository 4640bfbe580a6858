"""asyncio ESL client for one FreeSWITCH node: connect, authenticate, subscribe, api/bgapi, reconnect.

The protocol work -- framing, the greeting → ``auth`` → subscription handshake, replies matched to
their commands -- happens in the sans-I/O :class:`~orchestrator.esl.session.EslSession`; this module
only moves bytes, owns the timeouts and reconnects, and resolves futures from what the session hands
out. The connection is kept up by a supervisor task with bounded, jittered exponential
backoff; every (re)connection calls ``on_connect`` so the owner can resync its state (FreeSWITCH
keeps the calls while the link is down).

The client never stops on its own: whatever goes wrong inside a connection (garbage from the peer,
a reply of the wrong kind, an unexpected exception in this code) is logged once, ends that
connection and leads to a reconnect; an error in the supervisor itself is logged at once and the
supervisor starts again. Only :meth:`EslClient.stop` ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import uuid as uuidlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.esl import protocol as p
from orchestrator.esl import session as s
from orchestrator.esl.session import EslSession, SessionState

log = logging.getLogger("sipagent.esl")

EventHandler = Callable[[p.Event], None]
ConnectHook = Callable[[], Awaitable[None]]


class EslError(Exception):
    """Base class of client errors."""


class NotConnected(EslError):
    """The node is not connected right now (the supervisor is reconnecting)."""


class ConnectionLost(EslError):
    """The connection dropped while a command was waiting for its reply."""


class AuthenticationFailed(EslError):
    """FreeSWITCH refused the password (or, as :class:`AccessDenied`, the event socket ACL refused us)."""


class AccessDenied(AuthenticationFailed):
    """The event socket's ACL refused this client's address (``text/rude-rejection``) before any password."""


class ConnectTimeout(EslError):
    """No TCP connection within the connect timeout (a firewall dropping packets, a host that is down)."""


class HandshakeTimeout(EslError):
    """Connected, but no ``auth/request`` greeting or no answer to ``auth`` in time: not an event socket, or
    FreeSWITCH is not answering."""


class CommandTimeout(EslError):
    """No reply in time. For ``api`` the late reply is discarded when it comes."""


@dataclass(frozen=True)
class Endpoint:
    """Where a node's event socket is: ``host:port`` and password."""

    host: str
    port: int
    password: str
    name: str = ""

    @property
    def label(self) -> str:
        """Name for logs and metrics."""
        return self.name or f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str, name: str = "") -> Endpoint:
        """``host:port:password`` (the FREESWITCH_ESL format); the password may contain ':'."""
        host, port, password = text.split(":", 2)
        return cls(host, int(port), password, name)


@dataclass
class Backoff:
    """Bounded exponential backoff with jitter."""

    initial: float = 0.2
    maximum: float = 30.0
    factor: float = 2.0
    _next: float = 0.0

    def reset(self) -> None:
        """Start again from ``initial``."""
        self._next = 0.0

    def next(self) -> float:
        """The next delay: grows by ``factor`` up to ``maximum``, each within ±20 % (never above 1.2 × maximum)."""
        self._next = self.initial if self._next == 0 else min(self.maximum, self._next * self.factor)
        return self._next * random.uniform(0.8, 1.2)


#: exceptions a broken or refused connection is expected to end with (logged without a traceback)
_EXPECTED = (OSError, EOFError, EslError, p.RemoteProtocolError)
#: what the handshake waits for in each state (for HandshakeTimeout)
_WAITING_FOR = {
    SessionState.AWAIT_GREETING: "auth/request greeting",
    SessionState.AUTHENTICATING: "answer to auth",
    SessionState.SUBSCRIBING: "answer to the event subscription",
}


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class EslClient:
    """A supervised inbound ESL connection to one FreeSWITCH node."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        events: list[str],
        custom: list[str] = (),  # type: ignore[assignment]
        event_format: str = "plain",
        on_event: EventHandler | None = None,
        on_connect: ConnectHook | None = None,
        on_disconnect: Callable[[], None] | None = None,
        command_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        backoff: Backoff | None = None,
        max_frame: int = p.MAX_BODY_BYTES,
    ) -> None:
        self.endpoint = endpoint
        self.events = list(events)
        self.custom = list(custom)
        self.event_format = event_format
        self.on_event = on_event or (lambda _e: None)
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.command_timeout = command_timeout
        self.connect_timeout = connect_timeout
        self.backoff = backoff or Backoff()
        self.max_frame = max_frame
        self.stable_after = 30.0  # a connection up this long resets the backoff
        self._session: EslSession | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._link_error: BaseException | None = None  # why the current connection is being torn down
        self._since: float | None = None  # loop time the current connection came up
        self._jobs: dict[str, asyncio.Future[str]] = {}
        self._connected = asyncio.Event()
        self._attempt_failed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connections = 0  # successful connections so far (1 + reconnects)
        self.failures = 0  # connection attempts or connections that ended in an error
        self.restarts = 0  # times the supervisor itself failed and was started again
        self.last_error: str = ""
        self.last_exception: BaseException | None = None  # what ended the last attempt or connection

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while authenticated and subscribed."""
        return self._connected.is_set()

    async def start(self) -> None:
        """Start the supervisor (returns at once; see :meth:`wait_connected`)."""
        if self._task is None:
            self._closing = False
            self._spawn()

    def _spawn(self, delay: float = 0.0) -> None:
        self._task = asyncio.create_task(self._supervisor(delay), name=f"esl-{self.endpoint.label}")
        self._task.add_done_callback(self._supervisor_done)

    async def wait_connected(self, timeout: float | None = None, *, fail_fast: bool = False) -> None:
        """Wait until the node is connected (``TimeoutError`` after ``timeout``).

        With ``fail_fast``, a failed connection attempt raises what ended it instead of waiting for
        the next one: :class:`AccessDenied`, :class:`AuthenticationFailed`, :class:`ConnectTimeout`,
        :class:`HandshakeTimeout`, :class:`~orchestrator.esl.protocol.RemoteProtocolError`, or the
        ``OSError`` of the TCP connect (``ConnectionRefusedError``, ``socket.gaierror`` …).
        """
        if not fail_fast:
            await asyncio.wait_for(self._connected.wait(), timeout)
            return
        async with asyncio.timeout(timeout):
            while not self._connected.is_set():
                if self.failures and self.last_exception is not None and self._task is not None:
                    raise self.last_exception  # the node is down right now, for this reason
                self._attempt_failed.clear()
                connected = asyncio.ensure_future(self._connected.wait())
                failed = asyncio.ensure_future(self._attempt_failed.wait())
                try:
                    await asyncio.wait((connected, failed), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    connected.cancel()
                    failed.cancel()

    @property
    def stopping(self) -> bool:
        """:meth:`stop` was called (read afresh each time: it changes while a connection runs)."""
        return self._closing

    async def stop(self) -> None:
        """Close the connection and stop reconnecting."""
        self._closing = True
        if self._task is not None:
            task, self._task = self._task, None
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._drop_link(ConnectionLost("client stopped"))

    # -- commands -------------------------------------------------------------------------------
    async def _send(self, line: str, timeout: float | None, headers: dict[str, str] | None = None) -> s.Reply:
        session, writer = self._session, self._writer
        if session is None or writer is None or not self.connected:
            raise NotConnected(f"{self.endpoint.label} is not connected")
        future: asyncio.Future[s.Reply] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)  # a caller that gave up must not leave an unretrieved error
        data, entry = session.command(line, future, headers)
        writer.write(data)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout or self.command_timeout)
        except TimeoutError:
            session.abandon(entry)  # its late reply will be matched and dropped: order stays right
            raise CommandTimeout(f"no reply to '{line.split(' ', 2)[:2]}' from {self.endpoint.label}") from None

    async def api(self, cmd: str, *, timeout: float | None = None, check: bool = True) -> str:
        """Run ``api <cmd>``; with ``check`` an ``-ERR``/``-USAGE`` answer raises :class:`CommandError`."""
        reply = await self._send(f"api {cmd}", timeout)
        if isinstance(reply.message, p.CommandReply):  # refused by the event socket itself
            raise p.CommandError(cmd, reply.message.text)
        if check and not reply.message.ok:
            raise p.CommandError(cmd, reply.message.body)
        return reply.message.body

    async def command(self, line: str, *, timeout: float | None = None) -> p.CommandReply:
        """Send a non-api command (``event``, ``filter`` …) and return its reply."""
        reply = await self._send(line, timeout)
        return self._expect_command_reply(reply, line)

    def _expect_command_reply(self, reply: s.Reply, line: str) -> p.CommandReply:
        """The reply a non-api command must get; anything else breaks the connection (its replies are out of step)."""
        if isinstance(reply.message, p.CommandReply):
            return reply.message
        error = p.RemoteProtocolError(f"{type(reply.message).__name__} in answer to '{line.split(' ', 1)[0]}'")
        self._abort(error)
        raise ConnectionLost(f"{self.endpoint.label}: {error}; reconnecting") from error

    async def bgapi(self, cmd: str, *, timeout: float | None = None, check: bool = True) -> str:
        """Run ``bgapi <cmd>`` and wait for its BACKGROUND_JOB result (keeps the connection free meanwhile)."""
        job = str(uuidlib.uuid4())
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_consume)
        self._jobs[job] = future
        try:
            reply = self._expect_command_reply(await self._send(f"bgapi {cmd}", None, {"Job-UUID": job}), "bgapi")
            if not reply.ok:
                raise p.CommandError(cmd, reply.text)
            body = await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            raise CommandTimeout(f"no BACKGROUND_JOB for '{cmd.split(' ', 1)[0]}' from {self.endpoint.label}") from None
        finally:
            self._jobs.pop(job, None)
        if check and body.startswith(("-ERR", "-USAGE")):
            raise p.CommandError(cmd, body)
        return body

    # -- connection -----------------------------------------------------------------------------
    async def _supervisor(self, delay: float = 0.0) -> None:
        """Run :meth:`_supervise`; if it ever fails (a bug, a hook that raised), log it and run it again."""
        if delay:
            await asyncio.sleep(delay)
        while not self._closing:
            try:
                await self._supervise()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.restarts += 1
                self._record(exc, f"supervisor failed ({type(exc).__name__}: {exc})")
                log.error("esl %s: supervisor failed, restarting it", self.endpoint.label, exc_info=exc)
                self._drop_link(ConnectionLost(f"connection to {self.endpoint.label} lost"))
                await asyncio.sleep(self._delay())

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        """Last line of defence: a supervisor task that ended by itself (not stopped) is logged and replaced."""
        if task.cancelled() or self._closing or task is not self._task:
            return
        exc = task.exception()
        log.critical("esl %s: supervisor ended (%r); starting it again", self.endpoint.label, exc, exc_info=exc)
        self.restarts += 1
        self._spawn(self._delay())  # after a backoff delay: a supervisor that keeps dying is no busy loop

    def _delay(self) -> float:
        try:
            return self.backoff.next()
        except Exception:
            log.exception("esl %s: backoff failed; waiting its maximum", self.endpoint.label)
            return 30.0

    async def _supervise(self) -> None:
        while not self._closing:
            self._link_error = None
            try:
                await self._run_once()
            except asyncio.CancelledError:
                raise
            except AuthenticationFailed as exc:  # and AccessDenied: retried, the operator may fix it meanwhile
                self._fail(exc, str(exc), logging.ERROR)
            except p.RemoteProtocolError as exc:
                self._fail(exc, f"protocol error: {exc}", logging.ERROR)
            except _EXPECTED as exc:
                self._fail(exc, f"{type(exc).__name__}: {exc}", logging.WARNING)
            except Exception as exc:  # a bug here or in a hook: this connection ends, the client goes on
                self._fail(exc, f"unexpected {type(exc).__name__}: {exc}", logging.ERROR, traceback=True)
            finally:
                self._drop_link(ConnectionLost(f"connection to {self.endpoint.label} lost"))
            if self.stopping:  # stop() ran while this connection was up
                break
            up = self._connected_for()
            if up is not None and up >= self.stable_after:
                self.backoff.reset()  # it was up for a while: retry fast
            await asyncio.sleep(self._delay())

    def _fail(self, exc: BaseException, text: str, level: int, traceback: bool = False) -> None:
        """One log line per failed attempt or connection, with the node and the reason."""
        self._record(exc, text)
        log.log(level, "esl %s: %s; reconnecting", self.endpoint.label, text, exc_info=exc if traceback else None)

    def _record(self, exc: BaseException, text: str) -> None:
        self.failures += 1
        self.last_exception = exc
        self.last_error = text
        self._attempt_failed.set()

    def _connected_for(self) -> float | None:
        since, self._since = self._since, None
        return None if since is None else asyncio.get_running_loop().time() - since

    def _abort(self, reason: BaseException) -> None:
        """End the current connection with ``reason`` (the read loop raises it)."""
        if self._link_error is None:
            self._link_error = reason
        if self._writer is not None:
            self._writer.close()

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = self.endpoint.host, self.endpoint.port
        try:
            return await asyncio.wait_for(asyncio.open_connection(host, port), self.connect_timeout)
        except TimeoutError:
            raise ConnectTimeout(f"no TCP connection to {host}:{port} within {self.connect_timeout:g} s") from None
        except ValueError as exc:  # a NUL in the name, an IDNA label too long or empty ('a..b')
            raise socket.gaierror(socket.EAI_NONAME, f"invalid host name {host!r}: {exc}") from None

    async def _run_once(self) -> None:
        reader, writer = await self._open()
        self._writer = writer
        self._session = session = EslSession(max_frame=self.max_frame)
        await self._handshake(reader, writer, session)
        self._connected.set()
        self._since = asyncio.get_running_loop().time()
        self.connections += 1
        log.info("esl %s: connected (connection #%d)", self.endpoint.label, self.connections)
        hook = asyncio.create_task(self._after_connect())
        try:
            await self._read_loop(reader, session)
        finally:
            hook.cancel()

    async def _handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, session: EslSession) -> None:
        """Greeting → ``auth`` → subscription, each answer within the connect timeout; the session decides, this
        writes what it asks for. Events that arrive meanwhile are dispatched."""
        loop = asyncio.get_running_loop()
        step, deadline = session.state, loop.time() + self.connect_timeout
        while session.state is not SessionState.READY:
            if session.state is not step:  # each answer gets the whole connect timeout
                step, deadline = session.state, loop.time() + self.connect_timeout
            event = await self._handshake_event(reader, session, deadline)
            if isinstance(event, p.AuthRequest):
                try:
                    writer.write(session.auth(self.endpoint.password))
                except p.LocalProtocolError:  # a line break: it would end the command early (never sent or logged)
                    raise AuthenticationFailed(
                        "the event socket password contains a line break; it cannot be sent"
                    ) from None
            elif isinstance(event, s.Authenticated):  # a command-only client (apply, doctor) subscribes to nothing
                writer.write(session.subscribe(self.events, self.custom, self.event_format))
            elif isinstance(event, s.AuthRejected):
                raise AuthenticationFailed(
                    f"authentication failed: {event.text[:200] or 'no reply text'} (wrong event socket password?)"
                )
            elif isinstance(event, p.RudeRejection):
                raise AccessDenied(f"refused by the event socket ACL: {event.body.strip()[:200]}")
            elif isinstance(event, s.ConnectionClosed):
                raise ConnectionLost("FreeSWITCH closed the connection during the handshake")
            elif isinstance(event, p.Event):
                self._dispatch(event)

    async def _handshake_event(
        self, reader: asyncio.StreamReader, session: EslSession, deadline: float
    ) -> s.SessionEvent:
        """The session's next event, reading as needed, by ``deadline`` (loop time)."""
        waiting_for = _WAITING_FOR.get(session.state, "answer")
        try:
            async with asyncio.timeout_at(deadline):
                while (event := session.next_event()) is s.NEED_DATA:
                    session.receive_data(await reader.read(65536))
                return event
        except TimeoutError:
            raise HandshakeTimeout(
                f"connected to {self.endpoint.host}:{self.endpoint.port}, but no {waiting_for} within "
                f"{self.connect_timeout:g} s (is it FreeSWITCH's event socket?)"
            ) from None

    async def _read_loop(self, reader: asyncio.StreamReader, session: EslSession) -> None:
        """READY: hand every event and reply on until the connection ends (by the peer, or by :meth:`_abort`)."""
        while True:
            event = session.next_event()
            if event is s.NEED_DATA:
                data = await reader.read(256 * 1024)
                if self._link_error is not None:
                    raise self._link_error
                session.receive_data(data)
            elif isinstance(event, s.ConnectionClosed):
                raise ConnectionLost("FreeSWITCH closed the connection")
            else:
                self._dispatch(event)

    async def _after_connect(self) -> None:
        if self.on_connect is None:
            return
        try:
            await self.on_connect()
        except asyncio.CancelledError:
            raise
        except EslError as exc:
            log.warning("esl %s: resync after connect failed: %s", self.endpoint.label, exc)
        except Exception:
            log.exception("esl %s: on_connect hook failed", self.endpoint.label)

    def _dispatch(self, item: object) -> None:
        if isinstance(item, s.Reply):
            future = item.pending.token
            if isinstance(future, asyncio.Future) and not future.done():
                future.set_result(item)
        elif isinstance(item, p.Event):
            if item.name == "BACKGROUND_JOB":
                job = self._jobs.get(item.get("Job-UUID"))
                if job is not None and not job.done():
                    job.set_result(item.body)
            try:
                self.on_event(item)
            except Exception:
                log.exception("esl %s: event handler failed on %s", self.endpoint.label, item.name)
        elif isinstance(item, p.DisconnectNotice):
            log.info("esl %s: disconnect notice", self.endpoint.label)
        elif isinstance(item, p.RudeRejection):
            raise AccessDenied(f"refused by the event socket ACL: {item.body.strip()[:200]}")
        elif isinstance(item, p.UnknownFrame):
            log.warning("esl %s: ignoring frame of type %r", self.endpoint.label, item.content_type)

    def _drop_link(self, reason: EslError) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._session is not None:
            self._session.close()
            for entry in self._session.pending:
                if isinstance(entry.token, asyncio.Future) and not entry.token.done():
                    entry.token.set_exception(reason)
            self._session = None
        for job in self._jobs.values():
            if not job.done():
                job.set_exception(reason)
        if was_connected and self.on_disconnect is not None:
            try:
                self.on_disconnect()
            except Exception:
                log.exception("esl %s: on_disconnect hook failed", self.endpoint.label)
