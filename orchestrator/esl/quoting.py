"""Values inside FreeSWITCH API commands, sans-I/O: encoded with FreeSWITCH's own rules for each position, or refused.

What FreeSWITCH 1.10.12 does with a command line (``src/switch_utils.c``, ``src/switch_event.c``,
``src/switch_ivr_originate.c``, ``mod_commands.c``; checked on a real switch in tests/integration):

* every API splits its arguments with ``switch_separate_string(' ')``: blanks separate outside single
  quotes, a backslash protects the next character, then each argument is *cleaned*: paired single quotes
  are removed, ``\\\\`` ``\\'`` ``\\"`` become the character, ``\\s`` ``\\n`` ``\\r`` ``\\t`` become blank, LF,
  CR, TAB, leading and trailing blanks are dropped (:func:`argument`);
* ``originate`` looks for ``:_:`` in the whole dial string first (an *enterprise* originate: the string is
  split there, nothing escapes it), then takes the ``{…}`` block up to the brace that balances the first one
  (braces are counted, nothing escapes them), splits it on ``,`` — or on ``<c>`` after ``^^<c>`` — and each
  item at its first ``=``. Both splits clean again, so a value is cleaned three times in all
  (:func:`originate_variables`); a value holding ``${`` (also ``$\\{``) is silently dropped by FreeSWITCH's
  variable check, so it is refused here;
* the inline dialplan (``uuid_transfer … 'm:^:app:data^app:data' inline``) splits on ``^`` with one more
  cleaning, then takes the application name up to the first ``:`` (:func:`inline_dialplan`).

Characters that no rule can carry (control characters, ``:_:``, unbalanced braces, ``${``) raise
:class:`Refused`; everything else arrives byte for byte.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping

#: the separator of originate variable blocks (``{^^\x1f…}``): a control character, so no value holds it
VAR_SEPARATOR = "\x1f"
_VAR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,255}")
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+=/-]{0,255}")
_VAR_EXPANSION = re.compile(r"\$\\*\{")  # what switch_string_var_check_const refuses
_ENTERPRISE = ":_:"
_INLINE_APP = re.compile(r"[a-z][a-z0-9_]{0,63}")


class Refused(ValueError):
    """A value FreeSWITCH cannot be given in this position; the message says why (without echoing it)."""


def check_text(value: str, what: str, limit: int = 1024) -> str:
    """``value`` if it has no control characters, surrogates or unassigned code points and at most ``limit`` bytes."""
    if not isinstance(value, str):
        raise Refused(f"{what} must be text")
    if len(value) > limit or len(value.encode("utf-8", "surrogatepass")) > limit:
        raise Refused(f"{what} is longer than {limit} bytes")
    for c in value:
        if c < " " or c == "\x7f" or (c >= "\x80" and unicodedata.category(c) in ("Cc", "Cs", "Cn")):
            raise Refused(f"{what} cannot contain control characters or line breaks")
    return value


def clean_escape(value: str, blanks: bool = True) -> str:
    """The text that one cleaning round turns back into ``value`` (no checks: see :func:`argument`)."""
    out = value.replace("\\", "\\\\").replace("'", "\\'")
    return out.replace(" ", "\\s") if blanks else out


def argument(value: str, what: str = "argument", limit: int = 1024) -> str:
    """One argument of an API command line (``switch_separate_string`` on blanks, cleaned once)."""
    check_text(value, what, limit)
    if not value:
        raise Refused(f"{what} cannot be empty")
    return clean_escape(value, blanks=True)


def token(value: str, what: str) -> str:
    """A plain word that needs no escaping anywhere (uuids, cause names, gateway names), or :class:`Refused`."""
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise Refused(f"{what} is not a plain token")
    return value


def _balanced(value: str) -> bool:
    depth = 0
    for c in value:
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def variable_value(value: str, what: str, limit: int = 1024) -> str:
    """Check a value for an originate variable block (see the module docstring); returns it unchanged."""
    check_text(value, what, limit)
    if _ENTERPRISE in value:
        raise Refused(f"{what} cannot contain ':_:' (FreeSWITCH splits dial strings there)")
    if not _balanced(value):
        raise Refused(f"{what} cannot contain unbalanced braces (FreeSWITCH ends the variable block at a brace)")
    if _VAR_EXPANSION.search(value):
        raise Refused(f"{what} cannot contain '${{' (FreeSWITCH drops values that look like variables)")
    return value


def variable_name(name: str, what: str = "variable name") -> str:
    """A channel variable name (letters, digits, ``_ . -``; ``sip_h_X-Foo`` included)."""
    if not isinstance(name, str) or not _VAR_NAME.fullmatch(name):
        raise Refused(f"{what} '{name[:64] if isinstance(name, str) else name}' is not a valid variable name")
    return name


def originate_variables(variables: Mapping[str, str], limit: int = 1024) -> str:
    """``{^^\\x1fname=value\\x1f…}``: a global variable block for ``originate`` whose values arrive byte for byte."""
    items = []
    for name, value in variables.items():
        variable_name(name)
        variable_value(value, f"value of {name}", limit)
        if not value:
            raise Refused(f"value of {name} cannot be empty")
        inner = clean_escape(value, blanks=True)  # the item's split at '='
        inner = clean_escape(inner, blanks=False)  # the block's split at the separator
        inner = clean_escape(inner, blanks=False)  # the API's split at blanks
        items.append(f"{name}={inner}")
    return "{^^" + VAR_SEPARATOR + VAR_SEPARATOR.join(items) + "}"


def inline_dialplan(apps: Iterable[tuple[str, str]]) -> str:
    """``'m:^:app:data^app:data'`` for ``uuid_transfer <uuid> … inline`` (one API argument)."""
    parts = []
    for app, data in apps:
        if not _INLINE_APP.fullmatch(app):
            raise Refused(f"'{app}' is not an application name")
        check_text(data, f"data of {app}")
        if "^" in data or _VAR_EXPANSION.search(data):
            raise Refused(f"data of {app} cannot contain '^' or '${{'")
        # cleaned by the split at '^', then by the API's split at blanks (inside the quotes)
        parts.append(f"{app}:{clean_escape(clean_escape(data, blanks=True), blanks=False)}" if data else app)
    return "'m:^:" + "^".join(parts) + "'"
