"""Hangup causes and how SIP final responses map to them (as FreeSWITCH 1.10.12 / mod_sofia reports them)."""

from __future__ import annotations

#: FreeSWITCH cause name -> numeric cause (Q.850 for the first 127, FreeSWITCH-specific above).
CAUSES: dict[str, int] = {
    "NONE": 0,
    "UNALLOCATED_NUMBER": 1,
    "NO_ROUTE_TRANSIT_NET": 2,
    "NO_ROUTE_DESTINATION": 3,
    "CHANNEL_UNACCEPTABLE": 6,
    "CALL_AWARDED_DELIVERED": 7,
    "NORMAL_CLEARING": 16,
    "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19,
    "SUBSCRIBER_ABSENT": 20,
    "CALL_REJECTED": 21,
    "NUMBER_CHANGED": 22,
    "REDIRECTION_TO_NEW_DESTINATION": 23,
    "EXCHANGE_ROUTING_ERROR": 25,
    "DESTINATION_OUT_OF_ORDER": 27,
    "INVALID_NUMBER_FORMAT": 28,
    "FACILITY_REJECTED": 29,
    "RESPONSE_TO_STATUS_ENQUIRY": 30,
    "NORMAL_UNSPECIFIED": 31,
    "NORMAL_CIRCUIT_CONGESTION": 34,
    "NETWORK_OUT_OF_ORDER": 38,
    "NORMAL_TEMPORARY_FAILURE": 41,
    "SWITCH_CONGESTION": 42,
    "ACCESS_INFO_DISCARDED": 43,
    "REQUESTED_CHAN_UNAVAIL": 44,
    "PRE_EMPTED": 45,
    "FACILITY_NOT_SUBSCRIBED": 50,
    "OUTGOING_CALL_BARRED": 52,
    "INCOMING_CALL_BARRED": 54,
    "BEARERCAPABILITY_NOTAUTH": 57,
    "BEARERCAPABILITY_NOTAVAIL": 58,
    "SERVICE_UNAVAILABLE": 63,
    "BEARERCAPABILITY_NOTIMPL": 65,
    "CHAN_NOT_IMPLEMENTED": 66,
    "FACILITY_NOT_IMPLEMENTED": 69,
    "SERVICE_NOT_IMPLEMENTED": 79,
    "INVALID_CALL_REFERENCE": 81,
    "INCOMPATIBLE_DESTINATION": 88,
    "INVALID_MSG_UNSPECIFIED": 95,
    "MANDATORY_IE_MISSING": 96,
    "MESSAGE_TYPE_NONEXIST": 97,
    "WRONG_MESSAGE": 98,
    "IE_NONEXIST": 99,
    "INVALID_IE_CONTENTS": 100,
    "WRONG_CALL_STATE": 101,
    "RECOVERY_ON_TIMER_EXPIRE": 102,
    "MANDATORY_IE_LENGTH_ERROR": 103,
    "PROTOCOL_ERROR": 111,
    "INTERWORKING": 127,
    "SUCCESS": 142,
    "ORIGINATOR_CANCEL": 487,
    "CRASH": 700,
    "SYSTEM_SHUTDOWN": 701,
    "LOSE_RACE": 502,
    "MANAGER_REQUEST": 503,
    "BLIND_TRANSFER": 800,
    "ATTENDED_TRANSFER": 801,
    "ALLOTTED_TIMEOUT": 602,
    "USER_CHALLENGE": 603,
    "MEDIA_TIMEOUT": 604,
    "PICKED_OFF": 605,
    "USER_NOT_REGISTERED": 606,
    "PROGRESS_TIMEOUT": 607,
    "INVALID_GATEWAY": 608,
    "GATEWAY_DOWN": 609,
    "INVALID_URL": 610,
    "INVALID_PROFILE": 611,
    "NO_PICKUP": 612,
    "SRTP_READ_ERROR": 613,
}


def normalize_cause(name: str | None) -> str:
    """A cause name as FreeSWITCH would use it: unknown or empty names become NORMAL_CLEARING (recorded)."""
    if not name:
        return "NORMAL_CLEARING"
    up = name.strip().upper()
    if up in CAUSES:
        return up
    if up.isdigit():
        for k, v in CAUSES.items():
            if v == int(up):
                return k
    return "NORMAL_CLEARING"


def q850(cause: str) -> int:
    """``hangup_cause_q850``: the cause number, or 16 for FreeSWITCH-only causes (BLIND_TRANSFER -> 16, recorded)."""
    n = CAUSES.get(cause, 16)
    return n if n <= 127 else 16


#: mod_sofia's hangup_cause_to_sip (1.10.12): what an unanswered inbound INVITE is answered with when the dialplan
#: hangs the call up with the cause (the causes sipagent's dialplan uses; anything else: 480)
CAUSE_TO_SIP: dict[str, tuple[int, str]] = {
    "UNALLOCATED_NUMBER": (404, "Not Found"),
    "NORMAL_TEMPORARY_FAILURE": (503, "Service Unavailable"),
    "INCOMPATIBLE_DESTINATION": (488, "Not Acceptable Here"),
    "INCOMING_CALL_BARRED": (403, "Forbidden"),
    "CALL_REJECTED": (603, "Decline"),
    "USER_BUSY": (486, "Busy Here"),
}


#: SIP final response -> (cause, reason phrase FreeSWITCH stores in sip_invite_failure_phrase).
#: 403/404/480/486/488/503/603 are recorded (fixture 04); the rest follow mod_sofia's table.
SIP_FAILURES: dict[int, tuple[str, str]] = {
    400: ("NORMAL_TEMPORARY_FAILURE", "Bad Request"),
    401: ("CALL_REJECTED", "Unauthorized"),
    402: ("CALL_REJECTED", "Payment Required"),
    403: ("CALL_REJECTED", "Forbidden"),
    404: ("UNALLOCATED_NUMBER", "Not Found"),
    405: ("SERVICE_UNAVAILABLE", "Method Not Allowed"),
    407: ("CALL_REJECTED", "Proxy Authentication Required"),
    408: ("RECOVERY_ON_TIMER_EXPIRE", "Request Timeout"),
    410: ("NUMBER_CHANGED", "Gone"),
    480: ("NO_USER_RESPONSE", "Temporarily Unavailable"),
    483: ("EXCHANGE_ROUTING_ERROR", "Too Many Hops"),
    484: ("INVALID_NUMBER_FORMAT", "Address Incomplete"),
    486: ("USER_BUSY", "Busy Here"),
    487: ("ORIGINATOR_CANCEL", "Request Terminated"),
    488: ("INCOMPATIBLE_DESTINATION", "Not Acceptable Here"),
    500: ("NORMAL_TEMPORARY_FAILURE", "Server Internal Error"),
    501: ("SERVICE_NOT_IMPLEMENTED", "Not Implemented"),
    502: ("NETWORK_OUT_OF_ORDER", "Bad Gateway"),
    503: ("NORMAL_TEMPORARY_FAILURE", "Service Unavailable"),
    504: ("RECOVERY_ON_TIMER_EXPIRE", "Server Time-out"),
    600: ("USER_BUSY", "Busy Everywhere"),
    603: ("CALL_REJECTED", "Decline"),
    604: ("NO_ROUTE_DESTINATION", "Does Not Exist Anywhere"),
    606: ("INCOMPATIBLE_DESTINATION", "Not Acceptable"),
}
