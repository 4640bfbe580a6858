"""Transfers in the simulator: ``uuid_transfer`` to the inline dialplan and the few applications it runs.

Models FreeSWITCH 1.10.12's ``switch_ivr_session_transfer`` (``src/switch_ivr.c``: a new caller-profile index,
``Transfer-Source`` / ``transfer_history``, CS_ROUTING then CS_EXECUTE), mod_dptools' inline dialplan
(``mod_dptools.c`` ``inline_dialplan_hunt``: ``m:<sep>:`` and ``app[:data]`` items) and its ``answer``, ``set``,
``export``, ``hangup``, ``sleep``, ``park`` and ``bridge`` (:mod:`.bridging`) applications. Any other dialplan
has no route here (NO_ROUTE_DESTINATION). Recorded in tests/fixtures_esl/14-bridge.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from . import fsstrings
from .causes import normalize_cause
from .channel import SimChannel, new_uuid, now_us

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch


class Transfers:
    """Mixin of :class:`~simulator.server.SimulatedFreeSwitch`: ``uuid_transfer`` and the inline dialplan."""

    def transfer(self: SimulatedFreeSwitch, ch: SimChannel, dest: str, dialplan: str, context: str | None) -> None:
        """``uuid_transfer``; only the ``inline`` dialplan runs applications here (XML: no route)."""
        self.spawn(self._transfer(ch, dest, dialplan, context))

    async def _transfer(self: SimulatedFreeSwitch, ch: SimChannel, dest: str, dialplan: str,
                        context: str | None) -> None:  # fmt: skip
        """The transfer itself: the caller profile moves on, the channel leaves park and routes again."""
        if not ch.alive:
            return
        self._cancel_park_timer(ch)
        orig_dest = ch.profile.get("Destination-Number", "")
        ctx = context or ch.profile.get("Context", "default")
        index = int(ch.profile.get("Profile-Index", "1")) + 1
        source = f"{int(time.time())}:{new_uuid()}:bl_xfer:{dest}/{ctx}/{dialplan}"
        ch.profile.update(
            {
                "Dialplan": dialplan,
                "Context": ctx,
                "Destination-Number": dest,
                "Transfer-Source": source,
                "RDNIS": orig_dest,
                "Profile-Index": str(index),
            }
        )
        ch.times["profile_created"] = now_us()
        ch.setvar("transfer_history", source)
        ch.setvar("transfer_source", source)
        if ch.parked:
            ch.state_number = 2
        ch.unpark()
        ch.finish_app()
        ch.set_state("CS_ROUTING")
        if ch.answered:
            ch.fire_callstate("RINGING")
        ch.fire_state("CS_ROUTING")
        if dialplan.lower() != "inline":
            self.hangup(ch, "NO_ROUTE_DESTINATION")
            return
        ch.profile["Destination-Number"] = orig_dest
        ch.profile.pop("RDNIS", None)
        ch.set_state("CS_EXECUTE")
        if ch.answered:
            ch.fire_callstate("ACTIVE")
        ch.fire_state("CS_EXECUTE")
        ch.application = ""
        await self._run_inline(ch, dest)

    async def _run_inline(self: SimulatedFreeSwitch, ch: SimChannel, spec: str) -> None:
        """mod_dptools' inline dialplan: ``m:<sep>:`` picks the separator, each item is ``app[:data]``."""
        sep = ","
        if spec.startswith("m:") and len(spec) > 3 and spec[3] == ":":
            sep, spec = spec[2], spec[4:]
        for item in fsstrings.separate(spec, sep, 128):
            app, _, data = item.lstrip(" ").partition(":")
            if not app:
                continue
            if not ch.alive:
                return
            await self._exec_app(ch, app, data)
            if not ch.alive or ch.parked:
                return
        if ch.alive:
            self.hangup(ch, "NORMAL_CLEARING")

    async def _exec_app(self: SimulatedFreeSwitch, ch: SimChannel, app: str, data: str) -> None:
        """One dialplan application: CHANNEL_EXECUTE, its effect, CHANNEL_EXECUTE_COMPLETE."""
        if app == "park":
            self._dialplan_park(ch)
            return
        if app == "bridge":
            await self._bridge_app(ch, data)
            return
        app_uuid = ch.execute(app, data)
        ch.running_app = (app, data, app_uuid)
        if app == "answer" and not ch.answered:
            self.answer(ch)
        elif app in ("set", "export"):
            k, _, v = data.partition("=")
            ch.setvar(k, v)
        elif app == "hangup":
            self.hangup(ch, normalize_cause(data or "NORMAL_CLEARING"))
            return
        elif app == "sleep":
            await asyncio.sleep(int(data or "0") / 1000)
        if ch.alive and ch.running_app:
            ch.running_app = None
            ch.execute_complete(app, data, app_uuid=app_uuid)
