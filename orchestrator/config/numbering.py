"""The grammar of ``numbers[].number`` (an E.164 number or a block of them) and of routing rules' conditions.

Pure values, no I/O; :mod:`orchestrator.config.routing` decides with them, the model validates with them.

**Number blocks.** ``+1555765xxxx`` is every number of that length starting ``+1555765``: each ``x`` is any
digit, and ``[0-4]`` / ``[135]`` one digit of a set, so ``+15557650[0-4]xx`` is 500 numbers. A block is a fixed
length (2 to 15 digits, as E.164); its first digit (the country code's) is a fixed 1-9. Nothing else is
accepted: no regular expressions (they would reach FreeSWITCH's PCRE unbounded), no variable length, no
wildcards in the middle of the syntax. Each position is a set of digits, which makes the questions routing
asks exact: does a block hold a number, does it hold another block, do two blocks share a number, how many
numbers does it hold (its specificity: fewer is more specific; an exact number holds one).

**Regex for FreeSWITCH.** :meth:`NumberPattern.regex` is built from the digit sets only (``1555765[0-9]{4}``),
fixed length, no alternation and no nested quantifier: it cannot backtrack catastrophically, and it holds no
character that the dialplan's variable expansion (``${``, ``$N``) or XML could misread.

**Time windows.** Days ``mon``…``sun`` (or ranges ``mon-fri``, ``fri-mon`` wraps), ``start``/``end`` as
``HH:MM`` in an IANA time zone; ``end`` before ``start`` runs past midnight (the day named is the day it starts).
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache, cached_property, lru_cache

from orchestrator.config.text import quote

#: every digit, as a bit mask (bit d set: digit d allowed)
ALL_DIGITS = (1 << 10) - 1
MAX_DIGITS = 15
MIN_DIGITS = 2
#: the longest text a number or block may be written with (15 positions of ``[0-9]``)
MAX_TEXT = 1 + MAX_DIGITS * 5

_CLASS = re.compile(r"\[([0-9](?:-[0-9])?)+\]")
_CLASS_ITEM = re.compile(r"([0-9])(?:-([0-9]))?")
_REGEX_HINTS = set("^$\\.*?(){}|")

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])|24:00")
_ZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,30}(?:/[A-Za-z0-9][A-Za-z0-9_+-]{0,30}){0,3}")


def _mask_text(mask: int) -> str:
    """A digit set as written in a block: ``5``, ``x`` (every digit), ``[0-4]``, ``[135]``, ``[0-2589]``."""
    digits = [d for d in range(10) if mask >> d & 1]
    if len(digits) == 1:
        return str(digits[0])
    if mask == ALL_DIGITS:
        return "x"
    parts: list[str] = []
    i = 0
    while i < len(digits):
        j = i
        while j + 1 < len(digits) and digits[j + 1] == digits[j] + 1:
            j += 1
        parts.append(f"{digits[i]}-{digits[j]}" if j - i >= 2 else "".join(map(str, digits[i : j + 1])))
        i = j + 1
    return "[" + "".join(parts) + "]"


def _mask_regex(mask: int) -> str:
    """A digit set in PCRE: a digit, ``[0-9]`` or a class of digits (no other character)."""
    text = _mask_text(mask)
    return "[0-9]" if text == "x" else text


@dataclass(frozen=True)
class NumberPattern:
    """An E.164 number (every position one digit) or a block of numbers (some positions a set of digits)."""

    #: the digit set of each position after ``+`` (a 10-bit mask each)
    positions: tuple[int, ...]

    @classmethod
    def parse(cls, value: str) -> NumberPattern:
        """The pattern written as ``value``; ValueError in plain words otherwise."""
        if not isinstance(value, str) or not value:
            raise ValueError("a number is text: '+' and digits, e.g. +15557650042, or a block such as +1555765xxxx")
        shown = quote(value)
        if len(value) > MAX_TEXT:
            raise ValueError(f"{shown} is too long for a number or a block of numbers")
        if not value.startswith("+"):
            if re.fullmatch(r"00[0-9xX]{1,15}", value):
                raise ValueError(f"{shown}: replace the international prefix 00 with '+', e.g. '+{value[2:]}'")
            if re.fullmatch(r"[1-9][0-9xX]{1,14}", value):
                raise ValueError(f"{shown} is not E.164: it needs a leading '+' and the country code, e.g. '+{value}'")
            if set(value) & _REGEX_HINTS:
                raise ValueError(_no_regex(shown))
            raise ValueError(f"{shown} is not E.164: expected '+', the country code and the subscriber number")
        if set(value) & (_REGEX_HINTS - set(".()")):
            raise ValueError(_no_regex(shown))
        positions: list[int] = []
        i = 1
        while i < len(value):
            ch = value[i]
            if ch.isascii() and ch.isdigit():
                positions.append(1 << int(ch))
                i += 1
            elif ch in "xX":
                positions.append(ALL_DIGITS)
                i += 1
            elif ch == "[":
                m = _CLASS.match(value, i)
                if m is None:
                    raise ValueError(
                        f"{shown}: a digit set is written [0-4] or [135] (digits and ranges of digits, then ']')"
                    )
                mask = 0
                for item in _CLASS_ITEM.finditer(m.group(0)[1:-1]):
                    low, high = int(item.group(1)), int(item.group(2) or item.group(1))
                    if high < low:
                        raise ValueError(f"{shown}: the range {low}-{high} in a digit set runs backwards")
                    for d in range(low, high + 1):
                        mask |= 1 << d
                positions.append(mask)
                i = m.end()
            elif ch in " ()-.\t":
                compact = re.sub(r"[\s().-]", "", value)
                raise ValueError(f"{shown} is not E.164: write it without spaces or punctuation, as '{compact}'")
            elif ch in _REGEX_HINTS or ch == "]":
                raise ValueError(_no_regex(shown))
            else:
                raise ValueError(
                    f"{shown}: a number holds digits, 'x' for any digit and [0-4]-style digit sets only "
                    f"(found {quote(ch)})"
                )
        if len(positions) > MAX_DIGITS:
            raise ValueError(f"{shown} is not E.164: at most {MAX_DIGITS} digits after '+'")
        if len(positions) < MIN_DIGITS:
            raise ValueError(f"{shown} is not E.164: the country code and at least one more digit")
        if positions[0] & (positions[0] - 1):
            raise ValueError(f"{shown}: the first digit (the country code's) must be a digit, not a set or 'x'")
        if positions[0] & 1:
            raise ValueError(f"{shown} is not E.164: country codes never start with 0")
        return cls(tuple(positions))

    @cached_property
    def text(self) -> str:
        """The canonical way to write it: ``+1555765xxxx``, ``+15557650[0-4]xx``."""
        return "+" + "".join(_mask_text(m) for m in self.positions)

    @cached_property
    def exact(self) -> bool:
        """True for a single number (no set)."""
        return all(m & (m - 1) == 0 for m in self.positions)

    @cached_property
    def size(self) -> int:
        """How many numbers it holds (1 for an exact number): fewer is more specific."""
        n = 1
        for m in self.positions:
            n *= m.bit_count()
        return n

    @property
    def length(self) -> int:
        """Digits after '+'."""
        return len(self.positions)

    def matches(self, digits: str) -> bool:
        """True if the E.164 number with these ``digits`` (no '+') is in the block."""
        if len(digits) != len(self.positions) or not (digits.isascii() and digits.isdigit()):
            return False
        return all(m >> (ord(c) - 48) & 1 for m, c in zip(self.positions, digits, strict=True))

    def overlaps(self, other: NumberPattern) -> bool:
        """True if some number is in both."""
        return self.length == other.length and all(a & b for a, b in zip(self.positions, other.positions, strict=True))

    def contains(self, other: NumberPattern) -> bool:
        """True if every number of ``other`` is in this one (a pattern contains itself)."""
        return self.length == other.length and all(
            b & ~a == 0 for a, b in zip(self.positions, other.positions, strict=True)
        )

    def common(self, other: NumberPattern) -> NumberPattern:
        """The numbers in both (call only when they overlap)."""
        return NumberPattern(tuple(a & b for a, b in zip(self.positions, other.positions, strict=True)))

    def regex(self) -> str:
        """The FreeSWITCH condition on ``destination_number``: an optional '+', the digits captured as ``$1``.

        Runs of the same set are written once with a count (``[0-9]{4}``)."""
        out: list[str] = []
        i = 0
        while i < len(self.positions):
            j = i
            while j + 1 < len(self.positions) and self.positions[j + 1] == self.positions[i]:
                j += 1
            part = _mask_regex(self.positions[i])
            run = j - i + 1
            if self.positions[i] & (self.positions[i] - 1) == 0:
                out.append(part * run)  # digits: written out
            else:
                out.append(part if run == 1 else f"{part}{{{run}}}")
            i = j + 1
        return "^\\+?(" + "".join(out) + ")$"


def _no_regex(shown: str) -> str:
    return (
        f"{shown}: regular expressions are not accepted; write a block of numbers with 'x' for any digit "
        "(+1555765xxxx) or a digit set ([0-4])"
    )


_EXACT = re.compile(r"\+[1-9][0-9]{1,14}")


def number_text(value: str) -> str:
    """Validator for ``numbers[].number``: the canonical text of the number or block."""
    if isinstance(value, str) and _EXACT.fullmatch(value):
        return value  # an E.164 number is its own canonical text (the common case: fast)
    return NumberPattern.parse(value).text


@lru_cache(maxsize=1 << 18)
def pattern(text: str) -> NumberPattern:
    """The digit sets of a validated number or block (cached: routing asks for them often)."""
    if _EXACT.fullmatch(text):
        return NumberPattern(tuple(1 << (ord(c) - 48) for c in text[1:]))
    return NumberPattern.parse(text)


def caller_prefix(value: str) -> str:
    """Validator for a rule's ``caller_prefix``: '+' and 1 to 15 digits, the first not 0."""
    if isinstance(value, str) and re.fullmatch(r"\+[1-9][0-9]{0,14}", value):
        return value
    shown = quote(value)
    if isinstance(value, str) and re.fullmatch(r"[1-9][0-9]{0,14}", value):
        raise ValueError(f"{shown}: a caller prefix is E.164: write it with a leading '+', e.g. '+{value}'")
    if isinstance(value, str) and re.fullmatch(r"00[1-9][0-9]{0,13}", value):
        raise ValueError(f"{shown}: replace the international prefix 00 with '+', e.g. '+{value[2:]}'")
    raise ValueError(f"{shown} is not a caller prefix: '+' and 1 to 15 digits, e.g. '+44' or '+1212'")


