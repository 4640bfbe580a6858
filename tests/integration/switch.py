"""The FreeSWITCH the integration suite runs against: one suite, three ways to get one.

Picked from the environment, first match wins (``MODE``; ``SKIP_REASON`` says why none):

``FREESWITCH_ESL=host:port:password``
    an already running FreeSWITCH on this host's network (a process, or the host-networking compose stack),
    with its SIP ports in ``FREESWITCH_SIP_PORTS=tcp:tls`` (default ``5060:5061``) and its configuration
    directory (its ``-conf``, writable from here) in ``FREESWITCH_CONF_DIR``. Each test module renders its
    deployment there and loads it with ``sipagent apply --restart-profiles``: use a test switch.
``FREESWITCH_BIN``
    a FreeSWITCH 1.10 binary with mod_audio_fork, started per test module on the rendered deployment
    (``FREESWITCH_MOD_DIR`` if its modules are not in the compiled-in directory).
a Docker engine (testcontainers)
    the image ``FREESWITCH_IMAGE`` (default: the compose default) started per test module with host networking
    and the rendered tree mounted at the same path; ``FREESWITCH_IMAGE_BIN`` is the binary inside it.

Every peer the suite starts (sipp, the media bridge, fake agents, a sipp UAS) listens on 127.0.0.1, so the
switch must share this host's loopback. The media tests run each playback mode the loaded mod_audio_fork
supports (read from ``show api``, as ``sipagent doctor`` does); ``FREESWITCH_PLAYBACK=streaming|file`` picks one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import EXAMPLE_ENV

from orchestrator.esl import replies
from orchestrator.media import dialects

BIN = os.environ.get("FREESWITCH_BIN", "")
ESL = os.environ.get("FREESWITCH_ESL", "")
IMAGE = os.environ.get("FREESWITCH_IMAGE", "drachtio/drachtio-freeswitch-mrf:latest")
IMAGE_BIN = os.environ.get("FREESWITCH_IMAGE_BIN", "/usr/local/freeswitch/bin/freeswitch")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _docker_engine() -> str:
    """'' when a Docker engine answers and testcontainers is installed, else why not."""
    try:
        import docker
        import testcontainers  # noqa: F401
    except ImportError as exc:
        return f"testcontainers/docker not installed ({exc.name})"
    try:
        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
    except Exception as exc:  # any failure means "no engine here"
        return f"no Docker engine ({type(exc).__name__})"
    return ""


def choose(env: Mapping[str, str], engine: Callable[[], str] = _docker_engine) -> tuple[str | None, str]:
    """The way to get a switch from ``env`` (``running``, ``process``, ``container``), or None and why not."""
    if env.get("FREESWITCH_ESL"):
        host, port, password = [*env["FREESWITCH_ESL"].split(":", 2), "", ""][:3]
        if not port.isdigit() or not password:
            return None, "FREESWITCH_ESL must be host:port:password"
        if host not in LOOPBACK and not host.startswith("127."):
            return None, f"FREESWITCH_ESL host {host} is not on this host's loopback (the suite's peers listen there)"
        if not env.get("FREESWITCH_CONF_DIR"):
            return None, "FREESWITCH_ESL given: also set FREESWITCH_CONF_DIR to the switch's -conf directory"
        return "running", ""
    if env.get("FREESWITCH_BIN"):
        if os.access(env["FREESWITCH_BIN"], os.X_OK):
            return "process", ""
        return None, f"FREESWITCH_BIN={env['FREESWITCH_BIN']} is not an executable"
    why = engine()
    if not why:
        return "container", ""
    return None, (
        "real-FreeSWITCH test: set FREESWITCH_ESL=host:port:password (+ FREESWITCH_CONF_DIR, FREESWITCH_SIP_PORTS) "
        f"for a running one, FREESWITCH_BIN to start one, or run a Docker engine ({why})"
    )


MODE, SKIP_REASON = choose(os.environ)
requires_switch = [pytest.mark.freeswitch, pytest.mark.skipif(MODE is None, reason=SKIP_REASON)]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody listens on right now (TCP and UDP both free)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port


def suite_ports(*names: str) -> dict[str, int]:
    """The switch's ports (tcp, tls, esl: fixed for a running switch, free otherwise) and free ``names``."""
    ports = {name: free_port() for name in ("tcp", "tls", "esl", *names)}
    if MODE == "running":
        tcp, _, tls = os.environ.get("FREESWITCH_SIP_PORTS", "5060:5061").partition(":")
        ports.update(tcp=int(tcp), tls=int(tls), esl=int(ESL.split(":")[1]))
    return ports


def suite_env() -> dict[str, str]:
    """The environment the suite's deployments are validated with (the running switch's ESL password)."""
    if MODE == "running":
        return {**EXAMPLE_ENV, "FREESWITCH_ESL_PASSWORD": ESL.split(":", 2)[2]}
    return dict(EXAMPLE_ENV)


class EslError(Exception):
    """The event socket refused or failed."""


class Esl:
    """Just enough blocking ESL for tests: auth, api. (The orchestrator has its own client.)"""

    def __init__(self, host: str, port: int, password: str, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        headers, _ = self._read()
        if headers.get("Content-Type") != "auth/request":
            raise EslError(f"unexpected greeting {headers}")
        self.sock.sendall(f"auth {password}\n\n".encode())
        headers, _ = self._read()
        if not headers.get("Reply-Text", "").startswith("+OK"):
            raise EslError(f"auth failed: {headers}")

    def _read(self) -> tuple[dict[str, str], str]:
        while b"\n\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EslError("connection closed")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\n\n", 1)
        headers = {}
        for line in head.decode().splitlines():
            k, _, v = line.partition(": ")
            headers[k] = urllib.parse.unquote(v)
        length = int(headers.get("Content-Length", "0"))
        while len(self.buf) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EslError("connection closed")
            self.buf += chunk
        body, self.buf = self.buf[:length], self.buf[length:]
        return headers, body.decode()

    def api(self, command: str) -> str:
        self.sock.sendall(f"api {command}\n\n".encode())
        while True:
            headers, body = self._read()
            if headers.get("Content-Type") == "api/response":
                return body

    def close(self) -> None:
        self.sock.close()


