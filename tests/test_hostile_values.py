"""Hostile and careless values in every string setting: refused with the YAML path and line, never a crash.

Each class of bad input (control characters, terminal escapes, line breaks, zone ids, URL tricks,
FreeSWITCH's own metacharacters, over-long values and lists, port clashes) is tried in every setting
it could reach, not only where it was first seen. Cases use the base document of test_validation.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_validation import ENV, document, marker_line, run

from orchestrator.config import check_text

FS = "freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket:\n    password: ${ESL_PASSWORD}\n"
TLS = "    certificate: TLS/sip.test.crt\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n"

# characters that must never reach a file, a terminal or a log (YAML double-quoted escapes)
UNSAFE = {
    "nul": "\\0",
    "soh": "\\x01",
    "tab": "\\t",
    "newline": "\\n",
    "cr": "\\r",
    "escape": "\\e[31m",
    "del": "\\x7f",
    "c1-nel": "\\N",
    "c1-csi": "\\x9b",
    "line-separator": "\\L",
    "bidi-override": "\\u202e",
    "non-xml": "\\uffff",
}

# -- secrets: one rule per secret, every unsafe character ---------------------------------------

SECRET_PLACES = {
    "esl-password": (
        {"freeswitch": 'freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket:\n    password: "a{bad}b" #!\n'},
        "freeswitch.event_socket.password",
    ),
    "inbound-digest-password": (
        {
            "trunks": 'trunks:\n  - name: carrier\n    inbound:\n      transports: [tls]\n      auth:\n        digest: {username: carrier, password: "a{bad}b"} #!\n',
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.auth.digest.password",
    ),
    "outbound-password": (
        {
            "trunks": 'trunks:\n  - name: carrier\n    outbound:\n      address: sbc.example.com\n      auth: {username: u, password: "a{bad}b"} #!\n',
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.auth.password",
    ),
    "tls-passphrase": (
        {"transports": "transports:\n  tcp: {}\n  tls:\n" + TLS + '    private_key_passphrase: "a{bad}b" #!\n'},
        "transports.tls.private_key_passphrase",
    ),
    "agent-header": (
        {
            "agents": 'agents:\n  - name: support\n    protocol: raw\n    url: "ws://h/a"\n    headers: {Authorization: "a{bad}b"} #!\n'
        },
        "agents[0].headers.Authorization",
    ),
    "elevenlabs-api-key": (
        {
            "agents": 'agents:\n  - name: support\n    protocol: elevenlabs\n    agent_id: a1\n    api_key: "a{bad}b" #!\n'
        },
        "agents[0].api_key",
    ),
    "node-password": (
        {"orchestrator": 'orchestrator:\n  nodes:\n    - name: fs1\n      password: "a{bad}b" #!\n'},
        "orchestrator.nodes[0].password",
    ),
    "api-token": (
        {"orchestrator": 'orchestrator:\n  api:\n    token: "a{bad}b" #!\n'},
        "orchestrator.api.token",
    ),
    "media-secret": (
        {"orchestrator": 'orchestrator:\n  media_secret: "a{bad}b" #!\n'},
        "orchestrator.media_secret",
    ),
}


@pytest.mark.parametrize("char", list(UNSAFE.values()), ids=list(UNSAFE))
@pytest.mark.parametrize("place", list(SECRET_PLACES), ids=list(SECRET_PLACES))
def test_secrets_refuse_unsafe_characters(tls_dir: Path, place: str, char: str) -> None:
    sections, path = SECRET_PLACES[place]
    sections = {k: v.replace("{bad}", char) for k, v in sections.items()}
    text, result = run(tls_dir, **sections)
    assert result.deployment is None
    [diag] = [d for d in result.errors if d.dotted_path == path]
    assert diag.line == marker_line(text)
    assert "control characters" in diag.message or "spaces" in diag.message
    assert "a" + char not in diag.message  # the secret is never quoted


@pytest.mark.parametrize(
    "place",
    ["esl-password", "node-password", "elevenlabs-api-key", "api-token"],
)
def test_secrets_sent_on_one_line_refuse_blanks(tls_dir: Path, place: str) -> None:
    sections, path = SECRET_PLACES[place]
    text, result = run(tls_dir, **{k: v.replace("{bad}", " ") for k, v in sections.items()})
    [diag] = [d for d in result.errors if d.dotted_path == path]
    assert "spaces" in diag.message and diag.line == marker_line(text)


def test_secret_lengths_are_bounded(tls_dir: Path) -> None:
    cases = {
        "esl-password": 257,
        "outbound-password": 129,  # FreeSWITCH answers challenges from a 256-byte buffer
        "inbound-digest-password": 257,
        "api-token": 1025,
    }
    for place, length in cases.items():
        sections, path = SECRET_PLACES[place]
        _, result = run(tls_dir, **{k: v.replace("a{bad}b", "x" * length) for k, v in sections.items()})
        assert [d for d in result.errors if d.dotted_path == path and "limited to" in d.message], place
        _, result = run(tls_dir, **{k: v.replace("a{bad}b", "x" * (length - 1)) for k, v in sections.items()})
        assert not [d for d in result.errors if d.dotted_path == path], place


def test_api_token_is_ascii(tls_dir: Path) -> None:
    sections, path = SECRET_PLACES["api-token"]
    _, result = run(tls_dir, **{k: v.replace("a{bad}b", "tökén") for k, v in sections.items()})
    assert [d for d in result.errors if d.dotted_path == path and "ASCII" in d.message]


# -- every other string setting: grammar, or free text without unsafe characters -----------------

CASES: list[tuple[str, dict[str, str], str, str]] = [
    # names, hosts and addresses: strict grammars
    (
        "realm-control",
        {
            "trunks": 'trunks:\n  - name: t\n    outbound:\n      address: a.example\n      auth: {username: u, password: p, realm: "r\\x01"} #!\n'
        },
        "trunks[0].outbound.auth.realm",
        "is not a valid realm",
    ),
    (
        "realm-quote",
        {
            "trunks": "trunks:\n  - name: t\n    outbound:\n      address: a.example\n      auth: {username: u, password: p, realm: 'a\"b'} #!\n"
        },
        "trunks[0].outbound.auth.realm",
        "is not a valid realm",
    ),
    (
        "sip-domain-control",
        {"freeswitch": FS.replace("  event_socket", '  sip_domain: "sip\\x01.example.com" #!\n  event_socket')},
        "freeswitch.sip_domain",
        "cannot contain line breaks or control characters",
    ),
    (
        "sip-domain-wildcard",
        {"freeswitch": FS.replace("  event_socket", "  sip_domain: '*.example.com' #!\n  event_socket")},
        "freeswitch.sip_domain",
        "not a wildcard",
    ),
    (
        "sip-domain-unicode",
        {"freeswitch": FS.replace("  event_socket", "  sip_domain: sïp.example.com #!\n  event_socket")},
        "freeswitch.sip_domain",
        "is not a domain name",
    ),
    (
        "bind-ip-zone",
        {"freeswitch": FS.replace("bind_ip: 127.0.0.1", "bind_ip: 'fe80::1%eth0' #!")},
        "freeswitch.bind_ip",
        "zone ids",
    ),
    (
        "bind-ip-zone-hostile",
        {"freeswitch": FS.replace("bind_ip: 127.0.0.1", "bind_ip: 'fe80::1%]]>--$${x}' #!")},
        "freeswitch.bind_ip",
        "zone ids",
    ),
    (
        "esl-listen-zone",
        {"freeswitch": FS.replace("    password", "    listen_ip: 'fe80::1%lo' #!\n    password")},
        "freeswitch.event_socket.listen_ip",
        "zone ids",
    ),
    (
        "acl-zone",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: ['fe80::%x/64']} #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.auth.acl[0]",
        "zone ids",
    ),
    (
        "outbound-address-zone",
        {"trunks": "trunks:\n  - name: t\n    outbound: {address: 'fe80::1%eth0'} #!\n", "numbers": "numbers: []\n"},
        "trunks[0].outbound.address",
        "zone ids",
    ),
    (
        "outbound-address-control",
        {"trunks": 'trunks:\n  - name: t\n    outbound: {address: "a\\x1b.example"} #!\n', "numbers": "numbers: []\n"},
        "trunks[0].outbound.address",
        "cannot contain line breaks or control characters",
    ),
    (
        "from-domain-markup",
        {
            "trunks": "trunks:\n  - name: t\n    outbound: {address: a.example, from_domain: '[/x]'} #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.from_domain",
        "is not a valid host name",
    ),
    (
        "ext-ip-zone",
        {"freeswitch": FS.replace("  event_socket", "  ext_sip_ip: 'fe80::1%x' #!\n  event_socket")},
        "freeswitch.ext_sip_ip",
        "is not an external address",
    ),
    (
        "stun-unicode-port",
        {"freeswitch": FS.replace("  event_socket", "  ext_sip_ip: 'stun:stun.example.com:٣٤٧٨' #!\n  event_socket")},
        "freeswitch.ext_sip_ip",
        "is not a valid host name",
    ),
    (
        "stun-port-range",
        {"freeswitch": FS.replace("  event_socket", "  ext_sip_ip: 'stun:stun.example.com:70000' #!\n  event_socket")},
        "freeswitch.ext_sip_ip",
        "is not a port",
    ),
    (
        "remote-domain-control",
        {
            "trunks": 'trunks:\n  - name: carrier\n    inbound:\n      transports: [tls]\n      auth: {acl: [10.1.0.0/16]}\n      remote_domains: ["a\\nb.example"] #!\n',
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.remote_domains[0]",
        "cannot contain line breaks or control characters",
    ),
    (
        "trunk-name-markup",
        {"trunks": "trunks:\n  - name: '[/x]' #!\n    outbound: {address: a.example}\n", "numbers": "numbers: []\n"},
        "trunks[0].name",
        "is not a valid name",
    ),
    (
        "digest-user-colon",
        {
            "trunks": "trunks:\n  - name: c\n    inbound:\n      transports: [tls]\n      auth:\n        digest: {username: 'a:b', password: p} #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.auth.digest.username",
        "is not a valid SIP user name",
    ),
    # nodes: the host must be a host name or IP, the list is bounded
    *[
        (
            f"node-host-{name}",
            {"orchestrator": f'orchestrator:\n  nodes:\n    - {{name: fs1, host: "{host}"}} #!\n'},
            "orchestrator.nodes[0].host",
            message,
        )
        for name, host, message in [
            ("newline", "fs1\\nauth x", "cannot contain line breaks or control characters"),
            ("cr", "fs1\\r", "cannot contain line breaks or control characters"),
            ("blank", "fs 1", "is not a valid host name or IP address"),
            ("control", "fs\\x011", "cannot contain line breaks or control characters"),
            ("escape", "\\e[2J", "cannot contain line breaks or control characters"),
            ("sip-uri", "sip:fs1", "without 'sip:'"),
            ("port", "fs1:8021", "put the port in its own setting"),
            ("zone", "fe80::1%eth0", "zone ids"),
            ("empty", "", "is not a valid host name or IP address"),
            ("unicode", "fś1.example", "is not a valid host name or IP address"),
            ("label-dash", "-fs1", "is not a valid host name or IP address"),
            ("too-long", "a" * 64, "is not a valid host name or IP address"),
        ]
    ],
    (
        "nodes-too-many",
        {
            "orchestrator": "orchestrator:\n  nodes: #!\n"
            + "".join(f"    - {{name: fs{i}, host: 10.0.0.{i}}}\n" for i in range(65))
        },
        "orchestrator.nodes",
        "at most 64 entries",
    ),
    # URLs
    *[
        (
            f"url-{name}",
            {"agents": f"agents:\n  - {{name: support, protocol: raw, url: {url}}} #!\n"},
            "agents[0].url",
            message,
        )
        for name, url, message in [
            ("space", '"ws://h/a b"', "RFC 3986"),
            ("control", '"ws://h/a\\x01"', "control characters"),
            ("escape", '"ws://h/\\e[31m"', "control characters"),
            ("braces", '"ws://h/{x}"', "RFC 3986"),
            ("variable", '"ws://h/$${x}"', "RFC 3986"),  # $$ is a literal $ in the deployment file
            ("quote", '"ws://h/a\'b"', "RFC 3986"),
            ("markup", '"ws://h/[/x]"', "RFC 3986"),
            ("bad-percent", '"ws://h/%zz"', "RFC 3986"),
            ("userinfo", '"ws://u:p@h/"', "credentials"),
            ("fragment", '"ws://h/a#f"', "fragment"),
            ("port-zero", '"ws://h:0/"', "is not a WebSocket URL"),
            ("port-big", '"ws://h:99999/"', "is not a WebSocket URL"),
            ("unicode-host", '"ws://hé.example/"', "is not a WebSocket URL"),
            ("no-host", '"ws:///a"', "is not a WebSocket URL"),
            ("ipv6-open", '"ws://[::1/a"', "is not a WebSocket URL"),
            ("http", '"https://h/"', "is not a WebSocket URL"),
            ("too-long", '"ws://h/' + "a" * 2100 + '"', "limited to 2048"),
        ]
    ],
    (
        "media-url-braces",
        {"orchestrator": "orchestrator:\n  media_url: 'ws://127.0.0.1:8090/{x}' #!\n"},
        "orchestrator.media_url",
        "RFC 3986",
    ),
    # free text and grammar-checked values elsewhere
    (
        "description-escape",
        {
            "trunks": 'trunks:\n  - name: t\n    description: "\\e[31mred" #!\n    outbound: {address: a.example}\n',
            "numbers": "numbers: []\n",
        },
        "trunks[0].description",
        "found an escape character",
    ),
    (
        "description-long",
        {
            "trunks": f"trunks:\n  - name: t\n    description: {'d' * 1100} #!\n    outbound: {{address: a.example}}\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].description",
        "limited to 1024 characters",
    ),
    (
        "agent-id-control",
        {"agents": 'agents:\n  - {name: support, protocol: elevenlabs, agent_id: "a\\x1bb"} #!\n'},
        "agents[0].agent_id",
        "control characters",
    ),
    (
        "agent-id-empty",
        {"agents": "agents:\n  - {name: support, protocol: elevenlabs, agent_id: ''} #!\n"},
        "agents[0].agent_id",
        "cannot be empty",
    ),
    (
        "agent-header-name",
        {"agents": 'agents:\n  - {name: support, protocol: raw, url: "ws://h/a", headers: {"Bad Name": x}} #!\n'},
        "agents[0].headers.Bad Name",
        "is not a valid HTTP header name",
    ),
    (
        "agent-headers-too-many",
        {
            "agents": "agents:\n  - name: support\n    protocol: raw\n    url: ws://h/a\n    headers: #!\n"
            + "".join(f"      H{i}: v\n" for i in range(65))
        },
        "agents[0].headers",
        "at most 64 entries",
    ),
    (
        "prompt-variable",
        {
            "orchestrator": "orchestrator:\n  media:\n    on_failure: prompt\n    fallback_prompt: '/s/$${sound}.wav' #!\n"
        },
        "orchestrator.media.fallback_prompt",
        "no blanks, quotes or $",
    ),
    (
        "prompt-control",
        {"orchestrator": 'orchestrator:\n  media:\n    on_failure: prompt\n    fallback_prompt: "/s/a\\x01.wav" #!\n'},
        "orchestrator.media.fallback_prompt",
        "fallback_prompt is a file path",
    ),
    (
        "records-nul",
        {"orchestrator": 'orchestrator:\n  records: "calls\\0.jsonl" #!\n'},
        "orchestrator.records",
        "found U+0000",
    ),
    (
        "certificate-nul",
        {
            "transports": 'transports:\n  tcp: {}\n  tls:\n    certificate: "TLS/sip.test.crt\\0" #!\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n'
        },
        "transports.tls.certificate",
        "found U+0000",
    ),
    (
        "cipher-nul",
        {
            "transports": "transports:\n  tcp: {}\n  tls:\n"
            + TLS
            + '    ciphers: ["ECDHE-RSA-AES128-GCM-SHA256\\0"] #!\n'
        },
        "transports.tls.ciphers[0]",
        "is not an OpenSSL cipher name",
    ),
    (
        "cipher-blank",
        {
            "transports": "transports:\n  tcp: {}\n  tls:\n"
            + TLS
            + "    ciphers: ['ECDHE-RSA-AES128-GCM-SHA256 x'] #!\n"
        },
        "transports.tls.ciphers[0]",
        "is not an OpenSSL cipher name",
    ),
    (
        "tls-version-markup",
        {"transports": "transports:\n  tcp: {}\n  tls:\n" + TLS + "    min_version: '[/x]' #!\n"},
        "transports.tls.min_version",
        "'[/x]' is not a TLS version",
    ),
    # SIP header values reach FreeSWITCH as channel variables: what it would change is refused
    *[
        (
            f"header-value-{name}",
            {
                "trunks": f"trunks:\n  - name: t\n    outbound:\n      address: a.example\n      headers: {{X-A: {value}}} #!\n",
                "numbers": "numbers: []\n",
            },
            "trunks[0].outbound.headers.X-A",
            message,
        )
        for name, value, message in [
            ("empty", "''", "sends no header"),
            ("blank", "'  '", "sends no header"),
            ("leading-blank", "' a'", "cannot start or end with blanks"),
            ("trailing-blank", "'a '", "cannot start or end with blanks"),
            ("array", "'ARRAY::a|:b'", "ARRAY::"),
            ("c1", '"a\\x85b"', "control characters"),
            ("line-separator", '"a\\u2028b"', "control characters"),
            ("bidi", '"a\\u202eb"', "control characters"),
            ("too-long", "a" * 1100, "limited to 1024"),
        ]
    ],
    (
        "header-name-long",
        {
            "trunks": f"trunks:\n  - name: t\n    outbound:\n      address: a.example\n      headers: {{X-{'a' * 200}: v}} #!\n",
            "numbers": "numbers: []\n",
        },
        f"trunks[0].outbound.headers.X-{'a' * 58}…",
        "is not a custom header name",
    ),
    # lists are bounded
    (
        "acl-too-long",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth:\n        acl: ["
            + ", ".join(f"10.{i // 256}.{i % 256}.1" for i in range(1001))
            + "] #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.auth.acl",
        "at most 1000 entries",
    ),
    (
        "ciphers-too-many",
        {
            "transports": "transports:\n  tcp: {}\n  tls:\n"
            + TLS
            + "    ciphers: ["
            + ", ".join(["ECDHE-RSA-AES128-GCM-SHA256"] * 65)
            + "] #!\n"
        },
        "transports.tls.ciphers",
        "at most 64 entries",
    ),
    # SDES in RTP/AVP only makes sense where SRTP is allowed
    (
        "crypto-in-avp-inbound-disabled",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.0.0.0/8]}\n      media_encryption: disabled\n      accept_crypto_in_avp: true #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.accept_crypto_in_avp",
        "media_encryption is 'disabled'",
    ),
    (
        "crypto-in-avp-outbound-disabled",
        {
            "trunks": "trunks:\n  - name: t\n    outbound:\n      address: a.example\n      media_encryption: disabled\n      accept_crypto_in_avp: true #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.accept_crypto_in_avp",
        "media_encryption is 'disabled'",
    ),
    # keys and file-level values
    (
        "unknown-key-markup",
        {"freeswitch": FS.replace("  event_socket", '  "[/x]\\e[31m": 1 #!\n  event_socket')},
        "freeswitch.[/x]\\x1b[31m",
        "unknown setting '[/x]\\x1b[31m'",
    ),
]


@pytest.mark.parametrize(("sections", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_value(tls_dir: Path, sections: dict[str, str], path: str, message: str) -> None:
    text, result = run(tls_dir, **sections)
    assert result.deployment is None
    matching = [d for d in result.errors if message in d.message]
    assert matching, f"expected an error containing {message!r}, got: {[str(d) for d in result.errors]}"
    diag = matching[0]
    assert diag.dotted_path == path
    assert diag.line == marker_line(text)


def test_every_message_is_one_printable_line(tls_dir: Path) -> None:
    """Whatever a value holds, a finding never carries a control character, a line break or a bidi override."""
    for _, sections, _, _ in CASES:
        _, result = run(tls_dir, **sections)
        for diag in result.diagnostics:
            for text in (str(diag), diag.message, diag.dotted_path):
                assert text.isprintable(), repr(text)
                assert "\u202e" not in text


def test_quoted_values_are_shortened(tls_dir: Path) -> None:
    _, result = run(tls_dir, freeswitch=FS.replace("127.0.0.1", "x" * 5000, 1))
    [diag] = [d for d in result.errors if d.dotted_path == "freeswitch.bind_ip"]
    assert len(diag.message) < 300 and "…" in diag.message


def test_valid_values_of_the_same_settings_still_pass(tls_dir: Path) -> None:
    """The grammars accept what real deployments use."""
    text = document(
        tls_dir,
        freeswitch=FS.replace(
            "  event_socket",
            "  sip_domain: sip.example.com\n  ext_sip_ip: stun:stun.example.com:3478\n  ext_rtp_ip: 'host:ip.example.com'\n  event_socket",
        ),
        trunks=(
            "trunks:\n  - name: carrier\n    description: Primary carrier — TLS, «SRTP», 100 % ✓\n"
            "    inbound:\n      transports: [tls]\n      auth: {digest: {username: carrier, password: 'p a$$ <&>\"'}}\n"
            "      media_encryption: required\n      accept_crypto_in_avp: true\n"
            "    outbound:\n      address: '[2001:db8::7]'\n      transport: tls\n      accept_crypto_in_avp: true\n"
            "      auth: {username: out, password: 'x-pre-process $${x}', realm: sip.carrier.example}\n"
            "      headers: {X-Campaign: 'spring \"sale\" <20%> & more, $${not_expanded}'}\n"
            "  - name: pbx--a\n    inbound: {transports: [tcp], auth: {acl: [10.20.0.0/24]}}\n"
        ),
        numbers='numbers:\n  - {number: "+15550000001", trunk: carrier, agent: support}\n',
        agents=(
            "agents:\n  - {name: support, protocol: raw, url: 'wss://agents.example.com:8443/a/b?x=1&y=%20z'}\n"
            "  - {name: el, protocol: elevenlabs, agent_id: 'agent_01 jk', headers: {Authorization: Bearer tok}}\n"
        ),
        orchestrator=(
            "orchestrator:\n  media_url: 'ws://[::1]:8090/fork'\n  nodes:\n    - {name: fs1, host: FS1.Example.com}\n"
            "    - {name: fs2, host: '::1', port: 8022}\n"
            "  media:\n    on_failure: prompt\n    fallback_prompt: tone_stream://%(500,500,480,620);loops=2\n"
        ),
    )
    result = check_text(text, "deploy.yaml", ENV, tls_dir)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    assert result.deployment.orchestrator.nodes[0].host == "fs1.example.com"


# -- ports: any two listeners on the same protocol and overlapping addresses ------------------------

PORT_CASES: list[tuple[str, dict[str, str], str, str]] = [
    (
        "media-equals-api",
        {"orchestrator": "orchestrator:\n  api: {port: 8080}\n  media:\n    port: 8080 #!\n"},
        "orchestrator.media.port",
        "the media bridge: TCP port 8080 on 127.0.0.1 is already taken by the HTTP API, TCP port 8080 on 127.0.0.1 (orchestrator.api.port, line",
    ),
    (
        "api-equals-default-media",
        {"orchestrator": "orchestrator:\n  api:\n    port: 8090 #!\n"},
        "orchestrator.api.port",
        "is already taken by the media bridge, TCP port 8090 on 127.0.0.1 (orchestrator.media.port, default)",
    ),
    (
        "media-wildcard-vs-api",
        {"orchestrator": "orchestrator:\n  api: {port: 9000}\n  media:\n    listen_ip: 0.0.0.0\n    port: 9000 #!\n"},
        "orchestrator.media.port",
        "TCP port 9000 on 0.0.0.0 is already taken by the HTTP API",
    ),
    (
        "api-vs-esl",
        {"orchestrator": "orchestrator:\n  api:\n    port: 8021 #!\n"},
        "orchestrator.api.port",
        "is already taken by the event socket",
    ),
    (
        "api-vs-sip-on-bind-ip",
        {"orchestrator": "orchestrator:\n  api:\n    port: 5060 #!\n"},
        "orchestrator.api.port",
        "is already taken by SIP over TCP",
    ),
    (
        "media-vs-tls",
        {"orchestrator": "orchestrator:\n  media:\n    port: 5061 #!\n"},
        "orchestrator.media.port",
        "is already taken by SIP over TLS",
    ),
    (
        "esl-wildcard-vs-sip",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket:\n    listen_ip: 0.0.0.0\n    port: 5060 #!\n    password: x\n"
        },
        "freeswitch.event_socket.port",
        "is already taken by SIP over TCP",
    ),
    (
        "ipv6-wildcard",
        {
            "orchestrator": "orchestrator:\n  api: {listen_ip: '::1', port: 9000}\n  media:\n    listen_ip: '::'\n    port: 9000 #!\n"
        },
        "orchestrator.media.port",
        "TCP port 9000 on :: is already taken by the HTTP API, TCP port 9000 on ::1",
    ),
    (
        "ipv4-mapped",
        {
            "orchestrator": "orchestrator:\n  api: {listen_ip: 127.0.0.1, port: 9000}\n  media:\n    listen_ip: '::ffff:127.0.0.1'\n    port: 9000 #!\n"
        },
        "orchestrator.media.port",
        "is already taken by the HTTP API",
    ),
    (
        "udp-sip-in-rtp",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  rtp_ports: {start: 20000, end: 30000} #!\n  event_socket: {password: x}\n",
            "transports": "transports:\n  udp: {port: 25000}\n",
            "trunks": "trunks:\n  - name: pbx\n    inbound: {transports: [udp], auth: {acl: [10.0.0.1]}}\n",
            "numbers": "numbers: []\n",
        },
        "freeswitch.rtp_ports",
        "the RTP range: UDP ports 20000-30000 on 127.0.0.1 overlap SIP over UDP, UDP port 25000 on 127.0.0.1",
    ),
]


@pytest.mark.parametrize(("sections", "path", "message"), [c[1:] for c in PORT_CASES], ids=[c[0] for c in PORT_CASES])
def test_port_clash(tls_dir: Path, sections: dict[str, str], path: str, message: str) -> None:
    text, result = run(tls_dir, **sections)
    assert result.deployment is None
    matching = [d for d in result.errors if message in d.message]
    assert matching, f"expected an error containing {message!r}, got: {[str(d) for d in result.errors]}"
    assert matching[0].dotted_path == path
    assert matching[0].line == marker_line(text)


@pytest.mark.parametrize(
    "orchestrator",
    [
        "orchestrator:\n  api: {port: 9000}\n  media: {listen_ip: 127.0.0.2, port: 9000}\n",  # other address
        "orchestrator:\n  api: {listen_ip: '::1', port: 9000}\n  media: {listen_ip: 0.0.0.0, port: 9000}\n",  # families
        "orchestrator:\n  api: {port: 20000}\n",  # TCP inside the (UDP) RTP range
        "orchestrator:\n  media: {port: 5062}\n",
    ],
    ids=["other-address", "other-family", "other-protocol", "neighbour-port"],
)
def test_no_false_port_clash(tls_dir: Path, orchestrator: str) -> None:
    _, result = run(tls_dir, orchestrator=orchestrator)
    assert result.errors == [], [str(d) for d in result.errors]
