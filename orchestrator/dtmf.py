"""The project's one DTMF grammar (sans-I/O): what a caller can press, what may be sent into a call.

Keys are ``0-9 * # A-D`` (RFC 4733 events 0-15). What is *sent* (the API, an agent's tool call or
control message) may also hold pauses: ``w`` = 0.5 s, ``W`` = 1 s, as FreeSWITCH's
``switch_core_session_send_dtmf_string`` plays them. Lower-case ``a-d`` are accepted and written
upper-case. FreeSWITCH ignores a send string longer than 99 characters; :data:`MAX_SEQUENCE` keeps
``digits@duration`` well under that.
"""

from __future__ import annotations

import re

KEYS = "0123456789*#ABCD"
PAUSES = "wW"
MAX_SEQUENCE = 64
MIN_DURATION_MS = 40
MAX_DURATION_MS = 2000

_KEY = re.compile(r"[0-9*#A-D]")
_SEQUENCE = re.compile(rf"[0-9*#A-DwW]{{1,{MAX_SEQUENCE}}}")

#: for messages: what a valid sequence is, in words
SEQUENCE_RULE = f"1 to {MAX_SEQUENCE} of 0-9 * # A-D, with w (0.5 s) or W (1 s) pauses"


def key(digit: object) -> str | None:
    """A key the caller pressed, normalised (``"a"`` → ``"A"``), or None when it is not a DTMF key."""
    if not isinstance(digit, str) or len(digit) != 1:
        return None
    digit = digit.upper() if digit in "abcd" else digit
    return digit if _KEY.fullmatch(digit) else None


def sequence(digits: object) -> str | None:
    """Digits to send, normalised (``a-d`` upper-cased, pauses kept), or None when they are not valid."""
    if not isinstance(digits, str):
        return None
    normal = "".join(c.upper() if c in "abcd" else c for c in digits)
    return normal if _SEQUENCE.fullmatch(normal) else None


def valid_duration(ms: object) -> bool:
    """A per-digit duration FreeSWITCH plays as given (milliseconds)."""
    return isinstance(ms, int) and not isinstance(ms, bool) and MIN_DURATION_MS <= ms <= MAX_DURATION_MS
