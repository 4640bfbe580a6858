"""The suite's deployments: the example moved onto loopback, rendered and put on the switch under test."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import yaml
from support import EXAMPLE
from switch import BIN, MODE, FreeSwitch, free_port, load_into_running, start_container, start_process, suite_env

from orchestrator.config import check_file
from orchestrator.config.selfsigned import generate
from orchestrator.render import render_deployment, write_tree


def loopback_example(work: Path, ports: dict[str, int], **freeswitch: Any) -> dict[str, Any]:
    """examples/deployment.yaml on 127.0.0.1 with ``ports`` (tcp, tls, esl), fresh TLS files in ``work``, the
    office PBX trunk also allowing 127.0.0.2 (sipp's source), a 5 s hand-off; ``freeswitch`` overrides more.
    With a ``bridge`` port, the orchestrator section for one node: forks to that port, file playback (the
    start every mod_audio_fork takes), records in calls.jsonl."""
    generate(work / "tls", ["sip.example.com"], ["127.0.0.1"])
    rtp = min(free_port(socket.SOCK_DGRAM) // 2 * 2, 64000)
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["freeswitch"].update(
        bind_ip="127.0.0.1",
        ext_sip_ip="127.0.0.1",
        ext_rtp_ip="127.0.0.1",
        local_networks=["127.0.0.0/8"],
        rtp_ports={"start": rtp, "end": rtp + 400},
        handoff_timeout_seconds=5,
    )
    doc["freeswitch"].update(freeswitch)
    doc["freeswitch"]["event_socket"]["port"] = ports["esl"]
    doc["transports"]["tcp"]["port"] = ports["tcp"]
    doc["transports"]["tls"]["port"] = ports["tls"]
    doc["trunks"][1]["inbound"]["auth"]["acl"].append("127.0.0.2")
    if "bridge" in ports:
        doc["orchestrator"] = {
            "media_url": f"ws://127.0.0.1:{ports['bridge']}",
            "media": {"playback": "file"},
            "records": "calls.jsonl",
            "nodes": [{"name": "fs1", "port": ports["esl"]}],
        }
    return doc


def render_and_start(doc: dict[str, Any], root: Path, work: Path, mod_dir: Path | None = None) -> FreeSwitch:
    """Write ``doc`` as work/deployment.yaml (it must validate), render it and put it on the switch under test:
    a FreeSWITCH process or container started on root/conf, or the running switch (loaded with apply).
    ``mod_dir`` replaces the module directory of a process."""
    env = suite_env()
    deployment_file = work / "deployment.yaml"
    deployment_file.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = check_file(deployment_file, env)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    if MODE == "running":
        return load_into_running(deployment_file, env, work)
    conf = root / "conf"
    write_tree(render_deployment(result.deployment, result.base_dir), conf)
    esl_port, password = doc["freeswitch"]["event_socket"]["port"], env["FREESWITCH_ESL_PASSWORD"]
    if MODE == "container":
        return start_container(conf, root / "run", esl_port, password)
    return start_process(BIN, conf, root / "run", esl_port, password, mod_dir=mod_dir)
