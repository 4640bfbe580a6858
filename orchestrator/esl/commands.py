"""The FreeSWITCH API commands the orchestrator sends, built in one place (sans-I/O).

Every builder checks what it is given and encodes it for its position (:mod:`orchestrator.esl.quoting`),
so a value from outside (an API request, an agent, a carrier's header) can never add an argument, a
variable or an application to a command: it arrives as the one value it was, or the builder raises
:class:`~orchestrator.esl.quoting.Refused`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping

from orchestrator import dtmf
from orchestrator.esl.quoting import Refused, argument, inline_dialplan, originate_variables, token

__all__ = [
    "Refused",
    "media_stats",
    "originate",
    "show_channels",
    "uuid_answer",
    "uuid_break",
    "uuid_bridge",
    "uuid_broadcast",
    "uuid_broadcast_prompt",
    "uuid_deflect",
    "uuid_dump",
    "uuid_kill",
    "uuid_park",
    "uuid_record",
    "uuid_send_dtmf",
    "uuid_setvar_multi",
    "uuid_transfer_inline",
]

_CAUSE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_SETVAR = re.compile(r"[A-Za-z0-9_.+:/@-]*")
_PATH = re.compile(r"/[A-Za-z0-9_./-]{1,1023}")
_PROMPT = re.compile(r"[A-Za-z0-9_./:%(),;=+@~#-]{1,1024}")
_RECORD_VAR = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_RECORD_VALUE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: what ``uuid_record`` does (mod_commands.c ``session_record_function``, v1.10.12)
RECORD_ACTIONS = ("start", "stop", "pause", "resume", "mask", "unmask")
_ENDPOINT = re.compile(r"sofia/gateway/[a-z0-9][a-z0-9_-]{0,62}/[A-Za-z0-9+._~!$&*=%@:;\[\]-]{1,512}")


def _uuid(value: str) -> str:
    return token(value, "call id")


def show_channels() -> str:
    """Every channel, as JSON."""
    return "show channels as json"


def uuid_dump(uuid: str) -> str:
    """A channel's variables, as JSON."""
    return f"uuid_dump {_uuid(uuid)} json"


def media_stats(uuid: str) -> str:
    """A live channel's RTP statistics as one JSON reply (mod_commands' ``mediaStats`` JSON API, which also runs
    ``uuid_set_media_stats``: the ``rtp_audio_*`` variables are refreshed too); read it with
    :func:`orchestrator.calls.quality.parse_media_stats`."""
    request = {"command": "mediaStats", "data": {"uuid": _uuid(uuid)}}
    return "json " + json.dumps(request, separators=(",", ":"))


def uuid_kill(uuid: str, cause: str) -> str:
    """Hang up with a Q.850 cause name (``NORMAL_CLEARING`` …)."""
    if not _CAUSE.fullmatch(cause):
        raise Refused("a hang-up cause is an upper-case cause name")
    return f"uuid_kill {_uuid(uuid)} {cause}"


def uuid_park(uuid: str) -> str:
    """Park the channel (no timeout)."""
    return f"uuid_park {_uuid(uuid)}"


def uuid_answer(uuid: str) -> str:
    """Answer the channel."""
    return f"uuid_answer {_uuid(uuid)}"


def uuid_break(uuid: str) -> str:
    """Stop every playback on the channel."""
    return f"uuid_break {_uuid(uuid)} all"


def uuid_bridge(uuid: str, other: str) -> str:
    """Bridge two channels (``uuid_bridge <uuid> <other>``: both leave what they run, e.g. their park)."""
    return f"uuid_bridge {_uuid(uuid)} {_uuid(other)}"


def uuid_setvar_multi(uuid: str, variables: Mapping[str, str]) -> str:
    """Set fixed variables (``;`` separates them: names and values are plain words)."""
    items = []
    for name, value in variables.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]{0,63}", name) or not _SETVAR.fullmatch(value):
            raise Refused(f"uuid_setvar_multi takes plain names and values ({name!r})")
        items.append(f"{name}={value}")
    return f"uuid_setvar_multi {_uuid(uuid)} {';'.join(items)}"


def uuid_broadcast(uuid: str, path: str, leg: str = "aleg") -> str:
    """Play a file (a path without blanks) into the call."""
    if not _PATH.fullmatch(path) or ".." in path:
        raise Refused("a broadcast path is an absolute path of plain characters")
    if leg not in ("aleg", "bleg", "both"):
        raise Refused("leg is aleg, bleg or both")
    return f"uuid_broadcast {_uuid(uuid)} {path} {leg}"


def uuid_broadcast_prompt(uuid: str, prompt: str) -> str:
    """Play a prompt (a file path or ``tone_stream://…``: no blanks, quotes or ``$``) to the caller (the A leg).

    ``switch_ivr_broadcast`` runs ``<app>::<args>`` when the first ``:`` is followed by another: refused here.
    """
    if not _PROMPT.fullmatch(prompt) or "::" in prompt or ".." in prompt:
        raise Refused("a prompt is a path or tone_stream:// URL of plain characters, without '::' or '..'")
    return f"uuid_broadcast {_uuid(uuid)} {prompt} aleg"


_AVMD_ARGS = re.compile(r"[a-z_]+=[0-9]+(,[a-z_]+=[0-9]+)*")


