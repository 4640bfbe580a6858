"""What a caller of the API (or an agent) may ask to dial, sans-I/O: trunks, agents, destinations, caller IDs,
headers, variables, transfer targets -- one function per rule -- and the channel variables of an outbound call.

Everything is validated here, with a stable error code, before a command is built
(:mod:`orchestrator.esl.commands`): a destination is an E.164 number or a ``sip:``/``sips:`` URI of a
strict grammar, so the endpoint FreeSWITCH dials is exactly the one requested; header and variable
names follow a strict grammar; values are bounded (:data:`MAX_VALUE` each, :data:`MAX_HEADER_BYTES` /
:data:`MAX_VARIABLE_BYTES` per request, :data:`MAX_ENTRIES` entries) and may hold anything FreeSWITCH can
carry byte for byte (see :mod:`orchestrator.esl.quoting`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pydantic import ValidationError

from orchestrator import channelvars
from orchestrator.config.model import AgentOverrides, Deployment, Trunk
from orchestrator.config.types import VARIABLE_NAME, X_HEADER_NAME
from orchestrator.esl.quoting import Refused, variable_value

MAX_VALUE = 1024
MAX_HEADER_BYTES = 16 * 1024
#: variables also reach the agent in the fork metadata, which mod_audio_fork caps at 8 KiB
MAX_VARIABLE_BYTES = 4 * 1024
MAX_ENTRIES = 64
MAX_URI = 256

_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_USER = re.compile(r"(?:[A-Za-z0-9\-_.!~*+&=$]|%[0-9A-Fa-f]{2}){1,64}")
_PARAM = re.compile(r"[A-Za-z0-9\-_.!~*+]{1,32}(?:=(?:[A-Za-z0-9\-_.!~*+]|%[0-9A-Fa-f]{2}){1,64})?")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_PORT = re.compile(r"[0-9]{1,5}")


class Invalid(Exception):
    """A request part that cannot be dialed; ``code`` is stable for API clients, ``message`` says why,
    ``status`` is the HTTP status the API answers with (404 for a name the deployment does not know)."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def shown(value: object) -> str:
    """A value from a request, safe to put in an error message (bounded, repr'd)."""
    return repr(value[:64]) if isinstance(value, str) else type(value).__name__


def outbound_trunk(deployment: Deployment, name: object) -> Trunk:
    """The deployment's trunk called ``name``, if it has an outbound side."""
    t = next((t for t in deployment.trunks if t.name == name), None) if isinstance(name, str) else None
    if t is None or t.outbound is None:
        raise Invalid("unknown_trunk", f"no outbound trunk named {shown(name)}", 404)
    return t


def agent(deployment: Deployment, name: object) -> str:
    """The name of one of the deployment's agents."""
    if not isinstance(name, str) or name not in {a.name for a in deployment.agents}:
        raise Invalid("unknown_agent", f"no agent named {shown(name)}", 404)
    return name


