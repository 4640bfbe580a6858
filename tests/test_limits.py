"""Per-trunk call limits: configuration, what is rendered, mod_hash's model, inbound 503 and outbound 429.

Inbound calls run the rendered dialplan's steps in the simulator (``dialplan_walk``: set, limit, unset …), whose
``limit`` follows mod_hash; the real switch does the same in tests/integration/test_limits_live.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from dialplan_walk import steps
from simulator import SimulatedFreeSwitch
from simulator.limits import HashLimits, parse_limit

from orchestrator.api.http import create_app
from orchestrator.calls.controller import Controller
from orchestrator.calls.limits import OutboundLimiter
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_text
from orchestrator.config.model import CallLimits
from orchestrator.esl.client import Backoff
from orchestrator.media import fork
from orchestrator.render import render_deployment, write_tree
from orchestrator.render.plan import build, node_share

PASSWORD = "sim-pass"
TOKEN = "api-token-123"


def deployment_text(port: int, inbound: str = "{max_calls: 2}", outbound: str = "{max_calls: 1}") -> str:
    return f"""
freeswitch:
  bind_ip: 127.0.0.1
  event_socket: {{password: {PASSWORD}}}
transports: {{tcp: {{port: 5060}}}}
trunks:
  - name: carrier
    inbound:
      transports: [tcp]
      auth: {{acl: [192.0.2.0/24]}}
      limits: {inbound}
    outbound:
      address: sbc.carrier.example
      caller_id: "+15550009999"
      limits: {outbound}
  - name: other
    inbound:
      transports: [tcp]
      auth: {{acl: [198.51.100.0/24]}}
numbers:
  - {{number: "+15550000001", trunk: carrier, agent: support}}
  - {{number: "+15550000002", trunk: other, agent: support}}
agents:
  - {{name: support, protocol: raw, url: "ws://127.0.0.1:9/a"}}
orchestrator:
  records: calls.jsonl
  api: {{token: {TOKEN}}}
  nodes: [{{name: fs1, port: {port}}}]
