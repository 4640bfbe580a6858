"""Number blocks and routing rules on a real FreeSWITCH: sipp calls numbers inside blocks of the rendered example.

FreeSWITCH hunts the rendered regex routes (exact numbers first, then the smallest block: mod_dialplan_xml runs
the first extension that matches), parks the call with the number it was called on; the orchestrator's routing
function decides the block's rules (caller ID prefix, time of day) when it claims the call; the fork carries the
agent. Runs on the switch under test (see switch.py) when ``sipp`` is installed; skips otherwise, saying why.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest
import test_freeswitch_calls as calls
from deployments import loopback_example, render_and_start
from sipp_scenarios import uac
from switch import suite_ports
from test_freeswitch_calls import Bridge, Env, new_controller, wait_for
from test_scenarios import Running, _sipp

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice

pytestmark = calls.pytestmark
bridge = calls.bridge  # the stand-in media endpoint (records fork metadata)

PBX = "127.0.0.2"  # the office PBX trunk's address (its ACL)
OFFICE_HOURS = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)  # Friday 10:00 in New York
NIGHT = datetime(2026, 12, 4, 2, 0, tzinfo=UTC)  # Thursday 21:00 in New York


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("fsranges")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("uas", "bridge")
    doc = loopback_example(work, ports)
    doc["numbers"] += [
        {
            "number": "+1555766xxxx",
            "trunk": "office-pbx",
            "agent": "support",
            "rules": [
                {"caller_prefix": "+44", "agent": "sales"},
                {
                    "time": {"time_zone": "America/New_York", "days": ["mon-fri"], "start": "18:00", "end": "08:00"},
                    "agent": "sales",
                },
            ],
        },
        {"number": "+15557661[0-4]xx", "trunk": "office-pbx", "agent": "sales"},
        {"number": "+15557660000", "trunk": "office-pbx", "agent": "sales"},
    ]
    fs = render_and_start(doc, root, work)
    try:
        yield Env(fs, ports, work / "deployment.yaml", work)
    finally:
        fs.stop()


@pytest.fixture()
async def running(env: Env, bridge: tuple[Bridge, list[Controller]]) -> AsyncIterator[Running]:
    notices: list[Notice] = []
    c = await new_controller(env, notices)
    c.tracker.clock = OFFICE_HOURS.timestamp  # the time the routing rules see (the switch's own clock is not used)
    bridge[1].append(c)
    yield Running(c, notices, bridge[0])
    await c.stop()


async def _call(env: Env, r: Running, number: str, caller: str = "+15550001234") -> Notice:
    """A sipp call from the PBX to ``number`` (answered, held 1.5 s, BYE); its ``answered`` notice."""
    r.notices.clear()
    scenario = uac(env.work / f"range-{number.lstrip('+')}-{caller.lstrip('+')}.xml", 200, user=caller)
    assert await _sipp(env, scenario, number, PBX) == 0
    answered = await wait_for(r.notices, "answered")
    await wait_for(r.notices, "ended", call=answered.call.uuid)
    return answered


async def test_a_call_to_a_number_in_a_block_reaches_the_blocks_agent(env: Env, running: Running) -> None:
    r = running
    answered = await _call(env, r, "+15557669876")
    call = answered.call
    assert (call.trunk, call.agent, call.number, call.route, call.rule) == (
        "office-pbx",
        "support",
        "+15557669876",
        "+1555766xxxx",
        None,
    )
    [meta] = r.bridge.metadata[call.uuid]
    assert (meta["agent"], meta["called_number"], meta["trunk"]) == ("support", "+15557669876", "office-pbx")
    record = r.controller.ended[call.uuid]
    assert (record["to"], record["agent"], record["route"]) == (
        "+15557669876",
        "support",
        {"number": "+1555766xxxx", "rule": None},
    )


async def test_the_smaller_block_and_the_exact_number_win(env: Env, running: Running) -> None:
    r = running
    sub = await _call(env, r, "+15557661234")
    assert (sub.call.agent, sub.call.route) == ("sales", "+15557661[0-4]xx")
    edge = await _call(env, r, "+15557661500")  # just outside the smaller block
    assert (edge.call.agent, edge.call.route) == ("support", "+1555766xxxx")
    exact = await _call(env, r, "15557660000")  # dialled without '+': the route takes both
    assert (exact.call.agent, exact.call.route, exact.call.number) == ("sales", "+15557660000", "+15557660000")


async def test_rules_by_caller_prefix_and_time_of_day(env: Env, running: Running) -> None:
    r = running
    uk = await _call(env, r, "+15557669876", caller="+447700900123")
    assert (uk.call.agent, uk.call.rule) == ("sales", 0)
    assert r.bridge.metadata[uk.call.uuid][0]["agent"] == "sales"
    r.controller.tracker.clock = NIGHT.timestamp
    night = await _call(env, r, "+15557669876")
    assert (night.call.agent, night.call.rule) == ("sales", 1)
    assert r.controller.ended[night.call.uuid]["route"] == {"number": "+1555766xxxx", "rule": 1}


async def test_a_number_outside_every_block_is_refused_with_404(env: Env, running: Running) -> None:
    r = running
    assert await _sipp(env, uac(env.work / "range-unknown.xml", 404), "+15557670000", PBX) == 0
    ended = await wait_for(r.notices, "ended")
    record = r.controller.ended[ended.call.uuid]
    assert (record["refused"], record["hangup"]["sip_status"], record["to"]) == ("unknown_number", 404, "+15557670000")