def timeout(value: object) -> int | None:
    """An originate timeout: whole seconds, 5 to 600 (None: the deployment's default)."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 5 <= value <= 600):
        raise Invalid("invalid_timeout", "timeout_seconds must be a whole number of seconds, 5-600")
    return value


def e164(value: object, code: str, what: str) -> str:
    """An E.164 number (``+`` and 2 to 15 digits, no leading 0), or :class:`Invalid` with a hint."""
    if not isinstance(value, str) or not _E164.fullmatch(value):
        text = value if isinstance(value, str) else ""
        hint = ""
        if re.fullmatch(r"00[1-9][0-9]{1,14}", text):
            hint = f": replace the international prefix 00 with '+' (+{text[2:]})"
        elif re.fullmatch(r"[1-9][0-9]{1,14}", text):
            hint = f": add '+' and the country code (+{text}?)"
        raise Invalid(code, f"{what} must be an E.164 number like +15551234567{hint}")
    return value


@dataclass(frozen=True)
class SipUri:
    """A SIP URI of the grammar accepted here: ``sip[s]:user@host[:port][;param[=value]]…``."""

    scheme: str
    user: str
    host: str
    port: int | None
    params: tuple[str, ...]

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}:{self.user}@{self.host}{port}" + "".join(f";{p}" for p in self.params)

    @property
    def without_scheme(self) -> str:
        """``user@host[:port][;params]`` (what ``sofia/gateway/<gw>/`` takes)."""
        return str(self).split(":", 1)[1]


def _host(text: str) -> str | None:
    if text.startswith("[") and text.endswith("]"):
        try:
            return f"[{ipaddress.IPv6Address(text[1:-1]).compressed}]"
        except ValueError:
            return None
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        pass
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
        return None
    if name.replace(".", "").isdigit():
        return None  # 1.2.3 or 999.1.1.1: not an address, not a name
    return name.lower()


def sip_uri(value: object, code: str = "invalid_destination", what: str = "destination") -> SipUri:
    """Parse a ``sip:``/``sips:`` URI of the accepted grammar, or :class:`Invalid`."""
    problem = f"{what} must be an E.164 number or a sip: URI like sip:+15551234567@pbx.example.com"
    if not isinstance(value, str) or len(value) > MAX_URI:
        raise Invalid(code, problem)
    scheme, colon, rest = value.partition(":")
    if not colon or scheme.lower() not in ("sip", "sips"):
        raise Invalid(code, problem)
    user, at, hostport = rest.partition("@")
    if not at or not _USER.fullmatch(user):
        raise Invalid(code, f"{problem} (the user part is missing or has characters outside the SIP grammar)")
    hostport, *params = hostport.split(";")
    if len(params) > 8 or not all(_PARAM.fullmatch(p) for p in params):
        raise Invalid(code, f"{problem} (bad URI parameter)")
    port: int | None = None
    if hostport.startswith("["):
        close = hostport.find("]")
        host_text, tail = hostport[: close + 1], hostport[close + 1 :]
    else:
        host_text, colon, tail = hostport.partition(":")
        tail = colon + tail
    if tail:
        if not tail.startswith(":") or not _PORT.fullmatch(tail[1:]) or not 1 <= int(tail[1:]) <= 65535:
            raise Invalid(code, f"{problem} (bad port)")
        port = int(tail[1:])
    host = _host(host_text)
    if host is None:
        raise Invalid(code, f"{problem} (bad host)")
    return SipUri(scheme.lower(), user, host, port, tuple(params))


def destination(to: object) -> str:
    """``to`` as the part after ``sofia/gateway/<gw>/``: an E.164 number or ``user@host…`` of a SIP URI."""
    if isinstance(to, str) and to.startswith("+"):
        return e164(to, "invalid_destination", "destination")
    if isinstance(to, str) and ":" not in to:
        e164(to, "invalid_destination", "destination")  # raises with the hint (00…, missing +)
    return sip_uri(to).without_scheme


def caller_id(value: object) -> str:
    """A caller ID to present: E.164."""
    return e164(value, "invalid_caller_id", "caller_id")


def _bounded(items: object, kind: str, name_rule: re.Pattern[str], total: int, code: str) -> dict[str, str]:
    if items is None:
        return {}
    if not isinstance(items, Mapping):
        raise Invalid(code, f"{kind}s must be an object of names to text values")
    if len(items) > MAX_ENTRIES:
        raise Invalid("request_too_large", f"at most {MAX_ENTRIES} {kind}s")
    size = 0
    out: dict[str, str] = {}
    for name, value in items.items():
        if not isinstance(name, str) or not name_rule.fullmatch(name):
            rule = "an X- header name (X-Letters-Digits-Dashes)" if kind == "header" else "lower_case_with_digits"
            raise Invalid(code, f"{kind} name {shown(name)} is not {rule}")
        if not isinstance(value, str):
            raise Invalid(code, f"{kind} {name}: the value must be text")
        try:
            variable_value(value, f"{kind} {name}", MAX_VALUE)
        except Refused as exc:
            raise Invalid(code, str(exc)) from None
        if not value:
            raise Invalid(code, f"{kind} {name}: the value cannot be empty")
        size += len(name) + len(value.encode())
        if size > total:
            raise Invalid("request_too_large", f"{kind}s may hold at most {total} bytes in all")
        out[name] = value
    return out


def headers(items: object) -> dict[str, str]:
    """X- headers for an INVITE: ``X-Name`` → value. ``X-Sipagent-*`` is refused: behind an edge it names the
    trunk the edge sends the call to (an originate's variables would override the gateway's)."""
    found = _bounded(items, "header", X_HEADER_NAME, MAX_HEADER_BYTES, "invalid_header")
    for name in found:
        if channelvars.is_edge_header(name):
            raise Invalid(
                "invalid_header", f"header {name}: {channelvars.EDGE_HEADER_PREFIX}* is reserved for the edge"
            )
    return found


def variables(items: object) -> dict[str, str]:
    """Call variables for the agent: ``lower_name`` → value."""
    found = _bounded(items, "variable", VARIABLE_NAME, MAX_VARIABLE_BYTES, "invalid_variable")
    for name in found:
        if name.startswith("system__"):
            raise Invalid("invalid_variable", f"variable {name}: 'system__' is reserved for the agent platform")
    return found


def agent_overrides(items: object) -> dict[str, str]:
    """Per-call agent settings (:class:`~orchestrator.config.model.AgentOverrides`: ``first_message``,
    ``language``, ``voice_id``, ``prompt``), as they can travel on the channel and in the fork metadata:
    each at most :data:`MAX_VALUE` bytes, no control characters (a longer prompt belongs in the deployment)."""
    if items is None:
        return {}
    if not isinstance(items, Mapping):
        raise Invalid("invalid_overrides", "agent_overrides must be an object")
    try:
        model = AgentOverrides.model_validate(dict(items))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p)[:32] for p in first.get("loc", ()))
        raise Invalid("invalid_overrides", f"agent_overrides.{where}: {first.get('msg', 'invalid')}") from None
    out = model.values()
    for name, value in out.items():
        try:
            variable_value(value, f"agent_overrides.{name}", MAX_VALUE)
        except Refused as exc:
            raise Invalid("invalid_overrides", str(exc)) from None
    return out


def trunk_address(deployment: Deployment, name: str | None) -> str | None:
    """The outbound address of the trunk called ``name`` (where a REFER to a bare number goes), if any."""
    t = next((t for t in deployment.trunks if t.name == name), None)
    return t.outbound.address if t and t.outbound else None


def refer_target(target: object, trunk_address: str | None) -> str:
    """A REFER target: a SIP URI, or an E.164 number at the trunk's outbound address."""
    if isinstance(target, str) and target.startswith("+"):
        number = e164(target, "invalid_target", "target")
        if not trunk_address:
            raise Invalid("invalid_target", "a number needs the trunk's outbound address: give a sip: URI")
        return str(sip_uri(f"sip:{number}@{trunk_address}", "invalid_target", "target"))
    return str(sip_uri(target, "invalid_target", "target"))