def avmd_start(uuid: str, args: str) -> str:
    """Start mod_avmd's beep detection on the channel: its ``avmd_start`` application (``key=value,…``), run in the
    channel's thread through ``uuid_broadcast`` -- the ``avmd <uuid> start`` API never detects a beep in 1.10.12
    (docs/call-flow.md#answering-machine-detection)."""
    if not _AVMD_ARGS.fullmatch(args):
        raise Refused("avmd arguments are key=number pairs separated by commas")
    return f"uuid_broadcast {_uuid(uuid)} avmd_start::{args} aleg"


def module_exists(module: str) -> str:
    """``module_exists <mod_name>``: ``true`` or ``false``."""
    if not re.fullmatch(r"mod_[a-z0-9_]{1,64}", module):
        raise Refused("a module name is mod_ and lower-case letters, digits or _")
    return f"module_exists {module}"


def avmd_stop(uuid: str) -> str:
    """Stop mod_avmd on the channel (``avmd <uuid> stop``: removes its media bug at once, fires ``avmd::stop``)."""
    return f"avmd {_uuid(uuid)} stop"


def uuid_record(uuid: str, action: str, path: str, variables: Mapping[str, str] | None = None) -> str:
    """``uuid_record <uuid> start|stop|pause|resume|mask|unmask <path>`` (``stop all`` stops every recording).

    ``start`` passes ``variables`` as the recording's own (``{RECORD_STEREO=true,…}``, which FreeSWITCH URL-decodes
    and splits at ``,``): plain names and values only. No time limit (``0``).
    """
    if action not in RECORD_ACTIONS:
        raise Refused(f"a recording action is one of {', '.join(RECORD_ACTIONS)}")
    if not (path == "all" and action == "stop") and (not _PATH.fullmatch(path) or ".." in path):
        raise Refused("a recording path is an absolute path of plain characters")
    command = f"uuid_record {_uuid(uuid)} {action} {path}"
    if action == "start" and variables:
        items = []
        for name, value in variables.items():
            if not _RECORD_VAR.fullmatch(name) or not _RECORD_VALUE.fullmatch(value):
                raise Refused(f"recording variables are plain names and values ({name[:64]!r})")
            items.append(f"{name}={value}")
        command += " 0 {" + ",".join(items) + "}"
    return command


def uuid_send_dtmf(uuid: str, digits: str, duration_ms: int) -> str:
    """Send DTMF (keys and ``w``/``W`` pauses) at ``duration_ms`` per key."""
    normal = dtmf.sequence(digits)
    if normal is None:
        raise Refused(f"digits must be {dtmf.SEQUENCE_RULE}")
    if not dtmf.valid_duration(duration_ms):
        raise Refused(f"duration must be {dtmf.MIN_DURATION_MS}-{dtmf.MAX_DURATION_MS} ms")
    return f"uuid_send_dtmf {_uuid(uuid)} {normal}@{duration_ms}"


def uuid_broadcast_dtmf_tones(uuid: str, digits: str, duration_ms: int) -> str:
    """Play DTMF as tones into the caller's audio (inband trunks): ``uuid_broadcast <uuid>
    file_string://tone_stream://d=<ms>;w=<ms>;<keys>!silence_stream://<ms>!… aleg``.

    libteletone maps each key (0-9, *, #, A-D) to its two frequencies; a ``w``/``W`` pause (0.5 s / 1 s, as
    ``uuid_send_dtmf`` takes them) becomes ``silence_stream://``. Used instead of ``uuid_send_dtmf``, whose inband
    generator only mixes tones into frames FreeSWITCH already writes (a parked call with a quiet agent writes none).
    """
    normal = dtmf.sequence(digits)
    if normal is None:
        raise Refused(f"digits must be {dtmf.SEQUENCE_RULE}")
    if not dtmf.valid_duration(duration_ms):
        raise Refused(f"duration must be {dtmf.MIN_DURATION_MS}-{dtmf.MAX_DURATION_MS} ms")
    parts: list[str] = []
    keys = ""
    for c in normal + "|":
        if c in "wW|":
            if keys:
                parts.append(f"tone_stream://d={duration_ms};w={duration_ms};{keys}")
                keys = ""
            if c != "|":
                parts.append(f"silence_stream://{500 if c == 'w' else 1000}")
        else:
            keys += c
    return f"uuid_broadcast {_uuid(uuid)} file_string://{'!'.join(parts)} aleg"


def uuid_deflect(uuid: str, target: str) -> str:
    """REFER the peer to ``target`` (a SIP URI, validated by the caller)."""
    return f"uuid_deflect {_uuid(uuid)} {argument(target, 'transfer target', 512)}"


def uuid_transfer_inline(uuid: str, apps: Iterable[tuple[str, str]]) -> str:
    """Run applications on the channel through the inline dialplan (``m:^:`` form)."""
    return f"uuid_transfer {_uuid(uuid)} {inline_dialplan(apps)} inline"


def originate(variables: Mapping[str, str], endpoint: str, app: str = "park") -> str:
    """``originate {vars}sofia/gateway/<gw>/<dest> &<app>()``: the variables can never change the endpoint."""
    if not _ENDPOINT.fullmatch(endpoint) or any(s in endpoint for s in (",", "|", ":_:", "${")):
        raise Refused("the endpoint must be sofia/gateway/<gateway>/<destination>")
    if app not in ("park",):
        raise Refused("unsupported originate application")
    return f"originate {originate_variables(variables)}{endpoint} &{app}()"
