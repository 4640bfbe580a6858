"""How much signaling one Kamailio edge carries: calls per second through the rendered edge, CPU per call.

    python bench/edge.py [--rates 50,100,200] [--seconds 10] [--nodes 2] [--hold-ms 1000]

Processes, on loopback: the edge — Kamailio 5.6 on the configuration ``sipagent render`` writes for a deployment
with ``--nodes`` nodes (ACL trunk, TCP, weighted dispatch, OPTIONS probes every second); the nodes — sipp UASs
answering INVITE 200 and BYE 200 (``-aa`` answers the probes); the carrier — a sipp UAC from 127.0.0.3 placing
``rate`` calls a second for ``--seconds`` seconds, each hung up by the carrier after ``--hold-ms`` (INVITE, 100,
200, ACK, BYE, 200 through the edge: 6 messages relayed, Record-Route both ways).

Printed per rate: calls placed and completed, failed, the edge's CPU (utime+stime of all its processes over the
run, % of one core) and CPU per call, and — the reference in the same run — the carrier sipp's own CPU per call
(a SIP stack that builds and parses the same messages once). Figures, not assertions: a 2-core machine shares
its cores between the edge, two to four sipps and this script.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestrator.config import check_text  # noqa: E402
from orchestrator.render import render_all, write_tree  # noqa: E402

KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
CLK = os.sysconf("SC_CLK_TCK")

UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="carrier">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+15550001234@[local_ip]:[local_port]>;tag=[pid]T[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:c@[local_ip]:[local_port];transport=[transport]>
Max-Forwards: 70
Content-Length: 0
]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+15550001234@[local_ip]:[local_port]>;tag=[pid]T[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
[routes]
Max-Forwards: 70
Content-Length: 0
]]></send>
  <pause milliseconds="HOLD"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+15550001234@[local_ip]:[local_port]>;tag=[pid]T[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
[routes]
Max-Forwards: 70
Content-Length: 0
]]></send>
  <recv response="200"/>
</scenario>
"""

UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="node">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_Record-Route:]
[last_From:]
[last_To:];tag=[pid]N[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:node@[local_ip]:[local_port];transport=tcp>
Content-Length: 0
]]></send>
  <recv request="ACK"/>
  <recv request="BYE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
]]></send>
</scenario>
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def deployment_text(public: int, internal: int, nodes: list[int], rpc: Path) -> str:
    node_lines = "".join(
        f"    - {{name: n{i}, sip_ip: 127.0.0.1, sip_port: {port}, rtp_ports: {{start: {20000 + 400 * i}, "
        f"end: {20200 + 400 * i}}}, esl: {{port: {9000 + i}}}}}\n"
        for i, port in enumerate(nodes)
    )
    return f"""
freeswitch: {{bind_ip: 127.0.0.1, event_socket: {{password: bench}}}}
transports: {{tcp: {{port: {public}}}}}
edge:
  host: sip.bench
  addresses: [127.0.0.1]
  internal_port: {internal}
  rpc_socket: {rpc}
  dispatch: {{probe_seconds: 1}}
  nodes:
{node_lines}trunks:
  - {{name: carrier, inbound: {{transports: [tcp], auth: {{acl: [127.0.0.3/32]}}}}}}
numbers: [{{number: "+15550000001", trunk: carrier, agent: a}}]
agents: [{{name: a, protocol: raw, url: "ws://127.0.0.1:9/a"}}]
"""


