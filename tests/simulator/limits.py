"""FreeSWITCH's ``limit`` application with mod_hash's ``hash`` backend, pure (time passed in).

Models ``src/mod/applications/mod_dptools/mod_dptools.c`` (``limit_function``: ``<backend> <realm> <id>
[<max>[/interval]] [number [dialplan [context]]]``, split at blanks; a negative or missing max only counts; an
``!CAUSE`` in place of the transfer extension hangs the call up with CAUSE, else the call is transferred, by default
to ``limit_exceeded``) and ``src/mod/applications/mod_hash/mod_hash.c`` v1.10.12 (``limit_incr_hash``,
``limit_release_hash``):

* the key is ``<realm>_<id>``; a channel counts once per key (a second ``limit`` of the same key does not add);
* without an interval: refused when ``total + (1 if new for the channel) > max``; the count is released when the
  channel hangs up (the limit state handler calls ``limit_release_hash`` for every key of the channel);
* with an interval (a rate): a fixed window -- when ``last_check <= now - interval`` the rate restarts at 1 and the
  window at ``now``; otherwise the rate goes up on *every* check (refused calls count too) and is refused when it
  exceeds max. An admitted call also adds to the key's total (released at hangup), as in mod_hash;
* ``limit_usage`` / ``limit_rate`` (and ``limit_usage_<key>`` / ``limit_rate_<key>``) are set on an admitted call.

Not modelled: the ``db``, ``hiredis`` and ``redis`` backends, mod_hash's remotes (usage pulled from other
switches), ``limit_execute``, ``limit_ignore_transfer``, the ``limit::usage`` event.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: mod_dptools' LIMIT_DEF_XFER_EXTEN
DEFAULT_TRANSFER = "limit_exceeded"


@dataclass(frozen=True)
class LimitArgs:
    """One ``limit`` application's arguments as limit_function reads them."""

    backend: str
    realm: str
    resource: str
    max: int  # -1: count only
    interval: int
    transfer: str  # "!CAUSE" hangs up; else an extension (with dialplan and context)
    dialplan: str = ""
    context: str = ""


def parse_limit(data: str) -> LimitArgs | None:
    """``limit``'s data, or None for what limit_function refuses with its USAGE line (fewer than 3 arguments)."""
    argv = [a for a in data.split(" ") if a][:7]  # switch_separate_string(' ') over at most 7 arguments
    if len(argv) < 3:
        return None
    maximum, interval = -1, 0
    if len(argv) > 3:
        if argv[3].startswith("-"):
            maximum = -1
        else:
            text, _, per = argv[3].partition("/")
            interval = _atoi(per) if per else 0
            maximum = max(_atoi(text), 0)
    transfer = argv[4] if len(argv) > 4 else DEFAULT_TRANSFER
    return LimitArgs(argv[0], argv[1], argv[2], maximum, interval, transfer, *([*argv[5:7], "", ""])[:2])


def _atoi(text: str) -> int:
    """C's atoi: leading digits (with a sign), 0 when there are none."""
    digits = ""
    for i, c in enumerate(text):
        if c.isdigit() or (i == 0 and c in "+-"):
            digits += c
        else:
            break
    try:
        return int(digits)
    except ValueError:
        return 0


@dataclass
class _Item:
    total: int = 0
    rate: int = 0
    last_check: int = 0
    interval: int = 0


@dataclass
class HashLimits:
    """mod_hash's ``limit_hash``: every key's usage, and which keys each channel holds."""

    items: dict[str, _Item] = field(default_factory=dict)
    held: dict[str, set[str]] = field(default_factory=dict)

    def incr(self, channel: str, args: LimitArgs, now: int) -> tuple[bool, dict[str, str]]:
        """``limit_incr_hash`` at epoch second ``now``: (admitted, the variables it set on the channel)."""
        key = f"{args.realm}_{args.resource}"
        item = self.items.setdefault(key, _Item())
        mine = self.held.setdefault(channel, set())
        increment = key not in mine
        if args.interval > 0:
            item.interval = args.interval
            if item.last_check <= now - args.interval:
                item.rate, item.last_check = 1, now
            else:
                item.rate += 1
                if args.max >= 0 and item.rate > args.max:
                    return False, {}
        elif args.max >= 0 and item.total + increment > args.max:
            return False, {}
        if increment:
            item.total += 1
            mine.add(key)
        usage, rate = str(item.total), str(item.rate)
        return True, {"limit_usage": usage, f"limit_usage_{key}": usage, "limit_rate": rate, f"limit_rate_{key}": rate}

    def release(self, channel: str) -> None:
        """``limit_release_hash`` for every key of a channel that hangs up."""
        for key in self.held.pop(channel, set()):
            item = self.items.get(key)
            if item is None:
                continue
            item.total -= 1
            if item.total == 0 and item.rate == 0:
                del self.items[key]

    def usage(self, realm: str, resource: str) -> int:
        """The concurrent count of a key (``limit_usage hash <realm> <id>``)."""
        item = self.items.get(f"{realm}_{resource}")
        return item.total if item is not None else 0
