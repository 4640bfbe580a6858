"""The sipagent CLI as a user runs it: exit codes, messages, never a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import EXAMPLE_ENV
from typer.testing import CliRunner

from orchestrator.cli import app, schema_text

runner = CliRunner()


@pytest.fixture()
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / "example.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in EXAMPLE_ENV.items()))
    return path


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_help_everywhere() -> None:
    for cmd in ([], ["validate"], ["render"], ["schema"], ["show"], ["tls", "self-signed"]):
        result = invoke(*cmd, "--help")
        assert result.exit_code == 0, cmd
        assert "Usage" in result.output


def test_validate_ok(example_dir: Path, env_file: Path) -> None:
    result = invoke("validate", str(example_dir / "deployment.yaml"), "--env-file", str(env_file))
    assert result.exit_code == 0, result.output
    assert "valid" in result.output


def test_validate_reports_all_errors_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "freeswitch:\n  bind_ip: nope\n  event_socket: {password: x}\n"
        "trunks:\n  - {name: t, outbound: {address: 'sip:x.example'}}\n"
        "numbers:\n  - {number: '123', trunk: t, agent: a}\n"
    )
    result = invoke("validate", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:2:3: error: freeswitch.bind_ip:" in result.output
    assert f"{bad}:5:" in result.output and "without 'sip:'" in result.output
    assert f"{bad}:7:" in result.output and "E.164" in result.output
    assert "Traceback" not in result.output


def test_validate_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket: {password: '${NOPE}'}\n")
    result = invoke("validate", str(bad), "--json")
    assert result.exit_code == 2
    [finding] = json.loads(result.stdout)
    assert finding["path"] == "freeswitch.event_socket.password"
    assert finding["line"] == 3
    assert "NOPE" in finding["message"]


def test_validate_strict_fails_on_warnings(tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text("freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: literal}}\n")
    assert invoke("validate", str(f)).exit_code == 0
    assert invoke("validate", str(f), "--strict").exit_code == 2


def test_missing_file_is_plain_error(tmp_path: Path) -> None:
    result = invoke("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 2
    assert "cannot read the deployment file" in result.output


def test_render_check_cycle(example_dir: Path, env_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "conf"
    deployment = str(example_dir / "deployment.yaml")
    result = invoke("render", deployment, "--env-file", str(env_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "freeswitch.xml").is_file()
    assert invoke("render", deployment, "--env-file", str(env_file), "--out", str(out), "--check").exit_code == 0

    (out / "autoload_configs" / "switch.conf.xml").write_text("<configuration/>\n")
    result = invoke("render", deployment, "--env-file", str(env_file), "--out", str(out), "--check")
    assert result.exit_code == 1
    assert "switch.conf.xml (rendered)" in result.output
    assert "rtp-start-port" in result.output

    # a rotated secret: reported as changed, never shown
    rotated = env_file.read_text().replace("esl-secret", "rotated-esl")
    env_file.write_text(rotated)
    result = invoke("render", deployment, "--env-file", str(env_file), "--out", str(out), "--check")
    assert "event_socket.conf.xml (changed; holds secrets, diff not shown)" in result.output
    assert "rotated-esl" not in result.output and "esl-secret" not in result.output


def test_render_invalid_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("freeswitch: {}\n")
    out = tmp_path / "conf"
    result = invoke("render", str(bad), "--out", str(out))
    assert result.exit_code == 2
    assert not out.exists()


def test_render_refuses_foreign_directory(example_dir: Path, env_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "data.txt").write_text("keep me")
    result = invoke("render", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--out", str(out))
    assert result.exit_code == 1
    assert "not rendered by sipagent" in result.output
    assert (out / "data.txt").read_text() == "keep me"


def test_schema_matches_committed_copy() -> None:
    committed = Path(__file__).resolve().parents[1] / "docs" / "deployment.schema.json"
    assert committed.read_text() == schema_text(), "run: sipagent schema --out docs/deployment.schema.json"
    doc = json.loads(schema_text())
    assert set(doc["properties"]) == {
        "version",
        "freeswitch",
        "transports",
        "trunks",
        "numbers",
        "agents",
        "orchestrator",
    }


def test_show_has_no_secrets(example_dir: Path, env_file: Path) -> None:
    result = invoke("show", str(example_dir / "deployment.yaml"), "--env-file", str(env_file))
    assert result.exit_code == 0, result.output
    assert "carrier-secure" in result.output and "+15557650001" in result.output
    for secret in EXAMPLE_ENV.values():
        assert secret not in result.output


def test_tls_self_signed(tmp_path: Path) -> None:
    result = invoke("tls", "self-signed", "--out", str(tmp_path / "t"), "--name", "sip.test", "--ip", "127.0.0.1")
    assert result.exit_code == 0, result.output
    assert oct((tmp_path / "t" / "sip.test.key").stat().st_mode & 0o777) == "0o600"
    again = invoke("tls", "self-signed", "--out", str(tmp_path / "t"), "--name", "sip.test")
    assert again.exit_code == 1 and "already exists" in again.output


def test_internal_errors_are_not_tracebacks(monkeypatch: pytest.MonkeyPatch, example_dir: Path, env_file: Path) -> None:
    import orchestrator.render as render_pkg

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(render_pkg, "render_deployment", boom)
    result = invoke("render", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--out", "/tmp/x")
    assert result.exit_code == 70
    assert "internal error: RuntimeError: simulated bug" in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(shutil.which("sipagent") is None, reason="sipagent console script not installed")
def test_installed_console_script(example_dir: Path, env_file: Path, tmp_path: Path) -> None:
    """The installed entry point (run outside the source tree) finds its packaged templates."""
    out = tmp_path / "conf"
    proc = subprocess.run(
        ["sipagent", "render", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert proc.returncode == 0, proc.stderr
    assert (out / "sip_profiles" / "tls.xml").is_file()
    proc = subprocess.run(
        [sys.executable, "-m", "orchestrator", "--version"], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stdout.startswith("sipagent ")
