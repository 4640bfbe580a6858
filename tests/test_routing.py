"""Number blocks and routing rules: the grammar, the one routing function, validation, the rendered dialplan
(hunted as mod_dialplan_xml does), a call through the simulator, and ``sipagent route`` / ``show``."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fsxml import assemble
from simulator import SimulatedFreeSwitch
from simulator.xmldialplan import Outcome, run
from typer.testing import CliRunner

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.cli import app
from orchestrator.config import check_text
from orchestrator.config.model import Deployment
from orchestrator.config.numbering import NumberPattern, Window, caller_digits
from orchestrator.config.routing import MAX_BLOCKS, Table
from orchestrator.esl.client import Backoff
from orchestrator.media import fork
from orchestrator.render import render_deployment, write_tree

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "routing" / "deployment.yaml"
PASSWORD = "sim-pass"

HEAD = f"""
freeswitch:
  bind_ip: 127.0.0.1
  event_socket: {{password: {PASSWORD}}}
transports: {{tcp: {{port: 5060}}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
  - name: pbx
    inbound: {{transports: [tcp], auth: {{acl: [198.51.100.0/24]}}}}
agents:
  - {{name: support, protocol: raw, url: "ws://127.0.0.1:9000/support"}}
  - {{name: sales, protocol: raw, url: "ws://127.0.0.1:9000/sales"}}
  - {{name: desk, protocol: raw, url: "ws://127.0.0.1:9000/desk"}}
  - {{name: uk, protocol: raw, url: "ws://127.0.0.1:9000/uk"}}
  - {{name: night, protocol: raw, url: "ws://127.0.0.1:9000/night"}}
orchestrator:
  media_url: ws://127.0.0.1:8090
  records: calls.jsonl
"""

NUMBERS = """
numbers:
  - number: "+1555765xxxx"
    trunk: carrier
    agent: support
    rules:
      - {caller_prefix: "+44", agent: uk, agent_overrides: {language: en}}
      - {time: {time_zone: America/New_York, days: [mon-fri], start: "18:00", end: "08:00"}, agent: night}
  - {number: "+15557651[0-4]xx", trunk: carrier, agent: sales}
  - {number: "+15557650000", trunk: carrier, agent: desk}
  - {number: "+1555xxxxxxx", trunk: pbx, agent: sales}
"""

# a Friday, 10:00 in New York (EST, UTC-5)
OFFICE_HOURS = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
NIGHT = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)  # Thursday 21:00 in New York


def load(text: str, tmp: Path) -> Deployment:
    result = check_text(text, "d.yaml", {}, tmp)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    return result.deployment


def errors(text: str, tmp: Path) -> list[str]:
    return [str(d) for d in check_text(text, "d.yaml", {}, tmp).errors]


# -- the grammar ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "canonical", "size", "regex"),
    [
        ("+15557650042", "+15557650042", 1, r"^\+?(15557650042)$"),
        ("+1555765xxxx", "+1555765xxxx", 10_000, r"^\+?(1555765[0-9]{4})$"),
        ("+1555765XXXX", "+1555765xxxx", 10_000, r"^\+?(1555765[0-9]{4})$"),
        ("+15557650[0-4]xx", "+15557650[0-4]xx", 500, r"^\+?(15557650[0-4][0-9]{2})$"),
        ("+4930[0-2589]x", "+4930[0-2589]x", 60, r"^\+?(4930[0-2589][0-9])$"),
        ("+4930[12]x[12]", "+4930[12]x[12]", 40, r"^\+?(4930[12][0-9][12])$"),
        ("+1[0-9]", "+1x", 10, r"^\+?(1[0-9])$"),
    ],
)
def test_blocks_are_digit_sets_written_canonically(written: str, canonical: str, size: int, regex: str) -> None:
    pattern = NumberPattern.parse(written)
    assert (pattern.text, pattern.size, pattern.regex()) == (canonical, size, regex)
    assert NumberPattern.parse(pattern.text) == pattern


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("+1555765.*", "regular expressions are not accepted"),
        ("^\\+1555765\\d{4}$", "regular expressions are not accepted"),
        ("+1555765(0|1)xxx", "regular expressions are not accepted"),
        ("+1555765xxx?", "regular expressions are not accepted"),
        ("+1555765x{4}", "regular expressions are not accepted"),
        ("1555765xxxx", "needs a leading '+'"),
        ("001555765xxxx", "replace the international prefix 00"),
        ("+1 555 765 xxxx", "without spaces or punctuation"),
        ("+x555765xxxx", "the first digit (the country code's) must be a digit"),
        ("+[12]555", "the first digit (the country code's) must be a digit"),
        ("+0555765xxxx", "country codes never start with 0"),
        ("+1555765xxxxxxxxx", "at most 15 digits"),
        ("+1", "at least one more digit"),
        ("+1555[9-0]x", "runs backwards"),
        ("+1555[]x", "a digit set is written [0-4]"),
        ("+1555[0-4x", "a digit set is written [0-4]"),
        ("+1555[a-z]x", "a digit set is written [0-4]"),
        ("+1555765 ", "without spaces or punctuation"),
        ("+1555765٣", "found"),
        ("+1" + "[0-9]" * 20, "too long"),
    ],
)
def test_what_is_no_number_or_block_is_refused_in_plain_words(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        NumberPattern.parse(value)


def test_the_regex_is_made_of_digit_sets_only_and_matches_exactly_the_block() -> None:
    for text in ("+1555[0-4]x", "+4930[0-2589]x", "+1[2-3]", "+441x[13579]", "+4930[12]x[12]"):
        pattern = NumberPattern.parse(text)
        regex = pattern.regex()
        # nothing FreeSWITCH's variable expansion ($, ${), XML or PCRE backtracking could act on
        assert re.fullmatch(r"\^\\\+\?\((?:[0-9]|\[[0-9-]+\](?:\{[0-9]+\})?)+\)\$", regex), regex
        compiled = re.compile(regex)
        # every digit where the block has a set, the digit and another where it has one: matches and misses
        choices = [
            "0123456789" if m & (m - 1) else f"{m.bit_length() - 1}{m.bit_length() % 10}" for m in pattern.positions
        ]
        for combo in itertools.product(*choices):
            digits = "".join(combo)
            assert bool(compiled.search(digits)) == pattern.matches(digits) == bool(compiled.search("+" + digits))
        assert not compiled.search(digits + "0") and not compiled.search(digits[:-1])


def test_containment_and_overlap_of_blocks() -> None:
    p = NumberPattern.parse
    assert p("+1555765xxxx").contains(p("+15557651[0-4]xx"))
    assert p("+1555765xxxx").contains(p("+15557650042"))
    assert not p("+15557651[0-4]xx").contains(p("+1555765xxxx"))
    assert p("+155576[0-5]xxxx").overlaps(p("+155576[3-9]xxxx"))
    assert p("+155576[0-5]xxxx").common(p("+155576[3-9]xxxx")).text == "+155576[3-5]xxxx"
    assert not p("+155576[0-2]xxxx").overlaps(p("+155576[3-9]xxxx"))
    assert not p("+1555765xxxx").overlaps(p("+1555765xxx"))  # another length: no number in both


def test_caller_ids_are_read_as_e164() -> None:
    assert caller_digits("+447700900123") == "447700900123"
    assert caller_digits("447700900123") == "447700900123"
    assert caller_digits("anonymous") is None and caller_digits("") is None and caller_digits("+44 7700") is None


# -- time windows -----------------------------------------------------------------------------------------


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    w = Window("Europe/Berlin", frozenset({4}), 22 * 60, 6 * 60)  # Friday 22:00 to Saturday 06:00
    berlin = timezone(timedelta(hours=1))  # CET in December
    assert w.contains(datetime(2026, 12, 4, 22, 0, tzinfo=berlin))  # Fri 22:00
    assert w.contains(datetime(2026, 12, 5, 5, 59, tzinfo=berlin))  # Sat 05:59
    assert not w.contains(datetime(2026, 12, 5, 6, 0, tzinfo=berlin))  # Sat 06:00: ended
    assert not w.contains(datetime(2026, 12, 4, 5, 0, tzinfo=berlin))  # Fri 05:00: Thursday's night, not in days
    assert not w.contains(datetime(2026, 12, 5, 22, 30, tzinfo=berlin))  # Sat 22:30: Saturday is not in days


def test_a_window_follows_daylight_saving_time() -> None:
    w = Window("America/New_York", frozenset(range(7)), 9 * 60, 17 * 60)
    # 13:30 UTC is 09:30 in New York in summer (EDT, UTC-4) and 08:30 in winter (EST, UTC-5)
    assert w.contains(datetime(2026, 7, 1, 13, 30, tzinfo=UTC))
    assert not w.contains(datetime(2026, 12, 1, 13, 30, tzinfo=UTC))
    # the night the clocks go forward (2026-03-08 02:00 EST -> 03:00 EDT): 13:00 UTC is 09:00 EDT
    assert w.contains(datetime(2026, 3, 8, 13, 0, tzinfo=UTC))


# -- the routing function ---------------------------------------------------------------------------------


def test_exact_beats_block_beats_wider_block_and_each_trunk_has_its_own(tmp_path: Path) -> None:
    table = Table(load(HEAD + NUMBERS, tmp_path).numbers)
    cases = {
        ("carrier", "+15557650000"): ("desk", 2),
        ("carrier", "15557650000"): ("desk", 2),  # the dialplan takes numbers with or without '+'
        ("carrier", "+15557651234"): ("sales", 1),
        ("carrier", "+15557651500"): ("support", 0),  # outside the sub-block
        ("carrier", "+15557659999"): ("support", 0),
        ("pbx", "+15557650000"): ("sales", 3),  # the exact number is on the other trunk
    }
    for (trunk, called), (agent, index) in cases.items():
        decision = table.decide(trunk, called, "+15551230000", OFFICE_HOURS)
        assert decision is not None, called
        assert (decision.agent, decision.entry.index, decision.rule) == (agent, index, None), called
    for trunk, called in [("carrier", "+15557750000"), ("carrier", "+155576500001"), ("pbx", "+4930123"), ("x", "+15557650000"), ("carrier", "garbage")]:  # fmt: skip
        assert table.decide(trunk, called, "", OFFICE_HOURS) is None
    assert table.trunks("+15557650000") == ["carrier", "pbx"]
    assert [e.number.number for e in table.ordered("carrier")] == ["+15557650000", "+15557651[0-4]xx", "+1555765xxxx"]


def test_rules_in_order_then_the_numbers_agent(tmp_path: Path) -> None:
    table = Table(load(HEAD + NUMBERS, tmp_path).numbers)
    uk = table.decide("carrier", "+15557650042", "+447700900123", NIGHT)
    assert uk is not None and (uk.agent, uk.rule, uk.path) == ("uk", 0, "numbers[0].rules[0]")  # first rule wins
    night = table.decide("carrier", "+15557650042", "+15551230000", NIGHT)
    assert night is not None and (night.agent, night.rule) == ("night", 1)
    assert "2026-12-03 21:00 thu in America/New_York is inside" in night.why[2]
    day = table.decide("carrier", "+15557650042", "anonymous", OFFICE_HOURS)
    assert day is not None and (day.agent, day.rule) == ("support", None)
    assert day.why[-1] == "no rule matched: the number's agent support answers"
    # rules belong to their entry: a more specific entry without rules ignores them
    sales = table.decide("carrier", "+15557651234", "+447700900123", NIGHT)
    assert sales is not None and sales.agent == "sales"
    # the configured overrides of what answered
    assert table.overrides("carrier", "+15557650042", "uk", 0) is not None
    assert table.overrides("carrier", "+15557650042", "uk", None) is None
    assert table.overrides("carrier", "+15557650042", "support", None) is None  # none configured


def test_a_blocks_recording_policy_covers_its_numbers(tmp_path: Path) -> None:
    from orchestrator.calls import recording

    text = HEAD.replace("  records: calls.jsonl\n", f"  records: calls.jsonl\n  recording: {{directory: {tmp_path}}}\n")
    text += 'numbers:\n  - {number: "+1555765xxxx", trunk: carrier, agent: support, recording: always}\n'
    d = load(text, tmp_path)
    inbound = {"direction": "inbound", "agent": "support"}
    assert recording.policy_for(d, trunk="carrier", number="+15557650042", **inbound) == "always"
    assert recording.policy_for(d, trunk="pbx", number="+15557650042", **inbound) != "always"  # not on that trunk


# -- validation -------------------------------------------------------------------------------------------


def test_overlapping_blocks_of_which_neither_holds_the_other_are_an_error_naming_both(tmp_path: Path) -> None:
    text = HEAD + textwrap.dedent("""
        numbers:
          - {number: "+155576[0-5]xxxx", trunk: carrier, agent: support}
          - {number: "+1555765xxxx", trunk: carrier, agent: support}
          - {number: "+155576[3-9]xxxx", trunk: carrier, agent: sales}
          - {number: "+155576[3-9]xxxx", trunk: pbx, agent: sales}
        """)
    found = errors(text, tmp_path)
    line = text.splitlines().index('  - {number: "+155576[0-5]xxxx", trunk: carrier, agent: support}') + 1
    assert len(found) == 2, found
    assert found[0].startswith(f"d.yaml:{line + 2}:")
    assert (
        f"numbers[2].number: '+155576[3-9]xxxx' overlaps '+155576[0-5]xxxx' (numbers[0], line {line}) on trunk "
        "'carrier': both hold +155576[3-5]xxxx and neither holds the other" in found[0]
    )
    # the same block on another trunk is its own route (the trunk's context), but twice is a duplicate
    assert f"numbers[3].number: duplicate number '+155576[3-9]xxxx' (first defined on line {line + 2})" in found[1]


def test_nested_blocks_and_exact_numbers_inside_blocks_are_fine(tmp_path: Path) -> None:
    load(HEAD + NUMBERS, tmp_path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{agent: uk}]}',
            "a rule needs caller_prefix, time or both",
        ),
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{caller_prefix: "+44", agent: ghost}]}',
            "numbers[0].rules[0].agent: unknown agent 'ghost'",
        ),
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{caller_prefix: "44", agent: uk}]}',
            "write it with a leading '+', e.g. '+44'",
        ),
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{caller_prefix: "+4.*", agent: uk}]}',
            "is not a caller prefix",
        ),
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{time: {time_zone: Mars/Olympus}, agent: uk}]}',
            "unknown time zone 'Mars/Olympus'",
        ),
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{time: {time_zone: ../../etc/passwd, days: [mon]}, agent: uk}]}',
            "is not a time zone name",
        ),
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{time: {time_zone: UTC, days: [monday]}, agent: uk}]}',
            "'monday' is not a day",
        ),
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{time: {time_zone: UTC, start: "9:00"}, agent: uk}]}',
            "'9:00' is not a time of day",
        ),
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{time: {time_zone: UTC, start: "09:00", end: "09:00"}, agent: uk}]}',
            "start and end are both 09:00",
        ),
        (
            '{number: "+1555765xxxx", trunk: carrier, agent: support, rules: [{time: {time_zone: UTC, days: [mon-sun]}, agent: uk}]}',
            "every day, all day",
        ),
        ('{number: "+1555765.*", trunk: carrier, agent: support}', "regular expressions are not accepted"),
    ],
)
def test_bad_rules_and_blocks_are_named_with_their_place(tmp_path: Path, entry: str, message: str) -> None:
    found = errors(HEAD + f"numbers:\n  - {entry}\n", tmp_path)
    assert any(message in e for e in found), found


def test_the_number_of_blocks_is_bounded(tmp_path: Path) -> None:
    entries = "".join(
        f'  - {{number: "+1{i:05d}xxxx", trunk: carrier, agent: support}}\n' for i in range(MAX_BLOCKS + 1)
    )
    found = errors(HEAD + "numbers:\n" + entries, tmp_path)
    assert any(f"at most {MAX_BLOCKS:,} are supported" in e for e in found), found[:3]


# -- the rendered dialplan, hunted as mod_dialplan_xml does -------------------------------------------------


def rendered(deployment: Deployment, tmp: Path) -> Any:
    write_tree(render_deployment(deployment, tmp), tmp / "conf")
    return assemble(tmp / "conf")


def hunt(doc: Any, trunk: str, called: str, caller: str = "+15551230000") -> Outcome:
    return run(doc, f"trunk-{trunk}", {"destination_number": called, "caller_id_number": caller}, {})


def test_dialplan_routes_most_specific_first_with_regex_conditions(tmp_path: Path) -> None:
    doc = rendered(load(HEAD + NUMBERS, tmp_path), tmp_path)
    ctx = doc.find("section[@name='dialplan']/context[@name='trunk-carrier']")
    assert ctx is not None
    routes = [(x.get("name"), x.find("condition").get("expression")) for x in ctx.findall("extension")][1:-1]  # type: ignore[union-attr]
    assert routes == [
        ("+15557650000", r"^\+?15557650000$"),
        ("+15557651[0-4]xx", r"^\+?(15557651[0-4][0-9]{2})$"),
        ("+1555765xxxx", r"^\+?(1555765[0-9]{4})$"),
    ]
    block = ctx.findall("extension")[3]
    assert [(a.get("application"), a.get("data")) for a in block.find("condition")] == [  # type: ignore[union-attr]
        ("set", "sipagent_number=+$1"),
        ("set", "sipagent_route=+1555765xxxx"),
        ("set", "sipagent_agent=support"),
        ("park", None),
    ]


def test_the_hunt_of_the_rendered_dialplan_agrees_with_the_routing_function(tmp_path: Path) -> None:
    deployment = load(HEAD + NUMBERS, tmp_path)
    doc = rendered(deployment, tmp_path)
    table = Table(deployment.numbers)
    numbers = ["+15557650000", "15557650000", "+15557650001", "+15557651000", "+15557651499", "+15557651500",
               "+15557659999", "+15557660000", "+1555765000", "+155576500000", "+15551234567", "x"]  # fmt: skip
    for trunk in ("carrier", "pbx"):
        for called in numbers:
            outcome = hunt(doc, trunk, called)
            entry = table.entry(trunk, called)
            if entry is None:
                assert (outcome.parked, outcome.hangup) == (False, "UNALLOCATED_NUMBER"), (trunk, called)
                assert outcome.variables["sipagent_refused"] == "unknown_number"
                continue
            assert outcome.parked, (trunk, called)
            assert outcome.variables["sipagent_route"] == entry.number.number
            assert outcome.variables["sipagent_agent"] == entry.number.agent
            assert outcome.variables["sipagent_number"] == "+" + called.lstrip("+")
            assert outcome.variables["sipagent_trunk"] == trunk


def test_blocks_render_in_the_example(tmp_path: Path) -> None:
    result = check_text(EXAMPLE.read_text(), str(EXAMPLE), {}, EXAMPLE.parent)
    assert result.errors == [] and result.warnings == [], [str(d) for d in result.diagnostics]
    assert result.deployment is not None
    outcome = hunt(rendered(result.deployment, tmp_path), "carrier", "+15557651234")
    assert outcome.parked and outcome.variables["sipagent_agent"] == "sales"


# -- a call through the simulator: dialplan, claim, rules, fork ---------------------------------------------


class Calls:
    def __init__(self, sim: SimulatedFreeSwitch, controller: Controller, doc: Any, tmp: Path) -> None:
        self.sim, self.controller, self.doc, self.tmp = sim, controller, doc, tmp
        self.notices: list[Notice] = []
        controller.add_listener(self.notices.append)

    async def call(self, called: str, caller: str = "+15551230000", trunk: str = "carrier") -> str:
        channel = await self.sim.dialplan_call(
            self.doc, destination=called, caller_id=caller, context=f"trunk-{trunk}", sip_headers={}
        )
        assert not isinstance(channel, Outcome), channel
        return channel.uuid

    async def wait(self, kind: str, uuid: str) -> Notice:
        for _ in range(500):
            for n in self.notices:
                if n.kind == kind and n.call.uuid == uuid:
                    return n
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} for {uuid}: {[(n.kind, n.data) for n in self.notices]}")

    def fork_metadata(self, uuid: str) -> dict[str, Any]:
        start = next(c for c in self.sim.received_commands if uuid in c and "uuid_audio_fork" in c and " start " in c)
        return json.loads(start.split(" ")[8].replace("\\s", " "))


@pytest.fixture()
async def calls(tmp_path: Path) -> AsyncIterator[Calls]:
    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    deployment = load(HEAD + f"  nodes:\n    - {{name: fs1, port: {sim.port}}}\n" + NUMBERS, tmp_path)
    controller = Controller(deployment, tmp_path, tokens=fork.Tokens(b"k"), backoff=Backoff(initial=0.02, maximum=0.1))
    harness = Calls(sim, controller, rendered(deployment, tmp_path), tmp_path)
    await controller.start()
    for node in controller.nodes.values():
        await asyncio.wait_for(node.synced.wait(), 5)
    try:
        yield harness
    finally:
        await harness.controller.stop()  # the one running (a test may have replaced it)
        await sim.stop()


async def test_a_call_to_a_number_in_a_block_reaches_the_blocks_agent(calls: Calls) -> None:
    calls.controller.tracker.clock = OFFICE_HOURS.timestamp
    uuid = await calls.call("+15557659876")
    answered = await calls.wait("answered", uuid)
    assert (answered.call.agent, answered.call.number, answered.call.route) == (
        "support",
        "+15557659876",
        "+1555765xxxx",
    )
    await calls.wait("fork_connected", uuid)
    meta = calls.fork_metadata(uuid)
    assert (meta["agent"], meta["called_number"], meta["trunk"]) == ("support", "+15557659876", "carrier")
    channel = calls.sim.channels[uuid]
    assert (channel.variables["sipagent_routed_agent"], channel.variables["sipagent_rule"]) == ("support", "none")
    sub = await calls.call("+15557651234")  # the smaller block inside it
    assert (await calls.wait("answered", sub)).call.agent == "sales"
    exact = await calls.call("15557650000")  # the exact number, dialled without '+'
    assert (await calls.wait("answered", exact)).call.agent == "desk"
    await calls.sim.remote_hangup(uuid)
    await calls.wait("ended", uuid)
    for _ in range(300):
        if (calls.tmp / "calls.jsonl").exists() and (calls.tmp / "calls.jsonl").read_text():
            break
        await asyncio.sleep(0.01)
    record = json.loads((calls.tmp / "calls.jsonl").read_text().splitlines()[0])
    assert (record["to"], record["agent"], record["route"]) == (
        "+15557659876",
        "support",
        {"number": "+1555765xxxx", "rule": None},
    )


async def test_rules_pick_the_agent_when_the_call_is_claimed(calls: Calls) -> None:
    calls.controller.tracker.clock = NIGHT.timestamp
    uk = await calls.call("+15557650042", caller="+447700900123")
    night = await calls.call("+15557650043", caller="+15551230000")
    assert (await calls.wait("answered", uk)).call.agent == "uk"
    assert (await calls.wait("answered", night)).call.agent == "night"
    await calls.wait("fork_connected", uk)
    meta = calls.fork_metadata(uk)
    assert (meta["agent"], meta["route_rule"]) == ("uk", 0)
    assert calls.sim.channels[uk].variables["sipagent_routed_agent"] == "uk"
    calls.controller.tracker.clock = OFFICE_HOURS.timestamp
    day = await calls.call("+15557650044", caller="+15551230000")
    assert (await calls.wait("answered", day)).call.agent == "support"


async def test_a_restarted_orchestrator_keeps_the_agent_decided_at_claim_time(calls: Calls) -> None:
    calls.controller.tracker.clock = NIGHT.timestamp
    uuid = await calls.call("+15557650042")
    assert (await calls.wait("answered", uuid)).call.agent == "night"
    await calls.wait("fork_connected", uuid)
    await calls.controller.stop()
    # back up in office hours: re-deciding would pick support, but the answered call stays with its agent
    controller = Controller(
        calls.controller.deployment, calls.tmp, tokens=fork.Tokens(b"k"), backoff=Backoff(initial=0.02, maximum=0.1)
    )
    controller.tracker.clock = OFFICE_HOURS.timestamp
    calls.controller, calls.notices = controller, []
    controller.add_listener(calls.notices.append)
    await controller.start()
    again = await calls.wait("answered", uuid)
    assert again.call.reattached and (again.call.agent, again.call.rule) == ("night", 1)
    await calls.wait("fork_connected", uuid)
    starts = [c for c in calls.sim.received_commands if uuid in c and "uuid_audio_fork" in c and " start " in c]
    assert json.loads(starts[-1].split(" ")[8].replace("\\s", " "))["agent"] == "night"


# -- sipagent route / show ------------------------------------------------------------------------------------

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False, env=env)


def test_route_explains_which_rule_answers_and_why() -> None:
    result = invoke("route", "+15557650042", str(EXAMPLE), "--from", "+447700900123", "--at", "2026-12-04T09:00-05:00")
    assert result.exit_code == 0, result.output
    assert "+15557650042 on trunk carrier, from +447700900123, at 2026-12-04 09:00 UTC-05:00 (Fri)" in result.output
    assert "answered by agent support-uk (numbers[0].rules[0])" in result.output
    assert "numbers[0] +1555765xxxx (a block of 10,000 numbers) on trunk carrier holds +15557650042" in result.output
    assert "rules[0] (caller_prefix +44): the caller +447700900123 starts with +44" in result.output


def test_route_by_time_and_by_specificity() -> None:
    night = invoke("route", "+15557650042", str(EXAMPLE), "--at", "2026-12-04T23:30Z")  # Fri 18:30 in New York
    assert night.exit_code == 0, night.output
    assert "answered by agent after-hours (numbers[0].rules[1])" in night.output
    assert "2026-12-04 18:30 fri in America/New_York is inside" in night.output
    day = invoke("route", "+15557650042", str(EXAMPLE), "--at", "2026-12-04T10:00-05:00")
    assert "answered by agent support (numbers[0])" in day.output
    assert "no rule matched: the number's agent support answers" in day.output
    sales = invoke("route", "+15557651234", str(EXAMPLE), "--from", "+447700900123")
    assert "answered by agent sales (numbers[1])" in sales.output
    assert "it is more specific than the other entries that hold it: numbers[0] +1555765xxxx" in sales.output
    exact = invoke("route", "+15557650000", str(EXAMPLE))
    assert "answered by agent front-desk (numbers[2])" in exact.output
    assert "numbers[2] +15557650000 (an exact number)" in exact.output


def test_route_of_an_unknown_number_exits_1_and_bad_input_exits_2(tmp_path: Path) -> None:
    unknown = invoke("route", "+4930123456", str(EXAMPLE))
    assert unknown.exit_code == 1
    assert "no number or block answers it: the call is refused (404, unknown_number)" in unknown.output
    other = invoke("route", "+15557650042", str(EXAMPLE), "--trunk", "elsewhere")
    assert other.exit_code == 1 and "on trunk elsewhere" in other.output
    for args, message in [
        (["route", "5557650042", str(EXAMPLE)], "NUMBER: '5557650042' is not E.164"),
        (["route", "+15557650042", str(EXAMPLE), "--at", "tomorrow"], "--at: 'tomorrow' is not an ISO 8601 time"),
        (["route", "+15557650042", str(EXAMPLE), "--from", "9" * 65], "--from: a caller ID of at most 64"),
    ]:
        result = invoke(*args)
        assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in unknown.output


def test_route_reads_the_deployment_named_by_the_environment() -> None:
    result = invoke("route", "+15557650000", env={"SIPAGENT_DEPLOYMENT": str(EXAMPLE)})
    assert result.exit_code == 0 and "front-desk" in result.output, result.output


def test_show_lists_blocks_with_their_size_and_rules() -> None:
    result = invoke("show", str(EXAMPLE), env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    rows = [" ".join(cell.strip() for cell in row.split("│")).strip() for row in result.output.splitlines()]
    assert "+1555765xxxx 10,000 numbers carrier support 3" in rows
    assert "+15557651[0-4]xx 500 numbers carrier sales -" in rows
    assert "+15557650000 1 number carrier front-desk -" in rows
    assert "+1555765xxxx rules[0] caller +44… support-uk" in rows
    assert "+1555765xxxx rules[1] mon-fri 18:00-08:00 America/New_York after-hours" in rows
    assert "+1555765xxxx rules[2] sat,sun 00:00-24:00 America/New_York after-hours" in rows
