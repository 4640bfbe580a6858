"""REFER in the simulator: ``uuid_deflect`` sends the caller a REFER; its NOTIFY comes back as
``sofia::notify_refer``.

Models FreeSWITCH 1.10.12's mod_sofia (``mod_sofia.c``: SWITCH_MESSAGE_INDICATE_DEFLECT -> ``nua_refer``, blocking
until the NOTIFY unless ``sip_refer_continue_after_reply``; ``sofia.c`` ``sofia_handle_sip_i_notify``: the
``message/sipfrag`` NOTIFY as a CUSTOM event, ``sip_refer_status_code`` / ``sip_refer_reply``). Recorded in
fixture 06 (blocking) and tests/fixtures_esl/13-refer-continue. What the caller's phone answers is scripted per
channel (``set_refer_outcome``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .channel import SimChannel
from .fsstrings import switch_true

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch

SIPFRAG_PHRASES = {
    100: "Trying",
    180: "Ringing",
    200: "OK",
    202: "Accepted",
    403: "Forbidden",
    404: "Not Found",
    480: "Temporarily Unavailable",
    486: "Busy Here",
    487: "Request Terminated",
    500: "Server Internal Error",
    503: "Service Unavailable",
    603: "Declined",
}


class Refer:
    """Mixin of :class:`~simulator.server.SimulatedFreeSwitch`: ``uuid_deflect`` and the REFER's NOTIFY."""

    _refer_outcomes: dict[str, str | None]

    def _refer_notify_for(self, ch: SimChannel) -> str | None:
        """The scripted NOTIFY status for ``ch`` (its own, else the ``"*"`` default, else 200)."""
        if ch.uuid in self._refer_outcomes:
            return self._refer_outcomes[ch.uuid]
        return self._refer_outcomes.get("*", "200")

    def _notify_refer(self: SimulatedFreeSwitch, ch: SimChannel, code: str) -> str:
        """The caller's terminating NOTIFY: ``sofia::notify_refer`` with the sipfrag; returns the sipfrag."""
        status = int(code)
        frag = f"SIP/2.0 {status} {SIPFRAG_PHRASES.get(status, 'Unknown')}\r\n"
        ch.setvar("sip_refer_target_status_code", str(status))
        ch.setvar("sip_refer_reply", frag)
        ch.refer_notified = True
        ch.dialog_ended = True  # recorded (13): sofia-sip BYEs the caller after a terminating NOTIFY
        local = self.local_ip
        self.fire(
            "CUSTOM",
            [
                ("content-type", "message/sipfrag"),
                ("event-package", "refer"),
                ("contact", f"{ch.caller_id}@{self.peer_ip}"),
                ("from", f"{ch.caller_id}@{self.peer_ip}"),
                ("from-tag", ch.tag),
                ("to", f"{ch.destination}@{local}"),
                ("to-tag", ch.to_tag),
                ("call-id", ch.sip_call_id or ch.uuid),
                ("subscription-substate", "terminated"),
                ("subscription-reason", "noresource"),
                ("UniqueID", ch.uuid),
            ],
            body=frag,
            source="NOTIFY_REFER",
            subclass="sofia::notify_refer",
        )
        return frag

    async def deflect(self: SimulatedFreeSwitch, ch: SimChannel, uri: str) -> str:
        """``uuid_deflect``: blocking (fixture 06) or, with ``sip_refer_continue_after_reply=true``, an
        immediate ``+OK:`` and a channel that stays up whatever the NOTIFY says (tests/fixtures_esl/13) -- although
        after a NOTIFY the caller got a BYE (``dialog_ended``): the channel is orphaned until someone kills it."""
        ch.refers.append(uri)
        notify = self._refer_notify_for(ch)
        if switch_true(ch.variables.get("sip_refer_continue_after_reply")):
            self.spawn(self._refer_continue(ch, notify))
            return "+OK:\n"
        ch.setvar("sip_refer_status_code", "202")
        if notify is None:
            if not await self._sleep_or_gone(ch, self.refer_no_notify_timeout):
                return "+OK:no reply\n"
            body = "+OK:no reply\n"
        else:
            if not await self._sleep_or_gone(ch, self.refer_notify_delay):
                return "+OK:no reply\n"
            body = f"+OK:{self._notify_refer(ch, notify)}\n"
        if ch.alive:
            self.hangup(ch, "BLIND_TRANSFER", disposition="send_bye")
        return body

    async def _refer_continue(self: SimulatedFreeSwitch, ch: SimChannel, notify: str | None) -> None:
        """``sip_refer_continue_after_reply``: the 202 and the NOTIFY arrive while the channel goes on."""
        if not await self._sleep_or_gone(ch, min(0.01, self.refer_notify_delay)):
            return
        ch.setvar("sip_refer_status_code", "202")
        if notify is None:
            return
        if await self._sleep_or_gone(ch, self.refer_notify_delay):
            self._notify_refer(ch, notify)
