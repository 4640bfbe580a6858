"""Every call flow of the controller against the FreeSWITCH simulator, over a real ESL socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from simulator import SimulatedFreeSwitch, split_args

from orchestrator.api.http import create_app
from orchestrator.calls.controller import CallError, Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_text
from orchestrator.esl.client import Backoff
from orchestrator.media import fork

PASSWORD = "sim-pass"
API_TOKEN = "api-token-123"


def deployment_text(ports: list[int]) -> str:
    nodes = "".join(f"    - {{name: fs{i + 1}, port: {port}}}\n" for i, port in enumerate(ports))
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
      headers: [X-Customer-Id]
    outbound: {{address: sbc.carrier.example, caller_id: "+15550009999"}}
numbers:
  - {{number: "+15550000001", trunk: carrier, agent: support}}
  - {{number: "+15550000002", trunk: carrier, agent: sales}}
agents:
  - {{name: support, protocol: raw, url: "ws://127.0.0.1:9000/a"}}
  - {{name: sales, protocol: twilio, url: "wss://agents.example/t"}}
orchestrator:
  media_url: ws://127.0.0.1:8090
  records: calls.jsonl
  api: {{token: {API_TOKEN}}}
  nodes:
{nodes}"""


class Harness:
    """Simulators, a controller connected to them, and the notices it emitted."""

    def __init__(self, sims: list[SimulatedFreeSwitch], controller: Controller, notices: list[Notice], tmp: Path):
        self.sims, self.controller, self.notices, self.tmp = sims, controller, notices, tmp

    @property
    def sim(self) -> SimulatedFreeSwitch:
        return self.sims[0]

    async def wait(self, kind: str, call: str = "", timeout: float = 5.0, **data: Any) -> Notice:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for n in self.notices:
                if (
                    n.kind == kind
                    and (not call or n.call.uuid == call)
                    and all(n.data.get(k) == v for k, v in data.items())
                ):
                    return n
            await asyncio.sleep(0.01)
        raise AssertionError(
            f"no {kind} notice for {call or 'any call'}; got {[(n.kind, n.data) for n in self.notices]}"
        )

    async def inbound(self, number: str = "+15550000001", agent: str = "support", **kw: Any) -> str:
        channel = await self.sim.inbound_call(
            destination=number,
            caller_id="+15551230000",
            context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": agent, "sipagent_number": number},
            sip_headers={"X-Customer-Id": "42", "X-Secret-Internal": "nope"},
            park_timeout="10:NORMAL_TEMPORARY_FAILURE",
            **kw,
        )
        return channel.uuid


async def make_controller(text: str, tmp: Path, notices: list[Notice]) -> Controller:
    result = check_text(text, "d.yaml", {}, tmp)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    controller = Controller(
        result.deployment, tmp, tokens=fork.Tokens(b"test-secret"), backoff=Backoff(initial=0.02, maximum=0.1)
    )
    controller.add_listener(notices.append)
    await controller.start()
    for node in controller.nodes.values():
        await asyncio.wait_for(node.synced.wait(), 5)
    return controller


@pytest.fixture()
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    notices: list[Notice] = []
    controller = await make_controller(deployment_text([sim.port]), tmp_path, notices)
    harness = Harness([sim], controller, notices, tmp_path)
    try:
        yield harness
    finally:
        await controller.stop()
        await sim.stop()


def commands_for(sim: SimulatedFreeSwitch, uuid: str) -> list[str]:
    return [c for c in sim.received_commands if uuid in c]


# -- inbound ------------------------------------------------------------------------------------


async def test_inbound_call_is_claimed_answered_and_forked(h: Harness) -> None:
    uuid = await h.inbound()
    answered = await h.wait("answered", uuid)
    assert answered.call.agent == "support" and answered.call.remote == "+15551230000"
    await h.wait("fork_connected", uuid)  # the fork command may follow the answered notice
    cmds = commands_for(h.sim, uuid)
    kinds = [c.split(" ")[1] for c in cmds if c.startswith("api ")]
    assert kinds[:4] == ["uuid_park", "uuid_setvar_multi", "uuid_answer", "uuid_audio_fork"]
    channel = h.sim.channels[uuid]
    assert channel.answered and channel.variables["sip_refer_continue_after_reply"] == "true"
    assert channel.variables["send_silence_when_idle"] == "-1"
    start = next(c for c in cmds if "uuid_audio_fork" in c and " start " in c).split(" ")
    url = urlparse(start[4])
    assert url.path == f"/calls/{uuid}"
    assert h.controller.tokens.verify(uuid, parse_qs(url.query)["token"][0])
    assert start[5:8] == ["mono", "8k", "sipagent"]
    meta = json.loads(start[8].replace("\\s", " "))
    assert meta["variables"]["customer_id"] == "42"
    assert "X-Secret-Internal" not in json.dumps(meta) and "nope" not in json.dumps(meta)  # only configured headers
    await h.wait("fork_connected", uuid)


