"""bench/edge.py runs and prints its figures (a smoke test: a few calls through a real Kamailio edge)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
KAMAILIO = shutil.which("kamailio") or ("/usr/sbin/kamailio" if Path("/usr/sbin/kamailio").exists() else None)


@pytest.mark.skipif(KAMAILIO is None or shutil.which("sipp") is None, reason="needs kamailio and sipp")
def test_bench_edge_places_calls_through_the_edge_and_prints_figures() -> None:
    result = subprocess.run(
        [sys.executable, "bench/edge.py", "--rates", "20", "--seconds", "2", "--hold-ms", "200"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    row = result.stdout.strip().splitlines()[-1].split()
    rate, calls, ok, failed = (int(v) for v in row[:4])
    assert (rate, calls, ok, failed) == (20, 40, 40, 0), result.stdout
    assert float(row[5]) > 0  # the edge's CPU per call was measured
