"""Server-Sent Events, sans-I/O: the bytes of the stream and the checks of what a client sends.

An event is ``id: <seq>:<uuid>``, ``event: <type>`` and ``data: <the event's JSON>`` lines and a blank line
(the WHATWG ``text/event-stream`` format; the JSON has no newline, so one ``data:`` line). The id carries both
numbers so that a ``Last-Event-ID`` from before a restart (same sequence number, another UUID) is recognised as
foreign. Notices about the stream itself (``overflow``, ``gap``) have no id, so a client's ``Last-Event-ID``
stays that of the last event it got; keep-alives are comments.
"""

from __future__ import annotations

import json
import re
from typing import Any

from orchestrator.events.model import EVENT_TYPES, Event

#: what a client's EventSource waits before reconnecting (milliseconds), sent once at the start
RETRY_MS = 3000
KEEPALIVE = b": keep-alive\n\n"
MAX_TYPES = 16
_LAST_ID = re.compile(r"([1-9][0-9]{0,18}):([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


class InvalidParameter(ValueError):
    """A query parameter or header the stream cannot take; ``code`` and ``status`` for the API's error."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def event_id(event: Event) -> str:
    """The SSE ``id`` of an event."""
    return f"{event.seq}:{event.id}"


def format_event(event: Event) -> bytes:
    """One event as SSE lines."""
    return f"id: {event_id(event)}\nevent: {event.type}\ndata: {event.json}\n\n".encode()


def format_notice(name: str, data: dict[str, Any]) -> bytes:
    """A notice about the stream itself (no id)."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'), sort_keys=True)}\n\n".encode()


def opening() -> bytes:
    """The first bytes of a stream: the reconnection delay and a comment (headers reach the client at once)."""
    return f"retry: {RETRY_MS}\n: sipagent events\n\n".encode()


def parse_types(value: str | None) -> frozenset[str] | None:
    """``?types=call.ended,trunk.down`` → the set, ``None`` for all; an unknown or empty type is refused (422)."""
    if value is None:
        return None
    names = [n.strip() for n in value.split(",")]
    if not names or len(names) > MAX_TYPES or any(not n for n in names):
        raise InvalidParameter("invalid_types", f"types: 1-{MAX_TYPES} comma-separated event types", 422)
    unknown = sorted({n for n in names if n not in EVENT_TYPES})
    if unknown:
        shown = ", ".join(repr(n[:40]) for n in unknown[:4])
        raise InvalidParameter(
            "unknown_event_type", f"unknown event type {shown}; known: {', '.join(sorted(EVENT_TYPES))}", 422
        )
    return frozenset(names)


def parse_last_event_id(value: str | None) -> tuple[int, str] | None:
    """A ``Last-Event-ID`` (``<seq>:<uuid>``, as this server sent it) → ``(seq, uuid)``; empty: ``None``."""
    if value is None or not value.strip():
        return None
    m = _LAST_ID.fullmatch(value.strip())
    if m is None:
        message = "Last-Event-ID must be an id this stream sent (<seq>:<uuid>)"
        raise InvalidParameter("invalid_last_event_id", message, 400)
    return int(m.group(1)), m.group(2)
