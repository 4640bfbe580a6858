"""Value types of the deployment file, each with a validator that explains what is wrong.

Every string setting has either a strict grammar (names, numbers, addresses, URLs: what FreeSWITCH
and the peers accept, nothing that could change the meaning of the place it is written to) or, for
free text and secrets, a length limit and no unsafe characters (:mod:`orchestrator.config.text`);
the renderer escapes those for XML. Messages quote values through :func:`quote` (shortened,
printable); secrets are never quoted.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr

from orchestrator.config.text import describe, first_unsafe, quote

__all__ = ["e164", "is_hostname", "quote"]

Transport = Literal["tcp", "tls", "udp"]
MediaEncryption = Literal["disabled", "allowed", "required"]
Codec = Literal["PCMU", "PCMA", "G722"]

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_X_HEADER = re.compile(r"X-[A-Za-z0-9][A-Za-z0-9-]{0,125}")
_VARIABLE = re.compile(r"[a-z][a-z0-9_]{0,62}")
_TOKEN = re.compile(r"[A-Za-z0-9._~+-]{1,128}")
_REALM = re.compile(r"[A-Za-z0-9._~+-]{1,253}")
_HTTP_HEADER = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
_CIPHER = re.compile(r"[A-Za-z0-9._+=@!:-]{1,256}")
_PROMPT = re.compile(r"[A-Za-z0-9_./:%(),;=+@~#-]{1,1024}")
# RFC 3986 characters of a path and query (no quotes, blanks, braces, backslashes or carets)
_URL_TAIL = re.compile(r"(?:[A-Za-z0-9._~:/?@!$&()*+,;=-]|%[0-9A-Fa-f]{2})*")
_PORT = re.compile(r"[0-9]{1,5}")

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


def _no_unsafe(value: str, what: str) -> None:
    char = first_unsafe(value)
    if char is not None:
        raise ValueError(f"{what} cannot contain line breaks or control characters (found {describe(char)})")


def _name(value: str) -> str:
    if not _NAME.fullmatch(value):
        raise ValueError(
            f"{quote(value)} is not a valid name: use lower-case letters, digits, '-' and '_' "
            "(starting with a letter or digit, at most 63 characters)"
        )
    return value


def e164(value: str) -> str:
    """An E.164 number (``+15557650042``); ValueError saying how to write it otherwise."""
    if _E164.fullmatch(value):
        return value
    shown = quote(value)
    compact = re.sub(r"[\s().-]", "", value)
    if compact != value and _E164.fullmatch(compact):
        raise ValueError(f"{shown} is not E.164: write it without spaces or punctuation, as '{compact}'")
    if re.fullmatch(r"[1-9][0-9]{1,14}", value):
        raise ValueError(f"{shown} is not E.164: it needs a leading '+' and the country code, e.g. '+{value}'")
    if re.fullmatch(r"00[0-9]{1,15}", value):
        raise ValueError(f"{shown} is not E.164: replace the international prefix 00 with '+', e.g. '+{value[2:]}'")
    if value.startswith("+0"):
        raise ValueError(f"{shown} is not E.164: country codes never start with 0")
    if re.fullmatch(r"\+[0-9]{16,}", value):
        raise ValueError(f"{shown} is not E.164: at most 15 digits after '+'")
    raise ValueError(
        f"{shown} is not E.164: expected '+', the country code and the subscriber number, e.g. +15551234567"
    )


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IP address; ValueError for anything else, including IPv6 zone ids (``%eth0``)."""
    if "%" in text:
        raise ValueError("zone")
    return ipaddress.ip_address(text)


def _cidr(value: str) -> str:
    _no_unsafe(value, "a network")
    text = str(value).strip()
    if "%" in text:
        raise ValueError(f"{quote(value)}: IPv6 zone ids (%…) are not supported in networks")
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
            f"{quote(value)} is not a valid CIDR network (expected e.g. 203.0.113.0/24 or 2001:db8::/32)"
        ) from None
    raise ValueError(f"{quote(value)} has host bits set: the network is {loose}")