async def test_wideband_call_forks_at_16k(h: Harness) -> None:
    uuid = await h.inbound(codec="G722", rate=16000)
    await h.wait("fork_connected", uuid)
    start = next(c for c in commands_for(h.sim, uuid) if " start " in c)
    assert " mono 16k sipagent " in start


async def test_unknown_number_is_rejected_with_404(h: Harness) -> None:
    uuid = await h.inbound(number="+15559999999")
    ended = await h.wait("ended", uuid)
    # refused before answer: 404 to the caller, no agent, no fork, and a record that says so
    assert f"api uuid_kill {uuid} UNALLOCATED_NUMBER" in h.sim.received_commands
    assert [n.kind for n in h.notices if n.call.uuid == uuid] == ["hangup", "ended"]
    assert ended.call.hangup is not None and ended.call.hangup.cause == "UNALLOCATED_NUMBER"
    assert ended.call.hangup_by == "orchestrator" and ended.call.answered_at is None and ended.call.fork == "none"
    assert not any(" start " in c for c in commands_for(h.sim, uuid))
    assert h.controller.describe(uuid)["result"] == "not_found"


async def test_dtmf_both_ways_and_remote_hangup(h: Harness) -> None:
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    await h.sim.remote_dtmf(uuid, "12#")
    await h.wait("dtmf", uuid, digit="#")
    digits = [n.data["digit"] for n in h.notices if n.kind == "dtmf" and n.call.uuid == uuid]
    assert digits == ["1", "2", "#"]
    await h.controller.send_dtmf(uuid, "9*", 120)
    assert h.sim.channels[uuid].dtmf_sent == ["9*@120"]  # digits@duration, as uuid_send_dtmf got them
    with pytest.raises(CallError, match="digits"):
        await h.controller.send_dtmf(uuid, "12x")
    await h.sim.remote_hangup(uuid, "NORMAL_CLEARING", 200)
    ended = await h.wait("ended", uuid)
    assert ended.call.hangup_by == "remote" and ended.call.hangup is not None
    assert ended.call.hangup.result == "completed"
    await h.controller.stop()  # flush records
    [record] = [json.loads(line) for line in (h.tmp / "calls.jsonl").read_text().splitlines()]
    assert record["id"] == uuid and record["dtmf"] == {"received": "12#", "sent": "9*"}
    assert record["direction"] == "inbound" and record["agent"] == "support" and record["trunk"] == "carrier"
    assert record["result"] == "completed" and record["hangup"]["sip_status"] == 200
    assert record["timings"]["answered"] is not None and "mos" in record["quality"]


async def test_agent_hangup_with_reason(h: Harness) -> None:
    uuid = await h.inbound()
    await h.wait("answered", uuid)
    await h.controller.hangup(uuid, "busy", by="agent")
    ended = await h.wait("ended", uuid)
    assert f"api uuid_kill {uuid} USER_BUSY" in h.sim.received_commands
    assert ended.call.hangup_by == "agent"
    with pytest.raises(CallError, match="no active call"):
        await h.controller.hangup(uuid)
    with pytest.raises(CallError):
        await h.controller.hangup("not-a-call", "completed")


async def test_fork_connect_failure_ends_the_call(h: Harness) -> None:
    uuid = await h.inbound()
    await h.wait("answered", uuid)
    await h.sim.fire_custom(uuid, "mod_audio_fork::connect_failed", '{"reason":"Unable to connect"}')
    await h.wait("fork_failed", uuid)
    ended = await h.wait("ended", uuid)
    assert ended.call.hangup_by == "orchestrator"


# -- outbound -----------------------------------------------------------------------------------