def bridge_target(target: object) -> str:
    """A destination for a bridged transfer through a trunk (as :func:`destination`)."""
    try:
        return destination(target)
    except Invalid as exc:
        raise Invalid("invalid_target", exc.message.replace("destination", "target")) from None


@dataclass(frozen=True)
class Dial:
    """An outbound call request, validated: what :func:`outbound` returns and :func:`channel_variables` sets."""

    trunk: str
    agent: str
    to: str  #: as requested (the record and re-attach show it)
    destination: str  #: what follows ``sofia/gateway/<trunk>/``
    caller_id: str  #: "" for none
    timeout: int | None
    headers: dict[str, str]
    variables: dict[str, str]
    agent_overrides: dict[str, str]

    @property
    def dial_string(self) -> str:
        """The endpoint FreeSWITCH dials."""
        return f"sofia/gateway/{self.trunk}/{self.destination}"


def outbound(
    deployment: Deployment,
    *,
    trunk: object,
    to: object,
    agent_name: object,
    caller: object = None,
    extra_headers: object = None,
    agent_variables: object = None,
    overrides: object = None,
    seconds: object = None,
) -> Dial:
    """Every rule an outbound call request must pass (``caller``: its caller ID, ``seconds``: its timeout),
    in the order their errors are reported."""
    t = outbound_trunk(deployment, trunk)
    assert t.outbound is not None
    name = agent(deployment, agent_name)
    wait = timeout(seconds)
    dest = destination(to)
    assert isinstance(to, str)  # destination() accepted it
    cid = caller_id(caller) if caller is not None else (t.outbound.caller_id or "")
    return Dial(
        trunk=t.name,
        agent=name,
        to=to,
        destination=dest,
        caller_id=cid,
        timeout=wait,
        headers=headers(extra_headers),
        variables=variables(agent_variables),
        agent_overrides=agent_overrides(overrides),
    )


