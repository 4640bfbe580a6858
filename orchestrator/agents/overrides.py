"""Per-call agent overrides (first message, language, voice, prompt): the agent's, the number's, the call's.

Merge order, later wins field by field: the agent's ``overrides`` < the called number's
``agent_overrides`` (inbound calls to a configured number or block answered by that agent; the routing rule's
when a rule chose the agent) < the fork metadata's
``agent_overrides`` object (set per call, e.g. through the API). Each layer is validated by
:class:`~orchestrator.config.model.AgentOverrides`; an invalid metadata object is dropped whole with a
reason, the call goes on with the configured layers.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from orchestrator.config import routing
from orchestrator.config.model import AgentOverrides, Deployment

#: the most the metadata's agent_overrides object may hold (JSON text, before validation)
MAX_METADATA_OVERRIDES = 32 * 1024


def for_call(deployment: Deployment, agent: Any, metadata: dict[str, Any]) -> tuple[dict[str, str], str | None]:
    """``(overrides, problem)``: the merged overrides for this call, and why the metadata's were refused."""
    merged: dict[str, str] = {}
    if getattr(agent, "overrides", None) is not None:
        merged.update(agent.overrides.values())
    if metadata.get("direction") == "inbound":
        rule = metadata.get("route_rule")
        configured = routing.table(deployment).overrides(
            str(metadata.get("trunk") or ""),
            str(metadata.get("called_number") or ""),
            agent.name,
            rule if isinstance(rule, int) else None,
        )
        if configured is not None:
            merged.update(configured.values())
    problem = None
    given = metadata.get("agent_overrides")
    if given is not None:
        try:
            merged.update(from_metadata(given).values())
        except ValueError as exc:
            problem = str(exc)
    return merged, problem


def from_metadata(value: Any) -> AgentOverrides:
    """The metadata's ``agent_overrides`` object, validated; ValueError (one line) otherwise."""
    if not isinstance(value, dict):
        raise ValueError(f"agent_overrides is {type(value).__name__}, not an object")
    if sum(len(str(k)) + len(v) if isinstance(v, str) else 64 for k, v in value.items()) > MAX_METADATA_OVERRIDES:
        raise ValueError(f"agent_overrides is larger than {MAX_METADATA_OVERRIDES} characters")
    try:
        return AgentOverrides.model_validate(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "agent_overrides"
        raise ValueError(f"agent_overrides.{where}: {first.get('msg', 'invalid')}") from None