async def test_outbound_answered(h: Harness) -> None:
    h.sim.set_originate_outcome("+15557654321", "answer")
    call = await h.controller.originate(
        trunk="carrier",
        to="+15557654321",
        agent="sales",
        headers={"X-Call-Purpose": "demo, test"},
        variables={"lead": "7"},
    )
    progress = await h.wait("progress", call.uuid)
    assert progress.data["status"] == 180
    await h.wait("answered", call.uuid)
    await h.wait("fork_connected", call.uuid)
    originate = next(c for c in h.sim.received_commands if c.startswith("bgapi originate"))
    assert f"origination_uuid={call.uuid}" in originate
    assert "origination_caller_id_number=+15550009999" in originate  # the trunk's caller ID
    assert "sip_h_X-Call-Purpose=demo,\\\\\\\\stest" in originate  # a blank, as it survives three cleanings
    assert "sofia/gateway/carrier/+15557654321 &park()" in originate
    channel = h.sim.channels[call.uuid]
    assert channel.variables["sip_h_X-Call-Purpose"] == "demo, test"
    assert channel.variables["sipagent_var_lead"] == "7"
    await h.controller.hangup(call.uuid, by="api")
    ended = await h.wait("ended", call.uuid)
    assert ended.call.hangup is not None and ended.call.hangup.result == "completed"


@pytest.mark.parametrize(
    ("outcome", "status", "result"),
    [
        ("486", 486, "busy"),
        ("404", 404, "not_found"),
        ("480", 480, "no_answer"),
        ("403", 403, "rejected"),
        ("488", 488, "incompatible"),
        ("503", 503, "unavailable"),
        ("603", 603, "rejected"),
    ],
)
@pytest.mark.parametrize("bgjob_first", [True, False], ids=["job-first", "hangup-first"])
async def test_outbound_failures(h: Harness, outcome: str, status: int, result: str, bgjob_first: bool) -> None:
    h.sim.bgjob_before_hangup_complete = bgjob_first
    h.sim.set_originate_outcome("+15557654321", outcome)
    call = await h.controller.originate(trunk="carrier", to="+15557654321", agent="sales")
    ended = await h.wait("ended", call.uuid)
    hangup = ended.call.hangup
    assert hangup is not None
    assert (hangup.sip_status, hangup.result) == (status, result)
    assert h.controller.describe(call.uuid)["result"] == result


async def test_outbound_no_answer(h: Harness) -> None:
    h.sim.set_originate_outcome("+15557654321", "no-answer")
    h.sim.ring_time_scale = 0.01  # the 5 s minimum rings for 50 ms
    call = await h.controller.originate(trunk="carrier", to="+15557654321", agent="sales", timeout=5)
    ended = await h.wait("ended", call.uuid, timeout=10)
    assert ended.call.hangup is not None and ended.call.hangup.result == "no_answer"
    assert any("originate_timeout=5" in c for c in commands_for(h.sim, call.uuid))  # what the switch rang for


async def test_outbound_rejects_bad_requests(h: Harness) -> None:
    with pytest.raises(CallError, match="no outbound trunk"):
        await h.controller.originate(trunk="nope", to="+15557654321", agent="sales")
    with pytest.raises(CallError, match="no agent"):
        await h.controller.originate(trunk="carrier", to="+15557654321", agent="nobody")
    with pytest.raises(CallError, match=r"E\.164"):
        await h.controller.originate(trunk="carrier", to="5557654321x", agent="sales")
    with pytest.raises(CallError, match="control characters"):
        await h.controller.originate(trunk="carrier", to="+15557654321", agent="sales", headers={"X-A": "a\r\nB: c"})
    with pytest.raises(CallError, match="X- header"):
        await h.controller.originate(trunk="carrier", to="+15557654321", agent="sales", headers={"Via": "x"})


# -- transfer -----------------------------------------------------------------------------------


async def test_refer_success(h: Harness) -> None:
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    h.sim.set_refer_outcome(uuid, "200")
    await h.controller.transfer(uuid, "sip:+15559998888@sbc.carrier.example")
    result = await h.wait("transfer", uuid)
    assert result.data["succeeded"] is True and result.data["sip_status"] == 200
    ended = await h.wait("ended", uuid)
    assert ended.call.transfer is not None and ended.call.transfer.status == "succeeded"


async def test_refer_failure_keeps_or_ends_the_call_as_freeswitch_does(h: Harness) -> None:
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    h.sim.set_refer_outcome(uuid, "603")
    await h.controller.transfer(uuid, "+15559998888")  # a number: sent to the trunk's outbound address
    result = await h.wait("transfer", uuid)
    assert result.data["succeeded"] is False and result.data["sip_status"] == 603
    deflect = next(c for c in h.sim.received_commands if "uuid_deflect" in c)
    assert deflect.endswith("sip:+15559998888@sbc.carrier.example")
    if result.data["call_continues"]:
        assert h.controller.call(uuid) is not None
    else:
        await h.wait("ended", uuid)


