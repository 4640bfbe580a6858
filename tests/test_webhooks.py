"""Webhooks: signatures, what goes where, and delivery from the store's outbox to local receivers (SQLite and a real
PostgreSQL): order per call, retries with backoff, dead letters and their retry, slow receivers, outages, leases
left by a crashed process, two orchestrators on one database, the API listing, and ``sipagent run`` end to end."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import signal
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
from simulator import SimulatedFreeSwitch
from store_support import STORE_GROUP, backend_kind, outage, pg, target, until
from webhook_receiver import Answer, Receiver, Request

from orchestrator import runtime
from orchestrator.config import check_text
from orchestrator.config.model import Deployment, WebhookEvent
from orchestrator.events import EVENT_TYPES, Draft, Event, EventFactory, EventType
from orchestrator.metrics import Metrics
from orchestrator.store import Target, open_store
from orchestrator.store import outbox as ob
from orchestrator.store.sql import Statement
from orchestrator.store.writer import StoreWriter
from orchestrator.webhooks import WebhookService, policy, signing

pytestmark = STORE_GROUP
__all__ = ["backend_kind", "pg", "target"]  # fixtures

SECRET = "whsec-0123456789abcdef"
OTHER = "whsec-fedcba9876543210"
PASSWORD = "ClueCon"
API_TOKEN = "api-token-0123456789"
READ_TOKEN = "read-token-0123456789"


# -- signatures (sans-I/O) ---------------------------------------------------------------------------


def test_the_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    body = b'{"id":"e1","type":"call.started"}'
    value = signing.header([SECRET.encode()], 1_733_300_000, body)
    expected = hmac.new(SECRET.encode(), b"1733300000." + body, hashlib.sha256).hexdigest()
    assert value == f"t=1733300000,v1={expected}"
    assert signing.verify(value, body, SECRET.encode(), now=1_733_300_010)


@pytest.mark.parametrize(
    "change",
    ["body", "secret", "old", "future", "no-t", "no-v1", "garbage", "huge"],
)
def test_a_signature_that_does_not_match_is_refused(change: str) -> None:
    body, now = b'{"id":"e1"}', 1_733_300_000
    value = signing.header([SECRET.encode()], now, body)
    secret = SECRET.encode()
    if change == "body":
        body = b'{"id":"e2"}'
    elif change == "secret":
        secret = OTHER.encode()
    elif change == "old":
        now += signing.TOLERANCE + 1
    elif change == "future":
        now -= signing.TOLERANCE + 1
    elif change == "no-t":
        value = value.split(",", 1)[1]
    elif change == "no-v1":
        value = value.split(",", 1)[0]
    elif change == "garbage":
        value = "t=abc,v1=\u00e9\u00e9"
    else:
        value = value + ",v1=" + "0" * 2000
    assert not signing.verify(value, body, secret, now)


def test_while_rotating_both_keys_sign_and_either_verifies() -> None:
    body = b"{}"
    value = signing.header([SECRET.encode(), OTHER.encode()], 100, body)
    assert value.count("v1=") == 2
    assert signing.verify(value, body, SECRET.encode(), 100) and signing.verify(value, body, OTHER.encode(), 100)


# -- policy (sans-I/O) ------------------------------------------------------------------------------


def event(kind: EventType, call: str | None, factory: EventFactory | None = None, **data: Any) -> Event:
    return (factory or EventFactory()).make(Draft(kind, call, data))


def test_the_config_knows_every_event_type() -> None:
    assert set(get_args(WebhookEvent)) == EVENT_TYPES


def test_endpoints_get_the_events_they_ask_for() -> None:
    everything = policy.Endpoint("all", "http://127.0.0.1/x", (b"k",))
    ended = policy.Endpoint("ended", "http://127.0.0.1/x", (b"k",), events=frozenset({"call.ended"}))
    sales = policy.Endpoint("sales", "http://127.0.0.1/x", (b"k",), agents=frozenset({"sales"}))
    started = event(EventType.CALL_STARTED, "c1", agent="sales")
    finished = event(EventType.CALL_ENDED, "c2", agent="support")
    trunk = event(EventType.TRUNK_DOWN, None, trunk="carrier")
    targets = [everything, ended, sales]
    assert [e.endpoint for e in policy.entries(started, targets, 1.0)] == ["all", "sales"]
    assert [e.endpoint for e in policy.entries(finished, targets, 1.0)] == ["all", "ended"]
    assert [e.endpoint for e in policy.entries(trunk, targets, 1.0)] == ["all"]  # no trunk events per agent
    entry = policy.entries(started, targets, 1.0)[0]
    assert entry.body == started.json and entry.ordering == "call:c1" and entry.event_type == "call.started"
    assert policy.entries(trunk, targets, 1.0)[0].ordering == "trunk:carrier"
    assert "k" not in repr(everything) and "127.0.0.1" not in repr(everything)


def test_backoff_doubles_within_its_cap_and_jitter_keeps_it_within_half_to_whole() -> None:
    for attempt in range(1, 20):
        base = min(60.0, 2.0 * 2 ** (attempt - 1))
        assert policy.backoff(attempt, 0.0, 2.0, 60.0) == base / 2
        assert policy.backoff(attempt, 1.0, 2.0, 60.0) == base
        assert base / 2 <= policy.backoff(attempt, random.random(), 2.0, 60.0) <= base
    assert policy.backoff(10_000, 1.0, 2.0, 60.0) == 60.0  # no overflow


def test_next_attempt_honours_retry_after_within_the_cap_and_gives_up_after_max_attempts() -> None:
    e = policy.Endpoint("x", "http://127.0.0.1/x", (b"k",), max_attempts=3, retry_initial=1.0, retry_max=100.0)
    assert policy.next_attempt(e, 1, 1000.0, 1.0) == 1001.0
    assert policy.next_attempt(e, 2, 1000.0, 1.0, asked=30.0) == 1030.0
    assert policy.next_attempt(e, 2, 1000.0, 1.0, asked=1e9) == 1100.0  # a receiver cannot park us for ages
    assert policy.next_attempt(e, 3, 1000.0, 1.0) is None  # dead-lettered
    assert policy.retry_after("120", 0.0) == 120.0
    assert policy.retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 1445412480.0 - 60) == 60.0
    for bad in (None, "", "soon", "-1", "1" * 100, "Wed, 99 Foo"):
        assert policy.retry_after(bad, 0.0) is None
    assert not policy.success(301) and not policy.success(500) and policy.success(204)


# -- configuration -------------------------------------------------------------------------------


def deployment_text(hooks: str, records: str = "calls.db", extra: str = "") -> str:
    return f"""
