"""Sofia gateways' state and the CUSTOM ``sofia::gateway_state`` event, as mod_sofia 1.10.12 has them.

Sources (FreeSWITCH v1.10.12, ``src/mod/endpoints/mod_sofia``):

* ``sofia_reg.c`` ``sofia_reg_fire_custom_gateway_state_event`` (line 153): the event — ``Gateway``, ``State``
  (``sofia_state_string``), ``Ping-Status`` (``sofia_gateway_status_name``), then ``Register-Network-IP`` and
  ``Register-Network-Port`` only once a REGISTER reply set them, ``Phrase`` only when there is one, ``Status``
  only when non-zero; created at line 156 of that function (``Event-Calling-*``);
* ``sofia.c`` ``sofia_handle_sip_r_options`` (line 6437): an OPTIONS ping's reply — 2xx-5xx but 408 and 503
  counts as answered (``ping_count`` up to ``ping-max``; UP once it reaches ``ping-min``; a FAILED registration
  goes back to UNREGED), anything else as failed (REGED → FAILED, ``ping_count`` down; DOWN below
  ``ping-min``); the event fires on a change of status, or on every reply with ``ping-monitoring``, with the
  reply's status and phrase;
* ``sofia_reg.c`` ``sofia_reg_handle_sip_r_register`` (line 2585): a REGISTER reply — 200 → REGISTER, 100 →
  nothing, other → FAILED; the event (with status and phrase) when the state or the network address changed;
  then ``sofia_reg_check_gateway``'s next pass (line 300): REGISTER → REGED (status UP), FAILED → FAIL_WAIT
  (status DOWN), UNREGISTER → DOWN (status DOWN), TIMEOUT → FAILED, each change fired without status or phrase;
* ``sofia.c`` ``parse_gateways`` (line 3800): a gateway starts with status DOWN, ``register=false`` makes it
  NOREG and UP; ``ping`` ≥ 5 enables pings with ``ping-min`` = ``ping-max`` = 1 unless set;
* ``mod_sofia.c`` (line 4801): a gateway whose status is not UP refuses calls with ``GATEWAY_DOWN``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch
    from .wire import Event

SUBCLASS = "sofia::gateway_state"


class Gateways:
    """Mixin: gateway state changes as the far end answers OPTIONS pings and REGISTERs."""

    gateways: dict[str, dict[str, Any]]

    def fire_gateway_state(self: SimulatedFreeSwitch, name: str, status: int = 0, phrase: str | None = None) -> Event:
        """``sofia_reg_fire_custom_gateway_state_event(gateway, status, phrase)`` for gateway ``name``."""
        gw = self.gateways[name]
        headers = [("Gateway", name), ("State", gw["state"]), ("Ping-Status", gw["status"])]
        if gw.get("register_network_ip"):
            headers += [
                ("Register-Network-IP", gw["register_network_ip"]),
                ("Register-Network-Port", str(gw.get("register_network_port", 0))),
            ]
        if phrase:
            headers.append(("Phrase", phrase))
        if status:
            headers.append(("Status", str(status)))
        return self.fire("CUSTOM", headers, source="GATEWAY_STATE", subclass=SUBCLASS)

    def gateway_options_reply(self: SimulatedFreeSwitch, name: str, status: int, phrase: str = "") -> bool:
        """The far end answered (or the stack gave up on: 408, 503) an OPTIONS ping of gateway ``name``;
        returns whether an event was fired."""
        gw = self.gateways[name]
        fire = False
        if 200 <= status < 600 and status not in (408, 503):
            if gw["state"] == "FAILED":
                gw["state"] = "UNREGED"
            gw["ping_count"] = max(gw["ping_count"], 0)
            if gw["ping_count"] < gw["ping_max"]:
                gw["ping_count"] += 1
                if gw["ping_count"] >= gw["ping_min"] and gw["status"] != "UP":
                    gw["status"] = "UP"
                    fire = True
        else:
            if gw["state"] == "REGED":
                gw["state"] = "FAILED"
            if gw["ping_count"] > 0:
                gw["ping_count"] -= 1
            if gw["ping_count"] < gw["ping_min"] and gw["status"] != "DOWN":
                gw["status"] = "DOWN"
                fire = True
        if gw["ping_monitoring"] or fire:
            self.fire_gateway_state(name, status, phrase)
            return True
        return False

    def gateway_register_reply(self: SimulatedFreeSwitch, name: str, status: int, phrase: str = "",
                               network: tuple[str, int] = ("127.0.0.1", 5060)) -> None:  # fmt: skip
        """The registrar's reply to gateway ``name``'s REGISTER, then the check loop's next pass."""
        gw = self.gateways[name]
        old_state, old_ip = gw["state"], gw.get("register_network_ip", "")
        gw["register_network_ip"], gw["register_network_port"] = network
        if status == 200:
            gw["state"] = "REGISTER"
        elif status != 100:
            gw["state"] = "FAILED"
        if gw["state"] != old_state or gw["register_network_ip"] != old_ip:
            self.fire_gateway_state(name, status, phrase)
        self.check_gateway(name)

    def gateway_unregistered(self: SimulatedFreeSwitch, name: str) -> None:
        """``sofia profile <p> killgw``-like unregistration (UNREGISTER, then DOWN on the next pass)."""
        gw = self.gateways[name]
        if gw["state"] != "UNREGISTER":
            gw["state"] = "UNREGISTER"
            self.fire_gateway_state(name)
        self.check_gateway(name)

    def check_gateway(self: SimulatedFreeSwitch, name: str) -> None:
        """One pass of ``sofia_reg_check_gateway`` over the states a reply leaves a gateway in."""
        gw = self.gateways[name]
        before = gw["state"]
        if before == "REGISTER":
            gw["state"], gw["status"] = "REGED", "UP"
        elif before == "FAILED":
            gw["state"], gw["status"] = "FAIL_WAIT", "DOWN"
        elif before == "UNREGISTER":
            gw["state"], gw["status"] = "DOWN", "DOWN"
        elif before == "TIMEOUT":
            gw["state"] = "FAILED"
        if gw["state"] != before:
            self.fire_gateway_state(name)
