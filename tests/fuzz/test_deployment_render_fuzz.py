"""Property-based tests: deployment file → validate → render, with hostile values in every string setting.

Properties:

* ``check_text`` never raises, whatever the YAML; a finding is always one line without unsafe characters.
* validate passes ⇒ render succeeds, every rendered XML file is well-formed (expat), and what FreeSWITCH
  reads after its preprocessor (tests/fsxml.py models switch_xml.c) is exactly the configured value.
* validate fails ⇒ it says why (at least one error), and there is no deployment.
* ``sipagent validate`` and ``sipagent show`` exit 0 or 2, never with a traceback, for any value.

Bounded for CI: a few hundred examples, no deadline (the machine may be busy), well under 30 s.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml
from fsxml import assemble, params
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from orchestrator.cli import app
from orchestrator.config import check_text
from orchestrator.config.model import Deployment
from orchestrator.config.text import first_unsafe
from orchestrator.render import render_deployment, write_tree

FUZZ = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# what breaks XML, FreeSWITCH's preprocessor, dialplan regexes, terminals and log lines
HOSTILE = [
    "]]>",
    "--",
    "-->",
    "<!--",
    "<!--#",
    "$${x}",
    "$${domain}",
    "${x}",
    "$",
    "$$",
    "{",
    "}",
    "<",
    ">",
    "&",
    "&amp;",
    "&#36;",
    "'",
    '"',
    "\\",
    "[/x]",
    "[bold]",
    ":smile:",
    "\x1b[31m",
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x01",
    "\x7f",
    "\x85",
    "\x9b",
    "\u2028",
    "\u202e",
    "\ufeff",
    "\ufffe",
    "x-pre-process",
    "X-PRE-PROCESS",
    '<X-PRE-PROCESS cmd="exec" data="id"/>',
    "<include>",
    "</include>",
    "<?",
    "ARRAY::",
    "é",
    "𝄞",
    " ",
    "%",
    "%zz",
    "@",
    ":",
    "/",
    "^",
    "|",
    ",",
    ";",
    "=",
    "*",
    "+",
    "(",
    ")",
    ".",
    "-",
    "fe80::1%eth0",
    "sip:",
    "a" * 300,
]

hostile = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=6)), min_size=0, max_size=4).map("".join)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid value most of the time, something hostile otherwise."""
    return st.one_of(valid, valid, valid, valid, hostile)


# free text and secrets take anything without unsafe characters: XML, preprocessor and markup syntax
# in them must be rendered escaped and read back unchanged
_ALLOWED = [h for h in HOSTILE if h.isprintable() and len(h) < 50] + ["a", "b", "1"]
allowed_text = st.lists(st.sampled_from(_ALLOWED), max_size=5).map("".join)
token = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,8}", fullmatch=True)
host = st.one_of(
    st.sampled_from(["sbc.example.com", "10.1.2.3", "2001:db8::7", "[2001:db8::8]", "a-b.c.example"]), token
)
number = st.integers(1, 10**10).map(lambda n: f"+1{n}")


