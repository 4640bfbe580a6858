"""`sipagent doctor`: each check's pass / warn / fail, with local servers and fakes (no internet)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import ssl
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fake_esl import DENIED, FakeEsl, Peer, api_response
from simulator import SimulatedFreeSwitch
from simulator.texts import API_ROWS
from support import EXAMPLE, EXAMPLE_ENV
from typer.testing import CliRunner

from orchestrator import doctor as d
from orchestrator.cli import app
from orchestrator.config import check_file
from orchestrator.config.selfsigned import generate
from orchestrator.config.tls_material import TlsMaterialError
from orchestrator.doctor import verdicts as v
from orchestrator.esl.client import CommandTimeout, Endpoint

# what FreeSWITCH 1.10.12 answered to `sofia status` on the rendered example (recorded in this repo's session)
SOFIA_STATUS = (
    "                     Name\t   Type\t                                      Data\tState\n"
    "=================================================================================================\n"
    "                      tcp\tprofile\t             sip:mod_sofia@127.0.0.1:5060\tRUNNING (0)\n"
    "          tcp::office-pbx\tgateway\t  sip:sipagent@10.20.0.10;transport=tcp\tNOREG\n"
    "                      tls\tprofile\t             sip:mod_sofia@127.0.0.1:5061\tRUNNING (0) (TLS)\n"
    "      tls::carrier-secure\tgateway\t  sip:sipagent-out@sbc.carrier-secure.example:5061;transport=tls\tNOREG\n"
    "=================================================================================================\n"
    "2 profiles 0 aliases\n"
)


def _deployment(tmp: Path, edit: Any = None) -> Any:
    if not (tmp / "tls").exists():
        generate(tmp / "tls", ["sip.example.com"])
    doc = yaml.safe_load(EXAMPLE.read_text())
    if edit:
        edit(doc)
    (tmp / "d.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    result = check_file(tmp / "d.yaml", EXAMPLE_ENV)
    assert result.deployment is not None, [str(x) for x in result.errors]
    return result.deployment


def _status(results: list[d.Result], check: str, target: str | None = None) -> str:
    return next(r.status for r in results if r.check == check and (target is None or r.target == target))


def test_nat_and_udp(tmp_path: Path) -> None:
    ok = _deployment(tmp_path)
    assert _status(d.check_nat(ok), "nat") == "pass" and _status(d.check_udp(ok), "udp") == "pass"

    def private_no_ext(doc: dict) -> None:
        doc["freeswitch"].pop("ext_sip_ip")
        doc["freeswitch"].pop("ext_rtp_ip")
        doc["transports"]["udp"] = {"port": 5080}

    bad = _deployment(tmp_path, private_no_ext)
    nat = d.check_nat(bad)[0]
    assert nat.status == "warn" and "one-way" in nat.fix
    assert _status(d.check_udp(bad), "udp") == "warn"


def test_certificate_expiry_and_names(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    now = dt.datetime.now(dt.UTC)
    results = d.check_certificate(dep, tmp_path, now)
    assert _status(results, "certificate", "expiry") == "pass" and _status(results, "certificate", "names") == "pass"
    later = d.check_certificate(dep, tmp_path, now + dt.timedelta(days=10 * 365))
    assert later[0].status == "fail" and "expire" in later[0].detail
    soon = d.check_certificate(dep, tmp_path, _expiry(tmp_path) - dt.timedelta(days=5))
    assert _status(soon, "certificate", "expiry") == "warn"
    generate(tmp_path / "other", ["other.example.net"])  # a certificate for another name, in the example's place
    for suffix in ("crt", "key"):
        (tmp_path / "tls" / f"sip.example.com.{suffix}").write_bytes(
            (tmp_path / "other" / f"other.example.net.{suffix}").read_bytes()
        )
    (tmp_path / "tls" / "ca.crt").write_bytes((tmp_path / "other" / "ca.crt").read_bytes())
    wrong = d.check_certificate(dep, tmp_path, now)
    names = next(r for r in wrong if r.target == "names")
    assert names.status == "warn" and "sip.example.com" in names.detail


def _expiry(tmp: Path) -> dt.datetime:
    cert = x509.load_pem_x509_certificate((tmp / "tls" / "sip.example.com.crt").read_bytes())
    return cert.not_valid_after_utc


def test_codecs_need_spandsp_for_g722(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    assert _status(d.check_codecs(dep, {"mod_spandsp"}), "codecs", "mod_spandsp") == "pass"
    missing = d.check_codecs(dep, set())
    assert _status(missing, "codecs", "mod_spandsp") == "fail"
    assert _status(d.check_codecs(dep, None), "codecs", "mod_spandsp") == "skip"
    assert all(r.status == "pass" for r in missing if r.target != "mod_spandsp")


# `show api uuid_audio_fork` on FreeSWITCH 1.10.12 with drachtio's mod_audio_fork (recorded in this repo's
# session); the jambonz fork's row is the simulator's (its syntax adds the bidirectional-audio arguments)
DRACHTIO_FORK_API = (
    "name,description,syntax,ikey\nuuid_audio_fork,audio_fork API,<uuid> [start | stop | send_text | pause | "
    "resume | graceful-shutdown ] [wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] "
    "[bugname] [metadata],mod_audio_fork\n\n1 total.\n"
)
JAMBONZ_FORK_API = "name,description,syntax,ikey\n" + ",".join(API_ROWS[0]) + "\n\n1 total.\n"


def test_fork_module_loaded_and_able_to_play_agent_audio(tmp_path: Path) -> None:
    streaming = _deployment(tmp_path)  # the example: playback streaming
    assert _status(d.check_fork(streaming, (True, JAMBONZ_FORK_API)), "fork") == "pass"
    [wrong] = d.check_fork(streaming, (True, DRACHTIO_FORK_API))
    assert wrong.status == "fail" and "would not hear the agent" in wrong.detail and "playback: file" in wrong.fix
    assert _status(d.check_fork(streaming, (False, "\n0 total.\n")), "fork") == "fail"  # module not loaded
    assert _status(d.check_fork(streaming, (True, "\n0 total.\n")), "fork") == "warn"  # not in `show api` yet
    assert _status(d.check_fork(streaming, None), "fork") == "skip"
    file_mode = _deployment(tmp_path, lambda doc: doc["orchestrator"]["media"].update(playback="file"))
    assert _status(d.check_fork(file_mode, (True, DRACHTIO_FORK_API)), "fork") == "pass"
    assert _status(d.check_fork(file_mode, (True, JAMBONZ_FORK_API)), "fork") == "pass"


def test_profiles_and_gateways_from_sofia_status(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    results = d.check_profiles(dep, SOFIA_STATUS)
    assert _status(results, "profile", "tcp") == "pass" and _status(results, "profile", "tls") == "pass"
    assert _status(results, "gateway", "office-pbx") == "pass"
    moved = d.check_profiles(dep, SOFIA_STATUS.replace("127.0.0.1:5060", "127.0.0.1:5070"))
    assert _status(moved, "profile", "tcp") == "fail"
    down = d.check_profiles(dep, SOFIA_STATUS.replace("tls\tprofile", "xls\tprofile").replace("tls::", "xls::"))
    assert _status(down, "profile", "tls") == "fail"
    no_gw = d.check_profiles(dep, SOFIA_STATUS.replace("tcp::office-pbx", "tcp::other"))
    assert _status(no_gw, "gateway", "office-pbx") == "fail"


def _rr(**kw: Any) -> SimpleNamespace:
    return SimpleNamespace(**kw)


async def test_rfc3263_naptr_srv_a_and_fallbacks() -> None:
    zone: dict[tuple[str, str], list[Any]] = {
        ("sbc.example", "NAPTR"): [
            _rr(order=10, preference=10, service=b"SIP+D2U", replacement="_sip._udp.sbc.example."),
            _rr(order=20, preference=10, service=b"SIPS+D2T", replacement="_sips._tcp.sbc.example."),
        ],
        ("_sips._tcp.sbc.example", "SRV"): [
            _rr(priority=20, weight=0, port=5061, target="b.sbc.example."),
            _rr(priority=10, weight=0, port=5062, target="a.sbc.example."),
        ],
        ("a.sbc.example", "A"): ["192.0.2.10"],
        ("b.sbc.example", "A"): ["192.0.2.11"],
        ("plain.example", "A"): ["192.0.2.20"],
    }

    async def resolver(name: str, rdtype: str) -> list[Any]:
        return zone.get((name, rdtype), [])

    assert await d.resolve_sip("sbc.example", "tls", None, resolver) == [("192.0.2.10", 5062), ("192.0.2.11", 5061)]
    assert await d.resolve_sip("plain.example", "tcp", None, resolver) == [("192.0.2.20", 5060)]  # no NAPTR/SRV
    assert await d.resolve_sip("plain.example", "tcp", 5080, resolver) == [("192.0.2.20", 5080)]  # explicit port
    assert await d.resolve_sip("198.51.100.1", "tls", None, resolver) == [("198.51.100.1", 5061)]
    assert await d.resolve_sip("nowhere.example", "tcp", None, resolver) == []


async def test_options_over_udp_and_tcp_and_silence() -> None:
    loop = asyncio.get_running_loop()

    class Udp(asyncio.DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            self.t = transport

        def datagram_received(self, data: bytes, addr: Any) -> None:
            assert data.startswith(b"OPTIONS sip:") and b"\r\nCSeq: 1 OPTIONS\r\n" in data
            self.t.sendto(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n", addr)

    udp, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
    port = udp.get_extra_info("sockname")[1]
    assert await d.options_ping("127.0.0.1", port, "udp") == "SIP/2.0 200 OK"
    udp.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"SIP/2.0 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    tcp_port = server.sockets[0].getsockname()[1]
    assert await d.options_ping("127.0.0.1", tcp_port, "tcp") == "SIP/2.0 405 Method Not Allowed"
    server.close()
    assert await d.options_ping("127.0.0.1", tcp_port, "tcp", timeout=0.5) is None  # refused


async def test_tls_peer_modern_handshake_and_old_versions_refused(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "peer.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (tmp_path / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "k.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    results = await d.check_tls_peer("127.0.0.1", port)
    server.close()
    first = results[0]
    assert first.status == "pass" and "TLSv1.3" in first.detail
    assert [r.status for r in results[1:]] == ["pass", "pass"]  # TLS 1.0 and 1.1 refused
    assert (await d.check_tls_peer("127.0.0.1", port))[0].status == "fail"  # nothing listens now


async def test_esl_check_against_the_simulator(tmp_path: Path) -> None:
    sim = SimulatedFreeSwitch("sim-pass")
    await sim.start()
    try:
        dep = _deployment(tmp_path)
        ok, live = await d.check_esl(dep, [Endpoint("127.0.0.1", sim.port, "sim-pass", "fs1")], timeout=2)
        assert ok[0].status == "pass" and "sofia" in live
        assert _status(d.check_fork(dep, live["fork"]), "fork") == "pass"  # the simulator plays the jambonz fork
        sim.modules.discard("mod_audio_fork")
        _, live = await d.check_esl(dep, [Endpoint("127.0.0.1", sim.port, "sim-pass", "fs1")], timeout=2)
        assert "not loaded" in d.check_fork(dep, live["fork"])[0].detail
        bad, live = await d.check_esl(dep, [Endpoint("127.0.0.1", sim.port, "wrong", "fs1")], timeout=1)
        assert bad[0].status == "fail" and "wrong password" in bad[0].detail and "password" in bad[0].fix
        assert "sofia" not in live
    finally:
        await sim.stop()


def test_cli_json_and_exit_codes(tmp_path: Path, example_dir: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in EXAMPLE_ENV.items()))
    runner = CliRunner()
    result = runner.invoke(
        app, ["doctor", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--json",
              "--no-trunks", "--timeout", "0.5"],
    )  # fmt: skip
    assert result.exit_code == 1  # no FreeSWITCH here: the ESL check fails
    rows = json.loads(result.stdout)
    assert {r["check"] for r in rows} >= {"esl", "profile", "certificate", "codecs", "nat", "udp"}
    esl = next(r for r in rows if r["check"] == "esl")
    assert esl["status"] == "fail" and esl["fix"]
    assert next(r for r in rows if r["check"] == "profile")["status"] == "skip"
    for peer in ("x", "host:²", "host:0", "host:65536", "host:99999999999999999999", "a b:5061", ":5061", "[::1:5061"):
        bad = runner.invoke(
            app, ["doctor", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--peer", peer]
        )
        assert bad.exit_code == 2 and "expected HOST:PORT" in bad.output, (peer, bad.output)


# -- the event socket check tells each failure apart (fake event sockets on loopback) ----------------------


def _ep(port: int, password: str = "ClueCon", host: str = "127.0.0.1") -> Endpoint:
    return Endpoint(host, port, password, "fs1")


async def _esl_verdict(tmp: Path, ep: Endpoint, timeout: float = 0.5) -> tuple[d.Result, dict]:
    results, live = await d.check_esl(_deployment(tmp), [ep], timeout=timeout)
    [result] = results
    return result, live


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_esl_refused(tmp_path: Path) -> None:
    result, live = await _esl_verdict(tmp_path, _ep(_closed_port()))
    assert result.status == "fail" and "connection refused" in result.detail and "start FreeSWITCH" in result.fix
    assert "sofia" not in live and "connection refused" in live["unavailable"]


async def test_esl_dns_failure(tmp_path: Path) -> None:
    result, _ = await _esl_verdict(tmp_path, _ep(8021, host="no-such-node.invalid"))
    assert result.status == "fail" and "cannot resolve no-such-node.invalid" in result.detail and "DNS" in result.fix


async def test_esl_connect_timeout(tmp_path: Path) -> None:
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fill = []  # a full accept queue: the kernel drops further SYNs, as a firewall would
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fill.append(c)
    try:
        result, _ = await _esl_verdict(tmp_path, _ep(port), timeout=0.3)
    finally:
        for c in [*fill, listener]:
            c.close()
    assert result.status == "fail" and "timed out" in result.detail and "firewall" in result.fix


async def _deny(peer: Peer) -> None:
    peer.send(DENIED)


async def _wrong_password(peer: Peer) -> None:
    await peer.handshake(password="the-real-one", subscribe=False)


async def _silent(peer: Peer) -> None:
    await peer.until_closed()


async def _http(peer: Peer) -> None:
    peer.send(b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n")


async def _close_at_once(peer: Peer) -> None:
    peer.writer.close()


async def _greet_and_hang(peer: Peer) -> None:
    await peer.handshake(subscribe=False)
    await peer.command()  # `api status` never answered
    await peer.until_closed()


async def _drop_mid_checks(peer: Peer) -> None:
    await peer.handshake(subscribe=False)
    await peer.command()
    peer.send(api_response(b"UP 0 years, 0 days\nFreeSWITCH (Version 1.10.12) is ready\n"))
    await peer.command()  # sofia status: the connection goes away instead


@pytest.mark.parametrize(
    ("script", "detail", "fix"),
    [
        (_deny, "refused this host by its ACL", "freeswitch.event_socket.allow"),
        (_wrong_password, "wrong password", "freeswitch.event_socket.password"),
        (_silent, "sent no event-socket greeting", "not another service"),
        (_http, "does not speak the event socket protocol", "another service"),
        (_close_at_once, "closed the connection before authentication", "check its log"),
    ],
    ids=["acl", "password", "silent", "not-esl", "closed"],
)
async def test_esl_refusals_told_apart(tmp_path: Path, script: Any, detail: str, fix: str) -> None:
    async with FakeEsl(script) as fs:
        result, live = await _esl_verdict(tmp_path, _ep(fs.port), timeout=0.3)
    assert result.status == "fail" and detail in result.detail and fix in result.fix, result
    assert "sofia" not in live


@pytest.mark.parametrize(
    ("script", "detail"),
    [(_greet_and_hang, "got no answer within"), (_drop_mid_checks, "connection dropped during the checks")],
    ids=["command-timeout", "dropped"],
)
async def test_esl_command_failures_after_connecting(tmp_path: Path, script: Any, detail: str) -> None:
    async with FakeEsl(script) as fs:
        results, live = await d.check_esl(_deployment(tmp_path), [_ep(fs.port)], timeout=0.3)
    failure = results[-1]
    assert failure.status == "fail" and failure.target.endswith("commands") and detail in failure.detail, results
    assert "sofia" not in live and live["unavailable"]


def test_cli_reports_a_wrong_password_not_an_internal_error(tmp_path: Path, example_dir: Path) -> None:
    async def run() -> Any:
        async with FakeEsl(_wrong_password) as fs:
            doc = yaml.safe_load((example_dir / "deployment.yaml").read_text())
            doc["freeswitch"]["event_socket"]["port"] = fs.port
            (example_dir / "deployment.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
            env_file = tmp_path / "env"
            env_file.write_text("".join(f"{k}={v}\n" for k, v in EXAMPLE_ENV.items()))
            args = ["doctor", str(example_dir / "deployment.yaml"), "--env-file", str(env_file), "--json"]
            return await asyncio.to_thread(CliRunner().invoke, app, [*args, "--no-trunks", "--timeout", "0.5"])

    result = asyncio.run(run())
    assert result.exit_code == 1, result.output
    rows = json.loads(result.stdout)
    esl = next(r for r in rows if r["check"] == "esl")
    assert "wrong password" in esl["detail"] and "internal error" not in result.output
    profile = next(r for r in rows if r["check"] == "profile")
    assert profile["status"] == "skip" and "wrong password" in profile["detail"]


# -- verdicts on facts: plain functions, no sockets -------------------------------------------------------------
_EP = Endpoint("10.0.0.5", 8021, "pw", "fs1")


def test_esl_verdicts_from_node_facts() -> None:
    ready = v.NodeFacts(_EP, status="UP 0 years\nFreeSWITCH (Version 1.10.12) is ready\n", live={"sofia": "S"})
    results, live = v.esl([ready], timeout=1)
    assert [(r.target, r.status, r.detail) for r in results] == [
        ("fs1 (10.0.0.5:8021)", "pass", "authenticated; core ready")
    ]
    assert live == {"sofia": "S"}

    refused = v.NodeFacts(Endpoint("10.0.0.6", 8021, "pw", "fs2"), connect_error=ConnectionRefusedError())
    starting = v.NodeFacts(_EP, status="starting", command_error=CommandTimeout("sofia status"))
    results, live = v.esl([refused, starting], timeout=2)
    assert [r.status for r in results] == ["fail", "warn", "fail"]
    assert "connection refused at 10.0.0.6:8021" in results[0].detail
    assert results[1].detail == "authenticated; core not ready yet"
    assert results[2].target == "fs1 (10.0.0.5:8021) commands" and "within 2 s" in results[2].detail
    assert live["unavailable"].startswith("fs2: connection refused") and "; fs1: connected, but" in live["unavailable"]
    assert v.esl([], timeout=1) == ([], {"unavailable": "no event socket configured"})


def test_trunk_verdicts_from_facts() -> None:
    unresolved = v.trunk(v.TrunkFacts("carrier", "sbc.example", "tls"))
    assert [(r.check, r.status) for r in unresolved] == [("dns", "fail")]
    assert "sbc.example does not resolve" in unresolved[0].detail
    targets = [(f"192.0.2.{i}", 5061) for i in range(5)]
    silent = v.trunk(v.TrunkFacts("carrier", "sbc.example", "tls", targets))
    assert [(r.check, r.status) for r in silent] == [("dns", "pass"), ("options", "fail")]
    assert silent[0].detail == ", ".join(f"192.0.2.{i}:5061" for i in range(4)) and "over tls" in silent[1].detail
    answered = v.trunk(v.TrunkFacts("carrier", "sbc.example", "tls", targets, ("192.0.2.1", 5061, "SIP/2.0 200 OK")))
    assert answered[1] == v.Result("options", "carrier", "pass", "192.0.2.1:5061 answered 200 OK")


def test_tls_peer_verdicts_from_handshakes() -> None:
    t = ssl.TLSVersion
    none = v.tls_peer("h:5061", {t.TLSv1_2: (False, "refused"), t.TLSv1_3: (False, "refused")})
    assert [(r.status, r.detail) for r in none] == [("fail", "no TLS 1.2/1.3 handshake: refused")]
    old_cipher = v.tls_peer(
        "h:5061",
        {t.TLSv1_2: (True, "TLSv1.2 AES128-SHA"), t.TLSv1_3: (False, "x"), t.TLSv1: (True, ""), t.TLSv1_1: (False, "")},
    )
    assert [(r.target, r.status) for r in old_cipher] == [
        ("h:5061", "warn"),
        ("h:5061 TLS 1", "warn"),
        ("h:5061 TLS 1.1", "pass"),
    ]
    assert old_cipher[1].detail == "TLS 1 accepted" and "min_version 1.2" in old_cipher[1].fix
    modern = v.tls_peer(
        "h:5061",
        {t.TLSv1_2: (True, "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256"), t.TLSv1_3: (False, "x"), t.TLSv1: (False, "")}
        | {t.TLSv1_1: (False, "")},
    )
    assert modern[0] == v.Result("tls", "h:5061", "pass", "TLSv1.2 ECDHE-RSA-AES128-GCM-SHA256")


def test_certificate_verdict_on_a_file_that_did_not_load(tmp_path: Path) -> None:
    dep = _deployment(tmp_path)
    results = v.certificate(
        dep, TlsMaterialError("transports.tls.certificate", "certificate: no such file"), dt.datetime.now(dt.UTC)
    )
    assert [(r.check, r.status, r.detail) for r in results] == [("certificate", "fail", "certificate: no such file")]