"""


def load(text: str, tmp: Path) -> Any:
    result = check_text(text, "d.yaml", {}, tmp)
    assert result.errors == [], [str(d) for d in result.errors]
    return result


# -- configuration and rendering ------------------------------------------------------------------------


def test_limits_need_something_and_are_bounded(tmp_path: Path) -> None:
    for bad, words in (
        ("{}", "needs max_calls, calls_per_second or both"),
        ("{max_calls: 0}", "must be at least 1"),
        ("{calls_per_second: 100000}", "at most 10000"),
        ("{max_calls: 2, retry_after_seconds: 0}", "must be at least 1"),
        ("{max_calls: 2, queue: 5}", "queue"),
    ):
        result = check_text(deployment_text(8021, inbound=bad), "d.yaml", {}, tmp_path)
        messages = [str(d) for d in result.errors]
        assert any("trunks[0].inbound.limits" in m and words in m for m in messages), (bad, messages)


def test_rendered_limits_run_in_each_route_before_the_park(tmp_path: Path) -> None:
    text = deployment_text(8021, inbound="{max_calls: 2, calls_per_second: 5, retry_after_seconds: 7}")
    d = load(text, tmp_path).deployment
    write_tree(render_deployment(d, tmp_path), tmp_path / "conf")
    walked = steps(tmp_path / "conf", "trunk-carrier", "+15550000001")
    assert walked[-9:] == [
        ("set", "sipagent_refused=limit_exceeded"),
        ("set", "sip_rh_Retry-After=7"),
        ("set", "sipagent_limit=max_calls"),
        ("limit", "hash sipagent_calls carrier 2 !NORMAL_TEMPORARY_FAILURE"),
        ("set", "sipagent_limit=calls_per_second"),
        ("limit", "hash sipagent_cps carrier 5/1 !NORMAL_TEMPORARY_FAILURE"),
        ("unset", "sipagent_limit"),
        ("unset", "sip_rh_Retry-After"),
        ("unset", "sipagent_refused"),
    ]
    # a number nobody serves is refused (404) before any limit counts it; a trunk without limits has none
    assert not any(app == "limit" for app, _ in steps(tmp_path / "conf", "trunk-carrier", "+15559999999"))
    assert not any(app == "limit" for app, _ in steps(tmp_path / "conf", "trunk-other", "+15550000002"))
    modules = (tmp_path / "conf" / "autoload_configs" / "modules.conf.xml").read_text()
    assert '<load module="mod_hash"/>' in modules
    # no inbound limits anywhere: mod_hash is not loaded
    plain = load(deployment_text(8021).replace("      limits: {max_calls: 2}\n", "", 1), tmp_path).deployment
    assert not build(plain, tmp_path).needs_hash


def test_behind_an_edge_each_node_enforces_its_share_and_validate_says_so() -> None:
    assert [node_share(10, n) for n in (1, 2, 3, 4)] == [10, 5, 4, 3]
    assert node_share(1, 3) == 1  # every node takes at least one call


def test_behind_an_edge_a_limit_refusal_tells_the_edge_and_no_later_response_does() -> None:
    from orchestrator.config.model import Trunk
    from orchestrator.render.plan import EDGE_REFUSED_VARIABLE, limit_actions

    trunk = Trunk.model_validate(
        {"name": "carrier", "inbound": {"transports": ["tcp"], "auth": {"acl": ["192.0.2.0/24"]},
                                        "limits": {"max_calls": 10, "retry_after_seconds": 9}}}
    )  # fmt: skip
    alone = limit_actions(trunk, 1)
    behind = limit_actions(trunk, 3, edge=True)
    assert all(EDGE_REFUSED_VARIABLE not in data for _, data in alone)
    assert ("set", f"{EDGE_REFUSED_VARIABLE}=limit") in behind and behind[-1] == ("unset", EDGE_REFUSED_VARIABLE)
    assert ("limit", "hash sipagent_calls carrier 4 !NORMAL_TEMPORARY_FAILURE") in behind  # ceil(10 / 3)


# -- mod_hash's limit, as the simulator models it ---------------------------------------------------


def test_limit_arguments_as_mod_dptools_reads_them() -> None:
    args = parse_limit("hash sipagent_cps carrier 5/1 !NORMAL_TEMPORARY_FAILURE")
    assert args is not None and (args.realm, args.resource, args.max, args.interval, args.transfer) == (
        "sipagent_cps",
        "carrier",
        5,
        1,
        "!NORMAL_TEMPORARY_FAILURE",
    )
    counting = parse_limit("hash r id")
    assert counting is not None and counting.max == -1 and counting.transfer == "limit_exceeded"
    assert parse_limit("hash r") is None  # USAGE


def test_hash_concurrency_is_released_at_hangup_and_the_rate_window_counts_refusals() -> None:
    h = HashLimits()
    calls = parse_limit("hash sipagent_calls carrier 2 !X")
    assert calls is not None
    assert [h.incr(u, calls, 100)[0] for u in ("a", "b", "c")] == [True, True, False]
    assert h.incr("a", calls, 100)[0]  # a channel counts once per key
    h.release("a")
    assert h.usage("sipagent_calls", "carrier") == 1 and h.incr("c", calls, 100)[0]
    rate = parse_limit("hash sipagent_cps carrier 2/1 !X")
    assert rate is not None
    assert [h.incr(u, rate, 200)[0] for u in ("p", "q", "r")] == [True, True, False]
    assert not h.incr("s", rate, 200)[0]  # still the same second: refused (and counted)
    assert h.incr("t", rate, 201)[0]  # the window restarts


# -- outbound, sans-I/O -----------------------------------------------------------------------------


def test_outbound_limiter_max_calls_and_a_sliding_second() -> None:
    now = [0.0]
    limiter = OutboundLimiter(
        {"c": CallLimits(max_calls=3, calls_per_second=2, retry_after_seconds=9)}, clock=lambda: now[0]
    )
    assert limiter.admit("other", 100) is None  # no limits on that trunk
    refused = limiter.admit("c", 3)
    assert refused is not None and (refused.limit, refused.retry_after) == ("max_calls", 9)
    assert limiter.admit("c", 0) is None and limiter.admit("c", 1) is None
    now[0] = 0.4
    refused = limiter.admit("c", 2)
    assert refused is not None and (refused.limit, refused.retry_after) == ("calls_per_second", 1)
    now[0] = 1.0  # the first admission left the window
    assert limiter.admit("c", 2) is None


# -- on the simulator ---------------------------------------------------------------------------------


class Harness:
    def __init__(self, sim: SimulatedFreeSwitch, controller: Controller, notices: list[Notice], tmp: Path) -> None:
        self.sim, self.controller, self.notices, self.tmp = sim, controller, notices, tmp
        write_tree(render_deployment(controller.deployment, tmp), tmp / "conf")

    async def wait(self, kind: str, call: str, timeout: float = 5.0) -> Notice:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for n in self.notices:
                if n.kind == kind and n.call.uuid == call:
                    return n
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind} for {call}: {[(n.kind, n.call.uuid) for n in self.notices]}")

    async def inbound(self, number: str = "+15550000001", trunk: str = "carrier") -> str:
        """A call through the rendered dialplan's steps for ``number`` (limits included)."""
        ch = await self.sim.inbound_call(
            destination=number, context=f"trunk-{trunk}", apps=steps(self.tmp / "conf", f"trunk-{trunk}", number)
        )
        return ch.uuid