async def test_bridge_transfer(h: Harness) -> None:
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    h.sim.set_originate_outcome("+15559998888", "answer")
    await h.controller.transfer(uuid, "+15559998888", method="bridge")
    result = await h.wait("transfer", uuid)
    assert result.data["succeeded"] is True
    assert any(f"uuid_audio_fork {uuid} stop" in c for c in h.sim.received_commands)
    assert any(
        f"uuid_transfer {uuid}" in c and "bridge:sofia/gateway/carrier/+15559998888" in c
        for c in h.sim.received_commands
    )


async def test_transfer_needs_an_answered_call(h: Harness) -> None:
    h.sim.set_originate_outcome("+15557654321", "no-answer")
    call = await h.controller.originate(trunk="carrier", to="+15557654321", agent="sales")
    await h.wait("progress", call.uuid)
    with pytest.raises(CallError, match="answered"):
        await h.controller.transfer(call.uuid, "+15559998888")


# -- resilience ---------------------------------------------------------------------------------


async def test_esl_drop_mid_call_loses_no_call(h: Harness) -> None:
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    client = h.controller.nodes["fs1"].client
    before = client.connections
    await h.sim.drop_connections()
    for _ in range(200):
        if client.connections > before and client.connected:
            break
        await asyncio.sleep(0.01)
    assert client.connections == before + 1
    call = h.controller.call(uuid)
    assert call is not None and call.state == "answered" and not call.reattached  # known, not re-forked
    await h.sim.remote_dtmf(uuid, "5")
    await h.wait("dtmf", uuid, digit="5")
    await h.sim.remote_hangup(uuid)
    ended = await h.wait("ended", uuid)
    assert ended.data["lost"] is False


async def test_call_ending_during_an_outage_is_recorded_as_lost(h: Harness) -> None:
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    await h.sim.restart_listener(pause=0.3)  # drops the link and refuses connections for a moment …
    await h.sim.remote_hangup(uuid)  # … while the caller hangs up: those events never reach us
    ended = await h.wait("ended", uuid, timeout=5)
    assert ended.data["lost"] is True


async def test_orchestrator_restart_reattaches_calls(h: Harness) -> None:
    answered = await h.inbound()
    await h.wait("fork_connected", answered)
    await h.controller.stop()
    waiting = await h.inbound(number="+15550000002", agent="sales")  # arrives while we are down
    notices: list[Notice] = []
    controller = await make_controller(deployment_text([h.sim.port]), h.tmp, notices)
    h.controller, h.notices = controller, notices
    again = await h.wait("answered", answered)
    assert again.data.get("reattached") and again.call.reattached
    await h.wait("fork_connected", answered)
    cmds = [c for c in commands_for(h.sim, answered) if "uuid_audio_fork" in c]
    assert f"uuid_audio_fork {answered} stop sipagent" in cmds[-2]  # the old fork died with the process
    assert " start " in cmds[-1]
    claimed = await h.wait("answered", waiting)
    assert claimed.call.agent == "sales"
    assert f"api uuid_park {waiting}" in h.sim.received_commands


async def test_garbage_from_freeswitch_reconnects_cleanly(h: Harness) -> None:
    uuid = await h.inbound()
    await h.wait("fork_connected", uuid)
    client = h.controller.nodes["fs1"].client
    before = client.connections
    await h.sim.send_raw(b"HTTP/1.1 200 OK\r\nGarbage\r\n\r\n")
    for _ in range(300):
        if client.connections > before and client.connected:
            break
        await asyncio.sleep(0.01)
    assert client.connections == before + 1
    assert "protocol error" in client.last_error
    assert h.controller.call(uuid) is not None


async def test_several_nodes(tmp_path: Path) -> None:
    sims = [SimulatedFreeSwitch(PASSWORD, hostname=f"node{i}") for i in (1, 2)]
    for s in sims:
        await s.start()
    notices: list[Notice] = []
    controller = await make_controller(deployment_text([s.port for s in sims]), tmp_path, notices)
    h = Harness(sims, controller, notices, tmp_path)
    try:
        for s in sims:
            s.set_originate_outcome("+15557654321", "answer")
        calls = [await controller.originate(trunk="carrier", to="+15557654321", agent="sales") for _ in range(4)]
        assert sorted(c.node for c in calls) == ["fs1", "fs1", "fs2", "fs2"]  # spread by load
        channel = await sims[1].inbound_call(
            destination="+15550000001",
            context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": "support", "sipagent_number": "+15550000001"},
        )
        answered = await h.wait("answered", channel.uuid)
        assert answered.call.node == "fs2"
        await sims[0].stop()  # one node goes away: the other still takes calls
        call = await controller.originate(trunk="carrier", to="+15557654321", agent="sales")
        assert call.node == "fs2"
    finally:
        await controller.stop()
        for s in sims:
            await s.stop()


