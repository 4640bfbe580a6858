"""FreeSWITCH event socket (ESL) protocol, sans-I/O: bytes in, messages out; commands to bytes.

Framing (mod_event_socket): a header block of ``Name: value`` lines ended by an empty line, then
``Content-Length`` bytes of body when that header is present. The ``Content-Type`` says what the
frame is: ``auth/request``, ``command/reply`` (``Reply-Text``), ``api/response`` (body),
``text/event-plain`` / ``text/event-json`` (an event as body), ``text/disconnect-notice``,
``text/rude-rejection``.

A plain event body is again a header block (values URL-encoded) optionally followed by its own
``Content-Length`` body (BACKGROUND_JOB results, CUSTOM event payloads); a JSON event is one
object whose ``_body`` key holds that body.

:class:`Parser` turns received bytes into messages across arbitrary read boundaries, and raises
:class:`RemoteProtocolError` (with the offending bytes) on garbage or oversized frames, so a caller
can log it and reconnect instead of buffering without bound. :class:`RemoteProtocolError` is the
only exception parsing raises, whatever the bytes (non-ASCII digits or 20-digit lengths, invalid
UTF-8, JSON nested thousands deep or holding huge numbers, lone surrogates …): a parser that raised
it is spent and its connection must be dropped. Encoding a command we must not send (a line break
in it) raises :class:`LocalProtocolError`; both are :class:`EslProtocolError`.

The connection's state (greeting, ``auth``, subscription, replies matched to their commands) is
:class:`orchestrator.esl.session.EslSession`, built on this module.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from operator import methodcaller
from urllib.parse import unquote

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024  # `show channels as json` with thousands of calls is megabytes
_MAX_LENGTH_DIGITS = 18  # a Content-Length beyond 10**18 is garbage; int() of 5,000 digits would raise


class EslProtocolError(Exception):
    """Base of the ESL protocol errors: :class:`RemoteProtocolError` (FreeSWITCH's side) and
    :class:`LocalProtocolError` (ours)."""


class RemoteProtocolError(EslProtocolError):
    """The peer sent something that is not ESL, or is out of bounds; ``sample`` holds the first offending bytes.

    The connection it came on is spent: drop it and reconnect.
    """

    def __init__(self, message: str, sample: bytes = b""):
        super().__init__(f"{message}: {sample[:80]!r}" if sample else message)
        self.sample = sample[:200]


class LocalProtocolError(EslProtocolError, ValueError):
    """We misused the protocol: a command before the session is ready, a line break in a command (also a
    :class:`ValueError`, which encoding a command always raised for that), ``auth`` twice …. Nothing was sent."""


class CommandError(Exception):
    """FreeSWITCH answered a command with ``-ERR``/``-USAGE``."""

    def __init__(self, command: str, reply: str):
        super().__init__(f"{command.split(' ', 1)[0]}: {reply.strip()}")
        self.command = command
        self.reply = reply.strip()


# -- messages -------------------------------------------------------------------------------------


@dataclass(slots=True)
class AuthRequest:
    """The greeting: FreeSWITCH wants ``auth <password>``."""


@dataclass(slots=True)
class CommandReply:
    """Answer to a non-``api`` command (``auth``, ``event``, ``bgapi`` …)."""

    text: str
    headers: dict[str, str]

    @property
    def ok(self) -> bool:
        """True for ``+OK …``."""
        return self.text.startswith("+OK")

    @property
    def job_uuid(self) -> str | None:
        """The background job id of a ``bgapi`` reply."""
        return self.headers.get("Job-UUID")


@dataclass(slots=True)
class ApiResponse:
    """Answer to ``api``: the command's output, verbatim (errors start with ``-ERR``/``-USAGE``)."""

    body: str

    @property
    def ok(self) -> bool:
        """False when the body reports an error."""
        return not self.body.startswith(("-ERR", "-USAGE"))


class Event:
    """An event: headers (``Event-Name``, ``Unique-ID``, ``variable_*`` …) and optional body.

    A plain event keeps its header block as received (URL-encoded) and finds a header when asked
    for it: a consumer reads a handful of ~100 headers, so building and decoding them all per event
    would be wasted work. :meth:`get`, :meth:`variable` and ``[]`` decode one value;
    :attr:`headers` builds the full decoded dict once, on first use. Values of plain events never
    contain a raw newline (FreeSWITCH encodes it), so ``"\nName:"`` marks exactly that header.
    """

    __slots__ = ("_decoded", "_text", "body")

    def __init__(self, headers: dict[str, str] | None = None, body: str = "", *, text: str | None = None) -> None:
        self._decoded = headers
        self._text = text
        self.body = body

    @property
    def headers(self) -> dict[str, str]:
        """Every header, decoded (built once)."""
        if self._decoded is None:
            assert self._text is not None
            self._decoded = _event_headers(self._text)
        return self._decoded

    def get(self, name: str, default: str = "") -> str:
        """A header, or ``default``."""
        if self._decoded is not None:
            return self._decoded.get(name, default)
        text = self._text
        assert text is not None
        if text.startswith(name + ":"):
            i = len(name) + 1
        else:
            i = text.find("\n" + name + ":")
            if i < 0:
                return default
            i += len(name) + 2
        if text.startswith(" ", i):
            i += 1
        j = text.find("\n", i)
        value = text[i:j] if j >= 0 else text[i:]
        return unquote(value) if "%" in value else value

    def __getitem__(self, name: str) -> str:
        value = self.get(name, "\x00")
        if value == "\x00":
            raise KeyError(name)
        return value

    def __contains__(self, name: str) -> bool:
        return self.get(name, "\x00") != "\x00"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.headers == other.headers and self.body == other.body

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Event({self.name!r}, uuid={self.uuid!r})"

    @property
    def name(self) -> str:
        """``Event-Name`` (``CUSTOM`` events also have :attr:`subclass`)."""
        return self.get("Event-Name")

    @property
    def subclass(self) -> str:
        """``Event-Subclass`` of CUSTOM events, e.g. ``mod_audio_fork::connect``."""
        return self.get("Event-Subclass")

    @property
    def uuid(self) -> str:
        """The channel this event is about (``Unique-ID``), or ``""``."""
        return self.get("Unique-ID")

    def variable(self, name: str, default: str = "") -> str:
        """A channel variable carried as ``variable_<name>``."""
        return self.get("variable_" + name, default)


@dataclass(slots=True)
class DisconnectNotice:
    """FreeSWITCH is closing the connection (after ``exit`` or a failed ``auth``)."""

    body: str


@dataclass(slots=True)
class RudeRejection:
    """The event socket's ACL refused this client; the connection is closed."""

    body: str


@dataclass(slots=True)
class UnknownFrame:
    """A frame of a content type this client does not know (kept, not fatal)."""

    content_type: str
    headers: dict[str, str]
    body: bytes


Message = AuthRequest | CommandReply | ApiResponse | Event | DisconnectNotice | RudeRejection | UnknownFrame


# -- parsing --------------------------------------------------------------------------------------


def _headers(block: str, where: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in block.split("\n"):
        name, sep, value = line.partition(": ")
        if not sep or "\r" in line:
            if line.endswith(":"):  # "Name:" with an empty value
                out[line[:-1]] = ""
                continue
            raise RemoteProtocolError(f"malformed header line in {where}", line.encode())
        out[name] = value
    return out


_HEADER_LINE = re.compile(r"([^:\n]+):[ ]?(.*)")
_SPLIT = methodcaller("split", ": ", 1)


def _event_headers(block: str) -> dict[str, str]:
    """All headers of a plain event block, URL-decoded.

    Encoded values contain no newline or NUL (FreeSWITCH values are C strings and control
    characters are encoded), so the line breaks become NULs, the whole block is decoded with one
    ``unquote``, and split on NUL; decoded values may then hold newlines (an SDP, a sipfrag).
    """
    joined = block.replace("\n", "\x00")
    if "%" not in joined:
        lines = joined.split("\x00")
    elif "%00" not in joined:
        lines = unquote(joined).split("\x00")
    else:  # an encoded NUL (never from FreeSWITCH: its values are C strings) must not split a line
        lines = [unquote(line) for line in block.split("\n")]
    try:
        return dict(map(_SPLIT, lines))
    except ValueError:  # a line without ": " -- either "Name:" (empty value) or garbage
        out: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(": ")
            if not sep:
                if not line.endswith(":") or not _HEADER_LINE.fullmatch(line):
                    sample = line.encode("utf-8", "replace")
                    raise RemoteProtocolError("malformed header line in event", sample) from None
                name, value = line[:-1], ""
            out[name] = value
        return out


def _length(text: str, where: str) -> int:
    """A ``Content-Length`` value: ASCII digits only (``str.isdigit`` also takes '²' and '٣')."""
    if not (text.isascii() and text.isdigit()) or len(text) > _MAX_LENGTH_DIGITS:
        raise RemoteProtocolError(f"bad Content-Length{where}", text.encode("utf-8", "backslashreplace"))
    return int(text)


def parse_plain_event(data: str | bytes) -> Event:
    """Decode a ``text/event-plain`` body (headers found lazily, see :class:`Event`).

    The body is the header block, a blank line, and, when the block ends with ``Content-Length``,
    that many bytes of event body (FreeSWITCH's ``switch_event_serialize``); counted in bytes.
    """
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    end = raw.find(b"\n\n")
    head = (raw if end < 0 else raw[:end]).decode("utf-8", "replace").rstrip("\n")
    if not _HEADER_LINE.match(head):
        raise RemoteProtocolError("event does not start with a header line", head[:80].encode("utf-8", "replace"))
    event = Event(text=head)
    if end >= 0 and end + 2 < len(raw):  # nothing after the headers: no body to look for
        length = event.get("Content-Length", "")
        if length:
            event.body = raw[end + 2 : end + 2 + _length(length, " in event")].decode("utf-8", "replace")
    return event


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean(text: str) -> str:
    """JSON ``\\udXXX`` escapes can produce lone surrogates, which no UTF-8 encoder takes: replace them."""
    return _SURROGATE.sub("\ufffd", text)


def parse_json_event(data: str | bytes) -> Event:
    """Decode a ``text/event-json`` body."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    sample = text[:80].encode("utf-8", "replace")
    try:
        obj = json.loads(text)
        if not isinstance(obj, dict):
            raise RemoteProtocolError("JSON event is not an object", sample)
        body = obj.pop("_body", "")
        headers = {k: v if isinstance(v, str) else json.dumps(v) for k, v in obj.items()}
        body = body if isinstance(body, str) else json.dumps(body)
    except json.JSONDecodeError as exc:
        raise RemoteProtocolError(f"event is not valid JSON ({exc.msg})", sample) from None
    except (ValueError, RecursionError, OverflowError) as exc:  # 5,000-digit integers, nesting 10,000 deep
        raise RemoteProtocolError(f"unusable JSON event ({type(exc).__name__})", sample) from None
    if "\\u" in text:  # only an escape can yield a lone surrogate (the bytes were decoded with "replace")
        headers = {_clean(k): _clean(v) for k, v in headers.items()}
        body = _clean(body)
    return Event(headers, body)


class Parser:
    """Incremental ESL frame parser: :meth:`feed` bytes, get the complete messages back."""

    def __init__(self, max_header: int = MAX_HEADER_BYTES, max_body: int = MAX_BODY_BYTES):
        self._buf = bytearray()
        self._max_header = max_header
        self._max_body = max_body
        self._pending: tuple[dict[str, str], int] | None = None  # headers of a frame awaiting its body
        self._failed: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Message]:
        """Add received bytes; return every message now complete (possibly none).

        Raises :class:`RemoteProtocolError` (and nothing else) on bytes that are not ESL; the parser is
        then spent: every later call raises the same error.
        """
        if self._failed is not None:
            raise self._failed
        try:
            return self._feed(data)
        except RemoteProtocolError as exc:
            self._failed = exc
            raise

    def _feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        buf = self._buf
        pos = 0
        while True:
            if self._pending is None:
                # tolerate stray newlines between frames (FreeSWITCH never sends them, but be lenient)
                while pos < len(buf) and buf[pos] == 0x0A:
                    pos += 1
                end = buf.find(b"\n\n", pos)
                if end < 0:
                    if len(buf) - pos > self._max_header:
                        raise RemoteProtocolError("header block too long (no blank line)", bytes(buf[pos : pos + 80]))
                    first = buf.find(b"\n", pos)
                    if first >= 0:  # fail fast on garbage instead of waiting for a blank line
                        _headers(buf[pos:first].decode("utf-8", "replace"), "frame header")
                    break
                if end - pos > self._max_header:
                    raise RemoteProtocolError("header block too long", bytes(buf[pos : pos + 80]))
                try:
                    block = buf[pos:end].decode("utf-8")
                except UnicodeDecodeError:
                    raise RemoteProtocolError("header block is not text", bytes(buf[pos : pos + 80])) from None
                headers = _headers(block, "frame header")
                if "Content-Type" not in headers and "Content-Length" not in headers:
                    raise RemoteProtocolError("frame without Content-Type", bytes(buf[pos : pos + 80]))
                length = _length(headers.get("Content-Length", "0"), "")
                if length > self._max_body:
                    raise RemoteProtocolError(f"frame body of {length} bytes exceeds the {self._max_body} byte limit")
                pos = end + 2
                self._pending = (headers, length)
            headers, length = self._pending
            if len(buf) - pos < length:
                break
            body = bytes(buf[pos : pos + length])
            pos += length
            self._pending = None
            out.append(_message(headers, body))
        if pos:
            del buf[:pos]
        return out


def _message(headers: dict[str, str], body: bytes) -> Message:
    ctype = headers.get("Content-Type", "")
    if ctype == "text/event-plain":
        return parse_plain_event(body)
    if ctype == "text/event-json":
        return parse_json_event(body)
    if ctype == "api/response":
        return ApiResponse(body.decode("utf-8", "replace"))
    if ctype == "command/reply":
        return CommandReply(headers.get("Reply-Text", ""), headers)
    if ctype == "auth/request":
        return AuthRequest()
    if ctype == "text/disconnect-notice":
        return DisconnectNotice(body.decode("utf-8", "replace"))
    if ctype == "text/rude-rejection":
        return RudeRejection(body.decode("utf-8", "replace"))
    return UnknownFrame(ctype, headers, body)


# -- commands -------------------------------------------------------------------------------------


def _line(text: str) -> str:
    if "\n" in text or "\r" in text:
        raise LocalProtocolError("ESL command arguments cannot contain line breaks")
    return text


def command(line: str, headers: dict[str, str] | None = None) -> bytes:
    """Encode one command (``line`` plus optional extra header lines)."""
    out = _line(line)
    for k, v in (headers or {}).items():
        out += f"\n{_line(k)}: {_line(v)}"
    return (out + "\n\n").encode("utf-8")


def auth(password: str) -> bytes:
    """``auth <password>``."""
    return command(f"auth {password}")


def api(cmd: str) -> bytes:
    """``api <cmd>`` (blocking on FreeSWITCH's side: keep it short)."""
    return command(f"api {cmd}")


def bgapi(cmd: str, job_uuid: str | None = None) -> bytes:
    """``bgapi <cmd>``; the result comes later as a BACKGROUND_JOB event with this Job-UUID."""
    return command(f"bgapi {cmd}", {"Job-UUID": job_uuid} if job_uuid else None)


def subscribe(events: list[str], custom: list[str] = (), fmt: str = "plain") -> bytes:  # type: ignore[assignment]
    """``event <fmt> <names…> [CUSTOM <subclasses…>]``."""
    if fmt not in ("plain", "json"):
        raise LocalProtocolError("event format must be plain or json")
    names = " ".join(events)
    if custom:
        names += " CUSTOM " + " ".join(custom)
    return command(f"event {fmt} {names}")
