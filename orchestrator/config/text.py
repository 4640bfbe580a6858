"""Characters a deployment value may not hold, and how a value is shown in a message or a terminal.

One definition, used by the validators (which refuse these characters in every string setting) and
by everything that prints (which shows them escaped): C0 and C1 control characters and DEL (line
breaks, ANSI escape sequences), UTF-16 surrogates (not encodable), U+FFFE/U+FFFF (not allowed in
XML), the line and paragraph separators and the bidirectional formatting characters (they make a
terminal show text in another order than it is stored).
"""

from __future__ import annotations

import re

#: The unsafe characters, as the inside of a regular-expression character class.
UNSAFE_CLASS = "\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff\ufffe\uffff\ud800-\udfff"
UNSAFE = re.compile(f"[{UNSAFE_CLASS}]")


def first_unsafe(text: str) -> str | None:
    """The first character of ``text`` no setting may hold, or None."""
    match = UNSAFE.search(text)
    return match.group() if match else None


def describe(char: str) -> str:
    """``U+001B`` and a name for the common ones."""
    names = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab", "\x1b": "an escape character"}
    code = f"U+{ord(char):04X}"
    return f"{names[char]} ({code})" if char in names else code


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every unsafe character written as ``\\xNN`` / ``\\uNNNN`` (one line, inert on a terminal)."""
    return UNSAFE.sub(_escape, text) if UNSAFE.search(text) else text


def quote(value: object, limit: int = 60) -> str:
    """A value quoted for a message: printable and at most ``limit`` characters (then ``…``)."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "…"
    return f"'{printable(text)}'"
