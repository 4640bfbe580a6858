"""Channel lifecycle in the simulator: an inbound INVITE through the dialplan to park, answer, park / unpark, the
unclaimed park's timeout, and the hangup teardown up to CHANNEL_DESTROY.

Models FreeSWITCH 1.10.12's state machine (``src/switch_core_state_machine.c``: CS_NEW ... CS_EXECUTE,
CS_HANGUP, CS_REPORTING, CS_DESTROY), ``switch_channel_perform_hangup`` and ``switch_channel_perform_answer``
(``src/switch_channel.c``), ``switch_ivr_park`` (``src/switch_ivr.c``) with mod_dptools' ``park`` and
``park_timeout``, and mod_sofia's INVITE handling (``sofia.c``; its variables are in :mod:`.sofiavars`).
Event sequences follow the recordings:

* inbound (dialplan ``set`` ... ``park``, like sipagent's rendered dialplan): tests/fixtures_esl/11-park-claim;
  with ``answered=True`` (``answer`` then ``park``): fixture 02;
* ``uuid_park`` of a channel in the dialplan's park: CHANNEL_UNPARK, CHANNEL_EXECUTE_COMPLETE(park),
  CHANNEL_STATE(CS_PARK), CHANNEL_PARK -- and the dialplan's ``park_timeout`` no longer applies (11);
  ``uuid_park`` again on a channel parked by ``uuid_park`` only fires CHANNEL_UNPARK (11, quirk);
* unclaimed park: ``park_timeout=N:CAUSE`` hangs up with CAUSE (503 to the caller; 12);
* the dialplan's steps before ``park`` (``apps``: ``set``, ``unset``, ``hangup``, and ``limit`` with mod_hash, see
  :mod:`.limits`): an application that hangs the call up ends it there (CHANNEL_EXECUTE, CHANNEL_HANGUP, then its
  CHANNEL_EXECUTE_COMPLETE, as switch_core_session_execute_application returns after the hangup); the INVITE is
  answered as sofia_on_hangup does (``ch.sip_response``: hangup_cause_to_sip's status with every ``sip_rh_*``
  variable as a header);
* hangup: fixtures 02 / 04 (BYE, CANCEL, refused), the result of a failed originate around CHANNEL_HANGUP_COMPLETE.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .causes import CAUSE_TO_SIP, SIP_FAILURES, normalize_cause, q850
from .channel import SimChannel, new_uuid, now_us
from .limits import parse_limit
from .sofiavars import InboundDialog, inbound_vars
from .xmldialplan import Outcome as DialplanOutcome
from .xmldialplan import run as run_dialplan

if TYPE_CHECKING:  # pragma: no cover
    import xml.etree.ElementTree as ET

    from .server import SimulatedFreeSwitch


class ChannelLifecycle:
    """Mixin of :class:`~simulator.server.SimulatedFreeSwitch`: channels come, park, answer and go."""

    channels: dict[str, SimChannel]

    # -- an inbound call ----------------------------------------------------------------------------
    async def inbound_call(self: SimulatedFreeSwitch, *, destination: str, caller_id: str = "+15551230000",
                           context: str = "trunk-x", variables: dict[str, str] | None = None,
                           sip_headers: dict[str, str] | None = None, codec: str = "PCMU", rate: int = 8000,
                           profile: str = "tcp", park_timeout: str | None = None, answered: bool = False,
                           caller_name: str | None = None, uuid: str | None = None,
                           apps: list[tuple[str, str]] | None = None) -> SimChannel:  # fmt: skip
        """An INVITE arrives and the dialplan runs ``set`` for each of ``variables`` (then ``park_timeout``),
        optionally ``answer``, then ``apps`` (``(application, data)``: set, unset, limit, hangup), then ``park``:
        the recorded event sequence up to CHANNEL_PARK (or the hang-up an application caused: no park).

        ``sip_headers`` become ``variable_sip_h_<name>`` (already on CHANNEL_CREATE); ``park_timeout`` is
        ``"<seconds>:<CAUSE>"`` (fractions allowed here) and ends an unclaimed call with that cause.
        """
        self.profiles.setdefault(profile, "sip:mod_sofia@127.0.0.1:5060")
        self._peer_port += 1
        port = self._peer_port
        name = f"sofia/{profile}/{caller_id}@{self.peer_ip}:{port}"
        ch = SimChannel(
            sim=self,
            uuid=uuid or new_uuid(),
            direction="inbound",
            name=name,
            destination=destination,
            caller_id=caller_id,
            caller_name=caller_name or caller_id,
            context=context,
            sofia_profile=profile,
            codec=codec.upper(),
            rate=rate,
        )
        self._register(ch)
        ch.profile = _inbound_profile(ch, self.peer_ip)
        ch.remember_initial()
        self._inbound_routing(ch, port, sip_headers or {})
        sets = list((variables or {}).items())
        if park_timeout:
            sets.append(("park_timeout", park_timeout))
        for k, v in sets:
            app_uuid = ch.execute("set", f"{k}={v}")
            ch.setvar(k, v)
            ch.execute_complete("set", f"{k}={v}", app_uuid=app_uuid)
        if answered:
            app_uuid = ch.execute("answer")
            self.answer(ch)
            ch.execute_complete("answer", app_uuid=app_uuid)
        for app, data in apps or ():
            if not self._dialplan_app(ch, app, data):
                await asyncio.sleep(0)
                return ch
        self._dialplan_park(ch)
        await asyncio.sleep(0)
        return ch

    def _dialplan_app(self: SimulatedFreeSwitch, ch: SimChannel, app: str, data: str) -> bool:
        """One dialplan application before the park; False when it hung the call up."""
        app_uuid = ch.execute(app, data)
        if app == "set":
            name, _, value = data.partition("=")
            ch.setvar(name, value or None)
        elif app == "unset":
            ch.setvar(data, None)
        elif app == "hangup":
            ch.running_app = (app, data, app_uuid)
            self.hangup(ch, normalize_cause(data or "NORMAL_CLEARING"))
            return False
        elif app == "limit":
            args = parse_limit(data)
            if args is not None and args.backend == "hash":
                ok, variables = self.limits.incr(ch.uuid, args, int(self.limit_clock()))
                ch.setvars(variables)
                if not ok and args.transfer.startswith("!"):
                    ch.running_app = (app, data, app_uuid)
                    self.hangup(ch, normalize_cause(args.transfer[1:]))
                    return False
                if not ok:
                    raise NotImplementedError("simulator: limit's transfer to an extension is not modelled")
        else:
            raise NotImplementedError(f"simulator: dialplan application {app!r} before the park is not modelled")
        ch.execute_complete(app, data, app_uuid=app_uuid)
        return True

    async def dialplan_call(self: SimulatedFreeSwitch, dialplan: ET.Element, *, destination: str,
                            caller_id: str = "+15551230000", context: str = "trunk-x",
                            sip_headers: dict[str, str] | None = None, sdp: str = "",
                            **kw: Any) -> SimChannel | DialplanOutcome:  # fmt: skip
        """An INVITE routed by a rendered dialplan (``tests/fsxml.assemble`` of the tree): mod_dialplan_xml's hunt of
        ``context`` (:mod:`.xmldialplan`), then :meth:`inbound_call` running the applications it queued (in the
        context it ended in, after any ``transfer``): parked, or hung up by a ``hangup`` or ``limit``. A hunt that
        neither parks nor hangs up returns its outcome (no channel).

        ``sip_headers`` are the INVITE's headers (``sip_h_<name>``), ``sdp`` the offer (``switch_r_sdp``)."""
        headers = sip_headers or {}
        variables = {f"sip_h_{k}": v for k, v in headers.items()}
        variables["switch_r_sdp"] = sdp
        profile = {"destination_number": destination, "caller_id_number": caller_id,
                   "caller_id_name": kw.get("caller_name") or caller_id, "context": context}  # fmt: skip
        outcome = run_dialplan(dialplan, context, profile, variables)
        if not outcome.parked and not outcome.hangup:
            return outcome
        return await self.inbound_call(destination=destination, caller_id=caller_id, context=outcome.context,
                                       apps=outcome.applications, sip_headers=headers, **kw)  # fmt: skip

    def _inbound_routing(self: SimulatedFreeSwitch, ch: SimChannel, port: int, sip_headers: dict[str, str]) -> None:
        """CS_NEW through CHANNEL_CREATE and routing to CHANNEL_STATE(CS_EXECUTE) (fixture 11)."""
        # CS_NEW: the very first event has no codec and no caller profile
        ch.has_profile = False
        ch.set_state("CS_NEW")
        ch.fire("CHANNEL_STATE")
        ch.has_profile = True
        ch.fire_codec()
        ch.fire_state("CS_INIT")
        dialog = InboundDialog.of(ch, self.peer_ip, port)
        ch.sip_call_id, ch.sip_via, ch.sip_full_from = dialog.call_id, dialog.via, dialog.full_from
        ch.sip_display, ch.sip_port = dialog.display, port
        prof_url = self.profiles[ch.sofia_profile]
        ch.setvars(inbound_vars(ch, dialog, local=self.local_ip, prof_url=prof_url, sip_headers=sip_headers))
        ch.set_state("CS_INIT", 2)
        ch.fire("CHANNEL_CREATE")
        ch.set_state("CS_ROUTING")
        ch.fire_callstate("RINGING")
        ch.fire_state("CS_ROUTING")
        self.sequence += 1  # recorded: one event of the routing step never reaches a listener
        ch.setvar("call_uuid", ch.uuid)
        ch.fire_state("CS_EXECUTE")

    def _register(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        self.channels[ch.uuid] = ch
        self.sessions_since_startup += 1
        ch.session_id = self.sessions_since_startup
        self.peak_sessions = max(self.peak_sessions, len(self.channels))
        ch.gone = asyncio.Event()

    # -- answer -------------------------------------------------------------------------------------
    def answer(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """Answer an inbound channel: CHANNEL_ANSWER, CHANNEL_CALLSTATE(ACTIVE) (recorded for uuid_answer)."""
        self._fire_answer(ch)
        if ch.direction == "inbound":
            prof_port = self.profiles[ch.sofia_profile].rsplit(":", 1)[-1]
            to_tag = ch.to_tag or new_uuid()[:13].replace("-", "")
            ch.to_tag = to_tag
            post: list[tuple[str, str]] = [
                ("endpoint_disposition", "ANSWER"),
                ("sip_to_tag", to_tag),
                ("sip_from_tag", ch.tag),
                ("sip_cseq", "1"),
                ("sip_call_id", ch.sip_call_id),
                ("sip_full_via", ch.sip_via),
            ]
            if ch.sip_display:
                post.append(("sip_from_display", ch.sip_display))
            post += [
                ("sip_full_from", ch.sip_full_from),
                ("sip_full_to", f"<sip:{ch.destination}@{self.local_ip}:{prof_port}>;tag={to_tag}"),
            ]
            ch.setvars(post)

    def _fire_answer(self, ch: SimChannel) -> None:
        """``switch_channel_perform_mark_answered``: media up, CHANNEL_ANSWER, CHANNEL_CALLSTATE(ACTIVE)."""
        ch.setvars(ch.answer_media_vars())
        ch.answered = True
        ch.media = True
        ch.answer_state = "answered"
        ch.times["answered"] = now_us()
        ch.fire("CHANNEL_ANSWER")
        ch.fire_callstate("ACTIVE")

    # -- park ---------------------------------------------------------------------------------------
    def _dialplan_park(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """The dialplan's ``park`` application (reads and clears ``park_timeout``)."""
        app_uuid = ch.execute("park")
        ch.running_app = ("park", "", app_uuid)
        timeout = ch.variables.get("park_timeout")
        ch.setvar("park_timeout", None)
        ch.enter_park()
        if timeout:
            secs, _, cause = timeout.partition(":")
            try:
                seconds = float(secs)
            except ValueError:
                seconds = 0
            if seconds > 0:
                ch.park_timer = self.spawn(self._park_timeout(ch, seconds, normalize_cause(cause or "NORMAL_CLEARING")))

    async def _park_timeout(self: SimulatedFreeSwitch, ch: SimChannel, seconds: float, cause: str) -> None:
        await asyncio.sleep(seconds)
        ch.park_timer = None
        if ch.alive and ch.parked:
            self.hangup(ch, cause)

    def _cancel_park_timer(self, ch: SimChannel) -> None:
        timer = ch.park_timer
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        ch.park_timer = None

    def park(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """``uuid_park`` (recorded in tests/fixtures_esl/11-park-claim)."""
        self._cancel_park_timer(ch)
        if ch.parked and ch.running_app and ch.running_app[0] == "park":
            ch.state_number = 6
            ch.unpark()
            ch.finish_app()
            ch.fire_state("CS_PARK")
            ch.enter_park()
        elif ch.parked:
            ch.unpark()  # recorded quirk: no new CHANNEL_PARK, the state is already CS_PARK
        elif ch.state == "CS_PARK":
            pass
        else:
            if ch.bridged_to:
                peer = self.channels.get(ch.bridged_to)
                if peer is not None:
                    self._peer_gone(peer, ch)
            ch.finish_app()
            ch.fire_state("CS_PARK")
            ch.enter_park()

    # -- hangup -------------------------------------------------------------------------------------
    def hangup(self: SimulatedFreeSwitch, ch: SimChannel, cause: str, *, disposition: str | None = None,
               pre_vars: list[tuple[str, str]] | None = None, post_vars: list[tuple[str, str]] | None = None,
               result_hook: Any = None) -> None:  # fmt: skip
        """Hang a channel up and run the recorded teardown sequence up to CHANNEL_STATE(CS_DESTROY).

        ``result_hook`` (an originate's BACKGROUND_JOB) runs after CHANNEL_HANGUP when
        ``bgjob_before_hangup_complete`` is set, else after CHANNEL_HANGUP_COMPLETE.
        """
        if not ch.alive or ch.hangup_cause:
            return
        self._cancel_park_timer(ch)
        self._cancel_media_timer(ch)
        disposition = disposition or _default_disposition(ch)
        ch.setvars(pre_vars or [])
        self._unhold_at_hangup(ch)
        self._hangup_channel(ch, cause, disposition)
        self.limits.release(ch.uuid)  # the limit state handler: every key the channel held
        if ch.direction == "inbound" and not ch.answered and disposition == "send_refuse":
            ch.sip_response = _refusal(ch, cause)
        if result_hook is not None and self.bgjob_before_hangup_complete:
            result_hook()
        ch.unpark()
        ch.finish_app()
        ch.fire_state("CS_HANGUP")
        self._drop_forks(ch)
        self._drop_recordings(ch)
        self._drop_avmd(ch)
        ch.fire_callstate("HANGUP")
        self._report_hangup(ch, cause, disposition, post_vars or [])
        if result_hook is not None and not self.bgjob_before_hangup_complete:
            result_hook()
        self._destroy(ch)

    def _hangup_channel(self, ch: SimChannel, cause: str, disposition: str) -> None:
        """``switch_channel_perform_hangup``: the cause is set and CHANNEL_HANGUP fires."""
        ch.dialog_ended = True
        ch.hangup_cause = cause
        ch.answer_state = "hangup"
        ch.times["hangup"] = now_us()
        ch.state_number = 10
        ch.fire("CHANNEL_HANGUP")
        if disposition in ("recv_bye", "recv_cancel"):
            ch.setvar("sip_hangup_disposition", disposition)
        ch.setvars(ch.hangup_cause_vars(cause))

    def _report_hangup(self, ch: SimChannel, cause: str, disposition: str, post_vars: list[tuple[str, str]]) -> None:
        """CS_REPORTING: the CDR variables, then CHANNEL_HANGUP_COMPLETE."""
        ch.fire_state("CS_REPORTING")
        ch.setvars(ch.cdr_vars())
        if disposition not in ("recv_bye", "recv_cancel", "recv_refuse") and not ch.refer_notified:
            ch.setvar("sip_hangup_disposition", disposition)
        ch.setvars(post_vars)
        if ch.media:
            ch.setvars(ch.rtp.variables(time.monotonic()) if ch.rtp is not None else ch.rtp_stats)
        ch.fire("CHANNEL_HANGUP_COMPLETE", pre=[("Hangup-Cause", cause)])

    def _destroy(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """The bridge peer learns it is alone; CHANNEL_DESTROY, CS_DESTROY; the channel leaves ``channels``."""
        peer = self.channels.get(ch.bridged_to or "")
        if peer is not None and peer.alive:
            self._peer_gone(peer, ch)
        if ch.bridge_done is not None and not ch.bridge_done.done():
            ch.bridge_done.set_result(None)
        ch.state_number = 12
        ch.fire("CHANNEL_DESTROY")
        ch.fire_state("CS_DESTROY")
        ch.alive = False
        self.channels.pop(ch.uuid, None)
        if any(f.get("client") is not None for f in ch.forks):
            self._gone[ch.uuid] = ch
        ch.gone.set()

    def _reject(self: SimulatedFreeSwitch, ch: SimChannel, status: int, result_hook: Any = None) -> str:
        """A ringing outbound leg gets a SIP error (fixture 04 variables)."""
        cause, phrase = SIP_FAILURES.get(status, ("NORMAL_TEMPORARY_FAILURE", "Service Unavailable"))
        pre = [
            ("sip_hangup_disposition", "recv_refuse"),
            ("sip_invite_failure_status", str(status)),
            ("sip_invite_failure_phrase", phrase),
            ("sip_term_status", str(status)),
            ("proto_specific_hangup_cause", f"sip:{status}"),
            ("sip_term_cause", str(q850(cause))),
        ]
        self.hangup(ch, cause, disposition="recv_refuse", pre_vars=pre, result_hook=result_hook)
        return cause


def _refusal(ch: SimChannel, cause: str) -> tuple[int, str, dict[str, str]]:
    """What sofia_on_hangup answers an unanswered inbound INVITE with: the cause's status and phrase, and each
    ``sip_rh_<Name>`` variable as a ``Name`` header (sofia_glue_get_extra_headers)."""
    status, phrase = CAUSE_TO_SIP.get(cause, (480, "Temporarily Unavailable"))
    headers = {k[len("sip_rh_") :]: v for k, v in ch.variables.items() if k.startswith("sip_rh_") and v}
    return status, phrase, headers


def _default_disposition(ch: SimChannel) -> str:
    """Who ends the dialog when nobody says: BYE when answered, else refuse an inbound / CANCEL an outbound."""
    if ch.answered:
        return "send_bye"
    return "send_refuse" if ch.direction == "inbound" else "send_cancel"


def _inbound_profile(ch: SimChannel, peer: str) -> dict[str, str]:
    """The caller profile of an inbound channel (fixture 11's ``Caller-*`` headers)."""
    return {
        "Direction": "inbound",
        "Logical-Direction": "inbound",
        "Username": ch.caller_id,
        "Dialplan": "XML",
        "Caller-ID-Name": ch.caller_name,
        "Caller-ID-Number": ch.caller_id,
        "Orig-Caller-ID-Name": ch.caller_name,
        "Orig-Caller-ID-Number": ch.caller_id,
        "Network-Addr": peer,
        "ANI": ch.caller_id,
        "Destination-Number": ch.destination,
        "Unique-ID": ch.uuid,
        "Source": "mod_sofia",
        "Context": ch.context,
        "Channel-Name": ch.name,
        "Profile-Index": "1",
    }
