"""Smoke run of bench/e2e.py: the whole ``sipagent run`` process, the simulator and the fake agents in their own
processes, a few calls per protocol over TLS. Asserts that it completes and every call had audio both ways; the
bench's timings are its own business (they are printed, never asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "e2e.py"


def test_quick_run_every_call_connects_its_agent_and_gets_audio_back(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    cmd = [sys.executable, str(BENCH), "--quick", "--tls", "--protocols", "elevenlabs,twilio", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = {r["protocol"]: r for r in json.loads(out.read_text())}
    assert set(results) == {"elevenlabs", "twilio"}
    for protocol, r in results.items():
        calls = r["calls"]
        assert calls > 0, protocol
        assert r["outcomes"] == {"completed": calls}, (protocol, r["outcomes"])
        assert r["calls_ok"] == calls, protocol  # frames to the agent and to the caller in every record
        assert r["calls_heard"] == calls, protocol  # the caller heard the agent's echo
        assert r["dropped"] == 0 and r["dropped_ms"] == 0, protocol
        assert r["agent_counts"][f"open_{protocol}"] == calls, (protocol, r["agent_counts"])
    assert results["elevenlabs"]["agent_counts"]["signed_url"] == results["elevenlabs"]["calls"]
    assert "signed_url_bad_key" not in results["elevenlabs"]["agent_counts"]
