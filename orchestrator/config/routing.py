"""Which rule answers a call: deployment + trunk + called number + caller + time → the rule (sans-I/O).

The one place routing is decided. The render plan orders each trunk's dialplan routes with
:meth:`Table.ordered` (FreeSWITCH hunts extensions in order, so the first route whose regex matches is the
entry :meth:`Table.entry` picks); the call tracker decides the agent with :meth:`Table.decide` when it claims a
parked call (caller ID prefix and time of day are decided there, at call time, with the orchestrator's clock:
docs/configuration.md#number-ranges-and-routing-rules says why); ``sipagent route`` prints the same decision
with its reasons; the media bridge finds the rule's agent overrides with :meth:`Table.overrides`.

Precedence: on the trunk the call arrived on, the entry whose number or block holds the called number and holds
the fewest numbers (an exact number holds one), ties by order in the file (validation refuses the ties that
matter: two blocks on a trunk that overlap without one holding the other). Within that entry, its ``rules`` in
order: the first whose conditions all hold (caller ID prefix, time window) names the agent; none: the entry's
``agent``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from orchestrator.config.model import AgentOverrides, Deployment, Number, RoutingRule
from orchestrator.config.numbering import DAYS, NumberPattern, caller_digits
from orchestrator.config.text import printable

#: most blocks (numbers with x or digit sets) a deployment may hold: overlaps are checked pairwise per trunk
MAX_BLOCKS = 1000


@dataclass(frozen=True)
class Entry:
    """A ``numbers[]`` entry with its position in the file and its digit sets."""

    index: int
    number: Number
    pattern: NumberPattern

    @property
    def trunk(self) -> str:
        """The trunk the entry's calls arrive on."""
        return self.number.trunk

    @property
    def key(self) -> tuple[int, int]:
        """Precedence: fewer numbers first, then order in the file."""
        return (self.pattern.size, self.index)

    def describe(self) -> str:
        """``numbers[3] +1555765xxxx (a block of 10,000 numbers)``."""
        kind = "an exact number" if self.pattern.exact else f"a block of {self.pattern.size:,} numbers"
        return f"numbers[{self.index}] {self.number.number} ({kind})"


@dataclass(frozen=True)
class Decision:
    """What answers one call, and why (``why``: plain sentences, most important first)."""

    trunk: str
    called: str
    entry: Entry
    #: index into the entry's ``rules``; None: no rule matched and the entry's own agent answers
    rule: int | None
    agent: str
    why: tuple[str, ...]

    @property
    def overrides(self) -> AgentOverrides | None:
        """The agent settings of what answered (the rule's, or the entry's)."""
        if self.rule is None:
            return self.entry.number.agent_overrides
        return self.entry.number.rules[self.rule].agent_overrides

    @property
    def path(self) -> str:
        """Where in the deployment file the answer is: ``numbers[3]`` or ``numbers[3].rules[1]``."""
        base = f"numbers[{self.entry.index}]"
        return base if self.rule is None else f"{base}.rules[{self.rule}]"


def called_digits(called: str) -> str | None:
    """The digits of a called number (``+15557650042`` or ``15557650042``: the dialplan takes both), or None."""
    text = called[1:] if called.startswith("+") else called
    if 2 <= len(text) <= 15 and text.isascii() and text.isdigit():
        return text
    return None


