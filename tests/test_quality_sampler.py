"""Live quality sampling (orchestrator/calls/sampler.py) against the FreeSWITCH simulator, over real ESL sockets:
values on the call, in the API and the record; quality_low once per drop; a slow node holds up nobody else;
sampling ends with the call; the metrics; the settings. Also the simulator's ``json`` mediaStats API itself."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from simulator import SimulatedFreeSwitch

from orchestrator.api.http import create_app
from orchestrator.calls import quality
from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_text
from orchestrator.esl import commands
from orchestrator.esl.client import Backoff
from orchestrator.media import fork

PASSWORD = "sim-pass"
TOKEN = "api-token-123"
INTERVAL = 0.1


def deployment(ports: list[int], quality_yaml: str = "{}", freeswitch_yaml: str = "") -> str:
    nodes = "".join(f"    - {{name: fs{i + 1}, port: {port}}}\n" for i, port in enumerate(ports))
    return f"""
freeswitch:
  bind_ip: 127.0.0.1
  event_socket: {{password: {PASSWORD}}}
{freeswitch_yaml}transports: {{tcp: {{port: 5060}}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
numbers:
  - {{number: "+15550000001", trunk: carrier, agent: support}}
agents:
  - {{name: support, protocol: raw, url: "ws://127.0.0.1:9000/a"}}
orchestrator:
  records: calls.jsonl
  api: {{token: {TOKEN}}}
  quality: {quality_yaml}
  nodes:
{nodes}"""


class Rig:
    def __init__(self, sims: list[SimulatedFreeSwitch], controller: Controller, notices: list[Notice]) -> None:
        self.sims, self.controller, self.notices = sims, controller, notices

    @property
    def sim(self) -> SimulatedFreeSwitch:
        return self.sims[0]

    async def call(self, sim: SimulatedFreeSwitch | None = None) -> str:
        ch = await (sim or self.sim).inbound_call(
            destination="+15550000001",
            context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": "support", "sipagent_number": "+15550000001"},
            park_timeout="10:NORMAL_TEMPORARY_FAILURE",
        )
        await until(lambda: (c := self.controller.call(ch.uuid)) is not None and c.answered_at is not None)
        return ch.uuid

    def kinds(self, uuid: str) -> list[str]:
        return [n.kind for n in self.notices if n.call.uuid == uuid]

    def samples(self, uuid: str) -> int:
        call = self.controller.call(uuid)
        return call.live_quality.samples if call is not None and call.live_quality is not None else 0


async def until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


async def start_rig(
    tmp: Path, n: int = 1, quality_yaml: str = "{}", interval: float = INTERVAL, freeswitch_yaml: str = ""
) -> Rig:
    sims = [SimulatedFreeSwitch(PASSWORD) for _ in range(n)]
    for sim in sims:
        sim.rtcp_audio_interval_msec = "5000"  # the rendered profiles' rtcp-audio-interval-msec (the default)
        await sim.start()
    result = check_text(deployment([s.port for s in sims], quality_yaml, freeswitch_yaml), "d.yaml", {}, tmp)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    controller = Controller(
        result.deployment, tmp, tokens=fork.Tokens(b"test-secret"), backoff=Backoff(initial=0.02, maximum=0.1)
    )
    if interval:
        controller.quality.interval = interval  # the settings allow 1 s at least; tests sample faster
        controller.quality.timeout = 0.3
    notices: list[Notice] = []
    controller.add_listener(notices.append)
    await controller.start()
    for node in controller.nodes.values():
        await asyncio.wait_for(node.synced.wait(), 5)
    return Rig(sims, controller, notices)


@pytest.fixture()
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    r = await start_rig(tmp_path)
    try:
        yield r
    finally:
        await r.controller.stop()
        for sim in r.sims:
            await sim.stop()


def json_commands(sim: SimulatedFreeSwitch, uuid: str) -> list[str]:
    return [c for c in sim.received_commands if c.startswith("bgapi json ") and uuid in c]


# -- values on the call, in the API, in the record ----------------------------------------------------------------
async def test_samples_reach_the_call_the_api_and_the_record(rig: Rig) -> None:
    uuid = await rig.call()
    await until(lambda: rig.samples(uuid) >= 3)
    call = rig.controller.call(uuid)
    assert call is not None
    sent = json_commands(rig.sim, uuid)[0]
    assert sent == "bgapi " + commands.media_stats(uuid)
    series = call.quality_series
    clean = round(quality.e_model_mos(0, 0), 2)  # G.711 without loss or jitter: 4.4 (FreeSWITCH's own: 4.5)
    assert series[-1]["mos"] == clean and series[-1]["loss_pct"] == 0.0 and series[-1]["mos_call"] == 4.5
    assert sum(p["packets_in"] for p in series) > 0 and sum(p["packets_out"] for p in series) > 0
    assert all(b["t"] > a["t"] for a, b in itertools.pairwise(series))
    # mediaStats ran switch_core_media_set_stats: the channel's variables are fresh too
    assert float(rig.sim.channels[uuid].variables["rtp_audio_in_media_packet_count"]) > 0
    app = create_app(rig.controller, TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
        listed = (await api.get("/v1/calls", headers={"Authorization": f"Bearer {TOKEN}"})).json()["calls"]
    live = next(c for c in listed if c["id"] == uuid)["quality"]
    assert live["mos"] == clean and live["loss_pct"] == 0.0 and live["low"] is False and live["jitter_ms"] == 0.0
    rig.sim.set_rtp(uuid, jitter_ms=12.0)
    await until(lambda: (c := rig.controller.call(uuid)) is not None and c.quality_series[-1]["jitter_ms"] == 12.0)
    await rig.sim.remote_hangup(uuid)
    await until(lambda: uuid in rig.controller.ended)
    record: dict[str, Any] = rig.controller.ended[uuid]
    q = record["quality"]
    assert q["mos"] == 4.5 and q["packets_in"] > 0  # FreeSWITCH's figures at hang-up, as before
    assert q["jitter_max_variance"] == 144.0
    assert len(q["series"]) >= 4 and q["series"][-1]["jitter_ms"] == 12.0
    assert q["summary"]["samples"] == len(q["series"]) and q["summary"]["jitter_ms_max"] == 12.0
    assert q["summary"]["mos_min"] < clean and q["summary"]["low_events"] == 0  # 12 ms of jitter cost a little
    json.dumps(record)  # the record stays plain JSON


async def test_a_drop_raises_quality_low_once_and_recovery_quality_ok(rig: Rig) -> None:
    uuid = await rig.call()
    await until(lambda: rig.samples(uuid) >= 2)
    rig.sim.set_rtp(uuid, loss_pct=60)
    low = await_notice(rig, uuid, "quality_low")
    await low
    n = rig.samples(uuid)
    await until(lambda: rig.samples(uuid) >= n + 5)  # it stays bad: no second quality_low
    assert rig.kinds(uuid).count("quality_low") == 1
    notice = next(x for x in rig.notices if x.kind == "quality_low")
    assert notice.data["mos"] < 3.5 and notice.data["min_mos"] == 3.5 and notice.data["loss_pct"] >= 50
    call = rig.controller.call(uuid)
    assert call is not None and call.summary()["quality"]["low"] is True
    rig.sim.set_rtp(uuid, loss_pct=0)
    await await_notice(rig, uuid, "quality_ok")
    assert rig.kinds(uuid).count("quality_low") == 1 and rig.kinds(uuid).count("quality_ok") == 1
    text = rig.controller.metrics.render().decode()
    assert 'sipagent_quality_low_total{trunk="carrier"} 1.0' in text
    await rig.sim.remote_hangup(uuid)
    await until(lambda: uuid in rig.controller.ended)
    summary = rig.controller.ended[uuid]["quality"]["summary"]
    assert summary["low_events"] == 1 and summary["low"] is False and summary["loss_pct_max"] >= 50


def await_notice(rig: Rig, uuid: str, kind: str) -> Any:
    return until(lambda: kind in rig.kinds(uuid))


async def test_sampling_stops_at_hang_up(rig: Rig) -> None:
    uuid = await rig.call()
    await until(lambda: rig.samples(uuid) >= 2)
    await rig.sim.remote_hangup(uuid)
    await until(lambda: uuid in rig.controller.ended)
    await asyncio.sleep(0.05)  # a sample already on its way may still arrive
    sent = len(json_commands(rig.sim, uuid))
    await asyncio.sleep(INTERVAL * 5)
    assert len(json_commands(rig.sim, uuid)) == sent


async def test_unanswered_calls_are_not_sampled(rig: Rig) -> None:
    ch = await rig.sim.inbound_call(destination="+15559999999", context="public")  # not ours
    await asyncio.sleep(INTERVAL * 4)
    assert json_commands(rig.sim, ch.uuid) == []


async def test_a_slow_node_holds_up_no_other_node(tmp_path: Path) -> None:
    rig = await start_rig(tmp_path, n=2)
    try:
        fast, slow = rig.sims
        slow.api_delays["json"] = 2.0  # FreeSWITCH on fs2 takes 2 s to answer each mediaStats
        a, b = await rig.call(fast), await rig.call(slow)
        t0 = asyncio.get_running_loop().time()
        await until(lambda: rig.samples(a) >= 6, timeout=3)
        elapsed = asyncio.get_running_loop().time() - t0
        assert elapsed < 6 * INTERVAL * 3  # the fast node's call is sampled at the set rate
        assert rig.samples(b) == 0
        text = rig.controller.metrics.render().decode()
        assert 'sipagent_quality_samples_total{result="timeout"}' in text
        assert 'sipagent_quality_samples_total{result="skipped"}' in text
        # the slow node's calls are still driven: its samples wait in jobs, not on the event socket
        t1 = asyncio.get_running_loop().time()
        await rig.controller.hangup(b)
        await until(lambda: b in rig.controller.ended)
        assert asyncio.get_running_loop().time() - t1 < 0.5
        slow.api_delays.clear()
        b2 = await rig.call(slow)
        await until(lambda: rig.samples(b2) >= 2)  # and once it answers again, it is sampled
    finally:
        await rig.controller.stop()
        for sim in rig.sims:
            await sim.stop()


async def test_replies_freeswitch_could_send_cost_only_their_sample(rig: Rig) -> None:
    uuid = await rig.call()
    ch = rig.sim.channels[uuid]
    for body in ("garbage", "[" * 5000, '{"status":"success","response":{"audio":{"in_mos":"NaN"}}}', "-ERR x\n"):
        ch.media_stats_reply = body
        n = len(json_commands(rig.sim, uuid))
        await until(lambda n=n: len(json_commands(rig.sim, uuid)) >= n + 2)
    ch.media_stats_reply = None
    rig.sim.set_rtp(uuid, in_mos="4.4x", in_jitter_max_variance=float("nan"), in_flaw_total=-3,
                    out_media_packet_count=[1])  # fmt: skip
    await until(lambda: rig.samples(uuid) >= 3)
    call = rig.controller.call(uuid)
    assert call is not None and call.active
    last = call.quality_series[-1]
    assert last["jitter_ms"] is None and last["mos_call"] is None and last["loss_pct"] is None
    assert last["mos"] is None and last["packets_in"] > 0
    assert 'sipagent_quality_samples_total{result="unreadable"}' in rig.controller.metrics.render().decode()


async def test_the_metrics_are_exposed_per_trunk_and_direction(rig: Rig) -> None:
    uuid = await rig.call()
    rig.sim.set_rtp(uuid, jitter_ms=3.0)
    await until(lambda: rig.samples(uuid) >= 2)
    text = rig.controller.metrics.render().decode()
    for name in ("sipagent_rtp_mos", "sipagent_rtp_jitter_milliseconds", "sipagent_rtp_loss_percent"):
        assert f'{name}_count{{direction="in",trunk="carrier"}}' in text, name
    assert 'sipagent_rtp_mos_bucket{direction="in",le="4.5",trunk="carrier"}' in text
    assert 'sipagent_rtp_jitter_milliseconds_bucket{direction="in",le="2.0",trunk="carrier"} 0.0' in text
    assert 'sipagent_quality_samples_total{result="ok"}' in text


async def test_the_series_is_bounded(tmp_path: Path) -> None:
    rig = await start_rig(tmp_path, quality_yaml="{series_length: 3}")
    try:
        uuid = await rig.call()
        await until(lambda: rig.samples(uuid) >= 6)
        call = rig.controller.call(uuid)
        assert call is not None and len(call.quality_series) == 3
        await rig.sim.remote_hangup(uuid)
        await until(lambda: uuid in rig.controller.ended)
        q = rig.controller.ended[uuid]["quality"]
        assert len(q["series"]) == 3 and q["summary"]["samples"] >= 6
    finally:
        await rig.controller.stop()
        await rig.sim.stop()


async def test_sample_seconds_0_turns_sampling_off(tmp_path: Path) -> None:
    rig = await start_rig(tmp_path, quality_yaml="{sample_seconds: 0}", interval=0)
    try:
        assert not rig.controller.quality.enabled
        uuid = await rig.call()
        await asyncio.sleep(0.3)
        assert json_commands(rig.sim, uuid) == []
        call = rig.controller.call(uuid)
        assert call is not None and call.summary()["quality"] is None and call.quality_series == []
        await rig.sim.remote_hangup(uuid)
        await until(lambda: uuid in rig.controller.ended)
        assert "series" not in rig.controller.ended[uuid]["quality"]
    finally:
        await rig.controller.stop()
        await rig.sim.stop()


@pytest.mark.parametrize(
    ("yaml", "problem"),
    [
        ("{sample_seconds: 0.5}", "0 (off) or 1 to 60"),
        ("{sample_seconds: 61}", "60"),
        ("{min_mos: 4.6}", "4.5"),
        ("{min_mos: 0.5}", "1"),
        ("{series_length: 0}", "1"),
        ("{series_length: 5000}", "1000"),
        ("{sampling: 5}", "sampling"),
    ],
)
def test_settings_are_checked(tmp_path: Path, yaml: str, problem: str) -> None:
    result = check_text(deployment([8021], yaml), "d.yaml", {}, tmp_path)
    assert result.errors, yaml
    text = " ".join(str(d) for d in result.errors)
    assert "quality" in text and problem in text, text


def test_settings_defaults(tmp_path: Path) -> None:
    result = check_text(deployment([8021]), "d.yaml", {}, tmp_path)
    assert result.deployment is not None
    q = result.deployment.orchestrator.quality
    assert (q.sample_seconds, q.min_mos, q.series_length) == (5.0, 3.5, 120)


# -- the far end's view: RTCP reports (RECV_RTCP_MESSAGE) ---------------------------------------------------------
def far(sim: SimulatedFreeSwitch, uuid: str, *, lost: int, seq: int, fraction: int = 0, jitter: int = 0,
        rtt_ms: float | None = None) -> Any:  # fmt: skip
    from simulator.rtcp import Block

    return sim.receive_rtcp(uuid, Block(fraction=fraction, lost=lost, highest_seq=seq, jitter=jitter, dlsr=3277),
                            rtt_ms=rtt_ms)  # fmt: skip


def latest(rig: Rig, uuid: str) -> dict[str, Any]:
    call = rig.controller.call(uuid)
    return call.quality_series[-1] if call is not None and call.quality_series else {}


async def test_far_end_reports_reach_the_series_the_api_the_record_and_the_metrics(rig: Rig) -> None:
    assert rig.controller.reads_rtcp
    assert "RECV_RTCP_MESSAGE" in next(iter(rig.sim.connections)).names  # subscribed with the call events
    uuid = await rig.call()
    await until(lambda: rig.samples(uuid) >= 1)
    assert latest(rig, uuid)["out_mos"] is None and latest(rig, uuid)["rtt_ms"] is None  # no report yet
    # the far end: 8 of the 200 packets since its first report lost (4 %), 20 ms of jitter (160 at 8 kHz), RTT 80 ms
    ev = far(rig.sim, uuid, lost=2, seq=1000, fraction=5, jitter=160, rtt_ms=80)
    assert ev is not None and ev.get("Event-Calling-Function") == "switch_core_media_read_frame"
    await until(lambda: latest(rig, uuid).get("rtt_ms") is not None)
    far(rig.sim, uuid, lost=10, seq=1200, fraction=10, jitter=160, rtt_ms=80)
    await until(lambda: latest(rig, uuid).get("out_loss_pct") == 4.0)
    p = latest(rig, uuid)
    assert p["out_jitter_ms"] == 20.0 and p["out_lost"] == 10
    assert p["rtt_ms"] == pytest.approx(80, abs=0.5)  # FreeSWITCH's average of 80 and 80
    assert p["out_mos"] == round(quality.e_model_mos(4.0, 20.0, p["rtt_ms"] / 2), 2)
    app = create_app(rig.controller, TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as api:
        listed = (await api.get("/v1/calls", headers={"Authorization": f"Bearer {TOKEN}"})).json()["calls"]
    live = next(c for c in listed if c["id"] == uuid)["quality"]
    assert live["out_loss_pct"] == 4.0 and live["out_jitter_ms"] == 20.0 and live["rtt_ms"] == p["rtt_ms"]
    text = rig.controller.metrics.render().decode()
    for name in ("sipagent_rtp_mos", "sipagent_rtp_jitter_milliseconds", "sipagent_rtp_loss_percent"):
        assert f'{name}_count{{direction="out",trunk="carrier"}} 2.0' in text, name  # once per report interval
    assert 'sipagent_rtp_rtt_milliseconds_count{trunk="carrier"} 2.0' in text
    assert 'sipagent_rtcp_reports_total{result="ok"} 2.0' in text
    await rig.sim.remote_hangup(uuid)
    await until(lambda: uuid in rig.controller.ended)
    q = rig.controller.ended[uuid]["quality"]
    assert any(pt["out_loss_pct"] == 4.0 for pt in q["series"])
    s = q["summary"]
    assert s["rtcp_reports"] == 2 and s["out_loss_pct_max"] == 4.0 and s["out_jitter_ms_max"] == 20.0
    assert s["rtt_ms_avg"] == pytest.approx(80, abs=0.5) and s["out_mos_min"] <= s["out_mos_max"]
    json.dumps(q)


async def test_the_far_end_hearing_us_badly_raises_quality_low(rig: Rig) -> None:
    uuid = await rig.call()
    await until(lambda: rig.samples(uuid) >= 1)
    seq = lost = 0
    for _ in range(3):  # three reports: 40 % of what we send lost, while what we receive is clean
        seq, lost = seq + 100, lost + 40
        far(rig.sim, uuid, lost=lost, seq=seq, fraction=102)
        n = rig.samples(uuid)
        await until(lambda n=n: rig.samples(uuid) > n)
    await await_notice(rig, uuid, "quality_low")
    notice = next(x for x in rig.notices if x.kind == "quality_low")
    assert notice.data["direction"] == "out" and notice.data["out_loss_pct"] == 40.0
    assert notice.data["out_mos"] < 3.5 < notice.data["mos"]
    for _ in range(2):
        seq += 100
        far(rig.sim, uuid, lost=lost, seq=seq)
        n = rig.samples(uuid)
        await until(lambda n=n: rig.samples(uuid) > n)
    await await_notice(rig, uuid, "quality_ok")
    assert rig.kinds(uuid).count("quality_low") == 1


async def test_reports_freeswitch_could_pass_on_cost_nothing_but_themselves(rig: Rig) -> None:
    uuid = await rig.call()
    await until(lambda: rig.samples(uuid) >= 1)
    base = [("Unique-ID", uuid), ("SSRC", "00000000"), ("RTP-Rate", "8000")]
    hostile = [
        [("Source0-Fraction", "x"), ("Source0-Lost", "1"), ("Source0-Highest-Sequence-Number-Received", "1")],
        [("Source0-SSRC", "5eed0001"), ("Source0-Fraction", "9" * 5000), ("Source0-Lost", "-1"),
         ("Source0-Highest-Sequence-Number-Received", "1")],
        [("Source0-SSRC", "5eed0001"), ("Source0-Fraction", "1"), ("Source0-Lost", "4294967295"),
         ("Source0-Highest-Sequence-Number-Received", "1"), ("Source0-Jitter", "4294967295"),
         ("Rtt0-Avg", "1e308")],
    ]  # fmt: skip
    for extra in hostile:
        rig.sim.fire("RECV_RTCP_MESSAGE", base + extra)
    rig.sim.fire("RECV_RTCP_MESSAGE", base)  # no report block
    rig.sim.fire("RECV_RTCP_MESSAGE", [("Unique-ID", "not-a-call-of-ours")] + hostile[2])
    # a flood: FreeSWITCH fires one per 20 ms frame read at most, this is far more
    for i in range(500):
        far(rig.sim, uuid, lost=i, seq=100 * i + 100, fraction=1)
    await until(lambda: 'sipagent_rtcp_reports_total{result="ok"} 501.0' in rig.controller.metrics.render().decode())
    text = rig.controller.metrics.render().decode()
    assert 'sipagent_rtcp_reports_total{result="unreadable"} 2.0' in text
    assert 'sipagent_rtcp_reports_total{result="no_block"} 1.0' in text
    assert 'sipagent_rtcp_reports_total{result="unknown_call"} 1.0' in text
    n = rig.samples(uuid)
    await until(lambda: rig.samples(uuid) >= n + 2)
    call = rig.controller.call(uuid)
    assert call is not None and call.active and call.live_quality is not None
    p = latest(rig, uuid)
    assert p["out_lost"] == 499 and p["rtt_ms"] is None  # the valid one of the hostile three (lost −1), then all
    assert call.live_quality.far.reports == 501 and len(call.quality_series) <= 120


async def test_rtcp_off_reads_no_reports(tmp_path: Path) -> None:
    rig = await start_rig(tmp_path, freeswitch_yaml="  rtcp_interval_ms: 0\n")
    try:
        assert not rig.controller.reads_rtcp
        assert "RECV_RTCP_MESSAGE" not in next(iter(rig.sim.connections)).names
        uuid = await rig.call()
        far(rig.sim, uuid, lost=5, seq=100, fraction=50)  # FreeSWITCH would not even fire it: nobody listens
        await until(lambda: rig.samples(uuid) >= 2)
        assert latest(rig, uuid)["out_mos"] is None
        assert "sipagent_rtcp_reports_total{" not in rig.controller.metrics.render().decode()
    finally:
        await rig.controller.stop()
        await rig.sim.stop()


async def test_sampling_off_reads_no_reports_either(tmp_path: Path) -> None:
    rig = await start_rig(tmp_path, quality_yaml="{sample_seconds: 0}", interval=0)
    try:
        assert not rig.controller.reads_rtcp
    finally:
        await rig.controller.stop()
        await rig.sim.stop()


async def test_the_simulator_fires_rtcp_only_on_sessions_with_rtcp_and_media(rig: Rig) -> None:
    uuid = await rig.call()
    rig.sim.rtcp_audio_interval_msec = None  # a profile without rtcp-audio-interval-msec
    assert far(rig.sim, uuid, lost=0, seq=1) is None
    rig.sim.channels[uuid].variables["rtcp_audio_interval_msec"] = "1000"  # the channel variable turns it on
    ev = far(rig.sim, uuid, lost=0, seq=1)
    assert ev is not None
    names = [k for k, _ in ev.headers]
    assert names[:13] == [
        "Event-Name", "Core-UUID", "FreeSWITCH-Hostname", "FreeSWITCH-Switchname", "FreeSWITCH-IPv4",
        "FreeSWITCH-IPv6", "Event-Date-Local", "Event-Date-GMT", "Event-Date-Timestamp", "Event-Calling-File",
        "Event-Calling-Function", "Event-Calling-Line-Number", "Event-Sequence",
    ]  # fmt: skip
    assert names[13:] == [
        "Unique-ID", "SSRC", "NTP-Most-Significant-Word", "NTP-Least-Significant-Word", "RTP-Timestamp",
        "Sender-Packet-Count", "Octect-Packet-Count", "Last-RTP-Timestamp", "RTP-Rate", "Capture-Time",
        "Source0-SSRC", "Source0-Fraction", "Source0-Lost", "Source0-Loss-Avg",
        "Source0-Highest-Sequence-Number-Received", "Source0-Jitter", "Source0-LSR", "Source0-DLSR", "Rtt0-Avg",
    ]  # fmt: skip
    assert dict(ev.headers)["Event-Calling-File"] == "switch_core_media.c"
    assert dict(ev.headers)["Event-Calling-Line-Number"] == "2945"
    unanswered = await rig.sim.inbound_call(destination="+15559999999", context="public")
    assert far(rig.sim, unanswered.uuid, lost=0, seq=1) is None  # no media: no RTP session reads RTCP


def test_rtcp_interval_is_checked(tmp_path: Path) -> None:
    for bad, problem in (
        ("500", "0 (off) or 1000 to 60000"),
        ("60001", "60000"),
        ("-1", "0"),
        ("fast", "whole number"),
    ):
        result = check_text(deployment([8021], freeswitch_yaml=f"  rtcp_interval_ms: {bad}\n"), "d.yaml", {}, tmp_path)
        text = " ".join(str(d) for d in result.errors)
        assert "rtcp_interval_ms" in text and problem in text, (bad, text)
    ok = check_text(deployment([8021]), "d.yaml", {}, tmp_path)
    assert ok.deployment is not None and ok.deployment.freeswitch.rtcp_interval_ms == 5000


# -- the simulator's mediaStats ----------------------------------------------------------------------------------
async def test_the_simulators_json_api_answers_as_freeswitch_1_10_12(rig: Rig) -> None:
    client = rig.controller.nodes["fs1"].client
    uuid = await rig.call()
    body = await client.api(commands.media_stats(uuid), check=False)
    doc = json.loads(body)
    assert list(doc) == ["command", "data", "status", "response"] and doc["status"] == "success"
    assert list(doc["response"]) == ["audio"] and list(doc["response"]["audio"]) == list(quality.FIELDS)
    assert body.endswith("}\n") and ": " not in body  # cJSON_PrintUnformatted, then a newline
    gone = json.loads(await client.api('json {"command":"mediaStats","data":{"uuid":"nope"}}', check=False))
    assert gone["status"] == "error" and gone["message"] == "The command returned an error"
    assert gone["response"] == {"response": "Session does not exist"}
    bad = json.loads(await client.api('json {"command":"mediaStats","data":{}}', check=False))
    assert bad["response"] == {"response": "INVALID INPUT"}
    other = json.loads(await client.api('json {"command":"nosuch","data":{}}', check=False))
    assert other["message"] == "Invalid request or non-existant command" and other["response"] is None
    assert await client.api("json {oops", check=False) == "-ERR Parse error.\n"
    assert await client.api("json", check=False) == "-ERR No JSON supplied.\n"
    unanswered = await rig.sim.inbound_call(destination="+15559999999", context="public")
    none = json.loads(await client.api(commands.media_stats(unanswered.uuid), check=False))
    assert none["status"] == "success" and none["response"] == {}
    assert quality.parse_media_stats(json.dumps(none))[0] is quality.Reply.NO_MEDIA


def test_the_simulators_counters_follow_switch_rtp() -> None:
    from simulator.rtpstats import RtpStats

    stats = RtpStats(started=0.0)
    v = stats.values(1.0)  # 50 packets each way, nothing lost
    assert v["in_media_packet_count"] == 50 and v["out_packet_count"] == 50 and v["in_mos"] == 4.5
    stats.set(1.0, loss_pct=20, jitter_ms=4)
    v = stats.values(2.0)  # 50 more expected, 10 of them lost: 10 gaps of one packet, 2 more flaws each
    assert v["in_media_packet_count"] == 90 and v["in_flaw_total"] == 30 and v["out_packet_count"] == 100
    assert v["in_quality_percentage"] == 66.0  # (int)(100 · 60 / 90)
    assert v["in_mos"] == pytest.approx(1 + 0.035 * 66 + 0.000007 * 66 * 6 * 34)
    assert v["in_jitter_max_variance"] == 16 and v["in_jitter_min_variance"] == 16
    assert stats.variables(2.0)["rtp_audio_in_mos"] == f"{v['in_mos']:0.2f}"
    assert stats.variables(2.0)["rtp_audio_in_flaw_total"] == "30"
    assert quality.point(None, quality.reading(v), 2.0).loss_pct == 10.0  # (100 − 90) / 100, not 30 / 120
    stats.set(2.0, loss_pct=80)
    assert stats.values(4.0)["in_flaw_total"] < stats.values(4.0)["in_media_packet_count"]  # reset past them
