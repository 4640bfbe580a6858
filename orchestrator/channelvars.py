"""The channel variables the rendered FreeSWITCH config and the call controller share (a leaf: imports nothing).

The dialplan, gateways and directory (``orchestrator.render`` and ``templates/``) set the ``sipagent_*``
variables on a call; the tracker (:mod:`orchestrator.calls.tracker`) reads them back to know the call is ours,
and the controller sets the same names on the calls it places (:func:`orchestrator.calls.dialing.channel_variables`).
Every name is defined here once; the templates write theirs literally (an expression per route would cost render
time) and ``tests/test_render.py`` holds them to these names.
"""

from __future__ import annotations

from typing import Final

#: what every variable of ours starts with
PREFIX: Final = "sipagent_"

#: the trunk a call came in on or goes out through (dialplan context, gateway, directory user, originate)
TRUNK: Final = PREFIX + "trunk"
#: the agent that serves the call (dialplan route, originate)
AGENT: Final = PREFIX + "agent"
#: the E.164 number an inbound call was routed by (dialplan route)
NUMBER: Final = PREFIX + "number"
#: the ``numbers[]`` entry (number or block, as validated) whose dialplan route matched an inbound call
ROUTE: Final = PREFIX + "route"
#: set when the tracker claims an inbound call: the agent its routing rules chose (docs/configuration.md
#: #number-ranges-and-routing-rules) and the rule (its index in the entry's ``rules``, ``none`` for the entry's
#: own agent), so an orchestrator that re-attaches to the answered call keeps the agent decided at claim time
ROUTED_AGENT: Final = PREFIX + "routed_agent"
RULE: Final = PREFIX + "rule"
#: why the dialplan refused an inbound call before parking it (``srtp_required``, ``unknown_number``)
REFUSED: Final = PREFIX + "refused"
#: which limit refused an inbound call (``max_calls``, ``calls_per_second``) when ``sipagent_refused`` is
#: ``limit_exceeded`` (the trunk's ``inbound.limits``, enforced by the dialplan's ``limit``)
LIMIT: Final = PREFIX + "limit"
#: behind an edge: where the carrier's INVITE came from, as the edge saw it (``<ip>:<port>;transport=<proto>``,
#: its X-Sipagent-Source header; set in the node's ``edge`` context)
SOURCE: Final = PREFIX + "source"
#: ``outbound`` on the calls the controller places
DIRECTION: Final = PREFIX + "direction"
#: what an outbound call dials, as the API was given it
DESTINATION: Final = PREFIX + "destination"
#: an outbound trunk's caller ID (gateway variable)
DEFAULT_CALLER_ID: Final = PREFIX + "default_caller_id"
#: the file a call is being recorded to (set by the controller before ``uuid_record start``; read back on re-attach)
RECORDING_PATH: Final = PREFIX + "recording_path"
#: on an attended transfer's target leg: the call (its UUID) the target is being dialled for
TRANSFER_OF: Final = PREFIX + "transfer_of"
#: a global variable, not a channel's: the digest of the rendered files (``global_getvar sipagent_config_digest``)
CONFIG_DIGEST: Final = PREFIX + "config_digest"

#: an outbound call's API variables travel on its channel as ``sipagent_var_<name>`` (read back on re-attach)
API_VARIABLE: Final = PREFIX + "var_"
#: and its per-call agent settings as ``sipagent_override_<name>``
AGENT_OVERRIDE: Final = PREFIX + "override_"

#: set on every call before it is answered (inbound: ``uuid_setvar_multi``; outbound: on the originate):
#: silence frames while parked (the fork needs media from the first moment) and REFER without blocking
ANSWER_VARIABLES: Final[dict[str, str]] = {"send_silence_when_idle": "-1", "sip_refer_continue_after_reply": "true"}

#: behind an edge: the SIP headers the edge adds to what it relays to a node, and strips from every outside
#: request (so no carrier can set them); the node's gateways name their trunk in the first
EDGE_HEADER_PREFIX: Final = "X-Sipagent-"
TRUNK_HEADER: Final = EDGE_HEADER_PREFIX + "Trunk"
SOURCE_HEADER: Final = EDGE_HEADER_PREFIX + "Source"


def is_edge_header(name: str) -> bool:
    """True for a header name the edge reserves (``X-Sipagent-*``, any case)."""
    return name.lower().startswith(EDGE_HEADER_PREFIX.lower())
