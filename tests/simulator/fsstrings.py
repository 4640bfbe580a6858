"""How FreeSWITCH 1.10.12 takes command lines and dial strings apart, modelled on its C behaviour.

Written from reading ``src/switch_utils.c`` (``switch_separate_string``, its cleaning of each piece,
``switch_find_end_paren``), ``src/include/switch_utils.h`` (``switch_strchr_strict``,
``switch_string_var_check_const``), ``src/switch_event.c`` (``switch_event_create_brackets``) and
``src/switch_ivr_originate.c`` (the dial string), and checked against a real switch in
tests/integration/test_dial_strings.py. The orchestrator's encoders (``orchestrator/esl/quoting.py``) are
tested against this model, so both must agree with FreeSWITCH.

Model, in FreeSWITCH's words:

* ``separate(buf, delim, arraylen)``: ``^^<c>`` at the start (with 2+ characters after it) makes ``<c>``
  the delimiter; a blank delimiter splits on runs of blanks outside single quotes, any other on each
  occurrence outside single quotes that have a partner; a backslash protects the next character; the
  last piece keeps the rest of the line; every piece is then *cleaned*;
* ``cleanup(piece, delim)``: leading blanks go; ``\\'`` ``\\"`` ``\\\\`` and ``\\<delim>`` become the
  character, ``\\n`` ``\\r`` ``\\t`` ``\\s`` become LF, CR, TAB, blank; a single quote with a partner later
  opens or closes a quoted part and disappears; trailing blanks outside quotes go;
* ``find_end_paren``: brace depth counting, no escaping at all;
* ``switch_true`` (``src/include/switch_utils.h``): the words FreeSWITCH takes for yes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ENTERPRISE_DELIM = ":_:"
_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "s": " "}


def switch_true(value: str | None) -> bool:
    """``switch_true``: ``true``, ``yes``, ``on``, ``1``, ``enabled``, ``active``, ``allow`` (any case, trimmed)."""
    return (value or "").strip().lower() in ("true", "yes", "on", "1", "enabled", "active", "allow")


def cleanup(piece: str, delim: str = "") -> str:
    """``cleanup_separated_string``: strip quotes, resolve escapes, trim blanks."""
    i, n = 0, len(piece)
    while i < n and piece[i] == " ":
        i += 1
    out: list[str] = []
    end: int | None = None
    quoted = False
    while i < n:
        c = piece[i]
        if c == "\\" and i + 1 < n:
            e = piece[i + 1]
            if e in ("'", '"', "\\") or (delim and e == delim):
                out.append(e)  # the character itself
            elif e in _UNESCAPE:
                out.append(_UNESCAPE[e])  # \n \r \t \s
            else:
                e = ""
            if e:
                end = len(out)
                i += 2
                continue
        if c == "'" and (quoted or "'" in piece[i + 1 :]):
            quoted = not quoted
            if quoted:
                end = len(out)
        else:
            out.append(c)
            if c != " " or quoted:
                end = len(out)
        i += 1
    return "".join(out[:end]) if end is not None else ""


def _char_delim(buf: str, delim: str, arraylen: int) -> list[str]:
    starts: list[int] = []
    cuts: list[int] = []
    quoted = False
    i, n = 0, len(buf)
    finding = False
    while i < n and len(starts) < arraylen:  # the last piece keeps the rest of the line
        if not finding:
            starts.append(i)
            finding = True
            continue
        c = buf[i]
        if c == "\\":
            i += 1
        elif c == "'" and (quoted or "'" in buf[i + 1 :]):
            quoted = not quoted
        elif c == delim and not quoted:
            cuts.append(i)
            finding = False
        i += 1
    pieces = []
    for k, start in enumerate(starts):
        stop = cuts[k] if k < len(cuts) else n
        pieces.append(buf[start:stop])
    return [cleanup(p, delim) for p in pieces]


def _blank_delim(buf: str, arraylen: int) -> list[str]:
    starts: list[int] = []
    cuts: list[int] = []
    quoted = False
    i, n = 0, len(buf)
    state = "start"
    while i < n and len(starts) < arraylen:  # the last piece keeps the rest of the line
        if state == "start":
            starts.append(i)
            state = "skip_initial"
        elif state == "skip_initial":
            if buf[i] == " ":
                i += 1
            else:
                state = "find"
        elif state == "find":
            c = buf[i]
            if c == "\\":
                i += 1
            elif c == "'":
                quoted = not quoted
            elif c == " " and not quoted:
                cuts.append(i)
                state = "skip_ending"
            i += 1
        else:  # skip_ending
            if buf[i] == " ":
                i += 1
            else:
                state = "start"
    pieces = []
    for k, start in enumerate(starts):
        stop = cuts[k] if k < len(cuts) else n
        pieces.append(buf[start:stop])
    return [cleanup(p) for p in pieces]


def separate(buf: str, delim: str, arraylen: int = 1024) -> list[str]:
    """``switch_separate_string(buf, delim, array, arraylen)``."""
    buf = buf.split("\0", 1)[0]  # a C string ends at NUL
    if buf.startswith("^^") and len(buf) >= 4:
        delim, buf = buf[2], buf[3:]
    if not buf:
        return []
    return _blank_delim(buf, arraylen) if delim == " " else _char_delim(buf, delim, arraylen)


def find_end_paren(s: str, start: int, opening: str, closing: str) -> int | None:
    """``switch_find_end_paren`` from ``start``: index of the bracket that balances the one there, or None."""
    i, n = start, len(s)
    while i < n and s[i] == " ":
        i += 1
    if i >= n or s[i] != opening:
        return None
    depth = 1
    for j in range(i + 1, n):
        if s[j] == opening and opening != closing:
            depth += 1
        elif s[j] == closing:
            depth -= 1
            if depth == 0:
                return j
    return None


def var_check(value: str) -> bool:
    """``switch_string_var_check_const``: True when ``value`` looks like a variable (``$`` then ``{``,
    backslashes allowed in between). FreeSWITCH refuses to set such a value when it checks variables."""
    dollar = False
    for c in value:
        if c == "$":
            dollar = True
        elif dollar:
            if c == "{":
                return True
            if c != "\\":
                dollar = False
    return False


class ParseError(ValueError):
    """``Parse Error!`` in FreeSWITCH's log: the originate fails."""


def create_brackets(data: str, opening: str, closing: str, delim: str) -> tuple[list[tuple[str, str]], str]:
    """``switch_event_create_brackets`` on ``data`` (which starts with ``opening``): variables and the rest."""
    end = find_end_paren(data, 0, opening, closing)
    if end is None:
        raise ParseError("no closing bracket")
    body, rest = data[data.index(opening) + 1 : end], data[end + 1 :]
    if body.startswith("^^") and len(body) >= 3:
        delim, body = body[2], body[3:]
    variables: list[tuple[str, str]] = []
    for item in separate(body, delim):
        pair = separate(item, "=", 2)
        if len(pair) == 2:
            variables.append((pair[0], pair[1]))
    return variables, rest


@dataclass
class Leg:
    """One endpoint of a dial string, with its ``[...]`` variables."""

    endpoint: str
    variables: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class DialString:
    """What ``switch_ivr_originate`` makes of a dial string."""

    variables: list[tuple[str, str]]  # from <...> and {...}
    groups: list[list[Leg]]  # failover groups (|), each dialled at once (,)
    enterprise: bool = False


def parse_dial_string(data: str) -> DialString:
    """A dial string as ``switch_ivr_originate`` splits it (raises :class:`ParseError` where it logs one)."""
    if ENTERPRISE_DELIM in data:
        # switch_ivr_enterprise_originate: every part is an originate of its own
        parts = data.split(ENTERPRISE_DELIM)
        groups: list[list[Leg]] = []
        variables: list[tuple[str, str]] = []
        for part in parts:
            sub = parse_dial_string(part)
            variables += sub.variables
            groups += sub.groups
        return DialString(variables, groups, enterprise=True)
    s = data.lstrip(" ")
    variables = []
    while s.startswith("<"):
        found, s = create_brackets(s, "<", ">", ",")
        variables += found
    while s.startswith("{"):
        found, s = create_brackets(s, "{", "}", ",")
        variables += found
    s = s.lstrip(" ")
    if not s:
        raise ParseError("No origination URL specified!")
    groups = []
    for group in separate(s, "|"):
        groups.append([_leg(piece) for piece in _split_legs(group)])
    return DialString(variables, groups)


QUOTED_COMMA, UNQUOTED_COMMA = "\x01", "\x02"


def _split_legs(group: str) -> list[str]:
    """The ``,`` split of a failover group. Commas inside ``[...]`` are first marked (quoted ones, or all in a
    ``[^^…]``, as QUOTED_ESC_COMMA, the others UNQUOTED_ESC_COMMA) so that they do not split legs."""
    chars = list(group)
    end: int | None = None
    quoted = alt = False
    for i, c in enumerate(chars):
        if end is None and c == "[":
            end = find_end_paren(group, i, "[", "]")
            alt = group[i + 1 : i + 3] == "^^"
            quoted = False
        if c == "'":
            quoted = not quoted
        if end is not None and i < end and c == "," and (i == 0 or group[i - 1] != "\\"):
            chars[i] = QUOTED_COMMA if quoted or alt else UNQUOTED_COMMA
        if end is not None and i == end:
            end = None
    return separate("".join(chars), ",")


def _leg(piece: str) -> Leg:
    """A leg: its ``[...]`` blocks (split on unquoted commas) and the endpoint."""
    s = piece.lstrip(" ")
    variables: list[tuple[str, str]] = []
    while s.startswith("["):
        close = find_end_paren(s, 0, "[", "]")
        if close is None:
            raise ParseError("no closing bracket")
        s = s[:close].replace(QUOTED_COMMA, ",") + s[close:]
        found, rest = create_brackets(s, "[", "]", UNQUOTED_COMMA)
        if rest == s:
            raise ParseError("empty leg")
        variables += found
        s = rest
    return Leg(s, variables)
