"""Dialing in the simulator: ``originate`` and the ``bridge`` application's outbound leg, from the dial string to a
ringing, answered or failed channel.

Models FreeSWITCH 1.10.12's ``switch_ivr_originate`` (``src/switch_ivr_originate.c``: the dial string's ``{...}``
/ ``[...]`` variables, ``originate_timeout`` / ``leg_timeout``, ``origination_*``, the caller-ID flip after
answer), mod_commands' ``originate`` API (``mod_commands.c`` ``originate_function``: ``+OK <uuid>`` /
``-ERR <CAUSE>``) and mod_sofia's outbound INVITE (``mod_sofia.c`` ``sofia_outgoing_channel``: ``sofia/gateway/``,
``sofia/<profile>/``; replies in ``sofia.c``). Event sequences: originate success / failure, fixtures 03 / 04;
the dial-string grammar is :mod:`.fsstrings` (checked against a real switch in tests/integration/test_dial_strings.py).
How the far end answers is scripted per destination (``set_originate_outcome``: :class:`Outcome`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import fsstrings
from .callerprofile import insert_after, ordered
from .causes import normalize_cause
from .channel import SimChannel, new_uuid, now_us
from .sofiavars import outbound_answer_vars, outbound_vars, reply_vars

if TYPE_CHECKING:  # pragma: no cover
    from .api import Job
    from .server import SimulatedFreeSwitch

_CANCELLED = [("sip_invite_failure_status", "487"), ("sip_invite_failure_phrase", "CANCEL")]


class DialError(Exception):
    """An originate that fails before any channel exists (INVALID_GATEWAY, CHAN_NOT_IMPLEMENTED, ...)."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


@dataclass
class Outcome:
    """How the far end answers an outbound leg."""

    kind: str  # "answer", "no-answer" or a SIP status ("486", ...)
    ring_ms: int = 50
    answer_ms: int = 100
    early: str | None = "180"


@dataclass(frozen=True)
class DialTarget:
    """Where a dial string's first leg goes, as mod_sofia resolves its endpoint."""

    gateway: str | None
    profile: str
    uri: str  # user@host[:port] of the request URI
    number: str  # its user part (Destination-Number)
    name: str  # the channel name


def parse_dial_string(dial: str) -> tuple[list[tuple[str, str]], str]:
    """``{a=b,c=d}[e=f]sofia/...`` -> ([("a","b"), ...], "sofia/..."): the variables and endpoint of the first leg
    as FreeSWITCH takes the dial string apart (:func:`.fsstrings.parse_dial_string` has every leg)."""
    parsed = fsstrings.parse_dial_string(dial)
    leg = parsed.groups[0][0]
    return parsed.variables + leg.variables, leg.endpoint


def dial_variables(parsed: fsstrings.DialString, dial: str) -> list[tuple[str, str]]:
    """The first leg's variables FreeSWITCH sets: it refuses a value that looks like ``${...}``
    (``switch_string_var_check_const``) unless ``origination_nested_vars`` is on."""
    first = parsed.groups[0][0]
    nested = any(k == "origination_nested_vars" for k, _ in parsed.variables) or (
        "origination_nested_vars=true" in dial.lower()
    )
    return [(k, v) for k, v in parsed.variables + first.variables if nested or not fsstrings.var_check(v)]


def _caller_id(vmap: dict[str, str], cid: tuple[str | None, str | None],
               originator: SimChannel | None) -> tuple[str, str | None]:  # fmt: skip
    """(number, name): ``origination_caller_id_*``, else the API's arguments, else the originator's, else zeros."""
    cid_num = vmap.get("origination_caller_id_number") or cid[1]
    cid_name = vmap.get("origination_caller_id_name") or cid[0]
    if originator is not None:
        cid_num = cid_num or originator.profile.get("Caller-ID-Number")
        cid_name = cid_name or originator.profile.get("Caller-ID-Name")
    return cid_num or "0000000000", cid_name


