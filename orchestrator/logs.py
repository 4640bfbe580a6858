"""Logging for sipagent processes: one setup, and no secret in any log record, at any level, from any logger.

:func:`setup` (used by ``sipagent run`` and by every media worker process) installs one stderr handler and
a :class:`Redactor` in two places:

* the **log record factory**, so every record any logger creates — ours, ``websockets`` (which logs
  ``> GET /path?token=…`` and each request header at DEBUG), ``httpx``/``httpcore`` (request URLs,
  header tuples), ``uvicorn`` (whose access logger has handlers of its own), ``asyncio`` — is cleaned
  before any handler sees it: the message with its arguments, the exception text, the stack;
* the formatter of the handler, which cleans the final line again (records made without the
  factory, e.g. ``logging.makeLogRecord``).

What is redacted (replaced by ``[redacted]``):

* every configured secret value (:func:`deployment_secrets`: ESL passwords, the API token, the media
  secret, agent headers, API keys, digest passwords, TLS passphrases), also URL-encoded (any mix of
  ``%XX`` and plain characters, either hex case, ``+`` for a space), JSON-, ``repr``- and
  bytes-``repr``-escaped; a secret split over several arguments is found in the formatted message;
* by pattern: ``token=``/``signature=``/``key=``/``password=``/``secret=``… parameters (also
  ``%3D``-encoded inside another URL), ``Authorization:``/``Cookie:``/``Set-Cookie:``/``xi-api-key:``
  and other credential header values (as ``Name: value`` lines, ``'name': 'value'`` dict or JSON
  pairs and ``(b'name', b'value')`` tuples), ``Bearer``/``Basic`` credentials, URL passwords
  (``wss://user:pass@host``).

Messages are also kept to one line: control characters in the message (a line break in a value
that came from outside, e.g. a SIP header) are written as ``\\n``, ``\\x1b`` …, so no input can forge
a log line. Exception tracebacks keep their lines.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from pydantic import SecretStr

REDACTED = "[redacted]"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LEVEL_ENV = "SIPAGENT_LOG_LEVEL"  # how spawned worker processes learn the level `sipagent run` was given
_SHORT = 6  # secrets shorter than this are only redacted where they stand alone (not inside a word)
_FLAG = "_sipagent_redacted"

# a credential-bearing name: query/kwargs keys, JSON/dict keys, header names
# (bounded repeats: no pattern may take quadratic time on a long hostile line)
_KEY = r"[\w.-]{0,40}?(?:token|signature|secret|passw(?:or)?d|pwd|api[_-]?key|access[_-]?key|sig|auth|key|cookie|session)[\w.-]{0,40}"  # noqa: E501
_HEADER = (
    r"(?:proxy-)?authorization|cookie|set-cookie|[\w-]{0,40}?(?:api-?key|token|secret|password|signature)[\w-]{0,40}"
)
_PATTERNS = [
    # 'xi-api-key': 'v'  "token": "v"  (b'Authorization', b'Bearer v')  -- the value up to its closing quote
    rf"(?P<p1>b?(?P<q0>[\"'])(?i:{_KEY})(?P=q0)\s*[:,]\s*b?)(?P<q1>[\"'])(?:\\.|(?!(?P=q1)).)*(?P=q1)",
    # wss://user:password@host
    r"(?P<p2>(?<![a-zA-Z0-9+.-])[a-zA-Z][a-zA-Z0-9+.-]{0,30}://[^\s/@:'\"]{0,256}:)[^\s/@'\"]{1,1024}(?=@)",
    # ?token=v &conversation_signature=v  token%3Dv (inside an encoded URL)  password="v"
    rf"(?P<p3>(?<![\w.-])(?i:{_KEY})(?:=|%3[dD])[\"']?)(?:(?!%26)[^&\s#\"'<>,;\\])+",
    # Authorization: Bearer v   xi-api-key: v   Cookie: a=b; c=d   -- the rest of the line
    rf"(?P<p4>(?<![\w.-])(?i:{_HEADER})\s*:\s*)(?:(?!\\[rn])[^\r\n])+",
    # Bearer v / Basic v anywhere else
    r"(?P<p5>(?<![\w-])(?:(?i:bearer)|Basic)\s+)[A-Za-z0-9._~+/=-]{6,}",
]
#: every pattern above needs one of these (lower case) in the text
_WORDS = ("token", "sig", "secret", "passw", "pwd", "key", "auth", "cookie", "session", "bearer", "basic", "://")
_SCHEME = re.compile(r"(?i)(?:bearer|basic|token|digest|apikey|api-key)\s+(\S.*)")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")


def _escape_control(match: re.Match[str]) -> str:
    c = match.group()
    return {"\n": "\\n", "\r": "\\r"}.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def _char_forms(c: str) -> list[str]:
    """Every way one character of a secret can appear in a log line, as regex alternatives."""
    data = c.encode("utf-8", "surrogatepass")
    forms = [re.escape(c), "(?i:" + "".join(f"%{b:02x}" for b in data) + ")"]
    if c == " ":
        forms.append(r"\+")
    escapes = {"\\": r"\\\\", "'": r"\\'", '"': r'\\"', "\n": r"\\n", "\r": r"\\r", "\t": r"\\t", "/": r"\\/"}
    if c in escapes:
        forms.append(escapes[c])
    if not c.isascii() or not c.isprintable():
        forms.append("(?i:" + "".join(rf"\\x{b:02x}" for b in data) + ")")  # bytes repr
        code = ord(c)
        if code <= 0xFFFF:
            forms.append(rf"(?i:\\u{code:04x})")  # JSON, ascii()
        else:
            hi, lo = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
            forms += [rf"(?i:\\U{code:08x})", rf"(?i:\\u{hi:04x}\\u{lo:04x})"]
        if code < 0x100:
            forms.append(rf"(?i:\\x{code:02x})")  # str repr of a control or latin-1 character
    return forms


def _secret_pattern(secret: str) -> str:
    body = "".join("(?:" + "|".join(_char_forms(c)) + ")" for c in secret)
    return body if len(secret) >= _SHORT else rf"(?<![A-Za-z0-9]){body}(?![A-Za-z0-9])"


def _texts(secret: str | bytes | SecretStr) -> list[str]:
    """A secret as the strings it may be logged as."""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    if isinstance(secret, str):
        scheme = _SCHEME.match(secret)  # a header value such as "Bearer <token>": the token alone too
        return [secret, scheme.group(1)] if scheme else [secret]
    out = [secret.hex(), secret.hex().upper(), base64.b64encode(secret).decode()]
    out.append(base64.urlsafe_b64encode(secret).decode().rstrip("="))
    try:
        out.append(secret.decode("utf-8"))
    except UnicodeDecodeError:
        out.append(secret.decode("latin-1"))  # its bytes repr is matched through the \\xNN forms
    return out


class Redactor:
    """Removes secrets from text and from log records (see the module docstring for what it finds)."""

    def __init__(self, secrets: Iterable[str | bytes | SecretStr] = ()) -> None:
        values = sorted({t for s in secrets for t in _texts(s) if t and t.strip()}, key=len, reverse=True)
        self.count = len(values)
        self._values = values
        literal = [_secret_pattern(v) for v in values]
        self._literal = re.compile("|".join(literal)) if literal else None
        self._patterns = re.compile("|".join(_PATTERNS))

    def _pattern(self, match: re.Match[str]) -> str:
        for group in ("p1", "p2", "p3", "p4", "p5"):
            prefix = match.group(group)
            if prefix is not None:
                if group == "p1":  # keep the quotes around the value
                    quote = match.group("q1")
                    return f"{prefix}{quote}{REDACTED}{quote}"
                return prefix + REDACTED
        return REDACTED  # pragma: no cover - every alternative has a prefix group

    def redact(self, text: str) -> str:
        """``text`` without the secrets."""
        # fast paths (a DEBUG line of websockets is logged per frame): without '%', '\\' or '+' a secret can
        # only appear as itself; without a credential word no pattern can match
        if self._literal is not None and (
            "%" in text or "\\" in text or "+" in text or any(v in text for v in self._values)
        ):
            text = self._literal.sub(REDACTED, text)
        lower = text.lower()
        if any(word in lower for word in _WORDS):
            text = self._patterns.sub(self._pattern, text)
        return text

    def line(self, text: str) -> str:
        """:meth:`redact`, then control characters escaped: one log line."""
        text = self.redact(text)
        return _CONTROL.sub(_escape_control, text) if _CONTROL.search(text) else text

    def scrub(self, record: logging.LogRecord) -> logging.LogRecord:
        """Clean a record in place: its message (formatted with its arguments), exception text and stack."""
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit the format: keep both, cleaned
            message = f"{record.msg!r} {record.args!r}"
            record.args = None
        clean = self.line(message)
        if clean != message:
            record.msg, record.args = self._shaped(record, clean)
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            record.exc_text = self.redact(text)
            if record.exc_text != text:
                record.exc_info = None  # a handler must not format the original again
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        _mark(record)
        return record

    def _shaped(self, record: logging.LogRecord, clean: str) -> tuple[Any, Any]:
        """Keep ``msg``/``args`` apart where cleaning each argument is enough (formatters such as uvicorn's
        access formatter read ``args``); otherwise the cleaned message with no arguments."""
        args = record.args
        if isinstance(args, tuple) and args and isinstance(record.msg, str) and self.line(record.msg) == record.msg:
            cleaned = tuple(self.line(a) if isinstance(a, str) else a for a in args)
            try:
                if self.line(record.msg % cleaned) == record.msg % cleaned:
                    return record.msg, cleaned
            except Exception:
                pass
        return clean, None


def _mark(record: logging.LogRecord) -> None:
    setattr(record, _FLAG, (record.msg, record.args, record.exc_info, record.stack_info))


def _is_clean(record: logging.LogRecord) -> bool:
    """Scrubbed, and not changed since (``logging.makeLogRecord`` fills a record after the factory made it)."""
    mark = getattr(record, _FLAG, None)
    now = (record.msg, record.args, record.exc_info, record.stack_info)
    return mark is not None and all(a is b for a, b in zip(mark, now, strict=True))


def _scrubbed(redactor: Redactor, record: logging.LogRecord) -> logging.LogRecord:
    """``redactor.scrub(record)``, once; if it fails, the record's content is withheld (and logging goes on)."""
    if _is_clean(record):
        return record
    try:
        return redactor.scrub(record)
    except Exception:  # never let logging raise into the caller, never let an unchecked record through
        record.msg, record.args = "[log record withheld: redaction failed]", None
        record.exc_info = record.exc_text = record.stack_info = None
        _mark(record)
        return record


