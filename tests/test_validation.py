"""Every validation rule: a valid base deployment, broken one way per case.

Each case replaces sections of the base document; the line the error must point at carries a
``#!`` marker, so the test checks the message, the YAML path and the line number together.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from orchestrator.config import Severity, check_text

ENV = {"ESL_PASSWORD": "esl-pass", "CARRIER_PASSWORD": "carrier-pass", "OUT_PASSWORD": "out-pass"}

BASE = {
    "version": "version: 1\n",
    "freeswitch": """
        freeswitch:
          bind_ip: 127.0.0.1
          event_socket:
            password: ${ESL_PASSWORD}
        """,
    "transports": """
        transports:
          tcp: {port: 5060}
          tls:
            certificate: TLS/sip.test.crt
            private_key: TLS/sip.test.key
            ca_bundle: TLS/ca.crt
        """,
    "trunks": """
        trunks:
          - name: carrier
            inbound:
              transports: [tls]
              auth:
                digest: {username: carrier, password: "${CARRIER_PASSWORD}"}
              media_encryption: required
            outbound:
              address: sbc.carrier.example
              transport: tls
              auth: {username: out, password: "${OUT_PASSWORD}"}
          - name: pbx
            inbound:
              transports: [tcp]
              auth: {acl: [10.20.0.0/24]}
        """,
    "numbers": """
        numbers:
          - {number: "+15550000001", trunk: carrier, agent: support}
          - {number: "+15550000002", trunk: pbx, agent: support}
        """,
    "agents": """
        agents:
          - {name: support, protocol: raw, url: "ws://127.0.0.1:9000/agent"}
        """,
}


def document(tls_dir: Path, **sections: str) -> str:
    """The base document with some sections replaced (``None``-like empty string drops one)."""
    parts = []
    for key, text in BASE.items():
        text = sections.get(key, text)
        parts.append(textwrap.dedent(text).strip("\n") + "\n" if text else "")
    for key, text in sections.items():
        if key not in BASE:
            parts.append(textwrap.dedent(text).strip("\n") + "\n")
    return "".join(parts).replace("TLS/", f"{tls_dir}/")


def run(tls_dir: Path, env: dict[str, str] | None = None, **sections: str):
    text = document(tls_dir, **sections)
    return text, check_text(text, "deploy.yaml", ENV if env is None else env, tls_dir)


def marker_line(text: str) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if "#!" in line]
    assert len(lines) == 1, "each case marks exactly one line with #!"
    return lines[0]


def test_base_document_is_valid(tls_dir: Path) -> None:
    _, result = run(tls_dir)
    assert result.errors == []
    assert result.deployment is not None
    assert [t.name for t in result.deployment.trunks] == ["carrier", "pbx"]


# (id, replaced sections, expected YAML path, expected message fragment)
CASES: list[tuple[str, dict[str, str], str, str]] = [
    (
        "agent-chunk-not-a-multiple-of-20",
        {"orchestrator": "orchestrator:\n  media:\n    agent_chunk_ms: 50 #!\n"},
        "orchestrator.media.agent_chunk_ms",
        "multiple of 20",
    ),
    (
        "agent-chunk-too-large",
        {"orchestrator": "orchestrator:\n  media:\n    agent_chunk_ms: 100000 #!\n"},
        "orchestrator.media.agent_chunk_ms",
        "200",
    ),
    (
        "yaml-syntax",
        {"numbers": 'numbers:\n  - {number: "+15550000001", trunk: carrier #!\n'},
        "(top level)",
        "YAML syntax error",
    ),
    (
        "duplicate-key",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  bind_ip: 127.0.0.2 #!\n  event_socket: {password: x}\n"},
        "freeswitch.bind_ip",
        "duplicate key 'bind_ip' (first given on line",
    ),
    ("unknown-section", {"extra": "trunk: [] #!\n"}, "trunk", "did you mean 'trunks'?"),
    ("unsupported-version", {"version": "version: 2 #!\n"}, "version", "unsupported version"),
    ("missing-freeswitch", {"version": "version: 1 #!\n", "freeswitch": ""}, "freeswitch", "'freeswitch' is required"),
    (
        "missing-bind-ip",
        {"freeswitch": "freeswitch: #!\n  event_socket: {password: x}\n"},
        "freeswitch.bind_ip",
        "'bind_ip' is required",
    ),
    (
        "bind-ip-hostname",
        {"freeswitch": "freeswitch:\n  bind_ip: fs.example.com #!\n  event_socket: {password: x}\n"},
        "freeswitch.bind_ip",
        "is not an IP address",
    ),
    (
        "bind-ip-unspecified",
        {"freeswitch": "freeswitch:\n  bind_ip: 0.0.0.0 #!\n  event_socket: {password: x}\n"},
        "freeswitch.bind_ip",
        "not 0.0.0.0",
    ),
    (
        "ext-sip-ip-invalid",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  ext_sip_ip: public #!\n  event_socket: {password: x}\n"},
        "freeswitch.ext_sip_ip",
        "is not an external address",
    ),
    (
        "local-network-not-cidr",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  local_networks: [10.0.0.0/33] #!\n  event_socket: {password: x}\n"
        },
        "freeswitch.local_networks[0]",
        "is not a valid CIDR network",
    ),
    (
        "rtp-range-reversed",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  rtp_ports: {start: 30000, end: 20000} #!\n  event_socket: {password: x}\n"
        },
        "freeswitch.rtp_ports",
        "must be below end",
    ),
    (
        "rtp-range-privileged",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  rtp_ports: {start: 80, end: 20000} #!\n  event_socket: {password: x}\n"
        },
        "freeswitch.rtp_ports",
        "privileged port",
    ),
    (
        "codec-unknown",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  codecs: [PCMU, opus] #!\n  event_socket: {password: x}\n"},
        "freeswitch.codecs[1]",
        "'opus' is not allowed here: use 'PCMU', 'PCMA' or 'G722'",
    ),
    (
        "codec-duplicate",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  codecs: [PCMU, g711u] #!\n  event_socket: {password: x}\n"
        },
        "freeswitch.codecs",
        "codec 'PCMU' is listed twice",
    ),
    (
        "dtmf-payload-type",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  dtmf: {payload_type: 50} #!\n  event_socket: {password: x}\n"
        },
        "freeswitch.dtmf.payload_type",
        "must be at least 96",
    ),
    (
        "max-calls-not-number",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  max_calls: lots #!\n  event_socket: {password: x}\n"},
        "freeswitch.max_calls",
        "must be a whole number (got 'lots')",
    ),
    (
        "freeswitch-typo",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  ext_rtp_pi: 203.0.113.1 #!\n  event_socket: {password: x}\n"
        },
        "freeswitch.ext_rtp_pi",
        "unknown setting 'ext_rtp_pi'; did you mean 'ext_rtp_ip'?",
    ),
    (
        "esl-password-missing",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket: {port: 8021} #!\n"},
        "freeswitch.event_socket.password",
        "'password' is required",
    ),
    (
        "esl-password-space",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket:\n    password: two words #!\n"},
        "freeswitch.event_socket.password",
        "cannot contain spaces",
    ),
    (
        "env-missing",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket:\n    password: ${NOT_SET_ANYWHERE} #!\n"},
        "freeswitch.event_socket.password",
        "environment variable NOT_SET_ANYWHERE is not set",
    ),
    (
        "env-bad-reference",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket:\n    password: ${1BAD} #!\n"},
        "freeswitch.event_socket.password",
        "is not a valid environment reference",
    ),
    ("no-transport", {"transports": "transports: {} #!\n"}, "transports", "no SIP transport is enabled"),
    (
        "tls-no-certificate",
        {
            "transports": "transports:\n  tcp: {}\n  tls: #!\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n"
        },
        "transports.tls.certificate",
        "needs a certificate",
    ),
    (
        "tls-certificate-missing-file",
        {
            "transports": "transports:\n  tcp: {}\n  tls:\n    certificate: TLS/nope.crt #!\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n"
        },
        "transports.tls.certificate",
        "no such file",
    ),
    (
        "tls-certificate-not-pem",
        {
            "transports": "transports:\n  tcp: {}\n  tls:\n    certificate: TLS/sip.test.key #!\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n"
        },
        "transports.tls.certificate",
        "not a PEM certificate",
    ),
    (
        "tls-key-mismatch",
        {
            "transports": "transports:\n  tcp: {}\n  tls:\n    certificate: TLS/sip.test.crt\n    private_key: TLS/unrelated.key #!\n    ca_bundle: TLS/ca.crt\n"
        },
        "transports.tls.private_key",
        "does not belong to the certificate",
    ),
    (
        "tls-old-version",
        {
            "transports": "transports:\n  tcp: {}\n  tls:\n    certificate: TLS/sip.test.crt\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n    min_version: '1.1' #!\n"
        },
        "transports.tls.min_version",
        "TLS 1.2 is the floor",
    ),
    (
        "tls-weak-cipher",
        {
            "transports": "transports:\n  tcp: {}\n  tls:\n    certificate: TLS/sip.test.crt\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n    ciphers: [ECDHE-RSA-AES128-GCM-SHA256, AES128-SHA] #!\n"
        },
        "transports.tls.ciphers[1]",
        "not modern",
    ),
    (
        "tls-unknown-cipher",
        {
            "transports": "transports:\n  tcp: {}\n  tls:\n    certificate: TLS/sip.test.crt\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n    ciphers: [NOT-A-CIPHER] #!\n"
        },
        "transports.tls.ciphers[0]",
        "not a cipher suite OpenSSL knows",
    ),
    (
        "tls-verify-without-ca",
        {
            "transports": "transports:\n  tcp: {}\n  tls: #!\n    certificate: TLS/sip.test.crt\n    private_key: TLS/sip.test.key\n"
        },
        "transports.tls.ca_bundle",
        "needs a ca_bundle",
    ),
    (
        "tcp-tls-same-port",
        {
            "transports": "transports:\n  tcp: {port: 5070}\n  tls:\n    port: 5070 #!\n    certificate: TLS/sip.test.crt\n    private_key: TLS/sip.test.key\n    ca_bundle: TLS/ca.crt\n"
        },
        "transports.tls.port",
        "SIP over TLS: TCP port 5070 on 127.0.0.1 is already taken by SIP over TCP, TCP port 5070 on 127.0.0.1 (transports.tcp.port, line 7)",
    ),
    (
        "esl-port-clash",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket:\n    port: 5060 #!\n    password: x\n"},
        "freeswitch.event_socket.port",
        "the event socket: TCP port 5060 on 127.0.0.1 is already taken by SIP over TCP, TCP port 5060 on 127.0.0.1 (transports.tcp.port, line 8)",
    ),
    (
        "udp-port-in-rtp-range",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  rtp_ports: {start: 5000, end: 6000} #!\n  event_socket: {password: x}\n",
            "transports": "transports:\n  udp: {port: 5060}\n",
            "trunks": "trunks:\n  - name: pbx\n    inbound: {transports: [udp], auth: {acl: [10.0.0.1]}}\n",
            "numbers": "numbers: []\n",
        },
        "freeswitch.rtp_ports",
        "the RTP range: UDP ports 5000-6000 on 127.0.0.1 overlap SIP over UDP, UDP port 5060 on 127.0.0.1 (transports.udp.port, line 7)",
    ),
    (
        "trunk-bad-name",
        {"trunks": "trunks:\n  - name: Carrier A #!\n    outbound: {address: a.example}\n"},
        "trunks[0].name",
        "is not a valid name",
    ),
    (
        "trunk-duplicate-name",
        {
            "trunks": "trunks:\n  - {name: carrier, outbound: {address: a.example}}\n  - {name: carrier, outbound: {address: b.example}} #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[1].name",
        "duplicate trunk name 'carrier' (first defined on line",
    ),
    (
        "trunk-no-direction",
        {"trunks": "trunks:\n  - name: idle #!\n", "numbers": "numbers: []\n"},
        "trunks[0]",
        "needs an inbound section, an outbound section, or both",
    ),
    (
        "inbound-no-auth",
        {
            "trunks": "trunks:\n  - name: open\n    inbound:\n      transports: [tcp]\n      auth: {} #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.auth",
        "denied by default",
    ),
    (
        "acl-not-cidr",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth:\n        acl: [10.0.0.300/24] #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.auth.acl[0]",
        "'10.0.0.300/24' is not a valid CIDR network",
    ),
    (
        "acl-host-bits",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth:\n        acl: [10.20.0.1/24] #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.auth.acl[0]",
        "has host bits set: the network is 10.20.0.0/24",
    ),
    (
        "inbound-transport-not-enabled",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp, udp] #!\n      auth: {acl: [10.0.0.1]}\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.transports[1]",
        "transport 'udp' is not enabled",
    ),
    (
        "srtp-required-udp-only",
        {
            "transports": "transports:\n  udp: {port: 5080}\n",
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [udp]\n      auth: {acl: [10.0.0.1]}\n      media_encryption: required #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.media_encryption",
        "only allows UDP",
    ),
    (
        "media-encryption-typo",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.0.0.1]}\n      media_encryption: mandatory #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.media_encryption",
        "'mandatory' is not allowed here: use 'disabled', 'allowed' or 'required'",
    ),
    (
        "remote-domains-without-tls",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.0.0.1]}\n      remote_domains: [sbc.example.com] #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.remote_domains",
        "remote_domains apply to TLS connections",
    ),
    (
        "remote-domain-invalid",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tls]\n      auth: {acl: [10.0.0.1]}\n      remote_domains: [not_a_domain] #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.remote_domains[0]",
        "is not a domain name",
    ),
    (
        "inbound-codec-not-offered",
        {
            "freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  codecs: [PCMU]\n  event_socket: {password: x}\n",
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.0.0.1]}\n      codecs: [G722] #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.codecs[0]",
        "codec 'G722' is not in freeswitch.codecs",
    ),
    (
        "inbound-header-not-x",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.0.0.1]}\n      headers: [Customer-Id] #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.headers[0]",
        "custom headers start with 'X-'",
    ),
    (
        "inbound-header-reserved-variable",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.0.0.1]}\n      headers:\n        - {header: X-Caller, variable: system__caller_id} #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.headers[0].variable",
        "'system__' prefix is reserved",
    ),
    (
        "inbound-header-same-variable",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.0.0.1]}\n      headers:\n        - X-Customer-Id\n        - {header: X-Cust, variable: customer_id} #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.headers[1]",
        "variable 'customer_id' is already filled",
    ),
    (
        "outbound-address-sip-uri",
        {
            "trunks": "trunks:\n  - name: out\n    outbound:\n      address: sip:sbc.example.com #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.address",
        "write the address without 'sip:': 'sbc.example.com'",
    ),
    (
        "outbound-address-with-user",
        {
            "trunks": "trunks:\n  - name: out\n    outbound:\n      address: trunk@sbc.example.com #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.address",
        "is a SIP URI, not an address",
    ),
    (
        "outbound-address-with-port",
        {
            "trunks": "trunks:\n  - name: out\n    outbound:\n      address: sbc.example.com:5061 #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.address",
        "put the port in its own setting",
    ),
    (
        "outbound-transport-unknown",
        {
            "trunks": "trunks:\n  - name: out\n    outbound:\n      address: sbc.example.com\n      transport: sctp #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.transport",
        "'sctp' is not allowed here",
    ),
    (
        "outbound-transport-not-enabled",
        {
            "transports": "transports:\n  tcp: {}\n",
            "trunks": "trunks:\n  - name: out\n    outbound:\n      address: sbc.example.com\n      transport: tls #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.transport",
        "transport 'tls' is not enabled",
    ),
    (
        "outbound-register-without-auth",
        {
            "trunks": "trunks:\n  - name: out\n    outbound:\n      address: sbc.example.com\n      register: true #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.register",
        "registering needs credentials",
    ),
    (
        "outbound-header-line-break",
        {
            "trunks": 'trunks:\n  - name: out\n    outbound:\n      address: sbc.example.com\n      headers: {X-Evil: "a\\r\\nVia: x"} #!\n',
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.headers.X-Evil",
        "cannot contain line breaks",
    ),
    (
        "outbound-caller-id-not-e164",
        {
            "trunks": 'trunks:\n  - name: out\n    outbound:\n      address: sbc.example.com\n      caller_id: "5551234567" #!\n',
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.caller_id",
        "needs a leading '+' and the country code",
    ),
    (
        "outbound-srtp-required-udp",
        {
            "transports": "transports:\n  udp: {port: 5080}\n",
            "trunks": "trunks:\n  - name: out\n    outbound:\n      address: sbc.example.com\n      transport: udp\n      media_encryption: required #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].outbound.media_encryption",
        "over UDP signaling",
    ),
    (
        "digest-user-reused",
        {
            "trunks": "trunks:\n  - name: a\n    inbound: {transports: [tls], auth: {digest: {username: shared, password: x}}}\n  - name: b\n    inbound:\n      transports: [tls]\n      auth: {digest: {username: shared, password: y}} #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[1].inbound.auth.digest.username",
        "already used by trunk 'a'",
    ),
    (
        "acl-overlap",
        {
            "trunks": "trunks:\n  - name: a\n    inbound: {transports: [tcp], auth: {acl: [10.0.0.0/16]}}\n  - name: b\n    inbound:\n      transports: [tcp]\n      auth:\n        acl: [10.0.5.0/24] #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[1].inbound.auth.acl[0]",
        "overlaps 10.0.0.0/16 of trunk 'a' on tcp",
    ),
    (
        "number-no-plus",
        {"numbers": 'numbers:\n  - {number: "15550000001", trunk: carrier, agent: support} #!\n'},
        "numbers[0].number",
        "needs a leading '+'",
    ),
    (
        "number-spaces",
        {"numbers": 'numbers:\n  - {number: "+1 555 000 0001", trunk: carrier, agent: support} #!\n'},
        "numbers[0].number",
        "write it without spaces or punctuation, as '+15550000001'",
    ),
    (
        "number-00-prefix",
        {"numbers": 'numbers:\n  - {number: "0015550000001", trunk: carrier, agent: support} #!\n'},
        "numbers[0].number",
        "replace the international prefix 00",
    ),
    (
        "number-too-long",
        {"numbers": 'numbers:\n  - {number: "+1555000000100000", trunk: carrier, agent: support} #!\n'},
        "numbers[0].number",
        "at most 15 digits",
    ),
    (
        "number-duplicate",
        {
            "numbers": 'numbers:\n  - {number: "+15550000001", trunk: carrier, agent: support}\n  - {number: "+15550000001", trunk: pbx, agent: support} #!\n'
        },
        "numbers[1].number",
        "duplicate number '+15550000001'",
    ),
    (
        "number-unknown-trunk",
        {"numbers": 'numbers:\n  - {number: "+15550000001", trunk: nope, agent: support} #!\n'},
        "numbers[0].trunk",
        "unknown trunk 'nope' (known trunks: 'carrier', 'pbx')",
    ),
    (
        "number-unknown-agent",
        {"numbers": 'numbers:\n  - {number: "+15550000001", trunk: carrier, agent: nobody} #!\n'},
        "numbers[0].agent",
        "unknown agent 'nobody' (known agents: 'support')",
    ),
    (
        "number-outbound-only-trunk",
        {
            "trunks": "trunks:\n  - name: out\n    outbound: {address: sbc.example.com}\n",
            "numbers": 'numbers:\n  - {number: "+15550000001", trunk: out, agent: support} #!\n',
        },
        "numbers[0].trunk",
        "has no inbound section",
    ),
    ("numbers-not-list", {"numbers": 'numbers: #!\n  first: {number: "+15550000001"}\n'}, "numbers", "must be a list"),
    (
        "agent-unknown-protocol",
        {"agents": 'agents:\n  - {name: a, protocol: sip, url: "ws://x/y"} #!\n'},
        "agents[0]",
        "unknown protocol 'sip': use 'elevenlabs', 'twilio', 'raw'",
    ),
    (
        "agent-missing-protocol",
        {"agents": 'agents:\n  - {name: support, url: "ws://x/y"} #!\n'},
        "agents[0]",
        "'protocol' is required",
    ),
    (
        "agent-http-url",
        {"agents": 'agents:\n  - {name: support, protocol: raw, url: "http://x/y"} #!\n'},
        "agents[0].url",
        "is not a WebSocket URL",
    ),
    (
        "agent-elevenlabs-no-id",
        {"agents": "agents:\n  - {name: support, protocol: elevenlabs} #!\n"},
        "agents[0].agent_id",
        "'agent_id' is required",
    ),
    (
        "agent-twilio-format",
        {"agents": 'agents:\n  - {name: support, protocol: twilio, url: "wss://x/y", audio_format: pcm_16000} #!\n'},
        "agents[0].audio_format",
        "'pcm_16000' is not allowed here: use 'ulaw_8000'",
    ),
    (
        "agent-duplicate-name",
        {
            "agents": 'agents:\n  - {name: support, protocol: raw, url: "ws://x/y"}\n  - {name: support, protocol: raw, url: "ws://x/z"} #!\n'
        },
        "agents[1].name",
        "duplicate agent name 'support'",
    ),
    (
        "agent-header-injection",
        {
            "agents": "agents:\n  - name: support\n    protocol: raw\n    url: 'ws://x/y'\n    headers: {Authorization: \"Bearer a\\r\\nX: y\"} #!\n"
        },
        "agents[0].headers.Authorization",
        "cannot contain line breaks",
    ),
    (
        "agent-unknown-setting",
        {"agents": "agents:\n  - name: support\n    protocol: elevenlabs\n    agent_id: abc\n    apikey: x #!\n"},
        "agents[0].apikey",
        "did you mean 'api_key'?",
    ),
]


@pytest.mark.parametrize(("sections", "path", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(tls_dir: Path, sections: dict[str, str], path: str, message: str) -> None:
    text, result = run(tls_dir, **sections)
    assert result.deployment is None
    matching = [d for d in result.errors if message in d.message]
    assert matching, f"expected an error containing {message!r}, got: {[str(d) for d in result.errors]}"
    diag = matching[0]
    assert diag.dotted_path == path
    assert diag.line == marker_line(text)
    assert diag.source == "deploy.yaml"
    assert str(diag).startswith(f"deploy.yaml:{diag.line}:")


def test_case_count() -> None:
    assert len(CASES) >= 40


def test_all_errors_reported_at_once(tls_dir: Path) -> None:
    """Independent mistakes in several sections come back together, not one per run."""
    _, result = run(
        tls_dir,
        freeswitch="freeswitch:\n  bind_ip: nope\n  event_socket: {password: x}\n",
        trunks="trunks:\n  - name: Bad Name\n    outbound: {address: 'sip:x.example'}\n  - name: pbx\n    inbound: {transports: [tcp], auth: {acl: [10.0.0.0/33]}}\n",
        numbers='numbers:\n  - {number: "555", trunk: pbx, agent: support}\n  - {number: "+15550000009", trunk: pbx, agent: ghost}\n',
    )
    paths = {d.dotted_path for d in result.errors}
    assert {
        "freeswitch.bind_ip",
        "trunks[0].name",
        "trunks[0].outbound.address",
        "trunks[1].inbound.auth.acl[0]",
        "numbers[0].number",
        "numbers[1].agent",
    } <= paths


def test_reference_to_invalid_trunk_is_not_reported_as_unknown(tls_dir: Path) -> None:
    """A number pointing at a trunk that failed validation gets no misleading 'unknown trunk' error."""
    _, result = run(
        tls_dir,
        trunks="trunks:\n  - name: carrier\n    inbound: {transports: [tls], auth: {}}\n",
        numbers='numbers:\n  - {number: "+15550000001", trunk: carrier, agent: support}\n',
    )
    assert [d.dotted_path for d in result.errors] == ["trunks[0].inbound.auth"]


def test_secret_values_never_appear_in_messages(tls_dir: Path) -> None:
    env = {**ENV, "ESL_PASSWORD": "hunter2 with space"}
    _, result = run(tls_dir, env=env)
    text = "\n".join(str(d) for d in result.diagnostics)
    assert "cannot contain spaces" in text
    assert "hunter2" not in text


# -- warnings: the render goes ahead, but the operator is told ---------------------------------

WARNING_CASES: list[tuple[str, dict[str, str], str, str]] = [
    (
        "udp-enabled",
        {
            "transports": "transports:\n  tcp: {}\n  udp: {port: 5080} #!\n",
            "trunks": "trunks:\n  - name: pbx\n    inbound: {transports: [tcp], auth: {acl: [10.0.0.1]}}\n",
            "numbers": "numbers: []\n",
        },
        "transports.udp",
        "UDP signaling is for testing only",
    ),
    (
        "literal-secret",
        {"freeswitch": "freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket:\n    password: written-here #!\n"},
        "freeswitch.event_socket.password",
        "secret written in the file",
    ),
    (
        "private-bind-without-external",
        {"freeswitch": 'freeswitch:\n  bind_ip: 10.1.2.3 #!\n  event_socket: {password: "${ESL_PASSWORD}"}\n'},
        "freeswitch.bind_ip",
        "one-way or no audio behind NAT",
    ),
    (
        "only-one-external-address",
        {
            "freeswitch": 'freeswitch: #!\n  bind_ip: 10.1.2.3\n  ext_sip_ip: 203.0.113.5\n  event_socket: {password: "${ESL_PASSWORD}"}\n'
        },
        "freeswitch.ext_rtp_ip",
        "ext_rtp_ip is not set",
    ),
    (
        "srtp-without-tls",
        {
            "trunks": "trunks:\n  - name: pbx\n    inbound:\n      transports: [tcp]\n      auth: {acl: [10.0.0.1]}\n      media_encryption: required #!\n",
            "numbers": "numbers: []\n",
        },
        "trunks[0].inbound.media_encryption",
        "SRTP without TLS signaling",
    ),
    (
        "rtp-range-small",
        {
            "freeswitch": 'freeswitch:\n  bind_ip: 127.0.0.1\n  max_calls: 500\n  rtp_ports: {start: 20000, end: 20100} #!\n  event_socket: {password: "${ESL_PASSWORD}"}\n'
        },
        "freeswitch.rtp_ports",
        "room for 50 calls",
    ),
    (
        "esl-beyond-loopback",
        {
            "freeswitch": 'freeswitch:\n  bind_ip: 127.0.0.1\n  event_socket:\n    listen_ip: 10.0.0.5 #!\n    password: "${ESL_PASSWORD}"\n'
        },
        "freeswitch.event_socket.listen_ip",
        "listens beyond loopback",
    ),
]


@pytest.mark.parametrize(
    ("sections", "path", "message"), [c[1:] for c in WARNING_CASES], ids=[c[0] for c in WARNING_CASES]
)
def test_warnings(tls_dir: Path, sections: dict[str, str], path: str, message: str) -> None:
    text, result = run(tls_dir, **sections)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    matching = [d for d in result.warnings if message in d.message]
    assert matching, [str(d) for d in result.warnings]
    assert matching[0].severity is Severity.WARNING
    assert matching[0].dotted_path == path
    assert matching[0].line == marker_line(text)


def test_certificate_expiring_soon_warns(tmp_path: Path) -> None:
    from orchestrator.config.selfsigned import generate

    generate(tmp_path, ["sip.test"], days=5)
    text = document(tmp_path)
    result = check_text(text, "deploy.yaml", ENV, tmp_path)
    assert result.errors == []
    assert any(d.dotted_path == "transports.tls.certificate" and "expires on" in d.message for d in result.warnings)


def test_world_readable_key_warns(tls_dir: Path, tmp_path: Path) -> None:
    import shutil

    for name in ("sip.test.crt", "sip.test.key", "ca.crt"):
        shutil.copy(tls_dir / name, tmp_path / name)
    (tmp_path / "sip.test.key").chmod(0o644)
    result = check_text(document(tmp_path), "deploy.yaml", ENV, tmp_path)
    assert any(d.dotted_path == "transports.tls.private_key" and "chmod 600" in d.message for d in result.warnings)
