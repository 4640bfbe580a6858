"""The call store from the outside, against SQLite and a real PostgreSQL: ``GET /v1/records`` (filters, pages, refusals),
``GET /v1/records/{id}``, calls of the controller recorded in the store through an outage, and
``sipagent records export``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from simulator import SimulatedFreeSwitch
from store_support import STORE_GROUP, T0, backend_kind, outage, pg, record, target, until
from typer.testing import CliRunner

from orchestrator import store
from orchestrator.api.http import create_app
from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.cli import app as cli_app
from orchestrator.config import check_text
from orchestrator.esl.client import Backoff
from orchestrator.media import fork
from orchestrator.store import Store, StoreWriter, Target

pytestmark = STORE_GROUP
__all__ = ["backend_kind", "pg", "target"]  # fixtures

TOKEN = "records-api-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PGPASS_VAR = "SIPAGENT_TEST_PGPASS"


@pytest.fixture()
async def filled(target: Target) -> AsyncIterator[Store]:
    s = store.open_store(target)
    await s.open()
    await s.put([record(n) for n in range(1, 31)])
    try:
        yield s
    finally:
        await s.close()


def client_for(found: Store | None) -> httpx.AsyncClient:
    controller: Any = SimpleNamespace(store=found)
    app = create_app(controller, TOKEN)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def test_records_api_filters_and_pages(filled: Store) -> None:
    async with client_for(filled) as api:
        r = await api.get("/v1/records", headers=AUTH)
        assert r.status_code == 200
        body = r.json()
        assert [x["id"] for x in body["records"]] == [record(n)["id"] for n in range(30, 0, -1)]  # up to 50
        assert body["next_cursor"] is None
        # pages of 7, newest first, until next_cursor is null
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 7} | ({"cursor": cursor} if cursor else {})
            page = (await api.get("/v1/records", headers=AUTH, params=params)).json()
            seen += [x["id"] for x in page["records"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == [record(n)["id"] for n in range(30, 0, -1)]
        # filters: ISO 8601 times (with or without an offset: UTC), values, the number on either side
        params = {
            "since": "2023-11-14T22:18:20Z",  # T0 + 5 min
            "until": "2023-11-14T22:33:20+00:00",  # T0 + 20 min
            "direction": "inbound",
            "result": "completed",
        }
        page = (await api.get("/v1/records", headers=AUTH, params=params)).json()
        expected = [n for n in range(20, 4, -1) if n % 2 and n % 5]
        assert [x["id"] for x in page["records"]] == [record(n)["id"] for n in expected]
        naive = (await api.get("/v1/records", headers=AUTH, params={"since": "2023-11-14T22:41:20"})).json()
        assert [x["id"] for x in naive["records"]] == [record(n)["id"] for n in range(30, 27, -1)]
        for params, pred in [
            ({"trunk": "backup"}, lambda n: n % 3 == 0),
            ({"agent": "sales"}, lambda n: n % 4 == 0),
            ({"sip_status": 486}, lambda n: n % 5 == 0),
            ({"number": "+15550000002"}, lambda n: n % 7 == 2),
            ({"number": "+15550000001", "trunk": "backup", "agent": "sales"}, lambda n: n % 12 == 0),
        ]:
            page = (await api.get("/v1/records", headers=AUTH, params=params)).json()
            assert [x["id"] for x in page["records"]] == [record(n)["id"] for n in range(30, 0, -1) if pred(n)], params
        one = await api.get(f"/v1/records/{record(7)['id']}", headers=AUTH)
        assert one.status_code == 200 and one.json() == record(7)
        missing = await api.get("/v1/records/00000000-0000-4000-8000-999999999999", headers=AUTH)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_record"


@pytest.mark.parametrize("backend_kind", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"since": "yesterday"}, "invalid_request"),
        ({"until": "2024-13-01T00:00:00Z"}, "invalid_request"),
        ({"since": "2024-02-01T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "invalid_request"),
        ({"limit": 0}, "invalid_request"),
        ({"limit": 501}, "invalid_request"),
        ({"limit": "ten"}, "invalid_request"),
        ({"direction": "sideways"}, "invalid_request"),
        ({"sip_status": 99}, "invalid_request"),
        ({"sip_status": 700}, "invalid_request"),
        ({"trunk": "a b"}, "invalid_request"),
        ({"trunk": "x" * 65}, "invalid_request"),
        ({"result": "DROP TABLE"}, "invalid_request"),
        ({"number": "1" * 257}, "invalid_request"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "invalid_cursor"),
        ({"cursor": "x" * 513}, "invalid_request"),
        ({"numbr": "+1555"}, "invalid_request"),  # a misspelt filter is refused, not ignored
    ],
)
async def test_records_api_refuses_bad_parameters(filled: Store, params: dict[str, Any], code: str) -> None:
    async with client_for(filled) as api:
        r = await api.get("/v1/records", headers=AUTH, params=params)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code


@pytest.mark.parametrize("backend_kind", ["sqlite"], indirect=True)
async def test_records_api_needs_the_token_and_a_valid_id(filled: Store) -> None:
    async with client_for(filled) as api:
        assert (await api.get("/v1/records")).status_code == 401
        assert (await api.get("/v1/records", headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await api.get(f"/v1/records/{record(1)['id']}")).status_code == 401
        assert (await api.get("/v1/records/bad%20id", headers=AUTH)).status_code == 400


async def test_records_api_without_a_store_answers_501() -> None:
    async with client_for(None) as api:
        r = await api.get("/v1/records", headers=AUTH)
        assert r.status_code == 501 and r.json()["error"]["code"] == "records_not_stored"
        assert "JSONL" in r.json()["error"]["message"]
        assert (await api.get("/v1/records/abc", headers=AUTH)).status_code == 501


@pytest.mark.parametrize("backend_kind", ["postgres"], indirect=True)
async def test_records_api_answers_503_while_the_database_is_down(
    filled: Store, target: Target, request: pytest.FixtureRequest
) -> None:
    async with client_for(filled) as api:
        async with outage(target, request):
            r = await api.get("/v1/records", headers=AUTH)
            assert r.status_code == 503 and r.json()["error"]["code"] == "store_unavailable"
            assert "pw-" not in r.text
        assert (await api.get("/v1/records", headers=AUTH)).status_code == 200


# -- the controller writes its calls there ----------------------------------------------------------


def deployment(port: int, records: str) -> str:
    return f"""
