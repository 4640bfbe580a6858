"""The channel variables mod_sofia sets on the simulator's legs, in the recorded order (pure functions).

FreeSWITCH 1.10.12 sets these in ``src/mod/endpoints/mod_sofia/sofia.c`` (``sofia_handle_sip_i_invite`` for an
inbound INVITE, ``sofia_handle_sip_i_state`` for the replies to an outbound one), ``sofia_glue.c``
(``sofia_glue_do_invite``) and ``src/switch_core_media.c`` (codec negotiation). The order is the one of the
recordings (tests/fixtures_esl/11-park-claim for inbound, fixtures 03 / 04 for originate): CHANNEL_CREATE and
CHANNEL_DATA print variables in insertion order, and tests/test_simulator.py compares them with the fixtures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .channel import new_uuid

if TYPE_CHECKING:  # pragma: no cover
    from .channel import SimChannel

Vars = list[tuple[str, str]]


def codec_vars(codec: str, rate: int) -> Vars:
    """The negotiated-codec variables FreeSWITCH sets on a channel (recorded order)."""
    return [
        ("rtp_use_codec_name", codec),
        ("rtp_use_codec_rate", str(rate)),
        ("rtp_use_codec_ptime", "20"),
        ("rtp_use_codec_channels", "1"),
        ("rtp_last_audio_codec_string", f"{codec}@{rate}h@20i@1c"),
        ("read_codec", codec),
        ("original_read_codec", codec),
        ("read_rate", str(rate)),
        ("original_read_rate", str(rate)),
        ("write_codec", codec),
        ("write_rate", str(rate)),
        ("dtmf_type", "rfc2833"),
    ]


@dataclass(frozen=True)
class InboundDialog:
    """What the carrier's INVITE says about the dialog (From, Via, Call-ID), as sofia stores it."""

    peer: str  # the carrier's IP
    port: int  # the carrier's source port
    transport: str  # tcp, tls or udp
    call_id: str
    via: str
    display: str | None  # the From display name, when it differs from the number
    full_from: str

    @classmethod
    def of(cls, ch: SimChannel, peer: str, port: int) -> InboundDialog:
        """The dialog of a new inbound channel ``ch`` from ``peer:port`` (a fresh Call-ID)."""
        transport = ch.sofia_profile if ch.sofia_profile in ("tcp", "tls", "udp") else "udp"
        caller = ch.caller_id
        display = ch.caller_name if ch.caller_name != caller else None
        return cls(
            peer=peer,
            port=port,
            transport=transport,
            call_id=f"{new_uuid()}@{peer}",
            via=f"SIP/2.0/{transport.upper()} {peer}:{port};branch=z9hG4bK-{ch.tag}",
            display=display,
            full_from=(f'"{display}" ' if display else "") + f"<sip:{caller}@{peer}:{port}>;tag={ch.tag}",
        )


def inbound_vars(ch: SimChannel, dialog: InboundDialog, *, local: str, prof_url: str,
                 sip_headers: dict[str, str]) -> Vars:  # fmt: skip
    """Every variable of an inbound channel's CHANNEL_CREATE after the core ones (recorded order)."""
    return [
        *_inbound_from_vars(ch, dialog, local, prof_url),
        *_inbound_to_vars(ch, dialog, local, prof_url),
        *((f"sip_h_{k}", val) for k, val in sip_headers.items()),
        *_inbound_sdp_vars(ch, dialog.peer),
    ]


def _inbound_from_vars(ch: SimChannel, d: InboundDialog, local: str, prof_url: str) -> Vars:
    caller, peer, port = ch.caller_id, d.peer, d.port
    v: Vars = [
        ("direction", "inbound"),
        ("uuid", ch.uuid),
        ("call_uuid", ch.uuid),
        ("session_id", str(ch.session_id)),
        ("sip_from_user", caller),
        ("sip_from_port", str(port)),
        ("sip_from_uri", f"{caller}@{peer}:{port}"),
        ("sip_from_host", peer),
        ("video_media_flow", "disabled"),
        ("text_media_flow", "disabled"),
        ("channel_name", ch.name),
        ("sip_call_id", d.call_id),
        ("sip_local_network_addr", local),
        ("sip_network_ip", peer),
        ("sip_network_port", str(port)),
        ("sip_invite_stamp", str(ch.times["created"])),
        ("sip_received_ip", peer),
        ("sip_received_port", str(port)),
        ("sip_via_protocol", d.transport),
        ("sip_from_user_stripped", caller.lstrip("+")),
        ("sip_from_tag", ch.tag),
        ("sofia_profile_name", ch.sofia_profile),
        ("sofia_profile_url", prof_url),
        ("recovery_profile_name", ch.sofia_profile),
        ("sip_full_via", d.via),
    ]
    if d.transport != "udp":
        v.append(("sip_recover_via", d.via))
    if d.display:
        v.append(("sip_from_display", d.display))
    return v