def _outbound_profile(leg: SimChannel, cid_num: str, cid_name: str | None,
                      originator: SimChannel | None) -> dict[str, str]:  # fmt: skip
    """The caller profile of a new outbound leg (fixture 03 / 14-bridge order)."""
    prof: dict[str, str | None] = {"Direction": "outbound", "Logical-Direction": "outbound"}
    if originator is not None:
        prof["Username"] = originator.profile.get("Username", cid_num)
        prof["Dialplan"] = originator.profile.get("Dialplan", "XML")
    if cid_name:
        prof["Caller-ID-Name"] = cid_name
    prof["Caller-ID-Number"] = cid_num
    if cid_name:
        prof["Orig-Caller-ID-Name"] = cid_name
    prof.update(
        {
            "Orig-Caller-ID-Number": cid_num,
            "Callee-ID-Name": "Outbound Call",
            "Callee-ID-Number": leg.destination,
            "Network-Addr": originator.profile.get("Network-Addr") if originator is not None else None,
            "ANI": cid_num,
            "Destination-Number": leg.destination,
            "Unique-ID": leg.uuid,
            "Source": "mod_sofia" if originator is not None else "src/switch_ivr_originate.c",
            "Context": leg.context,
            "Channel-Name": leg.name,
            "Profile-Index": "1",
        }
    )
    return {k: v for k, v in prof.items() if v is not None}


def _flip_caller_id(leg: SimChannel) -> None:
    """After answer, originate shows the leg as a call to its destination from "Outbound Call" (CALL_UPDATE)."""
    old_num = leg.profile.get("Caller-ID-Number", "")
    leg.setvar("pre_transfer_caller_id_number", old_num)
    leg.setvar("channel_cid_flipped", "yes")
    prof = {k: v for k, v in leg.profile.items() if k not in ("Callee-ID-Name",)}
    prof["Caller-ID-Name"] = "Outbound Call"
    prof["Caller-ID-Number"] = leg.destination
    prof["Callee-ID-Number"] = old_num
    leg.profile = ordered(prof)
    leg.hit_dialplan = True
    leg.fire("CALL_UPDATE", pre=[("Direction", "RECV")])


