"""FreeSWITCH ``api`` reply bodies read as facts (sans-I/O): ``sofia status``, profile restarts, ``show api``.

Formats are FreeSWITCH 1.10.12's (mod_sofia.c, mod_commands.c), as recorded from a real switch.
"""

from __future__ import annotations

import re

# rows are right-aligned columns separated by TABs: name, type, data, state
_PROFILE_ROW = re.compile(r"^ *(\S+)\t *profile\t *(\S+)\t(\S+)", re.M)
_GATEWAY_ROW = re.compile(r"^ *(\S+)::(\S+)\t *gateway\t *(\S+)\t(\S+)", re.M)
# ``sofia profile <p> restart|stop`` within 10 s of the profile's start is refused (mod_sofia.c):
# "Profile tls must be up for at least 10 seconds to stop/restart.\nPlease wait 7 seconds\n"
_TOO_EARLY = re.compile(r"must be up for at least \d+ seconds to stop/restart\.\s*Please wait (\d+) second")
_INVALID_PROFILE = re.compile(r"^Invalid Profile \[(\S*)\]", re.M)


def sofia_profiles(status: str) -> dict[str, tuple[str, str]]:
    """``sofia status`` → profile name → (URL, state word: ``RUNNING``, ``DOWN``…). A profile that is
    restarting is not listed at all."""
    return {m.group(1): (m.group(2), m.group(3)) for m in _PROFILE_ROW.finditer(status)}


def sofia_gateways(status: str) -> dict[str, str]:
    """``sofia status`` → gateway name → registration state (``NOREG``, ``REGED``, ``FAIL_WAIT``…)."""
    return {m.group(2): m.group(4) for m in _GATEWAY_ROW.finditer(status)}


def restart_too_early(reply: str) -> int | None:
    """Seconds FreeSWITCH asks to wait before a profile it started less than 10 s ago may restart/stop."""
    match = _TOO_EARLY.search(reply)
    return int(match.group(1)) if match else None


def invalid_profile(reply: str) -> bool:
    """The profile named in the command is not loaded (never started, failed to start, or mid-restart)."""
    return _INVALID_PROFILE.search(reply) is not None


def api_row(show_api: str, name: str) -> str | None:
    """The CSV row of ``show api <name>`` (``name,description,syntax,ikey``), None when no module provides it."""
    for line in show_api.splitlines()[1:]:
        if line.split(",", 1)[0] == name:
            return line
    return None
