"""Agent protocols: what the bridge says to a voice agent and what the agent asks of the call."""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.agents.base import AgentProtocol, CallInfo
from orchestrator.agents.elevenlabs import ElevenLabsProtocol
from orchestrator.agents.raw import RawProtocol
from orchestrator.agents.twilio import TwilioProtocol
from orchestrator.config.model import ElevenLabsAgent, RawAgent, TwilioAgent

__all__ = ["AgentProtocol", "CallInfo", "ElevenLabsProtocol", "RawProtocol", "TwilioProtocol", "create"]


def create(
    call: CallInfo, agent: ElevenLabsAgent | TwilioAgent | RawAgent, overrides: Mapping[str, str] | None = None
) -> AgentProtocol:
    """The adapter for one call with the configured agent (``overrides``: ElevenLabs only)."""
    if isinstance(agent, ElevenLabsAgent):
        return ElevenLabsProtocol(call, agent, overrides)
    if isinstance(agent, TwilioAgent):
        return TwilioProtocol(call, agent)
    if isinstance(agent, RawAgent):
        return RawProtocol(call, agent)
    raise TypeError(f"no protocol adapter for {type(agent).__name__}")
