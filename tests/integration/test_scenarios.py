"""Inbound policy scenarios on a real FreeSWITCH: digest auth, ACL, SRTP required/allowed, G.711 vs G.722 rate.

Runs on the switch under test (see switch.py) when ``sipp`` is installed; skips otherwise, saying why.
The rendered example gets three extra TCP trunks so sipp (no TLS in Debian's build) can play each carrier.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import test_freeswitch_calls as calls
from deployments import loopback_example, render_and_start
from sipp_scenarios import uac
from switch import free_port, suite_env, suite_ports
from test_freeswitch_calls import FIXTURES, Bridge, Env, new_controller, wait_for

from orchestrator.calls.controller import Controller
from orchestrator.calls.tracker import Notice

pytestmark = calls.pytestmark
bridge = calls.bridge  # the stand-in media endpoint (records fork metadata)

DIGEST_USER, DIGEST_PASSWORD = "scenario-carrier", "s3cret-digest"
OUT_USER, OUT_PASSWORD = "sipagent-uas", "uas-s3cret"


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("fsscenarios")
    work = root / "deployment"
    work.mkdir()
    ports = suite_ports("uas", "bridge")
    doc = loopback_example(work, ports)
    doc["trunks"] += [
        {
            "name": "digest-tcp",
            "inbound": {
                "transports": ["tcp"],
                "auth": {"digest": {"username": DIGEST_USER, "password": DIGEST_PASSWORD}},
                "media_encryption": "allowed",
                "codecs": ["G722", "PCMA"],
            },
        },
        {
            "name": "digest-out",
            "outbound": {
                "address": "127.0.0.1",
                "port": ports["uas"],
                "transport": "tcp",
                "media_encryption": "disabled",
                "auth": {"username": OUT_USER, "password": OUT_PASSWORD},
                "caller_id": "+15557650100",
            },
        },
        {
            "name": "srtp-tcp",
            "inbound": {"transports": ["tcp"], "auth": {"acl": ["127.0.0.4"]}, "media_encryption": "required"},
        },
    ]
    doc["numbers"] += [
        {"number": "+15557650301", "trunk": "digest-tcp", "agent": "sales"},
        {"number": "+15557650302", "trunk": "srtp-tcp", "agent": "sales"},
    ]
    fs = render_and_start(doc, root, work)
    try:
        yield Env(fs, ports, work / "deployment.yaml", work)
    finally:
        fs.stop()


async def _sipp(env: Env, xml: Path, number: str, source: str) -> int:
    proc = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(xml), f"127.0.0.1:{env.ports['tcp']}", "-s", number, "-m", "1", "-nostdin", "-t", "t1",
        "-i", source, "-p", str(free_port()), "-mp", str(free_port(socket.SOCK_DGRAM) // 2 * 2), "-timeout", "20",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip
    return await proc.wait()


class Running:
    def __init__(self, controller: Controller, notices: list[Notice], bridge: Bridge) -> None:
        self.controller, self.notices, self.bridge = controller, notices, bridge


@pytest.fixture()
async def running(env: Env, bridge: tuple[Bridge, list[Controller]]) -> AsyncIterator[Running]:
    notices: list[Notice] = []
    c = await new_controller(env, notices)
    bridge[1].append(c)
    yield Running(c, notices, bridge[0])
    await c.stop()


async def test_digest_challenge_right_and_wrong_password(env: Env, running: Running) -> None:
    r = running
    no_credentials = uac(env.work / "digest-none.xml", 407, challenge=True, user=DIGEST_USER)
    assert await _sipp(env, no_credentials, "+15557650301", "127.0.0.5") == 0  # 407 with a challenge
    wrong = uac(env.work / "digest-wrong.xml", 403, challenge=True, user=DIGEST_USER, password="nope")
    assert await _sipp(env, wrong, "+15557650301", "127.0.0.5") == 0  # 403 Forbidden
    right = uac(env.work / "digest-right.xml", 200, challenge=True, user=DIGEST_USER, password=DIGEST_PASSWORD)
    assert await _sipp(env, right, "+15557650301", "127.0.0.5") == 0  # answered, then our BYE
    answered = await wait_for(r.notices, "answered")
    assert (answered.call.trunk, answered.call.agent) == ("digest-tcp", "sales")


async def test_acl_outside_rejected_inside_accepted(env: Env, running: Running) -> None:
    r = running
    # outside every ACL on a profile that also has digest trunks: challenged, and without credentials never let in
    assert await _sipp(env, uac(env.work / "acl-out.xml", 407, challenge=True), "+15557650101", "127.0.0.9") == 0
    assert not r.notices  # nothing reached the orchestrator
    assert await _sipp(env, uac(env.work / "acl-in.xml", 200), "+15557650101", "127.0.0.2") == 0
    answered = await wait_for(r.notices, "answered")
    assert answered.call.trunk == "office-pbx"


async def test_srtp_required_refuses_plain_and_takes_crypto(env: Env, running: Running) -> None:
    r = running
    plain = uac(env.work / "srtp-plain.xml", 488)
    assert await _sipp(env, plain, "+15557650302", "127.0.0.4") == 0  # 488 Not Acceptable Here
    refused = await wait_for(r.notices, "ended")  # refused by the dialplan, still recorded
    record = r.controller.ended[refused.call.uuid]
    assert (record["refused"], record["result"], record["trunk"]) == ("srtp_required", "incompatible", "srtp-tcp")
    assert record["hangup"]["sip_status"] == 488 and record["sip_call_id"]
    r.notices.clear()
    crypto = uac(env.work / "srtp-crypto.xml", 200, srtp_offer=True)
    assert await _sipp(env, crypto, "+15557650302", "127.0.0.4") == 0
    answered = await wait_for(r.notices, "answered")
    assert answered.call.trunk == "srtp-tcp" and answered.call.srtp  # the negotiated SRTP suite


async def test_srtp_allowed_takes_both_and_codec_sets_the_rate(env: Env, running: Running) -> None:
    r = running
    # the digest trunk allows SRTP: a plain G.711 offer and a G.722 offer (16 kHz at the agent) both connect
    g711 = uac(env.work / "allowed-pcma.xml", 200, challenge=True, user=DIGEST_USER, password=DIGEST_PASSWORD)
    assert await _sipp(env, g711, "+15557650301", "127.0.0.5") == 0
    g722 = uac(
        env.work / "allowed-g722.xml", 200, codec="G722", challenge=True, user=DIGEST_USER, password=DIGEST_PASSWORD
    )
    assert await _sipp(env, g722, "+15557650301", "127.0.0.5") == 0
    await asyncio.sleep(0.5)
    rates = sorted(m["rate"] for metas in r.bridge.metadata.values() for m in metas)
    codecs = sorted(m["codec"] for metas in r.bridge.metadata.values() for m in metas)
    assert rates[-2:] == [8000, 16000] and "G722" in codecs and "PCMA" in codecs


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _challenging_uas(env: Env) -> Path:
    """Fixture 03's answering UAS, but the first INVITE is challenged (407); the retry is answered."""
    text = (FIXTURES / "03-originate-answered" / "uas.xml").read_text()
    challenge = """<recv request="INVITE" crlf="true"/>
  <send>
    <![CDATA[

      SIP/2.0 407 Proxy Authentication Required
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Proxy-Authenticate: Digest realm="uas.scenario", nonce="6b8b4567327b23c6", algorithm=MD5
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
  <recv request="INVITE" crlf="true"/>"""
    text = text.replace('<recv request="INVITE" crlf="true"/>', challenge, 1)
    path = env.work / "uas-digest.xml"
    path.write_text(text)
    return path


