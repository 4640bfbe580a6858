"""How a call ended, in SIP terms: from FreeSWITCH's hang-up variables to a result an operator reads.

FreeSWITCH reports a Q.850 cause name (``USER_BUSY``) and, for SIP failures, the status the peer
sent (``sip_invite_failure_status`` / ``sip_term_status``; recorded in fixture 04). Both are kept;
the result category says what happened without collapsing everything into one generic error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: result category for each SIP final status (outbound) — the status the peer really sent
SIP_RESULTS: dict[int, str] = {
    486: "busy",
    600: "busy",
    480: "no_answer",
    408: "no_answer",
    487: "cancelled",
    404: "not_found",
    484: "not_found",
    410: "not_found",
    604: "not_found",
    403: "rejected",
    603: "rejected",
    401: "auth_failed",
    407: "auth_failed",
    488: "incompatible",
    606: "incompatible",
    415: "incompatible",
    503: "unavailable",
    502: "unavailable",
    500: "unavailable",
    504: "unavailable",
}

#: result category for a hang-up cause when no SIP status tells more
CAUSE_RESULTS: dict[str, str] = {
    "NORMAL_CLEARING": "completed",
    "USER_BUSY": "busy",
    "NO_ANSWER": "no_answer",
    "NO_USER_RESPONSE": "no_answer",
    "ORIGINATOR_CANCEL": "cancelled",
    "UNALLOCATED_NUMBER": "not_found",
    "NO_ROUTE_DESTINATION": "not_found",
    "CALL_REJECTED": "rejected",
    "INCOMING_CALL_BARRED": "rejected",
    "INCOMPATIBLE_DESTINATION": "incompatible",
    "NORMAL_TEMPORARY_FAILURE": "unavailable",
    "GATEWAY_DOWN": "unavailable",
    "DESTINATION_OUT_OF_ORDER": "unavailable",
    "NETWORK_OUT_OF_ORDER": "unavailable",
    "RECOVERY_ON_TIMER_EXPIRE": "no_answer",
    "BLIND_TRANSFER": "transferred",
    "ATTENDED_TRANSFER": "transferred",
    "MEDIA_TIMEOUT": "media_timeout",
    "LOSE_RACE": "cancelled",
}

#: the SIP status FreeSWITCH (mod_sofia's hangup_cause_to_sip, 1.10.12) answers an unanswered inbound INVITE
#: with when the call is hung up with this cause -- it sets no variable for it (disposition ``send_refuse``)
REFUSAL_STATUS: dict[str, int] = {
    **dict.fromkeys(("UNALLOCATED_NUMBER", "NO_ROUTE_TRANSIT_NET", "NO_ROUTE_DESTINATION"), 404),
    "USER_BUSY": 486,
    "NO_USER_RESPONSE": 408,
    **dict.fromkeys(("NO_ANSWER", "SUBSCRIBER_ABSENT", "NORMAL_UNSPECIFIED"), 480),
    **dict.fromkeys(("CALL_REJECTED", "DECLINE", "REJECT_ALL"), 603),
    **dict.fromkeys(("NUMBER_CHANGED", "REDIRECTION_TO_NEW_DESTINATION"), 410),
    **dict.fromkeys(("DESTINATION_OUT_OF_ORDER", "INVALID_PROFILE"), 502),
    **dict.fromkeys(("INVALID_NUMBER_FORMAT", "INVALID_URL", "INVALID_GATEWAY"), 484),
    **dict.fromkeys(("FACILITY_REJECTED", "FACILITY_NOT_IMPLEMENTED", "SERVICE_NOT_IMPLEMENTED"), 501),
    **dict.fromkeys(
        (
            "REQUESTED_CHAN_UNAVAIL",
            "NORMAL_CIRCUIT_CONGESTION",
            "NETWORK_OUT_OF_ORDER",
            "NORMAL_TEMPORARY_FAILURE",
            "SWITCH_CONGESTION",
            "GATEWAY_DOWN",
            "BEARERCAPABILITY_NOTAVAIL",
        ),
        503,
    ),
    **dict.fromkeys(("OUTGOING_CALL_BARRED", "INCOMING_CALL_BARRED", "BEARERCAPABILITY_NOTAUTH", "STALE_DATE"), 403),
    **dict.fromkeys(("BEARERCAPABILITY_NOTIMPL", "INCOMPATIBLE_DESTINATION"), 488),
    "RECOVERY_ON_TIMER_EXPIRE": 504,
    "ORIGINATOR_CANCEL": 487,
    "EXCHANGE_ROUTING_ERROR": 483,
    "BUSY_EVERYWHERE": 600,
    "DOES_NOT_EXIST_ANYWHERE": 604,
    "NOT_ACCEPTABLE": 606,
    "UNWANTED": 607,
}

#: what the agent (or an API client) may give as a hang-up reason, and the cause sent
HANGUP_REASONS: dict[str, str] = {
    "completed": "NORMAL_CLEARING",
    "busy": "USER_BUSY",
    "rejected": "CALL_REJECTED",
    "unavailable": "NORMAL_TEMPORARY_FAILURE",
    "no_answer": "NO_ANSWER",
    "error": "NORMAL_TEMPORARY_FAILURE",
}


@dataclass(frozen=True)
class Hangup:
    """The end of a call as FreeSWITCH reported it."""

    cause: str
    q850: int | None
    sip_status: int | None
    sip_phrase: str
    disposition: str
    result: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def number(value: str) -> int | None:
    """A non-negative decimal integer FreeSWITCH sent (ASCII digits only: ``"²".isdigit()`` is true), or None."""
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 18 else None


def from_variables(get: Any, answered: bool) -> Hangup:
    """Build a :class:`Hangup` from a lookup of channel variables (``get(name) -> str``).

    A failed INVITE reports ``sip_invite_failure_status``; an answered call ended by BYE has
    ``sip_term_status`` 200; a call we cancelled (``originate_timeout``) has neither but a 487.
    """
    cause = get("hangup_cause") or "NORMAL_CLEARING"
    disposition = get("sip_hangup_disposition")
    failure = number(get("sip_invite_failure_status"))
    term = number(get("sip_term_status"))
    status = failure if failure is not None else term
    if status is None and not answered and disposition == "send_refuse":
        status = REFUSAL_STATUS.get(cause, 480)  # what FreeSWITCH answered the INVITE with
    phrase = get("sip_invite_failure_phrase") or ""
    if answered:
        result = CAUSE_RESULTS.get(cause, "completed" if cause.startswith("NORMAL") else "failed")
        if result in ("busy", "no_answer", "not_found", "rejected", "cancelled", "unavailable"):
            result = "completed"  # an answered call that ends is a completed call, whatever the cause text
        if cause in ("BLIND_TRANSFER", "ATTENDED_TRANSFER", "MEDIA_TIMEOUT"):
            result = CAUSE_RESULTS[cause]
    elif status is not None and status >= 300 and status != 487:
        result = SIP_RESULTS.get(status, "failed")
    else:
        result = CAUSE_RESULTS.get(cause, "failed")
        if result == "completed":
            result = "cancelled"  # never answered, ended normally: the caller gave up
    return Hangup(cause, number(get("hangup_cause_q850")), status, phrase, disposition, result)