class Dialing:
    """Mixin of :class:`~simulator.server.SimulatedFreeSwitch`: outbound legs and the ``originate`` API."""

    _outcomes: list[tuple[str, Outcome]]

    def _outcome_for(self, number: str, uri: str, endpoint: str) -> Outcome:
        for pattern, outcome in self._outcomes:
            if any(fnmatch.fnmatchcase(x, pattern) for x in (number, uri, endpoint)):
                return outcome
        return Outcome("answer")

    # -- the leg ------------------------------------------------------------------------------------
    def _create_outbound(self: SimulatedFreeSwitch, dial: str, originator: SimChannel | None = None,
                         cid: tuple[str | None, str | None] = (None, None)) -> SimChannel:  # fmt: skip
        """Create the outbound leg for a dial string and fire CHANNEL_OUTGOING ... CHANNEL_STATE(CS_CONSUME_MEDIA)."""
        try:
            parsed = fsstrings.parse_dial_string(dial)
        except fsstrings.ParseError:
            raise DialError("DESTINATION_OUT_OF_ORDER") from None
        self.dial_strings.append(parsed)
        endpoint = parsed.groups[0][0].endpoint
        variables = dial_variables(parsed, dial)
        vmap = dict(variables)
        target = self._resolve_endpoint(endpoint)
        cid_num, cid_name = _caller_id(vmap, cid, originator)
        leg = SimChannel(
            sim=self,
            uuid=vmap.get("origination_uuid") or new_uuid(),
            direction="outbound",
            name=target.name,
            destination=target.number,
            caller_id=cid_num,
            caller_name=cid_name or "",
            context=originator.profile.get("Context", "default") if originator else "default",
            sofia_profile=target.profile,
            codec=(vmap.get("absolute_codec_string") or "PCMU").split(",")[0].split("@")[0].upper(),
        )
        leg.rate = 16000 if leg.codec == "G722" else 8000
        self._register(leg)
        leg.hit_dialplan = False
        leg.outcome = self._outcome_for(target.number, target.uri, endpoint)
        leg.originate_timeout = vmap.get("originate_timeout") or vmap.get("leg_timeout")
        leg.profile = _outbound_profile(leg, cid_num, cid_name, originator)
        leg.remember_initial()
        if originator is not None:
            leg.set_other(originator, "originator")
        self._fire_outgoing(leg, target, variables, vmap.get("absolute_codec_string"))
        return leg

    def _resolve_endpoint(self: SimulatedFreeSwitch, endpoint: str) -> DialTarget:
        """``sofia/gateway/<gw>/<number>`` or ``sofia/<profile>/<uri>``; ``error/<cause>`` and anything else fail."""
        gateway = None
        if endpoint.startswith("sofia/gateway/"):
            gateway, _, number = endpoint[len("sofia/gateway/") :].partition("/")
            if gateway not in self.gateways:
                if not self.auto_gateways:
                    raise DialError("INVALID_GATEWAY")
                self.add_gateway(gateway)
            info = self.gateways[gateway]
            if info.get("status", "UP") != "UP":  # mod_sofia.c: "Gateway '%s' is down!"
                raise DialError("GATEWAY_DOWN")
            profile, host = info["profile"], info["proxy"]
            number = number.removeprefix("sip:")
            uri = number if "@" in number else f"{number}@{host}"
            number = number.split("@")[0]
            name = f"sofia/{profile}/{number}"
        elif endpoint.startswith("sofia/"):
            profile, _, uri = endpoint[len("sofia/") :].partition("/")
            if profile not in self.profiles:
                raise DialError("INVALID_PROFILE")
            uri = uri.removeprefix("sip:")
            number = uri.split("@")[0]
            name = f"sofia/{profile}/{uri}"
        elif endpoint.startswith("error/"):
            raise DialError(normalize_cause(endpoint[len("error/") :]))
        else:
            raise DialError("CHAN_NOT_IMPLEMENTED")
        if not number:
            raise DialError("INVALID_URL")
        return DialTarget(gateway, profile, uri, number, name)

    def _fire_outgoing(self: SimulatedFreeSwitch, leg: SimChannel, target: DialTarget,
                       variables: list[tuple[str, str]], codec_string: str | None) -> None:  # fmt: skip
        """CHANNEL_OUTGOING, CS_INIT, the variables, CHANNEL_CREATE, CHANNEL_ORIGINATE, CS_ROUTING, CS_CONSUME_MEDIA."""
        leg.set_state("CS_NONE", 1)
        leg.fire("CHANNEL_OUTGOING")
        leg.fire_state("CS_INIT", 1)
        prof_url = self.profiles[target.profile]
        leg.setvars(
            outbound_vars(
                leg,
                gateway=target.gateway,
                profile=target.profile,
                prof_url=prof_url,
                local=self.local_ip,
                uri=target.uri,
                variables=variables,
                codec_string=codec_string,
            )
        )
        leg.set_state("CS_INIT", 2)
        leg.fire("CHANNEL_CREATE")
        leg.fire("CHANNEL_ORIGINATE")
        leg.fire_state("CS_ROUTING", 2)
        leg.fire_state("CS_CONSUME_MEDIA")

    # -- ringing and answer -------------------------------------------------------------------------
    async def _sleep_or_gone(self, leg: SimChannel, seconds: float, also: SimChannel | None = None) -> bool:
        """Sleep; stop early (returning False) when ``leg`` -- or ``also`` -- goes away."""
        if seconds > 0:
            waits = [asyncio.ensure_future(x.gone.wait()) for x in (leg, also) if x is not None]
            try:
                await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
        return leg.alive and (also is None or also.alive)

    async def _progress_outbound(self: SimulatedFreeSwitch, leg: SimChannel, *, flip_cid: bool,
                                 originator: SimChannel | None = None, hook: Any = None,
                                 timeout: float | None = None) -> bool:  # fmt: skip
        """Ring and answer (True) or fail (False) an outbound leg according to its outcome."""
        out: Outcome = leg.outcome
        host = leg.variables.get("sip_req_uri", "").split("@")[-1]
        started = time.monotonic()

        def abandoned() -> bool:
            return originator is not None and not originator.alive

        if not await self._sleep_or_gone(leg, out.ring_ms / 1000, originator) or abandoned():
            return self._abandon(leg, hook, originator)
        leg.profile = insert_after(leg.profile, "Callee-ID-Number", "Network-Addr", host.split(":")[0])
        leg.setvars(reply_vars(leg, host))
        _fire_early(leg, out.early)
        if out.kind == "no-answer":
            left = max(0.0, self._ring_limit(leg, timeout) - (time.monotonic() - started))
            if not await self._sleep_or_gone(leg, left, originator) or abandoned():
                return self._abandon(leg, hook, originator)
            self.hangup(leg, "NO_ANSWER", disposition="send_cancel", post_vars=_CANCELLED, result_hook=hook)
            return False
        if not await self._sleep_or_gone(leg, out.answer_ms / 1000, originator) or abandoned():
            return self._abandon(leg, hook, originator)
        if out.kind != "answer":
            self._reject(leg, int(out.kind), result_hook=hook)
            return False
        leg.fire_codec()
        leg.setvars(outbound_answer_vars(leg, host.split(":")[0]))
        self._fire_answer(leg)
        leg.setvar("endpoint_disposition", "ANSWER")
        if flip_cid:
            _flip_caller_id(leg)
        return True

    def _ring_limit(self: SimulatedFreeSwitch, leg: SimChannel, timeout: float | None) -> float:
        """How long an unanswered leg rings: its ``originate_timeout``, else the API's, else the default (60 s);
        in real seconds times ``ring_time_scale``."""
        limit = timeout
        if leg.originate_timeout:
            try:
                limit = float(leg.originate_timeout)
            except ValueError:
                limit = None
        return (self.default_originate_timeout if limit is None else limit) * self.ring_time_scale

    def _abandon(self: SimulatedFreeSwitch, leg: SimChannel, hook: Any, originator: SimChannel | None) -> bool:
        if leg.alive:  # the caller went away while the leg was ringing
            self.hangup(leg, "ORIGINATOR_CANCEL", disposition="send_cancel", post_vars=_CANCELLED, result_hook=hook)
        elif hook is not None:
            hook()
        return False

    # -- the originate API --------------------------------------------------------------------------
    async def originate(self: SimulatedFreeSwitch, dial: str, app_spec: str, rest: list[str],
                        job: Job | None) -> str:  # fmt: skip
        """``originate``: body ``+OK <uuid>\\n`` after CHANNEL_ANSWER, or ``-ERR <CAUSE>\\n``."""
        cid_name = rest[2] if len(rest) > 2 else None
        cid_num = rest[3] if len(rest) > 3 else None
        timeout = None
        if len(rest) > 4:
            try:
                timeout = float(rest[4])
            except ValueError:
                timeout = None
        try:
            leg = self._create_outbound(dial, cid=(cid_name, cid_num))
        except DialError as e:
            return f"-ERR {e.cause}\n"
        result: list[str] = []

        def hook() -> None:
            body = f"-ERR {leg.hangup_cause}\n"
            result.append(body)
            if job is not None:
                job.complete(body)

        ok = await self._progress_outbound(leg, flip_cid=True, hook=hook, timeout=timeout)
        if not ok:
            return result[0] if result else f"-ERR {leg.hangup_cause or 'NORMAL_TEMPORARY_FAILURE'}\n"
        body = f"+OK {leg.uuid}\n"
        if job is not None:
            job.complete(body)
        leg.setvar("call_uuid", leg.uuid)
        leg.fire_state("CS_EXECUTE")
        self._after_originate(leg, app_spec)
        return body

    def _after_originate(self: SimulatedFreeSwitch, leg: SimChannel, app_spec: str) -> None:
        """``&app(args)`` runs the application on the answered leg; an extension (no dialplan here) parks it."""
        if app_spec.startswith("&"):
            name, _, args = app_spec[1:].partition("(")
            args = args[:-1] if args.endswith(")") else args
            if name == "park" or not name:
                self._dialplan_park(leg)
            else:
                self.spawn(self._run_after_originate(leg, name, args))
        else:
            self._dialplan_park(leg)  # the simulator has no dialplan: an extension parks the leg

    async def _run_after_originate(self: SimulatedFreeSwitch, leg: SimChannel, app: str, args: str) -> None:
        await self._exec_app(leg, app, args)
        if leg.alive and not leg.parked:
            self.hangup(leg, "NORMAL_CLEARING")


def _fire_early(leg: SimChannel, early: str | None) -> None:
    """The far end's first provisional reply: 183 with SDP (early media) or 180 (ringing); nothing for None."""
    if early == "183":
        leg.times["progress_media"] = now_us()
        leg.media = True
        leg.fire("CHANNEL_PROGRESS_MEDIA")
        leg.fire_callstate("EARLY")
    elif early:
        leg.times["progress"] = now_us()
        leg.fire("CHANNEL_PROGRESS")
        leg.fire_callstate("RINGING")