def caller_digits(caller: str) -> str | None:
    """The digits of a caller ID as E.164 (a leading '+' dropped), or None when it is no number (anonymous,
    a name, a national number with punctuation)."""
    text = caller[1:] if caller.startswith("+") else caller
    if 1 <= len(text) <= MAX_DIGITS and text.isascii() and text.isdigit():
        return text
    return None


def minutes(value: str) -> int:
    """``HH:MM`` (``24:00`` allowed) as minutes since midnight; ValueError otherwise."""
    if not isinstance(value, str) or not _HHMM.fullmatch(value):
        raise ValueError(f"{quote(value)} is not a time of day: write HH:MM on a 24-hour clock, e.g. 09:00 or 17:30")
    hours, _, mins = value.partition(":")
    return int(hours) * 60 + int(mins)


def days(value: str) -> tuple[int, ...]:
    """A day (``mon``) or a range of days (``mon-fri``; ``fri-mon`` wraps) as day numbers, Monday = 0."""
    if not isinstance(value, str):
        raise ValueError("a day is text: mon, tue, wed, thu, fri, sat, sun, or a range such as mon-fri")
    text = value.strip().lower()
    first, dash, last = text.partition("-")
    names = [first, last] if dash else [first]
    for name in names:
        if name not in DAYS:
            raise ValueError(f"{quote(value)} is not a day: use mon, tue, wed, thu, fri, sat, sun or a range (mon-fri)")
    start = DAYS.index(first)
    if not dash:
        return (start,)
    end = DAYS.index(last)
    return tuple((start + i) % 7 for i in range((end - start) % 7 + 1))