def _ip(value: str) -> str:
    _no_unsafe(value, "an IP address")
    text = str(value).strip()
    if "%" in text:
        raise ValueError(f"{quote(value)}: IPv6 zone ids (%…) are not supported; give the address alone")
    try:
        return str(_address(text))
    except ValueError:
        raise ValueError(
            f"{quote(value)} is not an IP address (FreeSWITCH binds to addresses, not host names)"
        ) from None


def is_hostname(value: str) -> bool:
    """True when ``value`` is a DNS name made of valid labels (ASCII letters, digits and '-')."""
    name = value[:-1] if value.endswith(".") else value
    if not name or len(name) > 253:
        return False
    return all(_LABEL.fullmatch(label) for label in name.split("."))


def _host(value: str) -> str:
    _no_unsafe(value, "a host name or IP address")
    text = str(value).strip()
    lower = text.lower()
    shown = quote(text)
    for scheme in ("sips:", "sip:"):
        if lower.startswith(scheme):
            rest = quote(text[len(scheme) :])
            raise ValueError(
                f"write the address without '{scheme}': {rest} (the transport and port are separate settings)"
            )
    if "@" in text:
        raise ValueError(f"{shown} is a SIP URI, not an address: give only the host name or IP (e.g. sip.example.com)")
    if "%" in text:
        raise ValueError(f"{shown}: IPv6 zone ids (%…) are not supported; give the address alone")
    try:
        return str(_address(text[1:-1] if text.startswith("[") and text.endswith("]") else text))
    except ValueError:
        pass
    match = re.fullmatch(r"([A-Za-z0-9.-]+):([0-9]{1,5})", text)
    if match:
        raise ValueError(f"put the port in its own setting: address {quote(match[1])} with port {match[2]}")
    if not is_hostname(text):
        raise ValueError(f"{shown} is not a valid host name or IP address")
    return lower


def _domain(value: str) -> str:
    _no_unsafe(value, "a domain name")
    text = str(value).strip().lower()
    bare = text[2:] if text.startswith("*.") else text
    if not text.isascii() or not is_hostname(bare) or "." not in bare:
        raise ValueError(f"{quote(value)} is not a domain name (e.g. sip.example.com or *.example.com)")
    return text


def _sip_domain(value: str) -> str:
    if value.startswith("*"):
        raise ValueError(f"{quote(value)}: the SIP domain is one name, not a wildcard")
    return value


def _port_ok(text: str) -> bool:
    return bool(_PORT.fullmatch(text)) and 1 <= int(text) <= 65535


def _ext_address(value: str) -> str:
    _no_unsafe(value, "an external address")
    text = str(value).strip()
    for prefix in ("stun:", "host:"):
        if text.startswith(prefix):
            target = text[len(prefix) :]
            host, sep, port = target.rpartition(":") if prefix == "stun:" else ("", "", "")
            if not sep or not port.isascii() or not port.isdigit():
                host, port = target, ""
            if port and not _port_ok(port):
                raise ValueError(f"{quote(text)}: {quote(port)} is not a port (1-65535)")
            if not is_hostname(host):
                raise ValueError(f"{quote(text)}: {quote(host)} is not a valid host name")
            return text
    try:
        return str(_address(text))
    except ValueError:
        raise ValueError(
            f"{quote(text)} is not an external address: give an IP, 'stun:<server>' or 'host:<dns-name>'"
        ) from None


def _codec(value: object) -> object:
    if isinstance(value, str):
        return CODEC_ALIASES.get(value.strip().lower(), value)
    return value


def _x_header(value: str) -> str:
    if not _X_HEADER.fullmatch(value):
        raise ValueError(
            f"{quote(value)} is not a custom header name: custom headers start with 'X-' (e.g. X-Customer-Id), "
            "then letters, digits and '-' (at most 128 characters)"
        )
    return value


def _header_value(value: str) -> str:
    if len(value) > 1024:
        raise ValueError("header values are limited to 1024 characters")
    _no_unsafe(value, "header values")
    if not value.strip():
        raise ValueError("an empty header value sends no header: remove the header or give a value")
    if value != value.strip():
        raise ValueError("header values cannot start or end with blanks (SIP drops them)")
    if value.startswith("ARRAY::"):
        raise ValueError("header values cannot start with 'ARRAY::' (FreeSWITCH would split them into several)")
    return value