@st.composite
def deployments(draw: st.DrawFn) -> dict[str, Any]:
    """A deployment document (plain data, before YAML). Half the examples hold only values that should
    validate (hostile markup in free text and secrets included); the other half mix hostile values into
    every setting."""
    clean = draw(st.booleans())

    def pick(valid: st.SearchStrategy[Any]) -> Any:
        return draw(valid if clean else mostly(valid))

    def free() -> str:
        return draw(allowed_text if clean else st.one_of(allowed_text, hostile))

    def secret(blanks: bool = True) -> str:
        value = "s" + free()[:100]
        return value if blanks or not clean else value.replace(" ", "_")

    def header_value() -> str:
        return "v" + free()[:500] + "v" if clean else free()

    names = [pick(token) for _ in range(draw(st.integers(1, 3)))]
    if clean:
        names = list(dict.fromkeys(names))
    trunks = []
    for i, name in enumerate(names):
        trunk: dict[str, Any] = {"name": name, "description": free()}
        encryption = draw(st.sampled_from(["allowed", "required"] if clean else ["disabled", "allowed", "required"]))
        if draw(st.booleans()):
            auth: dict[str, Any] = {"acl": [pick(st.just(f"10.{i}.0.0/16"))]}
            if draw(st.booleans()):
                auth["digest"] = {"username": pick(st.just(f"user{i}")), "password": secret()}
            trunk["inbound"] = {
                "transports": ["tcp"],
                "auth": auth,
                "media_encryption": encryption,
                "accept_crypto_in_avp": draw(st.booleans()),
                "headers": list(dict.fromkeys(pick(st.sampled_from(["X-Customer-Id", "X-A-B"])) for _ in range(2))),
            }
        headers = {pick(st.sampled_from(["X-Origin", "X-Pre-Process", "X-Campaign"])): header_value() for _ in range(3)}
        outbound: dict[str, Any] = {
            "address": pick(host),
            "media_encryption": encryption,
            "accept_crypto_in_avp": draw(st.booleans()),
            "headers": headers,
        }
        if draw(st.booleans()):
            outbound["auth"] = {
                "username": pick(token),
                "password": secret(),
                "realm": pick(st.sampled_from(["sip.carrier.example", "asterisk"])),
            }
        if draw(st.booleans()):
            outbound["from_domain"] = pick(host)
        if draw(st.booleans()):
            outbound["caller_id"] = pick(number)
        trunk["outbound"] = outbound
        trunks.append(trunk)
    agents = [
        {
            "name": pick(st.just("agent")),
            "protocol": "elevenlabs",
            "agent_id": "id" + free(),
            "headers": {pick(st.just("Authorization")): free()},
        },
        {"name": "raw", "protocol": "raw", "url": pick(st.sampled_from(["ws://127.0.0.1:9000/a", "wss://h/x?y=1"]))},
    ]
    inbound_names = [t["name"] for t in trunks if "inbound" in t]
    numbers = []
    if inbound_names:
        picked = [pick(number) for _ in range(draw(st.integers(0, 2)))]
        numbers = [{"number": n, "trunk": inbound_names[0], "agent": "raw"} for n in dict.fromkeys(picked)]
    return {
        "version": 1,
        "freeswitch": {
            "bind_ip": pick(st.sampled_from(["127.0.0.1", "10.0.0.10", "2001:db8::10"])),
            "ext_sip_ip": pick(st.sampled_from(["203.0.113.10", "stun:stun.example.com:3478"])),
            "ext_rtp_ip": "203.0.113.10",
            "sip_domain": pick(st.sampled_from(["sip.example.com", "pbx.example.org"])),
            "event_socket": {"password": secret(blanks=False)},
        },
        "transports": {"tcp": {"port": 5060}},
        "trunks": trunks,
        "numbers": numbers,
        "agents": agents,
        "orchestrator": {
            "nodes": [{"name": "fs1", "host": pick(host), "password": secret(blanks=False)}],
            "media_url": pick(st.sampled_from(["ws://127.0.0.1:8090", "ws://[::1]:8090/fork"])),
            "records": pick(st.just("calls.jsonl")),
            "api": {"port": draw(st.sampled_from([8080, 8081] if clean else [8080, 8090, 8021, 5060]))},
        },
    }


def _literal(value: Any) -> Any:
    """Data whose strings reach the model unchanged (``$`` is the deployment file's interpolation)."""
    if isinstance(value, str):
        return value.replace("$", "$$")
    if isinstance(value, list):
        return [_literal(v) for v in value]
    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    return value


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(_literal(doc), allow_unicode=True, width=1 << 20, sort_keys=False)


_PLAIN_DATA = re.compile(r"[A-Za-z0-9_+=,.:-]*")


