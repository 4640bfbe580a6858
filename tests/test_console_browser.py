"""The web console in a real browser: headless Chromium (Debian's ``chromium``, driven by Playwright with that
executable) against ``sipagent run`` (``orchestrator.runtime.serve``, in process) on the FreeSWITCH simulator, its
mod_audio_fork connected to a fake raw agent that sends a transcript.

Login is refused without the token; a call appears in *Now* within seconds (its MOS when live quality is there);
it ends and shows in *Calls* with its outcome; its page shows the timeline and the transcript; the trunks page
draws its chart; a session opened with the API token hangs a call up with one click. Every request the browser
makes stays on the console's origin, and no page logs a Content-Security-Policy violation or a script error.

Screenshots of each page go to the test's tmp dir, or to ``artifacts/console/`` (``CONSOLE_ARTIFACTS=1``; or
``CONSOLE_ARTIFACTS=<dir>``). Skips, saying why, without the ``playwright`` package or ``/usr/bin/chromium``
(``apt-get install chromium``; ``playwright install`` is never needed).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import re
import signal
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from audio_tools import tone
from fake_agents import FakeRawAgent
from fastapi import Request
from fastapi.responses import StreamingResponse
from simulator import SimulatedFreeSwitch

from orchestrator import runtime, store
from orchestrator.api.http import create_app
from orchestrator.config import check_text

CHROMIUM = Path(os.environ.get("SIPAGENT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "sim-pass"
API_TOKEN = "console-test-api-token"
CONSOLE_TOKEN = "console-test-console-token"
REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.xdist_group("browser"),  # one Chromium at a time: its tests run on one worker, in turn
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="the playwright package is not installed (pip install '.[test]')",
    ),
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
]


@pytest.fixture(autouse=True)
def _uvicorn_logging() -> Any:
    """uvicorn.Config(log_level=...) reconfigures uvicorn's loggers for the whole process: put them back after."""
    names = ("uvicorn", "uvicorn.error", "uvicorn.access")
    saved = {
        n: (logging.getLogger(n).level, list(logging.getLogger(n).handlers), logging.getLogger(n).propagate)
        for n in names
    }
    yield
    for name, (level, handlers, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers[:] = handlers
        logger.propagate = propagate


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def artifacts(tmp_path: Path) -> Path:
    where = os.environ.get("CONSOLE_ARTIFACTS", "")
    if not where:
        out = tmp_path / "screenshots"
    elif where.lower() in ("1", "yes", "true"):
        out = REPO / "artifacts" / "console"
    else:
        out = Path(where)
    out.mkdir(parents=True, exist_ok=True)
    return out


@dataclass
class Stack:
    sim: SimulatedFreeSwitch
    agent: FakeRawAgent
    base: str
    shots: Path
    db: Path
    calls: int = 0
    requests: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    async def inbound(self, caller: str) -> str:
        self.calls += 1
        ch = await self.sim.inbound_call(
            destination="+15550000001",
            caller_id=caller,
            context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": "support", "sipagent_number": "+15550000001"},
            park_timeout="10:NORMAL_TEMPORARY_FAILURE",
        )
        self.sim.set_caller_audio(ch.uuid, tone(440, 8000, 60000))
        return ch.uuid

    async def api(self, path: str) -> Any:
        async with httpx.AsyncClient(base_url=self.base, headers={"Authorization": f"Bearer {API_TOKEN}"}) as c:
            return (await c.get(path)).json()

    def watch(self, page: Any) -> None:
        """Record every request of ``page`` and anything it logs as an error."""
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.problems.append(f"script error: {e}"))

        def console(msg: Any) -> None:
            if msg.type == "error" and ("Content Security Policy" in msg.text or "Refused to" in msg.text):
                self.problems.append(f"CSP: {msg.text}")

        page.on("console", console)


