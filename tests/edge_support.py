"""Helpers for the Kamailio edge tests: deployments, a Kamailio started from a render, sipp carriers and nodes.

Everything listens on 127.0.0.x with free ports; processes are stopped by their own pid.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from orchestrator.config import Deployment, check_text
from orchestrator.render.kamailio import render
from orchestrator.render.output import write_tree

KAMAILIO = shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)
SIPP = shutil.which("sipp")
SIPP_DIR = Path(__file__).parent / "sipp"
ENV = {"ESL_PASSWORD": "esl-pass", "CARRIER_PASSWORD": "s3cret-Pa55"}


def free_port(host: str = "127.0.0.1", kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing listens on right now (TCP and UDP both free)."""
    while True:
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        other = socket.SOCK_DGRAM if kind == socket.SOCK_STREAM else socket.SOCK_STREAM
        with socket.socket(socket.AF_INET, other) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port


def deployment(base_dir: Path, text: str, env: dict[str, str] | None = None) -> Deployment:
    """A validated deployment from YAML text (``freeswitch``, ``agents`` and ``version`` are added)."""
    head = textwrap.dedent(
        """\
        version: 1
        freeswitch:
          bind_ip: 127.0.0.1
          sip_domain: sip.test
          event_socket: {password: "${ESL_PASSWORD}"}
        agents:
          - {name: support, protocol: raw, url: "ws://127.0.0.1:9000/agent"}
        """
    )
    result = check_text(head + textwrap.dedent(text), "deploy.yaml", ENV if env is None else env, base_dir)
    assert result.deployment is not None, [str(d) for d in result.errors]
    return result.deployment


# -- Kamailio -------------------------------------------------------------------------------------------


class Kamailio:
    """Kamailio in the foreground (``-DD -E``) from a render into ``directory`` (which is also its conf_dir)."""

    def __init__(self, directory: Path, dep: Deployment, base_dir: Path) -> None:
        self.dir = directory
        self.conf = directory / "conf"
        write_tree(render(dep, base_dir, self.conf), self.conf)
        assert dep.edge is not None
        self.rpc_socket = dep.edge.rpc_socket
        self.log_path = directory / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_for: tuple[str, int]) -> None:
        """Start and wait until ``wait_for`` (host, TCP port) accepts and the RPC socket answers."""
        assert KAMAILIO is not None
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [KAMAILIO, "-f", str(self.conf / "kamailio.cfg"), "-DD", "-E", "-w", str(self.dir), "-m", "64", "-M", "8"],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited {self.proc.returncode}:\n{self.log()[-4000:]}")
            try:
                with socket.create_connection(wait_for, timeout=0.5):
                    pass
                self.rpc("core.version")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"kamailio did not come up:\n{self.log()[-4000:]}") from None
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop this Kamailio (its own process group: the main process and its children)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def log(self) -> str:
        """Everything Kamailio logged."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rpc(self, method: str, *params: object) -> object:
        """A JSON-RPC call over the jsonrpcs datagram socket; the result (RuntimeError for an error)."""
        d = tempfile.mkdtemp(prefix="rpc-")
        me = os.path.join(d, "c.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            s.bind(me)
            s.settimeout(3)
            request = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
            s.sendto(json.dumps(request).encode(), self.rpc_socket)
            answer = json.loads(s.recv(1 << 20))
        finally:
            s.close()
            shutil.rmtree(d, ignore_errors=True)
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer.get("result")

    def node_flags(self) -> dict[str, str]:
        """Each node's dispatcher state (duid → flags such as ``AP``, ``IP``, ``TP``)."""
        result = self.rpc("dispatcher.list")
        assert isinstance(result, dict)
        flags = {}
        for record in result["RECORDS"]:
            for target in record["SET"]["TARGETS"]:
                dest = target["DEST"]
                flags[dest["ATTRS"]["DUID"]] = dest["FLAGS"]
        return flags

    def wait_flags(self, node: str, first: str, timeout: float = 10.0) -> None:
        """Wait until ``node``'s state letter is ``first`` (A active, I inactive, T trying)."""
        deadline = time.monotonic() + timeout
        while True:
            flags = self.node_flags()
            if flags[node].startswith(first):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"node {node} is {flags[node]}, not {first}: {flags}")
            time.sleep(0.1)


