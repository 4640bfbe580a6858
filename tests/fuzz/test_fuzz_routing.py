"""Properties of routing (config/routing.py): an exact number beats every block holding it, a block beats every
wider block holding the number; whatever validates renders a dialplan whose hunt (mod_dialplan_xml's order)
picks the entry the routing function picks; the overlap sweep finds exactly the pairs a brute force finds."""

from __future__ import annotations

import itertools

from fsxml import assemble
from hypothesis import given
from hypothesis import strategies as st
from simulator.xmldialplan import run

from orchestrator.config import check_text
from orchestrator.config.model import Number
from orchestrator.config.numbering import ALL_DIGITS, NumberPattern
from orchestrator.config.routing import Table, ambiguous
from orchestrator.render import render_deployment, write_tree

LENGTH = 6  # digits after '+': small, so blocks overlap often
TRUNKS = ("a", "b")


@st.composite
def patterns(draw: st.DrawFn) -> NumberPattern:
    """A number or block of LENGTH digits starting with 1: each later position a digit, x or a digit set."""
    positions = [1 << 1]
    for _ in range(LENGTH - 1):
        kind = draw(st.sampled_from(["digit", "digit", "x", "set"]))
        if kind == "digit":
            positions.append(1 << draw(st.integers(0, 2)))
        elif kind == "x":
            positions.append(ALL_DIGITS)
        else:
            positions.append(draw(st.integers(1, ALL_DIGITS)))
    return NumberPattern(tuple(positions))


entries = st.lists(st.tuples(patterns(), st.sampled_from(TRUNKS)), min_size=1, max_size=12)
numbers = st.text("0123", min_size=LENGTH - 1, max_size=LENGTH - 1).map(lambda rest: "1" + rest)


def _table(drawn: list[tuple[NumberPattern, str]]) -> Table:
    return Table([Number(number=p.text, trunk=t, agent=f"agent{i}") for i, (p, t) in enumerate(drawn)])


@given(entries, numbers, st.sampled_from(TRUNKS))
def test_exact_beats_block_beats_wider_block(drawn: list[tuple[NumberPattern, str]], digits: str, trunk: str) -> None:
    table = _table(drawn)
    entry = table.entry(trunk, "+" + digits)
    holding = [i for i, (p, t) in enumerate(drawn) if t == trunk and p.matches(digits)]
    if not holding:
        assert entry is None
        return
    assert entry is not None and entry.index in holding
    for i in holding:
        other = drawn[i][0]
        if other.exact:
            assert entry.pattern.exact  # an exact number holding it: the answer is exact too
        # nothing that holds the number is more specific than the answer; among equals, the first in the file
        assert (entry.pattern.size, entry.index) <= (other.size, i)
        if other.contains(entry.pattern) and other != entry.pattern:
            assert other.size > entry.pattern.size  # a wider block holding the answer never wins


@given(entries)
def test_the_sweep_finds_the_pairs_a_brute_force_finds(drawn: list[tuple[NumberPattern, str]]) -> None:
    table = {i: Number(number=p.text, trunk=t, agent="x") for i, (p, t) in enumerate(drawn)}
    expected = sorted(
        (i, j, p.common(q))
        for (i, (p, t)), (j, (q, u)) in itertools.combinations(enumerate(drawn), 2)
        for i, j in [(max(i, j), min(i, j))]
        if t == u and not p.exact and not q.exact and p.overlaps(q) and not p.contains(q) and not q.contains(p)
    )
    assert ambiguous(table) == expected


HEAD = """
freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: x}}
trunks:
  - {name: a, inbound: {transports: [tcp], auth: {acl: [192.0.2.0/24]}}}
  - {name: b, inbound: {transports: [tcp], auth: {acl: [198.51.100.0/24]}}}
agents:
  - {name: agent, protocol: raw, url: "ws://127.0.0.1:9/a"}
numbers:
"""


@given(entries, st.lists(numbers, min_size=1, max_size=8))
def test_what_validates_renders_a_dialplan_that_routes_as_the_function_does(
    tmp_path_factory: object, drawn: list[tuple[NumberPattern, str]], called: list[str]
) -> None:
    unique = list({p.text: (p, t) for p, t in drawn}.values())
    text = HEAD + "".join(f'  - {{number: "{p.text}", trunk: {t}, agent: agent}}\n' for p, t in unique)
    tmp = tmp_path_factory.mktemp("routing")  # type: ignore[attr-defined]
    result = check_text(text, "d.yaml", {}, tmp)
    if result.deployment is None:
        # the only refusal here: blocks on one trunk that overlap without one holding the other
        assert result.errors and all("neither holds the other" in d.message for d in result.errors)
        return
    write_tree(render_deployment(result.deployment, tmp), tmp / "conf")
    doc = assemble(tmp / "conf")
    table = Table(result.deployment.numbers)
    for digits in called:
        for trunk in TRUNKS:
            outcome = run(doc, f"trunk-{trunk}", {"destination_number": "+" + digits}, {})
            entry = table.entry(trunk, "+" + digits)
            if entry is None:
                assert outcome.hangup == "UNALLOCATED_NUMBER"
            else:
                assert outcome.parked and outcome.variables["sipagent_route"] == entry.number.number
                assert outcome.variables["sipagent_number"] == "+" + digits
