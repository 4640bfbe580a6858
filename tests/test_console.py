"""The web console without a browser: sessions (signing, expiry, tokens, CSRF), the read-only API token, every page
rendered from a controller and an SQLite store (hostile values escaped), security headers, static assets, the
event-stream relay, and the sans-I/O views (timeline, filters, per-trunk hour)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Request
from fastapi.responses import StreamingResponse
from store_support import record

from orchestrator import store
from orchestrator.api.console import CSP, Console, auth, views
from orchestrator.api.http import create_app
from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Call, CallState
from orchestrator.config import check_text
from orchestrator.config.selfsigned import generate

WRITE, READ, CONSOLE = "write-token-1", "read-token-2", "console-token-3"
REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "orchestrator" / "api" / "console"
HOSTILE = '<script>alert("x")</script>"><img src=x onerror=alert(1)>'
SCRIPT_BREAK = "</script><script>alert(2)</script>"


def deployment_text(tls_dir: Path) -> str:
    return f"""
freeswitch: {{bind_ip: 127.0.0.1, event_socket: {{password: pw}}}}
transports:
  tcp: {{port: 5060}}
  tls: {{port: 5061, certificate: {tls_dir}/sip.test.crt, private_key: {tls_dir}/sip.test.key, ca_bundle: {tls_dir}/ca.crt}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
    outbound: {{address: sbc.carrier.example}}
  - name: backup
    inbound: {{transports: [tcp], auth: {{acl: [198.51.100.0/24]}}}}
numbers: [{{number: "+15550000001", trunk: carrier, agent: support}}]
agents: [{{name: support, protocol: raw, url: "ws://127.0.0.1:9000/a"}}]
orchestrator:
  records: null
  api: {{token: {WRITE}, read_token: {READ}, console_token: {CONSOLE}}}
  nodes: [{{name: fs1, port: 1}}]
"""


class Env:
    """A console over a controller that is never started (no node), with an SQLite store."""

    def __init__(self, controller: Controller, app: Any, found: store.Store) -> None:
        self.controller, self.app, self.store = controller, app, found
        self.hangups: list[tuple[str, str, str]] = []

    def client(self, base: str = "http://console.test") -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url=base)

    def live(self, uuid: str = "11111111-2222-4333-8444-555555555555", **over: Any) -> Call:
        fields: dict[str, Any] = {
            "uuid": uuid,
            "node": "fs1",
            "direction": "inbound",
            "trunk": "carrier",
            "agent": "support",
            "number": "+15550000001",
            "remote": "+15551230000",
            "state": CallState.ANSWERED,
            "created_at": time.time() - 12,
            "answered_at": time.time() - 10,
            "codec": "PCMU",
            "rate": 8000,
        }
        fields.update(over)
        call = Call(**fields)
        self.controller.tracker.calls[call.uuid] = call
        return call


@pytest.fixture()
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    tls = tmp_path / "tls"
    generate(tls, ["sip.test"], days=10)
    result = check_text(deployment_text(tls), "d.yaml", {}, tmp_path)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    controller = Controller(result.deployment, tmp_path, write_records=False)
    found = store.open_store(store.Target("sqlite", str(tmp_path / "calls.db"), tmp_path / "spool.jsonl"))
    await found.open()
    controller.store = found
    app = create_app(controller, WRITE, read_token=READ, console_token=CONSOLE, base_dir=tmp_path)
    e = Env(controller, app, found)

    async def hangup(uuid: str, reason: str = "completed", by: str = "api") -> None:
        e.hangups.append((uuid, reason, by))

    controller.hangup = hangup  # type: ignore[method-assign]
    try:
        yield e
    finally:
        await found.close()


async def login(client: httpx.AsyncClient, token: str) -> httpx.Response:
    page = await client.get("/console/login")
    assert page.status_code == 200
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce is not None
    return await client.post("/console/login", data={"token": token, "nonce": nonce.group(1)})


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


# -- sessions, sans-I/O -------------------------------------------------------------------------------------------
def test_session_cookie_is_signed_and_expires() -> None:
    keys = auth.Keys({"write": WRITE, "read": READ, "console": CONSOLE}, secret=b"s" * 32)
    cookie = keys.issue("read", now=1000.0)
    session = keys.verify(cookie, 1000.0)
    assert session is not None and session.kind == "read" and not session.can_write
    assert keys.verify(cookie, 1000.0 + auth.SESSION_SECONDS - 1) is not None
    assert keys.verify(cookie, 1000.0 + auth.SESSION_SECONDS) is None  # expired
    assert keys.verify(cookie, 999.0) is None  # issued in the future
    # a payload changed to claim the write kind (with the read session's MAC) is refused
    body, mac = cookie.split(".")
    payload = json.loads(auth._unb64(body))
    forged = auth._b64(json.dumps({**payload, "k": "write"}, separators=(",", ":"), sort_keys=True).encode())
    assert keys.verify(f"{forged}.{mac}", 1000.0) is None
    forged_exp = auth._b64(json.dumps({**payload, "e": payload["e"] + 10**6}, separators=(",", ":")).encode())
    assert keys.verify(f"{forged_exp}.{mac}", 1000.0) is None
    # another process (secret) or a changed token: the cookie no longer opens anything
    assert auth.Keys({"read": READ}, secret=b"t" * 32).verify(cookie, 1000.0) is None
    assert auth.Keys({"read": "rotated"}, secret=b"s" * 32).verify(cookie, 1000.0) is None
    assert auth.Keys({"read": READ}, secret=b"s" * 32).verify(cookie, 1000.0) is not None
    for junk in [None, "", "x", "a.b.c", "!!!.###", "e30.AAAA", "W10.AAAA", "x" * 600 + ".y"]:
        assert keys.verify(junk, 1000.0) is None
    # the cookie holds no token
    assert all(t not in auth._unb64(body).decode() for t in (WRITE, READ, CONSOLE))


def test_tokens_are_each_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = auth.Keys({"write": WRITE, "read": READ, "console": CONSOLE})
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    assert keys.kind_of(WRITE) == "write"
    assert keys.kind_of(READ) == "read"
    assert keys.kind_of(CONSOLE) == "console"
    for wrong in ["", "write-token", WRITE + " ", "ü" * 10]:
        assert keys.kind_of(wrong) is None
    assert len(calls) == 3 * 7  # every token compared every time, whatever matched
    assert not auth.Keys({}).enabled and auth.Keys({}).kind_of("") is None


def test_csrf_and_login_nonces() -> None:
    keys = auth.Keys({"write": WRITE}, secret=b"k" * 32)
    a = keys.verify(keys.issue("write", 10.0), 10.0)
    b = keys.verify(keys.issue("write", 10.0), 10.0)
    assert a is not None and b is not None
    assert keys.check_csrf(a, keys.csrf(a)) and not keys.check_csrf(a, keys.csrf(b))
    assert not keys.check_csrf(a, None) and not keys.check_csrf(a, "")
    nonce = keys.login_nonce(100.0)
    assert keys.check_login_nonce(nonce, nonce, 100.0)
    assert not keys.check_login_nonce(nonce, None, 100.0)  # the cookie half is missing
    assert not keys.check_login_nonce(nonce, keys.login_nonce(100.0), 100.0)  # another form's cookie
    assert not keys.check_login_nonce(nonce, nonce, 100.0 + auth.LOGIN_SECONDS)  # too old
    forged = "abc:100:" + "A" * 24
    assert not keys.check_login_nonce(forged, forged, 100.0)
    assert not auth.Keys({"write": WRITE}).check_login_nonce(nonce, nonce, 100.0)  # another process made it
    assert auth.same_origin(None, None, "h:1", "http")
    assert auth.same_origin("http://h:1", "same-origin", "h:1", "http")
    assert not auth.same_origin("http://evil", None, "h:1", "http")
    assert not auth.same_origin(None, "cross-site", "h:1", "http")
    assert not auth.same_origin("null", None, "h:1", "http")


def test_tokens_must_differ(tmp_path: Path) -> None:
    text = deployment_text(tmp_path).replace(f"console_token: {CONSOLE}", f"console_token: {WRITE}")
    result = check_text(text, "d.yaml", {}, tmp_path)
    assert any("must all differ" in str(d) for d in result.errors)
    assert all(WRITE not in str(d) for d in result.errors)  # the secret is never echoed


# -- login and sessions over HTTP -------------------------------------------------------------------------------
PAGES = ["/console", "/console/calls", "/console/calls/00000000-0000-4000-8000-000000000001", "/console/trunks"]


async def test_every_page_and_data_request_needs_a_session(env: Env) -> None:
    async with env.client() as c:
        for path in PAGES:
            r = await c.get(path)
            assert r.status_code == 303 and r.headers["location"] == "/console/login", path
        for path in ["/console/data/calls", "/console/data/events"]:
            assert (await c.get(path)).status_code == 401, path
        r = await c.post("/console/calls/x/hangup", data={"csrf": "x"})
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
        # a forged or foreign cookie is no session
        c.cookies.set("sipagent_console", auth.Keys({"write": WRITE}).issue("write", time.time()), path="/console")
        assert (await c.get("/console")).status_code == 303


async def test_wrong_token_is_refused_with_401_and_no_detail(env: Env) -> None:
    async with env.client() as c:
        r = await login(c, "not-the-token")
        assert r.status_code == 401
        assert "That token does not open the console." in r.text
        assert "not-the-token" not in r.text and "sipagent_console=" not in r.headers.get("set-cookie", "")
        for word in ("read_token", "console_token", "write", WRITE, READ, CONSOLE):
            assert word not in r.text.split("<main", 1)[1], word
        assert (await c.get("/console")).status_code == 303


async def test_login_sets_a_hardened_expiring_cookie(env: Env) -> None:
    async with env.client() as c:
        r = await login(c, CONSOLE)
        assert r.status_code == 303 and r.headers["location"] == "/console"
        cookies = r.headers.get_list("set-cookie")
        session = next(h for h in cookies if h.startswith("sipagent_console="))
        parts = {p.strip().split("=")[0].lower(): p for p in session.split(";")}
        assert "httponly" in parts and parts["samesite"].strip().lower() == "samesite=strict"
        assert (
            parts["path"].strip() == "Path=/console" and parts["max-age"].strip() == f"Max-Age={auth.SESSION_SECONDS}"
        )
        assert "secure" not in parts  # plain http (loopback): a Secure cookie would never come back
        assert any(h.startswith('sipagent_console_login=""') or "sipagent_console_login=;" in h for h in cookies)
        assert (await c.get("/console")).status_code == 200
    async with env.client("https://console.test") as c:
        r = await login(c, CONSOLE)
        session = next(h for h in r.headers.get_list("set-cookie") if h.startswith("sipagent_console="))
        assert "secure" in session.lower()


async def test_login_form_is_csrf_safe(env: Env) -> None:
    async with env.client() as c:
        # no form nonce (a cross-site form cannot read it)
        r = await c.post("/console/login", data={"token": WRITE})
        assert r.status_code == 403 and "sipagent_console=" not in r.headers.get("set-cookie", "")
        nonce = re.search(r'name="nonce" value="([^"]+)"', r.text)
        assert nonce is not None
        r = await c.post(
            "/console/login", data={"token": WRITE, "nonce": nonce.group(1)}, headers={"Origin": "https://evil.example"}
        )
        assert r.status_code == 403
        # a cookie from another form (each refusal shows a new form) does not match
        r = await c.post("/console/login", data={"token": WRITE, "nonce": nonce.group(1)})
        assert r.status_code == 403
        nonce = re.search(r'name="nonce" value="([^"]+)"', r.text)
        assert nonce is not None
        r = await c.post(
            "/console/login", data={"token": WRITE, "nonce": nonce.group(1)}, headers={"Origin": "http://console.test"}
        )
        assert r.status_code == 303


async def test_read_only_session_sees_no_hangup_and_cannot_post_one(env: Env) -> None:
    call = env.live()
    for token in (CONSOLE, READ):
        async with env.client() as c:
            assert (await login(c, token)).status_code == 303
            now = await c.get("/console")
            assert now.status_code == 200 and call.uuid in now.text
            assert "Hang up" not in now.text and "read-only" in now.text
            data = (await c.get("/console/data/calls")).json()
            assert data["can_hangup"] is False and [r["id"] for r in data["calls"]] == [call.uuid]
            r = await c.post(f"/console/calls/{call.uuid}/hangup", data={"csrf": csrf_of(now.text)})
            assert r.status_code == 403 and "read-only token" in r.text
    assert env.hangups == []


async def test_write_session_hangs_up_with_its_csrf_token_only(env: Env) -> None:
    call = env.live()
    async with env.client() as c:
        assert (await login(c, WRITE)).status_code == 303
        now = await c.get("/console")
        assert "Hang up" in now.text and f'action="/console/calls/{call.uuid}/hangup"' in now.text
        token = csrf_of(now.text)
        assert (await c.post(f"/console/calls/{call.uuid}/hangup")).status_code == 403
        assert (await c.post(f"/console/calls/{call.uuid}/hangup", data={"csrf": token + "x"})).status_code == 403
        cross = await c.post(
            f"/console/calls/{call.uuid}/hangup", data={"csrf": token}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status_code == 403
        assert env.hangups == []
        r = await c.post(
            f"/console/calls/{call.uuid}/hangup", data={"csrf": token}, headers={"Origin": "http://console.test"}
        )
        assert r.status_code == 303 and r.headers["location"] == "/console?notice=hangup"
        assert env.hangups == [(call.uuid, "completed", "api")]
        gone = await c.post("/console/calls/99999999-0000-4000-8000-000000000000/hangup", data={"csrf": token})
        assert gone.headers["location"] == "/console?notice=hangup_gone"
        assert "Hang-up sent." in (await c.get("/console?notice=hangup")).text
        assert "<script" not in (await c.get("/console?notice=<script>")).text.split("<main", 1)[1].split("</main>")[0]
        # logout needs the CSRF token too, then the cookie is gone
        assert (await c.post("/console/logout", data={"csrf": "nope"})).status_code == 403
        out = await c.post("/console/logout", data={"csrf": token})
        assert out.status_code == 303 and (await c.get("/console")).status_code == 303


async def test_read_token_reads_the_api_and_changes_nothing(env: Env) -> None:
    call = env.live()
    read = {"Authorization": f"Bearer {READ}"}
    async with env.client() as c:
        r = await c.get("/v1/calls", headers=read)
        assert r.status_code == 200 and [x["id"] for x in r.json()["calls"]] == [call.uuid]
        assert (await c.get(f"/v1/calls/{call.uuid}", headers=read)).status_code == 200
        assert (await c.get("/v1/records", headers=read)).status_code == 200
        for method, path, body in [
            ("DELETE", f"/v1/calls/{call.uuid}", None),
            ("POST", "/v1/calls", {"trunk": "carrier", "to": "+15557654321", "agent": "support"}),
            ("POST", f"/v1/calls/{call.uuid}/dtmf", {"digits": "1"}),
            ("POST", f"/v1/calls/{call.uuid}/transfer", {"target": "+15557654321"}),
        ]:
            r = await c.request(method, path, headers=read, json=body)
            assert r.status_code == 403 and r.json()["error"]["code"] == "read_only", (method, path)
        assert env.hangups == []
        # the console token is not an API token; the API token still does everything
        assert (await c.get("/v1/calls", headers={"Authorization": f"Bearer {CONSOLE}"})).status_code == 401
        r = await c.delete(f"/v1/calls/{call.uuid}", headers={"Authorization": f"Bearer {WRITE}"})
        assert r.status_code == 202 and env.hangups == [(call.uuid, "completed", "api")]


async def test_read_token_without_a_write_token() -> None:
    from types import SimpleNamespace

    controller: Any = SimpleNamespace(tracker=SimpleNamespace(calls={}), store=None)
    app = create_app(controller, None, read_token=READ)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as c:
        assert (await c.get("/v1/calls", headers={"Authorization": f"Bearer {READ}"})).status_code == 200
        r = await c.delete("/v1/calls/abc", headers={"Authorization": f"Bearer {READ}"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "api_disabled"
        assert (await c.get("/v1/calls")).status_code == 401


# -- headers, assets --------------------------------------------------------------------------------------------
async def test_security_headers_and_no_store(env: Env) -> None:
    async with env.client() as c:
        login_page = await c.get("/console/login")
        await login(c, WRITE)
        for r in [login_page, *[await c.get(p) for p in ["/console", "/console/calls", "/console/trunks"]]]:
            assert r.status_code in (200, 404), r.url
            assert r.headers["content-security-policy"] == CSP
            assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
            assert r.headers["x-frame-options"] == "DENY"
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["referrer-policy"] == "same-origin"
            assert r.headers["cache-control"] == "no-store"
            assert r.headers["content-type"].startswith("text/html")
            # no inline script: every <script> either loads a static file or is a JSON data block
            for tag in re.findall(r"<script\b[^>]*>", r.text):
                assert re.fullmatch(r'<script src="/console/static/[\w./-]+" defer>', tag) or tag.startswith(
                    '<script type="application/json"'
                ), tag
            assert not re.search(r"\son[a-z]+=", r.text)  # no inline event handlers
            assert "style=" not in r.text
        data = await c.get("/console/data/calls")
        assert data.headers["cache-control"] == "no-store" and data.headers["x-frame-options"] == "DENY"
    # the rest of the API is untouched by the console's headers
    async with env.client() as c:
        assert "content-security-policy" not in (await c.get("/healthz")).headers


STATIC_TYPES = {
    "console.css": "text/css; charset=utf-8",
    "console.js": "text/javascript; charset=utf-8",
    "now.js": "text/javascript; charset=utf-8",
    "call.js": "text/javascript; charset=utf-8",
    "trunks.js": "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "vendor/uplot/uPlot.min.css": "text/css; charset=utf-8",
}
UPLOT_SHA256 = {
    "uPlot.iife.min.js": "19c8d4c6ad88929a79f4ae49d6f7161566dfd0ba3d15cc495e974f787eb78f1f",
    "uPlot.min.css": "df630c6a8d6f8eeaff264b50f73ce5b114f646ffd9a0bb74f049b0a00135fa04",
    "LICENSE": "8f989229699b4fe2f1a0432d0e9edc338a8a911e250e2d1b01ecd770a5f5b1bd",
}


async def test_static_assets_are_served_with_their_types(env: Env) -> None:
    async with env.client() as c:
        for path, kind in STATIC_TYPES.items():
            r = await c.get(f"/console/static/{path}")  # no session needed: no data in them
            assert r.status_code == 200 and r.headers["content-type"] == kind, path
            assert r.content == (PACKAGE / "static" / path).read_bytes()
            assert r.headers["x-content-type-options"] == "nosniff"
        for bad in [
            "vendor/uplot/README.md",
            "vendor/uplot/LICENSE",
            "../__init__.py",
            "%2e%2e/__init__.py",
            "nope.js",
        ]:
            assert (await c.get(f"/console/static/{bad}")).status_code == 404, bad


def test_vendored_uplot_is_the_recorded_release() -> None:
    folder = PACKAGE / "static" / "vendor" / "uplot"
    readme = (folder / "README.md").read_text()
    assert "uPlot 1.6.32" in readme and "MIT" in (folder / "LICENSE").read_text()
    for name, digest in UPLOT_SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
        assert digest in readme


URL = re.compile(r"(?i)(?:https?:|wss?:|ftp:)?//[a-z0-9.-]+\.[a-z]{2,}|https?://|@import|url\(\s*['\"]?(?!data:)")


def test_no_external_urls_in_templates_or_assets() -> None:
    files = [p for p in sorted(PACKAGE.rglob("*")) if p.suffix in (".html", ".js", ".css")]
    assert len(files) >= 10
    for path in files:
        text = path.read_text()
        if path.name == "uPlot.iife.min.js":  # its licence banner names the project: a comment, not a request
            banner = "/*! https://github.com/leeoniya/uPlot (v1.6.32) */"
            assert text.startswith(banner)
            text = text[len(banner) :]
        found = URL.findall(text)
        assert not found, (path.name, found[:3])


# -- pages ----------------------------------------------------------------------------------------------------------
def rich_record(n: int = 1, **over: Any) -> dict[str, Any]:
    t0 = time.time() - 600
    base = record(
        n,
        started=t0,
        direction="inbound",
        trunk="carrier",
        agent="support",
        result="transferred",
        codec="PCMU",
        rate=8000,
        progress=[180, 183],
        timings={
            "created": t0,
            "ringing": t0 + 0.2,
            "early_media": None,
            "answered": t0 + 1.0,
            "ended": t0 + 40.0,
            "setup_seconds": 1.0,
            "duration_seconds": 39.0,
        },
        hangup={"cause": "NORMAL_CLEARING", "q850": 16, "sip_status": 200, "sip_phrase": "OK", "result": "transferred"},
        hangup_by="transfer",
        transfer={"method": "refer", "target": "+15557654321", "status": "succeeded", "sip_status": 200, "detail": ""},
        dtmf={"received": "12#", "sent": ""},
        quality={
            "mos": 4.3,
            "packets_in": 1900,
            "series": [
                {"t": t0 + 6, "mos": 4.39, "jitter_ms": 0.6, "loss_pct": 0.0},
                {"t": t0 + 11, "mos": 3.1, "jitter_ms": 9.5, "loss_pct": 8.0},
                {"t": t0 + 16, "mos": 4.2, "jitter_ms": 9.8, "loss_pct": 0.5},
            ],
            "summary": {"samples": 3, "mos_min": 3.1, "mos_avg": 3.9, "jitter_ms_max": 9.8, "loss_pct_max": 8.0},
        },
        media={
            "agent_protocol": "raw",
            "outcome": "completed",
            "agent_connect_ms": 42.0,
            "interruptions": 2,
            "frames": {"from_caller": 1950, "to_agent": 1950},
            "transcript": [
                {"t": 1.2, "role": "agent", "text": "Hello, how can I help?"},
                {"t": 3.4, "role": "user", "text": "I need a person."},
            ],
            "agent_events": [{"t": 5.0, "kind": "tool", "name": "lookup"}],
        },
    )
    base.update(over)
    return base


async def test_call_page_shows_timeline_chart_transcript_and_media(env: Env) -> None:
    rec = rich_record()
    await env.store.put([rec])
    async with env.client() as c:
        await login(c, READ)
        r = await c.get(f"/console/calls/{rec['id']}")
    assert r.status_code == 200
    steps = re.findall(r'<span class="what">([^<]+)</span>', r.text)
    assert steps == [
        "INVITE received",
        "Provisional: 180 Ringing, 183 Session Progress",
        "Answered (200 OK)",
        "Agent connected",
        "DTMF received",
        "Interruptions",
        "Transfer",
        "Hang-up: transferred",
    ]
    assert "REFER to +15557654321: succeeded (NOTIFY 200 OK)" in r.text
    assert "by transfer, SIP 200 OK, cause NORMAL_CLEARING (Q.850 16)" in r.text
    assert "support (raw) in 42 ms" in r.text and "12#" in r.text
    assert "Hello, how can I help?" in r.text and "I need a person." in r.text
    data = re.search(r'<script type="application/json" id="quality-data">(.*?)</script>', r.text, re.S)
    assert data is not None
    series = json.loads(data.group(1))
    assert series["mos"] == [4.39, 3.1, 4.2] and len(series["t"]) == 3
    assert "uPlot.iife.min.js" in r.text and "lowest MOS (live)" in r.text and "3.10" in r.text
    assert "media outcome" in r.text and "frames from caller" in r.text
    # without a series: no chart, said so
    plain = rich_record(2, quality={"mos": 4.5})
    await env.store.put([plain])
    async with env.client() as c:
        await login(c, READ)
        r = await c.get(f"/console/calls/{plain['id']}")
    assert 'id="no-chart"' in r.text and "quality-data" not in r.text and "uPlot.iife" not in r.text
    async with env.client() as c:
        await login(c, READ)
        assert (await c.get("/console/calls/00000000-0000-4000-8000-000000009999")).status_code == 404
        assert (await c.get("/console/calls/bad%20id")).status_code == 404


async def test_live_call_page_and_live_quality(env: Env) -> None:
    call = env.live(srtp="AES_CM_128_HMAC_SHA1_80")
    async with env.client() as c:
        await login(c, READ)
        page = await c.get(f"/console/calls/{call.uuid}")
        assert page.status_code == 200 and 'data-live="yes"' in page.text and "in progress" in page.text
        # the quality helper's live sample in a summary (quality: latest t, mos, jitter_ms, loss_pct, low)
        original = Call.summary

        def with_quality(self: Call) -> dict[str, Any]:
            return {
                **original(self),
                "quality": {"t": 1.0, "mos": 3.21, "jitter_ms": 4.5, "loss_pct": 2.25, "low": True},
            }

        Call.summary = with_quality  # type: ignore[method-assign]
        try:
            now = await c.get("/console")
            rows = (await c.get("/console/data/calls")).json()["calls"]
        finally:
            Call.summary = original  # type: ignore[method-assign]
    assert "3.21" in now.text and "4.5 ms" in now.text and "2.2 %" in now.text and "AES_CM_128_HMAC_SHA1_80" in now.text
    assert rows[0]["quality"] == {"mos": 3.21, "jitter_ms": 4.5, "loss_pct": 2.25} and rows[0]["quality_low"] is True


async def test_the_far_ends_rtcp_figures_show_on_the_call_page_and_in_now(env: Env) -> None:
    t0 = time.time() - 600
    far = {"out_mos": 3.92, "out_jitter_ms": 20.0, "out_loss_pct": 4.0, "out_lost": 6, "rtt_ms": 117.5}
    rec = rich_record(
        3,
        quality={
            "series": [
                {"t": t0 + 6, "mos": 4.39, "jitter_ms": 0.6, "loss_pct": 0.0, "out_mos": None, "rtt_ms": None},
                {"t": t0 + 11, "mos": 4.38, "jitter_ms": 0.6, "loss_pct": 0.0, **far},
            ],
            "summary": {"samples": 2, "mos_min": 4.38, "rtcp_reports": 3, "out_mos_min": 3.92, "out_mos_avg": 3.92,
                        "out_loss_pct_max": 4.0, "out_jitter_ms_max": 20.0, "out_lost": 6, "rtt_ms_avg": 117.5,
                        "rtt_ms_max": 117.5},
        },
    )  # fmt: skip
    silent = rich_record(4, quality={"series": [{"t": t0, "mos": 4.4}], "summary": {"samples": 1, "rtcp_reports": 0}})
    await env.store.put([rec, silent])
    call = env.live()
    original = Call.summary

    def with_quality(self: Call) -> dict[str, Any]:
        q = {"t": 1.0, "mos": 4.38, "jitter_ms": 0.6, "loss_pct": 0.0, "low": False, **far}
        return {**original(self), "quality": q}

    async with env.client() as c:
        await login(c, READ)
        page = await c.get(f"/console/calls/{rec['id']}")
        quiet = await c.get(f"/console/calls/{silent['id']}")
        Call.summary = with_quality  # type: ignore[method-assign]
        try:
            now = await c.get("/console")
            rows = (await c.get("/console/data/calls")).json()["calls"]
        finally:
            Call.summary = original  # type: ignore[method-assign]
    data = re.search(r'<script type="application/json" id="quality-data">(.*?)</script>', page.text, re.S)
    assert data is not None
    series = json.loads(data.group(1))
    assert series["out_mos"] == [None, 3.92] and series["rtt_ms"] == [None, 117.5]
    assert series["out_loss_pct"] == [None, 4.0] and series["out_jitter_ms"] == [None, 20.0]
    for text in ("lowest far-end MOS (its RTCP)", "3.92", "highest far-end loss (its RTCP)", "4.0 %",
                 "average round trip (RTCP)", "118 ms", "packets the far end lost", "far-end RTCP reports"):  # fmt: skip
        assert text in page.text, text
    assert "the far end&#39;s own figures" in page.text or "the far end's own figures" in page.text
    # a far end that sent no RTCP: said so, and no far-end columns for the chart
    assert "none (the far end sent no RTCP, or RTCP is off)" in quiet.text
    quiet_data = re.search(r'id="quality-data">(.*?)</script>', quiet.text, re.S)
    assert quiet_data is not None and "out_mos" not in json.loads(quiet_data.group(1))
    # Now: the far end's figure after the slash, the round trip in the tooltip
    row = next(r for r in rows if r["id"] == call.uuid)
    assert row["quality"] == {"mos": 4.38, "jitter_ms": 0.6, "loss_pct": 0.0, "out_mos": 3.92, "out_jitter_ms": 20.0,
                              "out_loss_pct": 4.0, "rtt_ms": 117.5}  # fmt: skip
    assert "4.38 / 3.92" in now.text and "0.6 ms / 20.0 ms" in now.text and "0.0 % / 4.0 %" in now.text
    assert "round trip 118 ms" in now.text


async def test_calls_page_filters_and_cursor_pages(env: Env) -> None:
    t0 = time.time() - 7200
    await env.store.put([record(n, started=t0 + n * 10) for n in range(1, 61)])
    async with env.client() as c:
        await login(c, CONSOLE)
        first = await c.get("/console/calls")
        assert first.status_code == 200
        ids = re.findall(r'href="/console/calls/([0-9a-f-]{36})"', first.text)
        assert ids == [record(n)["id"] for n in range(60, 10, -1)]
        assert "✓</span> completed" in first.text and "✗</span>" not in first.text and "–</span> busy" in first.text
        nxt = re.search(r'href="(/console/calls\?cursor=[^"]+)" rel="next"', first.text)
        assert nxt is not None
        second = await c.get(nxt.group(1).replace("&amp;", "&"))
        assert re.findall(r'href="/console/calls/([0-9a-f-]{36})"', second.text) == [
            record(n)["id"] for n in range(10, 0, -1)
        ]
        assert 'rel="next"' not in second.text and "« Newest" in second.text
        # filters (as the form sends them: empty fields too)
        form = {
            "since": "",
            "until": "",
            "direction": "",
            "trunk": "backup",
            "number": "",
            "agent": "",
            "result": "busy",
            "sip_status": "486",
        }
        r = await c.get("/console/calls", params=form)
        got = re.findall(r'href="/console/calls/([0-9a-f-]{36})"', r.text)
        assert got == [record(n)["id"] for n in range(60, 0, -1) if n % 3 == 0 and n % 5 == 0]
        assert 'value="backup"' in r.text and '<option value="busy" selected>' in r.text
        # the filtered next page keeps the filters
        since = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t0))
        r = await c.get("/console/calls", params={"since": since, "number": ""})
        nxt = re.search(r'href="(/console/calls\?[^"]+)" rel="next"', r.text)
        assert nxt is not None and "since=" + since.replace(":", "%3A") in nxt.group(1) and "number" not in nxt.group(1)
        # bad filters: 400 with the reason, nothing listed
        bad = await c.get("/console/calls", params={"since": "yesterday", "sip_status": "99", "trunk": "a b"})
        assert bad.status_code == 400 and "since: not a date and time" in bad.text and "SIP status" in bad.text
        assert (await c.get("/console/calls", params={"cursor": "bm9wZQ"})).status_code == 400


async def test_calls_page_without_a_store(env: Env) -> None:
    env.controller.store = None
    async with env.client() as c:
        await login(c, CONSOLE)
        r = await c.get("/console/calls")
    assert r.status_code == 200 and "Call records are not stored here" in r.text


async def test_trunks_page_counts_nodes_and_certificates(env: Env) -> None:
    now = time.time()
    await env.store.put(
        [
            record(1, started=now - 100, trunk="carrier", result="completed"),
            record(2, started=now - 200, trunk="carrier", result="agent_failed"),
            record(3, started=now - 400, trunk="backup", result="unavailable"),
            record(4, started=now - 500, trunk="backup", result="busy"),
            record(5, started=now - 7200, trunk="carrier", result="failed"),  # older than the hour
        ]
    )
    async with env.client() as c:
        await login(c, READ)
        r = await c.get("/console/trunks")
    assert r.status_code == 200
    data = re.search(r'<script type="application/json" id="hour-data">(.*?)</script>', r.text, re.S)
    assert data is not None
    chart = json.loads(data.group(1))
    assert len(chart["t"]) == 12
    assert (chart["trunks"]["carrier"]["total"], chart["trunks"]["carrier"]["failed"]) == (2, 1)
    assert (chart["trunks"]["backup"]["total"], chart["trunks"]["backup"]["failed"]) == (2, 1)
    row = re.search(r'<tr data-trunk="carrier">(.*?)</tr>', r.text, re.S)
    assert row is not None and ">2</td>" in row.group(1) and "✗</span> 1" in row.group(1)
    assert "fs1" in r.text and "disconnected" in r.text and "127.0.0.1:1" in r.text
    assert "transports.tls.certificate" in r.text and "expires soon" in r.text and "CN=sip.test" in r.text
    assert "transports.tls.ca_bundle" in r.text


async def test_hostile_values_are_escaped_everywhere(env: Env) -> None:
    evil = rich_record(
        7,
        trunk="carrier",
        agent=HOSTILE,
        sip_call_id=HOSTILE,
        source=SCRIPT_BREAK,
        result=HOSTILE,
        hangup={"cause": HOSTILE, "q850": 16, "sip_status": 486, "sip_phrase": SCRIPT_BREAK},
        hangup_by=HOSTILE,
        transfer={"method": HOSTILE, "target": SCRIPT_BREAK, "status": HOSTILE, "sip_status": None, "detail": HOSTILE},
        dtmf={"received": HOSTILE, "sent": SCRIPT_BREAK},
        refused=HOSTILE,
        originate_error=SCRIPT_BREAK,
        progress=[180, HOSTILE],
        codec=HOSTILE,
        rate=HOSTILE,
        quality={
            "series": [{"t": time.time(), "mos": SCRIPT_BREAK, "jitter_ms": 1.0, "loss_pct": 0.0, SCRIPT_BREAK: 1}],
            "summary": {"mos_min": HOSTILE},
            "mos": SCRIPT_BREAK,
        },
        media={
            "outcome": HOSTILE,
            "detail": SCRIPT_BREAK,
            "agent_protocol": HOSTILE,
            "frames": {HOSTILE: 1},
            "transcript": [
                {"t": 1, "role": HOSTILE, "text": SCRIPT_BREAK},
                {"t": HOSTILE, "role": "agent", "text": HOSTILE},
            ],
            "agent_events": [{"t": 1, "kind": HOSTILE, HOSTILE: SCRIPT_BREAK}],
        },
        **{"from": HOSTILE, "to": SCRIPT_BREAK},
    )
    await env.store.put([evil])
    live = env.live(agent=HOSTILE, remote=SCRIPT_BREAK, codec=HOSTILE, srtp=SCRIPT_BREAK, node=HOSTILE)
    async with env.client() as c:
        await login(c, WRITE)
        pages = {
            "now": await c.get("/console"),
            "calls": await c.get("/console/calls"),
            "filtered": await c.get("/console/calls", params={"number": HOSTILE, "trunk": HOSTILE}),
            "call": await c.get(f"/console/calls/{evil['id']}"),
            "live": await c.get(f"/console/calls/{live.uuid}"),
            "trunks": await c.get("/console/trunks"),
        }
        data = await c.get("/console/data/calls")
    for name, r in pages.items():
        assert r.status_code in (200, 400), name
        html = r.text
        assert (
            "<script>alert" not in html
            and "<img src=x" not in html
            and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
        ), name
        assert "</script><script>" not in html, name
        # our own scripts only (static files or JSON blocks), however many hostile strings the page holds
        assert all(
            t.startswith(('<script src="/console/static/', '<script type="application/json"'))
            for t in re.findall(r"<script\b[^>]*>", html)
        ), name
        for block in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S):
            json.loads(block)  # parses: nothing broke out of it
            assert "<" not in block and ">" not in block
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in pages["call"].text
    assert "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in pages["call"].text  # the transcript, shown as text
    assert HOSTILE in data.text or json.loads(data.text)["calls"][0]["agent"] == HOSTILE  # JSON carries it as data


async def test_events_relay_forwards_the_api_stream_for_a_session(env: Env) -> None:
    seen: list[dict[str, str]] = []

    async def events(request: Request) -> StreamingResponse:
        seen.append(
            {
                "authorization": request.headers.get("authorization", ""),
                "cookie": request.headers.get("cookie", ""),
                "last": request.headers.get("last-event-id", ""),
            }
        )

        async def body() -> AsyncIterator[bytes]:
            yield b'id: 1\nevent: call.started\ndata: {"id": "abc"}\n\n'
            yield b'id: 2\nevent: trunk.down\ndata: {"trunk": "carrier"}\n\n'

        return StreamingResponse(body(), media_type="text/event-stream")

    # without the API's own (endless) stream first, then with a stand-in whose two events end
    env.app.router.routes[:] = [r for r in env.app.router.routes if getattr(r, "path", None) != "/v1/events"]
    async with env.client() as c:
        await login(c, CONSOLE)
        missing = await c.get("/console/data/events")
        assert missing.status_code == 404  # no event stream in this API: the pages poll and say so
        env.app.add_api_route("/v1/events", events, methods=["GET"])
        r = await c.get("/console/data/events", headers={"Last-Event-ID": "7", "Accept": "text/event-stream"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "event: call.started" in r.text and "event: trunk.down" in r.text
    assert r.headers["cache-control"] == "no-store"
    # asked with the API's read token on the session's behalf; the browser's cookie is not passed on
    assert seen == [{"authorization": f"Bearer {READ}", "cookie": "", "last": "7"}]


# -- views, sans-I/O --------------------------------------------------------------------------------------------------
def test_outcome_classes_word_and_icon() -> None:
    assert views.outcome("completed") == {"word": "completed", "cls": "ok", "icon": "✓"}
    assert views.outcome("busy")["cls"] == "warn" and views.outcome("no_answer")["icon"] == "–"
    assert views.outcome("agent_failed")["cls"] == "bad" and views.outcome(None)["word"] == "unknown"
    assert views.failed("media_failed") and not views.failed("busy") and not views.failed("transferred")


def test_timeline_orders_steps_and_keeps_untimed_ones_in_place() -> None:
    t0 = 1_700_000_000.0
    steps = views.timeline(
        {
            "direction": "outbound",
            "from": "+1555",
            "to": "+1666",
            "progress": [180],
            "timings": {"created": t0, "ringing": t0 + 2, "answered": t0 + 5, "ended": t0 + 9},
            "media": {"agent_connect_ms": 250},
            "dtmf": {"sent": "9"},
            "hangup": {"cause": "USER_BUSY", "q850": 17, "sip_status": 486, "sip_phrase": "Busy Here"},
            "hangup_by": "remote",
            "result": "busy",
            "lost": True,
        }
    )
    assert [s["label"] for s in steps] == [
        "INVITE sent",
        "Provisional: 180 Ringing",
        "Answered (200 OK)",
        "Agent connected",
        "DTMF sent",
        "Hang-up: busy",
        "Lost",
    ]
    assert [s["offset"] for s in steps] == ["+0.0 s", "+2.0 s", "+5.0 s", "+5.2 s", "", "+9.0 s", ""]
    assert (
        steps[5]["detail"] == "by remote, SIP 486 Busy Here, cause USER_BUSY (Q.850 17)" and steps[5]["kind"] == "warn"
    )
    assert steps[0]["at"] == "2023-11-14 22:13:20"
    assert views.timeline({})[0]["label"] == "INVITE sent"  # an empty record still renders


def test_parse_filters() -> None:
    form = views.parse_filters(
        {
            "since": "2024-05-01T12:00",
            "until": "2024-05-01T14:00:00+02:00",
            "trunk": "carrier",
            "sip_status": "486",
            "agent": "",
        }
    )
    assert form.errors == []
    assert form.filters == store.Filters(since=1714564800.0, until=1714564800.0, trunk="carrier", sip_status=486)
    assert form.values == {
        "since": "2024-05-01T12:00",
        "until": "2024-05-01T14:00:00+02:00",
        "trunk": "carrier",
        "sip_status": "486",
    }
    bad = views.parse_filters(
        {
            "since": "2024-05-02T00:00",
            "until": "2024-05-01T00:00",
            "direction": "up",
            "result": "DROP TABLE",
            "cursor": "x" * 600,
        }
    )
    assert len(bad.errors) == 4 and bad.cursor is None


def test_trunk_hour_buckets() -> None:
    now = 1_700_003_599.0
    chart = views.trunk_hour(
        [
            {"trunk": "a", "result": "completed", "timings": {"created": now - 10}},
            {"trunk": "a", "result": "failed", "timings": {"created": now - 10}},
            {"trunk": "b", "result": "busy", "timings": {"created": now - 3400}},
            {"trunk": "a", "result": "failed", "timings": {"created": now - 4000}},  # outside
            {"trunk": "a", "result": "failed", "timings": {"created": "soon"}},  # no time
        ],
        ["a", "c"],
        now,
    )
    assert chart["t"][0] == 1_700_000_100.0 and chart["t"][-1] == 1_700_003_400.0 and len(chart["t"]) == 12
    assert chart["trunks"]["a"]["calls"][-1] == 2 and chart["trunks"]["a"]["failures"][-1] == 1
    assert chart["trunks"]["b"]["calls"][0] == 1 and chart["trunks"]["b"]["failed"] == 0
    assert chart["trunks"]["c"]["total"] == 0


def test_quality_series_is_read_defensively() -> None:
    assert views.quality_series({}) is None and views.quality_series({"quality": {"series": "x"}}) is None
    cols = views.quality_series(
        {
            "quality": {
                "series": [{"t": 2, "mos": 4.0}, {"t": 1, "mos": True, "loss_pct": float("nan")}, {"mos": 1}, "x"]
            }
        }
    )
    assert cols == {"t": [1.0, 2.0], "mos": [None, 4.0], "jitter_ms": [None, None], "loss_pct": [None, None]}
    assert views.live_quality({"quality": None}) is None
    assert views.live_quality({"quality": {"mos": 4.1, "jitter_ms": "x"}}) == {"mos": 4.1}


def test_console_without_any_token_says_how_to_enable_it() -> None:
    console = Console(object(), {})
    assert not console.keys.enabled


async def test_login_page_when_no_token_opens_it() -> None:
    from types import SimpleNamespace

    controller: Any = SimpleNamespace(tracker=SimpleNamespace(calls={}), store=None)
    app = create_app(controller, None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://c") as c:
        page = await c.get("/console/login")
        assert "The console is off" in page.text and "console_token" in page.text
        r = await login(c, "")
        assert r.status_code == 401