freeswitch: {{bind_ip: 127.0.0.1, event_socket: {{password: {PASSWORD}}}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
    outbound: {{address: sbc.carrier.example}}
numbers: [{{number: "+15550000001", trunk: carrier, agent: support}}]
agents:
  - {{name: support, protocol: raw, url: "ws://127.0.0.1:9/a"}}
  - {{name: sales, protocol: raw, url: "ws://127.0.0.1:9/b"}}
orchestrator:
  records: {records}
{extra}  webhooks:
{hooks}"""


def load(text: str, tmp: Path, env: dict[str, str] | None = None) -> Deployment:
    result = check_text(text, "deployment.yaml", {"HOOK_SECRET": SECRET, **(env or {})}, tmp)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    return result.deployment


@pytest.mark.parametrize(
    ("hook", "records", "message"),
    [
        ('{name: a, url: "http://hooks.example.com/x", secret: "${HOOK_SECRET}"}', "calls.db", "use https://"),
        ('{name: a, url: "https://u:p@hooks.example.com/x", secret: "${HOOK_SECRET}"}', "calls.db", "credentials"),
        ('{name: a, url: "ftp://hooks.example.com/x", secret: "${HOOK_SECRET}"}', "calls.db", "not a webhook URL"),
        ('{name: a, url: "https://hooks.example.com/x", secret: "short"}', "calls.db", "at least 16"),
        ('{name: a, url: "https://hooks.example.com/x", secret: "${HOOK_SECRET}"}', "calls.jsonl", "outbox"),
        ('{name: a, url: "https://h.example/x", secret: "${HOOK_SECRET}", agents: [nobody]}', "calls.db", "nobody"),
        (
            '{name: a, url: "https://h.example/x", secret: "${HOOK_SECRET}", events: [call.exploded]}',
            "calls.db",
            "call",
        ),
        (
            '{name: a, url: "https://h.example/x", secret: "${HOOK_SECRET}", retry_initial_seconds: 10, '
            "retry_max_seconds: 5}",
            "calls.db",
            "retry_max_seconds",
        ),
    ],
)
def test_webhook_settings_that_cannot_work_are_refused(hook: str, records: str, message: str, tmp_path: Path) -> None:
    result = check_text(deployment_text(f"    - {hook}\n", records), "d.yaml", {"HOOK_SECRET": SECRET}, tmp_path)
    assert any(message in str(d) for d in result.errors), [str(d) for d in result.errors]
    assert all(SECRET not in str(d) for d in result.diagnostics)


def test_two_webhooks_with_one_name_are_refused(tmp_path: Path) -> None:
    hook = '    - {name: a, url: "https://h.example/x", secret: "${HOOK_SECRET}"}\n'
    result = check_text(deployment_text(hook * 2), "d.yaml", {"HOOK_SECRET": SECRET}, tmp_path)
    assert any("listed twice" in str(d) for d in result.errors)


def test_a_secret_written_in_the_file_is_warned_about(tmp_path: Path) -> None:
    hook = f'    - {{name: a, url: "https://h.example/x", secret: "{SECRET}"}}\n'
    result = check_text(deployment_text(hook), "d.yaml", {}, tmp_path)
    assert result.errors == [] and any("environment" in str(d) for d in result.diagnostics)


# -- delivery --------------------------------------------------------------------------------------


def hook_yaml(name: str, url: str, **options: Any) -> str:
    fields = {"retry_initial_seconds": 0.05, "retry_max_seconds": 0.2, "timeout_seconds": 2, **options}
    extra = "".join(f", {k}: {v}" for k, v in fields.items())
    return f'    - {{name: {name}, url: "{url}", secret: "${{HOOK_SECRET}}"{extra}}}\n'


class Rig:
    """A store writer and a webhook service over one database, as ``sipagent run`` wires them."""

    def __init__(self, dep: Deployment, t: Target, clock: Any = time.time) -> None:
        assert t.spool is not None
        self.store = open_store(t)
        self.store.clock = clock
        self.writer = StoreWriter(
            self.store, t.spool, batch_size=50, linger=0.01, retry_initial=0.05, retry_maximum=0.2
        )
        self.metrics = Metrics()
        self.service = WebhookService(dep, self.writer, self.metrics, clock=clock)
        self.factory = EventFactory()

    async def __aenter__(self) -> Rig:
        self.writer.start()
        self.service.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.service.stop()
        await self.writer.close()

    def publish(self, kind: EventType, call: str | None, **data: Any) -> Event:
        made = event(kind, call, self.factory, **data)
        self.service.offer(made)
        return made

    async def deliveries(self, **filters: Any) -> list[dict[str, Any]]:
        rows, _ = await self.store.deliveries(ob.DeliveryFilters(**filters), limit=500)
        return rows


CALL_FLOW = [EventType.CALL_STARTED, EventType.CALL_RINGING, EventType.CALL_ANSWERED, EventType.CALL_TRANSFERRED,
             EventType.CALL_ENDED]  # fmt: skip


def per_call(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = defaultdict(list)
    for e in events:
        out[e["call_id"]].append(e["seq"])
    return out


async def test_events_are_delivered_signed_and_in_order_per_call(target: Target, tmp_path: Path) -> None:
    rng = random.Random(7)

    def jittery(_r: Request, _n: int) -> Answer:
        return Answer(200, delay=rng.random() * 0.03)  # answers overtake each other

    async with Receiver(SECRET.encode(), jittery) as rx:
        dep = load(deployment_text(hook_yaml("crm", rx.url, concurrency=4)), tmp_path)
        async with Rig(dep, target) as rig:
            sent = [rig.publish(kind, f"call-{c}", agent="support") for kind in CALL_FLOW for c in range(4)]
            sent.append(rig.publish(EventType.TRUNK_DOWN, None, trunk="carrier"))
            await rx.wait_for(lambda: len(rx.events()) == len(sent), what="every event")
            await until(lambda: rig.service.dispatchers["crm"].delivered == len(sent), what="outcomes recorded")
            rows = await rig.deliveries()
        assert all(r.valid for r in rx.requests)  # every request signed with the endpoint's secret
        got = rx.events()
        assert sorted(e["id"] for e in got) == sorted(e.id for e in sent)
        assert {e["id"]: e for e in got} == {e.id: e.to_dict() for e in sent}  # the body is the event, as made
        for call, seqs in per_call(got).items():
            if call is not None:
                assert seqs == sorted(seqs), f"{call} out of order: {seqs}"
        first = rx.requests[0]
        assert first.headers["content-type"] == "application/json" and first.attempt == 1
        assert first.headers["sipagent-event-id"] == first.event["id"]
        assert first.headers["sipagent-event-type"] == first.event["type"]
        assert first.headers["user-agent"].startswith("sipagent/")
        assert {r["status"] for r in rows} == {"delivered"} and len(rows) == len(sent)
        assert {r["id"] for r in rows} == {r.headers["sipagent-delivery-id"] for r in rx.requests}
        text = rig.metrics.render().decode()
        assert f'sipagent_webhook_deliveries_total{{endpoint="crm",result="delivered"}} {len(sent)}.0' in text


async def test_failed_attempts_are_retried_and_later_events_of_the_call_wait(target: Target, tmp_path: Path) -> None:
    tries: dict[str, int] = defaultdict(int)

    def flaky(r: Request, _n: int) -> Answer:
        tries[r.event["id"]] += 1
        return Answer(500) if tries[r.event["id"]] <= 2 else Answer(200)

    async with Receiver(SECRET.encode(), flaky) as rx:
        dep = load(deployment_text(hook_yaml("crm", rx.url)), tmp_path)
        async with Rig(dep, target) as rig:
            a = rig.publish(EventType.CALL_STARTED, "c1", agent="support")
            b = rig.publish(EventType.CALL_ENDED, "c1", agent="support")
            await until(lambda: rig.service.dispatchers["crm"].delivered == 2, what="both delivered")
            rows = {r["event_id"]: r for r in await rig.deliveries()}
    assert [(r.event["id"], r.attempt) for r in rx.requests] == [(a.id, 1), (a.id, 2), (a.id, 3), (b.id, 1),
                                                                (b.id, 2), (b.id, 3)]  # fmt: skip
    assert all(r.valid for r in rx.requests)
    assert len({r.headers["sipagent-signature"] for r in rx.requests}) >= 2  # each attempt signs anew
    assert rows[a.id]["attempts"] == 3 and rows[a.id]["last_http_status"] == 200 and rows[a.id]["last_error"] is None
    assert rows[a.id]["status"] == "delivered" and rows[a.id]["delivered_at"] is not None


async def test_a_delivery_is_dead_lettered_after_max_attempts_and_the_call_goes_on(
    target: Target, tmp_path: Path
) -> None:
    broken = {"on": True}

    def answer(r: Request, _n: int) -> Answer:
        return (
            Answer(503, headers={"Retry-After": "0"})
            if broken["on"] and r.event["type"] == "call.started"
            else Answer()
        )

    async with Receiver(SECRET.encode(), answer) as rx:
        dep = load(deployment_text(hook_yaml("crm", rx.url, max_attempts=3)), tmp_path)
        async with Rig(dep, target) as rig:
            a = rig.publish(EventType.CALL_STARTED, "c1", agent="support")
            b = rig.publish(EventType.CALL_ENDED, "c1", agent="support")
            d = rig.service.dispatchers["crm"]
            await until(lambda: d.dead == 1 and d.delivered == 1, what="a dead letter, then the next event")
            dead = await rig.deliveries(status="dead")
            assert [r["event_id"] for r in dead] == [a.id]
            assert (
                dead[0]["attempts"] == 3 and dead[0]["last_http_status"] == 503 and dead[0]["last_error"] == "HTTP 503"
            )
            assert dead[0]["next_attempt_at"] is None
            assert [r.attempt for r in rx.requests if r.event["id"] == a.id] == [1, 2, 3]
            assert rx.requests[-1].event["id"] == b.id  # only after the head gave up
            # an operator fixes the receiver and puts the dead letter back in line
            broken["on"] = False
            assert await rig.store.retry_delivery(dead[0]["id"])
            assert not await rig.store.retry_delivery(dead[0]["id"])  # no longer dead
            rig.service.wake("crm")
            await until(lambda: d.delivered == 2, what="the retried dead letter")
            again = await rig.store.delivery(dead[0]["id"])
            assert again is not None and again["status"] == "delivered" and again["event"]["id"] == a.id
        assert 'sipagent_webhook_deliveries_total{endpoint="crm",result="dead"} 1.0' in rig.metrics.render().decode()


async def test_a_slow_receiver_delays_neither_the_publisher_nor_other_receivers(target: Target, tmp_path: Path) -> None:
    async with (
        Receiver(SECRET.encode(), lambda _r, _n: Answer(None)) as slow,  # never answers
        Receiver(SECRET.encode()) as fast,
    ):
        hooks = hook_yaml("slow", slow.url, timeout_seconds=0.5, concurrency=2) + hook_yaml("fast", fast.url)
        dep = load(deployment_text(hooks), tmp_path)
        async with Rig(dep, target) as rig:
            started = time.perf_counter()
            sent = [rig.publish(EventType.CALL_STARTED, f"c{i}", agent="support") for i in range(20)]
            publish_seconds = time.perf_counter() - started
            await fast.wait_for(lambda: len(fast.events()) == 20, what="the fast receiver's events")
            assert rig.service.dispatchers["slow"].delivered == 0  # still hanging or timed out meanwhile
            await slow.wait_for(lambda: len(slow.requests) >= 2, what="the slow receiver's first attempts")
            await until(lambda: rig.service.dispatchers["slow"].failed >= 2, what="attempts timed out")
            slow_rows = await rig.deliveries(endpoint="slow")
        assert publish_seconds < 0.5  # a queue append each (a bound, not a benchmark)
        assert {e["id"] for e in fast.events()} == {e.id for e in sent}
        failed = [r for r in slow_rows if r["attempts"]]
        assert failed and all(r["last_error"] == "no answer in time" for r in failed)
        assert all(r["status"] == "pending" for r in slow_rows)  # still owed: tried again later


async def test_events_offered_while_the_store_is_down_are_delivered_once_it_is_back(
    target: Target, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with Receiver(SECRET.encode()) as rx:
        dep = load(deployment_text(hook_yaml("crm", rx.url)), tmp_path)
        async with Rig(dep, target) as rig:
            rig.publish(EventType.CALL_STARTED, "c0", agent="support")
            await rx.wait_for(lambda: len(rx.events()) == 1)
            async with outage(target, request):
                sent = [rig.publish(kind, "c1", agent="support") for kind in CALL_FLOW]
                await until(lambda: rig.writer.spooled >= len(sent), what="deliveries spooled")
            await rx.wait_for(lambda: len(rx.events()) == 1 + len(sent), timeout=20, what="the spooled events")
        got = [e["id"] for e in rx.events() if e["call_id"] == "c1"]
        assert got == [e.id for e in sent]  # none lost, in order


async def test_a_lease_left_by_a_crashed_process_runs_out_and_the_delivery_is_made(
    target: Target, tmp_path: Path
) -> None:
    async with Receiver(SECRET.encode()) as rx:
        dep = load(deployment_text(hook_yaml("crm", rx.url)), tmp_path)
        gone = event(EventType.CALL_ENDED, "c9", agent="support")
        s = open_store(target)
        try:
            await s.open()
            await s.put(policy.entries(gone, policy.endpoints(dep), time.time()))
            # a process took it and died mid-attempt: its lease runs out a moment from now
            lease = Statement(
                "UPDATE webhook_outbox SET lease_owner = 'crashed', lease_until = "
                + ("?" if s.dialect == "sqlite" else "$1"),
                (time.time() + 0.5,),
            )
            await s.db.run([lease])
        finally:
            await s.close()
        async with Rig(dep, target) as rig:
            await rx.wait_for(lambda: len(rx.requests) == 1, what="the abandoned delivery")
            assert rx.requests[0].event["id"] == gone.id and rx.requests[0].valid
            await until(lambda: rig.service.dispatchers["crm"].delivered == 1, what="its outcome")


async def test_two_orchestrators_on_one_database_deliver_each_event_once(target: Target, tmp_path: Path) -> None:
    async with Receiver(SECRET.encode(), lambda _r, _n: Answer(200, delay=0.01)) as rx:
        dep = load(deployment_text(hook_yaml("crm", rx.url)), tmp_path)
        other = Target(target.kind, target.location, tmp_path / "other.spool.jsonl")
        async with Rig(dep, target) as a, Rig(dep, other) as b:
            sent = [(a if i % 2 else b).publish(EventType.CALL_STARTED, f"c{i}", agent="support") for i in range(30)]
            await rx.wait_for(lambda: len(rx.events()) == 30, what="every event")
            await until(
                lambda: a.service.dispatchers["crm"].delivered + b.service.dispatchers["crm"].delivered == 30,
                what="every outcome",
            )
        ids = [r.event["id"] for r in rx.requests]
        assert sorted(ids) == sorted(e.id for e in sent)  # each once
        assert a.service.dispatchers["crm"].delivered and b.service.dispatchers["crm"].delivered  # both took part


async def test_retention_deletes_old_finished_deliveries_only(target: Target, tmp_path: Path) -> None:
    now = {"t": 1_800_000_000.0}
    async with Receiver(SECRET.encode(), lambda r, _n: Answer(500 if r.event["call_id"] == "bad" else 200)) as rx:
        dep = load(deployment_text(hook_yaml("crm", rx.url, max_attempts=1)), tmp_path)
        async with Rig(dep, target, clock=lambda: now["t"]) as rig:
            rig.publish(EventType.CALL_STARTED, "ok", agent="support")
            rig.publish(EventType.CALL_STARTED, "bad", agent="support")
            d = rig.service.dispatchers["crm"]
            await until(lambda: d.delivered == 1 and d.dead == 1, what="one delivered, one dead")
            now["t"] += 6 * 86_400
            rig.publish(EventType.CALL_STARTED, "late", agent="support")
            await until(lambda: d.delivered == 2, what="a recent delivery")
            assert await rig.service.apply_retention() == 0  # 6 days < 7
            now["t"] += 1.5 * 86_400
            assert await rig.service.apply_retention() == 2
            assert [r["call_id"] for r in await rig.deliveries()] == ["late"]
            await rig.service.update_gauge()
        text = rig.metrics.render().decode()
        assert 'sipagent_webhook_outbox{endpoint="crm",status="delivered"} 1.0' in text


# -- the API and `sipagent run` ----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def running(tmp_path: Path, hooks: str) -> AsyncIterator[tuple[SimulatedFreeSwitch, httpx.AsyncClient]]:
    """``sipagent run`` (in process) on the simulator, with webhooks; an API client with the write token."""
    sim = SimulatedFreeSwitch(PASSWORD)
    await sim.start()
    api_port, media_port = free_port(), free_port()
    extra = (
        f"  media_url: ws://127.0.0.1:{media_port}\n  media: {{port: {media_port}}}\n"
        f'  api: {{port: {api_port}, token: "${{API}}", read_token: "${{READ}}"}}\n'
        f"  nodes: [{{name: fs1, port: {sim.port}}}]\n"
    )
    dep = load(deployment_text(hooks, extra=extra), tmp_path, {"API": API_TOKEN, "READ": READ_TOKEN})
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.serve(dep, tmp_path, stop))
    base = f"http://127.0.0.1:{api_port}"
    try:
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {API_TOKEN}"}) as c:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await c.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("sipagent run did not come up")
            yield sim, c
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await sim.stop()


async def test_sipagent_run_posts_a_calls_events_and_lists_the_deliveries(tmp_path: Path) -> None:
    async with (
        Receiver(SECRET.encode()) as rx,
        Receiver(SECRET.encode(), lambda _r, _n: Answer(500)) as down,
        running(tmp_path, hook_yaml("crm", rx.url) + hook_yaml("down", down.url, max_attempts=2)) as (sim, api),
    ):
        channel = await sim.inbound_call(
            destination="+15550000001",
            caller_id="+15551230000",
            context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": "support", "sipagent_number": "+15550000001"},
            park_timeout="10:NORMAL_TEMPORARY_FAILURE",
        )
        await rx.wait_for(lambda: any(e["type"] == "call.answered" for e in rx.events()), what="the answer")
        await sim.remote_hangup(channel.uuid)
        await rx.wait_for(lambda: any(e["type"] == "call.ended" for e in rx.events()), what="the end")
        got = [e for e in rx.events() if e["call_id"] == channel.uuid]
        assert [e["type"] for e in got] == ["call.started", "call.answered", "call.ended"]
        assert got[-1]["data"]["id"] == channel.uuid and got[-1]["data"]["hangup_by"] == "remote"  # the full record
        assert all(r.valid for r in rx.requests)
        # the outbox through the API: filters, pages, one delivery, dead letters and their retry
        listing = (await api.get("/v1/webhooks/deliveries", params={"endpoint": "crm", "limit": 2})).json()
        assert len(listing["deliveries"]) == 2 and listing["next_cursor"]
        assert listing["deliveries"][0]["event_type"] == "call.ended"  # newest first
        rest = await api.get("/v1/webhooks/deliveries", params={"endpoint": "crm", "cursor": listing["next_cursor"]})
        assert [d["event_type"] for d in rest.json()["deliveries"]] == ["call.started"]
        one = (await api.get(f"/v1/webhooks/deliveries/{listing['deliveries'][0]['id']}")).json()
        assert one["event"]["type"] == "call.ended" and one["status"] == "delivered"

        async def dead() -> list[dict[str, Any]]:
            found: list[dict[str, Any]]
            found = (await api.get("/v1/webhooks/deliveries", params={"status": "dead", "endpoint": "down"})).json()[
                "deliveries"
            ]
            return found

        for _ in range(200):
            if len(await dead()) == 3:
                break
            await asyncio.sleep(0.05)
        letters = await dead()
        assert len(letters) == 3 and all(d["attempts"] == 2 for d in letters)
        read = {"Authorization": f"Bearer {READ_TOKEN}"}
        assert (await api.get("/v1/webhooks/deliveries", headers=read)).status_code == 200
        refused = await api.post(f"/v1/webhooks/deliveries/{letters[0]['id']}/retry", headers=read)
        assert refused.status_code == 403
        again = await api.post(f"/v1/webhooks/deliveries/{letters[0]['id']}/retry")
        assert again.status_code == 200 and again.json()["status"] == "pending"
        twice = await api.post(f"/v1/webhooks/deliveries/{listing['deliveries'][0]['id']}/retry")
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "not_dead"
        for bad in ({"status": "lost"}, {"bogus": "1"}, {"cursor": "nope"}, {"limit": "0"}):
            assert (await api.get("/v1/webhooks/deliveries", params=bad)).status_code == 400, bad
        assert (await api.get("/v1/webhooks/deliveries/not-an-id")).status_code in (400, 404)
        metrics = (await api.get("/metrics")).text
        assert 'sipagent_webhook_deliveries_total{endpoint="crm",result="delivered"}' in metrics
        assert "sipagent_records_written_total 1.0" in metrics and "sipagent_records_store_up 1.0" in metrics


def test_the_verification_snippet_in_the_docs_accepts_our_signatures_and_nothing_else() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "operations.md").read_text()
    snippet = text.split("### Checking the signature", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, Any] = {}
    exec(compile(snippet, "docs/operations.md", "exec"), scope)  # the reader's copy, as written
    body, now = b'{"id":"e1","type":"call.ended"}', int(time.time())
    header = signing.header([SECRET.encode(), OTHER.encode()], now, body)
    assert scope["verify"](body, header, SECRET.encode()) and scope["verify"](body, header, OTHER.encode())
    assert not scope["verify"](body + b" ", header, SECRET.encode())
    assert not scope["verify"](body, signing.header([SECRET.encode()], now - 600, body), SECRET.encode())
