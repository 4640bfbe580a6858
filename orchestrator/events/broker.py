"""The event broker (asyncio): the controller publishes, subscribers (SSE clients, webhook delivery) read.

``publish`` is synchronous and costs O(subscribers): it never waits and never fails the publisher. Each
subscriber has a bounded queue; one that falls ``queue_limit`` events behind is cut off — it is removed at once,
reads what was queued and then learns it overflowed (:attr:`Subscription.overflowed`) — so a slow reader costs
nothing to the controller or to the other subscribers. The last ``history`` events stay in a ring buffer: a new
subscription can resume after an event it names (SSE ``Last-Event-ID``), or, if that event is not there any more
(too old, or from before a restart), gets the whole buffer and is told there may be a gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Collection

from orchestrator.events.model import Event

log = logging.getLogger("sipagent.events")

QUEUE_LIMIT = 1000
HISTORY = 1000


class Subscription:
    """One subscriber's queue and filters (``types``: event types, ``call_id``: one call; ``None``: all)."""

    def __init__(self, broker: Broker, types: Collection[str] | None, call_id: str | None, limit: int) -> None:
        self.broker = broker
        self.types = frozenset(types) if types is not None else None
        self.call_id = call_id
        self.limit = limit
        self.queue: deque[Event] = deque()
        self.overflowed = False
        self.closed = False
        #: resume: True when it went on right after the named event, False when there may be a gap, None: not asked
        self.resumed: bool | None = None
        self._wake = asyncio.Event()

    def matches(self, event: Event) -> bool:
        """Whether this subscriber wants ``event``."""
        if self.types is not None and event.type not in self.types:
            return False
        return self.call_id is None or event.call_id == self.call_id

    def offer(self, event: Event) -> bool:
        """Queue ``event``; False (and cut off) when the queue is full."""
        if self.closed:
            return False
        if len(self.queue) >= self.limit:
            self.overflowed = True
            self.closed = True
            self._wake.set()
            return False
        self.queue.append(event)
        self._wake.set()
        return True

    async def next(self) -> Event | None:
        """The next event; ``None`` once the subscription is closed (or cut off) and its queue is empty."""
        while not self.queue:
            if self.closed:
                return None
            self._wake.clear()
            await self._wake.wait()
        return self.queue.popleft()

    def drain(self, most: int) -> list[Event]:
        """Up to ``most`` more events already queued (without waiting)."""
        out: list[Event] = []
        while self.queue and len(out) < most:
            out.append(self.queue.popleft())
        return out

    def close(self) -> None:
        """Stop receiving (idempotent); a reader waiting in :meth:`next` gets what is queued, then ``None``."""
        self.closed = True
        self._wake.set()
        self.broker.unsubscribe(self)


class Broker:
    """Fan-out of events to subscribers, with a ring buffer of the latest."""

    def __init__(self, queue_limit: int = QUEUE_LIMIT, history: int = HISTORY) -> None:
        if queue_limit < 1 or not 0 <= history <= queue_limit:
            raise ValueError("need 1 <= queue_limit and 0 <= history <= queue_limit")
        self.queue_limit = queue_limit
        self.history: deque[Event] = deque(maxlen=history)
        self.subscriptions: set[Subscription] = set()
        self.published = 0
        self.overflows = 0
        self.closed = False
        #: called with every event, synchronously (webhooks: they must not miss one, so they are no subscriber)
        self.sinks: list[Callable[[Event], None]] = []

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber that wants it (never waits)."""
        self.published += 1
        self.history.append(event)
        for sink in self.sinks:
            try:
                sink(event)
            except Exception:
                log.exception("events: a sink failed on %s", event.type)
        for sub in list(self.subscriptions):
            if sub.matches(event) and not sub.offer(event):
                self.subscriptions.discard(sub)
                if sub.overflowed:
                    self.overflows += 1
                    log.warning("events: a subscriber fell %d events behind and was cut off", sub.limit)

    def subscribe(
        self,
        types: Collection[str] | None = None,
        call_id: str | None = None,
        after: tuple[int, str] | None = None,
    ) -> Subscription:
        """A new subscription; with ``after`` (an event's ``(seq, id)``), what came after it first."""
        sub = Subscription(self, types, call_id, self.queue_limit)
        if self.closed:
            sub.closed = True
            return sub
        if after is not None:
            replay = list(self.history)
            seq, uid = after
            for i, event in enumerate(replay):
                if event.seq == seq and event.id == uid:
                    replay, sub.resumed = replay[i + 1 :], True
                    break
            else:
                sub.resumed = False  # too old, or from another process: everything we still have
            for event in replay:
                if sub.matches(event):
                    sub.offer(event)  # history <= queue_limit: the replay always fits
        self.subscriptions.add(sub)
        return sub

    def close(self) -> None:
        """End every subscription (readers get what is queued, then the end) and take no new ones: at shutdown,
        so that open event streams finish and the HTTP server can stop."""
        self.closed = True
        for sub in list(self.subscriptions):
            sub.close()

    def unsubscribe(self, sub: Subscription) -> None:
        """Forget ``sub`` (idempotent)."""
        self.subscriptions.discard(sub)
