"""The simulated FreeSWITCH: an asyncio event-socket server plus the scripted outside world.

Connection behaviour (recorded in fixture 01 and tests/fixtures_esl/16-esl-edge):

* greeting ``auth/request``; before ``auth`` everything but ``exit`` gets ``-ERR command not found``;
  a wrong password gets ``-ERR invalid`` + ``text/disconnect-notice`` and the socket is closed;
* verbs are case-insensitive, ``\\r\\n`` line ends are accepted, an empty command is ignored;
* ``api`` replies block the connection: events fired meanwhile are written after the ``api/response``
  (this is why ``api uuid_kill`` answers before its CHANNEL_HANGUP arrives);
* ``bgapi`` answers ``+OK Job-UUID: <id>`` with a ``Job-UUID`` header (a client ``Job-UUID`` header is
  honoured); BACKGROUND_JOB is delivered only to listeners subscribed to it;
* events go only to listeners subscribed to their name (``ALL``; CUSTOM needs its subclass listed unless
  ``ALL``); when filters exist, an event must match one (BACKGROUND_JOB and API events are filtered too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from .api import ApiCommands
from .calls import CallFlows
from .channel import SOURCES, SimChannel, new_uuid, now_us
from .texts import VERSION_SHORT, uptime_text
from .wire import AUTH_REQUEST, DISCONNECT_NOTICE, Event, api_response, command_reply

log = logging.getLogger("simulator")

EVENT_NAMES = frozenset(
    [
        "CUSTOM",
        "CLONE",
        "CHANNEL_CREATE",
        "CHANNEL_DESTROY",
        "CHANNEL_STATE",
        "CHANNEL_CALLSTATE",
        "CHANNEL_ANSWER",
        "CHANNEL_HANGUP",
        "CHANNEL_HANGUP_COMPLETE",
        "CHANNEL_EXECUTE",
        "CHANNEL_EXECUTE_COMPLETE",
        "CHANNEL_HOLD",
        "CHANNEL_UNHOLD",
        "CHANNEL_BRIDGE",
        "CHANNEL_UNBRIDGE",
        "CHANNEL_PROGRESS",
        "CHANNEL_PROGRESS_MEDIA",
        "CHANNEL_OUTGOING",
        "CHANNEL_PARK",
        "CHANNEL_UNPARK",
        "CHANNEL_APPLICATION",
        "CHANNEL_ORIGINATE",
        "CHANNEL_UUID",
        "API",
        "LOG",
        "INBOUND_CHAN",
        "OUTBOUND_CHAN",
        "STARTUP",
        "SHUTDOWN",
        "PUBLISH",
        "UNPUBLISH",
        "TALK",
        "NOTALK",
        "SESSION_CRASH",
        "MODULE_LOAD",
        "MODULE_UNLOAD",
        "DTMF",
        "MESSAGE",
        "PRESENCE_IN",
        "NOTIFY_IN",
        "PRESENCE_OUT",
        "PRESENCE_PROBE",
        "MESSAGE_WAITING",
        "MESSAGE_QUERY",
        "ROSTER",
        "CODEC",
        "BACKGROUND_JOB",
        "DETECTED_SPEECH",
        "DETECTED_TONE",
        "PRIVATE_COMMAND",
        "HEARTBEAT",
        "TRAP",
        "ADD_SCHEDULE",
        "DEL_SCHEDULE",
        "EXE_SCHEDULE",
        "RE_SCHEDULE",
        "RELOADXML",
        "NOTIFY",
        "PHONE_FEATURE",
        "PHONE_FEATURE_SUBSCRIBE",
        "SEND_MESSAGE",
        "RECV_MESSAGE",
        "REQUEST_PARAMS",
        "CHANNEL_DATA",
        "GENERAL",
        "COMMAND",
        "SESSION_HEARTBEAT",
        "CLIENT_DISCONNECTED",
        "SERVER_DISCONNECTED",
        "SEND_INFO",
        "RECV_INFO",
        "RECV_RTCP_MESSAGE",
        "SEND_RTCP_MESSAGE",
        "CALL_SECURE",
        "NAT",
        "RECORD_START",
        "RECORD_STOP",
        "PLAYBACK_START",
        "PLAYBACK_STOP",
        "CALL_UPDATE",
        "FAILURE",
        "SOCKET_DATA",
        "MEDIA_BUG_START",
        "MEDIA_BUG_STOP",
        "CONFERENCE_DATA_QUERY",
        "CONFERENCE_DATA",
        "CALL_SETUP_REQ",
        "CALL_SETUP_RESULT",
        "CALL_DETAIL",
        "DEVICE_STATE",
        "TEXT",
        "SHUTDOWN_REQUESTED",
        "ALL",
    ]
)

MAX_HEADER_BLOCK = 64 * 1024
_TERMINATOR = re.compile(rb"\r?\n\r?\n")


class Connection:
    """One event-socket client connection."""

    def __init__(self, sim: SimulatedFreeSwitch, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.sim = sim
        self.reader = reader
        self.writer = writer
        self.authed = False
        self.listening = True  # recorded: a fresh connection answers `noevents` with +OK
        self.all_events = False
        self.names: set[str] = set()
        self.subclasses: set[str] = set()
        self.fmt = "plain"
        self.filters: list[tuple[str, str]] = []
        self.busy = 0
        self.pending: list[bytes] = []
        self.closed = False
        self.commands: list[str] = []
        self.task: asyncio.Task[Any] | None = None

    # -- output ----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """Write bytes now."""
        if self.closed:
            return
        try:
            self.writer.write(data)
        except Exception:  # transport gone
            self.closed = True

    def send_event(self, frames: dict[str, bytes], ev: Event) -> None:
        """Write an event frame in this listener's format (held while an ``api`` command runs)."""
        fmt = self.fmt
        if fmt not in frames:
            frames[fmt] = ev.frame(fmt)
        if self.busy:
            self.pending.append(frames[fmt])
        else:
            self.send(frames[fmt])

    def flush(self) -> None:
        """Write the events held during an ``api`` command."""
        held, self.pending = self.pending, []
        for data in held:
            self.send(data)

    def close(self, *, abort: bool = False) -> None:
        """Close (after flushing) or abort the socket."""
        if self.closed and not abort:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            if abort:
                self.writer.transport.abort()
            else:
                self.writer.close()

    # -- subscriptions ----------------------------------------------------------------------------
    def wants(self, ev: Event) -> bool:
        """Whether this listener gets ``ev`` (subscriptions, then filters)."""
        if not self.authed or not self.listening:
            return False
        name = ev.name
        if self.all_events:
            ok = True
        elif name == "CUSTOM":
            ok = "CUSTOM" in self.names and (ev.subclass or "") in self.subclasses
        else:
            ok = name in self.names
        if not ok:
            return False
        if self.filters:
            for header, value in self.filters:
                actual = ev.get(header)
                if actual is None:
                    continue
                if len(value) > 1 and value.startswith("/") and value.endswith("/"):
                    if re.search(value[1:-1], actual):
                        return True
                elif actual == value:
                    return True
            return False
        return True

    # -- input ------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Read and execute commands until the client leaves or is thrown out."""
        self.send(AUTH_REQUEST)
        buf = b""
        try:
            while not self.closed:
                m = _TERMINATOR.search(buf)
                if m is None:
                    if len(buf) > MAX_HEADER_BLOCK:
                        log.warning("simulator: header block too large, closing connection")
                        break
                    data = await self.reader.read(65536)
                    if not data:
                        break
                    buf += data
                    continue
                block, buf = buf[: m.start()], buf[m.end() :]
                lines = [ln.rstrip("\r") for ln in block.decode("utf-8", "replace").split("\n")]
                if not lines or not lines[0].strip():
                    continue  # an empty command is ignored (recorded)
                headers: dict[str, str] = {}
                for ln in lines[1:]:
                    k, sep, v = ln.partition(":")
                    if sep:
                        headers[k.strip()] = v.strip()
                body = b""
                if "Content-Length" in headers:
                    try:
                        n = max(0, min(int(headers["Content-Length"]), 1 << 20))
                    except ValueError:
                        n = 0
                    while len(buf) < n:
                        data = await self.reader.read(65536)
                        if not data:
                            return
                        buf += data
                    body, buf = buf[:n], buf[n:]
                line = lines[0]
                self.commands.append(line)
                self.sim.received_commands.append(line)
                try:
                    await self.sim.handle_command(self, line, headers, body)
                except Exception:  # never let a command kill the server
                    log.exception("simulator: command %r failed", line)
                    self.busy = 0
                    self.send(command_reply("-ERR simulator error"))
                    self.flush()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            raise
        finally:
            self.close()


