"""The event-socket wire format as FreeSWITCH 1.10.12 writes it.

Everything here was checked against recorded bytes (``shared/fixtures/freeswitch-1.10.12`` and
``tests/fixtures_esl``):

* replies are header blocks: ``Content-Type: command/reply`` + ``Reply-Text``; api results are
  ``Content-Type: api/response`` + ``Content-Length`` + body (no newline added);
* events put ``Content-Length`` BEFORE ``Content-Type: text/event-plain|json|xml`` in the outer block;
* plain event headers are ``Name: url-encoded value`` lines; an event body follows an inner
  ``Content-Length`` header and a blank line, an event without body ends with a blank line;
* FreeSWITCH url-encodes bytes outside ``' '..'~'`` and ``\\r\\n #%&+:;<=>?@[\\]^`{|}"``, but leaves a ``%``
  followed by two UPPER-case hex digits alone (``100%41`` stays, ``%4a`` becomes ``%254a``);
* json events are compact, non-ASCII is not escaped, duplicate header names stay duplicated,
  a body is ``"Content-Length":"n","_body":"..."`` at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

_UNSAFE = frozenset(b'\r\n #%&+:;<=>?@[\\]^`{|}"')
_UPPER_HEX = frozenset(b"0123456789ABCDEF")

DISCONNECT_TEXT = "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"


def url_encode(value: str) -> str:
    """Encode a header value the way FreeSWITCH's ``switch_url_encode`` does for plain events."""
    raw = value.encode("utf-8", "surrogateescape")
    out: list[str] = []
    n = len(raw)
    for i, b in enumerate(raw):
        if b == 0x25 and i + 2 < n and raw[i + 1] in _UPPER_HEX and raw[i + 2] in _UPPER_HEX:
            out.append("%")
        elif b < 0x20 or b > 0x7E or b in _UNSAFE:
            out.append(f"%{b:02X}")
        else:
            out.append(chr(b))
    return "".join(out)


def _js(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _xml_escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class Event:
    """One FreeSWITCH event: ordered headers (duplicates allowed, like the real thing) and an optional body."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    body: str | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name``."""
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def set(self, name: str, value: str) -> None:
        """Replace the first header ``name`` (or append it)."""
        for i, (k, _) in enumerate(self.headers):
            if k == name:
                self.headers[i] = (name, value)
                return
        self.headers.append((name, value))

    @property
    def name(self) -> str:
        """``Event-Name``."""
        return self.get("Event-Name") or ""

    @property
    def subclass(self) -> str | None:
        """``Event-Subclass`` of a CUSTOM event."""
        return self.get("Event-Subclass")

    def as_dict(self) -> dict[str, str]:
        """Headers as a dict (the FIRST occurrence of a duplicated name wins) plus ``_body``."""
        d: dict[str, str] = {}
        for k, v in self.headers:
            d.setdefault(k, v)
        if self.body:
            d["_body"] = self.body
        return d

    # -- serialisation -------------------------------------------------------------------------
    def serialize_plain(self) -> bytes:
        """Body of a ``text/event-plain`` frame."""
        lines = [f"{k}: {url_encode(v)}\n" for k, v in self.headers]
        if self.body:
            body = self.body.encode()
            return ("".join(lines) + f"Content-Length: {len(body)}\n\n").encode() + body
        return ("".join(lines) + "\n").encode()

    def serialize_json(self) -> bytes:
        """Body of a ``text/event-json`` frame (compact, duplicates kept)."""
        parts = [f"{_js(k)}:{_js(v)}" for k, v in self.headers]
        if self.body:
            parts.append(f'"Content-Length":"{len(self.body.encode())}"')
            parts.append(f'"_body":{_js(self.body)}')
        return ("{" + ",".join(parts) + "}").encode()

    def serialize_xml(self) -> bytes:
        """Body of a ``text/event-xml`` frame (header layout recorded; the body element is not)."""
        lines = ["<event>\n", "  <headers>\n"]
        lines += [f"    <{k}>{url_encode(v)}</{k}>\n" for k, v in self.headers]
        if self.body:
            lines.append(f"    <Content-Length>{len(self.body.encode())}</Content-Length>\n")
        lines.append("  </headers>\n")
        if self.body:
            lines.append(f"  <body>{_xml_escape(self.body)}</body>\n")
        lines.append("</event>\n")
        return "".join(lines).encode()

    def frame(self, fmt: str) -> bytes:
        """The complete frame for an event listener in format ``plain``, ``json`` or ``xml``."""
        if fmt == "json":
            data, ctype = self.serialize_json(), "text/event-json"
        elif fmt == "xml":
            data, ctype = self.serialize_xml(), "text/event-xml"
        else:
            data, ctype = self.serialize_plain(), "text/event-plain"
        return f"Content-Length: {len(data)}\nContent-Type: {ctype}\n\n".encode() + data


def command_reply(text: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    """A ``command/reply`` frame."""
    head = f"Content-Type: command/reply\nReply-Text: {text}\n"
    for k, v in extra or []:
        head += f"{k}: {v}\n"
    return (head + "\n").encode()


def api_response(body: str | bytes) -> bytes:
    """An ``api/response`` frame; the body is sent exactly as given (no newline added)."""
    data = body.encode() if isinstance(body, str) else body
    return f"Content-Type: api/response\nContent-Length: {len(data)}\n\n".encode() + data


AUTH_REQUEST = b"Content-Type: auth/request\n\n"
DISCONNECT_NOTICE = (
    f"Content-Type: text/disconnect-notice\nContent-Length: {len(DISCONNECT_TEXT)}\n\n{DISCONNECT_TEXT}".encode()
)


def fs_cleanup(token: str, delim: str = "") -> str:
    """FreeSWITCH's ``cleanup_separated_string`` (see :func:`.fsstrings.cleanup`)."""
    from .fsstrings import cleanup

    return cleanup(token, delim)