def _variable(value: str) -> str:
    if not _VARIABLE.fullmatch(value):
        raise ValueError(f"{quote(value)} is not a valid variable name: use lower-case letters, digits and '_'")
    if value.startswith("system__"):
        raise ValueError(f"{quote(value)}: the 'system__' prefix is reserved for the agent platform's own variables")
    return value


def _token(value: str) -> str:
    if not _TOKEN.fullmatch(value):
        raise ValueError(
            f"{quote(value)} is not a valid SIP user name: use letters, digits and . _ ~ + - (at most 128)"
        )
    return value


def _realm(value: str) -> str:
    if not _REALM.fullmatch(value):
        raise ValueError(
            f"{quote(value)} is not a valid realm: use letters, digits and . _ ~ + - (e.g. sip.carrier.example)"
        )
    return value


def _url(value: str, schemes: tuple[str, ...], kind: str, example: str, credentials: str) -> tuple[str, str]:
    """An absolute URL of one of ``schemes`` (no credentials, no fragment, RFC 3986 path); (its text, its host)."""
    text = str(value).strip()
    shown = quote(text)
    bad = f"{shown} is not {kind} (expected {example})"
    if len(text) > 2048:
        raise ValueError(f"{kind.split(' ', 1)[1]}s are limited to 2048 characters")
    _no_unsafe(text, kind)
    if not text.isascii() or not re.match("(?:" + "|".join(schemes) + ")://", text):
        raise ValueError(bad)
    try:
        parts = urlsplit(text)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 host
        raise ValueError(bad) from None
    if parts.fragment or "#" in text:
        raise ValueError(f"{shown}: {kind} has no #fragment")
    netloc = parts.netloc
    if "@" in netloc:
        raise ValueError(f"{shown}: {credentials}")
    host, port = netloc, ""
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        if rest and not rest.startswith(":"):
            raise ValueError(bad)
        port = rest[1:]
        valid_host = ":" in host and _valid_ip(host)
    else:
        host, _, port = netloc.partition(":")
        valid_host = is_hostname(host) or _valid_ip(host)
    if not valid_host or (port and not _port_ok(port)) or netloc.endswith(":"):
        raise ValueError(bad)
    if not _URL_TAIL.fullmatch(text[len(parts.scheme) + 3 + len(netloc) :]):
        raise ValueError(f"{shown}: a URL path and query hold RFC 3986 characters (write others %-encoded)")
    return text, host


def _ws_url(value: str) -> str:
    text, _ = _url(
        value,
        ("ws", "wss"),
        "a WebSocket URL",
        "ws://host[:port]/path or wss://host[:port]/path",
        "put credentials in the agent's headers, not in the URL",
    )
    return text


