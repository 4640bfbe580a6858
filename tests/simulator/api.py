"""The ``api``/``bgapi`` commands of the simulator and their exact reply bodies (recorded unless noted)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import audiofork, forkargs, fsstrings, rtpstats, texts
from .causes import normalize_cause
from .channel import SHOW_CHANNEL_FIELDS, SimChannel, runs_on_answer
from .texts import NO_SUCH_CHANNEL, USAGE

if TYPE_CHECKING:  # pragma: no cover
    from .server import SimulatedFreeSwitch

#: columns of ``show calls`` (fixture 07): the first ten of ``show channels``, then the call's own
CALLS_FIELDS = [
    *SHOW_CHANNEL_FIELDS[:10],
    "presence_id",
    "presence_data",
    "accountcode",
    "callstate",
    "callee_name",
    "callee_num",
    "callee_direction",
    "call_uuid",
    "hostname",
    "sent_callee_name",
    "sent_callee_num",
]
#: the B leg's columns (``b_<name>``): the same but for ``call_uuid`` and ``hostname``
B_FIELDS = [f for f in CALLS_FIELDS if f not in ("call_uuid", "hostname")]


def split_args(text: str, limit: int = 0) -> list[str]:
    """An API's arguments as ``switch_separate_string(cmd, ' ', argv, limit)`` gives them (:mod:`.fsstrings`):
    with ``limit`` the last one holds the rest of the line (cleaned like the others)."""
    return fsstrings.separate(text, " ", limit or 1024)


class Job:
    """A running ``bgapi`` command: fires BACKGROUND_JOB once, when the command has its result."""

    def __init__(self, sim: SimulatedFreeSwitch, job_uuid: str, command: str, arg: str):
        self.sim, self.uuid, self.command, self.arg = sim, job_uuid, command, arg
        self.done = False

    def complete(self, result: str) -> None:
        """Fire BACKGROUND_JOB with ``result`` as body (only the first call counts)."""
        if self.done:
            return
        self.done = True
        headers = [("Job-UUID", self.uuid), ("Job-Command", self.command)]
        if self.arg:
            headers.append(("Job-Command-Arg", self.arg))
        self.sim.fire("BACKGROUND_JOB", headers, body=result, source="BACKGROUND_JOB")


class ApiCommands:
    """Mixin with the api command table of :class:`~simulator.server.SimulatedFreeSwitch`."""

    channels: dict[str, SimChannel]

    # -- entry points --------------------------------------------------------------------------------
    async def run_api(self: SimulatedFreeSwitch, cmdline: str, job: Job | None = None) -> str:
        """Execute an api command line and return its response body."""
        cmd, _, arg = cmdline.strip().partition(" ")
        arg = arg.strip()
        handler: Callable[..., Awaitable[str]] | None = getattr(self, f"api_{cmd.lower()}", None)
        if handler is None or not cmd:
            return f"-ERR {cmd} Command not found!\n"
        headers = [("API-Command", cmd)]
        if arg:
            headers.append(("API-Command-Argument", arg))
        self.fire("API", headers, source="API")
        delay = self.api_delays.get(cmd.lower())
        if delay:  # a node slow to answer this command (the api reply holds the connection meanwhile)
            await asyncio.sleep(delay)
        return await handler(arg, job)

    async def run_bgapi(self: SimulatedFreeSwitch, cmdline: str, job_uuid: str) -> None:
        """Execute a bgapi command line; BACKGROUND_JOB carries the result."""
        cmd, _, arg = cmdline.strip().partition(" ")
        job = Job(self, job_uuid, cmd, arg.strip())
        await asyncio.sleep(0)  # the command/reply is written before the job's events
        result = await self.run_api(cmdline, job)
        job.complete(result)

    def _chan(self, uuid: str) -> SimChannel | None:
        ch = self.channels.get(uuid.strip())
        return ch if ch is not None and ch.alive else None

    # -- core / status --------------------------------------------------------------------------------
    async def api_status(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``status``"""
        return texts.status_text(
            time.monotonic() - self.started, self.sessions_since_startup, len(self.channels), self.peak_sessions
        )

    async def api_version(self, arg: str, job: Job | None) -> str:
        """``version``"""
        return texts.VERSION

    async def api_global_getvar(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``global_getvar [name]`` -- the value without newline, ``-ERR no reply`` when unset."""
        if not arg:
            return "".join(f"{k}={v}\n" for k, v in self.globals.items())
        value = self.globals.get(arg)
        return value if value is not None else "-ERR no reply\n"

    async def api_global_setvar(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``global_setvar name=value`` (not recorded)."""
        k, sep, v = arg.partition("=")
        if not sep:
            k, _, v = arg.partition(" ")
        self.globals[k.strip()] = v.strip()
        return "+OK\n"

    async def api_reloadxml(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``reloadxml``"""
        self.fire("RELOADXML")
        return "+OK [Success]\n"

    async def api_fsctl(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``fsctl max_sessions N`` / ``fsctl sps N`` (replies recorded on FreeSWITCH 1.10.12)."""
        w = arg.split()
        if len(w) == 2 and w[0] == "max_sessions" and w[1].isdigit():
            self.fsctl["max_sessions"] = int(w[1])
            return f"+OK max sessions: {w[1]}\n"
        if len(w) == 2 and w[0] == "sps" and w[1].isdigit():
            self.fsctl["sps"] = int(w[1])
            return f"+OK sessions per second: {w[1]}\n"
        return "-ERR INVALID COMMAND\n"

    async def api_load(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``load <module>``: reloadxml, then the module (recorded replies)."""
        name = arg.strip()
        if name in self.modules:
            return "+OK Reloading XML\n-ERR [Module already loaded]\n"
        self.modules.add(name)
        return "+OK Reloading XML\n+OK\n"

    async def api_reloadacl(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``reloadacl`` (also fires RELOADXML, recorded)."""
        self.fire("RELOADXML")
        return "+OK acl reloaded\n"

    async def api_hupall(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``hupall [cause]``"""
        cause = normalize_cause(arg.split()[0] if arg else "MANAGER_REQUEST")
        for ch in list(self.channels.values()):
            self.hangup(ch, cause)
        return f"+OK hangup all channels with cause {cause}\n"

    # -- show ------------------------------------------------------------------------------------------
    async def api_module_exists(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``module_exists <mod>``: ``true``/``false``, no newline (recorded)."""
        return "true" if arg.strip() in self.modules else "false"

    async def api_show(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``show channels|calls [count] [as json]``"""
        words = arg.split()
        as_json = len(words) >= 3 and words[-2].lower() == "as" and words[-1].lower() == "json"
        what = words[0].lower() if words else ""
        if what == "api" and len(words) >= 2:  # ``show api <name>``: CSV even with "as json" (recorded)
            rows = [r for r in texts.API_ROWS if r[0] == words[1] and r[3] in self.modules]
            if not rows:
                return "\n0 total.\n"
            return "name,description,syntax,ikey\n" + "".join(",".join(r) + "\n" for r in rows) + "\n1 total.\n"
        if what not in ("channels", "calls"):
            return "-USAGE: codec|endpoint|application|api|dialplan|file|timer|calls [count]|channels [count|like <match string>]|calls|detailed_calls|bridged_calls|detailed_bridged_calls|aliases|complete|chat|management|modules|nat_map|say|interfaces|interface_types|tasks|limits|status\n"  # noqa: E501
        rows = self._channel_rows() if what == "channels" else self._call_rows()
        if len(words) > 1 and words[1].lower() == "count":
            return f"\n{len(rows)} total.\n"
        if as_json:
            if not rows:
                return '{"row_count": 0}\n'
            return json.dumps({"row_count": len(rows), "rows": rows}, separators=(",", ":"), ensure_ascii=False)
        fields = list(rows[0]) if rows else (list(SHOW_CHANNEL_FIELDS) if what == "channels" else self._call_fields())
        lines = [",".join(fields)] + [",".join(r[f] for f in fields) for r in rows]
        return "\n".join(lines) + f"\n\n{len(rows)} total.\n"

    def _channel_rows(self: SimulatedFreeSwitch) -> list[dict[str, str]]:
        chans = sorted((c for c in self.channels.values() if c.alive), key=lambda c: c.times["created"])
        return [c.show_row() for c in chans]

    @staticmethod
    def _call_fields() -> list[str]:
        return CALLS_FIELDS + [f"b_{f}" for f in B_FIELDS] + ["call_created_epoch"]

    def _call_rows(self: SimulatedFreeSwitch) -> list[dict[str, str]]:
        rows = []
        seen: set[str] = set()
        for ch in sorted((c for c in self.channels.values() if c.alive), key=lambda c: c.times["created"]):
            if ch.uuid in seen:
                continue
            other = self.channels.get(ch.bridged_to or "")
            a, b = ch, other
            if b is not None and b.other_type == "originator" and a.other_type == "originatee":
                pass
            elif b is not None and a.other_type == "originator":
                a, b = b, a
            seen.add(a.uuid)
            ra = a.show_row()
            row = {f: ra[f] for f in CALLS_FIELDS}
            if b is not None:
                seen.add(b.uuid)
                rb = b.show_row()
                row.update({f"b_{f}": rb[f] for f in B_FIELDS})
                row["call_created_epoch"] = str(a.times["bridged"] // 1_000_000)
            else:
                row.update({f"b_{f}": "" for f in B_FIELDS})
                row["call_created_epoch"] = ""
            rows.append(row)
        return rows

    # -- media statistics -------------------------------------------------------------------------------
    def rtp_of(self, ch: SimChannel) -> rtpstats.RtpStats:
        """The channel's live RTP counters (:mod:`simulator.rtpstats`), counted from its answer."""
        if ch.rtp is None:
            answered_ago = (time.time() * 1e6 - ch.times["answered"]) / 1e6 if ch.times.get("answered") else 0.0
            ch.rtp = rtpstats.RtpStats(started=time.monotonic() - max(0.0, answered_ago))
        stats: rtpstats.RtpStats = ch.rtp
        return stats

    def set_rtp(self, uuid: str, *, loss_pct: float | None = None, jitter_ms: float | None = None,
                **fixed: Any) -> None:  # fmt: skip
        """Script the far end's stream of a channel from now on: ``loss_pct`` of its packets lost, ``jitter_ms``
        of jitter, and counters fixed to any value (``in_mos=2.1``; ``None`` removes a fixed value)."""
        stats = self.rtp_of(self.channels[uuid])
        stats.set(time.monotonic(), loss_pct=loss_pct, jitter_ms=jitter_ms)
        for key, value in fixed.items():
            if value is None:
                stats.fixed.pop(key, None)
            else:
                stats.fixed[key] = value

    def _audio_stats(self, uuid: str) -> dict[str, Any] | None:
        ch = self._chan(uuid)
        if ch is None:
            return None
        if not ch.media:
            return {}  # switch_core_media_get_stats: no audio RTP session
        stats = self.rtp_of(ch)
        ch.setvars(stats.variables(time.monotonic()))  # switch_core_media_set_stats ran first
        return stats.values(time.monotonic())

    async def api_json(self, arg: str, job: Job | None) -> str:
        """``json {"command":"mediaStats","data":{"uuid":…}}`` (mod_commands.c json_function / json_stats_function;
        the other JSON APIs are not modelled). Not recorded: built from the 1.10.12 sources."""
        uuid = ""
        doc = rtpstats.cjson_parse(arg)
        if isinstance(doc, rtpstats.JObj) and isinstance(doc.get_item("data"), rtpstats.JObj):
            found = doc.get_item("data").get_item("uuid")
            uuid = found if isinstance(found, str) else ""
        ch = self._chan(uuid) if uuid else None
        if ch is not None and ch.media_stats_reply is not None:
            return ch.media_stats_reply
        return rtpstats.json_api(arg, self._audio_stats)

    # -- channel queries ---------------------------------------------------------------------------------
    async def api_uuid_exists(self, arg: str, job: Job | None) -> str:
        """``uuid_exists <uuid>`` -- ``true``/``false`` without newline."""
        return "true" if arg and self._chan(arg.split()[0]) else "false"

    async def api_uuid_getvar(self, arg: str, job: Job | None) -> str:
        """``uuid_getvar <uuid> <var>`` -- raw value, ``_undef_`` when unset."""
        parts = arg.split()
        if len(parts) < 2:
            return USAGE["uuid_getvar"]
        ch = self._chan(parts[0])
        if ch is None:
            return NO_SUCH_CHANNEL
        value = ch.getvar(parts[1])
        return value if value is not None else "_undef_"

    async def api_uuid_setvar(self, arg: str, job: Job | None) -> str:
        """``uuid_setvar <uuid> <var> [value]`` -- the value is the rest of the line; no value unsets."""
        parts = split_args(arg, 3)
        if len(parts) < 2:
            return USAGE["uuid_setvar"]
        ch = self._chan(parts[0])
        if ch is None:
            return NO_SUCH_CHANNEL
        ch.setvar(parts[1], parts[2] if len(parts) > 2 else None)
        return "+OK\n"

    async def api_uuid_setvar_multi(self, arg: str, job: Job | None) -> str:
        """``uuid_setvar_multi <uuid> a=1;b=2`` -- empty values unset."""
        uuid, _, spec = arg.partition(" ")
        ch = self._chan(uuid) if uuid else None
        if ch is None or not spec.strip():
            return (NO_SUCH_CHANNEL if uuid else "") + USAGE["uuid_setvar_multi"]
        for item in spec.strip().split(";"):
            k, sep, v = item.partition("=")
            if sep and k:
                ch.setvar(k, v)
        return "+OK\n"

    async def api_uuid_dump(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_dump <uuid> [json|plain|xml]`` -- a CHANNEL_DATA event serialised, not fired."""
        parts = arg.split()
        if not parts:
            return USAGE["uuid_dump"]
        ch = self._chan(parts[0])
        if ch is None:
            return NO_SUCH_CHANNEL
        ev = ch.build("CHANNEL_DATA")
        fmt = parts[1].lower() if len(parts) > 1 else "plain"
        if fmt == "json":
            return ev.serialize_json().decode()
        if fmt == "xml":
            return ev.serialize_xml().decode()
        return ev.serialize_plain().decode()

    # -- channel control --------------------------------------------------------------------------------
    async def api_uuid_kill(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_kill <uuid> [cause]`` -- ``+OK``; unknown causes become NORMAL_CLEARING (recorded)."""
        parts = arg.split()
        if not parts:
            return USAGE["uuid_kill"]
        ch = self._chan(parts[0])
        if ch is None:
            return NO_SUCH_CHANNEL
        cause = normalize_cause(parts[1] if len(parts) > 1 else "NORMAL_CLEARING")
        self.hangup(ch, cause)
        return "+OK\n"

    async def api_uuid_park(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_park <uuid>``"""
        ch = self._chan(arg.split()[0]) if arg else None
        if ch is None:
            return NO_SUCH_CHANNEL
        self.park(ch)
        return "+OK\n"

    async def api_uuid_answer(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_answer <uuid>`` -- ``-ERROR`` for a bogus uuid (recorded)."""
        ch = self._chan(arg.split()[0]) if arg else None
        if ch is None:
            return "-ERROR\n"
        if not ch.answered:
            self.answer(ch)
        return "+OK\n"

    async def api_uuid_break(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_break <uuid> [all]`` -- ends the current playback (``all``: and the queued broadcasts)."""
        if not arg:
            return USAGE["uuid_break"]
        uuid, _, flag = arg.partition(" ")
        ch = self._chan(uuid)
        if ch is None:
            return NO_SUCH_CHANNEL
        if ch.audio is not None:
            ch.audio.set_break("all" in flag)
        return "+OK\n"

    async def api_uuid_send_dtmf(self, arg: str, job: Job | None) -> str:
        """``uuid_send_dtmf <uuid> <digits>`` -- ``+OK <uuid> sent DTMF <digits>.``; no DTMF event (it leaves FS)."""
        parts = arg.split()
        if len(parts) < 2:
            return USAGE["uuid_send_dtmf"]
        ch = self._chan(parts[0])
        if ch is None:
            return "-ERR Cannot locate session!\n"
        ch.dtmf_sent.append(parts[1])
        if runs_on_answer(ch, "start_dtmf_generate write"):
            # the generator's send hook turns each digit into tones and fires a DTMF event for it (generate_on_dtmf)
            digits, _, duration = parts[1].partition("@")
            for d in digits:
                ch.fire("DTMF", post=[("DTMF-Digit", d), ("DTMF-Duration", str(int(duration or 100) * 8)),
                                      ("DTMF-Source", "APP"), ("DTMF-Conversion", "native:inband")])  # fmt: skip
        return f"+OK {ch.uuid} sent DTMF {parts[1]}.\n"

    async def api_uuid_transfer(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_transfer <uuid> [-bleg|-both] <dest> [dialplan] [context]`` -- ``+OK``, then the transfer runs."""
        parts = split_args(arg)
        if len(parts) < 2:
            return USAGE["uuid_transfer"]
        ch = self._chan(parts[0])
        if ch is None:
            return NO_SUCH_CHANNEL
        rest = parts[1:]
        if rest[0] in ("-bleg", "-both"):
            leg = rest.pop(0)
            if not rest:
                return USAGE["uuid_transfer"]
            if leg == "-bleg":
                other = self._chan(ch.bridged_to or "")
                if other is None:
                    return "-ERR No such channel!\n"
                ch = other
        dest = rest[0]
        dialplan = rest[1] if len(rest) > 1 else "XML"
        context = rest[2] if len(rest) > 2 else None
        self.transfer(ch, dest, dialplan, context)
        return "+OK\n"

    async def api_uuid_bridge(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_bridge <uuid> <other_uuid>`` -- ``+OK <other_uuid>``; ``-ERR Invalid uuid`` (recorded)."""
        parts = arg.split()
        if len(parts) < 2:
            return USAGE["uuid_bridge"]
        a, b = self._chan(parts[0]), self._chan(parts[1])
        if a is None or b is None or a is b:
            return "-ERR Invalid uuid\n"
        self.uuid_bridge(a, b)
        return f"+OK {b.uuid}\n"

    async def api_uuid_deflect(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_deflect <uuid> <sip-uri>`` -- SIP REFER; blocking unless ``sip_refer_continue_after_reply``."""
        parts = arg.split()
        if len(parts) < 2:
            return USAGE["uuid_deflect"] if not parts else f"-ERR No such channel {parts[0]}!\n"
        ch = self._chan(parts[0])
        if ch is None:
            return f"-ERR No such channel {parts[0]}!\n"
        return await self.deflect(ch, parts[1])

    async def api_uuid_audio_fork(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_audio_fork <uuid> start|stop|send_text|pause|resume|graceful-shutdown|stop_play ...``
        (mod_audio_fork; see :mod:`simulator.audiofork`)."""
        return await audiofork.api(self, arg)

    async def api_uuid_audio_stream(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_audio_stream <uuid> start|stop|send_text|pause|resume ...`` (mod_audio_stream; see
        :mod:`simulator.audiofork`)."""
        return await audiofork.stream_api(self, arg)

    async def api_uuid_broadcast(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``uuid_broadcast <uuid> <path> [aleg|bleg|holdb|both]`` -- ``+OK Message sent`` (recorded in fixture 10);
        the playback starts after 5 lead frames (:mod:`simulator.media`)."""
        argv = forkargs.fs_separate(arg, 4)
        if len(argv) < 2:
            return "-USAGE: <uuid> <path> [aleg|bleg|holdb|both]\n"
        ch = self._chan(argv[0])
        if ch is None:
            return "-ERR invalid uuid\n"
        app, sep, args = argv[1].partition("::")
        if sep and ":" not in app:  # switch_ivr_broadcast: <app>::<args> runs an application (simulator.avmd)
            self.broadcast_app(ch, app, args)
        else:
            self.channel_audio(ch).broadcast(argv[1])
        return "+OK Message sent\n"

    # -- originate ------------------------------------------------------------------------------------
    async def api_originate(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``originate <dial string> &app(args)|<exten> [dialplan] [context] [cid_name] [cid_num] [timeout]``"""
        parts = split_args(arg)
        if len(parts) < 2:
            return USAGE["originate"]
        return await self.originate(parts[0], parts[1], parts[2:], job)

    # -- sofia ------------------------------------------------------------------------------------------
    def _profile_back_later(self: SimulatedFreeSwitch, name: str, url: str) -> None:
        """A (re)started profile is listed again once its threads are up."""

        def back() -> None:
            self.profiles[name] = url
            self.profile_started[name] = time.monotonic()

        asyncio.get_running_loop().call_later(self.profile_restart_seconds, back)

    async def api_sofia(self: SimulatedFreeSwitch, arg: str, job: Job | None) -> str:
        """``sofia status [profile <p>|gateway <g>]``, ``sofia profile <p> killgw <g>|rescan``."""
        w = arg.split()
        if w[:1] == ["status"]:
            if len(w) == 1:
                return texts.sofia_status(self.profiles, self.gateways)
            if len(w) >= 3 and w[1] == "gateway":
                name = w[2].split("::")[-1]
                info = self.gateways.get(name)
                if info is None:
                    return "Invalid Gateway!\n"
                return texts.sofia_status_gateway(name, info, int(time.monotonic() - self.started))
            if len(w) >= 3 and w[1] == "profile":
                if w[2] not in self.profiles:
                    return "Invalid Profile!\n"
                url = self.profiles[w[2]]
                return f"{texts.RULER}\nName             \t{w[2]}\nURL              \t{url}\n{texts.RULER}\n"
        if len(w) >= 3 and w[0] == "profile" and w[2] == "start":  # handled before the profile lookup
            url = self.profiles_stopped.pop(w[1], None)
            if url is None and w[1] not in self.profiles:
                return f"Reload XML [Success]\nFailure starting {w[1]}\n"
            if url is not None:
                self._profile_back_later(w[1], url)
            return f"Reload XML [Success]\n{w[1]} started successfully\n"
        if len(w) >= 3 and w[0] == "profile":
            if w[1] not in self.profiles:
                return f"Invalid Profile [{w[1]}]"
            if w[2] == "killgw" and len(w) >= 4:
                if self.gateways.pop(w[3], None) is None:
                    return "-ERR no such gateway.\n"
                return "+OK gateway marked for deletion.\n"
            if w[2] == "rescan":
                return "Reload XML [Success]\n+OK scan complete\n"
            if w[2] in ("stop", "restart"):
                up = int(time.monotonic() - self.profile_started.get(w[1], self.started))
                if up < self.profile_min_uptime:
                    remain = int(self.profile_min_uptime) - up
                    return (
                        f"Profile {w[1]} must be up for at least {int(self.profile_min_uptime)} seconds to "
                        f"stop/restart.\nPlease wait {remain} second{'' if remain == 1 else 's'}\n"
                    )
                for ch in [c for c in self.channels.values() if c.alive and c.sofia_profile == w[1]]:
                    self.hangup(ch, "NORMAL_CLEARING")  # every call on the profile is dropped, as on the real switch
                url = self.profiles.pop(w[1])
                if w[2] == "restart":
                    self._profile_back_later(w[1], url)
                else:
                    self.profiles_stopped[w[1]] = url
                return f"Reload XML [Success]\n{'stopping' if w[2] == 'stop' else 'restarting'}: {w[1]}"
        return "-ERR Usage: sofia status|profile ...\n"
