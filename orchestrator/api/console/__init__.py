"""The read-only web console at ``/console``: server-rendered Jinja2 pages, a little vanilla JS, SSE for live parts.

Pages (docs/operations.md#console): **Now** (calls in progress, live), **Calls** (records from the store, filtered
and paged), **one call** (timeline, quality chart, transcript, media figures), **Trunks and nodes** (per-trunk
calls and failures over the last hour, ESL link per node, gateway state, TLS certificate expiry).

Security: a login with a console token, a read-only API token or the API token (:mod:`.auth`: HMAC-signed,
expiring, HttpOnly SameSite=Strict cookie, Secure over https); every page and data request needs the session;
the one write action (hang-up, only for a session opened with the API token) is a POST with the session's CSRF
token from the console's own origin. Every value is escaped (Jinja2 autoescape, JSON embedded with ``tojson``);
the pages carry a strict Content-Security-Policy (scripts and styles only from ``/console/static``), refuse
framing and are never cached. All assets ship in the package: the console makes no third-party request.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from cryptography import x509
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from orchestrator import __version__, store
from orchestrator.api.console import auth, views
from orchestrator.calls import records
from orchestrator.config.files import TLS_FILE_LIMIT, FileReadError, read_bounded
from orchestrator.config.tls_material import EXPIRY_WARNING_DAYS, resolve
from orchestrator.esl import replies

log = logging.getLogger("sipagent.console")

HERE = Path(__file__).parent
STATIC = HERE / "static"
#: the content types of what ``/console/static`` serves (anything else there is not served)
CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
COOKIE = "sipagent_console"
LOGIN_COOKIE = "sipagent_console_login"
PREFIX = "/console"
#: every /console response: scripts, styles, fetches, forms only from here; no framing, no plugins, no referrer
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),  # no-referrer would make Chromium send "Origin: null" on our POSTs
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]
_CALL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
#: the messages a redirect may ask a page to show (by key: nothing from the URL is ever shown)
NOTICES = {
    "hangup": ("ok", "Hang-up sent."),
    "hangup_gone": ("warn", "That call is no longer up."),
    "hangup_failed": ("bad", "The hang-up could not be sent (the node did not answer); try again."),
    "logged_out": ("ok", "Logged out."),
}
#: how many records the Trunks page reads at most for its hour (pages of the store's largest size)
HOUR_PAGES = 20
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class ConsoleHeaders:
    """ASGI middleware: the security headers on every ``/console`` response, and ``no-store`` on all but its
    static assets (which may be cached briefly: they are the package's own files)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return
        static = path.startswith(PREFIX + "/static/")

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                names = {b"cache-control"} | {name for name, _ in SECURITY_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                headers += SECURITY_HEADERS
                headers.append((b"cache-control", b"public, max-age=300" if static else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template is HTML: every value is escaped
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["utc"] = views.utc
    env.filters["seconds"] = views.seconds
    return env


def _static_files() -> dict[str, tuple[Path, str]]:
    """URL path under /console/static → (file, content type): only the package's files of known types."""
    found = {}
    for path in sorted(STATIC.rglob("*")):
        kind = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and kind:
            found[path.relative_to(STATIC).as_posix()] = (path, kind)
    return found


class Console:
    """The console's routes over a controller. ``tokens``: which tokens open it (``auth.Kind`` → token);
    ``api_tokens``: the API's write and read tokens, with which the console asks ``/v1/events`` on a session's
    behalf (the browser never sees them)."""

    def __init__(
        self,
        controller: Any,
        tokens: dict[auth.Kind, str],
        *,
        base_dir: Path | None = None,
        secret: bytes | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.controller = controller
        self.base_dir = base_dir or Path(".")
        self.keys = auth.Keys(tokens, secret)
        self.api_write = tokens.get("write")
        self.api_read = tokens.get("read")
        self.clock = clock
        self.env = _environment()
        self.static = _static_files()
        self.app: FastAPI | None = None

    # -- wiring ------------------------------------------------------------------------------------------
    def mount(self, app: FastAPI) -> None:
        """Add the console's routes and headers to ``app``."""
        self.app = app
        app.add_middleware(ConsoleHeaders)
        add = app.add_api_route
        add(PREFIX, self.now_page, methods=["GET"], include_in_schema=False)
        add(PREFIX + "/", self.now_page, methods=["GET"], include_in_schema=False)
        add(PREFIX + "/login", self.login_page, methods=["GET"], include_in_schema=False)
        add(PREFIX + "/login", self.login, methods=["POST"], include_in_schema=False)
        add(PREFIX + "/logout", self.logout, methods=["POST"], include_in_schema=False)
        add(PREFIX + "/calls", self.calls_page, methods=["GET"], include_in_schema=False)
        add(PREFIX + "/calls/{call_id}", self.call_page, methods=["GET"], include_in_schema=False)
        add(PREFIX + "/calls/{call_id}/hangup", self.hangup, methods=["POST"], include_in_schema=False)
        add(PREFIX + "/trunks", self.trunks_page, methods=["GET"], include_in_schema=False)
        add(PREFIX + "/data/calls", self.live_calls, methods=["GET"], include_in_schema=False)
        add(PREFIX + "/static/{path:path}", self.static_file, methods=["GET"], include_in_schema=False)
        app.router.routes.append(Route(PREFIX + "/data/events", EventsRelay(self), methods=["GET"]))

    # -- sessions -------------------------------------------------------------------------------------------
    def session(self, request: Request) -> auth.Session | None:
        """The request's verified session, or None."""
        return self.keys.verify(request.cookies.get(COOKIE), self.clock())

    def _render(self, request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        session: auth.Session | None = context.pop("session", None)
        context.setdefault("page", "")
        notice = NOTICES.get(request.query_params.get("notice", ""))
        html = self.env.get_template(name).render(
            version=__version__,
            session=session,
            can_write=bool(session and session.can_write),
            csrf=self.keys.csrf(session) if session else "",
            notice=notice,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def _login_redirect(self) -> RedirectResponse:
        return RedirectResponse(PREFIX + "/login", status_code=303)

    def _secure(self, request: Request) -> bool:
        return request.url.scheme == "https"

    async def _form(self, request: Request) -> dict[str, str]:
        """An urlencoded form body (bounded by the app's BoundedBody), first value of each field."""
        if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {}
        body = (await request.body()).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(body, max_num_fields=16).items() if v}

    def _same_origin(self, request: Request) -> bool:
        return auth.same_origin(
            request.headers.get("origin"),
            request.headers.get("sec-fetch-site"),
            request.headers.get("host"),
            request.url.scheme,
        )

    # -- login -------------------------------------------------------------------------------------------------
    async def login_page(self, request: Request) -> Response:
        """The login form (with its own CSRF nonce, also set as a short-lived cookie)."""
        if self.session(request) is not None:
            return RedirectResponse(PREFIX, status_code=303)
        return self._login_form(request, 200, "")

    def _login_form(self, request: Request, status: int, error: str) -> Response:
        nonce = self.keys.login_nonce(self.clock())
        response = self._render(
            request,
            "login.html",
            status,
            title="Log in",
            page="login",
            nonce=nonce,
            error=error,
            enabled=self.keys.enabled,
        )
        response.set_cookie(
            LOGIN_COOKIE,
            nonce,
            max_age=auth.LOGIN_SECONDS,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
        )
        return response

    async def login(self, request: Request) -> Response:
        """Check the token (constant time); open a session, or answer 401 without saying more."""
        form = await self._form(request)
        now = self.clock()
        if not self._same_origin(request) or not self.keys.check_login_nonce(
            form.get("nonce"), request.cookies.get(LOGIN_COOKIE), now
        ):
            return self._login_form(request, 403, "The login form expired or came from elsewhere: try again.")
        kind = self.keys.kind_of(form.get("token", "")[:2048])
        if kind is None:
            log.info("console: a login was refused")
            await asyncio.sleep(0.2)  # a little friction for guessing; the token's strength does the rest
            return self._login_form(request, 401, "That token does not open the console.")
        log.info("console: login with the %s token", kind)
        response = RedirectResponse(PREFIX, status_code=303)
        response.set_cookie(
            COOKIE,
            self.keys.issue(kind, now),
            max_age=auth.SESSION_SECONDS,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=self._secure(request),
        )
        response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
        return response

    async def logout(self, request: Request) -> Response:
        """End the session in this browser (POST with the session's CSRF token)."""
        session = self.session(request)
        form = await self._form(request)
        if session is not None and (
            not self._same_origin(request) or not self.keys.check_csrf(session, form.get("csrf"))
        ):
            return self._render(request, "error.html", 403, session=session, title="Refused", message=_CSRF_REFUSED)
        response = RedirectResponse(PREFIX + "/login?notice=logged_out", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX, httponly=True, samesite="strict", secure=self._secure(request))
        return response

    # -- Now -------------------------------------------------------------------------------------------------------
    def _live_rows(self) -> list[dict[str, Any]]:
        now = self.clock()
        calls = [c.summary() for c in list(self.controller.tracker.calls.values())]
        rows = [views.live_call(s, now) for s in calls]
        rows.sort(key=lambda r: r["created_at"] or 0, reverse=True)
        return rows

    async def now_page(self, request: Request) -> Response:
        """Calls in progress (server-rendered; ``now.js`` keeps it live)."""
        session = self.session(request)
        if session is None:
            return self._login_redirect()
        return self._render(
            request, "now.html", session=session, page="now", title="Now", rows=self._live_rows(), now=self.clock()
        )

    async def live_calls(self, request: Request) -> Response:
        """``/console/data/calls``: the Now page's rows as JSON (what ``now.js`` polls)."""
        session = self.session(request)
        if session is None:
            return JSONResponse({"error": {"code": "unauthorized", "message": "log in again"}}, status_code=401)
        return JSONResponse({"now": self.clock(), "calls": self._live_rows(), "can_hangup": session.can_write})

    async def hangup(self, request: Request, call_id: str) -> Response:
        """Hang a call up: only for a session opened with the API token, with its CSRF token, from this origin."""
        session = self.session(request)
        if session is None:
            return self._login_redirect()
        form = await self._form(request)
        if not self._same_origin(request) or not self.keys.check_csrf(session, form.get("csrf")):
            return self._render(request, "error.html", 403, session=session, title="Refused", message=_CSRF_REFUSED)
        if not session.can_write:
            return self._render(
                request,
                "error.html",
                403,
                session=session,
                title="Read-only session",
                message="This session was opened with a read-only token: it cannot hang calls up.",
            )
        if not _CALL_ID.match(call_id) or self.controller.call(call_id) is None:
            return RedirectResponse(PREFIX + "?notice=hangup_gone", status_code=303)
        try:
            await self.controller.hangup(call_id, "completed", by="api")
        except Exception as exc:  # CallError (gone meanwhile, no link) or a command failure: say so, never a 500
            log.warning("console: hang-up of %s failed: %s", call_id, type(exc).__name__)
            code = getattr(exc, "code", "")
            return RedirectResponse(
                PREFIX + ("?notice=hangup_gone" if code == "unknown_call" else "?notice=hangup_failed"), status_code=303
            )
        log.info("console: hang-up of call %s", call_id)
        return RedirectResponse(PREFIX + "?notice=hangup", status_code=303)

    # -- Calls ---------------------------------------------------------------------------------------------------
    async def calls_page(self, request: Request) -> Response:
        """Recent calls from the store, with the filters and cursor pages of ``GET /v1/records``."""
        session = self.session(request)
        if session is None:
            return self._login_redirect()
        form = views.parse_filters(request.query_params)
        rows: list[dict[str, Any]] = []
        next_link = problem = ""
        status = 200
        found = getattr(self.controller, "store", None)
        if form.errors:
            status = 400
        elif found is None:
            problem = (
                "Call records are not stored here (orchestrator.records is a .jsonl file or null): set it to an "
                "SQLite file (calls.db) or a postgresql:// URL to list calls."
            )
        else:
            try:
                page = await found.page(form.filters, form.cursor, 50)
                rows = [views.record_row(r) for r in page.records]
                if page.next_cursor:
                    next_link = PREFIX + "/calls?" + urlencode({**form.values, "cursor": page.next_cursor})
            except store.InvalidCursor:
                form.errors.append("cursor: not one this console handed out")
                status = 400
            except store.StoreError as exc:
                log.warning("console: call store unavailable: %s", exc)
                problem = "The call store cannot be reached right now; try again."
                status = 503
        return self._render(
            request,
            "calls.html",
            status,
            session=session,
            page="calls",
            title="Calls",
            form=form,
            rows=rows,
            next_link=next_link,
            first_link=(PREFIX + "/calls?" + urlencode(form.values)) if form.cursor else "",
            problem=problem,
            results=views.RESULTS,
            trunks=[t.name for t in self.controller.deployment.trunks]
            if hasattr(self.controller, "deployment")
            else [],
            agents=[a.name for a in self.controller.deployment.agents]
            if hasattr(self.controller, "deployment")
            else [],
        )

    # -- one call ----------------------------------------------------------------------------------------------
    async def call_page(self, request: Request, call_id: str) -> Response:
        """One call: from the store, else the controller (a live call, or one that ended moments ago)."""
        session = self.session(request)
        if session is None:
            return self._login_redirect()
        if not _CALL_ID.match(call_id):
            return self._render(request, "error.html", 404, session=session, title="No such call", message=_NO_CALL)
        record: dict[str, Any] | None = None
        live = False
        problem = ""
        found = getattr(self.controller, "store", None)
        call = self.controller.call(call_id) if hasattr(self.controller, "call") else None
        if call is not None:
            live = True
            record = _live_record(call)
        if record is None and found is not None:
            try:
                record = await found.get(call_id)
            except store.StoreError as exc:
                log.warning("console: call store unavailable: %s", exc)
                problem = "The call store cannot be reached right now; showing what this orchestrator remembers."
        if record is None and hasattr(self.controller, "describe"):
            record = self.controller.describe(call_id)
        if record is None:
            return self._render(request, "error.html", 404, session=session, title="No such call", message=_NO_CALL)
        return self._render(
            request,
            "call.html",
            session=session,
            page="calls",
            title=f"Call {call_id}",
            call_id=call_id,
            live=live,
            problem=problem,
            summary=views.record_row(record),
            record=record,
            facts=_facts(record),
            timeline=views.timeline(record),
            series=views.quality_series(record),
            quality=views.quality_figures(record),
            transcript=views.transcript(record),
            media=views.media_figures(record),
            agent_events=views.agent_events(record),
        )

    # -- Trunks and nodes -----------------------------------------------------------------------------------------
    async def trunks_page(self, request: Request) -> Response:
        """Per-trunk calls and failures over the last hour (store), ESL link per node, gateways, certificates."""
        session = self.session(request)
        if session is None:
            return self._login_redirect()
        deployment = self.controller.deployment
        now = self.clock()
        hour, problem = await self._hour(now)
        chart = views.trunk_hour(hour, [t.name for t in deployment.trunks], now)
        gateways = await self._gateways()
        nodes = []
        for name, node in self.controller.nodes.items():
            client = node.client
            nodes.append(
                {
                    "name": name,
                    "address": f"{client.endpoint.host}:{client.endpoint.port}",
                    "connected": bool(client.connected),
                    "connections": int(getattr(client, "connections", 0)),
                    "failures": int(getattr(client, "failures", 0)),
                    "gateways": gateways.get(name),
                }
            )
        trunks = []
        for t in deployment.trunks:
            counts = chart["trunks"].get(t.name, {"total": 0, "failed": 0})
            # per node: its state word, "not loaded" when sofia status lists no such gateway, unknown when unread
            states = {n: g.get(t.name, "not loaded") for n, g in gateways.items() if g is not None and t.outbound}
            trunks.append(
                {
                    "name": t.name,
                    "inbound": t.inbound is not None,
                    "outbound": t.outbound.address if t.outbound else "",
                    "calls": counts["total"],
                    "failed": counts["failed"],
                    "gateway": ", ".join(f"{n}: {s}" for n, s in sorted(states.items())),
                }
            )
        return self._render(
            request,
            "trunks.html",
            session=session,
            page="trunks",
            title="Trunks and nodes",
            trunks=trunks,
            nodes=nodes,
            chart=chart,
            problem=problem,
            certificates=self._certificates(),
        )

    async def _hour(self, now: float) -> tuple[list[dict[str, Any]], str]:
        found = getattr(self.controller, "store", None)
        if found is None:
            return [], "Call records are not stored here (a .jsonl file or none): no per-trunk counts."
        out: list[dict[str, Any]] = []
        cursor = None
        try:
            for _ in range(HOUR_PAGES):
                page = await found.page(store.Filters(since=now - 3600), cursor, store.MAX_PAGE)
                out += page.records
                cursor = page.next_cursor
                if cursor is None:
                    return out, ""
        except store.StoreError as exc:
            log.warning("console: call store unavailable: %s", exc)
            return out, "The call store cannot be reached right now: the counts are missing or partial."
        return out, f"More than {len(out)} calls in the hour: the counts cover the latest {len(out)}."

    async def _gateways(self) -> dict[str, dict[str, str] | None]:
        """Each connected node's gateway registration states (``sofia status``), None where it cannot be read."""

        async def one(node: Any) -> dict[str, str] | None:
            if not node.client.connected:
                return None
            try:
                status = await node.client.api("sofia status", timeout=2.0)
            except Exception as exc:  # no link, a timeout, a refusal: the page says "unknown"
                log.info("console: sofia status on %s: %s", node.name, type(exc).__name__)
                return None
            return replies.sofia_gateways(status)

        names = list(self.controller.nodes)
        results = await asyncio.gather(*(one(self.controller.nodes[n]) for n in names))
        return dict(zip(names, results, strict=True))

    def _certificates(self) -> list[dict[str, Any]]:
        """The deployment's TLS certificates (SIP TLS, the edge's) with their expiry."""
        deployment = self.controller.deployment
        base_dir = self.base_dir
        places: list[tuple[str, Any]] = [("transports.tls", deployment.transports.tls)]
        if deployment.edge is not None and deployment.edge.transports is not None:
            places.append(("edge.transports.tls", deployment.edge.transports.tls))
        now = dt.datetime.now(dt.UTC)
        out = []
        for setting, tls in places:
            if tls is None or not tls.certificate:
                continue
            for part in ("certificate", "ca_bundle"):
                value = getattr(tls, part, None)
                if not value:
                    continue
                entry: dict[str, Any] = {"setting": f"{setting}.{part}", "file": str(value)}
                try:
                    certs = x509.load_pem_x509_certificates(read_bounded(resolve(base_dir, value), TLS_FILE_LIMIT * 4))
                    first = certs[0] if part == "certificate" else min(certs, key=lambda c: c.not_valid_after_utc)
                    entry["subject"] = first.subject.rfc4514_string()[:200]
                    entry |= views.expiry(first.not_valid_after_utc, now, EXPIRY_WARNING_DAYS)
                except (FileReadError, ValueError, IndexError) as exc:
                    entry |= {"cls": "bad", "word": "unreadable", "error": type(exc).__name__}
                out.append(entry)
        return out

    # -- static files ------------------------------------------------------------------------------------------
    async def static_file(self, path: str) -> Response:
        """A file of the package's ``static`` folder, with its content type (no session needed: no data)."""
        found = self.static.get(path)
        if found is None:
            return Response("not found", status_code=404, media_type="text/plain")
        file, kind = found
        return Response(await asyncio.to_thread(file.read_bytes), media_type=kind)


_CSRF_REFUSED = "The request did not come from a page of this console (or the page is too old): reload and try again."
_NO_CALL = "No call with this id is live, remembered or stored."


def _live_record(call: Any) -> dict[str, Any]:
    """A live call as a partial record (the shape the call page reads)."""
    record = records.build(call)
    record["result"] = "in progress"
    record["hangup"] = None
    return record


def _facts(record: dict[str, Any]) -> list[tuple[str, str]]:
    """The call page's header facts."""
    out: list[tuple[str, str]] = []
    for key, label in (
        ("direction", "direction"),
        ("from", "from"),
        ("to", "to"),
        ("trunk", "trunk"),
        ("agent", "agent"),
        ("node", "node"),
        ("codec", "codec"),
        ("srtp", "SRTP"),
        ("sip_call_id", "SIP Call-ID"),
        ("source", "source"),
    ):
        value = record.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and value != "":
            text = str(value)[:256]
            if key == "codec" and isinstance(record.get("rate"), int) and record["rate"]:
                text += f" @ {record['rate']} Hz"
            out.append((label, text))
    timings = record.get("timings") if isinstance(record.get("timings"), dict) else {}
    assert isinstance(timings, dict)
    for key, label in (("created", "started (UTC)"), ("ended", "ended (UTC)")):
        if views.utc(timings.get(key)):
            out.append((label, views.utc(timings.get(key))))
    for key, label in (("setup_seconds", "setup"), ("duration_seconds", "talk time")):
        if views.seconds(timings.get(key)):
            out.append((label, views.seconds(timings.get(key))))
    return out


class EventsRelay:
    """``/console/data/events``: the API's live event stream (``GET /v1/events``, Server-Sent Events) for a console
    session. The request goes through the same app with the API's read (else write) token — the browser never
    holds an API token, and ``EventSource`` cannot send one. When the API has no event stream (404) or no token,
    the browser's ``EventSource`` fails and the pages fall back to polling, saying so."""

    def __init__(self, console: Console) -> None:
        self.console = console

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        app = self.console.app
        if self.console.session(request) is None or app is None:
            response: Response = JSONResponse(
                {"error": {"code": "unauthorized", "message": "log in again"}}, status_code=401
            )
            await response(scope, receive, send)
            return
        token = self.console.api_read or self.console.api_write
        keep = {b"accept", b"last-event-id", b"user-agent", b"host"}
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() in keep]
        if token:
            headers.append((b"authorization", b"Bearer " + token.encode()))
        inner = {
            key: scope[key]
            for key in ("type", "asgi", "http_version", "scheme", "server", "client", "root_path")
            if key in scope
        }
        inner |= {
            "method": "GET",
            "path": "/v1/events",
            "raw_path": b"/v1/events",
            "query_string": b"",
            "headers": headers,
        }
        await app(inner, receive, send)