async def test_outbound_digest_challenge_answered_and_no_answer_reported(env: Env, running: Running) -> None:
    r = running
    uas = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(_challenging_uas(env)), "-m", "1", "-nostdin", "-t", "t1",
        "-i", "127.0.0.1", "-p", str(env.ports["uas"]), "-timeout", "20", "-trace_msg", "-message_file", str(env.work / "uas-digest.log"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip
    await asyncio.sleep(0.3)
    call = await r.controller.originate(trunk="digest-out", to="+15557654321", agent="sales")
    answered = await wait_for(r.notices, "answered")  # the 407 was answered with our credentials, then 200
    assert answered.call.uuid == call.uuid
    await r.controller.hangup(call.uuid, "completed", by="agent")
    assert await asyncio.wait_for(uas.wait(), 10) == 0
    # the retry carried a correct digest for our credentials (RFC 2617, no qop)
    log = (env.work / "uas-digest.log").read_text()
    auth = re.search(r"Proxy-Authorization: Digest (.*)", log)
    assert auth is not None
    fields = dict(re.findall(r'(\w+)="([^"]*)"', auth.group(1)))
    ha1 = _md5(f"{OUT_USER}:{fields['realm']}:{OUT_PASSWORD}")
    assert fields["username"] == OUT_USER
    assert fields["response"] == _md5(f"{ha1}:{fields['nonce']}:{_md5('INVITE:' + fields['uri'])}")
    # nobody answers: ringing until the originate timeout, reported as no_answer
    silent = FIXTURES / "04-originate-failures" / "486" / "uas.xml"
    text = silent.read_text().split("<pause", 1)[0] + '  <pause milliseconds="8000"/>\n</scenario>\n'
    ring = env.work / "uas-ring.xml"
    ring.write_text(text)
    uas = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(ring), "-m", "1", "-nostdin", "-t", "t1", "-i", "127.0.0.1", "-p", str(env.ports["uas"]),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, cwd=str(env.work),
    )  # fmt: skip
    await asyncio.sleep(0.3)
    r.notices.clear()
    call = await r.controller.originate(trunk="digest-out", to="+15557654322", agent="sales", timeout=5)
    ended = await wait_for(r.notices, "ended", timeout=15)
    assert ended.call.uuid == call.uuid and ended.call.hangup is not None
    assert ended.call.hangup.result == "no_answer" and ended.call.progress == [180]
    if uas.returncode is None:
        uas.kill()