freeswitch:
  bind_ip: 127.0.0.1
  event_socket: {{password: sim-pass}}
transports: {{tcp: {{port: 5060}}}}
trunks:
  - name: carrier
    inbound: {{transports: [tcp], auth: {{acl: [192.0.2.0/24]}}}}
    outbound: {{address: sbc.carrier.example, caller_id: "+15550009999"}}
numbers:
  - {{number: "+15550000001", trunk: carrier, agent: support}}
agents:
  - {{name: support, protocol: raw, url: "ws://127.0.0.1:9000/a"}}
orchestrator:
  records: "{records}"
  api: {{token: {TOKEN}}}
  nodes:
    - {{name: fs1, port: {port}}}
"""


def records_value(t: Target, tmp: Path) -> tuple[str, dict[str, str]]:
    """What a deployment file says for ``t`` (the PostgreSQL password from the environment), and that environment."""
    if t.kind == "sqlite":
        return Path(t.location).name, {}
    password = t.location.split("//", 1)[1].split("@", 1)[0].split(":", 1)[1]
    return t.location.replace(f":{password}@", f":${{{PGPASS_VAR}}}@"), {PGPASS_VAR: password}


async def test_calls_are_stored_and_an_outage_neither_loses_records_nor_stops_calls(
    target: Target, tmp_path: Path, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    value, env = records_value(target, tmp_path)
    sim = SimulatedFreeSwitch("sim-pass")
    await sim.start()
    result = check_text(deployment(sim.port, value), "d.yaml", env, tmp_path)
    assert result.deployment is not None, [str(d) for d in result.errors]
    controller = Controller(
        result.deployment, tmp_path, tokens=fork.Tokens(b"k"), backoff=Backoff(initial=0.02, maximum=0.1)
    )
    assert isinstance(controller.records, StoreWriter) and controller.store is controller.records.store
    controller.records.retry_initial = controller.records.retry_maximum = 0.1
    if target.kind == "sqlite":
        controller.store.db.busy_timeout = 0.2  # type: ignore[attr-defined]
    notices: list[Notice] = []
    controller.add_listener(notices.append)
    api = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(controller, TOKEN)), base_url="http://api")
    writer = controller.records

    async def one_call() -> str:
        channel = await sim.inbound_call(
            destination="+15550000001",
            caller_id="+15551230000",
            context="trunk-carrier",
            variables={"sipagent_trunk": "carrier", "sipagent_agent": "support", "sipagent_number": "+15550000001"},
            park_timeout="10:NORMAL_TEMPORARY_FAILURE",
        )
        await until(lambda: any(n.kind == "answered" and n.call.uuid == channel.uuid for n in notices), what="answer")
        await sim.remote_hangup(channel.uuid, "NORMAL_CLEARING", 200)
        await until(lambda: any(n.kind == "ended" and n.call.uuid == channel.uuid for n in notices), what="the end")
        return channel.uuid

    try:
        await controller.start()  # migrations run at start
        await asyncio.wait_for(controller.nodes["fs1"].synced.wait(), 5)
        first = await one_call()
        await until(lambda: writer.written == 1, what="the first record")
        r = await api.get("/v1/records", headers=AUTH)
        assert [x["id"] for x in r.json()["records"]] == [first]
        assert r.json()["records"][0]["result"] == "completed" and r.json()["records"][0]["trunk"] == "carrier"
        async with outage(target, request):
            during = [await one_call() for _ in range(3)]  # calls go on, answered and ended as always
            await until(lambda: writer.spooled == 3, what="the records spooled")
        await until(lambda: writer.healthy and writer.replayed == 3, timeout=15, what="the replay")
        r = await api.get("/v1/records", headers=AUTH, params={"limit": 10})
        assert {x["id"] for x in r.json()["records"]} == {first, *during}
        rec = await api.get(f"/v1/records/{during[1]}", headers=AUTH)
        assert rec.status_code == 200 and rec.json()["from"] == "+15551230000"
    finally:
        await api.aclose()
        await controller.stop()
        await sim.stop()
    if target.kind == "postgres":
        assert env[PGPASS_VAR] not in caplog.text  # the password never reaches a log line
        assert "call records:" in caplog.text  # the outage was logged


# -- sipagent records export ----------------------------------------------------------------------


def export(tmp_path: Path, value: str, env: dict[str, str], *args: str) -> Any:
    (tmp_path / "d.yaml").write_text(deployment(8021, value))
    return CliRunner().invoke(cli_app, ["records", "export", str(tmp_path / "d.yaml"), *args], env=env)


async def test_export_prints_the_stored_records_as_json_lines(filled: Store, target: Target, tmp_path: Path) -> None:
    value, env = records_value(target, tmp_path)
    everything = await asyncio.to_thread(export, tmp_path, value, env)
    assert everything.exit_code == 0, everything.output
    lines = everything.stdout.splitlines()
    assert [json.loads(line) for line in lines] == [record(n) for n in range(1, 31)]  # oldest first, whole
    assert "30 record(s) exported" in everything.stderr
    window = await asyncio.to_thread(
        export, tmp_path, value, env, "--since", "2023-11-14T22:18:20Z", "--until", "2023-11-14T22:23:20Z"
    )
    assert [json.loads(line)["id"] for line in window.stdout.splitlines()] == [record(n)["id"] for n in range(5, 10)]
    if target.kind == "postgres":
        assert env[PGPASS_VAR] not in everything.output + window.output


@pytest.mark.parametrize("backend_kind", ["sqlite"], indirect=True)
async def test_export_refuses_what_is_not_a_store(target: Target, tmp_path: Path) -> None:
    jsonl = await asyncio.to_thread(export, tmp_path, "calls.jsonl", {})
    assert jsonl.exit_code == 1 and "JSONL file" in jsonl.stderr
    missing = await asyncio.to_thread(export, tmp_path, "calls.db", {})
    assert missing.exit_code == 1 and "cannot read the call store" in missing.stderr
    assert not (tmp_path / "calls.db").exists()  # export never creates a database
    bad = await asyncio.to_thread(export, tmp_path, "calls.db", {}, "--since", "last week")
    assert bad.exit_code == 2 and "ISO 8601" in bad.stderr


async def test_records_at_t0_are_where_the_filters_expect() -> None:
    assert record(5)["timings"]["created"] == T0 + 300  # 2023-11-14T22:18:20Z
