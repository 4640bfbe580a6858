"""What the real-FreeSWITCH tests that run the orchestrator in process share: the controller and media bridge on
the switch under test with a fake raw agent, waiting for notices, and a call's record once its media summary is in."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fake_agents import FakeRawAgent
from switch import suite_env

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice
from orchestrator.config import check_file
from orchestrator.media.bridge import MediaBridge
from orchestrator.media.fork import Tokens


@dataclass
class Live:
    """The orchestrator's pieces, running: the controller, its media bridge, the agent, every notice so far."""

    controller: Controller
    bridge: MediaBridge
    agent: FakeRawAgent
    notices: list[Notice]


@contextlib.asynccontextmanager
async def live_orchestrator(work: Path, agent_port: int, secret: bytes, *, synced: bool = False) -> AsyncIterator[Live]:
    """The controller and media bridge for ``work``/deployment.yaml, connected to the switch (and, with ``synced``,
    past its first sync of the calls up), a raw agent at 8 kHz on ``agent_port``."""
    result = check_file(work / "deployment.yaml", suite_env())
    assert result.deployment is not None, [str(d) for d in result.errors]
    notices: list[Notice] = []
    controller = Controller(result.deployment, result.base_dir, tokens=Tokens(secret))
    bridge = MediaBridge(result.deployment, controller.tokens, controller, controller.metrics)
    controller.add_listener(bridge.on_notice)
    controller.add_listener(notices.append)
    async with FakeRawAgent(rate=8000, port=agent_port) as agent:
        await bridge.start()
        await controller.start()
        await controller.nodes["fs1"].client.wait_connected(10)
        if synced:
            await asyncio.wait_for(controller.nodes["fs1"].synced.wait(), 10)
        try:
            yield Live(controller, bridge, agent, notices)
        finally:
            await controller.stop()
            await bridge.stop()


async def wait_for(notices: list[Notice], kind: str, timeout: float = 20, call: str = "", **data: Any) -> Notice:
    """The first ``kind`` notice (of ``call``, with ``data``), waiting up to ``timeout`` seconds for it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        for n in notices:
            if (
                n.kind == kind
                and (not call or n.call.uuid == call)
                and all(n.data.get(k) == v for k, v in data.items())
            ):
                return n
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kind} notice for {call or 'any call'}; got {[n.kind for n in notices]}")


async def record_of(controller: Controller, uuid: str, timeout: float = 10) -> dict[str, Any]:
    """The call's record once it has the media bridge's summary (or, after ``timeout``, as it is)."""
    for _ in range(int(timeout / 0.02)):
        if uuid in controller.ended and controller.ended[uuid].get("media") is not None:
            return controller.ended[uuid]
        await asyncio.sleep(0.02)
    return controller.ended[uuid]
