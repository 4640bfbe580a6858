"""`sipagent apply`: what a config change becomes in FreeSWITCH, and that calls in progress survive it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import yaml
from simulator import SimulatedFreeSwitch
from support import EXAMPLE, EXAMPLE_ENV
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config import check_file
from orchestrator.config.selfsigned import generate
from orchestrator.esl.client import Endpoint
from orchestrator.render import read_tree, render_deployment
from orchestrator.render.apply import apply_to_node
from orchestrator.render.reload import Step, plan_reload


def _render(doc: dict, tmp: Path, name: str) -> dict[str, bytes]:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = check_file(path, EXAMPLE_ENV)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    return {rel: f.content for rel, f in render_deployment(result.deployment, result.base_dir).items()}


@pytest.fixture()
def base(tmp_path: Path) -> dict:
    generate(tmp_path / "tls", ["sip.example.com"])  # where the example expects its TLS files
    return yaml.safe_load(EXAMPLE.read_text())


def _commands(plan: object) -> list[str]:
    return [s.command for s in plan.steps]  # type: ignore[attr-defined]


def test_no_change_plans_nothing(base: dict, tmp_path: Path) -> None:
    tree = _render(base, tmp_path, "a")
    plan = plan_reload(tree, dict(tree))
    assert plan.empty and plan.steps == [] and plan.restart_needed == []


def test_acl_and_number_changes_are_live(base: dict, tmp_path: Path) -> None:
    old = _render(base, tmp_path, "a")
    base["trunks"][1]["inbound"]["auth"]["acl"].append("198.51.100.0/24")
    base["numbers"].append({"number": "+15557650199", "trunk": "office-pbx", "agent": "sales"})
    plan = plan_reload(old, _render(base, tmp_path, "b"))
    assert _commands(plan) == ["reloadxml", "reloadacl"]
    assert "autoload_configs/acl.conf.xml" in plan.changed and "dialplan/sipagent.xml" in plan.changed
    assert plan.restart_needed == []


def test_gateway_added_changed_removed(base: dict, tmp_path: Path) -> None:
    old = _render(base, tmp_path, "a")
    base["trunks"][1]["outbound"]["caller_id"] = "+15557650111"  # changes gateway office-pbx
    base["trunks"].append({"name": "backup", "outbound": {"address": "sbc.backup.example", "transport": "tcp"}})
    plan = plan_reload(old, _render(base, tmp_path, "b"))
    assert _commands(plan) == ["reloadxml", "sofia profile tcp killgw office-pbx", "sofia profile tcp rescan"]
    del base["trunks"][-1]
    base["trunks"][1]["outbound"] = None
    removed = plan_reload(old, _render(base, tmp_path, "c"))
    assert "sofia profile tcp killgw office-pbx" in _commands(removed)
    assert "sofia profile tcp rescan" not in _commands(removed)


def test_listening_changes_wait_for_a_restart_unless_allowed(base: dict, tmp_path: Path) -> None:
    old = _render(base, tmp_path, "a")
    base["transports"]["tcp"]["port"] = 5070
    new = _render(base, tmp_path, "b")
    plan = plan_reload(old, new)
    assert [s.command for s in plan.restart_needed] == ["sofia profile tcp restart"]
    assert "sip-port" in plan.restart_needed[0].reason and "drops the calls" in plan.restart_needed[0].reason
    assert "sofia profile tcp restart" not in _commands(plan)
    allowed = plan_reload(old, new, allow_restart=True)
    assert "sofia profile tcp restart" in _commands(allowed)


def test_new_transport_starts_a_profile_and_limits_use_fsctl(base: dict, tmp_path: Path) -> None:
    old = _render(base, tmp_path, "a")
    base["transports"]["udp"] = {"port": 5080}
    base["freeswitch"]["max_calls"] = 250
    plan = plan_reload(old, _render(base, tmp_path, "b"))
    commands = _commands(plan)
    assert "sofia profile udp start" in commands
    assert "fsctl max_sessions 250" in commands
    assert commands[0] == "reloadxml"


def test_event_socket_change_is_never_run(base: dict, tmp_path: Path) -> None:
    old = _render(base, tmp_path, "a")
    base["freeswitch"]["event_socket"]["port"] = 8022
    plan = plan_reload(old, _render(base, tmp_path, "b"))
    assert [s.command for s in plan.restart_needed] == ["reload mod_event_socket"]


async def test_apply_loads_the_change_and_the_call_in_progress_survives(base: dict, tmp_path: Path) -> None:
    sim = SimulatedFreeSwitch(EXAMPLE_ENV["FREESWITCH_ESL_PASSWORD"])
    await sim.start()
    try:
        conf = tmp_path / "conf"
        base["freeswitch"]["event_socket"]["port"] = sim.port
        base["orchestrator"]["nodes"] = [{"name": "fs1", "port": sim.port}]
        first = tmp_path / "first.yaml"
        first.write_text(yaml.safe_dump(base, sort_keys=False))
        env = tmp_path / "env"
        env.write_text("".join(f"{k}={v}\n" for k, v in EXAMPLE_ENV.items()))
        runner = CliRunner()
        r = runner.invoke(app, ["render", str(first), "--env-file", str(env), "--out", str(conf)])
        assert r.exit_code == 0, r.output
        sim.add_gateway("office-pbx", profile="tcp")
        ch = await sim.inbound_call(destination="+15557650101", context="trunk-office-pbx", answered=True,
                                    profile="tcp")  # fmt: skip
        # the change: an ACL entry, a new outbound trunk, a listening change that would need a restart
        base["trunks"][1]["inbound"]["auth"]["acl"].append("198.51.100.0/24")
        base["trunks"].append({"name": "backup", "outbound": {"address": "sbc.backup.example", "transport": "tcp"}})
        base["transports"]["tcp"]["port"] = 5070
        second = tmp_path / "second.yaml"
        second.write_text(yaml.safe_dump(base, sort_keys=False))
        before = read_tree(conf)
        dry = await asyncio.to_thread(
            runner.invoke, app, ["apply", str(second), "--env-file", str(env), "--conf-dir", str(conf), "--dry-run"]
        )
        assert dry.exit_code == 0, dry.output
        assert "reloadacl" in dry.output and "not run (would drop calls): sofia profile tcp restart" in dry.output
        assert read_tree(conf) == before and not any("reloadacl" in c for c in sim.received_commands)
        done = await asyncio.to_thread(
            runner.invoke, app, ["apply", str(second), "--env-file", str(env), "--conf-dir", str(conf)]
        )
        assert done.exit_code == 0, done.output
        assert "fs1: ok reloadacl" in done.output and "fs1: ok sofia profile tcp rescan" in done.output
        assert "channels up 1 before, 1 after" in done.output
        assert ch.alive and ch.hangup_cause is None  # the call in progress survived
        assert read_tree(conf) != before
        again = await asyncio.to_thread(
            runner.invoke, app, ["apply", str(second), "--env-file", str(env), "--conf-dir", str(conf)]
        )
        assert "nothing to apply" in again.output
    finally:
        await sim.stop()


def test_adding_a_gateway_does_not_touch_its_neighbours(base: dict, tmp_path: Path) -> None:
    old = _render(base, tmp_path, "a")
    base["trunks"].append({"name": "backup", "outbound": {"address": "sbc.backup.example", "transport": "tcp"}})
    assert _commands(plan_reload(old, _render(base, tmp_path, "b"))) == ["reloadxml", "sofia profile tcp rescan"]


async def test_profile_restarts_wait_for_freeswitch_and_report_when_the_profile_is_back() -> None:
    sim = SimulatedFreeSwitch("pw")
    await sim.start()
    try:
        sim.profile_min_uptime = 1  # FreeSWITCH refuses a restart within 10 s of the start; shortened here
        ep = Endpoint("127.0.0.1", sim.port, "pw", "fs1")
        restart = [Step("sofia profile tls restart", "certificate files changed")]
        # refused ("must be up for at least 1 seconds"), retried after the wait FreeSWITCH asked for, back later
        sim.profile_started["tls"] = time.monotonic()  # (the profile has just started)
        result = await apply_to_node(ep, restart)
        assert result.ok and set(result.profiles_up) == {"tls"}
        assert sim.received_commands.count("api sofia profile tls restart") == 2
        # a profile that does not come back in time is a failure that says so
        sim.profile_restart_seconds, sim.profile_started["tls"] = 30, 0.0
        result = await apply_to_node(ep, restart, profile_timeout=0.5)
        assert not result.ok and "profile tls not RUNNING" in result.failed[0][1]
        # restarting a profile that is not loaded (stopped, or failed to start) starts it
        sim.profile_restart_seconds, sim.profile_started["udp"] = 0.1, 0.0
        await apply_to_node(ep, [Step("sofia profile udp stop", "removed")])
        result = await apply_to_node(ep, [Step("sofia profile udp restart", "listening changed")])
        assert result.ok and "udp" in result.profiles_up and "api sofia profile udp start" in sim.received_commands
    finally:
        await sim.stop()
