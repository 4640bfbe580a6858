"""How the suite picks its FreeSWITCH, and why it skips: checked without one (runs everywhere)."""

from __future__ import annotations

from pathlib import Path

import pytest
from switch import IMAGE, IMAGE_BIN, choose, container_for


def no_engine() -> str:
    return "no Docker engine (DockerException)"


def test_running_switch_first_and_what_it_needs(tmp_path: Path) -> None:
    conf = {"FREESWITCH_CONF_DIR": str(tmp_path), "FREESWITCH_BIN": "/bin/sh"}
    assert choose({"FREESWITCH_ESL": "127.0.0.1:8021:pw", **conf}, no_engine) == ("running", "")
    assert choose({"FREESWITCH_ESL": "localhost:8021:pw", **conf}, no_engine)[0] == "running"
    mode, why = choose({"FREESWITCH_ESL": "10.1.2.3:8021:pw", **conf}, no_engine)
    assert mode is None and "not on this host's loopback" in why
    mode, why = choose({"FREESWITCH_ESL": "127.0.0.1:8021:pw"}, no_engine)
    assert mode is None and "FREESWITCH_CONF_DIR" in why
    assert choose({"FREESWITCH_ESL": "127.0.0.1:8021"}, no_engine) == (
        None,
        "FREESWITCH_ESL must be host:port:password",
    )


def test_binary_then_docker_then_a_reason(tmp_path: Path) -> None:
    assert choose({"FREESWITCH_BIN": "/bin/sh"}, no_engine) == ("process", "")
    mode, why = choose({"FREESWITCH_BIN": str(tmp_path / "nothing")}, no_engine)
    assert mode is None and "is not an executable" in why
    assert choose({}, lambda: "") == ("container", "")
    mode, why = choose({}, no_engine)
    assert mode is None and "FREESWITCH_ESL" in why and "FREESWITCH_BIN" in why and "no Docker engine" in why


def test_container_runs_the_rendered_tree_with_host_networking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = pytest.importorskip("testcontainers.core.container")
    monkeypatch.setattr(module, "DockerClient", lambda **_: None)  # nothing is started: no engine needed
    conf, root = tmp_path / "conf", tmp_path / "run"
    conf.mkdir()
    c = container_for(conf, root)
    assert c.image.endswith(IMAGE)
    assert c._kwargs["network_mode"] == "host" and c._kwargs["entrypoint"] == [IMAGE_BIN]
    assert {str(p): v["bind"] for p, v in c.volumes.items()} == {str(conf): str(conf), str(root): str(root)}
    command = c._command
    assert command[:5] == ["-nonat", "-nf", "-nc", "-conf", str(conf)]
    assert command[command.index("-log") + 1] == str(root / "log") and (root / "log").is_dir()