def group_cpu(pgid: int) -> float:
    """utime+stime (s) of every live process in a process group."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 (pgrp), counted after the ")"
            total += int(fields[11]) + int(fields[12])
    return total / CLK


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def run_rate(rate: int, seconds: float, n_nodes: int, hold_ms: int) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    public, internal = free_port(), free_port()
    node_ports = [free_port() for _ in range(n_nodes)]
    text = deployment_text(public, internal, node_ports, work / "rpc.sock")
    result = check_text(text, "bench.yaml", {}, work)
    assert result.deployment is not None, [str(d) for d in result.errors]
    write_tree(render_all(result.deployment, work, work / "out" / "kamailio"), work / "out")
    (work / "uac.xml").write_text(UAC.replace("HOLD", str(hold_ms)))
    (work / "uas.xml").write_text(UAS)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for port in node_ports:
            procs.append(
                subprocess.Popen(
                    ["sipp", "-sf", str(work / "uas.xml"), "-t", "t1", "-i", "127.0.0.1", "-p", str(port), "-aa",
                     "-nostdin", "-trace_err", "-error_file", str(work / f"uas{port}.err")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work, start_new_session=True,
                )
            )  # fmt: skip
        with (work / "kamailio.log").open("wb") as log:
            kam = subprocess.Popen(
                [KAMAILIO, "-f", str(work / "out" / "kamailio" / "kamailio.cfg"), "-DD", "-E", "-w", str(work),
                 "-m", "128", "-M", "16"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        procs.append(kam)
        time.sleep(3)  # listeners up, nodes probed active
        calls = int(rate * seconds)
        k0 = group_cpu(kam.pid)
        t0 = time.monotonic()
        uac = subprocess.Popen(
            ["sipp", "-sf", str(work / "uac.xml"), f"127.0.0.1:{public}", "-s", "+15550000001", "-t", "t1",
             "-i", "127.0.0.3", "-p", str(free_port()), "-r", str(rate), "-m", str(calls), "-l", str(calls),
             "-nostdin", "-timeout", f"{int(seconds + hold_ms / 1000 + 30)}s", "-trace_stat", "-stf",
             str(work / "uac.csv")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work, start_new_session=True,
        )  # fmt: skip
        u_cpu = 0.0
        while uac.poll() is None:
            try:
                u_cpu = proc_cpu(uac.pid)
            except OSError:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - t0
        k1 = group_cpu(kam.pid)
        ok, failed = _sipp_counts(work / "uac.csv")
        return {
            "rate": rate,
            "calls": calls,
            "ok": ok,
            "failed": failed,
            "elapsed": elapsed,
            "edge_cpu_pct": 100 * (k1 - k0) / elapsed,
            "edge_ms_per_call": 1000 * (k1 - k0) / max(1, ok),
            "sipp_ms_per_call": 1000 * u_cpu / max(1, ok),
        }
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


def _sipp_counts(csv: Path) -> tuple[int, int]:
    """Successful and failed calls from sipp's last statistics line."""
    lines = [line for line in csv.read_text().splitlines() if line.strip()] if csv.exists() else []
    if len(lines) < 2:
        return 0, 0
    head, last = lines[0].split(";"), lines[-1].split(";")
    row = dict(zip(head, last, strict=False))
    return int(row.get("SuccessfulCall(C)", 0)), int(row.get("FailedCall(C)", 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="50,100,200", help="calls per second, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--hold-ms", type=int, default=1000)
    args = parser.parse_args()
    if not (shutil.which("sipp") and Path(KAMAILIO).exists()):
        sys.exit("needs sipp (sip-tester) and kamailio")
    print(f"cpus={os.cpu_count()} nodes={args.nodes} seconds={args.seconds} hold={args.hold_ms} ms")
    print(f"{'cps':>5} {'calls':>6} {'ok':>6} {'failed':>6} {'edge %core':>10} {'edge ms/call':>12} "
          f"{'sipp ms/call':>12} {'ratio':>6} {'calls/s per core':>16}")  # fmt: skip
    for rate in (int(r) for r in args.rates.split(",")):
        r = run_rate(rate, args.seconds, args.nodes, args.hold_ms)
        per_core = 1000 / r["edge_ms_per_call"] if r["edge_ms_per_call"] else float("inf")
        ratio = r["edge_ms_per_call"] / r["sipp_ms_per_call"] if r["sipp_ms_per_call"] else float("nan")
        print(
            f"{r['rate']:>5} {r['calls']:>6} {r['ok']:>6} {r['failed']:>6} {r['edge_cpu_pct']:>10.1f} "
            f"{r['edge_ms_per_call']:>12.3f} {r['sipp_ms_per_call']:>12.3f} {ratio:>6.2f} {per_core:>16.0f}"
        )


if __name__ == "__main__":
    main()