@cache
def zone(name: str) -> zoneinfo.ZoneInfo:
    """An IANA time zone by name (``Europe/Berlin``, ``UTC``); ValueError naming it otherwise."""
    if not isinstance(name, str) or not _ZONE.fullmatch(name) or ".." in name:
        raise ValueError(f"{quote(name)} is not a time zone name: use an IANA name such as Europe/Berlin or UTC")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"unknown time zone {quote(name)}: use an IANA name such as Europe/Berlin, America/New_York or UTC"
        ) from None


@dataclass(frozen=True)
class Window:
    """A weekly time window in a time zone: ``days`` (Monday = 0) from ``start`` to ``end`` minutes."""

    zone: str
    days: frozenset[int]
    start: int
    end: int

    @property
    def overnight(self) -> bool:
        """True when the window runs past midnight into the next day."""
        return self.end < self.start

    def local(self, at: datetime) -> datetime:
        """``at`` (an aware datetime) as wall-clock time in the window's zone."""
        return at.astimezone(zone(self.zone))

    def contains(self, at: datetime) -> bool:
        """True if the instant ``at`` (aware) falls in the window."""
        local = self.local(at)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        if not self.overnight:
            return day in self.days and self.start <= minute < self.end
        if day in self.days and minute >= self.start:
            return True
        return (local - timedelta(days=1)).weekday() in self.days and minute < self.end

    def describe(self) -> str:
        """``mon-fri 09:00-17:00 Europe/Berlin``."""
        return f"{describe_days(self.days)} {_hhmm(self.start)}-{_hhmm(self.end)} {self.zone}"


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def describe_days(selected: frozenset[int]) -> str:
    """Days as the shortest list of runs: ``mon-fri``, ``sat,sun``, ``every day``."""
    if len(selected) == 7:
        return "every day"
    runs: list[str] = []
    day = 0
    while day < 7:
        if day not in selected:
            day += 1
            continue
        end = day
        while end + 1 < 7 and end + 1 in selected:
            end += 1
        if end == day:
            runs.append(DAYS[day])
        elif end - day >= 2:
            runs.append(f"{DAYS[day]}-{DAYS[end]}")
        else:
            runs.append(f"{DAYS[day]},{DAYS[end]}")
        day = end + 1
    return ",".join(runs)