async def test_a_node_lost_mid_call_loses_only_its_calls_recorded_as_lost(tmp_path: Path) -> None:
    """Two nodes with a call each; one node dies and stays away past node_lost_seconds: its call ends as lost
    (record lost: true, cause node_lost), the other node's call is untouched, new calls go to the survivor."""
    sims = [SimulatedFreeSwitch(PASSWORD, hostname=f"node{i}") for i in (1, 2)]
    for s in sims:
        await s.start()
    notices: list[Notice] = []
    text = deployment_text([s.port for s in sims]).replace(
        "  records: calls.jsonl", "  records: calls.jsonl\n  node_lost_seconds: 1"
    )
    controller = await make_controller(text, tmp_path, notices)
    h = Harness(sims, controller, notices, tmp_path)
    try:
        uuids = []
        for sim in sims:
            channel = await sim.inbound_call(
                destination="+15550000001",
                context="trunk-carrier",
                variables={"sipagent_trunk": "carrier", "sipagent_agent": "support", "sipagent_number": "+15550000001"},
            )
            await h.wait("answered", channel.uuid)
            uuids.append(channel.uuid)
        await sims[0].stop()  # node1 is gone
        ended = await h.wait("ended", uuids[0], timeout=5)
        assert ended.data["lost"] is True and ended.call.hangup is not None
        assert ended.call.hangup.result == "node_lost"
        assert controller.call(uuids[1]) is not None  # the other node's call is still up
        assert not [n for n in notices if n.kind == "ended" and n.call.uuid == uuids[1]]
        sims[1].set_originate_outcome("+15557654321", "answer")
        call = await controller.originate(trunk="carrier", to="+15557654321", agent="sales")
        assert call.node == "fs2"
    finally:
        await controller.stop()
        for s in sims:
            await s.stop()
    lines = [json.loads(line) for line in (tmp_path / "calls.jsonl").read_text().splitlines()]
    lost = [r for r in lines if r["id"] == uuids[0]]
    assert len(lost) == 1 and lost[0]["lost"] is True and lost[0]["result"] == "node_lost"


# -- HTTP API -----------------------------------------------------------------------------------