def sampled_record(n: int) -> dict[str, Any]:
    """A transferred call's record with a minute of live quality samples: clean, a lossy stretch, clean again."""
    t0 = time.time() - 300
    series = []
    for i in range(12):
        lossy = 4 <= i <= 6
        loss = [0.0, 0.0, 0.0, 0.2, 6.0, 12.5, 8.0, 0.4, 0.0, 0.0, 0.0, 0.0][i]
        series.append(
            {
                "t": t0 + 6 + 5 * i,
                "mos": round(4.39 - 0.09 * loss if not lossy else 4.39 - 0.11 * loss, 2),
                "jitter_ms": 0.6 + (9.2 if i >= 4 else 0.0),
                "loss_pct": loss,
                "packets_in": 250,
                "packets_out": 250,
                # the far end's RTCP reports from the third sample on: it hears us a little worse, 80-90 ms round trip
                **(
                    {
                        "out_mos": round(4.3 - 0.1 * loss, 2),
                        "out_jitter_ms": 4.0 + i % 3,
                        "out_loss_pct": loss + 0.5,
                        "out_lost": 2 * i,
                        "rtt_ms": 80.0 + i % 4 * 3,
                    }
                    if i >= 2
                    else {"out_mos": None, "out_jitter_ms": None, "out_loss_pct": None, "rtt_ms": None}
                ),
            }
        )
    return {
        "id": f"00000000-0000-4000-8000-{n:012d}",
        "node": "fs1",
        "direction": "inbound",
        "from": "+15551234567",
        "to": "+15550000001",
        "trunk": "carrier",
        "agent": "support",
        "codec": "PCMU",
        "rate": 8000,
        "srtp": None,
        "progress": [180],
        "result": "transferred",
        "hangup": {
            "cause": "NORMAL_CLEARING",
            "q850": 16,
            "sip_status": 200,
            "sip_phrase": "OK",
            "result": "transferred",
        },
        "hangup_by": "transfer",
        "transfer": {
            "method": "refer",
            "target": "+15557654321",
            "status": "succeeded",
            "sip_status": 200,
            "detail": "",
        },
        "timings": {
            "created": t0,
            "ringing": t0 + 0.1,
            "answered": t0 + 0.6,
            "ended": t0 + 66,
            "setup_seconds": 0.6,
            "duration_seconds": 65.4,
        },
        "dtmf": {"received": "1", "sent": ""},
        "quality": {
            "mos": 3.9,
            "packets_in": 3250,
            "series": series,
            "summary": {
                "samples": 12,
                "mos_min": min(p["mos"] for p in series),
                "mos_avg": 3.9,
                "jitter_ms_max": 9.8,
                "loss_pct_max": 12.5,
                "low_events": 1,
            },
        },
        "media": {
            "agent_protocol": "raw",
            "outcome": "completed",
            "agent_connect_ms": 38.0,
            "interruptions": 1,
            "transcript": [
                {"t": 0.8, "role": "agent", "text": "Hello, you are through to support."},
                {"t": 4.1, "role": "user", "text": "Can I talk to a person, please?"},
                {"t": 6.0, "role": "agent", "text": "Of course, transferring you now."},
            ],
        },
        "lost": False,
    }