# -- sipp -----------------------------------------------------------------------------------------------


@dataclass
class SipMessage:
    """A message sipp sent or received."""

    direction: str  # "received" or "sent"
    text: str

    @property
    def first_line(self) -> str:
        """Request or status line."""
        return self.text.split("\r\n", 1)[0].split("\n", 1)[0].strip()

    @property
    def method(self) -> str | None:
        """Request method, or None for a response."""
        line = self.first_line
        return None if line.startswith("SIP/2.0") else line.split(" ", 1)[0]

    def headers(self, name: str) -> list[str]:
        """Values of every header named ``name`` (case-insensitive), in order."""
        out = []
        for line in self.text.replace("\r\n", "\n").split("\n\n", 1)[0].split("\n")[1:]:
            key, sep, value = line.partition(":")
            if sep and key.strip().lower() == name.lower():
                out.append(value.strip())
        return out

    def header(self, name: str) -> str | None:
        """The first value of a header, or None."""
        values = self.headers(name)
        return values[0] if values else None


def read_messages(path: Path) -> list[SipMessage]:
    """Parse a sipp ``-trace_msg`` file."""
    if not path.exists():
        return []
    out = []
    for block in path.read_text(errors="replace").split("----------------------------------------------- ")[1:]:
        lines = block.split("\n")
        # lines[0]: timestamp; lines[1]: "TCP message received [n] bytes :" ; then a blank line, then the message
        if len(lines) < 3:
            continue
        what = lines[1]
        direction = "received" if "received" in what else "sent" if "sent" in what else ""
        if not direction:
            continue
        text = "\n".join(lines[2:]).strip("\n") + "\n"
        out.append(SipMessage(direction, text.replace("\n", "\r\n")))
    return out


