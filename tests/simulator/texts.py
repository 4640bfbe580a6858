"""Fixed api/response texts of FreeSWITCH 1.10.12 (recorded unless marked otherwise)."""

from __future__ import annotations

VERSION = "FreeSWITCH Version 1.10.12-release~64bit ( 64bit)\n"
VERSION_SHORT = "1.10.12-release~64bit"
READY_LINE = "FreeSWITCH (Version 1.10.12-release  64bit) is ready"

NO_SUCH_CHANNEL = "-ERR No such channel!\n"

USAGE = {
    "uuid_setvar": "-USAGE: <uuid> <var> [value]\n",
    "uuid_setvar_multi": "-USAGE: <uuid> <var>=<value>;<var>=<value>...\n",
    "uuid_getvar": "-USAGE: <uuid> <var>\n",
    "uuid_send_dtmf": "-USAGE: <uuid> <dtmf_data>\n",
    "uuid_kill": "-USAGE: <uuid> [cause]\n",
    "uuid_bridge": "-USAGE: <uuid> <other_uuid>\n",
    "uuid_transfer": "-USAGE: <uuid> [-bleg|-both] <dest-exten> [<dialplan>] [<context>]\n",
    "originate": (
        "-USAGE: <call url> <exten>|&<application_name>(<app_args>) [<dialplan>] [<context>] [<cid_name>] "
        "[<cid_num>] [<timeout_sec>]\n"
    ),
    # not recorded:
    "uuid_dump": "-USAGE: <uuid> [format]\n",
    "uuid_break": "-USAGE: <uuid> [all]\n",
    "uuid_deflect": "-USAGE: <uuid> <uri>\n",
}


def _unit(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def uptime_text(seconds: float) -> str:
    """``0 years, 0 days, 0 hours, 1 minute, 26 seconds, 87 milliseconds, 671 microseconds``."""
    us = int(seconds * 1_000_000)
    secs, us = divmod(us, 1_000_000)
    ms, us = divmod(us, 1000)
    mins, secs = divmod(secs, 60)
    hours, mins = divmod(mins, 60)
    days, hours = divmod(hours, 24)
    years, days = divmod(days, 365)
    return ", ".join(
        [
            _unit(years, "year"),
            _unit(days, "day"),
            _unit(hours, "hour"),
            _unit(mins, "minute"),
            _unit(secs, "second"),
            _unit(ms, "millisecond"),
            _unit(us, "microsecond"),
        ]
    )


def status_text(uptime: float, since_startup: int, current: int, peak: int) -> str:
    """Body of ``api status`` (fixture 01 layout, including the trailing spaces)."""
    return (
        f"UP {uptime_text(uptime)}\n"
        f"{READY_LINE}\n"
        f"{since_startup} session(s) since startup\n"
        f"{current} session(s) - peak {peak}, last 5min {peak} \n"
        "0 session(s) per Sec out of max 30, peak 0, last 5min 0 \n"
        "1000 session(s) max\n"
        "min idle cpu 0.00/99.00\n"
        "Current Stack Size/Max 240K/8192K\n"
    )


RULER = "=" * 97


def sofia_status(profiles: dict[str, str], gateways: dict[str, dict[str, str]]) -> str:
    """Body of ``sofia status`` (fixture 09 layout: right-aligned columns separated by TABs)."""

    def row(name: str, typ: str, data: str, state: str) -> str:
        return f"{name:>25}\t{typ:>7}\t{data:>42}\t{state}\n"

    out = [row("Name", "Type", "Data", "State"), RULER + "\n"]
    for name in sorted(profiles):
        out.append(row(name, "profile", profiles[name], "RUNNING (0)"))
        for gw in sorted(g for g, info in gateways.items() if info["profile"] == name):
            info = gateways[gw]
            out.append(row(f"{name}::{gw}", "gateway", info["to"], info.get("state", "NOREG")))
    out.append(RULER + "\n")
    out.append(f"{len(profiles)} profile{'' if len(profiles) == 1 else 's'} 0 aliases\n")
    return "".join(out)


def sofia_status_gateway(name: str, info: dict[str, str], uptime: int) -> str:
    """Body of ``sofia status gateway <name>`` (fixture 09 layout)."""
    user = info.get("username", "sipagent")
    host = info.get("proxy", "127.0.0.1")
    pairs = [
        ("Name    ", name),
        ("Profile ", info["profile"]),
        ("Scheme  ", "Digest"),
        ("Realm   ", info.get("realm", host)),
        ("Username", user),
        ("Password", "yes" if info.get("password", "yes") else "no"),
        ("From    ", f"<{info['to']}>"),
        ("Contact ", f"<sip:gw+{name}@127.0.0.1;transport=udp;gw={name}>"),
        ("Exten   ", user),
        ("To      ", info["to"]),
        ("Proxy   ", f"sip:{host}"),
        ("Context ", info.get("context", "public")),
        ("Expires ", "3600"),
        ("Freq    ", "3600"),
        ("Ping    ", "0"),
        ("PingFreq", str(info.get("ping", 0))),
        ("PingTime", "0.00"),
        ("PingState", f"{info.get('ping_min', 0)}/{info.get('ping_count', 0)}/{info.get('ping_max', 0)}"),
        ("State   ", info.get("state", "NOREG")),
        ("Status  ", info.get("status", "UP")),
        ("Uptime  ", f"{uptime}s"),
        ("CallsIN ", "0"),
        ("CallsOUT", info.get("calls_out", "0")),
        ("FailedCallsIN", "0"),
        ("FailedCallsOUT", info.get("failed_calls_out", "0")),
    ]
    return RULER + "\n" + "".join(f"{k}\t{v}\n" for k, v in pairs) + RULER + "\n"


#: ``show api <name>`` rows (name, description, syntax, ikey) of the modules the simulator plays: the jambonz
#: mod_audio_fork (the one that streams audio back; its syntax has the bidirectional-audio arguments) and
#: mod_audio_stream (amigniter's open-source edition). Syntax strings as the modules register them.
API_ROWS = [
    (
        "uuid_audio_fork",
        "audio_fork API",
        "<uuid> [start | stop | send_text | pause | resume | graceful-shutdown | stop_play ] [wss-url | path]"
        " [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] [bugname] [metadata]"
        " [bidirectionalAudio_enabled] [bidirectionalAudio_stream_enabled] [bidirectionalAudio_stream_samplerate]",
        "mod_audio_fork",
    ),
    (
        "uuid_audio_stream",
        "audio_stream API",
        "<uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] [wss-url | path]"
        " [mono | mixed | stereo] [8000 | 16000] [metadata]",
        "mod_audio_stream",
    ),
]
