"""Constants shared by the tests."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "deployment.yaml"

#: Values for the example's ${VAR} references.
EXAMPLE_ENV = {
    "FREESWITCH_ESL_PASSWORD": "esl-secret",
    "CARRIER_SECURE_PASSWORD": "inbound-secret",
    "CARRIER_SECURE_OUT_PASSWORD": "outbound-secret",
    "ELEVENLABS_API_KEY": "xi-test-key",
    "SALES_AGENT_TOKEN": "sales-token",
    "SIPAGENT_MEDIA_SECRET": "media-secret",
    "SIPAGENT_API_TOKEN": "api-token",
}
