"""The event model, sans-I/O: an :class:`Event` is stamped by an :class:`EventFactory` from a :class:`Draft`.

Every event has a sequence number (``seq``, 1, 2, 3 … per process: the order of the stream, and what SSE
resume goes by), a UUID (``id``: unique across processes and restarts, the key a webhook receiver
de-duplicates by), its ``type``, the time it was made (``at``, ISO 8601 UTC with milliseconds, from the
factory's clock), the call it concerns (``call_id``, ``None`` for trunk events) and ``data``. The event's JSON is
made once, when it is stamped: every subscriber shares the same text, and ``data`` is a snapshot (later changes
to the call do not show in an event already made).
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


class EventType(enum.StrEnum):
    """What an event says (its value is the ``type`` clients see)."""

    CALL_STARTED = "call.started"
    CALL_RINGING = "call.ringing"
    CALL_ANSWERED = "call.answered"
    CALL_TRANSFERRED = "call.transferred"
    CALL_ENDED = "call.ended"
    AGENT_FAILED = "agent.failed"
    TRUNK_DOWN = "trunk.down"
    TRUNK_UP = "trunk.up"


#: every type, as the strings clients filter by
EVENT_TYPES: frozenset[str] = frozenset(t.value for t in EventType)


@dataclass(frozen=True)
class Draft:
    """An event before it is stamped: what it says, not yet when or with which number."""

    type: EventType
    call_id: str | None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    """One stamped event; ``json`` is its whole text (``id``, ``seq``, ``type``, ``at``, ``call_id``, ``data``)."""

    seq: int
    id: str
    type: EventType
    at: str
    call_id: str | None
    data: dict[str, Any]
    json: str = field(repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON object."""
        return {"id": self.id, "seq": self.seq, "type": str(self.type), "at": self.at, "call_id": self.call_id,
                "data": self.data}  # fmt: skip


def iso_utc(epoch: float) -> str:
    """Epoch seconds as ISO 8601 UTC with milliseconds: ``2025-03-01T12:00:00.250Z``."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventFactory:
    """Stamps drafts: the next sequence number, a new UUID, the clock's time."""

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
    ) -> None:
        self.clock = clock
        self.new_id = new_id
        self.seq = 0

    def make(self, draft: Draft) -> Event:
        """The event of ``draft``, numbered after the last one made."""
        self.seq += 1
        # a snapshot of the data (enums become their values), and the one text every subscriber sends
        data: dict[str, Any] = json.loads(json.dumps(draft.data, default=str))
        uid, at = self.new_id(), iso_utc(self.clock())
        whole = {"id": uid, "seq": self.seq, "type": str(draft.type), "at": at, "call_id": draft.call_id, "data": data}
        text = json.dumps(whole, separators=(",", ":"), sort_keys=True)
        return Event(self.seq, uid, draft.type, at, draft.call_id, data, text)
