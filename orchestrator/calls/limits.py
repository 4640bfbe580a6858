"""Outbound call limits per trunk, sans-I/O: may the API place one more call through a trunk now?

A trunk's ``outbound.limits`` (:class:`~orchestrator.config.model.CallLimits`) caps the calls up at once
(``max_calls``: every outbound call of the trunk the tracker knows, on every node, from the originate on) and the
calls placed per second (``calls_per_second``: a sliding one-second window of admitted originates). Over a limit
the API answers 429 with Retry-After (docs/configuration.md#call-limits): nothing is queued, the client retries.
The orchestrator sees every node's calls, so these counts are exact across a pool, unlike the inbound ones
(FreeSWITCH's ``limit`` counts per node).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from orchestrator.config.model import CallLimits

#: a window never holds more admissions than the largest calls_per_second the model allows
_WINDOW = 1.0


@dataclass(frozen=True)
class Refusal:
    """A call a trunk's limit refuses: which limit, and when to try again (whole seconds, at least 1)."""

    trunk: str
    limit: str  # max_calls | calls_per_second
    retry_after: int
    message: str


class OutboundLimiter:
    """Admits outbound calls per trunk against its limits (``clock``: monotonic seconds, injected in tests)."""

    def __init__(self, limits: Mapping[str, CallLimits], clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = dict(limits)
        self.clock = clock
        self._admitted: dict[str, deque[float]] = {t: deque() for t in self.limits}

    def admit(self, trunk: str, active: int) -> Refusal | None:
        """One more call through ``trunk``, which has ``active`` outbound calls now: None (admitted, counted in
        the rate window) or the :class:`Refusal`."""
        limits = self.limits.get(trunk)
        if limits is None:
            return None
        if limits.max_calls is not None and active >= limits.max_calls:
            return Refusal(
                trunk,
                "max_calls",
                limits.retry_after_seconds,
                f"trunk {trunk} has {active} outbound calls up, its limit (outbound.limits.max_calls)",
            )
        now = self.clock()
        window = self._admitted[trunk]
        while window and window[0] <= now - _WINDOW:
            window.popleft()
        if limits.calls_per_second is not None and len(window) >= limits.calls_per_second:
            wait = window[0] + _WINDOW - now
            return Refusal(
                trunk,
                "calls_per_second",
                max(1, math.ceil(wait)),
                f"trunk {trunk} placed {len(window)} calls in the last second, its limit "
                "(outbound.limits.calls_per_second)",
            )
        window.append(now)
        return None
