"""Call events: what happened to calls and trunks, as a stream for dashboards, scripts and webhooks.

:mod:`.model` is the :class:`Event` and how one is stamped (sequence, UUID, time from an injected clock);
:mod:`.mapping` turns the controller's notices into call events in a guaranteed order per call (sans-I/O);
:mod:`.trunks` reads FreeSWITCH's ``sofia::gateway_state`` events into ``trunk.down`` / ``trunk.up`` (sans-I/O);
:mod:`.sse` formats Server-Sent Events and parses what a client sends (sans-I/O); :mod:`.broker` is the
asyncio fan-out to subscribers (bounded queues, a ring buffer for resume).
"""

from orchestrator.events.broker import Broker, Subscription
from orchestrator.events.mapping import CallEvents, CallProgress, map_notice
from orchestrator.events.model import EVENT_TYPES, Draft, Event, EventFactory, EventType
from orchestrator.events.trunks import GATEWAY_STATE, GatewayState, TrunkStates, parse_gateway_state

__all__ = [
    "EVENT_TYPES",
    "GATEWAY_STATE",
    "Broker",
    "CallEvents",
    "CallProgress",
    "Draft",
    "Event",
    "EventFactory",
    "EventType",
    "GatewayState",
    "Subscription",
    "TrunkStates",
    "map_notice",
    "parse_gateway_state",
]
