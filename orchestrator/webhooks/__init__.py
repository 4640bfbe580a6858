"""Webhooks: call and trunk events POSTed, signed, to configured receivers from a durable outbox in the store.

:mod:`.signing` is the ``Sipagent-Signature`` header (HMAC-SHA256 over timestamp and body; sans-I/O, with the
receiver's check); :mod:`.policy` decides which endpoint gets which event, in which order, and when a failed
attempt is tried again (sans-I/O); :mod:`.delivery` is the asyncio part: the broker sink that fills the outbox
through the store writer, and one dispatcher per endpoint. The outbox's SQL is :mod:`orchestrator.store.outbox`.
See docs/operations.md#webhooks.
"""

from orchestrator.webhooks.delivery import Dispatcher, WebhookService
from orchestrator.webhooks.policy import Endpoint

__all__ = ["Dispatcher", "Endpoint", "WebhookService"]