class RedactingFormatter(logging.Formatter):
    """A formatter that cleans its output with a :class:`Redactor` (records not from the factory too)."""

    def __init__(self, redactor: Redactor, fmt: str = FORMAT) -> None:
        super().__init__(fmt)
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        if _is_clean(record):  # cleaned by the factory: message, exception and stack are clean
            return super().format(record)
        _scrubbed(self.redactor, record)
        return self.redactor.redact(super().format(record))


class RedactingFilter(logging.Filter):
    """For handlers :func:`setup` did not create (added to every root handler present at setup)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        _scrubbed(self.redactor, record)
        return True


_state: dict[str, Any] = {}


def setup(
    level: str | int = "info",
    secrets: Iterable[str | bytes | SecretStr] = (),
    *,
    stream: TextIO | None = None,
    fmt: str = FORMAT,
) -> Redactor:
    """Configure logging for a sipagent process: ``level`` on the root logger, one handler on ``stream``
    (stderr) and redaction of ``secrets`` everywhere. Calling it again replaces the previous setup."""
    reset()
    numeric = level if isinstance(level, int) else logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}: use debug, info, warning or error")
    redactor = Redactor(secrets)
    original = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _scrubbed(redactor, original(*args, **kwargs))

    root = logging.getLogger()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(RedactingFormatter(redactor, fmt))
    log_filter = RedactingFilter(redactor)
    _state.update(
        factory=factory,
        original=original,
        handler=handler,
        filter=log_filter,
        filtered=list(root.handlers),
        env=os.environ.get(LEVEL_ENV),
        level=root.level,
    )
    logging.setLogRecordFactory(factory)
    for other in root.handlers:
        other.addFilter(log_filter)
    root.addHandler(handler)
    root.setLevel(numeric)
    os.environ[LEVEL_ENV] = logging.getLevelName(numeric)
    return redactor


def reset() -> None:
    """Undo :func:`setup` (tests; a second setup)."""
    if not _state:
        return
    root = logging.getLogger()
    if logging.getLogRecordFactory() is _state["factory"]:
        logging.setLogRecordFactory(_state["original"])
    root.removeHandler(_state["handler"])
    for handler in _state["filtered"]:
        handler.removeFilter(_state["filter"])
    root.setLevel(_state["level"])
    if _state["env"] is None:
        os.environ.pop(LEVEL_ENV, None)
    else:
        os.environ[LEVEL_ENV] = _state["env"]
    _state.clear()


def deployment_secrets(deployment: Any, *extra: str | bytes | SecretStr | None) -> list[str | bytes | SecretStr]:
    """Every secret value of a validated deployment (each ``SecretStr`` in it), plus ``extra`` ones."""
    from orchestrator.config.checks import secrets

    found: list[str | bytes | SecretStr] = [value for _, value in secrets(deployment)]
    return found + [e for e in extra if e]


def setup_worker(deployment: Any, secret: bytes, index: int) -> Redactor:
    """:func:`setup` for a media worker process: the level ``sipagent run`` was given, its secrets, a prefix."""
    return setup(
        os.environ.get(LEVEL_ENV, "INFO"),
        deployment_secrets(deployment, secret),
        fmt=f"%(asctime)s worker{index} %(levelname)s %(name)s: %(message)s",
    )


class LogThrottle:
    """Bounded logging of what outside peers cause: at most ``burst`` lines per ``window`` seconds per kind;
    what was held back is counted into the next line that goes out (one instance per process or purpose)."""

    def __init__(self, burst: int = 5, window: float = 10.0, clock: Callable[[], float] | None = None) -> None:
        self.burst = burst
        self.window = window
        self.clock = clock or time.monotonic
        self._state: dict[str, tuple[float, int, int]] = {}  # kind -> (window start, shown, held back)

    def allow(self, kind: str = "", now: float | None = None) -> int | None:
        """None: don't log this one; else log it, mentioning the returned number of lines held back."""
        now = self.clock() if now is None else now
        start, shown, held = self._state.get(kind, (now, 0, 0))
        if now - start >= self.window:
            start, shown = now, 0
        if shown < self.burst:
            self._state[kind] = (start, shown + 1, 0)
            return held
        self._state[kind] = (start, shown, held + 1)
        return None


def escaped(text: str, limit: int = 200) -> str:
    """Outside text for a log line: its first ``limit`` characters, escaped as ``ascii()`` does (one inert line)."""
    return ascii(text[:limit])[1:-1]