async def harness(tmp_path: Path, text: str) -> tuple[SimulatedFreeSwitch, Controller, list[Notice]]:
    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    notices: list[Notice] = []
    d = load(text.replace("port: 8021", f"port: {sim.port}"), tmp_path).deployment
    controller = Controller(d, tmp_path, tokens=fork.Tokens(b"k"), backoff=Backoff(initial=0.02, maximum=0.1))
    controller.add_listener(notices.append)
    await controller.start()
    for node in controller.nodes.values():
        await asyncio.wait_for(node.synced.wait(), 5)
    return sim, controller, notices


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    sim, controller, notices = await harness(tmp_path, deployment_text(8021))
    try:
        yield Harness(sim, controller, notices, tmp_path)
    finally:
        await controller.stop()
        await sim.stop()


def _metric(controller: Controller, name: str, labels: dict[str, str]) -> float:
    value = controller.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_third_inbound_call_gets_503_with_retry_after_and_a_record(h: Harness) -> None:
    first, second = await h.inbound(), await h.inbound()
    await h.wait("answered", first)
    await h.wait("answered", second)
    third = await h.inbound()
    await h.wait("ended", third)
    refused = h.controller.describe(third)
    assert refused is not None
    assert (refused["result"], refused["refused"], refused["limit"]) == (
        "limit_exceeded",
        "limit_exceeded",
        "max_calls",
    )
    assert refused["hangup"]["sip_status"] == 503 and refused["hangup"]["cause"] == "NORMAL_TEMPORARY_FAILURE"
    assert refused["trunk"] == "carrier" and refused["timings"]["answered"] is None
    labels = {"trunk": "carrier", "direction": "inbound", "limit": "max_calls"}
    assert _metric(h.controller, "sipagent_limit_refusals_total", labels) == 1
    assert not any(f"uuid_park {third}" in c for c in h.sim.received_commands)  # never parked, never claimed
    # the other trunk has no limit; and once a call ends, the trunk takes a new one (the count is released)
    await h.wait("answered", await h.inbound("+15550000002", "other"))
    await h.sim.remote_hangup(first)
    await h.wait("ended", first)
    fourth = await h.inbound()
    await h.wait("answered", fourth)