@pytest.fixture()
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    agent = await FakeRawAgent(rate=8000).start()
    sim = SimulatedFreeSwitch(PASSWORD)
    sim.fork_websocket = True
    sim.add_gateway("carrier", state="REGED")
    await sim.start()
    api_port, media_port = free_port(), free_port()
    text = f"""
freeswitch: {{bind_ip: 127.0.0.1, event_socket: {{password: {PASSWORD}}}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
    outbound: {{address: sbc.carrier.example}}
numbers: [{{number: "+15550000001", trunk: carrier, agent: support}}]
agents: [{{name: support, protocol: raw, url: "{agent.url}", audio_format: pcm_8000}}]
orchestrator:
  media_url: ws://127.0.0.1:{media_port}
  media: {{port: {media_port}}}
  records: calls.db
  api: {{port: {api_port}, token: "${{SIPAGENT_API_TOKEN}}", console_token: "${{SIPAGENT_CONSOLE_TOKEN}}"}}
  nodes: [{{name: fs1, port: {sim.port}}}]
"""
    env = {"SIPAGENT_API_TOKEN": API_TOKEN, "SIPAGENT_CONSOLE_TOKEN": CONSOLE_TOKEN}
    result = check_text(text, "deployment.yaml", env, tmp_path)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.serve(result.deployment, tmp_path, stop))
    base = f"http://127.0.0.1:{api_port}"
    async with httpx.AsyncClient(base_url=base) as c:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if (await c.get("/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("sipagent run did not come up")
    try:
        yield Stack(sim, agent, base, artifacts(tmp_path), tmp_path / "calls.db")
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)  # serve() took them for the run
        await sim.stop()
        await agent.stop()


@contextlib.asynccontextmanager
async def browser(tmp_path: Path, name: str) -> AsyncIterator[Any]:
    """A fresh Chromium (its own user-data-dir) at a laptop's window size."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        context = await p.chromium.launch_persistent_context(
            str(tmp_path / f"profile-{name}"),
            executable_path=str(CHROMIUM),
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1366, "height": 800},
        )
        try:
            yield context
        finally:
            await context.close()


async def until(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def test_console_in_a_real_browser(stack: Stack, tmp_path: Path) -> None:
    from playwright.async_api import expect

    s = stack
    async with browser(tmp_path, "read") as context:
        page = await context.new_page()
        s.watch(page)
        # -- login refused without the token ---------------------------------------------------------------------
        await page.goto(s.base + "/console")
        assert page.url.endswith("/console/login")
        await page.fill("#token", "not-the-token")
        async with page.expect_response(
            lambda r: r.url.endswith("/console/login") and r.request.method == "POST"
        ) as refused:
            await page.click("button[type=submit]")
        assert (await refused.value).status == 401
        await expect(page.get_by_role("alert")).to_contain_text("That token does not open the console.")
        await page.screenshot(path=str(s.shots / "01-login-refused.png"), full_page=True)
        assert (await page.request.get(s.base + "/console/data/calls")).status == 401
        # -- the console token opens a read-only session --------------------------------------------------------
        await page.fill("#token", CONSOLE_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(s.base + "/console")
        await expect(page.locator("#live")).to_have_text(
            re.compile(
                r"Live: event stream connected\.|Live updates unavailable \(no event stream\): polling every 2 s\."
            )
        )
        await expect(page.locator("#empty")).to_be_visible()
        # -- a call appears in Now within seconds ------------------------------------------------------------------
        started = time.monotonic()
        uuid = await s.inbound("+15551230000")
        row = page.locator(f'#now-rows tr[data-id="{uuid}"]')
        await expect(row).to_be_visible(timeout=5000)
        appeared = time.monotonic() - started
        await expect(row).to_contain_text("answered", timeout=5000)
        await expect(row).to_contain_text("+15551230000")
        await expect(row).to_contain_text("carrier")
        await expect(row).to_contain_text("PCMU")
        assert await page.locator("text=Hang up").count() == 0  # read-only: no hang-up button
        session = await s.agent.wait_session(timeout=5)
        await s.agent.wait_for(lambda: session.of_type("start"))
        await s.agent.send_transcript("agent", "Hello, this is the support line. How can I help?")
        await s.agent.send_transcript("user", "I would like to check <my> order & its status.")
        await s.sim.remote_dtmf(uuid, "42")
        # live quality, when the orchestrator samples it: the MOS shows and updates
        summary = await s.api(f"/v1/calls/{uuid}")
        if "quality" in summary:
            mos = row.locator("td.mos")
            await expect(mos).to_have_text(re.compile(r"^\d\.\d\d"), timeout=15000)
        await asyncio.sleep(2.5)  # let the duration tick and the poll run once more
        await page.screenshot(path=str(s.shots / "02-now-live-call.png"), full_page=True)
        # -- it ends: gone from Now, in Calls with its outcome -------------------------------------------------------
        await s.sim.remote_hangup(uuid)
        await expect(row).to_have_count(0, timeout=5000)
        await expect(page.locator("#empty")).to_be_visible()

        async def listed() -> bool:
            await page.goto(s.base + "/console/calls")
            return await page.locator(f'a[href="/console/calls/{uuid}"]').count() == 1

        await until(listed, 10, "the call in Calls")
        line = page.locator("table.calls tbody tr", has=page.locator(f'a[href="/console/calls/{uuid}"]'))
        await expect(line.locator(".outcome")).to_have_text(re.compile(r"✓\s*completed"))
        await expect(line).to_contain_text("remote")
        await expect(line).to_contain_text("+15551230000")
        await page.screenshot(path=str(s.shots / "03-calls.png"), full_page=True)
        # filters: a trunk that had no call lists nothing; the call's own number finds it
        await page.fill("#f-number", "+15551230000")
        await page.click(".filters button[type=submit]")
        await expect(page.locator(f'a[href="/console/calls/{uuid}"]')).to_have_count(1)
        await page.select_option("#f-result", "busy")
        await page.click(".filters button[type=submit]")
        await expect(page.locator("text=No call matches.")).to_be_visible()
        await page.goto(s.base + "/console/calls")
        # -- its page: timeline and transcript ----------------------------------------------------------------------
        await page.click(f'a[href="/console/calls/{uuid}"]')
        await page.wait_for_url(f"{s.base}/console/calls/{uuid}")
        timeline = page.locator("ol.timeline")
        for step in ["INVITE received", "Answered (200 OK)", "Agent connected", "DTMF received", "Hang-up: completed"]:
            await expect(timeline).to_contain_text(step)
        await expect(timeline).to_contain_text("by remote")
        await expect(timeline).to_contain_text("cause NORMAL_CLEARING (Q.850 16)")
        transcript = page.locator("ol.transcript")
        await expect(transcript).to_contain_text("Hello, this is the support line. How can I help?")
        await expect(transcript).to_contain_text("I would like to check <my> order & its status.")  # as text
        await expect(page.locator("section[aria-labelledby=media-title]")).to_contain_text("completed")
        record = await s.api(f"/v1/records/{uuid}")
        if record.get("quality", {}).get("series"):
            await expect(page.locator("#quality-chart .uplot canvas")).to_have_count(1)
        else:
            await expect(page.locator("#no-chart")).to_be_visible()
        await page.screenshot(path=str(s.shots / "04-call.png"), full_page=True)
        # -- trunks and nodes ---------------------------------------------------------------------------------------
        await page.click("text=Trunks and nodes")
        await page.wait_for_url(s.base + "/console/trunks")
        await expect(page.locator("#hour-chart .uplot canvas")).to_have_count(1)
        carrier = page.locator('tr[data-trunk="carrier"]')
        await expect(carrier.locator("td.num").first).to_have_text("1")
        await expect(carrier).to_contain_text("fs1: REGED")  # the gateway's state from the node's sofia status
        await expect(page.locator("text=connected").first).to_be_visible()
        await page.screenshot(path=str(s.shots / "05-trunks.png"), full_page=True)
    # -- a session opened with the API token: one-click hang-up ---------------------------------------------------
    async with browser(tmp_path, "write") as context:
        page = await context.new_page()
        s.watch(page)
        await page.goto(s.base + "/console/login")
        await page.fill("#token", API_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(s.base + "/console")
        second = await s.inbound("+15559990000")
        row = page.locator(f'#now-rows tr[data-id="{second}"]')
        await expect(row).to_contain_text("answered", timeout=5000)
        await page.screenshot(path=str(s.shots / "06-now-write-session.png"), full_page=True)
        await row.get_by_role("button", name="Hang up").click()
        await expect(page.locator(".notice")).to_have_text("Hang-up sent.")
        await expect(page.locator(f'#now-rows tr[data-id="{second}"]')).to_have_count(0, timeout=5000)
        await page.screenshot(path=str(s.shots / "07-now-after-hangup.png"), full_page=True)

        async def hung_up() -> Any:
            found = await s.api(f"/v1/calls/{second}")
            return found.get("hangup_by") == "api" and found

        await until(hung_up, 5, "the hang-up by the console")
        # -- the quality chart, from a record with a live series (the simulator here samples no RTP quality) -------
        sampled = sampled_record(s.calls + 1)
        found = store.open_store(store.Target("sqlite", str(s.db), s.db.with_suffix(".spool-test.jsonl")))
        await found.open()
        try:
            await found.put([sampled])
        finally:
            await found.close()
        await page.goto(f"{s.base}/console/calls/{sampled['id']}")
        await expect(page.locator("#quality-chart .uplot canvas")).to_have_count(1)
        # the far end's view (its RTCP reports) drawn too, with the round trip on its own axis
        await expect(page.locator("#quality-chart .u-legend")).to_contain_text("far-end MOS")
        await expect(page.locator("#quality-chart .u-legend")).to_contain_text("round trip (ms)")
        await expect(page.locator("ol.timeline")).to_contain_text("REFER to +15557654321: succeeded (NOTIFY 200 OK)")
        await page.screenshot(path=str(s.shots / "08-call-quality-chart.png"), full_page=True)
    # -- nothing left the console's origin; no CSP violation, no script error --------------------------------------
    assert s.requests and all(u.startswith(s.base + "/") for u in s.requests), [
        u for u in s.requests if not u.startswith(s.base)
    ]
    assert s.problems == []
    assert appeared < 5, appeared
    for name in [
        "01-login-refused",
        "02-now-live-call",
        "03-calls",
        "04-call",
        "05-trunks",
        "06-now-write-session",
        "07-now-after-hangup",
        "08-call-quality-chart",
    ]:
        assert (s.shots / f"{name}.png").stat().st_size > 5000


async def test_console_follows_the_event_stream_in_a_real_browser(tmp_path: Path) -> None:
    """With ``GET /v1/events`` in the API (here a stand-in serving events the test pushes), the pages say the stream
    is connected, a call event refreshes *Now* at once (before any poll), and ``trunk.down``/``trunk.up`` mark the
    trunk's live state — all through the console's relay, with the API token never in the browser."""
    from playwright.async_api import expect
    from test_controller import deployment_text, make_controller

    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    controller = await make_controller(deployment_text([sim.port]).replace("api-token-123", API_TOKEN), tmp_path, [])
    app = create_app(controller, API_TOKEN, console_token=CONSOLE_TOKEN, base_dir=tmp_path)
    queues: list[asyncio.Queue[bytes]] = []
    asked: list[str] = []

    async def events(request: Request) -> StreamingResponse:
        asked.append(request.headers.get("authorization", ""))
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.append(queue)

        async def body() -> AsyncIterator[bytes]:
            yield b": hello\n\n"
            while True:
                yield await queue.get()

        return StreamingResponse(body(), media_type="text/event-stream")

    # the stand-in replaces the API's own event stream (whose events this test could not script)
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/v1/events"]
    app.add_api_route("/v1/events", events, methods=["GET"])

    def push(n: int, kind: str, data: dict[str, Any]) -> None:
        for q in queues:
            q.put_nowait(f"id: {n}\nevent: {kind}\ndata: {json.dumps(data)}\n\n".encode())

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    serving = asyncio.create_task(server.serve())
    base = f"http://127.0.0.1:{port}"
    shots = artifacts(tmp_path)
    requests: list[str] = []
    try:
        while not server.started:
            await asyncio.sleep(0.05)
        async with browser(tmp_path, "events") as context:
            page = await context.new_page()
            page.on("request", lambda r: requests.append(r.url))
            await page.goto(base + "/console/login")
            await page.fill("#token", CONSOLE_TOKEN)
            await page.click("button[type=submit]")
            await page.wait_for_url(base + "/console")
            await expect(page.locator("#live")).to_have_text("Live: event stream connected.")
            # with the stream, Now polls every 5 s only: an event makes the call show within a fraction of that
            await asyncio.sleep(1.2)  # just after a refresh at load
            channel = await sim.inbound_call(
                destination="+15550000001",
                caller_id="+15551230000",
                context="trunk-carrier",
                variables={"sipagent_trunk": "carrier", "sipagent_agent": "support", "sipagent_number": "+15550000001"},
                park_timeout="10:NORMAL_TEMPORARY_FAILURE",
            )
            while controller.call(channel.uuid) is None:
                await asyncio.sleep(0.02)
            pushed = time.monotonic()
            push(1, "call.started", {"id": channel.uuid})
            await expect(page.locator(f'#now-rows tr[data-id="{channel.uuid}"]')).to_be_visible(timeout=2500)
            assert time.monotonic() - pushed < 2.5
            await page.screenshot(path=str(shots / "09-now-event-stream.png"), full_page=True)
            await page.goto(base + "/console/trunks")
            await expect(page.locator("#live")).to_contain_text("Live: event stream connected")
            push(2, "trunk.down", {"trunk": "carrier", "reason": "OPTIONS timeout"})
            cell = page.locator('tr[data-trunk="carrier"] .trunk-live')
            await expect(cell).to_contain_text("✗ down")
            await page.screenshot(path=str(shots / "10-trunks-trunk-down.png"), full_page=True)
            push(3, "trunk.up", {"trunk": "carrier"})
            await expect(cell).to_contain_text("✓ up")
        assert asked and set(asked) == {f"Bearer {API_TOKEN}"}  # the relay asked with the API token, server-side
        assert all(u.startswith(base + "/") for u in requests)
        assert not any(API_TOKEN in u for u in requests)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, 10)
        await controller.stop()
        await sim.stop()
