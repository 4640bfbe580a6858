"""A channel's caller profile (the ``Caller-*`` event headers) kept in FreeSWITCH's header order (pure).

``switch_caller_profile_event_set_data`` (``src/switch_caller.c``) prints the fields in a fixed order
(:data:`~simulator.channel.PROFILE_FIELDS`), whatever order they were set in; the simulator's profiles are plain
dicts, so every change goes through :func:`ordered`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .channel import PROFILE_FIELDS

if TYPE_CHECKING:  # pragma: no cover
    from .channel import SimChannel


def ordered(profile: dict[str, str]) -> dict[str, str]:
    """``profile`` with the known fields in FreeSWITCH's order, then the others as they came."""
    known = [k for k in PROFILE_FIELDS if k in profile]
    return {k: profile[k] for k in known + [k for k in profile if k not in PROFILE_FIELDS]}


def copy_callee(a: SimChannel, b: SimChannel) -> None:
    """The originator's caller profile takes the callee of the leg it dialled (recorded in 14-bridge)."""
    prof = {k: v for k, v in a.profile.items() if k not in ("Callee-ID-Name", "Callee-ID-Number")}
    for k in ("Callee-ID-Name", "Callee-ID-Number"):
        if k in b.profile:
            prof[k] = b.profile[k]
    a.profile = ordered(prof)


def insert_after(profile: dict[str, str], after: str, key: str, value: str) -> dict[str, str]:
    """Set ``key`` (in place when present, else right after ``after``), in FreeSWITCH's order."""
    if key in profile:
        profile[key] = value
        return profile
    out: dict[str, str] = {}
    for k, v in profile.items():
        out[k] = v
        if k == after:
            out[key] = value
    if key not in out:
        out[key] = value
    return ordered(out)
