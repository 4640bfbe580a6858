"""`sipagent doctor` against a real FreeSWITCH running the rendered example (the switch under test; see switch.py)."""

from __future__ import annotations

import json

import test_freeswitch_calls as calls
from switch import suite_env
from test_freeswitch_calls import Env
from typer.testing import CliRunner

from orchestrator.cli import app

env, pytestmark = calls.env, calls.pytestmark


def test_doctor_on_a_live_switch(env: Env) -> None:
    env_file = env.work / "doctor.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in suite_env().items()))
    args = ["doctor", str(env.deployment_file), "--env-file", str(env_file), "--json", "--no-trunks",
            "--peer", f"127.0.0.1:{env.ports['tls']}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    rows = json.loads(result.stdout)
    by = {(r["check"], r["target"].split(" ")[0]): r for r in rows}
    assert by[("esl", "fs1")]["status"] == "pass"
    assert by[("profile", "tcp")]["status"] == "pass" and by[("profile", "tls")]["status"] == "pass"
    assert by[("gateway", "office-pbx")]["status"] == "pass"
    assert by[("codecs", "mod_spandsp")]["status"] == "pass"
    assert by[("fork", "mod_audio_fork")]["status"] == "pass", by[("fork", "mod_audio_fork")]  # plays back as set
    tls = [r for r in rows if r["check"] == "tls"]
    assert tls[0]["status"] == "pass" and "TLSv1.3" in tls[0]["detail"]
    assert [r["status"] for r in tls[1:]] == ["pass", "pass"]  # TLS 1.0 and 1.1 refused by our profile
    assert result.exit_code == 0, result.stdout
