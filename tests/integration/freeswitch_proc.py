"""Start a real FreeSWITCH on a rendered tree (loopback only) and talk to it over ESL.

Only *uses* an installed FreeSWITCH: ``FREESWITCH_BIN`` points at the binary,
``FREESWITCH_MOD_DIR`` optionally at its modules directory.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path


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


class EslError(Exception):
    """The event socket refused or failed."""


class Esl:
    """Just enough blocking ESL for tests: auth, api. (The orchestrator has its own client.)"""

    def __init__(self, port: int, password: str, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
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
    """A running FreeSWITCH process and its directories."""

    proc: subprocess.Popen
    root: Path
    esl_port: int
    esl_password: str

    @property
    def log_file(self) -> Path:
        return self.root / "log" / "freeswitch.log"

    def esl(self) -> Esl:
        return Esl(self.esl_port, self.esl_password)

    def api(self, command: str) -> str:
        conn = self.esl()
        try:
            return conn.api(command)
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, EslError):
                self.api("fsctl shutdown")
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start(
    binary: str,
    conf: Path,
    root: Path,
    esl_port: int,
    esl_password: str,
    timeout: float = 60,
    mod_dir: Path | None = None,
) -> FreeSwitch:
    """Start FreeSWITCH in the foreground on ``conf``; wait until the core is ready and profiles loaded."""
    dirs = {}
    for name in ("log", "db", "run", "temp", "storage", "cache", "recordings", "sounds", "certs", "scripts"):
        dirs[name] = root / name
        dirs[name].mkdir(parents=True, exist_ok=True)
    cmd = [binary, "-nonat", "-nf", "-nc", "-conf", str(conf)]
    for name, path in dirs.items():
        cmd += [f"-{name}", str(path)]
    mods = str(mod_dir) if mod_dir else os.environ.get("FREESWITCH_MOD_DIR")
    if mods:
        cmd += ["-mod", mods]
    stdout = open(root / "stdout.log", "wb")  # noqa: SIM115 - lives as long as the process
    proc = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    fs = FreeSwitch(proc, root, esl_port, esl_password)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"FreeSWITCH exited with {proc.returncode}: {(root / 'stdout.log').read_text()[-3000:]}")
        try:
            if "is ready" in fs.api("status"):
                return fs
        except (OSError, EslError):
            pass
        time.sleep(0.3)
    fs.stop()
    raise RuntimeError("FreeSWITCH did not become ready in time")