def _inbound_to_vars(ch: SimChannel, d: InboundDialog, local: str, prof_url: str) -> Vars:
    caller, dest, peer, port = ch.caller_id, ch.destination, d.peer, d.port
    prof_port = prof_url.rsplit(":", 1)[-1]
    v: Vars = [
        ("sip_full_from", d.full_from),
        ("sip_full_to", f"<sip:{dest}@{local}:{prof_port}>"),
        ("sip_req_user", dest),
        ("sip_req_port", prof_port),
        ("sip_req_uri", f"{dest}@{local}:{prof_port}"),
        ("sip_req_host", local),
        ("sip_to_user", dest),
        ("sip_to_port", prof_port),
        ("sip_to_uri", f"{dest}@{local}:{prof_port}"),
        ("sip_to_host", local),
        ("sip_contact_params", f"transport={d.transport.upper()}"),
        ("sip_contact_user", caller),
        ("sip_contact_port", str(port)),
        ("sip_contact_uri", f"{caller}@{peer}:{port}"),
        ("sip_contact_host", peer),
        ("sip_user_agent", "simulated-carrier"),
        ("sip_via_host", peer),
        ("sip_via_port", str(port)),
    ]
    if d.transport != "udp":
        v.append(("sip_via_rport", str(port)))
    v.append(("max_forwards", "70"))
    return v


def _remote_sdp_vars(ch: SimChannel, ip: str, origin: str, offered: Vars | None = None) -> Vars:
    """The far end's SDP from ``ip`` as sofia stores it; ``offered``: an inbound offer's codec string."""
    return [
        ("switch_r_sdp", ch.sdp(ip, ch.remote_media_port, origin=origin)),
        ("ep_codec_string", f"CORE_PCM_MODULE.{ch.codec}@{ch.rate}h@20i@64000b"),
        *(offered or []),
        ("remote_video_media_flow", "inactive"),
        ("remote_text_media_flow", "inactive"),
        ("remote_audio_media_flow", "sendrecv"),
    ]


def _inbound_sdp_vars(ch: SimChannel, peer: str) -> Vars:
    codec, rate = ch.codec, ch.rate
    return [
        *_remote_sdp_vars(ch, peer, "carrier", [("rtp_use_codec_string", "PCMA,PCMU")]),
        ("audio_media_flow", "sendrecv"),
        ("remote_media_ip", peer),
        ("remote_media_port", str(ch.remote_media_port)),
        ("rtp_audio_recv_pt", "0" if codec == "PCMU" else "8"),
        *codec_vars(codec, rate),
        ("endpoint_disposition", "RECEIVED"),
    ]


def outbound_vars(leg: SimChannel, *, gateway: str | None, profile: str, prof_url: str, local: str, uri: str,
                  variables: Vars, codec_string: str | None) -> Vars:  # fmt: skip
    """The variables of an outbound leg's CHANNEL_CREATE: sofia's, then the dial string's, then the media ones."""
    v: Vars = [
        ("direction", "outbound"),
        ("is_outbound", "true"),
        ("uuid", leg.uuid),
        ("call_uuid", leg.uuid),
        ("session_id", str(leg.session_id)),
    ]
    if gateway:
        v.append(("sip_gateway_name", gateway))
    v += [
        ("sip_local_network_addr", local),
        ("sip_profile_name", "gateway" if gateway else profile),
        ("video_media_flow", "disabled"),
        ("text_media_flow", "disabled"),
        ("channel_name", leg.name),
        ("sip_destination_url", f"sip:{uri}"),
    ]
    v += variables
    v += [
        ("originate_early_media", "true"),
        ("originate_endpoint", "sofia"),
        ("rtp_use_codec_string", codec_string or "PCMA,PCMU"),
        ("local_media_ip", local),
        ("local_media_port", str(leg.local_media_port)),
        ("advertised_media_ip", local),
        ("audio_media_flow", "sendrecv"),
        ("rtp_local_sdp_str", leg.sdp(local, leg.local_media_port) + "a=sendrecv\r\n"),
        ("sip_outgoing_contact_uri", f"<sip:mod_sofia@{local}:{prof_url.rsplit(':', 1)[-1]}>"),
        ("sip_req_uri", uri),
        ("sip_to_host", uri.split("@")[-1]),
        ("sip_from_host", local),
        ("sofia_profile_name", profile),
        ("recovery_profile_name", profile),
        ("sofia_profile_url", prof_url),
    ]
    return v


def reply_vars(leg: SimChannel, host: str) -> Vars:
    """The far end's first reply to an outbound INVITE (``host`` = ``ip[:port]`` of the request URI)."""
    ip = host.split(":")[0]
    port = host.split(":")[1] if ":" in host else "5060"
    return [
        ("sip_reply_host", ip),
        ("sip_reply_port", port),
        ("sip_network_ip", ip),
        ("sip_network_port", port),
        ("sip_from_user", leg.caller_id),
        ("sip_to_user", leg.destination),
        ("sip_to_tag", new_uuid()[:13].replace("-", "")),
        ("sip_from_tag", leg.tag),
        ("sip_cseq", "1"),
        ("sip_call_id", new_uuid()),
    ]


def outbound_answer_vars(leg: SimChannel, ip: str) -> Vars:
    """The far end's 200 OK with SDP from ``ip``: its SDP and the negotiated codec."""
    return [*_remote_sdp_vars(leg, ip, "far-end"), *codec_vars(leg.codec, leg.rate)]
