"""Webhook signatures, sans-I/O: HMAC-SHA256 over ``<timestamp>.<body>``, in the ``Sipagent-Signature`` header.

The header is ``t=<unix seconds>,v1=<hex>`` (``,v1=<hex>`` once more while a secret is being rotated: one
signature per key). A receiver recomputes ``HMAC-SHA256(secret, f"{t}." + raw body)``, compares it in constant
time with each ``v1``, and refuses a ``t`` too far from its own clock (a replayed request). The timestamp is the
attempt's, so every retry carries a fresh one. docs/operations.md#webhooks has the same check as a snippet.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

HEADER = "Sipagent-Signature"
#: how far a receiver should let the timestamp be from its clock (seconds)
TOLERANCE = 300
_MAX_HEADER = 1024


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``<timestamp>.<body>`` under ``secret``."""
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def header(secrets: Sequence[bytes], timestamp: int, body: bytes) -> str:
    """The header value: the timestamp and one ``v1`` per secret (the current one first)."""
    return ",".join([f"t={timestamp}", *(f"v1={signature(s, timestamp, body)}" for s in secrets)])


def verify(value: str, body: bytes, secret: bytes, now: float, tolerance: float = TOLERANCE) -> bool:
    """Whether ``value`` (the header) signs ``body`` with ``secret`` at a time within ``tolerance`` of ``now``."""
    if len(value) > _MAX_HEADER:
        return False
    timestamp: int | None = None
    given: list[str] = []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t" and item.isascii() and item.isdigit() and len(item) <= 12:
            timestamp = int(item)
        elif key == "v1":
            given.append(item)
    if timestamp is None or abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    return any(hmac.compare_digest(expected.encode(), g.encode("utf-8", "replace")) for g in given)
