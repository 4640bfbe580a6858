"""When the store's background work runs, as pure functions of time (the callers pass the clock's reading)."""

from __future__ import annotations

DAY = 86_400.0


def retry_delay(attempt: int, jitter: float, *, initial: float = 1.0, maximum: float = 60.0) -> float:
    """Seconds before reconnection attempt ``attempt`` (1, 2, …) to a database that was down: ``initial`` doubling
    up to ``maximum``, each within ±20 % (``jitter`` in [0, 1)), so orchestrators sharing one database that came
    back do not all knock at once."""
    base: float = min(maximum, initial * 2.0 ** max(0, min(attempt - 1, 30)))
    return base * (0.8 + 0.4 * min(max(jitter, 0.0), 1.0))


def retention_cutoff(now: float, days: int) -> float:
    """Records that started before this time (epoch seconds) are older than ``days`` days."""
    return now - days * DAY
