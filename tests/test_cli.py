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
        "edge",
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


def test_internal_errors_are_not_tracebacks(
    monkeypatch: pytest.MonkeyPatch, example_dir: Path, env_file: Path, tmp_path: Path
) -> None:
    import orchestrator.render as render_pkg

    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(render_pkg, "render_deployment", boom)
    result = invoke(
        "render", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--out", str(tmp_path / "x")
    )
    assert result.exit_code == 70
    assert "internal error: RuntimeError: simulated bug" in result.output
    assert "Traceback" not in result.output


#: the console script of the interpreter running the tests (the venv's bin/ is not always on PATH)
SCRIPT = next((str(p) for p in [Path(sys.executable).parent / "sipagent"] if p.is_file()), shutil.which("sipagent"))


@pytest.mark.skipif(SCRIPT is None, reason="sipagent console script not installed")
def test_installed_console_script(example_dir: Path, env_file: Path, tmp_path: Path) -> None:
    """The installed entry point (run outside the source tree) finds its packaged templates."""
    out = tmp_path / "conf"
    proc = subprocess.run(
        [str(SCRIPT), "render", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--out", str(out)],
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


# -- every file the CLI reads is read bounded -------------------------------------------------------

FS_ONLY = "freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: '${P}'}}\n"


def _special(tmp_path: Path, kind: str) -> Path:
    """A path that is not a small regular file."""
    path = tmp_path / f"special-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        return Path("/dev/zero")
    elif kind == "symlink-to-device":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    elif kind == "oversize":
        with open(path, "wb") as fh:
            fh.truncate(64 * 1024 * 1024)  # sparse: costs no disk
    elif kind == "missing":
        pass
    elif kind == "dangling-symlink":
        path.symlink_to(tmp_path / "nowhere")
    return path


KINDS = ["fifo", "dev-zero", "symlink-to-device", "directory", "oversize", "missing", "dangling-symlink"]
REASONS = {
    "fifo": "a FIFO (named pipe), not a regular file",
    "dev-zero": "a character device, not a regular file",
    "symlink-to-device": "a character device, not a regular file",
    "directory": "a directory, not a regular file",
    "oversize": "64 MiB, larger than the limit of",
    "missing": "no such file",
    "dangling-symlink": "no such file",
}


def _assert_one_clear_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "internal error" not in result.output
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.mark.parametrize("command", ["validate", "show", "render"])
@pytest.mark.parametrize("kind", KINDS)
def test_deployment_file_that_is_not_a_small_regular_file(tmp_path: Path, kind: str, command: str) -> None:
    path = _special(tmp_path, kind)
    args = [command, str(path)] + (["--out", str(tmp_path / "conf")] if command == "render" else [])
    result = invoke(*args)
    _assert_one_clear_error(result, "cannot read the deployment file", str(path), REASONS[kind])
    assert not (tmp_path / "conf").exists()


def test_deployment_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"freeswitch: {bind_ip: 127.0.0.1}\n# caf\xe9\n")
    _assert_one_clear_error(invoke("validate", str(path)), "not UTF-8 text")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_files(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text(FS_ONLY)
    path.chmod(0)
    _assert_one_clear_error(invoke("validate", str(path)), "permission denied")
    _assert_one_clear_error(invoke("validate", str(tmp_path / "x.yaml"), "--env-file", str(path)), "permission denied")


@pytest.mark.parametrize("kind", KINDS)
def test_env_file_that_is_not_a_small_regular_file(tmp_path: Path, kind: str) -> None:
    deployment = tmp_path / "d.yaml"
    deployment.write_text(FS_ONLY)
    path = _special(tmp_path, kind)
    result = invoke("validate", str(deployment), "--env-file", str(path))
    _assert_one_clear_error(result, "cannot read the env file", str(path), REASONS[kind])


def test_env_file_references_are_not_expanded(tmp_path: Path) -> None:
    """Chained ${VAR} in a dotenv file would double at each line (a few dozen lines exhaust memory)."""
    env = tmp_path / "bomb.env"
    env.write_text("A0=xxxxxxxxxxxxxxxx\n" + "".join(f"A{i}=${{A{i - 1}}}${{A{i - 1}}}\n" for i in range(1, 60)))
    deployment = tmp_path / "d.yaml"
    deployment.write_text(FS_ONLY.replace("${P}", "${A59}"))
    result = invoke("validate", str(deployment), "--env-file", str(env))
    assert result.exit_code == 0, result.output  # the value is the literal text "${A58}${A58}"


def _tls_deployment(tmp_path: Path, tls_dir: Path, setting: str, path: Path) -> Path:
    files = {
        "certificate": tls_dir / "sip.test.crt",
        "private_key": tls_dir / "sip.test.key",
        "ca_bundle": tls_dir / "ca.crt",
    }
    files[setting] = path
    deployment = tmp_path / "tls.yaml"
    deployment.write_text(
        "freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: '${P}'}}\n"
        "transports:\n  tls:\n" + "".join(f"    {k}: '{v}'\n" for k, v in files.items())
    )
    return deployment


@pytest.mark.parametrize("setting", ["certificate", "private_key", "ca_bundle"])
@pytest.mark.parametrize("kind", KINDS)
def test_tls_file_that_is_not_a_small_regular_file(tmp_path: Path, tls_dir: Path, setting: str, kind: str) -> None:
    path = _special(tmp_path, kind)
    deployment = _tls_deployment(tmp_path, tls_dir, setting, path)
    for command in (["validate"], ["render", "--out", str(tmp_path / "conf")]):
        result = runner.invoke(app, [command[0], str(deployment), *command[1:]], env={"P": "x"})
        _assert_one_clear_error(result, f"transports.tls.{setting}: cannot read {path}", REASONS[kind])


def _encrypted_key_pem(iterations: int, scrypt: tuple[int, int, int] | None = None) -> bytes:
    """A PKCS#8 EncryptedPrivateKeyInfo whose key derivation asks for ``iterations`` (contents are junk)."""
    import base64

    def tlv(tag: int, body: bytes) -> bytes:
        n = len(body)
        length = (
            bytes([n])
            if n < 128
            else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
        )
        return bytes([tag]) + length + body

    def integer(v: int) -> bytes:
        return tlv(0x02, v.to_bytes(v.bit_length() // 8 + 1, "big"))

    def oid(hexstr: str) -> bytes:
        return tlv(0x06, bytes.fromhex(hexstr))

    salt = tlv(0x04, b"\x01" * 8)
    if scrypt:
        kdf = tlv(0x30, oid("2b06010401da47040b") + tlv(0x30, salt + b"".join(integer(v) for v in scrypt)))
    else:
        kdf = tlv(0x30, oid("2a864886f70d01050c") + tlv(0x30, salt + integer(iterations)))
    enc = tlv(0x30, oid("608648016503040102") + tlv(0x04, b"\x02" * 16))
    alg = tlv(0x30, oid("2a864886f70d01050d") + tlv(0x30, kdf + enc))
    der = tlv(0x30, alg + tlv(0x04, b"\x00" * 48))
    body = base64.encodebytes(der).decode()
    return f"-----BEGIN ENCRYPTED PRIVATE KEY-----\n{body}-----END ENCRYPTED PRIVATE KEY-----\n".encode()


@pytest.mark.parametrize(
    ("pem_args", "message"),
    [
        ((2_000_000_000,), "2,000,000,000 key-derivation iterations"),
        ((0, (2**24, 8, 1)), "scrypt parameters"),
        ((0, (2**16, 8, 10**6)), "scrypt parameters"),
    ],
    ids=["pbkdf2", "scrypt-memory", "scrypt-work"],
)
def test_key_that_would_take_minutes_to_decrypt(tmp_path: Path, tls_dir: Path, pem_args: tuple, message: str) -> None:
    key = tmp_path / "slow.key"
    key.write_bytes(_encrypted_key_pem(*pem_args))
    key.chmod(0o600)
    deployment = _tls_deployment(tmp_path, tls_dir, "private_key", key)
    deployment.write_text(deployment.read_text() + "    private_key_passphrase: '${P}'\n")
    result = runner.invoke(app, ["validate", str(deployment)], env={"P": "pass"})
    _assert_one_clear_error(result, "transports.tls.private_key", message)


# -- what is printed: values never restyle the terminal, forge lines or crash rich -------------------


def test_hostile_values_are_printed_literally(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        'freeswitch: {bind_ip: "[/x]", event_socket: {password: x}}\n'
        '"[bold]:smile:[/]\\e[31mRED\\nfake.yaml:1:1: error: forged": 1\n'
    )
    result = invoke("validate", str(bad))
    assert result.exit_code == 2
    assert "\x1b" not in result.output
    assert "'[/x]' is not an IP address" in result.output
    assert "unknown section '[bold]:smile:[/]\\x1b[31mRED\\x0afake.yaml:1:1: error: forged'" in result.output
    assert len(result.output.strip().splitlines()) == 3  # two findings and the summary: nothing forged


def test_show_prints_values_literally(tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(
        "freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: '${P}'}}\n"
        "agents:\n  - {name: a, protocol: elevenlabs, agent_id: '[/x] :smile: [bold]b[/bold] \\'}\n"
    )
    result = runner.invoke(app, ["show", str(f)], env={"P": "x", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "agent_id=[/x] :smile: [bold]b[/bold] \\" in result.output


def test_markup_in_file_names(tmp_path: Path) -> None:
    d = tmp_path / "[bold]dir[red]"
    d.mkdir()
    f = d / "[bold]x\\[red] :smile:.yaml"
    f.write_text("freeswitch: {}\n")
    result = invoke("validate", str(f))
    assert result.exit_code == 2
    assert f"{f}: 2 error(s)" in result.output
    assert invoke("render", str(f), "--out", str(d / "[/out]")).exit_code == 2


def test_json_output_is_json_whatever_the_values(tmp_path: Path) -> None:
    f = tmp_path / "d.yaml"
    f.write_text('freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: x}}\n"\\e[31m[/x]\\u202e": 1\n')
    result = invoke("validate", str(f), "--json")
    assert result.exit_code == 2
    [finding] = [d for d in json.loads(result.stdout) if d["severity"] == "error"]
    assert finding["path"] == "\\x1b[31m[/x]\\u202e" and "'\\x1b[31m[/x]\\u202e'" in finding["message"]


@pytest.mark.parametrize("text", ["~\n", "null\n", "---\n", "[]\n", "just text\n"])
@pytest.mark.parametrize("command", ["validate", "show", "render"])
def test_documents_that_are_not_a_mapping(tmp_path: Path, text: str, command: str) -> None:
    f = tmp_path / "d.yaml"
    f.write_text(text)
    args = [command, str(f)] + (["--out", str(tmp_path / "conf")] if command == "render" else [])
    _assert_one_clear_error(invoke(*args), str(f))


def test_render_when_a_tls_file_changed_after_validation(
    monkeypatch: pytest.MonkeyPatch, example_dir: Path, env_file: Path, tmp_path: Path
) -> None:
    import orchestrator.render as render_pkg
    from orchestrator.config.tls_material import TlsMaterialError

    def gone(*_a: object, **_k: object) -> None:
        raise TlsMaterialError("certificate", "cannot read /x/y.crt: no such file")

    monkeypatch.setattr(render_pkg, "render_deployment", gone)
    result = invoke(
        "render", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--out", str(tmp_path / "c")
    )
    _assert_one_clear_error(result, "sipagent: transports.tls.certificate: cannot read /x/y.crt: no such file")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--name", "../../etc/evil"], 2, "is not a DNS name"),
        (["--name", "[/x]"], 2, "'[/x]' is not a DNS name"),
        (["--name", "a\x1b[2Jb"], 2, "'a\\x1b[2Jb' is not a DNS name"),
        (["--name", "sip.test", "--ip", "fe80::1%eth0"], 2, "is not an IP address"),
        (["--name", "sip.test", "--ip", "nope"], 2, "is not an IP address"),
    ],
)
def test_tls_self_signed_refuses_bad_names(tmp_path: Path, args: list[str], code: int, message: str) -> None:
    result = invoke("tls", "self-signed", "--out", str(tmp_path / "t"), *args)
    assert result.exit_code == code and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "etc").exists()


def test_tls_self_signed_into_a_file_fails_cleanly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("tls", "self-signed", "--out", str(blocker), "--name", "sip.test")
    assert result.exit_code == 1 and "cannot write into" in result.output, result.output


def test_schema_into_a_directory_fails_cleanly(tmp_path: Path) -> None:
    result = invoke("schema", "--out", str(tmp_path))
    assert result.exit_code == 1 and "cannot write" in result.output, result.output


def test_permission_denied_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As root every file is readable, so the refusal is simulated where the reader opens the file."""
    import errno

    from orchestrator.config import files as files_mod

    path = tmp_path / "d.yaml"
    path.write_text(FS_ONLY)
    real_open = os.open

    def denied(p: object, *a: object, **k: object) -> int:
        if str(p) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(files_mod.os, "open", denied)
    _assert_one_clear_error(invoke("validate", str(path)), f"{path}: permission denied")
    other = tmp_path / "e.yaml"
    other.write_text(FS_ONLY)
    _assert_one_clear_error(invoke("validate", str(other), "--env-file", str(path)), "cannot read the env file")


def test_call_prints_what_it_is_given_literally(monkeypatch: pytest.MonkeyPatch) -> None:
    """`sipagent call` against an orchestrator answering odd values: shown as text, never markup, never a crash."""
    import http.server
    import json
    import threading

    class Api(http.server.BaseHTTPRequestHandler):
        def _send(self, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(201 if self.command == "POST" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send({"id": "[bold]c1[/x]", "progress": []})

        def do_GET(self) -> None:
            self._send({"progress": "[/]", "result": "busy [red]x[/]", "hangup": ["not", "a", "dict"]})

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SIPAGENT_API_TOKEN", "t")
    try:
        result = invoke(
            "call",
            "+15557654321[/x]",
            "--trunk",
            "[red]t[/]",
            "--agent",
            "a",
            "--api",
            f"http://127.0.0.1:{server.server_port}",
        )
    finally:
        server.shutdown()
    assert result.exit_code == 1, result.output
    assert "call [bold]c1[/x]: dialing +15557654321[/x] via [red]t[/]" in result.output
    assert "busy [red]x[/]" in result.output and "internal error" not in result.output