async def test_tls_digest_srtp_carrier_call_reaches_the_agent(env: Env, running: Running) -> None:
    """The example's secure trunk end to end: SIP over TLS to 5061, digest, SRTP required. FreeSWITCH itself
    plays the carrier (Debian's sipp has no TLS): it calls its own TLS profile with the trunk's credentials."""
    r, api = running, env.fs.api
    password = suite_env()["CARRIER_SECURE_PASSWORD"]
    carrier = (
        "{{origination_uuid={uuid},sip_auth_username=carrier-secure,sip_auth_password={password},"
        "rtp_secure_media=mandatory:AES_CM_128_HMAC_SHA1_80,absolute_codec_string=PCMA,"
        "origination_caller_id_number=+15550009999,sip_h_X-Customer-Id=77}}"
        f"sofia/tls/sip:+15557650001@127.0.0.1:{env.ports['tls']};transport=tls &park()"
    )
    # a wrong password: the digest challenge over TLS ends in 403
    reply = await asyncio.to_thread(api, "originate " + carrier.format(uuid="tls-wrong", password="nope"))
    assert reply.strip() == "-ERR CALL_REJECTED", reply
    assert not r.notices, "a call that failed authentication never reaches the controller"
    reply = await asyncio.to_thread(api, "bgapi originate " + carrier.format(uuid="tls-carrier", password=password))
    assert reply.startswith("+OK"), reply
    answered = await wait_for(r.notices, "answered")
    call = answered.call
    assert (call.trunk, call.number, call.agent, call.remote) == (
        "carrier-secure",
        "+15557650001",
        "support",
        "+15550009999",
    )
    await wait_for(r.notices, "fork_connected")
    assert (await asyncio.to_thread(api, f"uuid_getvar {call.uuid} sip_via_protocol")).strip() == "tls"
    assert (
        await asyncio.to_thread(api, f"uuid_getvar {call.uuid} rtp_has_crypto")
    ).strip() == "AES_CM_128_HMAC_SHA1_80"
    [meta] = r.bridge.metadata[call.uuid]
    assert meta["variables"]["customer_id"] == "77" and meta["rate"] == 8000
    await r.controller.hangup(call.uuid, "completed", by="agent")
    ended = await wait_for(r.notices, "ended")
    assert ended.call.hangup is not None and ended.call.hangup.cause == "NORMAL_CLEARING"
    await asyncio.sleep(0.5)
    assert (await asyncio.to_thread(api, "uuid_exists tls-carrier")).strip() == "false"  # the carrier got the BYE


async def test_unknown_number_is_refused_with_404_and_recorded(env: Env, running: Running) -> None:
    r = running
    assert await _sipp(env, uac(env.work / "unknown-number.xml", 404), "+15557659999", "127.0.0.2") == 0
    ended = await wait_for(r.notices, "ended")
    record = r.controller.ended[ended.call.uuid]
    assert (record["refused"], record["result"], record["hangup"]["sip_status"]) == ("unknown_number", "not_found", 404)
    assert record["to"] == "+15557659999" and record["trunk"] == "office-pbx" and record["hangup_by"] == "freeswitch"
