"""A FreeSWITCH 1.10.12 event-socket simulator for tests.

``SimulatedFreeSwitch`` is an asyncio ESL server that answers and emits events the way the recorded
FreeSWITCH does (``shared/fixtures/freeswitch-1.10.12`` and ``tests/fixtures_esl``), plus methods that
script the outside world (inbound calls, far-end hangups, DTMF, originate / REFER outcomes)::

    sim = SimulatedFreeSwitch(password="ClueCon")
    await sim.start()                       # 127.0.0.1, free port -> sim.port
    ch = await sim.inbound_call(destination="+15557650001", variables={"sipagent_agent": "support"},
                                park_timeout="10:NORMAL_TEMPORARY_FAILURE")
    ...                                     # the code under test talks ESL to 127.0.0.1:sim.port
    await sim.remote_hangup(ch.uuid)
    await sim.stop()
"""

from .api import split_args
from .calls import DialError, Outcome, parse_dial_string
from .causes import CAUSES, SIP_FAILURES, normalize_cause, q850
from .channel import SimChannel
from .server import Connection, SimulatedFreeSwitch
from .wire import Event, api_response, command_reply, url_encode

__all__ = [
    "CAUSES",
    "SIP_FAILURES",
    "Connection",
    "DialError",
    "Event",
    "Outcome",
    "SimChannel",
    "SimulatedFreeSwitch",
    "api_response",
    "command_reply",
    "normalize_cause",
    "parse_dial_string",
    "q850",
    "split_args",
    "url_encode",
]
