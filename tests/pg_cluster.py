"""A throwaway PostgreSQL cluster for the store's tests: Debian's binaries, a temp directory, 127.0.0.1, a free port.

``initdb`` refuses to run as root: as root, every command runs as the ``postgres`` user (``runuser``); otherwise
as the current user. Host connections need a password (scram-sha-256), so the tests reach it as production would.
:func:`start` returns the cluster, or the reason it cannot (the tests skip with it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import asyncpg

USER = "sipagent"


def _bindir() -> Path | None:
    given = os.environ.get("SIPAGENT_PG_BIN")
    if given:
        return Path(given)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """One PostgreSQL server; :meth:`stop` and :meth:`start` again keep its data and port (an outage)."""

    def __init__(self, bindir: Path, root: Path, runas: list[str]) -> None:
        self.bindir, self.root, self.runas = bindir, root, runas
        self.data = root / "data"
        self.port = _free_port()
        self.password = "pw-" + secrets.token_hex(8)
        self._count = 0

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            [*self.runas, *args], capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )
        if done.returncode:
            log = (self.root / "log").read_text()[-2000:] if (self.root / "log").exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr[-2000:]} {log}")

    def init(self) -> None:
        pwfile = self.root / "pw"
        pwfile.write_text(self.password + "\n")
        self._own(pwfile)
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def _own(self, path: Path) -> None:
        if os.geteuid() == 0:
            pg = pwd.getpwnam("postgres")
            os.chown(path, pg.pw_uid, pg.pw_gid)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "30",
                  "-o", options, "start")  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, database: str, password: bool = True) -> str:
        secret = f":{self.password}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    async def new_database(self) -> str:
        """A fresh, empty database; its name."""
        self._count += 1
        name = f"t{self._count}_{secrets.token_hex(3)}"
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            await conn.execute(f"CREATE DATABASE {name}")
        finally:
            await conn.close()
        return name

    def destroy(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=30)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Cluster | str:
    """A running cluster, or why there cannot be one here."""
    bindir = _bindir()
    if bindir is None or not (bindir / "initdb").exists():
        return "no PostgreSQL binaries (/usr/lib/postgresql/*/bin/initdb): apt-get install postgresql"
    runas: list[str] = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root without a 'postgres' user to run initdb as"
        runner = shutil.which("runuser")
        if runner is None:
            return "running as root without runuser to run initdb as 'postgres'"
        runas = [runner, "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="sipagent-pg-"))
    cluster = Cluster(bindir, root, runas)
    try:
        cluster._own(root)
        cluster.init()
        cluster.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        cluster.destroy()
        return f"cannot start a PostgreSQL cluster: {str(exc)[:500]}"
    return cluster
