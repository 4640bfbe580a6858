"""Load a changed configuration into running FreeSWITCH nodes over ESL, without dropping calls."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from orchestrator.esl.client import Endpoint, EslClient, EslError
from orchestrator.esl.protocol import CommandError
from orchestrator.render.reload import Step

_CALLS = re.compile(r"(\d+) total")


@dataclass
class NodeResult:
    """What happened on one node."""

    node: str
    calls_before: int | None = None
    calls_after: int | None = None
    done: list[tuple[Step, str]] = field(default_factory=list)  # (step, FreeSWITCH's reply)
    failed: list[tuple[Step, str]] = field(default_factory=list)
    error: str = ""  # the node could not be reached

    @property
    def ok(self) -> bool:
        """Every step succeeded."""
        return not self.failed and not self.error


def _failed(step: Step, reply: str) -> bool:
    if step.command.startswith("load ") and "Module already loaded" in reply:
        return False
    if " killgw " in step.command and "no such gateway" in reply:
        return False  # already gone: the rescan that follows adds the new definition
    return any(line.startswith(("-ERR", "-USAGE")) or line.startswith("Failure") for line in reply.splitlines())


async def _count(client: EslClient) -> int | None:
    match = _CALLS.search(await client.api("show channels count", check=False))
    return int(match.group(1)) if match else None


async def apply_to_node(endpoint: Endpoint, steps: list[Step], timeout: float = 10.0) -> NodeResult:
    """Run ``steps`` in order on one node; report calls in progress before and after."""
    result = NodeResult(endpoint.name)
    client = EslClient(endpoint, events=[], command_timeout=timeout)
    try:
        await client.start()
        await client.wait_connected(timeout)
        result.calls_before = await _count(client)
        for step in steps:
            reply = await client.api(step.command, check=False)
            (result.failed if _failed(step, reply) else result.done).append((step, reply.strip()))
        await asyncio.sleep(0.2)  # let a profile restart or a hang-up show in the count
        result.calls_after = await _count(client)
    except (EslError, CommandError, TimeoutError, OSError) as exc:
        result.error = str(exc) or type(exc).__name__
    finally:
        await client.stop()
    return result


async def apply_all(endpoints: list[Endpoint], steps: list[Step], timeout: float = 10.0) -> list[NodeResult]:
    """Every node, concurrently."""
    return list(await asyncio.gather(*(apply_to_node(ep, steps, timeout) for ep in endpoints)))
