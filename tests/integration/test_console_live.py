"""The console and the webhooks on a real FreeSWITCH: ``sipagent run`` (``orchestrator.runtime.serve``, in process)
drives the switch under test; sipp places a call from 127.0.0.2 whose RTP comes from a local peer (rtp.py), clean
at first and then losing 2 of every 5 packets; a fake raw agent answers and speaks a transcript.

In headless Chromium (Debian's ``chromium`` through Playwright) the call shows in *Now* with its live MOS, the MOS
falls when the loss starts, the call ends, and its page shows the timeline (INVITE, answer, agent, quality alarm,
hang-up with SIP status and Q.850 cause), the quality chart over the call and the transcript. A local receiver
gets the call's webhooks, signed, in order, ``call.ended`` carrying the record with its quality series.

Screenshots go to the test's tmp dir, or to ``CONSOLE_ARTIFACTS`` (as tests/test_console_browser.py); the figures
are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deployments import loopback_example, render_and_start
from fake_agents import FakeRawAgent
from rtp import RtpPeer
from sipp_scenarios import uac
from switch import FreeSwitch, free_port, requires_switch, suite_env, suite_ports
from webhook_receiver import Receiver

from orchestrator import runtime
from orchestrator.config import check_file

CHROMIUM = Path(os.environ.get("SIPAGENT_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
API_TOKEN = "live-console-api-token"
CONSOLE_TOKEN = "live-console-console-token"
HOOK_SECRET = "live-console-webhook-secret"
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    *requires_switch,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="needs sipp (Debian package sip-tester)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="the playwright package is missing"),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


class Env:
    def __init__(self, fs: FreeSwitch, ports: dict[str, int], work: Path) -> None:
        self.fs, self.ports, self.work = fs, ports, work


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("fsconsole")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("bridge", "agent", "api", "hook")
    doc = loopback_example(work, ports)
    doc["trunks"][1]["inbound"]["codecs"] = ["PCMU"]
    doc["agents"][1] = {"name": "sales", "protocol": "raw", "url": f"ws://127.0.0.1:{ports['agent']}/agent"}
    doc["agents"][1]["audio_format"] = "pcm_8000"
    doc["orchestrator"]["media"] = {"port": ports["bridge"], "playback": "file"}
    doc["orchestrator"]["records"] = "calls.db"
    doc["orchestrator"]["quality"] = {"sample_seconds": 1, "min_mos": 3.5}
    doc["orchestrator"]["api"] = {"port": ports["api"], "token": API_TOKEN, "console_token": CONSOLE_TOKEN}
    doc["orchestrator"]["webhooks"] = [
        {"name": "ops", "url": f"http://127.0.0.1:{ports['hook']}/hook", "secret": HOOK_SECRET}
    ]
    fs = render_and_start(doc, root, work)
    try:
        yield Env(fs, ports, work)
    finally:
        fs.stop()


def shots_dir(tmp_path: Path) -> Path:
    where = os.environ.get("CONSOLE_ARTIFACTS", "")
    out = (
        tmp_path / "screenshots"
        if not where
        else (REPO / "artifacts" / "console-live" if where.lower() in ("1", "yes", "true") else Path(where))
    )
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextlib.asynccontextmanager
async def sipagent_run(env: Env) -> AsyncIterator[httpx.AsyncClient]:
    result = check_file(env.work / "deployment.yaml", suite_env())
    assert result.errors == [] and result.deployment is not None
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.serve(result.deployment, result.base_dir, stop))
    base = f"http://127.0.0.1:{env.ports['api']}"
    try:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {API_TOKEN}"}) as api:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await api.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("sipagent run did not connect to the switch")
            yield api
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def test_console_shows_a_real_calls_live_quality_and_timeline(env: Env, tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    shots = shots_dir(tmp_path)
    base = f"http://127.0.0.1:{env.ports['api']}"
    peer = await RtpPeer.open()
    xml = uac(env.work / "console.xml", 200, codec="PCMU", hold_ms=60000, far_end_bye=True)
    xml.write_text(xml.read_text().replace("[media_port]", str(peer.port)).replace("[media_ip]", peer.host))
    async with (
        FakeRawAgent(rate=8000, port=env.ports["agent"]) as agent,
        Receiver(HOOK_SECRET.encode(), port=env.ports["hook"]) as hooks,
        sipagent_run(env) as api,
        async_playwright() as p,
    ):
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = await browser.new_page(viewport={"width": 1366, "height": 800})
        await page.goto(base + "/console/login")
        await page.fill("#token", CONSOLE_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(base + "/console")
        proc = await asyncio.create_subprocess_exec(
            "sipp", "-sf", str(xml), f"127.0.0.1:{env.ports['tcp']}", "-s", "+15557650101", "-m", "1", "-nostdin",
            "-t", "t1", "-i", "127.0.0.2", "-p", str(free_port()), "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
        )  # fmt: skip
        try:

            async def answered() -> Any:
                calls = (await api.get("/v1/calls")).json()["calls"]
                return next((c for c in calls if c.get("state") == "answered"), None)

            call = await until(answered, 20, "the answered call")
            uuid = call["call_id"] if "call_id" in call else call["id"]
            media_port = await asyncio.to_thread(env.fs.api, f"uuid_getvar {uuid} local_media_port")
            peer.aim("127.0.0.1", int(media_port.strip()))
            session = await agent.wait_session(timeout=10)
            await agent.wait_for(lambda: session.of_type("start"))
            await agent.send_transcript("agent", "Hello, you are through to sales. How can I help?")
            await agent.send_transcript("user", "I'd like a quote for 20 seats, please.")
            row = page.locator(f'#now-rows tr[data-id="{uuid}"]')
            await expect(row).to_contain_text("answered", timeout=10000)
            await expect(row).to_contain_text("PCMU")
            mos_cell = row.locator("td.mos")
            await expect(mos_cell).to_have_text(re.compile(r"^4\.\d\d"), timeout=15000)  # clean: G.711 at its best
            await asyncio.sleep(4)
            clean_text = (await row.inner_text()).replace("\t", " | ")
            await page.screenshot(path=str(shots / "01-now-clean.png"), full_page=True)
            peer.loss = (2, 5)  # 40 % lost on the way in
            await expect(mos_cell).to_have_text(re.compile(r"^[1-3]\.\d\d"), timeout=15000)
            await asyncio.sleep(3)
            lossy_text = (await row.inner_text()).replace("\t", " | ")
            await page.screenshot(path=str(shots / "02-now-lossy.png"), full_page=True)
            hung = await api.delete(f"/v1/calls/{uuid}")
            assert hung.status_code == 202
            assert await asyncio.wait_for(proc.wait(), 20) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
            await peer.close()
        await expect(row).to_have_count(0, timeout=10000)

        async def stored() -> Any:
            r = await api.get(f"/v1/records/{uuid}")
            return r.json() if r.status_code == 200 else None

        record = await until(stored, 15, "the call's record in the store")
        await page.goto(f"{base}/console/calls")
        line = page.locator("table.calls tbody tr", has=page.locator(f'a[href="/console/calls/{uuid}"]'))
        await expect(line).to_contain_text("+15557650101", timeout=10000)
        await page.screenshot(path=str(shots / "03-calls.png"), full_page=True)
        await page.goto(f"{base}/console/calls/{uuid}")
        timeline = page.locator("ol.timeline")
        for step in ["INVITE received", "Answered (200 OK)", "Agent connected", "Hang-up"]:
            await expect(timeline).to_contain_text(step)
        await expect(page.locator("#quality-chart .uplot canvas")).to_have_count(1)
        await expect(page.locator("ol.transcript")).to_contain_text("I'd like a quote for 20 seats, please.")
        timeline_text = await timeline.inner_text()
        await page.screenshot(path=str(shots / "04-call.png"), full_page=True)
        await page.goto(f"{base}/console/trunks")
        await expect(page.locator("#hour-chart .uplot canvas")).to_have_count(1)
        await page.screenshot(path=str(shots / "05-trunks.png"), full_page=True)
        await browser.close()
        await hooks.wait_for(
            lambda: any(e["type"] == "call.ended" and e["call_id"] == uuid for e in hooks.events()),
            what="the call.ended webhook",
        )
    got = [e for e in hooks.events() if e["call_id"] == uuid]
    series = record["quality"]["series"]
    print("\n[now, clean]", clean_text, "\n[now, lossy]", lossy_text, "\n[timeline]", timeline_text, sep="\n")
    print("[quality]", [(p.get("mos"), p.get("loss_pct"), p.get("jitter_ms")) for p in series])
    print("[summary]", record["quality"]["summary"], "\n[webhooks]", [e["type"] for e in got])
    print("[screenshots]", shots)
    assert [e["type"] for e in got] == ["call.started", "call.answered", "call.ended"]
    assert all(r.valid for r in hooks.requests)
    assert got[-1]["data"]["quality"]["series"] == series  # the webhook carries the stored record
    assert record["quality"]["summary"]["low_events"] >= 1 and len(series) >= 8
    assert max(p["mos"] for p in series if p.get("mos")) >= 4.3
    assert min(p["mos"] for p in series if p.get("mos")) < 3.5
    for name in ("01-now-clean", "02-now-lossy", "03-calls", "04-call", "05-trunks"):
        assert (shots / f"{name}.png").stat().st_size > 5000