class Table:
    """Every number and block of a deployment, indexed for routing."""

    def __init__(self, numbers: Iterable[Number] | Mapping[int, Number]) -> None:
        items = numbers.items() if isinstance(numbers, Mapping) else enumerate(numbers)
        self.entries: list[Entry] = [Entry(i, n, n.pattern) for i, n in items]
        self._exact: dict[tuple[str, str], Entry] = {}
        self._blocks: dict[tuple[str, int], list[Entry]] = {}
        self._by_trunk: dict[str, list[Entry]] = {}
        for entry in self.entries:
            self._by_trunk.setdefault(entry.trunk, []).append(entry)
            if entry.pattern.exact:
                self._exact.setdefault((entry.trunk, entry.number.number[1:]), entry)
            else:
                self._blocks.setdefault((entry.trunk, entry.pattern.length), []).append(entry)
        for blocks in self._blocks.values():
            blocks.sort(key=lambda e: e.key)

    def ordered(self, trunk: str) -> list[Entry]:
        """A trunk's entries in precedence order: what the dialplan hunts through, first match wins."""
        return sorted(self._by_trunk.get(trunk, ()), key=lambda e: e.key)

    def candidates(self, trunk: str, called: str) -> list[Entry]:
        """Every entry of ``trunk`` holding ``called``, the one that answers first."""
        digits = called_digits(called)
        if digits is None:
            return []
        found: list[Entry] = []
        exact = self._exact.get((trunk, digits))
        if exact is not None:
            found.append(exact)
        found += [e for e in self._blocks.get((trunk, len(digits)), ()) if e.pattern.matches(digits)]
        return found

    def entry(self, trunk: str, called: str) -> Entry | None:
        """The entry that answers ``called`` on ``trunk`` (None: the number is unknown there: 404)."""
        found = self.candidates(trunk, called)
        return found[0] if found else None

    def trunks(self, called: str) -> list[str]:
        """The trunks on which ``called`` is answered, in the order the file names their entries."""
        seen: list[str] = []
        for entry in self.entries:
            if entry.trunk not in seen and self.entry(entry.trunk, called) is not None:
                seen.append(entry.trunk)
        return seen

    def decide(self, trunk: str, called: str, caller: str, at: datetime) -> Decision | None:
        """Who answers a call to ``called`` from ``caller`` on ``trunk`` at the instant ``at`` (aware)."""
        found = self.candidates(trunk, called)
        if not found:
            return None
        entry = found[0]
        shown = "+" + (called_digits(called) or "")
        why = [f"{entry.describe()} on trunk {trunk} holds {shown}"]
        if len(found) > 1:
            others = "; ".join(e.describe() for e in found[1:])
            why.append(f"it is more specific than the other entries that hold it: {others}")
        for i, rule in enumerate(entry.number.rules):
            matched, reasons = _check(rule, caller, at)
            why.append(f"rules[{i}] ({_conditions(rule)}): {reasons}")
            if matched:
                why.append(f"rules[{i}] answers: agent {rule.agent}")
                return Decision(trunk, shown, entry, i, rule.agent, tuple(why))
        if entry.number.rules:
            why.append(f"no rule matched: the number's agent {entry.number.agent} answers")
        else:
            why.append(f"agent {entry.number.agent} answers (the entry has no rules)")
        return Decision(trunk, shown, entry, None, entry.number.agent, tuple(why))

    def overrides(self, trunk: str, called: str, agent: str, rule: int | None) -> AgentOverrides | None:
        """The configured overrides of what answered a call (``rule`` as decided; None: the entry itself).

        Without a trunk (metadata from an older controller), the first trunk that answers the number."""
        if not trunk:
            trunk = next(iter(self.trunks(called)), "")
        entry = self.entry(trunk, called)
        if entry is None:
            return None
        rules = entry.number.rules
        if rule is not None and 0 <= rule < len(rules) and rules[rule].agent == agent:
            return rules[rule].agent_overrides
        if rule is None and entry.number.agent == agent:
            return entry.number.agent_overrides
        return None


#: tables of the deployments in use, by identity (a deployment is immutable); a few at most
_TABLES: dict[int, tuple[Deployment, Table]] = {}


def table(deployment: Deployment) -> Table:
    """The routing table of ``deployment`` (built once per deployment object)."""
    cached = _TABLES.get(id(deployment))
    if cached is not None and cached[0] is deployment:
        return cached[1]
    built = Table(deployment.numbers)
    if len(_TABLES) >= 8:
        _TABLES.clear()
    _TABLES[id(deployment)] = (deployment, built)
    return built


