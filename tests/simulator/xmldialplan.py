"""mod_dialplan_xml's hunt in the simulator: which extension of a context runs, and the applications it queues.

Models FreeSWITCH 1.10.12 ``src/mod/dialplans/mod_dialplan_xml/mod_dialplan_xml.c`` (``dialplan_hunt``,
``parse_exten``) for what the rendered dialplan uses, pure (no channel, no I/O):

* the context by name (``global`` when there is none of that name; nothing when neither exists);
* extensions in document order; the first whose conditions pass ends the hunt unless it has ``continue="true"``;
* each ``<condition>``: without ``field`` an absolute condition (passes); else ``field`` is a caller-profile field
  (``destination_number``, ``caller_id_number`` …) or, when it holds ``$``, channel variables expanded
  (``${name}``); ``expression`` (variables expanded too) is a PCRE matched with :func:`re.search` (the patterns we
  render are plain: anchors, classes, counts, one group); a pass queues its ``<action>``s, with ``$N``
  substituted from the match when the expression holds ``(`` (``switch_perform_substitution``); a fail queues
  its ``<anti-action>``s and — when it has any — still counts as proceeding (so the hunt stops there);
  ``break`` (``on-false`` default, ``on-true``, ``always``, ``never``) decides whether the next condition of the
  extension is looked at;
* time-of-day attributes (``wday``, ``time-of-day`` …), ``regex="all|any|xor"``, nested conditions, ``inline``
  actions, ``/…/i`` and ``_`` (Asterisk) expressions are not modelled: a dialplan using them raises
  :class:`Unmodelled`, rather than being hunted differently from the real switch.

:func:`run` then executes the queued applications the way the channel's CS_EXECUTE does for the few we render
(``set``/``unset`` with ``${var}`` expansion of their data, ``limit`` passed through, ``transfer <exten> XML
<context>`` hunting again, and the final ``park`` or ``hangup``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

#: condition attributes of switch_xml_std_datetime_check (switch_xml.c): not modelled here
_TIME_ATTRIBUTES = frozenset(
    {"year", "yday", "mon", "mday", "week", "mweek", "wday", "hour", "minute", "minute-of-day", "time-of-day",
     "date-time", "tz-offset", "dst"}
)  # fmt: skip
#: caller-profile fields (switch_caller.c switch_caller_get_field_by_name) a test may give
PROFILE_FIELDS = frozenset(
    {"destination_number", "caller_id_number", "caller_id_name", "ani", "aniii", "network_addr", "rdnis",
     "context", "dialplan", "source", "chan_name", "uuid"}
)  # fmt: skip
_VAR = re.compile(r"\$\{([^}]*)\}")
MAX_TRANSFERS = 10


class Unmodelled(NotImplementedError):
    """The dialplan uses a feature of mod_dialplan_xml this model does not have."""


def expand(text: str, variables: Mapping[str, str]) -> str:
    """``${name}`` replaced by the channel variable (empty when unset), as switch_channel_expand_variables does for
    plain names."""
    return _VAR.sub(lambda m: variables.get(m.group(1), ""), text)


def _substitute(data: str, match: re.Match[str]) -> str:
    """``$N`` / ``${N}`` replaced by group N of the match (switch_perform_substitution); other ``$`` kept."""

    def group(m: re.Match[str]) -> str:
        n = int(m.group(1) or m.group(2))
        if n > (match.re.groups or 0):
            return ""
        return match.group(n) or ""

    return re.sub(r"\$(?:\{([0-9]+)\}|([0-9]+))", group, data)


def hunt(
    document: ET.Element, context: str, profile: Mapping[str, str], variables: Mapping[str, str]
) -> tuple[str, list[tuple[str, str]]]:
    """The extension that ends the hunt (its name, "" for none) and the applications queued, in order.

    ``document`` is the assembled configuration (``tests/fsxml.assemble``) or a ``<section name="dialplan">``."""
    section = document if document.get("name") == "dialplan" else document.find("section[@name='dialplan']")
    if section is None:
        return "", []
    xcontext = section.find(f"context[@name='{context}']")
    if xcontext is None:
        xcontext = section.find("context[@name='global']")
    if xcontext is None:
        return "", []
    queued: list[tuple[str, str]] = []
    last = ""
    for xexten in xcontext.findall("extension"):
        proceed = _parse_exten(xexten, profile, variables, queued)
        if proceed:
            last = xexten.get("name", "UNKNOWN")
            if xexten.get("continue", "").lower() not in ("true", "yes", "on", "1", "enabled", "active", "allow"):
                break
    return last, queued


def _parse_exten(
    xexten: ET.Element, profile: Mapping[str, str], variables: Mapping[str, str], queued: list[tuple[str, str]]
) -> bool:
    proceed = False
    for xcond in xexten.findall("condition"):
        if set(xcond.attrib) & _TIME_ATTRIBUTES or "regex" in xcond.attrib or xcond.find("condition") is not None:
            raise Unmodelled(f"condition {xcond.attrib}: time, regex lists and nested conditions are not modelled")
        brk = (xcond.get("break") or "on-false").lower()
        fld = xcond.get("field")
        anti = True
        match: re.Match[str] | None = None
        expression = ""
        if fld is None:
            anti, proceed = False, True  # absolute condition
        else:
            expression = expand(xcond.get("expression", ""), variables)
            if expression.startswith(("/", "_")):
                raise Unmodelled(f"expression {expression!r}: delimited and Asterisk patterns are not modelled")
            if "$" in fld:
                data = expand(fld, variables)
            else:
                if fld not in PROFILE_FIELDS:
                    raise Unmodelled(f"field {fld!r}")
                data = profile.get(fld, "")
            match = re.search(expression, data)
            proceed = match is not None
            anti = not proceed
        if anti:
            actions = xcond.findall("anti-action")
            for xaction in actions:
                queued.append((xaction.get("application", ""), xaction.get("data", "")))
            if actions:
                proceed = True
        else:
            for xaction in xcond.findall("action"):
                if xaction.get("inline"):
                    raise Unmodelled("inline actions")
                data = xaction.get("data", "")
                if match is not None and "(" in expression:
                    data = _substitute(data, match)
                queued.append((xaction.get("application", ""), data))
        if (not anti and brk == "on-true") or (anti and brk == "on-false") or brk == "always":
            break
    return proceed


@dataclass
class Outcome:
    """Where the hunt and the applications leave a call: ``parked`` with its variables, or hung up with a cause."""

    context: str
    extension: str
    variables: dict[str, str] = field(default_factory=dict)
    #: every ``set`` in order (name, value): what the channel would execute
    sets: list[tuple[str, str]] = field(default_factory=list)
    parked: bool = False
    hangup: str = ""
    #: what the channel executed, data expanded, without the ``transfer``s and the final ``park``: what
    #: ``SimulatedFreeSwitch.inbound_call(apps=...)`` replays on a channel
    applications: list[tuple[str, str]] = field(default_factory=list)


def run(
    document: ET.Element, context: str, profile: Mapping[str, str], variables: Mapping[str, str] | None = None
) -> Outcome:
    """Hunt ``context`` and execute what it queued until the call parks or hangs up (``transfer`` hunts again)."""
    channel = dict(variables or {})
    profile = dict(profile)
    outcome = Outcome(context, "", channel)
    for _ in range(MAX_TRANSFERS):
        outcome.context = context
        outcome.extension, queued = hunt(document, context, profile, channel)
        transferred = False
        for app, data in queued:
            data = expand(data, channel)
            if app not in ("transfer", "park"):
                outcome.applications.append((app, data))
            if app == "set":
                name, _, value = data.partition("=")
                channel[name] = value
                outcome.sets.append((name, value))
            elif app == "unset":
                channel.pop(data, None)
            elif app == "limit":
                pass  # counted by the simulator's channel (inbound_call); here it always lets the call through
            elif app == "park":
                outcome.parked = True
                return outcome
            elif app == "hangup":
                outcome.hangup = data or "NORMAL_CLEARING"
                return outcome
            elif app == "transfer":
                parts = data.split()
                profile["destination_number"] = parts[0]
                context = parts[2] if len(parts) > 2 else context
                transferred = True
                break
            else:
                raise Unmodelled(f"application {app!r}")
        if not transferred:
            return outcome  # nothing parked or hung up: FreeSWITCH hangs up (NO_ROUTE_DESTINATION when none ran)
    raise Unmodelled("transfer loop")