@pytest.fixture()
async def api(h: Harness) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(h.controller, API_TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def test_api_call_lifecycle(h: Harness, api: httpx.AsyncClient) -> None:
    h.sim.set_originate_outcome("+15557654321", "answer")
    r = await api.post("/v1/calls", json={"trunk": "carrier", "to": "+15557654321", "agent": "sales"}, headers=AUTH)
    assert r.status_code == 201, r.text
    call_id = r.json()["id"]
    await h.wait("answered", call_id)
    r = await api.get(f"/v1/calls/{call_id}", headers=AUTH)
    assert r.json()["state"] == "answered" and r.json()["progress"] == [180]
    assert (await api.get("/v1/calls", headers=AUTH)).json()["calls"][0]["id"] == call_id
    r = await api.post(f"/v1/calls/{call_id}/dtmf", json={"digits": "42"}, headers=AUTH)
    assert r.status_code == 202
    r = await api.delete(f"/v1/calls/{call_id}", headers=AUTH)
    assert r.status_code == 202
    await h.wait("ended", call_id)
    r = await api.get(f"/v1/calls/{call_id}", headers=AUTH)
    assert r.status_code == 200 and r.json()["result"] == "completed"  # the record, after the end


async def test_api_failure_outcome_is_reported(h: Harness, api: httpx.AsyncClient) -> None:
    h.sim.set_originate_outcome("+15557654321", "486")
    r = await api.post("/v1/calls", json={"trunk": "carrier", "to": "+15557654321", "agent": "sales"}, headers=AUTH)
    call_id = r.json()["id"]
    await h.wait("ended", call_id)
    body = (await api.get(f"/v1/calls/{call_id}", headers=AUTH)).json()
    assert body["result"] == "busy" and body["hangup"]["sip_status"] == 486 and body["hangup"]["cause"] == "USER_BUSY"


async def test_api_errors_are_json(h: Harness, api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/calls", json={"trunk": "carrier", "to": "+1555", "agent": "sales"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await api.post("/v1/calls", json={"trunk": "carrier", "to": "+1555"}, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    r = await api.post("/v1/calls", json={"trunk": "carrier"}, headers=AUTH)
    assert (
        r.status_code == 400 and r.json()["error"]["code"] == "invalid_request" and "to" in r.json()["error"]["message"]
    )
    r = await api.post("/v1/calls", json={"trunk": "nope", "to": "+15557654321", "agent": "sales"}, headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_trunk"
    r = await api.get("/v1/calls/unknown", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_call"
    r = await api.delete("/v1/calls/unknown", headers=AUTH)
    assert r.status_code == 404


async def test_health_and_metrics(h: Harness, api: httpx.AsyncClient) -> None:
    r = await api.get("/healthz")
    assert r.status_code == 200 and r.json()["nodes"] == {"fs1": True}
    h.sim.set_originate_outcome("+15557654321", "486")
    call = await h.controller.originate(trunk="carrier", to="+15557654321", agent="sales")
    await h.wait("ended", call.uuid)
    text = (await api.get("/metrics")).text
    assert 'sipagent_calls_total{direction="outbound",result="busy"} 1.0' in text
    assert 'sipagent_esl_connected{node="fs1"} 1.0' in text
    await h.sim.stop()
    for _ in range(100):
        if not h.controller.nodes["fs1"].client.connected:
            break
        await asyncio.sleep(0.01)
    r = await api.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"


async def test_api_disabled_without_token(h: Harness) -> None:
    app = create_app(h.controller, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        r = await client.get("/v1/calls", headers=AUTH)
        assert r.status_code == 503 and r.json()["error"]["code"] == "api_disabled"


# -- hostile requests ------------------------------------------------------------------------------
#: each would change the originate command if written into it as it is
INJECTIONS = [
    "x}sofia/gateway/carrier/+15550000001,sip_h_X-B={",
    "x}sofia/gateway/carrier/+15550000001 &park()",
    "}{",
    "a:_:{^^,}sofia/gateway/carrier/+15550000001",
    "${sofia_contact(1000@default)}",
    "$\\{x}",
    "x\nbgapi originate sofia/gateway/carrier/+15550000001 &park()",
    "x\r\nX-Evil: 1",
    "nul\x00",
]
#: each is carried exactly (FreeSWITCH's parsing is modelled by the simulator: tests/simulator/fsstrings.py)
CARRIED = [
    "demo, test",
    " edges ",
    "back\\slash\\",
    "\\s\\n\\' are text",
    "it's 'quoted' \"double\"",
    "{balanced {nested}} x={y}",
    "^^,caret ^^: a^b",
    "a,b=c;d|e[f]<g>",
    "100%41 $x $$y $ {z}",
    "héllo 😀",
]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize("where", ["headers", "variables", "agent_overrides"])
async def test_nothing_an_api_caller_sends_changes_the_command(
    h: Harness, api: httpx.AsyncClient, value: str, where: str
) -> None:
    key = {"headers": "X-Campaign", "variables": "campaign", "agent_overrides": "first_message"}[where]
    body = {"trunk": "carrier", "to": "+15557654321", "agent": "sales", where: {key: value}}
    r = await api.post("/v1/calls", json=body, headers=AUTH)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] in ("invalid_header", "invalid_variable", "invalid_overrides", "invalid_request")
    await asyncio.sleep(0.05)
    assert not any("originate" in c for c in h.sim.received_commands)
    assert h.sim.dial_strings == [] and h.controller.tracker.calls == {}


async def test_what_is_carried_arrives_exactly_and_only_the_requested_number_is_dialled(h: Harness) -> None:
    h.sim.set_originate_outcome("+15557654321", "486")
    headers = {f"X-V{i}": v for i, v in enumerate(CARRIED)}
    variables = {f"v{i}": v for i, v in enumerate(CARRIED)}
    call = await h.controller.originate(
        trunk="carrier", to="+15557654321", agent="sales", headers=headers, variables=variables,
        caller_id="+15550001111", agent_overrides={"first_message": CARRIED[4]},
    )  # fmt: skip
    await h.wait("ended", call.uuid)
    [dial] = h.sim.dial_strings
    assert [[leg.endpoint for leg in group] for group in dial.groups] == [["sofia/gateway/carrier/+15557654321"]]
    got = dict(dial.variables)
    for name, value in headers.items():
        assert got[f"sip_h_{name}"] == value
    for name, value in variables.items():
        assert got[f"sipagent_var_{name}"] == value
    assert got["sipagent_override_first_message"] == CARRIED[4]
    assert got["origination_caller_id_number"] == "+15550001111"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"to": "0044123456789"}, "invalid_destination"),
        ({"to": "15557654321"}, "invalid_destination"),
        ({"to": "sip:+1555@host,sofia/gateway/carrier/+1666"}, "invalid_destination"),
        ({"to": "sip:+1555@host|x"}, "invalid_destination"),
        ({"to": "+15557654321 &park()"}, "invalid_destination"),
        ({"caller_id": "Alice"}, "invalid_caller_id"),
        ({"caller_id": "+1555\x00"}, "invalid_caller_id"),
        ({"headers": {"Not-X": "v"}}, "invalid_header"),
        ({"headers": {"X-A b": "v"}}, "invalid_header"),
        ({"headers": {"X-A": 5}}, "invalid_request"),
        ({"headers": {"X-A": "x" * 1025}}, "invalid_request"),
        ({"headers": {f"X-H{i}": "v" for i in range(65)}}, "invalid_request"),
        ({"headers": {f"X-H{i}": "v" * 1000 for i in range(17)}}, "request_too_large"),
        ({"variables": {"Bad Name": "v"}}, "invalid_variable"),
        ({"variables": {"system__caller_id": "v"}}, "invalid_variable"),
        ({"variables": ["a"]}, "invalid_request"),
        ({"timeout_seconds": 1}, "invalid_request"),
        ({"timeout_seconds": "10; rm"}, "invalid_request"),
        ({"agent_overrides": {"voice_id": "a b"}}, "invalid_overrides"),
        ({"agent_overrides": {"unknown": "x"}}, "invalid_overrides"),
        ({"agent_overrides": {"prompt": "x" * 1025}}, "invalid_request"),
        ({"trunk": ["carrier"]}, "invalid_request"),
        ({"agent": "sales\n"}, "unknown_agent"),
        ({"extra": 1}, "invalid_request"),
    ],
)
async def test_api_refuses_what_cannot_be_dialled(
    h: Harness, api: httpx.AsyncClient, body: dict[str, Any], code: str
) -> None:
    request = {"trunk": "carrier", "to": "+15557654321", "agent": "sales", **body}
    r = await api.post("/v1/calls", json=request, headers=AUTH)
    assert 400 <= r.status_code < 500 and r.json()["error"]["code"] == code, r.text
    assert len(r.text) < 2000  # bounded: never echoes a whole hostile request
    assert not any("originate" in c for c in h.sim.received_commands)