def _check_readback(deployment: Deployment, conf: Path) -> None:
    """What FreeSWITCH reads, after preprocessing and XML decoding, is the configured value."""
    variables: dict[str, str] = {}
    doc = assemble(conf, variables)
    assert variables["domain"] == deployment.sip_domain
    esl = params(doc.find(".//configuration[@name='event_socket.conf']"))
    assert esl["password"] == deployment.freeswitch.event_socket.password.get_secret_value()
    for trunk in deployment.trunks:
        out = trunk.outbound
        if out is not None:
            gws = doc.findall(f".//gateway[@name='{trunk.name}']")
            assert len(gws) == 1
            gw = params(gws[0])
            assert gw["username"] == (out.auth.username if out.auth else "sipagent")
            if out.auth:
                assert gw["password"] == out.auth.password.get_secret_value()
                assert gw.get("realm") == out.auth.realm
            assert gw.get("from-domain") == out.from_domain
            found = {v.get("name"): v.get("value") for v in gws[0].iter("variable")}
            assert found["sipagent_trunk"] == trunk.name
            for name, value in out.headers.items():
                assert found[f"sip_h_{name}"] == value
            assert ("rtp_allow_crypto_in_avp" in found) == out.accept_crypto_in_avp
        ib = trunk.inbound
        if ib is not None:
            ctx = doc.find(f"section[@name='dialplan']/context[@name='trunk-{trunk.name}']")
            assert ctx is not None
            data = [a.get("data", "") for a in ctx.iter("action")]
            assert all(_PLAIN_DATA.fullmatch(d) for d in data), data  # nothing for ${...} expansion
            assert ("rtp_allow_crypto_in_avp=true" in data) == ib.accept_crypto_in_avp
            if ib.auth.digest:
                users = doc.findall(f".//domain[@name='trunks-tcp']//user[@id='{ib.auth.digest.username}']")
                assert len(users) == 1
    for n in deployment.numbers:
        [ext] = doc.findall(f".//extension[@name='{n.number}']")
        condition = ext.find("condition")
        assert condition is not None and condition.get("expression") == "^\\+?" + n.number[1:] + "$"


@FUZZ
@given(doc=deployments())
def test_validate_then_render_is_safe(doc: dict[str, Any], tmp_path_factory: Any) -> None:
    text = to_yaml(doc)
    result = check_text(text, "fuzz.yaml", {}, Path("/nonexistent"))
    for diag in result.diagnostics:
        assert first_unsafe(str(diag)) is None, repr(str(diag))
    if result.deployment is None:
        assert result.errors, "an invalid deployment says why"
        return
    files = render_deployment(result.deployment, Path("/nonexistent"))
    for rel, f in files.items():
        if rel.endswith(".xml"):
            ET.fromstring(f.content)  # well-formed XML 1.0
    conf = tmp_path_factory.mktemp("conf") / "conf"
    write_tree(files, conf)
    _check_readback(result.deployment, conf)


# -- any YAML: the loader never raises ----------------------------------------------------------------

TOKENS = [
    "&a ",
    "*a",
    "&b ",
    "*b",
    "[",
    "]",
    "{",
    "}",
    ": ",
    ", ",
    "- ",
    "\n",
    "  ",
    "<<: ",
    "x",
    "'",
    '"',
    "!!null ",
    "---\n",
    "${A}",
    "$$",
    "${",
    "~",
    "#",
    "|\n",
    ">\n",
    "? ",
    "\t",
    "%YAML 1.1\n",
    "\\",
    "\x00",
    "é",
]


@settings(max_examples=200, deadline=None, database=None)
@given(
    parts=st.lists(st.sampled_from(TOKENS), max_size=40),
    env=st.dictionaries(st.just("A"), st.one_of(hostile, st.just("caf\udce9")), max_size=1),
)
def test_any_yaml_gives_diagnostics_not_exceptions(parts: list[str], env: dict[str, str]) -> None:
    result = check_text("".join(parts), "any.yaml", env, Path("/nonexistent"))
    assert all(first_unsafe(str(d)) is None for d in result.diagnostics)
    assert (result.deployment is None) == bool(result.errors)


# -- the CLI: exit 0 or 2, one line per finding, never a traceback ------------------------------------

runner = CliRunner()


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=deployments())
def test_validate_and_show_never_crash(doc: dict[str, Any], tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("cli") / "d.yaml"
    path.write_text(to_yaml(doc), encoding="utf-8")
    for command in ("validate", "show"):
        result = runner.invoke(app, [command, str(path)], env={"COLUMNS": "100"})
        assert result.exit_code in (0, 2), (command, result.output, result.exception)
        assert "Traceback" not in result.output and "internal error" not in result.output
        assert "\x1b" not in result.output  # no value restyles the terminal
