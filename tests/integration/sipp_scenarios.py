"""sipp UAC scenarios for the real-FreeSWITCH suite, built from parameters (one INVITE flow, any outcome)."""

from __future__ import annotations

from pathlib import Path

_INVITE = """
  <send retrans="500">
    <![CDATA[

      INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Scenario" <sip:{user}@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: {cseq} INVITE
      Contact: <sip:{user}@[local_ip]:[local_port];transport=[transport]>
{auth}      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 53655765 2353687637 IN IP[local_ip_type] [local_ip]
      s=-
      c=IN IP[media_ip_type] [media_ip]
      t=0 0
      m=audio [media_port] {profile} {pt} 101
      a=rtpmap:{pt} {codec}
      a=rtpmap:101 telephone-event/8000
{crypto}
    ]]>
  </send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
"""

_ACK = """
  <send>
    <![CDATA[

      ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      CSeq: {cseq} ACK
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
"""

_BYE = """
  <pause milliseconds="{hold_ms}"/>
  <send retrans="500">
    <![CDATA[

      BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "Scenario" <sip:{user}@[remote_ip]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: {cseq} BYE
      Max-Forwards: 70
      Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
"""

_BYE_FROM_FAR_END = """
  <recv request="BYE" timeout="{hold_ms}"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
"""

CODECS = {"PCMU": ("0", "PCMU/8000"), "PCMA": ("8", "PCMA/8000"), "G722": ("9", "G722/8000")}
CRYPTO = (
    "      a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVzcyAoc2VxKCkgPT0yKSB7\n"
)


def uac(
    path: Path,
    expect: int,
    *,
    codec: str = "PCMA",
    srtp_offer: bool = False,
    challenge: bool = False,
    password: str | None = None,
    user: str = "+15550001234",
    hold_ms: int = 1500,
    far_end_bye: bool = False,
) -> Path:
    """Write a scenario: INVITE (optionally answering a 401/407 challenge), expect ``expect``; on 200 hold and
    send BYE, or with ``far_end_bye`` wait up to ``hold_ms`` for FreeSWITCH's BYE and answer it."""
    pt, rtpmap = CODECS[codec]
    profile = "RTP/SAVP" if srtp_offer else "RTP/AVP"
    body = _INVITE.format(
        user=user, cseq=1, auth="", profile=profile, pt=pt, codec=rtpmap, crypto=CRYPTO if srtp_offer else ""
    )
    cseq = 1
    if challenge:
        body += '  <recv response="407" auth="true"/>\n' + _ACK.format(cseq=1)
        if password is None:
            return _write(path, body)
        cseq = 2
        auth = f"      [authentication username={user} password={password}]\n"
        body += _INVITE.format(
            user=user, cseq=2, auth=auth, profile=profile, pt=pt, codec=rtpmap, crypto=CRYPTO if srtp_offer else ""
        )
    body += f'  <recv response="{expect}"/>\n' + _ACK.format(cseq=cseq)
    if expect == 200:
        bye = _BYE_FROM_FAR_END if far_end_bye else _BYE
        body += bye.format(user=user, cseq=cseq + 1, hold_ms=hold_ms)
    return _write(path, body)


def _write(path: Path, body: str) -> Path:
    path.write_text(
        '<?xml version="1.0" encoding="ISO-8859-1" ?>\n<!DOCTYPE scenario SYSTEM "sipp.dtd">\n'
        f'<scenario name="{path.stem}">{body}</scenario>\n'
    )
    return path
