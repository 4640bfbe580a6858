"""Bridging in the simulator: the ``bridge`` dialplan application (with its outbound leg) and ``uuid_bridge``,
and what a channel does when its bridge peer goes.

Models FreeSWITCH 1.10.12's ``src/switch_ivr_bridge.c`` (``switch_ivr_multi_threaded_bridge`` for the ``bridge``
application, ``switch_ivr_uuid_bridge`` and its CS_HIBERNATE / CS_RESET / CS_SOFT_EXECUTE dance,
CHANNEL_BRIDGE / CHANNEL_UNBRIDGE, ``hangup_after_bridge``) and mod_dptools' ``audio_bridge_function``
(``mod_dptools.c``: ``continue_on_fail``). Recorded in tests/fixtures_esl/14-bridge (``uuid_transfer ...
'bridge:...' inline`` and ``uuid_bridge``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .callerprofile import copy_callee, ordered
from .channel import SimChannel, new_uuid, now_us
from .dialing import DialError
from .fsstrings import switch_true

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch


class Bridging:
    """Mixin of :class:`~simulator.server.SimulatedFreeSwitch`: two channels bridged and unbridged."""

    def _link(self, a: SimChannel, b: SimChannel, kind: str) -> None:
        """``a`` (originator) and ``b`` (originatee) are bridged."""
        t = now_us()
        a.bridged_to, b.bridged_to = b.uuid, a.uuid
        a.bridge_kind = kind
        b.bridge_kind = kind if kind == "uuid_bridge" else "originatee"
        a.set_other(b, "originatee")
        if b.other is not a:
            b.set_other(a, "originator")
        copy_callee(a, b)
        for x, y, role in ((a, b, "originator"), (b, a, "originatee")):
            x.times["bridged"] = t
            x.setvars(
                [
                    ("last_bridge_to", y.uuid),
                    ("bridge_channel", y.name),
                    ("bridge_uuid", y.uuid),
                    ("signal_bond", y.uuid),
                    ("last_sent_callee_id_name", y.profile.get("Caller-ID-Name", "")),
                    ("last_sent_callee_id_number", y.profile.get("Caller-ID-Number", "")),
                    ("last_bridge_role", role),
                ]
            )
        a.bridge_done = asyncio.get_event_loop().create_future()

    def _call_update_send(self, ch: SimChannel) -> None:
        other = ch.other
        ch.fire(
            "CALL_UPDATE",
            source="CALL_UPDATE_SEND",
            pre=[
                ("Direction", "SEND"),
                ("Sent-Callee-ID-Name", other.profile.get("Caller-ID-Name", "") if other else ""),
                ("Sent-Callee-ID-Number", other.profile.get("Caller-ID-Number", "") if other else ""),
                ("Bridged-To", other.uuid if other else ""),
            ],
        )

    def _peer_gone(self: SimulatedFreeSwitch, survivor: SimChannel, gone: SimChannel) -> None:
        """``gone`` left the bridge: CHANNEL_UNBRIDGE on ``survivor``, then what its application does next."""
        a, b = (survivor, gone) if survivor.other_type == "originatee" else (gone, survivor)
        survivor.bridged_to = None
        gone.bridged_to = None
        survivor.fire("CHANNEL_UNBRIDGE", pre=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])
        kind = survivor.bridge_kind
        survivor.bridge_kind = None
        if kind == "bridge_app":
            if survivor.running_app and survivor.running_app[0] == "bridge":
                survivor.finish_app()
            if survivor.bridge_done is not None and not survivor.bridge_done.done():
                survivor.bridge_done.set_result(None)
        elif kind == "uuid_bridge":

            async def after() -> None:
                if survivor.alive:
                    survivor.fire_state("CS_EXECUTE")
                    self.hangup(survivor, "NORMAL_CLEARING")

            self.spawn(after())
        else:

            async def hang() -> None:
                self.hangup(survivor, "NORMAL_CLEARING")

            self.spawn(hang())

    def uuid_bridge(self: SimulatedFreeSwitch, a: SimChannel, b: SimChannel) -> None:
        """``uuid_bridge a b`` (recorded in tests/fixtures_esl/14-bridge/uuid-bridge)."""
        for x in (a, b):
            self._cancel_park_timer(x)
        for x, y in ((a, b), (b, a)):
            source = f"{int(time.time())}:{new_uuid()}:uuid_br:{y.uuid}"
            index = int(x.profile.get("Profile-Index", "1")) + 1
            x.profile.update({"Transfer-Source": source, "Profile-Index": str(index)})
            x.profile = ordered(x.profile)
            x.setvars([("transfer_history", source), ("transfer_source", source)])
        self._link(a, b, "uuid_bridge")
        for x in (b, a):
            x.state_number = 8
            x.unpark()
            x.finish_app()
            x.fire_state("CS_HIBERNATE")
            x.fire_state("CS_RESET")
            if x is a:
                a.fire_state("CS_SOFT_EXECUTE")
        b.fire_state("CS_SOFT_EXECUTE")
        for x, y, src in ((a, b, "UUID_BRIDGE_A"), (b, a, "UUID_BRIDGE_B")):
            # CHANNEL_EXECUTE names uuid_bridge, but current_application stays what the channel ran (park):
            # recorded in 14-bridge/uuid-bridge and read back from FreeSWITCH 1.10.12 by test_attended_live
            x.application, x.application_data = "uuid_bridge", y.uuid
            x.fire("CHANNEL_EXECUTE", source=src, post=[("Application", "uuid_bridge"), ("Application-Data", y.uuid)])
        a.fire("CHANNEL_BRIDGE", pre=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", b.uuid)])
        b.fire_state("CS_EXCHANGE_MEDIA")
        self._call_update_send(a)
        self._call_update_send(b)

    async def _bridge_app(self: SimulatedFreeSwitch, a: SimChannel, data: str) -> None:
        """The ``bridge`` application on ``a``: dial ``data``, bridge on answer, return when the bridge ends."""
        app_uuid = a.execute("bridge", data)
        a.running_app = ("bridge", data, app_uuid)
        a.fire_callstate("RING_WAIT")
        try:
            leg = self._create_outbound(data, originator=a)
        except DialError as e:
            a.fire_callstate("ACTIVE")
            self.hangup(a, e.cause)
            return
        ok = await self._progress_outbound(leg, flip_cid=False, originator=a)
        if not a.alive:
            return
        if not ok:
            copy_callee(a, leg)
            a.fire_callstate("ACTIVE")
            if switch_true(a.variables.get("continue_on_fail")):  # the inline dialplan goes on (e.g. to park)
                a.running_app = None
                a.execute_complete("bridge", data, app_uuid=app_uuid)
                return
            self.hangup(a, leg.hangup_cause or "NORMAL_TEMPORARY_FAILURE")
            return
        self._link(a, leg, "bridge_app")
        a.fire_callstate("ACTIVE")
        a.fire("CHANNEL_BRIDGE", pre=[("Bridge-A-Unique-ID", a.uuid), ("Bridge-B-Unique-ID", leg.uuid)])
        leg.fire_state("CS_EXCHANGE_MEDIA")
        self._call_update_send(leg)
        self._call_update_send(a)
        if a.bridge_done is not None:
            await a.bridge_done
        if a.alive and switch_true(a.variables.get("hangup_after_bridge")):
            self.hangup(a, "NORMAL_CLEARING")