async def test_the_refusal_is_answered_503_with_retry_after(h: Harness) -> None:
    calls = [await h.inbound() for _ in range(2)]
    for uuid in calls:
        await h.wait("answered", uuid)
    ch = await h.sim.inbound_call(
        destination="+15550000001", context="trunk-carrier", apps=steps(h.tmp / "conf", "trunk-carrier", "+15550000001")
    )
    assert ch.sip_response == (503, "Service Unavailable", {"Retry-After": "5"})
    names = [e.name for e in ch.events]
    limit = max(i for i, e in enumerate(ch.events) if e.name == "CHANNEL_EXECUTE" and e.get("Application") == "limit")
    # the limit application hangs up, then returns; no park
    assert names[limit : limit + 3] == ["CHANNEL_EXECUTE", "CHANNEL_HANGUP", "CHANNEL_EXECUTE_COMPLETE"]
    assert "CHANNEL_PARK" not in names and names[-1] == "CHANNEL_STATE"
    # an admitted call carries none of the refusal's variables (its 200 OK has no Retry-After)
    admitted = h.sim.channels[calls[0]].variables
    assert "sip_rh_Retry-After" not in admitted and "sipagent_refused" not in admitted and admitted["limit_usage"]


async def test_calls_per_second_refuses_within_the_second(tmp_path: Path) -> None:
    sim, controller, notices = await harness(tmp_path, deployment_text(8021, inbound="{calls_per_second: 2}"))
    h = Harness(sim, controller, notices, tmp_path)
    second = [1000.0]
    sim.limit_clock = lambda: second[0]  # mod_hash's window is a wall-clock second: keep the burst inside one
    try:
        uuids = [await h.inbound() for _ in range(3)]
        ended = await h.wait("ended", uuids[2])
        assert (ended.call.refused, ended.call.limit) == ("limit_exceeded", "calls_per_second")
        labels = {"trunk": "carrier", "direction": "inbound", "limit": "calls_per_second"}
        assert _metric(controller, "sipagent_limit_refusals_total", labels) == 1
        for uuid in uuids[:2]:
            await h.wait("answered", uuid)
        second[0] = 1001.0  # the next second: admitted again (the refused call counted in its own second only)
        await h.wait("answered", await h.inbound())
    finally:
        await controller.stop()
        await sim.stop()


async def test_outbound_over_the_limit_gets_429_with_retry_after(h: Harness) -> None:
    app = create_app(h.controller, TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    body = {"trunk": "carrier", "to": "+15557654321", "agent": "support"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        first = await client.post("/v1/calls", json=body, headers=auth)
        assert first.status_code == 201
        second = await client.post("/v1/calls", json=body, headers=auth)
        assert second.status_code == 429 and second.headers["Retry-After"] == "5"
        assert second.json()["error"]["code"] == "limit_exceeded"
        assert "outbound.limits.max_calls" in second.json()["error"]["message"]
    labels = {"trunk": "carrier", "direction": "outbound", "limit": "max_calls"}
    assert _metric(h.controller, "sipagent_limit_refusals_total", labels) == 1
    for _ in range(200):
        originates = [c for c in h.sim.received_commands if "originate" in c]
        if originates:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert len([c for c in h.sim.received_commands if "originate" in c]) == 1  # nothing sent for the refused one


async def test_records_file_shows_the_refusal(h: Harness) -> None:
    for _ in range(2):
        await h.wait("answered", await h.inbound())
    third = await h.inbound()
    await h.wait("ended", third)
    await h.controller.stop()
    records = [json.loads(line) for line in (h.tmp / "calls.jsonl").read_text().splitlines()]
    [record] = [r for r in records if r["id"] == third]
    assert record["result"] == "limit_exceeded" and record["limit"] == "max_calls"
    assert record["hangup"]["sip_status"] == 503
