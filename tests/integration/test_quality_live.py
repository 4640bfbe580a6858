"""Live quality on a real FreeSWITCH: the orchestrator samples a call's RTP statistics while it is up.

sipp signals from 127.0.0.2 with the SDP of a local RTP endpoint (rtp.py) that streams 20 ms PCMU frames to
the port FreeSWITCH answered with; a fake raw agent takes the call. Clean at first, then 2 of every 5 packets
are lost on the way: the samples count the packets, MOS stays high while clean, loss shows up at once and
quality_low fires; the record keeps the series. RTCP is on (``rtcp_interval_ms: 1000``): FreeSWITCH sends its
sender reports to the endpoint's RTP port + 1 whether or not the endpoint reports back; an endpoint that sends
none (the first test) leaves the far-end figures empty, one that sends receiver reports (the second) has what it
claimed in them — loss, cumulative loss, jitter, a longer round trip — in the samples, and a far end hearing us
badly raises quality_low for the ``out`` direction. Runs on the switch under test (switch.py) when ``sipp`` is
there.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from deployments import loopback_example, render_and_start
from live import live_orchestrator, wait_for
from rtp import Claim, RtpPeer
from sipp_scenarios import uac
from switch import FreeSwitch, free_port, requires_switch, suite_ports

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice

pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
]


class Env:
    def __init__(self, fs: FreeSwitch, ports: dict[str, int], work: Path) -> None:
        self.fs, self.ports, self.work = fs, ports, work


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fsquality")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("bridge", "agent")
    doc = loopback_example(work, ports)
    doc["trunks"][1]["inbound"]["codecs"] = ["PCMU"]
    doc["agents"][1] = {"name": "sales", "protocol": "raw", "url": f"ws://127.0.0.1:{ports['agent']}/agent"}
    doc["agents"][1]["audio_format"] = "pcm_8000"
    doc["orchestrator"]["media"] = {"port": ports["bridge"], "playback": "file"}
    doc["orchestrator"]["quality"] = {"sample_seconds": 1, "min_mos": 3.5}
    doc["freeswitch"]["rtcp_interval_ms"] = 1000
    fs = render_and_start(doc, root, work)
    try:
        yield Env(fs, ports, work)
    finally:
        fs.stop()


class Running:
    def __init__(self, controller: Controller, notices: list[Notice]) -> None:
        self.controller, self.notices = controller, notices


@pytest.fixture()
async def running(env: Env) -> AsyncIterator[Running]:
    async with live_orchestrator(env.work, env.ports["agent"], b"quality-test") as live:
        yield Running(live.controller, live.notices)


async def test_live_samples_of_a_call_clean_then_lossy(env: Env, running: Running) -> None:
    r = running
    peer = await RtpPeer.open()
    xml = uac(env.work / "quality.xml", 200, codec="PCMU", hold_ms=30000, far_end_bye=True)
    xml.write_text(xml.read_text().replace("[media_port]", str(peer.port)).replace("[media_ip]", peer.host))
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), f"127.0.0.1:{env.ports['tcp']}", "-s", "+15557650101", "-m", "1", "-nostdin",
        "-t", "t1", "-i", "127.0.0.2", "-p", str(free_port()), "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip
    try:
        uuid = (await wait_for(r.notices, "answered")).call.uuid
        media_port = await r.controller.nodes["fs1"].client.api(f"uuid_getvar {uuid} local_media_port")
        peer.aim("127.0.0.1", int(media_port.strip()))
        call = r.controller.call(uuid)
        assert call is not None
        await asyncio.sleep(5.5)  # clean: 5 samples
        clean = list(call.quality_series)
        peer.loss = (2, 5)  # then 2 of every 5 packets lost on the way
        low = await wait_for(r.notices, "quality_low", timeout=10)
        await asyncio.sleep(2.2)
        lossy = call.quality_series[len(clean) :]
        summary = call.summary()["quality"]
        await r.controller.hangup(uuid)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        await peer.close()
    await wait_for(r.notices, "ended")
    record: dict[str, Any] = r.controller.ended[uuid]
    print(f"\n[peer] sent {peer.sent}, lost on the way {peer.dropped}")
    print("\n[clean]", *clean, "\n[lossy]", *lossy, "\n[quality_low]", low.data, "\n[summary]",
          record["quality"]["summary"], "\n[hang-up]", {k: v for k, v in record["quality"].items()
                                                         if k not in ("series", "summary")}, sep="\n")  # fmt: skip
    # clean: about 50 packets a second each way, nothing lost, the estimate at G.711's best (FreeSWITCH's at 4.5)
    assert len(clean) >= 4
    steady = clean[1:]
    assert all(40 <= p["packets_in"] / 1.0 <= 60 for p in steady), steady
    assert all(p["packets_out"] >= 40 for p in steady), steady
    assert all(p["loss_pct"] == 0 and p["mos"] >= 4.3 for p in steady), steady
    assert all(p["mos_call"] is not None and p["mos_call"] > 3.5 for p in clean)
    assert all(p["jitter_ms"] is not None and p["jitter_ms"] < 20 for p in clean)
    # lossy: 40 % shows per interval (FreeSWITCH's flaws alone would say 57 %), the MOS falls below the threshold,
    # quality_low fires once
    assert any(p["loss_pct"] is not None and 35 <= p["loss_pct"] <= 45 for p in lossy), lossy
    assert low.data["mos"] < 3.5 and summary["low"] is True
    assert [n.kind for n in r.notices].count("quality_low") == 1
    q = record["quality"]
    assert q["summary"]["low_events"] == 1 and q["summary"]["samples"] == len(q["series"]) >= 7
    assert q["summary"]["packets_in"] > 300 and q["mos"] > 0  # the hang-up figures are still there
    metrics = r.controller.metrics.render().decode()
    assert 'sipagent_quality_low_total{trunk="office-pbx"} 1.0' in metrics
    # RTCP is on, but this far end sends no reports: no far-end figures (as with a carrier without RTCP)
    assert all(p["out_mos"] is None and p["rtt_ms"] is None for p in q["series"])
    assert q["summary"]["rtcp_reports"] == 0 and q["summary"]["out_mos_avg"] is None
    assert peer.sender_reports, "FreeSWITCH sent no RTCP"


async def start_call(env: Env, r: Running, peer: RtpPeer, name: str) -> tuple[str, asyncio.subprocess.Process]:
    xml = uac(env.work / f"{name}.xml", 200, codec="PCMU", hold_ms=60000, far_end_bye=True)
    xml.write_text(xml.read_text().replace("[media_port]", str(peer.port)).replace("[media_ip]", peer.host))
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), f"127.0.0.1:{env.ports['tcp']}", "-s", "+15557650101", "-m", "1", "-nostdin",
        "-t", "t1", "-i", "127.0.0.2", "-p", str(free_port()), "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip
    uuid = (await wait_for(r.notices, "answered")).call.uuid
    media_port = await r.controller.nodes["fs1"].client.api(f"uuid_getvar {uuid} local_media_port")
    peer.aim("127.0.0.1", int(media_port.strip()))
    return uuid, proc


async def until(check: Any, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def test_far_end_rtcp_reports_show_in_the_samples(env: Env, running: Running) -> None:
    r = running
    peer = await RtpPeer.open()
    try:
        uuid, proc = await start_call(env, r, peer, "rtcp")
        call = r.controller.call(uuid)
        assert call is not None
        # FreeSWITCH sends RTCP to the RTP port + 1: sender reports, each with a block on what it receives from us
        await until(lambda: len(peer.sender_reports) >= 3)
        srs = list(peer.sender_reports)
        assert all(sr.ssrc == peer._source and sr.blocks == 1 and sr.packets > 0 for sr in srs), srs
        # (the first four 4 s apart whatever the interval, switch_rtp.c: "rtcp_sent_packets < 4", then every 1 s)

        def fresh() -> list[dict[str, Any]]:
            return [p for p in call.quality_series if p["out_mos"] is not None]

        seen: list[dict[str, str]] = []  # what FreeSWITCH passed on, for the figures below
        take = r.controller.quality.rtcp

        def rtcp(c: Any, header: Any) -> Any:
            names = ("Capture-Time", "Event-Date-Timestamp", "Rtt0-Avg", "Source0-LSR", "Source0-DLSR")
            seen.append({k: header(k) for k in names} | {"here": str(int(time.time() * 1e6))})
            return take(c, header)

        r.controller.quality.rtcp = rtcp  # type: ignore[method-assign]
        # the far end claims: nothing lost, 20 ms of jitter (160 at 8 kHz), 100 ms more round trip
        peer.report(Claim(loss_pct=0, jitter=160, extra_rtt_ms=100))
        await until(lambda: len(fresh()) >= 3)
        clean = fresh()
        # then 5 % of what we send lost
        peer.claim = Claim(loss_pct=5, jitter=160, extra_rtt_ms=100)
        n = len(call.quality_series)
        await until(lambda: sum(1 for p in call.quality_series[n:] if p["out_loss_pct"] not in (None, 0.0)) >= 3)
        lossy = [p for p in call.quality_series[n:] if p["out_loss_pct"] not in (None, 0.0)]
        # then 40 %: the far end hears us badly, what we receive stays clean
        peer.claim = Claim(loss_pct=40, jitter=160, extra_rtt_ms=100)
        low = await wait_for(r.notices, "quality_low", timeout=20)
        summary = call.summary()["quality"]
        await r.controller.hangup(uuid)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        await peer.close()
    await wait_for(r.notices, "ended")
    record: dict[str, Any] = r.controller.ended[uuid]
    q = record["quality"]
    wanted = ("sipagent_rtcp", "sipagent_rtp_rtt_milliseconds_count")
    rtcp_metrics = [
        line
        for line in r.controller.metrics.render().decode().splitlines()
        if ('direction="out"' in line and "_count" in line) or line.startswith(wanted)
    ]
    gaps = [round(b.at - a.at, 3) for a, b in itertools.pairwise(srs)]
    print(f"\n[FreeSWITCH's SRs] {len(srs)}, {gaps} s apart")
    print("[peer's RRs]", *[(x.fraction, x.lost, x.highest, x.jitter) for x in peer.reports_sent[-6:]])
    print("[RECV_RTCP_MESSAGE]", *seen[-6:], sep="\n")
    print("\n[clean]", *clean, "\n[5 %]", *lossy, "\n[quality_low]", low.data, "\n[summary]", q["summary"],
          "\n[metrics]", *rtcp_metrics, sep="\n")  # fmt: skip
    sent = peer.reports_sent
    claimed = {x.lost for x in sent}
    # the loss of every interval the peer's reports can span (Δlost / Δexpected between two of them)
    spans = {round(100 * (b.lost - a.lost) / (b.highest - a.highest), 2) for a, b in itertools.combinations(sent, 2)}
    said = {round(1000 * float(e["Rtt0-Avg"]), 2) for e in seen}  # FreeSWITCH's smoothed RTT, as it passed it on
    # what the far end reported is what the samples say
    for p in clean + lossy:
        assert p["out_jitter_ms"] == 20.0 and p["out_lost"] in claimed and p["out_loss_pct"] in spans, p
        # FreeSWITCH's smoothed RTT: the claimed 100 ms plus the loopback's and its read loop's
        assert p["rtt_ms"] in said and 100 <= p["rtt_ms"] <= 180, p
    assert all(p["out_loss_pct"] == 0.0 and p["out_mos"] > 3.9 for p in clean), clean
    assert all(3 <= p["out_loss_pct"] <= 7 for p in lossy), lossy  # 5 % claimed: 2 or 3 of each 50 packets
    assert all(3.6 < p["out_mos"] < 4.0 and p["mos"] > 4.2 for p in lossy), lossy  # the in direction is clean
    assert low.data["direction"] == "out" and low.data["out_loss_pct"] >= 35 and low.data["mos"] > 4.2
    assert summary["low"] is True and summary["out_mos"] < 3.5
    s = q["summary"]
    assert s["rtcp_reports"] >= len(clean) + len(lossy) and s["out_loss_pct_max"] >= 35
    assert s["out_jitter_ms_max"] == 20.0 and 100 <= s["rtt_ms_min"] <= s["rtt_ms_max"] <= 180
    assert any('sipagent_rtp_mos_count{direction="out",trunk="office-pbx"}' in line for line in rtcp_metrics)
