"""compose.yaml, compose.host.yaml and freeswitch/: valid Compose files that match the deployment they run."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import EXAMPLE_ENV

from orchestrator.config import check_file

ROOT = Path(__file__).resolve().parents[1]
FILES = ["compose.yaml", "compose.host.yaml"]


def _compose_cli() -> list[str] | None:
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.parametrize("name", FILES)
def test_compose_config_accepts_the_file(name: str) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("needs `docker compose` or `docker-compose` (Debian package docker-compose) to check the file")
    result = subprocess.run([*cli, "-f", name, "config", "--quiet"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def test_stack_renders_first_then_freeswitch_then_the_orchestrator() -> None:
    services = _load("compose.yaml")["services"]
    assert services["render"]["command"][:2] == ["render", "/config/deployment.yaml"]
    assert services["freeswitch"]["depends_on"]["render"]["condition"] == "service_completed_successfully"
    assert services["orchestrator"]["depends_on"]["freeswitch"]["condition"] == "service_healthy"
    assert services["orchestrator"]["command"] == ["run", "/config/deployment.yaml"]
    assert "healthz" in " ".join(services["orchestrator"]["healthcheck"]["test"])
    assert "HEALTHCHECK" in (ROOT / "freeswitch" / "Dockerfile").read_text()
    for name in ("render", "freeswitch", "orchestrator"):
        assert services[name]["env_file"], f"{name} takes its secrets from the env file"


def test_published_ports_and_addresses_match_the_example_deployment() -> None:
    result = check_file(ROOT / "examples" / "compose" / "deployment.yaml", EXAMPLE_ENV)
    assert result.errors == [], [str(d) for d in result.errors]
    d = result.deployment
    assert d is not None
    compose = _load("compose.yaml")
    fs = compose["services"]["freeswitch"]
    ports = _defaults(" ".join(fs["ports"]))
    assert f"{d.transports.tcp.port}:{d.transports.tcp.port}/tcp" in ports
    assert f"{d.freeswitch.rtp_ports.start}-{d.freeswitch.rtp_ports.end}:" in ports
    assert fs["networks"]["sipagent"]["ipv4_address"] == d.freeswitch.bind_ip == d.orchestrator.nodes[0].host
    orch = compose["services"]["orchestrator"]
    assert str(d.orchestrator.media_url).startswith(f"ws://{orch['networks']['sipagent']['ipv4_address']}:")
    assert orch["ports"][0] == f"127.0.0.1:{d.orchestrator.api.port}:{d.orchestrator.api.port}"


def _defaults(text: str) -> str:
    """Compose's ``${VAR:-default}`` as the default (what runs when the variable is not set)."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)


def test_the_pool_profile_matches_the_pool_example() -> None:
    """`--profile pool`: the edge publishes the carriers' SIP ports, each node its own RTP range, on the
    addresses the pool deployment gives them; node trees come from render's nodes/<name>."""
    result = check_file(ROOT / "examples" / "pool" / "deployment.yaml", EXAMPLE_ENV)
    assert result.errors == [], [str(d) for d in result.errors]
    d = result.deployment
    assert d is not None and d.edge is not None
    services = _load("compose.yaml")["services"]
    edge, fs1, fs2 = services["edge"], services["freeswitch"], services["freeswitch-2"]
    assert edge["profiles"] == ["pool"] and fs2["profiles"] == ["pool"] and "profiles" not in fs1
    assert edge["networks"]["sipagent"]["ipv4_address"] == d.edge.listen_ip == d.edge.internal_address
    assert f"{d.public_transports.tcp.port}:{d.public_transports.tcp.port}/tcp" in edge["ports"]
    assert "kamailio-tls-modules" in (ROOT / "freeswitch" / "edge.Dockerfile").read_text()
    assert edge["healthcheck"]["test"] and "HEALTHCHECK" in (ROOT / "freeswitch" / "edge.Dockerfile").read_text()
    for service, node in ((fs1, d.edge.nodes[0]), (fs2, d.edge.nodes[1])):
        assert service["networks"]["sipagent"]["ipv4_address"] == node.sip_ip == node.esl_host
        rtp = node.rtp_ports
        assert rtp is not None and f"{rtp.start}-{rtp.end}:{rtp.start}-{rtp.end}/udp" in service["ports"]
    assert fs2["environment"]["SIPAGENT_CONF_DIR"] == "/etc/sipagent/freeswitch/nodes/fs2"
    assert "nodes/fs1" in (ROOT / "examples" / "pool" / "deployment.yaml").read_text()  # the fs1 override, documented
    render = services["render"]["command"]
    assert render[render.index("--edge-conf-dir") + 1] == "/etc/sipagent/freeswitch/kamailio"
    assert "/etc/sipagent/freeswitch/kamailio" in (ROOT / "freeswitch" / "edge.Dockerfile").read_text()


def test_host_networking_variant_publishes_nothing() -> None:
    services = _load("compose.host.yaml")["services"]
    for name in ("freeswitch", "orchestrator"):
        assert services[name]["network_mode"] == "host" and "ports" not in services[name]


@pytest.mark.parametrize(
    "name",
    [
        *FILES,
        "Dockerfile",
        "freeswitch/Dockerfile",
        "freeswitch/edge.Dockerfile",
        "examples/compose/deployment.yaml",
        "examples/pool/deployment.yaml",
    ],
)
def test_no_secret_is_written_in_the_files(name: str) -> None:
    text = (ROOT / name).read_text()
    for value in EXAMPLE_ENV.values():
        assert value not in text
    for line in text.splitlines():
        if re.search(r"\b(password|token|api_key)\s*:\s*\S", line, re.I):
            assert "${" in line, f"{name}: a secret written literally: {line.strip()}"
