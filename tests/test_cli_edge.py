"""`sipagent render` and `apply` with an edge: one tree (kamailio/ and nodes/<name>/), live reload plans."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.render.reload import plan_edge_reload

DEPLOYMENT = """
freeswitch:
  bind_ip: 127.0.0.1
  event_socket: {password: "${ESL}"}
transports: {tcp: {port: 5060}}
edge:
  host: sip.example.com
  addresses: [127.0.0.1]
  rpc_socket: RPC
  nodes:
    - {name: fs1, sip_ip: 127.0.0.1, sip_port: 5080, esl: {port: 1}}
    - {name: fs2, sip_ip: 127.0.0.2, sip_port: 5080, weight: WEIGHT, esl: {host: 127.0.0.1, port: 2}}
trunks:
  - name: carrier
    inbound:
      transports: [tcp]
      auth: {digest: {username: carrier, password: "${PW}"}}
  - name: pbx
    inbound: {transports: [tcp], auth: {acl: [192.0.2.0/24]}}
numbers:
  - {number: "+15550000001", trunk: carrier, agent: a}
agents: [{name: a, protocol: raw, url: "ws://127.0.0.1:9/a"}]
"""


def write(tmp: Path, weight: int = 1) -> Path:
    path = tmp / "deployment.yaml"
    path.write_text(DEPLOYMENT.replace("WEIGHT", str(weight)).replace("RPC", str(tmp / "missing.sock")))
    (tmp / "env").write_text("ESL=esl-secret\nPW=digest-secret\n")
    return path


def invoke(*args: str):
    return CliRunner().invoke(app, list(args))


def test_render_writes_the_edge_and_every_node_in_one_tree(tmp_path: Path) -> None:
    dep, out = write(tmp_path), tmp_path / "out"
    result = invoke("render", str(dep), "--env-file", str(tmp_path / "env"), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "kamailio" / "kamailio.cfg").is_file() and (out / "kamailio" / "dispatcher.list").is_file()
    assert (out / "nodes" / "fs1" / "freeswitch.xml").is_file() and (out / "nodes" / "fs2" / "freeswitch.xml").is_file()
    assert stat.S_IMODE((out / "kamailio" / "trunks.cfg").stat().st_mode) == 0o600  # HA1 of the digest trunk
    cfg = (out / "kamailio" / "kamailio.cfg").read_text()
    assert str((out / "kamailio").absolute()) in cfg  # Kamailio reads its files from where they were rendered
    for path in out.rglob("*"):
        if path.is_file():
            assert (b"digest-secret" not in path.read_bytes() and b"esl-secret" not in path.read_bytes()) or (
                stat.S_IMODE(path.stat().st_mode) == 0o600
            ), path
    again = invoke("render", str(dep), "--env-file", str(tmp_path / "env"), "--out", str(out), "--check")
    assert again.exit_code == 0, again.output  # deterministic: up to date


def test_render_names_where_kamailio_will_read_its_files(tmp_path: Path) -> None:
    dep, out = write(tmp_path), tmp_path / "out"
    result = invoke(
        "render", str(dep), "--env-file", str(tmp_path / "env"), "--out", str(out), "--edge-conf-dir", "/etc/kamailio"
    )
    assert result.exit_code == 0, result.output
    assert "/etc/kamailio/" in (out / "kamailio" / "kamailio.cfg").read_text()


def test_apply_dry_run_plans_a_dispatcher_reload_for_a_new_weight(tmp_path: Path) -> None:
    dep, out = write(tmp_path), tmp_path / "out"
    assert invoke("render", str(dep), "--env-file", str(tmp_path / "env"), "--out", str(out)).exit_code == 0
    write(tmp_path, weight=3)
    result = invoke("apply", str(dep), "--env-file", str(tmp_path / "env"), "--conf-dir", str(out), "--dry-run")
    assert result.exit_code == 0, result.output
    assert "dispatcher.reload" in result.output and "restart" not in result.output.lower()
    assert "node fs1" not in result.output  # the nodes' trees did not change
    unchanged = invoke("apply", str(dep), "--env-file", str(tmp_path / "env"), "--conf-dir", str(out), "--dry-run")
    assert "dispatcher.reload" in unchanged.output  # dry run: nothing was written


def test_apply_says_when_kamailio_is_not_reachable(tmp_path: Path) -> None:
    dep, out = write(tmp_path), tmp_path / "out"
    assert invoke("render", str(dep), "--env-file", str(tmp_path / "env"), "--out", str(out)).exit_code == 0
    before = (out / "kamailio" / "dispatcher.list").read_text()
    write(tmp_path, weight=3)
    result = invoke("apply", str(dep), "--env-file", str(tmp_path / "env"), "--conf-dir", str(out))
    assert result.exit_code == 1, result.output
    assert "edge: not reachable" in result.output
    assert (out / "kamailio" / "dispatcher.list").read_text() != before  # written: a restart would pick it up


@pytest.mark.parametrize(
    ("changed", "steps", "restart"),
    [
        ({"dispatcher.list"}, ["dispatcher.reload"], False),
        ({"address.list"}, ["permissions.addressReload"], False),
        ({"tls.cfg", "tls/edge.crt"}, ["tls.reload"], False),
        ({"kamailio.cfg"}, [], True),
        ({"trunks.cfg", "dispatcher.list"}, ["dispatcher.reload"], True),
    ],
)
def test_edge_reload_plan(changed: set[str], steps: list[str], restart: bool) -> None:
    old = {
        n: b"old" for n in ("kamailio.cfg", "dispatcher.list", "address.list", "trunks.cfg", "tls.cfg", "tls/edge.crt")
    }
    new = {n: (b"new" if n in changed else v) for n, v in old.items()}
    plan = plan_edge_reload(old, new)
    assert [s.command for s in plan.steps] == steps
    assert bool(plan.restart_needed) is restart
