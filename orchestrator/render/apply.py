"""Load a changed configuration into running FreeSWITCH nodes over ESL, without dropping calls."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

from orchestrator.esl import replies
from orchestrator.esl.client import Endpoint, EslClient, EslError
from orchestrator.esl.protocol import CommandError
from orchestrator.render.reload import Step

# `status`: "3 session(s) - peak 4, last 5min 4" counts live sessions in memory; `show channels count` reads
# the core database, which lags (seen at 0 while a call was up, on 1.10.12)
_SESSIONS = re.compile(r"^(\d+) session\(s\) - peak", re.M)
_PROFILE_STEP = re.compile(r"^sofia profile (\S+) (restart|start)$")


@dataclass
class NodeResult:
    """What happened on one node."""

    node: str
    calls_before: int | None = None
    calls_after: int | None = None
    done: list[tuple[Step, str]] = field(default_factory=list)  # (step, FreeSWITCH's reply)
    failed: list[tuple[Step, str]] = field(default_factory=list)
    error: str = ""  # the node could not be reached
    profiles_up: dict[str, float] = field(default_factory=dict)  # (re)started profile → seconds until RUNNING

    @property
    def ok(self) -> bool:
        """Every step succeeded."""
        return not self.failed and not self.error


def _failed(step: Step, reply: str) -> bool:
    if step.command.startswith("load ") and "Module already loaded" in reply:
        return False
    if " killgw " in step.command and "no such gateway" in reply:
        return False  # already gone: the rescan that follows adds the new definition
    if replies.restart_too_early(reply) is not None or replies.invalid_profile(reply):
        return True
    return any(line.startswith(("-ERR", "-USAGE")) or line.startswith("Failure") for line in reply.splitlines())


async def _count(client: EslClient) -> int | None:
    match = _SESSIONS.search(await client.api("status", check=False))
    return int(match.group(1)) if match else None


async def _run(client: EslClient, step: Step) -> str:
    """One step. A profile restart FreeSWITCH refuses because the profile started < 10 s ago is retried
    when allowed; a restart of a profile that is not loaded (failed to start, or gone) becomes a start."""
    reply = await client.api(step.command, check=False)
    for _ in range(2):
        wait = replies.restart_too_early(reply)
        if wait is None:
            break
        await asyncio.sleep(wait + 0.5)
        reply = await client.api(step.command, check=False)
    match = _PROFILE_STEP.match(step.command)
    if match and match.group(2) == "restart" and replies.invalid_profile(reply):
        reply = await client.api(f"sofia profile {match.group(1)} start", check=False)
    return reply


async def _wait_running(client: EslClient, names: list[str], timeout: float) -> dict[str, float]:
    """Seconds until each profile is listed RUNNING again (absent: not back within ``timeout``)."""
    loop = asyncio.get_running_loop()
    start, up = loop.time(), {}
    while True:
        profiles = replies.sofia_profiles(await client.api("sofia status", check=False))
        for name in names:
            if name not in up and profiles.get(name, ("", ""))[1] == "RUNNING":
                up[name] = round(loop.time() - start, 1)
        if len(up) == len(names) or loop.time() - start > timeout:
            return up
        await asyncio.sleep(0.25)


async def apply_to_node(
    endpoint: Endpoint, steps: list[Step], timeout: float = 10.0, profile_timeout: float = 60.0
) -> NodeResult:
    """Run ``steps`` in order on one node; wait for (re)started profiles to be RUNNING (a restart waits for
    the profile's worker thread: measured 1-31 s on 1.10.12); report calls in progress before and after."""
    result = NodeResult(endpoint.name)
    client = EslClient(endpoint, events=[], command_timeout=timeout)
    try:
        await client.start()
        await client.wait_connected(timeout)
        result.calls_before = await _count(client)
        restarted: dict[str, Step] = {}
        for step in steps:
            reply = await _run(client, step)
            (result.failed if _failed(step, reply) else result.done).append((step, reply.strip()))
            match = _PROFILE_STEP.match(step.command)
            if match and not _failed(step, reply):
                restarted[match.group(1)] = step
        if restarted:
            result.profiles_up = await _wait_running(client, sorted(restarted), profile_timeout)
            for name in sorted(set(restarted) - set(result.profiles_up)):
                why = (
                    f"profile {name} not RUNNING {profile_timeout:.0f} s later: its port may be taken or FreeSWITCH"
                    " still waits for the old profile's worker thread (see `sofia status` and the log)"
                )
                result.failed.append((restarted[name], why))
        await asyncio.sleep(0.2)  # let a profile restart or a hang-up show in the count
        result.calls_after = await _count(client)
    except (EslError, CommandError, TimeoutError, OSError) as exc:
        result.error = str(exc) or type(exc).__name__
    finally:
        await client.stop()
    return result


async def apply_all(
    endpoints: list[Endpoint], steps: list[Step], timeout: float = 10.0, profile_timeout: float = 60.0
) -> list[NodeResult]:
    """Every node, concurrently."""
    return list(await asyncio.gather(*(apply_to_node(ep, steps, timeout, profile_timeout) for ep in endpoints)))