def _conditions(rule: RoutingRule) -> str:
    parts = []
    if rule.caller_prefix is not None:
        parts.append(f"caller_prefix {rule.caller_prefix}")
    if rule.time is not None:
        parts.append(f"time {rule.time.window().describe()}")
    return ", ".join(parts)


def _check(rule: RoutingRule, caller: str, at: datetime) -> tuple[bool, str]:
    """Whether ``rule`` matches, and each condition's verdict in words."""
    verdicts: list[str] = []
    matched = True
    if rule.caller_prefix is not None:
        digits = caller_digits(caller)
        if not caller:
            verdicts.append("the call has no caller ID")
            matched = False
        elif digits is None:
            verdicts.append(f"the caller ID {printable(caller[:64])!r} is no E.164 number")
            matched = False
        elif digits.startswith(rule.caller_prefix[1:]):
            verdicts.append(f"the caller +{digits} starts with {rule.caller_prefix}")
        else:
            verdicts.append(f"the caller +{digits} does not start with {rule.caller_prefix}")
            matched = False
    if rule.time is not None:
        window = rule.time.window()
        local = window.local(at)
        when = f"{local:%Y-%m-%d %H:%M} {DAYS[local.weekday()]} in {window.zone}"
        if window.contains(at):
            verdicts.append(f"{when} is inside")
        else:
            verdicts.append(f"{when} is outside")
            matched = False
    return matched, "; ".join(verdicts)


def ambiguous(numbers: Mapping[int, Number]) -> list[tuple[int, int, NumberPattern]]:
    """Pairs of blocks on one trunk that share numbers with neither holding the other: ``(later, earlier, shared)``.

    (Identical numbers and blocks are duplicates, reported as such; an exact number inside a block is no
    ambiguity: the exact number answers.)"""
    groups: dict[tuple[str, int], list[tuple[int, NumberPattern]]] = {}
    for i, n in numbers.items():
        pattern = n.pattern
        if not pattern.exact:
            groups.setdefault((n.trunk, pattern.length), []).append((i, pattern))
    found: list[tuple[int, int, NumberPattern]] = []
    for members in groups.values():
        _sweep(members, 0, found)
    return sorted(found)


def _pair(
    a: tuple[int, NumberPattern], b: tuple[int, NumberPattern], found: list[tuple[int, int, NumberPattern]]
) -> None:
    (i, p), (j, q) = a, b
    if p.overlaps(q) and not p.contains(q) and not q.contains(p):
        later, earlier = (i, j) if i > j else (j, i)
        found.append((later, earlier, p.common(q)))


def _sweep(members: list[tuple[int, NumberPattern]], k: int, found: list[tuple[int, int, NumberPattern]]) -> None:
    """Every pair of ``members`` (same length, sharing numbers on the positions before ``k``) checked once:
    split by the digit set at position ``k``; blocks with disjoint sets there share no number, those with the
    same set are split further, those with different overlapping sets are compared in full."""
    if len(members) <= 8 or k >= members[0][1].length:
        for a, first in enumerate(members):
            for second in members[:a]:
                _pair(first, second, found)
        return
    by_mask: dict[int, list[tuple[int, NumberPattern]]] = {}
    for member in members:
        by_mask.setdefault(member[1].positions[k], []).append(member)
    masks = list(by_mask)
    for a, m in enumerate(masks):
        for n in masks[:a]:
            if m & n:
                for first in by_mask[m]:
                    for second in by_mask[n]:
                        _pair(first, second, found)
    for group in by_mask.values():
        _sweep(group, k + 1, found)


def blocks(numbers: Sequence[Number] | Mapping[int, Number]) -> int:
    """How many entries are blocks (not exact numbers)."""
    values = numbers.values() if isinstance(numbers, Mapping) else numbers
    return sum(1 for n in values if not n.pattern.exact)
