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

mod_audio_fork as a real WebSocket client (``sim.fork_websocket = True``; off by default: scripted
``set_fork_outcome`` events and no socket) -- see :mod:`simulator.audiofork`, :mod:`simulator.forkclient` and
:mod:`simulator.media`::

    sim.fork_websocket = True
    sim.set_caller_audio(ch.uuid, pcm_8k)           # what the caller says (L16 at the leg rate), loop=False
    ... uuid_audio_fork <uuid> start ws://... ...   # the code under test; the simulator connects to its server
    client = sim.fork_client(ch.uuid)               # or ch.fork_client: a ForkClient
    await client.connected.wait()                   # also: closed, state, request_path, request_headers,
                                                    # subprotocol, metadata, sent_text, sent_frames, send_times,
                                                    # received_text, received_binary_bytes, close_code,
                                                    # close_reason, heard_frames, heard_pcm(), kill_times,
                                                    # mark_replies, playout
    ch.audio.heard_frames                           # [(loop time, L16)] written to the caller (all forks)
    sim.fork_overrun(ch.uuid)                       # mod_audio_fork::buffer_overrun
    sim.files                                       # playAudio temp files, playable with uuid_broadcast

Where what is modelled (each module's docstring names the FreeSWITCH sources and recordings it follows):

* the event socket: :mod:`.server` (connections, subscriptions, filters), :mod:`.wire` (frames), :mod:`.api`
  (``api`` / ``bgapi`` replies), :mod:`.texts` (recorded reply texts), :mod:`.causes`;
* a channel: :mod:`.channel` (:class:`SimChannel`: variables, events, CDR), :mod:`.fsstrings` (FreeSWITCH's
  argument and dial-string parsing); the call flows gathered by :mod:`.calls`: :mod:`.lifecycle` (inbound, park,
  answer, hangup), :mod:`.dialing` (originate), :mod:`.bridging`, :mod:`.transfer` (inline dialplan),
  :mod:`.refer`, :mod:`.forkglue` (fork media bugs), with the pure :mod:`.sofiavars` and :mod:`.callerprofile`;
  the rendered XML dialplan: :mod:`.xmldialplan` (mod_dialplan_xml's hunt, pure; ``sim.dialplan_call`` routes an
  INVITE through it to :meth:`inbound_call`);
* the fork modules: :mod:`.audiofork` (the commands), :mod:`.forkargs` and :mod:`.cjson` (pure),
  :mod:`.playout` (jambonz streaming, pure), :mod:`.forkclient` (the WebSocket client), :mod:`.media` (the
  channel's 20 ms media clock, playback, resampling).

Timing knobs are class attributes of SimulatedFreeSwitch: ``frame_interval`` (20 ms), ``fork_rx_chunk``,
``fork_buffer_secs``, ``fork_open_timeout``, ``broadcast_lead_frames`` (plus the instance's ``fork_connect_delay``).
"""

from .api import split_args
from .calls import DialError, Outcome, parse_dial_string
from .causes import CAUSES, SIP_FAILURES, normalize_cause, q850
from .channel import SimChannel
from .forkargs import ForkSpec
from .forkclient import ForkClient
from .media import ChannelAudio, Resampler
from .playout import StreamPlayout
from .server import Connection, SimulatedFreeSwitch
from .wire import Event, api_response, command_reply, url_encode

__all__ = [
    "CAUSES",
    "SIP_FAILURES",
    "ChannelAudio",
    "Connection",
    "DialError",
    "Event",
    "ForkClient",
    "ForkSpec",
    "Outcome",
    "Resampler",
    "SimChannel",
    "SimulatedFreeSwitch",
    "StreamPlayout",
    "api_response",
    "command_reply",
    "normalize_cause",
    "parse_dial_string",
    "q850",
    "split_args",
    "url_encode",
]
