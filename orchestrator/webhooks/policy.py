"""What goes to which webhook and when it is tried again, sans-I/O (time and randomness are passed in).

* :func:`entries`: one outbox :class:`~orchestrator.store.outbox.Entry` per endpoint that wants the event
  (its ``events`` list; its ``agents`` list keeps only those agents' call events, and no trunk events).
* :func:`ordering_key`: a call's events share their call's key, a trunk's share the trunk's, so each goes out in
  order on each endpoint; events of different calls do not wait for each other.
* :func:`next_attempt`: after a failed attempt, when to try again — exponential backoff (``retry_initial``
  doubling up to ``retry_max``) with jitter (each delay drawn in [½, 1] of it, so receivers coming back are not
  hit by every orchestrator at once), at least what a 429/503's ``Retry-After`` asks (within ``retry_max``) — or
  ``None``: dead-lettered after ``max_attempts``.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Iterable
from dataclasses import dataclass

from orchestrator.config.model import Deployment
from orchestrator.events.model import Event
from orchestrator.store.outbox import Entry


@dataclass(frozen=True)
class Endpoint:
    """One configured receiver, as the dispatcher uses it (``secrets``: current key first)."""

    name: str
    url: str
    secrets: tuple[bytes, ...]
    events: frozenset[str] | None = None
    agents: frozenset[str] | None = None
    timeout: float = 10.0
    max_attempts: int = 12
    retry_initial: float = 5.0
    retry_max: float = 3600.0
    concurrency: int = 4

    def __repr__(self) -> str:  # never the secrets, nor the URL (its query may hold a token)
        return f"Endpoint({self.name!r})"

    def wants(self, event: Event) -> bool:
        """Whether this endpoint receives ``event``."""
        if self.events is not None and event.type not in self.events:
            return False
        if self.agents is None:
            return True
        return event.call_id is not None and event.data.get("agent") in self.agents


def endpoints(deployment: Deployment) -> list[Endpoint]:
    """The deployment's webhooks (``orchestrator.webhooks``)."""
    out = []
    for w in deployment.orchestrator.webhooks:
        keys = [w.secret] + ([w.previous_secret] if w.previous_secret is not None else [])
        out.append(
            Endpoint(
                name=w.name,
                url=w.url,
                secrets=tuple(k.get_secret_value().encode() for k in keys),
                events=frozenset(w.events) if w.events is not None else None,
                agents=frozenset(w.agents) if w.agents is not None else None,
                timeout=w.timeout_seconds,
                max_attempts=w.max_attempts,
                retry_initial=w.retry_initial_seconds,
                retry_max=w.retry_max_seconds,
                concurrency=w.concurrency,
            )
        )
    return out


def ordering_key(event: Event) -> str:
    """What orders this event against others on one endpoint: its call, its trunk, or nothing else."""
    if event.call_id is not None:
        return f"call:{event.call_id}"
    trunk = event.data.get("trunk")
    if isinstance(trunk, str):
        return f"trunk:{trunk}"
    return f"event:{event.id}"


def entries(event: Event, targets: Iterable[Endpoint], now: float) -> list[Entry]:
    """The deliveries ``event`` makes: one per endpoint that wants it."""
    key = ordering_key(event)
    return [
        Entry(e.name, event.id, str(event.type), event.call_id, key, event.json, now) for e in targets if e.wants(event)
    ]


def backoff(attempt: int, jitter: float, initial: float, maximum: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1, 2, …): ``initial·2^(attempt-1)`` capped at
    ``maximum``, scaled into [½, 1] of itself by ``jitter`` in [0, 1]."""
    base = min(maximum, initial * 2.0 ** max(0, min(attempt - 1, 60)))
    return base * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value or len(value) > 64:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(min(int(text), 10**9))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    seconds = when.timestamp() - now
    return max(0.0, seconds) if math.isfinite(seconds) else None


def next_attempt(
    endpoint: Endpoint, attempts: int, now: float, jitter: float, asked: float | None = None
) -> float | None:
    """When to try again after ``attempts`` failed attempts (epoch seconds), or None: dead-letter it."""
    if attempts >= endpoint.max_attempts:
        return None
    delay = backoff(attempts, jitter, endpoint.retry_initial, endpoint.retry_max)
    if asked is not None:
        delay = max(delay, min(asked, endpoint.retry_max))
    return now + delay


def success(status: int) -> bool:
    """A 2xx answer is a delivery; anything else (redirects too: they are not followed) is a failed attempt."""
    return 200 <= status < 300
