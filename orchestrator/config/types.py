"""Value types of the deployment file, each with a validator that explains what is wrong."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field

Transport = Literal["tcp", "tls", "udp"]
MediaEncryption = Literal["disabled", "allowed", "required"]
Codec = Literal["PCMU", "PCMA", "G722"]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_X_HEADER = re.compile(r"X-[A-Za-z0-9][A-Za-z0-9-]*")
_VARIABLE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_TOKEN = re.compile(r"[A-Za-z0-9._~+-]{1,128}")

CODEC_ALIASES = {
    "pcmu": "PCMU",
    "g711u": "PCMU",
    "g.711u": "PCMU",
    "ulaw": "PCMU",
    "pcma": "PCMA",
    "g711a": "PCMA",
    "g.711a": "PCMA",
    "alaw": "PCMA",
    "g722": "G722",
    "g.722": "G722",
}

CODEC_RATES = {"PCMU": 8000, "PCMA": 8000, "G722": 16000}


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"'{value}' is not a valid name: use lower-case letters, digits, '-' and '_' "
            "(starting with a letter or digit, at most 63 characters)"
        )
    return value


def _e164(value: str) -> str:
    if _E164.fullmatch(value):
        return value
    compact = re.sub(r"[\s().-]", "", value)
    if compact != value and _E164.fullmatch(compact):
        raise ValueError(f"'{value}' is not E.164: write it without spaces or punctuation, as '{compact}'")
    if re.fullmatch(r"[1-9][0-9]{1,14}", value):
        raise ValueError(f"'{value}' is not E.164: it needs a leading '+' and the country code, e.g. '+{value}'")
    if value.startswith("00") and value[2:].isdigit():
        raise ValueError(f"'{value}' is not E.164: replace the international prefix 00 with '+', e.g. '+{value[2:]}'")
    if value.startswith("+0"):
        raise ValueError(f"'{value}' is not E.164: country codes never start with 0")
    if value.startswith("+") and value[1:].isdigit() and len(value) > 16:
        raise ValueError(f"'{value}' is not E.164: at most 15 digits after '+'")
    raise ValueError(
        f"'{value}' is not E.164: expected '+', the country code and the subscriber number, e.g. +15551234567"
    )


def _cidr(value: str) -> str:
    text = str(value).strip()
    try:
        if "/" not in text:
            return str(ipaddress.ip_network(text))  # a single address is its own /32 (or /128)
        return str(ipaddress.ip_network(text, strict=True))
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(
            f"'{value}' is not a valid CIDR network (expected e.g. 203.0.113.0/24 or 2001:db8::/32)"
        ) from None
    raise ValueError(f"'{value}' has host bits set: the network is {loose}")


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(str(value).strip()))
    except ValueError:
        raise ValueError(f"'{value}' is not an IP address (FreeSWITCH binds to addresses, not host names)") from None


def is_hostname(value: str) -> bool:
    """True when ``value`` is a DNS name made of valid labels."""
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return False
    return all(_LABEL.fullmatch(label) for label in name.split("."))


def _host(value: str) -> str:
    text = str(value).strip()
    lower = text.lower()
    for scheme in ("sips:", "sip:"):
        if lower.startswith(scheme):
            rest = text[len(scheme) :]
            raise ValueError(
                f"write the address without '{scheme}': '{rest}' (the transport and port are separate settings)"
            )
    if "@" in text:
        raise ValueError(f"'{text}' is a SIP URI, not an address: give only the host name or IP (e.g. sip.example.com)")
    if ";" in text or "/" in text or " " in text:
        raise ValueError(f"'{text}' is not a host name or IP address")
    try:
        return str(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        pass
    if re.fullmatch(r"[^:]+:\d+", text):
        host, port = text.rsplit(":", 1)
        raise ValueError(f"put the port in its own setting: address '{host}' with port {port}")
    if not is_hostname(text):
        raise ValueError(f"'{text}' is not a valid host name or IP address")
    return lower


def _domain(value: str) -> str:
    text = str(value).strip().lower()
    bare = text[2:] if text.startswith("*.") else text
    if not is_hostname(bare) or "." not in bare:
        raise ValueError(f"'{value}' is not a domain name (e.g. sip.example.com or *.example.com)")
    return text


def _ext_address(value: str) -> str:
    text = str(value).strip()
    for prefix in ("stun:", "host:"):
        if text.startswith(prefix):
            target = text[len(prefix) :]
            host = target.rsplit(":", 1)[0] if prefix == "stun:" and re.fullmatch(r".+:\d+", target) else target
            if not is_hostname(host):
                raise ValueError(f"'{text}': '{host}' is not a valid host name")
            return text
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError(
            f"'{text}' is not an external address: give an IP, 'stun:<server>' or 'host:<dns-name>'"
        ) from None


def _codec(value: object) -> object:
    if isinstance(value, str):
        return CODEC_ALIASES.get(value.strip().lower(), value)
    return value


def _x_header(value: str) -> str:
    if not _X_HEADER.fullmatch(value):
        raise ValueError(f"'{value}' is not a custom header name: custom headers start with 'X-' (e.g. X-Customer-Id)")
    return value


def _header_value(value: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("header values cannot contain line breaks or control characters")
    if len(value) > 1024:
        raise ValueError("header values are limited to 1024 characters")
    return value


def _variable(value: str) -> str:
    if not _VARIABLE.fullmatch(value):
        raise ValueError(f"'{value}' is not a valid variable name: use lower-case letters, digits and '_'")
    if value.startswith("system__"):
        raise ValueError(f"'{value}': the 'system__' prefix is reserved for the agent platform's own variables")
    return value


def _token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(f"'{value}' is not a valid SIP user name: use letters, digits and . _ ~ + -")
    return value


def _ws_url(value: str) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"wss?://[^\s/?#]+(/[^\s]*)?", text):
        raise ValueError(f"'{text}' is not a WebSocket URL (expected ws://host/path or wss://host/path)")
    return text


Name = Annotated[str, AfterValidator(_name)]
E164 = Annotated[str, AfterValidator(_e164)]
Cidr = Annotated[str, AfterValidator(_cidr)]
IpAddress = Annotated[str, AfterValidator(_ip)]
Host = Annotated[str, AfterValidator(_host)]
Domain = Annotated[str, AfterValidator(_domain)]
ExternalAddress = Annotated[str, AfterValidator(_ext_address)]
CodecName = Annotated[Codec, BeforeValidator(_codec)]
XHeader = Annotated[str, AfterValidator(_x_header)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]
Variable = Annotated[str, AfterValidator(_variable)]
SipUser = Annotated[str, AfterValidator(_token)]
WsUrl = Annotated[str, AfterValidator(_ws_url)]
Port = Annotated[int, Field(ge=1, le=65535)]
