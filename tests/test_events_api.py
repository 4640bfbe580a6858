"""``GET /v1/events`` end to end: the API served by uvicorn on a port, the controller on the FreeSWITCH simulator,
httpx streaming. A call's events in order, filters and their validation, resume with ``Last-Event-ID``, keep-alives,
slow and vanished clients, and ``trunk.down`` / ``trunk.up`` from the simulator's ``sofia::gateway_state``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from simulator import SimulatedFreeSwitch
from test_controller import API_TOKEN, PASSWORD, Harness, deployment_text

from orchestrator.api import events as api_events
from orchestrator.api.http import create_app
from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_text
from orchestrator.esl.client import Backoff
from orchestrator.events import Broker, Draft, EventType
from orchestrator.media import fork

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@dataclass
class Message:
    """One SSE message (or comment) as a client parses it."""

    event: str = "message"
    id: str | None = None
    data: str = ""
    comment: str | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.data)


async def messages(response: httpx.Response) -> AsyncIterator[Message]:
    """The WHATWG event-stream parsing a browser does (what matters of it: fields, comments, blank lines)."""
    current = Message()
    async for line in response.aiter_lines():
        if line == "":
            if current.data or current.event != "message":
                yield current
            current = Message()
        elif line.startswith(":"):
            yield Message(comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                current.data = f"{current.data}\n{value}" if current.data else value
            elif name in ("event", "id"):
                setattr(current, name, value)


@dataclass
class Stream:
    """A client reading ``/v1/events`` in the background."""

    response: httpx.Response
    got: list[Message] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    @property
    def events(self) -> list[Message]:
        return [m for m in self.got if m.comment is None and m.id is not None]

    def of(self, call_id: str) -> list[str]:
        return [m.event for m in self.events if m.json["call_id"] == call_id]

    async def wait(self, predicate: Any, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise AssertionError(f"stream: {[(m.event, m.comment) for m in self.got]}")
            await asyncio.sleep(0.01)


class App:
    """Simulator, controller and the API on a port."""

    def __init__(self, h: Harness, base: str, client: httpx.AsyncClient) -> None:
        self.h, self.base, self.client = h, base, client

    @property
    def broker(self) -> Broker:
        return self.h.controller.events

    @contextlib.asynccontextmanager
    async def stream(self, query: str = "", headers: dict[str, str] | None = None) -> AsyncIterator[Stream]:
        async with self.client.stream("GET", f"{self.base}/v1/events{query}", headers={**AUTH, **(headers or {})}) as r:
            assert r.status_code == 200, await r.aread()
            assert r.headers["content-type"].startswith("text/event-stream")
            assert r.headers["cache-control"] == "no-store"
            s = Stream(r)

            async def read() -> None:
                with contextlib.suppress(httpx.HTTPError):
                    async for m in messages(r):
                        s.got.append(m)

            s.task = asyncio.create_task(read())
            await s.wait(lambda s: any(m.comment == "sipagent events" for m in s.got))  # subscribed
            try:
                yield s
            finally:
                s.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await s.task


async def serve(app: Any) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server, task, port


@contextlib.asynccontextmanager
async def running(tmp_path: Path, broker: Broker | None = None) -> AsyncIterator[App]:
    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    result = check_text(deployment_text([sim.port]), "d.yaml", {}, tmp_path)
    assert result.deployment is not None, [str(d) for d in result.errors]
    notices: list[Notice] = []
    controller = Controller(
        result.deployment,
        tmp_path,
        tokens=fork.Tokens(b"test-secret"),
        backoff=Backoff(initial=0.02, maximum=0.1),
        events=broker,
    )
    controller.add_listener(notices.append)
    await controller.start()
    for node in controller.nodes.values():
        await asyncio.wait_for(node.synced.wait(), 5)
    server, task, port = await serve(create_app(controller, API_TOKEN))
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            yield App(Harness([sim], controller, notices, tmp_path), f"http://127.0.0.1:{port}", client)
    finally:
        server.should_exit = True
        controller.events.close()  # as sipagent run does: open streams end, the server can stop
        await asyncio.wait_for(task, 10)
        await controller.stop()
        await sim.stop()


@pytest.fixture()
async def app(tmp_path: Path) -> AsyncIterator[App]:
    async with running(tmp_path) as a:
        yield a


# -- a call's events ------------------------------------------------------------------------------


async def test_an_outbound_calls_events_arrive_in_order(app: App) -> None:
    h = app.h
    h.sim.set_originate_outcome("+15557654321", "answer", early="180")
    async with app.stream() as s:
        r = await app.client.post(
            f"{app.base}/v1/calls", json={"trunk": "carrier", "to": "+15557654321", "agent": "sales"}, headers=AUTH
        )
        call_id = r.json()["id"]
        await h.wait("fork_connected", call_id)
        await app.client.delete(f"{app.base}/v1/calls/{call_id}", headers=AUTH)
        await s.wait(lambda s: "call.ended" in s.of(call_id))
    assert s.of(call_id) == ["call.started", "call.ringing", "call.answered", "call.ended"]
    mine = [m for m in s.events if m.json["call_id"] == call_id]
    seqs = [m.json["seq"] for m in mine]
    assert seqs == sorted(seqs)
    assert all(m.id == f"{m.json['seq']}:{m.json['id']}" and m.json["type"] == m.event for m in mine)
    assert all(m.json["at"].endswith("Z") for m in mine)
    started, ringing, answered, ended = (m.json["data"] for m in mine)
    assert started["direction"] == "outbound" and started["trunk"] == "carrier" and started["agent"] == "sales"
    assert ringing["status"] == 180 and answered["state"] == "answered"
    # call.ended carries the full record, as GET /v1/calls/{id} (and the records file) have it
    assert ended == (await app.client.get(f"{app.base}/v1/calls/{call_id}", headers=AUTH)).json()
    assert ended["result"] == "completed" and ended["hangup_by"] == "api" and ended["timings"]["answered"]


async def test_an_inbound_calls_transfer_and_agent_failure(app: App) -> None:
    h = app.h
    async with app.stream() as s:
        uuid = await h.inbound()
        await h.wait("fork_connected", uuid)
        h.sim.set_originate_outcome("+15559998888", "486")  # the bridged transfer fails: the call stays
        await h.controller.transfer(uuid, "+15559998888", method="bridge")
        await h.wait("transfer", uuid)
        # what the media bridge reports when the agent fails (media/session.py), then its hang-up
        h.controller.media_update(uuid, {"outcome": "agent_stalled", "detail": "no audio for 10 s"})
        await h.controller.hangup(uuid, "error", by="orchestrator")
        await s.wait(lambda s: "call.ended" in s.of(uuid))
    assert s.of(uuid) == ["call.started", "call.answered", "call.transferred", "agent.failed", "call.ended"]
    by_type = {m.event: m.json["data"] for m in s.events if m.json["call_id"] == uuid}
    assert by_type["call.started"]["direction"] == "inbound" and by_type["call.started"]["remote"] == "+15551230000"
    transferred = by_type["call.transferred"]
    assert transferred["succeeded"] is False and transferred["call_continues"] is True
    assert transferred["transfer"]["method"] == "bridge" and transferred["transfer"]["status"] == "failed"
    assert by_type["agent.failed"]["outcome"] == "agent_stalled"
    assert by_type["agent.failed"]["detail"] == "no audio for 10 s"
    assert by_type["call.ended"]["media"]["outcome"] == "agent_stalled"


async def test_a_refused_call_is_started_and_ended(app: App) -> None:
    async with app.stream() as s:
        uuid = await app.h.inbound(number="+15559999999")  # not ours: refused with 404
        await s.wait(lambda s: "call.ended" in s.of(uuid))
    assert s.of(uuid) == ["call.started", "call.ended"]
    assert s.events[-1].json["data"]["result"] == "not_found"


# -- filters and their validation -----------------------------------------------------------------


async def test_filters_by_type_and_call(app: App) -> None:
    h = app.h
    h.sim.set_originate_outcome("+1555765*", "486")
    async with app.stream("?types=call.ended,trunk.down") as ended, app.stream("?types=call.started") as started:
        first = await h.controller.originate(trunk="carrier", to="+15557654321", agent="sales")
        async with app.stream(f"?call_id={first.uuid}") as only:  # subscribed after the call started
            pass
        second = await h.controller.originate(trunk="carrier", to="+15557654322", agent="sales")
        async with app.stream(f"?call_id={second.uuid}&types=call.ended") as one:
            await one.wait(lambda s: len(s.events) == 1)
        await ended.wait(lambda s: len(s.events) == 2)
        await started.wait(lambda s: len(s.events) == 2)
    assert [(m.event, m.json["call_id"]) for m in ended.events] == [
        ("call.ended", first.uuid),
        ("call.ended", second.uuid),
    ]
    assert {m.json["data"]["result"] for m in ended.events} == {"busy"}
    assert [m.json["call_id"] for m in started.events] == [first.uuid, second.uuid]
    assert [(m.event, m.json["call_id"]) for m in one.events] == [("call.ended", second.uuid)]
    assert all(m.json["call_id"] == first.uuid for m in only.events)


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("?types=call.ended,call.exploded", 422, "unknown_event_type"),
        ("?types=", 422, "invalid_types"),
        ("?types=call.ended,,", 422, "invalid_types"),
        ("?type=call.ended", 422, "invalid_parameter"),
        ("?types=call.ended&types=trunk.up", 422, "invalid_parameter"),
        ("?call_id=bad%20id", 400, "invalid_request"),
        ("?call_id=" + "a" * 65, 400, "invalid_request"),
        ("?types=" + "x" * 600, 400, "invalid_request"),
    ],
)
async def test_query_parameters_are_validated(app: App, query: str, status: int, code: str) -> None:
    r = await app.client.get(f"{app.base}/v1/events{query}", headers=AUTH)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert app.broker.subscriptions == set()


async def test_the_stream_needs_the_api_token(app: App) -> None:
    r = await app.client.get(f"{app.base}/v1/events")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = await app.client.get(f"{app.base}/v1/events", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    r = await app.client.get(f"{app.base}/v1/events", headers={**AUTH, "Last-Event-ID": "12"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_last_event_id"
    assert app.broker.subscriptions == set()


# -- resume, keep-alive, shutdown -------------------------------------------------------------------


def publish(app: App, n: int, size: int = 0) -> None:
    factory = app.h.controller.call_events.factory
    for i in range(n):
        app.broker.publish(factory.make(Draft(EventType.TRUNK_UP, None, {"n": i, "pad": "x" * size})))


async def test_resume_after_the_last_event_id(app: App) -> None:
    async with app.stream() as first:
        publish(app, 3)
        await first.wait(lambda s: len(s.events) == 3)
    last = first.events[-1].id
    assert last is not None
    publish(app, 4)  # while the client was away
    async with app.stream(headers={"Last-Event-ID": last}) as again:
        await again.wait(lambda s: len(s.events) == 4)
        publish(app, 1)
        await again.wait(lambda s: len(s.events) == 5)
    assert [m.json["data"]["n"] for m in again.events] == [0, 1, 2, 3, 0]
    assert not any(m.event == "gap" for m in again.got)
    # an id of another process (a restart): what there is, and a gap notice first
    foreign = f"{first.events[0].json['seq']}:00000000-0000-4000-8000-000000000000"
    async with app.stream(headers={"Last-Event-ID": foreign}) as other:
        await other.wait(lambda s: len(s.events) == 8)
    notices = [m for m in other.got if m.comment is None]
    assert notices[0].event == "gap" and notices[0].id is None and "missed" in notices[0].json["reason"]


async def test_keep_alive_comments(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_events, "KEEPALIVE_SECONDS", 0.05)
    async with app.stream() as s:
        await s.wait(lambda s: sum(m.comment == "keep-alive" for m in s.got) >= 3)
        publish(app, 1)
        await s.wait(lambda s: len(s.events) == 1)


async def test_a_disconnected_client_is_unsubscribed_at_once(app: App) -> None:
    async with app.stream():
        assert len(app.broker.subscriptions) == 1
    # nothing is published: the server notices the disconnect itself, not at its next write
    deadline = time.monotonic() + 2
    while app.broker.subscriptions and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert app.broker.subscriptions == set()


async def test_shutdown_ends_open_streams(tmp_path: Path) -> None:
    started = time.monotonic()
    async with running(tmp_path) as a, a.stream() as s:
        assert s.task is not None
    assert time.monotonic() - started < 8  # the server did not wait for the stream


# -- a client that stops reading ----------------------------------------------------------------------


async def test_a_client_that_never_reads_delays_neither_the_controller_nor_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(api_events, "SEND_TIMEOUT", 0.5)
    caplog.set_level(logging.INFO, "sipagent")
    async with running(tmp_path, Broker(queue_limit=200, history=200)) as app:
        port = int(app.base.rsplit(":", 1)[1])
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # it never reads: its window closes at once
        stuck.setblocking(False)
        await asyncio.get_running_loop().sock_connect(stuck, ("127.0.0.1", port))
        request = f"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_TOKEN}\r\n\r\n"
        stuck.send(request.encode())
        while not app.broker.subscriptions:
            await asyncio.sleep(0.01)
        [slow] = app.broker.subscriptions
        async with app.stream() as reader:
            app.h.sim.set_originate_outcome("+15557654321", "answer")
            call_id = ""
            for i in range(600):  # 600 events of 32 KiB: far more than the sockets buffer
                publish(app, 1, size=32 * 1024)
                if i == 300:  # a call meanwhile: the controller is not held up
                    call_id = (await app.h.controller.originate(trunk="carrier", to="+15557654321", agent="sales")).uuid
                await asyncio.sleep(0.001)
            await app.h.wait("fork_connected", call_id)
            await app.h.controller.hangup(call_id)
            await reader.wait(lambda s: "call.ended" in s.of(call_id), timeout=20)
            await reader.wait(lambda s: sum(m.event == "trunk.up" for m in s.events) == 600, timeout=20)
        # the stuck client is gone: cut off when 200 events behind, or ended when a write waited past SEND_TIMEOUT,
        # whichever came first (under load the write's wait can end it before the queue fills)
        assert slow.closed and slow not in app.broker.subscriptions
        assert app.broker.overflows == (1 if slow.overflowed else 0)
        # publish() is synchronous and never waits on a socket: what shows that is the ordered, complete stream of
        # the other reader below, not a timing (timings are for bench/, not tests)
        ns = [m.json["data"]["n"] for m in reader.events if m.event == "trunk.up"]
        assert ns == [0] * 600  # every one, in order (each publish() call numbers from 0)
        seqs = [m.json["seq"] for m in reader.events]
        assert seqs == sorted(seqs)
        assert reader.of(call_id) == ["call.started", "call.ringing", "call.answered", "call.ended"]
        # the stuck client's stream was ended once a write waited longer than SEND_TIMEOUT: the socket is closed
        deadline = time.monotonic() + 10
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                closed = stuck.recv(1 << 20) == b""
            except BlockingIOError:
                await asyncio.sleep(0.05)
        stuck.close()
        assert closed
        messages = [r.getMessage() for r in caplog.records]
        cut_off = "events: a subscriber fell 200 events behind and was cut off" in messages
        assert cut_off == slow.overflowed
        assert cut_off or "events: a client read nothing for 0.5s; its stream is closed" in messages


# -- trunks ---------------------------------------------------------------------------------------


async def test_trunk_down_and_up_from_options_pings(app: App) -> None:
    sim = app.h.sim
    sim.add_gateway("carrier", ping=30)
    async with app.stream("?types=trunk.down,trunk.up") as s:
        assert sim.gateway_options_reply("carrier", 503, "Service Unavailable")  # mod_sofia fires: DOWN
        await s.wait(lambda s: len(s.events) == 1)
        assert not sim.gateway_options_reply("carrier", 408, "Request Timeout")  # still down: nothing fired
        r = await app.client.post(
            f"{app.base}/v1/calls", json={"trunk": "carrier", "to": "+15557654321", "agent": "sales"}, headers=AUTH
        )
        await app.h.wait("ended", r.json()["id"])  # FreeSWITCH refuses calls through a down gateway
        assert app.h.controller.describe(r.json()["id"])["hangup"]["cause"] == "GATEWAY_DOWN"
        assert sim.gateway_options_reply("carrier", 200, "OK")
        await s.wait(lambda s: len(s.events) == 2)
    down, up = (m.json for m in s.events)
    assert (down["type"], up["type"]) == ("trunk.down", "trunk.up")
    assert down["call_id"] is None and down["data"] == {
        "trunk": "carrier", "node": "fs1", "state": "NOREG", "ping_status": "DOWN", "sip_status": 503,
        "phrase": "Service Unavailable", "register_network_ip": None, "register_network_port": None, "previous": None,
    }  # fmt: skip
    assert up["data"]["ping_status"] == "UP" and up["data"]["sip_status"] == 200 and up["data"]["previous"] == "down"
    assert app.h.controller.trunk_states.snapshot()[0]["up"] is True


async def test_trunk_down_and_up_from_registration(app: App) -> None:
    sim = app.h.sim
    sim.add_gateway("carrier", state="UNREGED")
    async with app.stream("?types=trunk.down,trunk.up") as s:
        sim.gateway_register_reply("carrier", 403, "Forbidden", network=("192.0.2.10", 5060))
        await s.wait(lambda s: len(s.events) == 1)
        sim.gateway_register_reply("carrier", 200, "OK", network=("192.0.2.10", 5060))
        await s.wait(lambda s: len(s.events) == 2)
        await asyncio.sleep(0.1)
    down, up = (m.json["data"] for m in s.events)
    # FAILED (Status 403) then FAIL_WAIT are both DOWN: one trunk.down; REGISTER is still DOWN, REGED is UP
    assert (down["state"], down["ping_status"], down["sip_status"], down["phrase"]) == (
        "FAILED",
        "DOWN",
        403,
        "Forbidden",
    )
    assert down["register_network_ip"] == "192.0.2.10" and down["register_network_port"] == 5060
    assert (up["state"], up["ping_status"], up["sip_status"]) == ("REGED", "UP", None)
    assert len(s.events) == 2