def channel_variables(dial: Dial, uuid: str, default_timeout: int) -> dict[str, str]:
    """The originate's channel variables: ours (:mod:`orchestrator.channelvars`, read back by the tracker),
    FreeSWITCH's for the call, the X- headers of the INVITE, the API variables and agent overrides."""
    out: dict[str, str] = {
        "origination_uuid": uuid,
        channelvars.DIRECTION: "outbound",
        channelvars.AGENT: dial.agent,
        channelvars.TRUNK: dial.trunk,
        channelvars.DESTINATION: dial.to,
        "originate_timeout": str(dial.timeout or default_timeout),
        "ignore_early_media": "true",
    }
    for name in ("sip_refer_continue_after_reply", "send_silence_when_idle"):  # the order the wire has always had
        out[name] = channelvars.ANSWER_VARIABLES[name]
    if dial.caller_id:
        out["origination_caller_id_number"] = dial.caller_id
        out["origination_caller_id_name"] = dial.caller_id
    for name, value in dial.headers.items():
        out[f"sip_h_{name}"] = value
    for name, value in dial.variables.items():
        out[f"{channelvars.API_VARIABLE}{name}"] = value
    for name, value in dial.agent_overrides.items():
        out[f"{channelvars.AGENT_OVERRIDE}{name}"] = value
    return out


def transfer_method(method: object, mode: object) -> str:
    """The transfer a request asks for: ``refer`` or ``bridge`` (``mode`` blind, the default) or ``attended``
    (``mode`` attended, or ``method`` attended)."""
    if mode not in (None, "blind", "attended"):
        raise Invalid("invalid_mode", "mode must be blind or attended")
    if method not in (None, "refer", "bridge", "attended"):
        raise Invalid("invalid_method", "method must be refer, bridge or attended")
    if mode == "attended" and method not in (None, "attended"):
        raise Invalid("invalid_method", f"an attended transfer dials the target through a trunk: not {method}")
    if mode == "blind" and method == "attended":
        raise Invalid("invalid_method", "method attended is an attended transfer, not a blind one")
    if mode == "attended":
        return "attended"
    assert method is None or isinstance(method, str)
    return method or "refer"


@dataclass(frozen=True)
class AttendedDial:
    """An attended transfer's target leg, validated: what :func:`attended` returns."""

    trunk: str
    target: str  #: as requested
    destination: str  #: what follows ``sofia/gateway/<trunk>/``
    caller_id: str  #: "" for the gateway's default
    brief: str
    headers: dict[str, str]

    @property
    def dial_string(self) -> str:
        """The endpoint FreeSWITCH dials."""
        return f"sofia/gateway/{self.trunk}/{self.destination}"


def attended(
    deployment: Deployment, *, trunk: object, target: object, brief: str, caller: str, brief_header: str | None
) -> AttendedDial:
    """An attended transfer to ``target`` through ``trunk``: the target (as :func:`bridge_target`), the caller ID
    to present (``caller``, when it is E.164, else the trunk's) and the brief as the configured X- header."""
    t = outbound_trunk(deployment, trunk)
    assert t.outbound is not None
    dest = bridge_target(target)
    assert isinstance(target, str)
    cid = caller if isinstance(caller, str) and _E164.fullmatch(caller) else (t.outbound.caller_id or "")
    extra: dict[str, str] = {}
    if brief and brief_header:
        try:
            extra = headers({brief_header: brief})
        except Invalid as exc:
            raise Invalid("invalid_brief", exc.message.replace(f"header {brief_header}", "brief")) from None
    return AttendedDial(t.name, target, dest, cid, brief, extra)


def attended_variables(dial: AttendedDial, leg: str, call: str, ring_timeout: int) -> dict[str, str]:
    """The target leg's originate variables: its UUID (ours), the call it is for, FreeSWITCH's ring time-out, the
    caller ID and the brief header. No ``sipagent_agent``: the leg is never taken for a call of its own."""
    out: dict[str, str] = {
        "origination_uuid": leg,
        channelvars.TRANSFER_OF: call,
        "originate_timeout": str(ring_timeout),
        "ignore_early_media": "true",
    }
    if dial.caller_id:
        out["origination_caller_id_number"] = dial.caller_id
        out["origination_caller_id_name"] = dial.caller_id
    for name, value in dial.headers.items():
        out[f"sip_h_{name}"] = value
    return out