class SippNode:
    """A sipp UAS playing a FreeSWITCH node on 127.0.0.1:port (answers OPTIONS by itself with ``-aa``)."""

    def __init__(self, name: str, port: int, directory: Path, ip: str = "127.0.0.1") -> None:
        self.name = name
        self.port = port
        self.ip = ip
        self.dir = directory / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.scenario = ""

    @property
    def trace(self) -> Path:
        return self.dir / f"messages-{self.runs}.log"

    def start(self, scenario: str = "node.xml") -> None:
        """Start (or restart) with a scenario from tests/sipp/ and wait until it accepts connections."""
        assert SIPP is not None
        self.stop()
        self.runs += 1
        self.scenario = scenario
        cmd = [
            SIPP,
            "-sf",
            str(SIPP_DIR / scenario),
            "-t",
            "t1",
            "-i",
            self.ip,
            "-p",
            str(self.port),
            "-aa",
            "-nostdin",
            "-trace_msg",
            "-message_file",
            str(self.trace),
            "-trace_err",
            "-error_file",
            str(self.dir / f"errors-{self.runs}.log"),
            "-max_socket",
            "200",
        ]
        out = (self.dir / f"stdout-{self.runs}.log").open("wb")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir)
        out.close()
        deadline = time.monotonic() + 5
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sipp node {self.name} exited {self.proc.returncode}")
            try:
                with socket.create_connection((self.ip, self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"sipp node {self.name} does not listen on {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop this sipp (by its pid)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def messages(self) -> list[SipMessage]:
        """Everything the current run exchanged."""
        return read_messages(self.trace)

    def received(self, method: str, since: int = 0) -> list[SipMessage]:
        """Requests of ``method`` the current run received, after the first ``since`` messages."""
        return [m for m in self.messages()[since:] if m.direction == "received" and m.method == method]

    def mark(self) -> int:
        """How many messages the current run has exchanged so far (for ``received(..., since=)``)."""
        return len(self.messages())

    def call_ids(self, method: str, since: int = 0) -> set[str]:
        """Call-IDs of the ``method`` requests the current run received."""
        return {m.header("Call-ID") or "" for m in self.received(method, since)}


@dataclass
class SippResult:
    """The outcome of a sipp UAC run."""

    returncode: int
    messages: list[SipMessage]
    output: str

    def sent(self, method: str) -> list[SipMessage]:
        """Requests of ``method`` sipp sent."""
        return [m for m in self.messages if m.direction == "sent" and m.method == method]

    def responses(self) -> list[SipMessage]:
        """Responses sipp received."""
        return [m for m in self.messages if m.direction == "received" and m.method is None]


def run_uac(
    scenario: str,
    target: tuple[str, int],
    directory: Path,
    *,
    source_ip: str = "127.0.0.1",
    calls: int = 1,
    rate: int = 10,
    limit: int = 20,
    service: str = "+15550000001",
    extra: list[str] | None = None,
    timeout: float = 30.0,
) -> SippResult:
    """Run a sipp UAC scenario from tests/sipp/ against the edge over TCP; wait for it to finish."""
    assert SIPP is not None
    directory.mkdir(parents=True, exist_ok=True)
    trace = directory / f"uac-{uuid.uuid4().hex[:8]}.log"
    cmd = [
        SIPP,
        f"{target[0]}:{target[1]}",
        "-sf",
        str(SIPP_DIR / scenario),
        "-t",
        "t1",
        "-i",
        source_ip,
        "-p",
        str(free_port(source_ip)),
        "-s",
        service,
        "-m",
        str(calls),
        "-r",
        str(rate),
        "-l",
        str(limit),
        "-nostdin",
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-recv_timeout",
        "8000",
        "-trace_msg",
        "-message_file",
        str(trace),
        *(extra or []),
    ]
    proc = subprocess.run(
        cmd, capture_output=True, stdin=subprocess.DEVNULL, cwd=directory, timeout=timeout + 15, check=False
    )
    return SippResult(proc.returncode, read_messages(trace), (proc.stdout + proc.stderr).decode(errors="replace"))


# -- raw SIP over TCP / TLS -----------------------------------------------------------------------------


def sip_request(
    sock: socket.socket,
    method: str = "INVITE",
    *,
    ruri: str = "sip:+15550000001@127.0.0.1",
    headers: dict[str, str] | None = None,
    to_tag: str | None = None,
    transport: str = "TCP",
    timeout: float = 8.0,
) -> list[str]:
    """Send one request on a connected (TLS or TCP) socket; the status lines received until a final one."""
    local_ip, local_port = sock.getsockname()[:2]
    call_id = uuid.uuid4().hex
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {local_ip}:{local_port};branch=z9hG4bK{call_id[:16]};rport",
        f"From: <sip:test@{local_ip}>;tag={call_id[:8]}",
        f"To: <{ruri}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:test@{local_ip}:{local_port};transport={transport.lower()}>",
        "Max-Forwards: 70",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
        "Content-Length: 0",
    ]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sock.settimeout(timeout)
    statuses: list[str] = []
    buf = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while b"\r\n\r\n" in buf:
            head, _, buf = buf.partition(b"\r\n\r\n")
            text = head.decode(errors="replace")
            length = next(
                (
                    int(v)
                    for k, _, v in (h.partition(":") for h in text.split("\r\n"))
                    if k.strip().lower() in ("content-length", "l")
                ),
                0,
            )
            buf = buf[length:]
            first = text.split("\r\n", 1)[0]
            if first.startswith("SIP/2.0"):
                statuses.append(first)
                if int(first.split()[1]) >= 200:
                    return statuses
        try:
            data = sock.recv(65536)
        except (TimeoutError, ssl.SSLError, ConnectionError):
            break
        if not data:
            break
        buf += data
    return statuses


def tcp_connect(target: tuple[str, int], source_ip: str = "127.0.0.1") -> socket.socket:
    """A TCP connection to ``target`` from ``source_ip``."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((source_ip, 0))
    s.connect(target)
    return s


def status_codes(lines: list[str]) -> list[int]:
    """Codes of status lines."""
    return [int(line.split()[1]) for line in lines]


def wait_until(predicate: object, timeout: float = 10.0, step: float = 0.1) -> bool:
    """Poll ``predicate()`` until true or timeout; the last value."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while True:
        value = bool(predicate())
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def close_all(items: Iterator[SippNode] | list[SippNode]) -> None:
    """Stop every sipp node."""
    for item in items:
        item.stop()
