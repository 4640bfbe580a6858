"""Trunk state from FreeSWITCH's ``sofia::gateway_state`` events → ``trunk.down`` / ``trunk.up``, sans-I/O.

mod_sofia (FreeSWITCH 1.10.12, ``sofia_reg_fire_custom_gateway_state_event`` in ``sofia_reg.c``) fires the CUSTOM
event ``sofia::gateway_state`` with the headers ``Gateway`` (its name: ours are named after their trunk),
``State`` (the registration state, ``sofia_state_names``: ``UNREGED``, ``TRYING``, ``REGISTER``, ``REGED``,
``UNREGISTER``, ``FAILED``, ``FAIL_WAIT``, ``EXPIRED``, ``NOREG``, ``DOWN``, ``TIMEOUT``), ``Ping-Status`` (``UP``,
``DOWN`` or ``INVALID``: ``sofia_gateway_status_name``), then ``Register-Network-IP`` and ``Register-Network-Port``
once a REGISTER was answered, ``Phrase`` and ``Status`` (the SIP reason and status of the reply that caused it, when
there was one). It fires on every registration state change and when OPTIONS pings (``ping``) turn the gateway
up or down — and on every ping answer with ``ping-monitoring``.

``Ping-Status`` is what FreeSWITCH itself routes by: a gateway whose status is not UP refuses calls with
``GATEWAY_DOWN`` (``mod_sofia.c``). A registering gateway is DOWN after a failed registration (``FAIL_WAIT``) and UP
once ``REGED``; a pinged one goes DOWN when fewer than ``ping-min`` pings in a row were answered, UP when enough
were. So ``trunk.down`` / ``trunk.up`` follow ``Ping-Status``, per node and gateway, once per change: the first
event of a gateway gives its state, repeated ones (ping monitoring, intermediate registration states) give none.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.events.model import Draft, EventType

#: the CUSTOM subclass to subscribe to
GATEWAY_STATE = "sofia::gateway_state"
#: ``sofia_state_names`` (mod_sofia.c)
REGISTRATION_STATES = frozenset(
    [
        "UNREGED",
        "TRYING",
        "REGISTER",
        "REGED",
        "UNREGISTER",
        "FAILED",
        "FAIL_WAIT",
        "EXPIRED",
        "NOREG",
        "DOWN",
        "TIMEOUT",
    ]
)
#: ``sofia_gateway_status_name`` (sofia.c)
PING_STATUSES = frozenset({"UP", "DOWN", "INVALID"})

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_PHRASE = 128


@dataclass(frozen=True)
class GatewayState:
    """One ``sofia::gateway_state`` event, read and bounded."""

    gateway: str
    state: str  # registration state ("" when FreeSWITCH sent one we do not know)
    ping_status: str  # UP, DOWN, INVALID
    sip_status: int | None = None
    phrase: str = ""
    register_network_ip: str = ""
    register_network_port: int | None = None

    @property
    def up(self) -> bool:
        """Whether FreeSWITCH routes calls through the gateway."""
        return self.ping_status == "UP"


def _status(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 3 and 100 <= int(value) <= 999 else None


def parse_gateway_state(headers: Mapping[str, str]) -> GatewayState | None:
    """A ``sofia::gateway_state`` event's headers, or ``None`` when it is not one we can read."""
    if headers.get("Event-Subclass") != GATEWAY_STATE:
        return None
    gateway = headers.get("Gateway", "")
    ping = headers.get("Ping-Status", "")
    if not _NAME.fullmatch(gateway) or ping not in PING_STATUSES:
        return None
    state = headers.get("State", "")
    port = headers.get("Register-Network-Port", "")
    return GatewayState(
        gateway=gateway,
        state=state if state in REGISTRATION_STATES else "",
        ping_status=ping,
        sip_status=_status(headers.get("Status", "")),
        phrase=_CONTROL.sub("", headers.get("Phrase", ""))[:MAX_PHRASE],
        register_network_ip=_CONTROL.sub("", headers.get("Register-Network-IP", ""))[:64],
        register_network_port=int(port) if port.isascii() and port.isdigit() and 0 < int(port) < 65536 else None,
    )


class TrunkStates:
    """Whether each trunk is up, per node, as FreeSWITCH last said; a change is a ``trunk.down``/``trunk.up`` draft.

    With ``trunks`` (the deployment's trunk names), gateways that are none of them are ignored.
    """

    def __init__(self, trunks: Collection[str] | None = None) -> None:
        self.trunks = frozenset(trunks) if trunks is not None else None
        self.up: dict[tuple[str, str], bool] = {}
        self.last: dict[tuple[str, str], GatewayState] = {}

    def update(self, node: str, state: GatewayState) -> Draft | None:
        """Take one gateway state from ``node``: the event to publish, if the trunk went up or down."""
        if self.trunks is not None and state.gateway not in self.trunks:
            return None
        key = (node, state.gateway)
        before = self.up.get(key)
        self.up[key] = state.up
        self.last[key] = state
        if before is state.up:
            return None
        data: dict[str, Any] = {
            "trunk": state.gateway,
            "node": node,
            "state": state.state,
            "ping_status": state.ping_status,
            "sip_status": state.sip_status,
            "phrase": state.phrase,
            "register_network_ip": state.register_network_ip or None,
            "register_network_port": state.register_network_port,
            "previous": None if before is None else ("up" if before else "down"),
        }
        return Draft(EventType.TRUNK_UP if state.up else EventType.TRUNK_DOWN, None, data)

    def snapshot(self) -> list[dict[str, Any]]:
        """Every gateway's last known state (for a console or an API)."""
        return [
            {"trunk": gw, "node": node, "up": self.up[(node, gw)], "state": s.state, "ping_status": s.ping_status}
            for (node, gw), s in sorted(self.last.items())
        ]
