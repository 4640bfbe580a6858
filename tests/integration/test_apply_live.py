"""`sipagent apply` against a real FreeSWITCH: the change is loaded and a call in progress survives it.

Runs on the switch under test (see switch.py) when ``sipp`` is installed; skips otherwise, saying why.
"""

from __future__ import annotations

import asyncio

import test_freeswitch_calls as calls
import yaml
from switch import free_port, suite_env
from test_freeswitch_calls import FIXTURES, Bridge, Env, call_in, new_controller, scenario, wait_for
from typer.testing import CliRunner

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.cli import app

# the real FreeSWITCH, the stand-in media endpoint and the skip conditions of the call tests
env, bridge, pytestmark = calls.env, calls.bridge, calls.pytestmark


async def test_apply_loads_acl_gateway_and_limits_while_a_call_stays_up(
    env: Env,
    bridge: tuple[Bridge, list[Controller]],
) -> None:
    notices: list[Notice] = []
    controller = await new_controller(env, notices)
    bridge[1].append(controller)
    env_file = env.work / "apply.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in suite_env().items()))
    conf = env.fs.conf
    try:
        xml = scenario(env, FIXTURES / "05-audio-fork" / "uac.xml", "uac-apply.xml",
                       {"05-audio-fork/tone440-pcmu.wav": str(FIXTURES / "05-audio-fork" / "tone440-pcmu.wav")})  # fmt: skip
        proc = await call_in(env, xml)
        answered = await wait_for(notices, "answered")
        uuid = answered.call.uuid
        await wait_for(notices, "fork_connected")
        doc = yaml.safe_load(env.deployment_file.read_text())
        doc["trunks"][1]["inbound"]["auth"]["acl"].append("198.51.100.0/24")
        doc["trunks"].append({"name": "backup", "outbound": {"address": "127.0.0.1", "port": 5999, "transport": "tcp"}})
        doc["freeswitch"]["max_calls"] = 77
        doc["transports"]["tcp"]["port"] = free_port()  # needs a restart: must be reported, not done
        changed = env.work / "changed.yaml"
        changed.write_text(yaml.safe_dump(doc, sort_keys=False))
        args = ["apply", str(changed), "--env-file", str(env_file), "--conf-dir", str(conf)]
        result = await asyncio.to_thread(CliRunner().invoke, app, args)
        print(result.output)
        assert result.exit_code == 0, result.output
        assert "not run (would drop calls): sofia profile tcp restart" in result.output
        assert "channels up 1 before, 1 after" in result.output
        assert env.fs.api(f"uuid_exists {uuid}").strip() == "true"  # the call is still up
        assert "backup" in env.fs.api("sofia status gateway backup")
        assert env.fs.api("acl 198.51.100.7 trunk-office-pbx").strip() == "true"
        assert env.fs.api("fsctl max_sessions").strip() == "+OK max sessions: 77"
        await controller.hangup(uuid, "completed")
        assert await asyncio.wait_for(proc.wait(), 15) == 0  # sipp saw our BYE: the dialog was intact
    finally:
        await controller.stop()
