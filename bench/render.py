"""Render a large deployment (default 10,000 numbers on 1,000 trunks) and print time and memory.

    python bench/render.py [--numbers 10000] [--trunks 1000] [--repeat 3]

Prints the time of each stage (parse + validate, plan + render, atomic write), peak Python memory
(tracemalloc) and the process's peak RSS, then the total against a reference run in the same
process: libyaml's ``yaml.load`` of the same file (just reading it, no validation). Goal: total < 1 s.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, not an installed one

from orchestrator.config import check_file
from orchestrator.config.selfsigned import generate
from orchestrator.render import render_deployment, write_tree


def make_deployment(root: Path, numbers: int, trunks: int) -> Path:
    """A deployment with half digest/TLS trunks and half ACL/TCP trunks."""
    generate(root / "tls", ["sip.example.com"])
    lines = [
        "version: 1",
        "freeswitch:",
        "  bind_ip: 10.0.0.10",
        "  ext_sip_ip: 203.0.113.10",
        "  ext_rtp_ip: 203.0.113.10",
        "  max_calls: 5000",
        "  rtp_ports: {start: 16384, end: 32767}",
        "  event_socket: {password: '${ESL_PASSWORD}'}",
        "transports:",
        "  tcp: {port: 5060}",
        "  tls: {port: 5061, certificate: tls/sip.example.com.crt, private_key: tls/sip.example.com.key,"
        " ca_bundle: tls/ca.crt}",
        "trunks:",
    ]
    for t in range(trunks):
        if t % 2:
            a, b = divmod(t, 256)
            lines += [
                f"  - name: acl-{t}",
                "    inbound:",
                "      transports: [tcp]",
                f"      auth: {{acl: [10.{100 + a // 256}.{a % 256}.{b}/32]}}",
                "      media_encryption: disabled",
                "      headers: [X-Customer-Id]",
                f"    outbound: {{address: 10.200.{t // 256}.{t % 256}, transport: tcp}}",
            ]
        else:
            lines += [
                f"  - name: digest-{t}",
                "    inbound:",
                "      transports: [tls]",
                f"      auth: {{digest: {{username: user-{t}, password: '${{TRUNK_PASSWORD}}'}}}}",
                "      media_encryption: required",
                f"    outbound: {{address: sbc{t}.carrier.example, transport: tls,"
                f" auth: {{username: out-{t}, password: '${{TRUNK_PASSWORD}}'}}}}",
            ]
    lines.append("numbers:")
    names = [f"acl-{t}" if t % 2 else f"digest-{t}" for t in range(trunks)]
    for n in range(numbers):
        lines.append(f"  - {{number: '+1555{n:07d}', trunk: {names[n % trunks]}, agent: agent-{n % 10}}}")
    lines.append("agents:")
    for a in range(10):
        lines.append(f"  - {{name: agent-{a}, protocol: raw, url: 'ws://127.0.0.1:9000/{a}'}}")
    path = root / "deployment.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_once(path: Path, out: Path, env: dict[str, str]) -> tuple[float, float, float, int]:
    t0 = time.perf_counter()
    result = check_file(path, env)
    if result.deployment is None:
        sys.exit("benchmark deployment is invalid:\n" + "\n".join(str(d) for d in result.errors[:10]))
    t1 = time.perf_counter()
    files = render_deployment(result.deployment, result.base_dir)
    t2 = time.perf_counter()
    write_tree(files, out)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, sum(len(f.content) for f in files.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--numbers", type=int, default=10_000)
    parser.add_argument("--trunks", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    env = {"ESL_PASSWORD": "bench-esl", "TRUNK_PASSWORD": "bench-trunk"}

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = make_deployment(root, args.numbers, args.trunks)
        size = path.stat().st_size
        stages = []
        for _ in range(args.repeat):
            stages.append(run_once(path, root / "conf", env))
        load, rend, write, out_bytes = (statistics.median(s[i] for s in stages) for i in range(4))
        total = load + rend + write

        reference = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
            reference.append(time.perf_counter() - t0)
        ref = statistics.median(reference)

        tracemalloc.start()
        run_once(path, root / "conf", env)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"deployment: {args.numbers} numbers, {args.trunks} trunks, {size / 1e6:.2f} MB of YAML")
    print(f"rendered: {int(out_bytes) / 1e6:.2f} MB of configuration")
    print(f"parse + validate: {load:.3f} s")
    print(f"plan + render:    {rend:.3f} s")
    print(f"atomic write:     {write:.3f} s")
    print(f"total:            {total:.3f} s (goal < 1 s: {'met' if total < 1 else 'NOT met'})")
    print(f"peak Python memory (tracemalloc): {peak / 1e6:.1f} MB; peak RSS: {rss_mb:.1f} MB")
    print(f"reference: plain yaml.load (libyaml, CSafeLoader) of the same file: {ref:.3f} s")
    print(f"ratio total/reference {total / ref:.1f}x")


if __name__ == "__main__":
    main()