@dataclass
class FreeSwitch:
    """The switch under test: its configuration directory, event socket and (when started here) process."""

    conf: Path
    esl_port: int
    esl_password: str
    esl_host: str = "127.0.0.1"
    log_dir: Path | None = None  # None: a running switch whose log is not ours to read
    proc: subprocess.Popen | None = None
    container: Any = None
    notes: list[str] = field(default_factory=list)

    @property
    def log_file(self) -> Path | None:
        return self.log_dir / "freeswitch.log" if self.log_dir else None

    def esl(self) -> Esl:
        return Esl(self.esl_host, self.esl_port, self.esl_password)

    def api(self, command: str) -> str:
        conn = self.esl()
        try:
            return conn.api(command)
        finally:
            conn.close()

    @property
    def playback_modes(self) -> tuple[str, ...]:
        """How the loaded mod_audio_fork can play agent audio (``FREESWITCH_PLAYBACK`` narrows it to one)."""
        row = None
        for _ in range(10):  # `show api` reads the core database, filled in the background after a start
            row = replies.api_row(self.api("show api uuid_audio_fork"), "uuid_audio_fork")
            if row or self.api("module_exists mod_audio_fork").strip() != "true":
                break
            time.sleep(0.3)
        modes = dialects.playback_modes(row) if row else ()
        chosen = os.environ.get("FREESWITCH_PLAYBACK")
        return tuple(m for m in modes if m == chosen) if chosen else modes

    def wait_ready(self, timeout: float, output: Path | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = output.read_text(errors="replace")[-3000:] if output else ""
                raise RuntimeError(f"FreeSWITCH exited with {self.proc.returncode}: {tail}")
            try:
                if "is ready" in self.api("status"):
                    return
            except (OSError, EslError):
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("FreeSWITCH did not become ready in time")

    def stop(self) -> None:
        """Stop what was started here; on a running switch, hang up what the tests left."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError, EslError):
                self.api("fsctl shutdown")
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elif self.container is not None:
            with contextlib.suppress(OSError, EslError):
                self.api("fsctl shutdown")
            self.container.stop()
        elif MODE == "running":
            with contextlib.suppress(OSError, EslError):
                self.api("hupall NORMAL_CLEARING")


def _dirs(root: Path) -> list[str]:
    args = []
    for name in ("log", "db", "run", "temp", "storage", "cache", "recordings", "sounds", "certs", "scripts"):
        (root / name).mkdir(parents=True, exist_ok=True)
        args += [f"-{name}", str(root / name)]
    return args


def start_process(
    binary: str, conf: Path, root: Path, esl_port: int, esl_password: str, mod_dir: Path | None = None
) -> FreeSwitch:
    """Start FreeSWITCH in the foreground on ``conf``; wait until the core is ready."""
    cmd = [binary, "-nonat", "-nf", "-nc", "-conf", str(conf), *_dirs(root)]
    mods = str(mod_dir) if mod_dir else os.environ.get("FREESWITCH_MOD_DIR")
    if mods:
        cmd += ["-mod", mods]
    stdout = open(root / "stdout.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    fs = FreeSwitch(conf, esl_port, esl_password, log_dir=root / "log", proc=proc)
    fs.wait_ready(60, root / "stdout.log")
    return fs


def container_for(conf: Path, root: Path) -> Any:
    """``FREESWITCH_IMAGE`` set up to run FreeSWITCH on ``conf`` with host networking, ``conf`` and ``root``
    (logs, db, …) mounted at the same paths, so the rendered tree and the suite's files agree."""
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(IMAGE)
    for path in sorted({conf.resolve(), root.resolve()}):
        container.with_volume_mapping(str(path), str(path), "rw")
    container.with_kwargs(network_mode="host", entrypoint=[IMAGE_BIN])
    container.with_command(["-nonat", "-nf", "-nc", "-conf", str(conf.resolve()), *_dirs(root.resolve())])
    return container


def start_container(conf: Path, root: Path, esl_port: int, esl_password: str) -> FreeSwitch:
    """Start ``FREESWITCH_IMAGE`` on ``conf`` (see :func:`container_for`); wait until the core is ready."""
    container = container_for(conf, root)
    container.start()
    fs = FreeSwitch(conf, esl_port, esl_password, log_dir=root / "log", container=container)
    fs.wait_ready(90)
    return fs


def load_into_running(deployment_file: Path, env: dict[str, str], work: Path) -> FreeSwitch:
    """Render ``deployment_file`` into ``FREESWITCH_CONF_DIR`` and load it into the running switch."""
    from typer.testing import CliRunner

    from orchestrator.cli import app

    conf = Path(os.environ["FREESWITCH_CONF_DIR"])
    env_file = work / "suite.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    env_file.chmod(0o600)
    args = ["apply", str(deployment_file), "--env-file", str(env_file), "--conf-dir", str(conf)]
    result = CliRunner().invoke(app, [*args, "--restart-profiles", "--force"])
    assert result.exit_code == 0, result.output
    host, port, password = ESL.split(":", 2)
    # apply waited for restarted profiles to be RUNNING again (or failed above, saying which)
    print("".join(line + "\n" for line in result.output.splitlines() if "RUNNING after" in line), end="")
    return FreeSwitch(conf, int(port), password, esl_host=host, notes=[result.output])
