"""Run the orchestrator: call controller on every node, HTTP API, metrics, until a signal stops it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import uvicorn

from orchestrator.api.http import create_app
from orchestrator.calls.controller import Controller
from orchestrator.config.model import Deployment
from orchestrator.events import Broker
from orchestrator.media.bridge import MediaBridge
from orchestrator.media.workers import WorkerPool
from orchestrator.store import StoreWriter
from orchestrator.webhooks import WebhookService

log = logging.getLogger("sipagent")


async def serve(deployment: Deployment, base_dir: Path, stop: asyncio.Event | None = None) -> None:
    """Run until ``stop`` is set (or SIGINT/SIGTERM). Calls stay up in FreeSWITCH when it exits."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    events = Broker()  # call and trunk events: GET /v1/events reads them (docs/operations.md#events)
    controller = Controller(deployment, base_dir, events=events)
    webhooks = _webhooks(deployment, controller)
    media = deployment.orchestrator.media
    bridge = _media_bridge(deployment, controller)
    controller.add_listener(bridge.on_notice)
    await bridge.start()
    await controller.start()
    if webhooks is not None:
        events.sinks.append(webhooks.offer)
        webhooks.start()
    api = deployment.orchestrator.api
    server = _api_server(deployment, controller, base_dir, webhooks)
    http = asyncio.create_task(server.serve(), name="http-api")
    log.info(
        "sipagent running: API on http://%s:%d, media bridge on %s:%d (%d process(es)), %d node(s)",
        api.listen_ip,
        api.port,
        media.listen_ip,
        media.port,
        media.workers,
        len(controller.nodes),
    )
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        events.close()  # open event streams end, or the server would wait for them
        await http
        if webhooks is not None:
            await webhooks.stop()  # before the controller closes the store
        await controller.stop()
        await bridge.stop()


def _media_bridge(deployment: Deployment, controller: Controller) -> MediaBridge | WorkerPool:
    """The media bridge in this process, or a pool of worker processes (``orchestrator.media.workers`` > 1)."""
    media = deployment.orchestrator.media
    if media.workers > 1:
        return WorkerPool(deployment, controller, controller.metrics, controller.tokens.secret, media.workers)
    return MediaBridge(deployment, controller.tokens, controller, controller.metrics)


def _webhooks(deployment: Deployment, controller: Controller) -> WebhookService | None:
    """The webhook dispatchers (``orchestrator.webhooks``; validation made sure the call store is a database)."""
    if not deployment.orchestrator.webhooks or not isinstance(controller.records, StoreWriter):
        return None
    return WebhookService(deployment, controller.records, controller.metrics)


def _api_server(
    deployment: Deployment, controller: Controller, base_dir: Path, webhooks: WebhookService | None = None
) -> uvicorn.Server:
    """The HTTP API's server (its signals are ours: :func:`serve` stops it)."""
    api = deployment.orchestrator.api
    token = api.token.get_secret_value() if api.token else None
    read_token = api.read_token.get_secret_value() if api.read_token else None
    console_token = api.console_token.get_secret_value() if api.console_token else None
    if token is None:
        log.warning("no orchestrator.api.token: /v1 answers 503 (health and metrics still served)")
    app = create_app(
        controller, token, read_token=read_token, console_token=console_token, base_dir=base_dir, webhooks=webhooks
    )
    config = uvicorn.Config(app, host=api.listen_ip, port=api.port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]  # not in uvicorn's annotations
    return server