def is_loopback_host(host: str) -> bool:
    """``localhost`` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _webhook_url(value: str) -> str:
    text, host = _url(
        value,
        ("https", "http"),
        "a webhook URL",
        "https://host[:port]/path",
        "webhook requests are signed with the endpoint's secret: leave credentials out of the URL",
    )
    if text.startswith("http://") and not is_loopback_host(host):
        raise ValueError(
            f"{quote(text)}: webhook bodies carry call records: use https:// (http:// only to a loopback address)"
        )
    return text


#: the one grammar of custom header names and of agent variable names (deployment file and API alike)
X_HEADER_NAME = _X_HEADER
VARIABLE_NAME = _VARIABLE


def is_ip_address(text: str) -> bool:
    """True when ``text`` is an IPv4 or IPv6 address (no zone id)."""
    return _valid_ip(text)


def _valid_ip(text: str) -> bool:
    try:
        _address(text)
    except ValueError:
        return False
    return True


def _prompt(value: str) -> str:
    if not _PROMPT.fullmatch(value):
        raise ValueError(
            f"{quote(value)}: fallback_prompt is a file path or tone_stream:// URL of letters, digits and "
            "_ . / : % ( ) , ; = + @ ~ # - (no blanks, quotes or $; at most 1024 characters)"
        )
    return value


def _agent_id(value: str) -> str:
    if not value:
        raise ValueError("the agent id cannot be empty")
    return free_text(256, "an agent id")(value)  # percent-encoded where it is used (a URL query)


def _cipher(value: str) -> str:
    if not _CIPHER.fullmatch(value):
        raise ValueError(f"{quote(value)} is not an OpenSSL cipher name")
    return value


def http_header_name(value: str) -> str:
    """An HTTP header name (an RFC 9110 token of at most 128 characters)."""
    if not _HTTP_HEADER.fullmatch(value):
        raise ValueError(f"{quote(value)} is not a valid HTTP header name")
    return value


def free_text(max_length: int, what: str = "this setting") -> Callable[[str], str]:
    """A validator for free text: at most ``max_length`` characters, no unsafe characters."""

    def check(value: str) -> str:
        if len(value) > max_length:
            raise ValueError(f"{what} is limited to {max_length} characters")
        _no_unsafe(value, what)
        return value

    return check


def secret_rule(
    what: str, max_length: int, *, blanks: bool = True, empty: bool = False, ascii_only: bool = False
) -> Callable[[SecretStr], SecretStr]:
    """A validator for a secret: length, no unsafe characters (never quoting the value)."""

    def check(value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw and not empty:
            raise ValueError(f"{what} cannot be empty")
        if len(raw) > max_length:
            raise ValueError(f"{what} is limited to {max_length} characters")
        if first_unsafe(raw) is not None:
            raise ValueError(f"{what} cannot contain line breaks or control characters")
        if not blanks and any(c.isspace() for c in raw):
            raise ValueError(f"{what} cannot contain spaces or line breaks")
        if ascii_only and not raw.isascii():
            raise ValueError(f"{what} must be ASCII (it travels in an HTTP header)")
        return value

    return check


def file_path(value: str) -> str:
    """A file path: not empty, at most 4096 characters, no unsafe characters (NUL included)."""
    if not value.strip():
        raise ValueError("a file path cannot be empty")
    if len(value) > 4096:
        raise ValueError("file paths are limited to 4096 characters")
    _no_unsafe(value, "a file path")
    return value


Name = Annotated[str, AfterValidator(_name)]
E164 = Annotated[str, AfterValidator(e164)]
Cidr = Annotated[str, AfterValidator(_cidr)]
IpAddress = Annotated[str, AfterValidator(_ip)]
Host = Annotated[str, AfterValidator(_host)]
Domain = Annotated[str, AfterValidator(_domain)]
SipDomain = Annotated[str, AfterValidator(_domain), AfterValidator(_sip_domain)]
ExternalAddress = Annotated[str, AfterValidator(_ext_address)]
CodecName = Annotated[Codec, BeforeValidator(_codec)]
XHeader = Annotated[str, AfterValidator(_x_header)]
HeaderValue = Annotated[str, AfterValidator(_header_value)]
Variable = Annotated[str, AfterValidator(_variable)]
SipUser = Annotated[str, AfterValidator(_token)]
Realm = Annotated[str, AfterValidator(_realm)]
WsUrl = Annotated[str, AfterValidator(_ws_url)]
WebhookUrl = Annotated[str, AfterValidator(_webhook_url)]
Prompt = Annotated[str, AfterValidator(_prompt)]
AgentId = Annotated[str, AfterValidator(_agent_id)]
CipherName = Annotated[str, AfterValidator(_cipher)]
HttpHeaderName = Annotated[str, AfterValidator(http_header_name)]
FilePath = Annotated[str, AfterValidator(file_path)]
Description = Annotated[str, AfterValidator(free_text(1024, "a description"))]
Port = Annotated[int, Field(ge=1, le=65535)]

#: The event socket password: sent on the ``auth`` line, compared byte for byte.
EslPassword = Annotated[SecretStr, AfterValidator(secret_rule("the event socket password", 256, blanks=False))]
