"""Rendering: golden files, XML well-formedness and escaping, determinism, modes, atomic replacement."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from fsxml import assemble, params, profile_params
from support import EXAMPLE_ENV

from orchestrator.config import check_file, check_text
from orchestrator.render import diff_tree, render_deployment, write_tree
from orchestrator.render import output as output_mod
from orchestrator.render.output import OutputError
from orchestrator.render.renderer import MARKER, RenderedFile

GOLDEN = Path(__file__).parent / "golden" / "example"
_DIGEST = re.compile(r"[0-9a-f]{64}")


def render_example(example_dir: Path, env: dict[str, str] | None = None) -> dict[str, RenderedFile]:
    result = check_file(example_dir / "deployment.yaml", env or EXAMPLE_ENV)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    return render_deployment(result.deployment, result.base_dir)


def _normalise(rel: str, content: bytes) -> str:
    """Golden comparison ignores what depends on freshly generated TLS keys (the digests)."""
    return _DIGEST.sub("<digest>", content.decode())


def test_golden_example(example_dir: Path) -> None:
    files = render_example(example_dir)
    rendered = {rel: f for rel, f in files.items() if not rel.startswith("tls/")}
    if os.environ.get("UPDATE_GOLDEN"):
        for old in GOLDEN.rglob("*"):
            if old.is_file():
                old.unlink()
        for rel, f in rendered.items():
            (GOLDEN / rel).parent.mkdir(parents=True, exist_ok=True)
            (GOLDEN / rel).write_text(_normalise(rel, f.content))
    expected = {p.relative_to(GOLDEN).as_posix() for p in GOLDEN.rglob("*") if p.is_file()}
    assert set(rendered) == expected
    for rel, f in rendered.items():
        assert _normalise(rel, f.content) == (GOLDEN / rel).read_text(), f"{rel} differs from golden (UPDATE_GOLDEN=1)"
    assert sorted(rel for rel in files if rel.startswith("tls/")) == ["tls/agent.pem", "tls/cafile.pem"]


def test_tls_material_copied(example_dir: Path) -> None:
    files = render_example(example_dir)
    cert = (example_dir / "tls" / "sip.example.com.crt").read_bytes()
    key = (example_dir / "tls" / "sip.example.com.key").read_bytes()
    assert files["tls/agent.pem"].content == cert + key
    assert files["tls/agent.pem"].sensitive
    assert files["tls/cafile.pem"].content == (example_dir / "tls" / "ca.crt").read_bytes()


def test_every_file_is_well_formed_xml(example_dir: Path) -> None:
    for rel, f in render_example(example_dir).items():
        if rel.endswith(".xml"):
            ET.fromstring(f.content)  # raises on malformed XML


def test_assembled_document(example_dir: Path, tmp_path: Path) -> None:
    """The document FreeSWITCH builds after preprocessing has the expected shape."""
    write_tree(render_example(example_dir), tmp_path / "conf")
    doc = assemble(tmp_path / "conf")
    sections = [s.get("name") for s in doc.findall("section")]
    assert sections == ["configuration", "dialplan", "directory"]
    configs = {c.get("name") for c in doc.findall("section/configuration")}
    assert {"modules.conf", "switch.conf", "event_socket.conf", "acl.conf", "sofia.conf"} <= configs
    profiles = [p.get("name") for p in doc.findall(".//configuration[@name='sofia.conf']/profiles/profile")]
    assert profiles == ["tcp", "tls"]
    tls = dict(profile_params(doc, "tls"))
    assert tls["tls-cert-dir"] == f"{tmp_path / 'conf'}/tls"
    assert tls["tls-version"] == "tlsv1.2,tlsv1.3"
    assert tls["tls-only"] == "true"
    assert tls["auth-calls"] == "true"
    assert tls["challenge-realm"] == "sip.example.com"
    tcp = profile_params(doc, "tcp")
    assert ("apply-inbound-acl", "trunk-office-pbx:trunk-office-pbx") in tcp
    assert ("bind-params", "transport=tcp") in tcp
    assert dict(tcp)["auth-calls"] == "false"
    modules = [m.get("module") for m in doc.findall(".//configuration[@name='modules.conf']/modules/load")]
    assert {"mod_sofia", "mod_event_socket", "mod_audio_fork", "mod_spandsp"} <= set(modules)
    switch = params(doc.find(".//configuration[@name='switch.conf']"))
    assert (switch["rtp-start-port"], switch["rtp-end-port"]) == ("16384", "24575")
    contexts = [c.get("name") for c in doc.findall("section[@name='dialplan']/context")]
    assert contexts == ["reject", "trunk-carrier-secure", "trunk-office-pbx"]


def test_special_characters_survive_escaping(example_dir: Path, tmp_path: Path) -> None:
    """A password with XML and preprocessor metacharacters reaches FreeSWITCH unchanged."""
    nasty = "p<a&s\"s'w>o$${domain}r$d"
    files = render_example(example_dir, {**EXAMPLE_ENV, "CARRIER_SECURE_OUT_PASSWORD": nasty})
    raw = files["sip_profiles/tls.xml"].content.decode()
    assert "$${domain}" not in raw  # the preprocessor must not see it
    write_tree(files, tmp_path / "conf")
    doc = assemble(tmp_path / "conf")
    gw = doc.find(".//gateway[@name='carrier-secure']")
    assert gw is not None
    assert params(gw)["password"] == nasty


def test_esl_password_and_ha1(example_dir: Path, tmp_path: Path) -> None:
    import hashlib

    write_tree(render_example(example_dir), tmp_path / "conf")
    doc = assemble(tmp_path / "conf")
    esl = params(doc.find(".//configuration[@name='event_socket.conf']"))
    assert esl["password"] == "esl-secret"
    assert esl["apply-inbound-acl"] == "esl"
    user = doc.find(".//domain[@name='trunks-tls']//user[@id='carrier-secure']")
    assert user is not None
    expected = hashlib.md5(b"carrier-secure:sip.example.com:inbound-secret").hexdigest()
    assert params(user)["a1-hash"] == expected
    raw = b"".join(f.read_bytes() for f in (tmp_path / "conf").rglob("*.xml"))
    assert b"inbound-secret" not in raw  # only the HA1 is written


def test_render_is_deterministic_across_processes(example_dir: Path, tmp_path: Path) -> None:
    """Same input, byte-identical output, whatever the hash seed of the process."""
    script = (
        "import sys; from pathlib import Path; from orchestrator.config import check_file;"
        "from orchestrator.render import render_deployment;"
        f"r = check_file(Path(sys.argv[1]), {EXAMPLE_ENV!r});"
        "files = render_deployment(r.deployment, r.base_dir);"
        "import hashlib; h = hashlib.sha256();"
        "[h.update(k.encode() + v.content + oct(v.mode).encode()) for k, v in files.items()];"
        "print(h.hexdigest())"
    )
    procs = [  # at the same time: each spends its time importing
        subprocess.Popen(
            [sys.executable, "-c", script, str(example_dir / "deployment.yaml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        for seed in ("0", "1", "12345")
    ]
    outputs = [proc.communicate(timeout=120) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err for _, err in outputs]
    assert len({out.strip() for out, _ in outputs}) == 1


def test_file_modes_on_disk(example_dir: Path, tmp_path: Path) -> None:
    files = render_example(example_dir)
    secret = {rel for rel, f in files.items() if f.sensitive}
    assert secret == {
        "autoload_configs/event_socket.conf.xml",
        "directory/trunks-tls.xml",
        "sip_profiles/tls.xml",
        "tls/agent.pem",
    }
    for umask in (0o000, 0o077):
        old = os.umask(umask)
        try:
            out = tmp_path / f"conf-{umask:o}"
            write_tree(files, out)
        finally:
            os.umask(old)
        for rel in files:
            mode = stat.S_IMODE((out / rel).stat().st_mode)
            assert mode == (0o600 if rel in secret else 0o644), (rel, oct(mode), oct(umask))


def test_secrets_only_in_secret_files(example_dir: Path) -> None:
    files = render_example(example_dir)
    for rel, f in files.items():
        if f.sensitive:
            continue
        for value in EXAMPLE_ENV.values():
            assert value.encode() not in f.content, (rel, value)


# -- atomic replacement ---------------------------------------------------------------------


def test_replaces_old_tree_and_removes_stale_files(example_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "work" / "conf"
    files = render_example(example_dir)
    write_tree(files, out)
    (out / "sip_profiles" / "old.xml").write_text("<profile/>")
    (out / "sip_profiles" / "old.xml").chmod(0o644)
    write_tree(files, out)
    assert not (out / "sip_profiles" / "old.xml").exists()
    assert not diff_tree(files, out).stale
    assert [p.name for p in out.parent.iterdir()] == ["conf"]  # no temporary directories left


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2-exchange", "two-renames"])
def test_swap_paths(example_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool) -> None:
    if not exchange:
        monkeypatch.setattr(output_mod, "_exchange", lambda a, b: False)
    out = tmp_path / "work" / "conf"
    files = render_example(example_dir)
    write_tree({"freeswitch.xml": RenderedFile(b"<document/>\n", 0o644), MARKER: RenderedFile(b"{}\n", 0o644)}, out)
    write_tree(files, out)
    assert not diff_tree(files, out).stale
    assert sorted(p.name for p in out.parent.iterdir()) == ["conf"]


def test_failed_render_leaves_old_tree_untouched(
    example_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "work" / "conf"
    files = render_example(example_dir)
    write_tree(files, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    real_write = os.write
    calls = {"n": 0}

    def failing_write(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 5:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(output_mod.os, "write", failing_write)
    changed = dict(files)
    changed["freeswitch.xml"] = RenderedFile(b"<document>changed</document>\n", 0o644)
    with pytest.raises(OutputError, match="No space left on device"):
        write_tree(changed, out)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before
    assert [p.name for p in out.parent.iterdir()] == ["conf"]


def test_refuses_to_replace_foreign_directory(example_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "etc"
    out.mkdir()
    (out / "passwd").write_text("root:x:0:0\n")
    files = render_example(example_dir)
    with pytest.raises(OutputError, match="not rendered by sipagent"):
        write_tree(files, out)
    assert (out / "passwd").read_text() == "root:x:0:0\n"
    write_tree(files, out, force=True)
    assert not (out / "passwd").exists()


def test_refuses_symlink_output(example_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OutputError, match="symbolic link"):
        write_tree(render_example(example_dir), tmp_path / "link")


# -- --check ----------------------------------------------------------------------------------


def test_diff_reports_changes_without_leaking_secrets(example_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "conf"
    files = render_example(example_dir)
    write_tree(files, out)
    assert not diff_tree(files, out).stale

    newer = render_example(example_dir, {**EXAMPLE_ENV, "FREESWITCH_ESL_PASSWORD": "rotated-secret"})
    (out / "autoload_configs" / "switch.conf.xml").write_text("<configuration/>\n")
    (out / "extra.xml").write_text("<x/>")
    os.chmod(out / "autoload_configs" / "acl.conf.xml", 0o600)
    diff = diff_tree(newer, out)
    assert diff.stale
    assert "autoload_configs/event_socket.conf.xml" in diff.changed
    assert "autoload_configs/event_socket.conf.xml" not in diff.patches
    assert "autoload_configs/switch.conf.xml" in diff.patches
    assert diff.removed == ["extra.xml"]
    assert ("autoload_configs/acl.conf.xml", 0o600, 0o644) in diff.mode_changed
    assert all("rotated-secret" not in p and "esl-secret" not in p for p in diff.patches.values())


def test_gateway_proxy_forms(tls_dir: Path) -> None:
    from orchestrator.render import build

    text = (
        "freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: x}}\n"
        "transports: {tcp: {}}\n"
        "trunks:\n"
        "  - {name: byname, outbound: {address: sbc.example.com}}\n"
        "  - {name: byname-port, outbound: {address: sbc.example.com, port: 5070}}\n"
        "  - {name: byip, outbound: {address: 192.0.2.7}}\n"
        "  - {name: byv6, outbound: {address: '2001:db8::7'}}\n"
    )
    result = check_text(text, "t.yaml", {}, tls_dir)
    assert result.deployment is not None
    plan = build(result.deployment, tls_dir)
    proxies = {g.name: g.proxy for g in plan.profiles[0].gateways}
    assert proxies == {
        "byname": "sbc.example.com;transport=tcp",  # no port: DNS SRV decides (RFC 3263)
        "byname-port": "sbc.example.com:5070;transport=tcp",
        "byip": "192.0.2.7:5060;transport=tcp",
        "byv6": "[2001:db8::7]:5060;transport=tcp",
    }


# -- values FreeSWITCH's preprocessor and XML parser would misread -------------------------------

HOSTILE = [
    "$${domain}",
    "$$${x}}",
    "${x}",
    "a$",
    "<include>",
    "</include>",
    "<?xml?>",
    "X-PRE-PROCESS",
    "x-pre-process cmd=",
    '<X-Pre-Process cmd="exec" data="id"/>',
    "]]>",
    "--",
    "-->",
    "<!--#set",
    "&amp;",
    "&#36;",
    "'\"<>&",
    "ünïcödé ✓ 𝄞",
]


def _hostile_deployment(value: str) -> str:
    quoted = value.replace("'", "''").replace("$", "$$")  # $$ is a literal $ in the deployment file
    return (
        "freeswitch:\n  bind_ip: 127.0.0.1\n"
        f"  event_socket: {{password: '{quoted.replace(' ', '_')}'}}\n"
        "transports: {tcp: {}}\n"
        "trunks:\n"
        "  - name: pbx-a\n"
        f"    description: '{quoted}'\n"
        "    inbound: {transports: [tcp], auth: {acl: [10.0.0.0/8]}}\n"
        "    outbound:\n"
        "      address: sbc.example.com\n"
        f"      auth: {{username: u, password: '{quoted}'}}\n"
        f"      headers: {{X-H: 'v {quoted} v', X-Pre-Process: 'x-pre-process'}}\n"
        "  - name: c\n"
        f"    inbound: {{transports: [tcp], auth: {{digest: {{username: c, password: '{quoted}'}}}}}}\n"
        "numbers:\n  - {number: '+15550001', trunk: pbx-a, agent: a}\n"
        "agents:\n  - {name: a, protocol: raw, url: 'ws://127.0.0.1:9000/a'}\n"
    )


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_read_back_unchanged(value: str, tmp_path: Path) -> None:
    """Every file is well-formed XML, and what FreeSWITCH reads after preprocessing is the value itself."""
    result = check_text(_hostile_deployment(value), "t.yaml", {}, tmp_path)
    assert result.errors == [], [str(d) for d in result.errors]
    assert result.deployment is not None
    files = render_deployment(result.deployment, tmp_path)
    for rel, f in files.items():
        if rel.endswith(".xml"):
            ET.fromstring(f.content)  # expat: strict XML 1.0 (no "--" in comments, no stray "<")
    write_tree(files, tmp_path / "conf")
    doc = assemble(tmp_path / "conf")
    esl = params(doc.find(".//configuration[@name='event_socket.conf']"))
    assert esl["password"] == value.replace(" ", "_")
    gw = doc.find(".//gateway[@name='pbx-a']")
    assert gw is not None
    assert params(gw)["password"] == value
    variables = {v.get("name"): v.get("value") for v in gw.iter("variable")}
    assert variables["sip_h_X-H"] == f"v {value} v"
    # a line holding "x-pre-process" (any case) would be dropped by the preprocessor: names escape too
    assert variables["sip_h_X-Pre-Process"] == "x-pre-process"
    assert variables["sipagent_trunk"] == "pbx-a"
    assert [c.get("name") for c in doc.findall("section[@name='dialplan']/context")] == [
        "reject",
        "trunk-pbx-a",
        "trunk-c",
    ]


def test_trunk_names_with_dashes_in_comments(tmp_path: Path) -> None:
    """'--' ends an XML comment: names are printed into comments with it broken up."""
    text = _hostile_deployment("x").replace("name: pbx-a", "name: a--b---").replace("trunk: pbx-a", "trunk: a--b---")
    result = check_text(text, "t.yaml", {}, tmp_path)
    assert result.deployment is not None
    files = render_deployment(result.deployment, tmp_path)
    acl = files["autoload_configs/acl.conf.xml"].content.decode()
    assert "<!-- trunk a- -b- - - -->" in acl
    ET.fromstring(acl)
    ET.fromstring(files["sip_profiles/tcp.xml"].content)


def test_templates_only_escape_through_known_filters() -> None:
    """A value reaches a template's output only through the escaping finalizer or one of its filters,
    in a comment only through ``comment``, and never next to a ``$`` or ``{`` (the preprocessor's syntax)."""
    import jinja2

    from orchestrator.render.renderer import FILTERS, templates_dir

    expression = re.compile(r"\{\{(.*?)\}\}", re.S)
    for path in templates_dir().rglob("*.j2"):
        text = path.read_text()
        used = {f.name for f in jinja2.Environment().parse(text).find_all(jinja2.nodes.Filter)}
        assert used <= FILTERS, (path.name, used - FILTERS)
        for m in expression.finditer(text):
            before, after = text[m.start() - 1 : m.start()], text[m.end() : m.end() + 1]
            assert before not in ("$", "{") and after not in ("$", "{"), (path.name, m.group(0))
        for comment in re.finditer(r"<!--(.*?)-->", text, re.S):
            for m in expression.finditer(comment.group(1)):
                assert m.group(1).strip().endswith("| comment"), (path.name, m.group(0))
        for m in re.finditer(r'<X-PRE-PROCESS cmd="set" data="[^"]*"', text):
            for value in expression.finditer(m.group(0)):
                assert value.group(1).strip().endswith("| preprocessor"), (path.name, value.group(0))


def test_renderer_refuses_what_xml_cannot_carry() -> None:
    """Validation keeps these out; should one slip through, the render stops instead of writing it."""
    from orchestrator.render.renderer import comment_escape, preprocessor_value, xml_escape

    for bad in ("a\x00b", "a\x1bb", "a\ufffeb", "a\x85b", "\ud800"):
        with pytest.raises(ValueError):
            xml_escape(bad)
        with pytest.raises(ValueError):
            comment_escape(bad)
    with pytest.raises(ValueError):
        preprocessor_value("a&amp;b")
    assert preprocessor_value("2001:db8::1") == "2001:db8::1"


# -- SDES keys in an RTP/AVP offer ---------------------------------------------------------------


def test_accept_crypto_in_avp(tmp_path: Path) -> None:
    """Inbound: set in the trunk's context before the call is parked (and answered); outbound: a gateway
    variable for the trunk's calls. Absent on trunks that do not ask for it."""
    text = (
        "freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: x}}\n"
        "transports: {tcp: {}}\n"
        "trunks:\n"
        "  - name: avp\n"
        "    inbound: {transports: [tcp], auth: {acl: [10.1.0.0/16]}, accept_crypto_in_avp: true}\n"
        "    outbound: {address: avp.example.com, accept_crypto_in_avp: true}\n"
        "  - name: plain\n"
        "    inbound: {transports: [tcp], auth: {acl: [10.2.0.0/16]}}\n"
        "    outbound: {address: plain.example.com}\n"
        "numbers:\n  - {number: '+15550001', trunk: avp, agent: a}\n"
        "agents:\n  - {name: a, protocol: raw, url: 'ws://127.0.0.1:9000/a'}\n"
    )
    result = check_text(text, "t.yaml", {}, tmp_path)
    assert result.deployment is not None, [str(d) for d in result.errors]
    write_tree(render_deployment(result.deployment, tmp_path), tmp_path / "conf")
    doc = assemble(tmp_path / "conf")

    def actions(context: str) -> list[str]:
        ctx = doc.find(f"section[@name='dialplan']/context[@name='{context}']")
        assert ctx is not None
        return [f"{a.get('application')} {a.get('data', '')}".strip() for a in ctx.iter("action")]

    avp = actions("trunk-avp")
    assert "set rtp_allow_crypto_in_avp=true" in avp
    assert avp.index("set rtp_allow_crypto_in_avp=true") < avp.index("park")
    assert not any("rtp_allow_crypto_in_avp" in a for a in actions("trunk-plain"))

    def gateway_vars(name: str) -> dict[str, tuple[str | None, str | None]]:
        gw = doc.find(f".//gateway[@name='{name}']")
        assert gw is not None
        return {v.get("name", ""): (v.get("value"), v.get("direction")) for v in gw.iter("variable")}

    assert gateway_vars("avp")["rtp_allow_crypto_in_avp"] == ("true", "outbound")
    assert "rtp_allow_crypto_in_avp" not in gateway_vars("plain")


def test_compare_with_odd_files_on_disk(example_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """render --check and apply read the directory on disk bounded: a huge file, a FIFO or a link to a
    device in it is reported (or ignored), never read without limit or blocked on."""
    out = tmp_path / "conf"
    files = render_example(example_dir)
    write_tree(files, out)
    monkeypatch.setattr(output_mod, "COMPARE_LIMIT", 100_000)
    with open(out / "vars.xml", "ab") as fh:
        fh.truncate(10 * 1024 * 1024)
    os.mkfifo(out / "dialplan" / "fifo.xml")
    (out / "zero.xml").symlink_to("/dev/zero")
    diff = diff_tree(files, out)
    assert diff.changed == ["vars.xml"] and "vars.xml" not in diff.patches
    assert diff.removed == []  # the FIFO and the link are not files sipagent wrote
    assert output_mod.read_tree(out)["vars.xml"] == output_mod.UNREADABLE


@pytest.mark.parametrize("passphrase", ["p<a&s\"s'w>o$${domain}r$d", "x-PRE-process <include> ]]> -- 𝄞", "$$$$"])
def test_tls_passphrase_reads_back_unchanged(passphrase: str, tls_dir: Path, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key((tls_dir / "sip.test.key").read_bytes(), password=None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    (tmp_path / "enc.key").write_bytes(encrypted)
    (tmp_path / "enc.key").chmod(0o600)
    text = (
        "freeswitch: {bind_ip: 127.0.0.1, event_socket: {password: x}}\n"
        "transports:\n  tls:\n"
        f"    certificate: {tls_dir}/sip.test.crt\n    private_key: {tmp_path}/enc.key\n    ca_bundle: {tls_dir}/ca.crt\n"
        "    private_key_passphrase: '${PASSPHRASE}'\n"
    )
    result = check_text(text, "t.yaml", {"PASSPHRASE": passphrase}, tmp_path)
    assert result.deployment is not None, [str(d) for d in result.errors]
    write_tree(render_deployment(result.deployment, tmp_path), tmp_path / "conf")
    assert dict(profile_params(assemble(tmp_path / "conf"), "tls"))["tls-passphrase"] == passphrase


def test_templates_spell_the_channel_variables_of_channelvars() -> None:
    """The templates write the ``sipagent_*`` names literally (a template expression per route costs render
    time); each one is a name :mod:`orchestrator.channelvars` defines, which the tracker reads back."""
    from orchestrator import channelvars
    from orchestrator.render.renderer import templates_dir

    written: set[str] = set()
    for path in templates_dir().rglob("*.j2"):
        written |= set(re.findall(r"(?<![\w$])sipagent_[a-z_]+(?==|\")", path.read_text()))
    assert written == {
        channelvars.TRUNK,
        channelvars.AGENT,
        channelvars.NUMBER,
        channelvars.ROUTE,
        channelvars.REFUSED,
        channelvars.CONFIG_DIGEST,
    }


@pytest.mark.parametrize(("setting", "expected"), [("", "5000"), ("rtcp_interval_ms: 1000, ", "1000"),
                                                   ("rtcp_interval_ms: 0, ", None)])  # fmt: skip
def test_rtcp_on_every_profile_unless_off(tmp_path: Path, setting: str, expected: str | None) -> None:
    text = f"freeswitch: {{{setting}bind_ip: 127.0.0.1, event_socket: {{password: x}}}}\ntransports: {{tcp: {{}}}}\n"
    result = check_text(text, "t.yaml", {}, tmp_path)
    assert result.deployment is not None, [str(d) for d in result.errors]
    write_tree(render_deployment(result.deployment, tmp_path), tmp_path / "conf")
    tcp = dict(profile_params(assemble(tmp_path / "conf"), "tcp"))
    assert tcp.get("rtcp-audio-interval-msec") == expected