class SimulatedFreeSwitch(ApiCommands, CallFlows):
    """An event-socket server that behaves like FreeSWITCH 1.10.12, plus a scriptable telephone network.

    ``channels`` holds the live channels by uuid; ``received_commands`` every command line received on any
    connection. Behaviour that the recordings show as racy is configurable: ``bgjob_before_hangup_complete``
    (BACKGROUND_JOB of a failed originate before or after CHANNEL_HANGUP_COMPLETE; recorded mostly after).
    Timing knobs (seconds): ``fork_connect_delay`` (20 ms recorded), ``refer_notify_delay`` (202 -> NOTIFY),
    ``refer_no_notify_timeout`` (10 s recorded for a REFER whose NOTIFY never comes), ``ring_time_scale`` (real
    seconds an unanswered leg rings per second of its ``originate_timeout``: below 1 a test need not wait out the
    orchestrator's minimum timeout; the reported causes and variables stay the same).

    mod_audio_fork (:mod:`simulator.audiofork`): with ``fork_websocket = True`` ``uuid_audio_fork ... start`` opens a
    real WebSocket like the module's libwebsockets client; off (the default), forks only fire the scripted
    ``::connect`` / ``::connect_failed`` (``set_fork_outcome``) and open no socket. Test API: ``set_caller_audio(uuid,
    pcm, loop=False)``, ``fork_client(uuid)`` / ``ch.fork_client`` (a :class:`~simulator.forkclient.ForkClient`),
    ``fork_overrun(uuid)``, ``channel_audio(ch)`` / ``ch.audio`` (what the caller heard), ``files`` (playAudio temp
    files), ``uuid_broadcast`` / ``uuid_break`` playback (:mod:`simulator.media`).
    """

    #: open a real WebSocket for ``uuid_audio_fork start`` (False: scripted events only, no socket)
    fork_websocket: bool = False
    #: libwebsockets' rx buffer: server binary frames reach the streaming playout in pieces of at most this size
    fork_rx_chunk: int = 1024
    #: MOD_AUDIO_FORK_BUFFER_SECS: audio waiting to be written before ``::buffer_overrun``
    fork_buffer_secs: int = 2
    #: WebSocket connect + handshake timeout (libwebsockets' timeout_secs)
    fork_open_timeout: float = 10.0
    #: the media frame clock (ptime)
    frame_interval: float = 0.02
    #: how long ``stop()`` waits for fork WebSockets to finish their close handshake
    fork_close_wait: float = 1.0
    #: frames ``uuid_broadcast`` reads before its playback starts
    broadcast_lead_frames: int = 5
    #: SWITCH_GLOBAL_dirs.temp_dir (playAudio files are named ``<temp_dir>/<uuid>_<n>.tmp.<ext>``)
    temp_dir: str = "/tmp"

    def __init__(self, password: str = "ClueCon", *, hostname: str = "sim", core_uuid: str | None = None):
        self.password = password
        self.hostname = hostname
        self.core_uuid = core_uuid or new_uuid()
        self.ipv4 = "127.0.0.1"
        self.ipv6 = "::1"
        self.local_ip = "127.0.0.1"
        self.peer_ip = "127.0.0.1"
        self.port = 0
        self.host = "127.0.0.1"
        self.channels: dict[str, SimChannel] = {}
        self.received_commands: list[str] = []
        self.connections: set[Connection] = set()
        self.sequence = 500
        self.started = time.monotonic()
        self.sessions_since_startup = 0
        self.peak_sessions = 0
        self.bgjob_before_hangup_complete = False
        self.fork_connect_delay = 0.02
        self.refer_notify_delay = 0.3
        self.refer_no_notify_timeout = 10.0
        self.default_originate_timeout = 60.0
        self.ring_time_scale = 1.0
        #: seconds an ``api``/``bgapi`` command waits before it runs, by command name (a slow node)
        self.api_delays: dict[str, float] = {}
        self.profiles: dict[str, str] = {
            "tcp": "sip:mod_sofia@127.0.0.1:5060",
            "tls": "sip:mod_sofia@127.0.0.1:5061",
            "udp": "sip:mod_sofia@127.0.0.1:5080",
        }
        #: when each profile (re)started; a restart/stop sooner than ``profile_min_uptime`` later is refused,
        #: and a restarting profile is gone from ``sofia status`` for ``profile_restart_seconds`` (the real
        #: switch waits for the profile's worker thread: 1-31 s measured on 1.10.12)
        self.profile_started: dict[str, float] = dict.fromkeys(self.profiles, self.started)
        self.profile_min_uptime = 10.0
        self.profile_restart_seconds = 0.3
        self.profiles_stopped: dict[str, str] = {}
        self.gateways: dict[str, dict[str, str]] = {}
        self.fsctl: dict[str, int] = {}
        self.modules: set[str] = {"mod_sofia", "mod_event_socket", "mod_commands", "mod_dptools", "mod_audio_fork"}
        self.globals: dict[str, str] = {
            "hostname": hostname,
            "local_ip_v4": "127.0.0.1",
            "domain": "127.0.0.1",
            "switch_serial": "sim",
        }
        self.fork_outcomes: list[tuple[str, str, str | None]] = []
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._init_calls()

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on ``host:port`` (0 = any free port; ``self.port`` is the bound port afterwards)."""
        self.host = host
        self._server = await asyncio.start_server(self._on_client, host, port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, close every connection and cancel every pending timer (calls vanish silently; open fork
        WebSockets are closed 1000 first, waiting at most ``fork_close_wait`` for the servers' replies)."""
        if self._server is not None:
            self._server.close()
        await self._close_forks()
        handlers = [conn.task for conn in self.connections if conn.task is not None]
        for conn in list(self.connections):
            conn.close(abort=True)
        for task in list(self._tasks) + handlers:
            task.cancel()
        for task in handlers:
            with contextlib.suppress(BaseException):
                await task
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def drop_connections(self) -> None:
        """Abort every ESL connection (like a broken link); calls stay up."""
        for conn in list(self.connections):
            conn.close(abort=True)
        await asyncio.sleep(0)

    async def restart_listener(self, pause: float = 0.2, *, drop: bool = True) -> None:
        """Stop accepting for ``pause`` seconds (connections dropped when ``drop``), then listen on the same port.

        Calls survive, as when mod_event_socket is reloaded while FreeSWITCH keeps running.
        """
        if self._server is not None:
            self._server.close()
            self._server = None
        if drop:
            await self.drop_connections()
        await asyncio.sleep(pause)
        for _ in range(50):
            try:
                self._server = await asyncio.start_server(self._on_client, self.host, self.port, reuse_address=True)
                return
            except OSError:
                await asyncio.sleep(0.02)
        raise RuntimeError(f"simulator: cannot listen again on port {self.port}")

    async def send_raw(self, data: bytes, *, close: bool = False) -> None:
        """Write raw bytes (garbage, an oversized frame, ...) to every connection; optionally close them."""
        for conn in list(self.connections):
            conn.send(data)
            if close:
                conn.close()
        await asyncio.sleep(0)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(self, reader, writer)
        conn.task = asyncio.current_task()
        self.connections.add(conn)
        try:
            await conn.run()
        except asyncio.CancelledError:
            pass  # stop(): end quietly (asyncio's stream callback chokes on a cancelled handler task)
        finally:
            self.connections.discard(conn)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run a coroutine in the background; cancelled by ``stop()``; failures are logged, not raised."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("simulator task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return task

    # -- events ------------------------------------------------------------------------------------
    def core_event(self, name: str, source: str | None = None, *, subclass: str | None = None) -> Event:
        """A new event with FreeSWITCH's 13 core headers (``Event-Subclass`` first for CUSTOM)."""
        self.sequence += 1
        file, func, line = SOURCES.get(source or name, SOURCES["CUSTOM"])
        us = now_us()
        secs = us / 1_000_000
        ev = Event()
        if subclass:
            ev.headers.append(("Event-Subclass", subclass))
        ev.headers += [
            ("Event-Name", name),
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", self.ipv4),
            ("FreeSWITCH-IPv6", self.ipv6),
            ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs))),
            ("Event-Date-GMT", time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(secs))),
            ("Event-Date-Timestamp", str(us)),
            ("Event-Calling-File", file),
            ("Event-Calling-Function", func),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(self.sequence)),
        ]
        return ev

    def deliver(self, ev: Event) -> None:
        """Send an event to every listener that wants it."""
        frames: dict[str, bytes] = {}
        for conn in list(self.connections):
            if conn.wants(ev):
                conn.send_event(frames, ev)

    def fire(self, name: str, headers: list[tuple[str, str]] | None = None, *, body: str | None = None,
             source: str | None = None, subclass: str | None = None) -> Event:  # fmt: skip
        """Fire a non-channel event (API, BACKGROUND_JOB, HEARTBEAT, RELOADXML, ...)."""
        ev = self.core_event(name, source, subclass=subclass)
        ev.headers += headers or []
        ev.body = body
        self.deliver(ev)
        return ev

    def fire_heartbeat(self) -> Event:
        """A HEARTBEAT event like the one FreeSWITCH sends every 20 s."""
        up = time.monotonic() - self.started
        return self.fire(
            "HEARTBEAT",
            [
                ("Event-Info", "System Ready"),
                ("Up-Time", uptime_text(up)),
                ("FreeSWITCH-Version", VERSION_SHORT),
                ("Uptime-msec", str(int(up * 1000))),
                ("Session-Count", str(len(self.channels))),
                ("Max-Sessions", "1000"),
                ("Session-Per-Sec", "30"),
                ("Session-Per-Sec-Last", "0"),
                ("Session-Per-Sec-Max", "1"),
                ("Session-Per-Sec-FiveMin", "0"),
                ("Session-Since-Startup", str(self.sessions_since_startup)),
                ("Session-Peak-Max", str(self.peak_sessions)),
                ("Session-Peak-FiveMin", str(self.peak_sessions)),
                ("Idle-CPU", "99.000000"),
            ],
        )

    # -- commands ----------------------------------------------------------------------------------
    async def handle_command(self, conn: Connection, line: str, headers: dict[str, str], body: bytes) -> None:
        """Execute one ESL command line for ``conn``."""
        verb, sep, rest = line.partition(" ")
        low = verb.lower()
        if low in ("exit", "bye"):
            conn.send(command_reply("+OK bye"))
            conn.send(DISCONNECT_NOTICE)
            conn.close()
        elif not conn.authed:
            self._cmd_unauthed(conn, low, sep, rest)
        elif low == "api" and sep:
            await self._cmd_api(conn, rest)
        elif low == "bgapi" and sep:
            job = headers.get("Job-UUID") or new_uuid()
            conn.send(command_reply(f"+OK Job-UUID: {job}", [("Job-UUID", job)]))
            self.spawn(self.run_bgapi(rest, job))
        elif low == "event":
            self._cmd_event(conn, rest)
        elif low == "nixevent" and sep:
            self._cmd_nixevent(conn, rest)
        elif low == "noevents" and not sep:
            self._cmd_noevents(conn)
        elif low == "filter" and sep:
            self._cmd_filter(conn, rest)
        elif low == "myevents" and rest.strip():
            self._cmd_myevents(conn, rest)
        elif low in ("linger", "nolinger"):
            conn.send(command_reply("-ERR not controlling a session"))
        else:
            conn.send(command_reply("-ERR command not found"))

    def _cmd_unauthed(self, conn: Connection, low: str, sep: str, rest: str) -> None:
        """Before ``auth``: only ``auth`` (a wrong password disconnects) is a command."""
        if low == "auth" and sep:
            if rest == self.password:
                conn.authed = True
                conn.send(command_reply("+OK accepted"))
            else:
                conn.send(command_reply("-ERR invalid"))
                conn.send(DISCONNECT_NOTICE)
                conn.close()
            return
        conn.send(command_reply("-ERR command not found"))

    async def _cmd_api(self, conn: Connection, rest: str) -> None:
        """``api``: the reply blocks the connection; events fired meanwhile follow it."""
        conn.busy += 1
        try:
            result = await self.run_api(rest)
        finally:
            conn.busy -= 1
        conn.send(api_response(result))
        if not conn.busy:
            conn.flush()

    def _cmd_noevents(self, conn: Connection) -> None:
        if conn.listening:
            conn.listening = False
            conn.all_events = False
            conn.names.clear()
            conn.subclasses.clear()
            conn.send(command_reply("+OK no longer listening for events"))
        else:
            conn.send(command_reply("-ERR not listening for events"))

    def _cmd_myevents(self, conn: Connection, rest: str) -> None:
        parts = rest.split()
        conn.fmt = parts[1].lower() if len(parts) > 1 and parts[1].lower() in ("plain", "json", "xml") else "plain"
        conn.listening = True
        conn.all_events = True
        conn.filters.append(("Unique-ID", parts[0]))
        conn.send(command_reply("+OK Events Enabled"))

    def _cmd_event(self, conn: Connection, rest: str) -> None:
        tokens = rest.split()
        fmt = "plain"
        if tokens and tokens[0].lower() in ("plain", "json", "xml"):
            fmt = tokens.pop(0).lower()
        keys = 0
        custom = False
        names: set[str] = set()
        subclasses: set[str] = set()
        all_events = False
        for tok in tokens:
            if custom:
                subclasses.add(tok)
                continue
            up = tok.upper()
            if up not in EVENT_NAMES:
                continue
            keys += 1
            if up == "ALL":
                all_events = True
            elif up == "CUSTOM":
                custom = True
            names.add(up)
        if not keys:
            conn.send(command_reply("-ERR no keywords supplied"))
            return
        conn.fmt = fmt
        conn.listening = True
        conn.all_events = conn.all_events or all_events
        conn.names |= names
        conn.subclasses |= subclasses
        conn.send(command_reply(f"+OK event listener enabled {fmt}"))

    def _cmd_nixevent(self, conn: Connection, rest: str) -> None:
        custom = False
        for tok in rest.split():
            if custom:
                conn.subclasses.discard(tok)
                continue
            up = tok.upper()
            if up == "ALL":
                conn.all_events = False
                conn.names.clear()
                conn.subclasses.clear()
            elif up == "CUSTOM":
                custom = True
            else:
                conn.names.discard(up)
        conn.send(command_reply("+OK events nixed"))

    def _cmd_filter(self, conn: Connection, rest: str) -> None:
        header, _, value = rest.strip().partition(" ")
        if header.lower() == "delete":
            h2, _, v2 = value.strip().partition(" ")
            if not h2:
                conn.send(command_reply("-ERR invalid syntax"))
                return
            if h2.lower() == "all":
                conn.filters.clear()
                conn.send(command_reply("+OK filter deleted. [all][]"))
                return
            if v2:
                conn.filters = [(h, v) for h, v in conn.filters if not (h == h2 and v == v2)]
            else:
                conn.filters = [(h, v) for h, v in conn.filters if h != h2]
            conn.send(command_reply(f"+OK filter deleted. [{h2}][{v2}]"))
            return
        if not value:
            conn.send(command_reply("-ERR invalid syntax"))
            return
        conn.filters.append((header, value))
        conn.send(command_reply(f"+OK filter added. [{header}]=[{value}]"))