async def test_api_bounds_bodies_before_parsing(h: Harness, api: httpx.AsyncClient) -> None:
    huge = b'{"trunk": "carrier", "to": "+15557654321", "agent": "sales", "pad": "' + b"x" * 70000 + b'"}'
    r = await api.post("/v1/calls", content=huge, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"

    async def chunks():  # no Content-Length: counted as it arrives
        for _ in range(100):
            yield b" " * 1000

    r = await api.post("/v1/calls", content=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 413
    for deep in (b"[" * 50000, b'{"a":' * 5000 + b"1" + b"}" * 5000, b'{"headers": ' + b"[" * 20 + b"]" * 20 + b"}"):
        r = await api.post("/v1/calls", content=deep, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 400, r.text
    for junk in (b"\xff\xfe garbage", b'{"trunk": "carrier", "to": "+1', b"1e400", b'{"timeout_seconds": 1e400}'):
        r = await api.post("/v1/calls", content=junk, headers={**AUTH, "Content-Type": "application/json"})
        assert r.status_code == 400, (junk, r.text)
    r = await api.get("/v1/calls/" + "a" * 200, headers=AUTH)
    assert r.status_code == 400
    r = await api.get("/v1/calls/..%2f..%2fetc", headers=AUTH)
    assert r.status_code in (400, 404)
    r = await api.delete("/v1/calls/x", params={"reason": "x" * 100}, headers=AUTH)
    assert r.status_code == 400
    h.sim.set_originate_outcome("+15557654321", "answer")
    ok = await api.post("/v1/calls", json={"trunk": "carrier", "to": "+15557654321", "agent": "sales"}, headers=AUTH)
    assert ok.status_code == 201  # and the API still works


async def test_dtmf_with_pauses_and_one_grammar(h: Harness, api: httpx.AsyncClient) -> None:
    h.sim.set_originate_outcome("+15557654321", "answer")
    call = await h.controller.originate(trunk="carrier", to="+15557654321", agent="sales")
    await h.wait("answered", call.uuid)
    await h.controller.send_dtmf(call.uuid, "1w2Wb#", 120)  # pauses: what agents are told they may send
    assert f"api uuid_send_dtmf {call.uuid} 1w2WB#@120" in h.sim.received_commands
    for digits in ("1 2", "12@100", "x", "1" * 65, "~1", "١"):
        r = await api.post(f"/v1/calls/{call.uuid}/dtmf", json={"digits": digits}, headers=AUTH)
        assert r.status_code == 400, digits
    r = await api.post(f"/v1/calls/{call.uuid}/dtmf", json={"digits": "9w9"}, headers=AUTH)
    assert r.status_code == 202


@pytest.mark.parametrize("module", ["mod_audio_fork", "mod_audio_stream"])
async def test_a_refused_fork_start_fails_the_call_for_either_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str
) -> None:
    """FreeSWITCH answers the start with -ERR (the module refused it): the call is failed, not left silent."""
    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()

    async def refuse(self: SimulatedFreeSwitch, arg: str, job: Any) -> str:
        return "-ERR Operation Failed\n" if " start " in f" {arg} " else "+OK Success\n"

    monkeypatch.setattr(type(sim), f"api_uuid_audio_{module.split('_')[-1]}", refuse)
    text = deployment_text([sim.port]).replace(
        "  media_url: ws://127.0.0.1:8090\n",
        f"  media_url: ws://127.0.0.1:8090\n  media: {{fork_module: {module}, playback: file}}\n",
    )
    notices: list[Notice] = []
    controller = await make_controller(text, tmp_path, notices)
    h = Harness([sim], controller, notices, tmp_path)
    try:
        uuid = await h.inbound()
        failed = await h.wait("fork_failed", uuid)
        assert "Operation Failed" in failed.data["reason"]
        ended = await h.wait("ended", uuid)
        assert ended.call.fork == "closed" and ended.call.media["outcome"] == "media_failed"
        assert controller.describe(uuid)["result"] == "media_failed"
        exposition = controller.metrics.render().decode()
        assert 'sipagent_fork_failures_total{reason="start_refused"} 1.0' in exposition
        assert 'reason="connect_failed"' not in exposition  # counted once, as what it was
    finally:
        await controller.stop()
        await sim.stop()


async def test_long_carrier_headers_never_cost_the_call_its_fork(tmp_path: Path) -> None:
    """A carrier sends many long X- headers the trunk passes on: the fork metadata (8 KiB at most in
    mod_audio_fork) drops the longest variables and the call still gets its agent."""
    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    names = [f"X-Long-{i}" for i in range(12)]
    text = deployment_text([sim.port]).replace(
        "headers: [X-Customer-Id]", f"headers: [X-Customer-Id, {', '.join(names)}]"
    )
    notices: list[Notice] = []
    controller = await make_controller(text, tmp_path, notices)
    h = Harness([sim], controller, notices, tmp_path)
    try:
        channel = await sim.inbound_call(
            destination="+15550000001", caller_id="+15551230000", context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": "support", "sipagent_number": "+15550000001"},
            sip_headers={"X-Customer-Id": "42", **{n: "v" * 1000 for n in names}},
            park_timeout="10:NORMAL_TEMPORARY_FAILURE",
        )  # fmt: skip
        await h.wait("fork_connected", channel.uuid)
        start = next(c for c in commands_for(sim, channel.uuid) if " start " in c)
        meta = json.loads(split_args(start.split(" ", 2)[2], 10)[6])  # as FreeSWITCH splits it
        assert meta["variables"]["customer_id"] == "42" and meta["variables"]["caller_id"] == "+15551230000"
        call = controller.call(channel.uuid)
        assert call is not None and len(call.media["variables_dropped"]) >= 4
    finally:
        await controller.stop()
        await sim.stop()


def test_node_endpoints_default_and_configured(tmp_path: Path) -> None:
    from orchestrator.calls.nodes import node_endpoints

    one = check_text(deployment_text([8021]).split("  nodes:")[0], "d.yaml", {}, tmp_path).deployment
    assert one is not None
    assert [(e.host, e.port, e.password, e.name) for e in node_endpoints(one)] == [
        ("127.0.0.1", 8021, PASSWORD, "fs1")
    ]  # the node at freeswitch.event_socket
    wildcard = check_text(
        deployment_text([8021]).split("  nodes:")[0].replace("{password:", "{listen_ip: 0.0.0.0, password:"),
        "d.yaml",
        {},
        tmp_path,
    ).deployment
    assert wildcard is not None
    assert node_endpoints(wildcard)[0].host == "127.0.0.1"  # listening on all addresses: reached on loopback
    two = check_text(deployment_text([9001, 9002]), "d.yaml", {}, tmp_path).deployment
    assert two is not None
    assert [(e.port, e.password, e.name) for e in node_endpoints(two)] == [
        (9001, PASSWORD, "fs1"),
        (9002, PASSWORD, "fs2"),
    ]
