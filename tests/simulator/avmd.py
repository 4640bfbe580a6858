"""mod_avmd of the simulator: the ``avmd`` API, the ``avmd_start`` / ``avmd_stop`` applications run by
``uuid_broadcast <uuid> app::args``, the beep detector on what the far end sends, and its events.

Modelled on FreeSWITCH 1.10.12 ``src/mod/applications/mod_avmd/mod_avmd.c`` and checked on the real switch
(tests/integration/test_amd_live.py; the experiment's event headers are quoted below):

* ``uuid_broadcast <uuid> app::args aleg`` (``switch_ivr_broadcast``): ``+OK Message sent``; the application runs
  in the channel's thread after 5 lead frames (CHANNEL_EXECUTE, the application, CHANNEL_EXECUTE_COMPLETE). An
  application FreeSWITCH does not know (mod_avmd not loaded: ``sim.modules``) hangs the call up with
  DESTINATION_OUT_OF_ORDER (``switch_core_session_execute_application_get_flags``: "Invalid Application");
* ``avmd_start`` (``avmd_start_app``): ``key=value`` settings separated by ``,`` over the module's defaults
  (``inbound_channel`` 0, ``outbound_channel`` 1); on an outbound leg (``outbound_channel=1``) a READ_REPLACE bug
  hears what the far end sends; with no direction to listen to, nothing is attached. Fires ``avmd::start``
  (``Unique-ID``, ``Call-command: avmd``, ``Start-time``: µs);
* the detector: a steady tone of 440-2000 Hz (mod_avmd's AVMD_MIN/MAX_FREQUENCY) held for about 160 ms is a beep
  (the real module reported a 1 kHz, 500 ms beep 190 ms after it began, as 950.5 Hz). Speech never is. It fires
  ``avmd::beep`` once (``Beep-Status: DETECTED``, ``Frequency``, ``Frequency-variance``, ``Amplitude``,
  ``Amplitude-variance``, ``Detection-time``: µs since the first frame, ``Detector-resolution``, ``-offset``,
  ``-index``), sets ``avmd_detect=TRUE`` and ``avmd_total_time`` (``[ms]``), and stops listening;
* every event is fired twice (``avmd_fire_event``: a copy with only its own headers at once, then the original
  through the session's event queue, with the channel's headers and variables);
* ``avmd <uuid> start`` (the API): ``+OK\\n [<uuid>] [<channel>] started!\\n\\n`` and ``avmd::start``, but the API
  leaves the session's settings zeroed -- no detectors -- so it never detects a beep (measured);
* ``avmd <uuid> stop``: the bug is removed; ``avmd::stop`` with ``Beep-Status: DETECTED`` whatever happened (the
  API passes 0, BEEP_DETECTED), ``Stop-status: ERROR (AVMD SESSION OBJECT NOT FOUND IN MEDIA BUG)`` and
  ``Total-time`` = minus ``Start-time`` (its stop time is never set); ``+OK\\n [<uuid>] [<channel>] stopped\\n\\n``.
  Not started: ``+ERR, avmd has not yet been started on\\n [<uuid>] [<channel>]\\n\\n``; ``avmd_stop`` (the
  application) fires ``avmd::stop`` with the real status and ``Total-time``;
* the hang-up removes the bug without an event.

Unmodelled: inbound legs' WRITE_REPLACE bug, ``avmd`` reload/load/set/show, the deprecated ``avmd`` application,
detection modes and the tuning parameters (parsed, ignored).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .channel import now_us

if TYPE_CHECKING:  # pragma: no cover
    from .channel import SimChannel
    from .server import SimulatedFreeSwitch

SYNTAX = "<uuid> < start | stop | set [inbound|outbound|default] | load [inbound|outbound] | reload | show >"
MIN_HZ, MAX_HZ = 440.0, 2000.0
STEADY_FRAMES = 8  # 160 ms of one pure tone
APPS = ("avmd_start", "avmd_stop")


@dataclass
class SimAvmd:
    """One avmd media bug (READ_REPLACE on an outbound leg)."""

    sim: SimulatedFreeSwitch = field(repr=False)
    ch: SimChannel = field(repr=False)
    start_us: int
    detects: bool  # False: started by the API (no detectors)
    beep: bool = False
    first_us: int = 0
    task: asyncio.Task[None] | None = None
    _steady: int = 0
    _freqs: list[float] = field(default_factory=list)
    _amps: list[float] = field(default_factory=list)

    def frame(self, samples: list[int]) -> dict[str, str] | None:
        """One 20 ms frame of the far end's audio; the beep's headers once it is heard."""
        if not self.detects or self.beep:
            return None
        self.first_us = self.first_us or now_us()
        x = np.asarray(samples, dtype=np.float64)
        rate = self.ch.rate
        amp = float(np.sqrt(np.mean(x**2))) if len(x) else 0.0
        spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2 if len(x) else np.zeros(1)
        spectrum[0] = 0.0
        peak = int(np.argmax(spectrum))
        purity = float(spectrum[max(0, peak - 2) : peak + 3].sum() / spectrum.sum()) if spectrum.sum() > 0 else 0.0
        if 0 < peak < len(spectrum) - 1:  # parabolic interpolation of the peak
            a, b, c = np.log(spectrum[peak - 1 : peak + 2] + 1e-12)
            curve = a - 2 * b + c
            peak_f = peak + 0.5 * (a - c) / curve if curve else float(peak)  # flat: no better estimate
        else:
            peak_f = float(peak)
        freq = peak_f * rate / len(x) if len(x) else 0.0
        if not (amp >= 100 and purity >= 0.9 and MIN_HZ <= freq <= MAX_HZ):  # not a pure tone
            self._steady, self._freqs, self._amps = 0, [], []
            return None
        if self._freqs and (abs(freq - self._freqs[-1]) > 0.03 * freq or abs(amp - self._amps[-1]) > 0.2 * amp):
            self._steady, self._freqs, self._amps = 0, [], []  # another tone: its run starts here
        self._steady += 1
        self._freqs.append(freq)
        self._amps.append(amp)
        if self._steady < STEADY_FRAMES:
            return None
        self.beep = True
        f, a = np.asarray(self._freqs), np.asarray(self._amps) * np.sqrt(2)  # the sine's amplitude
        detection = now_us() - self.first_us
        return {
            "Frequency": f"{float(f.mean()):f}",
            "Frequency-variance": f"{float(f.var() / 1e6):f}",
            "Amplitude": f"{float(a.mean()):f}",
            "Amplitude-variance": f"{float(a.var()):f}",
            "Detection-time": str(detection),
            "Detector-resolution": "1",
            "Detector-offset": "0",
            "Detector-index": "0",
            "_ms": str(detection // 1000),
        }


class Avmd:
    """Mixin of :class:`~simulator.server.SimulatedFreeSwitch`: mod_avmd."""

    def _avmd_fire(self: SimulatedFreeSwitch, ch: SimChannel, subclass: str, headers: list[tuple[str, str]]) -> None:
        """mod_avmd's avmd_fire_event: the bare copy at once, then the original with the channel's headers."""
        own = [("Unique-ID", ch.uuid), ("Call-command", "avmd"), *headers]
        self.fire("CUSTOM", own, source="AVMD", subclass=subclass)
        ch.fire("CUSTOM", pre=own, subclass=subclass, source="AVMD")

    def _avmd_attach(self: SimulatedFreeSwitch, ch: SimChannel, detects: bool) -> SimAvmd:
        bug = SimAvmd(self, ch, now_us(), detects)
        ch.avmd = bug
        if detects:
            bug.task = self.spawn(self._avmd_listen(ch, bug))
        self._avmd_fire(ch, "avmd::start", [("Start-time", str(bug.start_us))])
        return bug

    def _avmd_detach(self: SimulatedFreeSwitch, ch: SimChannel) -> SimAvmd | None:
        bug = ch.avmd
        ch.avmd = None
        if bug is not None and bug.task is not None:
            bug.task.cancel()
        return bug

    async def _avmd_listen(self: SimulatedFreeSwitch, ch: SimChannel, bug: SimAvmd) -> None:
        """Read what the far end says, 20 ms a frame (from the start of what ``set_caller_audio`` set)."""
        audio = self.channel_audio(ch)
        loop = asyncio.get_running_loop()
        interval = self.frame_interval
        start, n, pos, version = loop.time(), 0, 0, audio.caller_version
        while ch.alive and ch.avmd is bug and not bug.beep:
            if version != audio.caller_version:
                version, pos = audio.caller_version, 0
            samples, pos = audio.read_caller(pos, audio.samples_per_frame)
            found = bug.frame(samples)
            if found is not None:
                ms = found.pop("_ms")
                ch.setvar("avmd_total_time", f"[{ms}]")
                ch.setvar("avmd_detect", "TRUE")
                self._avmd_fire(ch, "avmd::beep", [("Beep-Status", "DETECTED"), *found.items()])
                return
            n += 1
            await asyncio.sleep(max(0.0, start + n * interval - loop.time()))

    def _drop_avmd(self: SimulatedFreeSwitch, ch: SimChannel) -> None:
        """Hangup: the bug's CLOSE callback frees it, no event."""
        self._avmd_detach(ch)

    # -- the API ----------------------------------------------------------------------------------
    async def api_avmd(self: SimulatedFreeSwitch, arg: str, job: object) -> str:
        """``avmd <uuid> start|stop`` (mod_avmd.c avmd_api_main)."""
        if "mod_avmd" not in self.modules:
            return "-ERR avmd Command not found!\n"
        argv = arg.split(" ", 2) if arg.strip() else []
        if not argv:
            return f"-ERR, bad command!\n-USAGE: {SYNTAX}\n\n"
        if len(argv) < 2:
            return f"-ERR, avmd takes [1] min and [2] max parameters!\n-USAGE: {SYNTAX}\n\n"
        uuid, command = argv[0], argv[1]
        ch = self._chan(uuid)
        if ch is None:
            return f"-ERR, no FreeSWITCH session for uuid [{uuid}]!\n-USAGE: {SYNTAX}\n\n"
        if ch.avmd is not None:
            if command.lower() == "stop":
                bug = self._avmd_detach(ch)
                assert bug is not None
                self._avmd_fire(
                    ch,
                    "avmd::stop",
                    [
                        ("Beep-Status", "DETECTED"),
                        ("Stop-status", "ERROR (AVMD SESSION OBJECT NOT FOUND IN MEDIA BUG)"),
                        ("Total-time", str(-bug.start_us)),
                    ],
                )
                return f"+OK\n [{uuid}] [{ch.name}] stopped\n\n"
            return f"-ERR, avmd for FreeSWITCH session [{uuid}]\n already started\n\n"
        if command.lower() == "stop":
            return f"+ERR, avmd has not yet been started on\n [{uuid}] [{ch.name}]\n\n"
        if ch.direction != "outbound":  # the API uses the module's settings: outbound_channel only
            return (
                f"-ERR, can't set direction for channel [{ch.name}]\n for FreeSWITCH session [{uuid}]. "
                "Please check avmd configuration\n\n"
            )
        if command.lower() != "start":
            return f"-ERR, did you mean\n api avmd {uuid} start ?\n-USAGE: {SYNTAX}\n\n"
        self._avmd_attach(ch, detects=False)
        return f"+OK\n [{uuid}] [{ch.name}] started!\n\n"

    # -- the applications (uuid_broadcast app::args) ------------------------------------------------
    def broadcast_app(self: SimulatedFreeSwitch, ch: SimChannel, app: str, args: str) -> None:
        """``uuid_broadcast <uuid> app::args``: the application runs after the lead frames."""
        delay = self.broadcast_lead_frames * self.frame_interval
        asyncio.get_running_loop().call_later(delay, self._run_broadcast_app, ch, app, args)

    def _run_broadcast_app(self: SimulatedFreeSwitch, ch: SimChannel, app: str, args: str) -> None:
        if not ch.alive:
            return
        if app not in APPS or "mod_avmd" not in self.modules:
            self.hangup(ch, "DESTINATION_OUT_OF_ORDER")  # "Invalid Application"
            return
        app_uuid = ch.execute(app, args)
        if app == "avmd_start":
            settings = {"inbound_channel": "0", "outbound_channel": "1"}
            for item in args.split(","):
                key, _, value = item.partition("=")
                if key:
                    settings[key] = value
            listens = (ch.direction == "outbound" and settings["outbound_channel"] in ("1", "true")) or (
                ch.direction == "inbound" and settings["inbound_channel"] in ("1", "true")
            )
            if ch.avmd is None and listens:
                self._avmd_attach(ch, detects=ch.direction == "outbound")
        elif ch.avmd is not None:  # avmd_stop
            bug = self._avmd_detach(ch)
            assert bug is not None
            total = now_us() - bug.start_us
            status = "DETECTED" if bug.beep else "NOTDETECTED"
            self._avmd_fire(ch, "avmd::stop", [("Beep-Status", status), ("Total-time", str(total))])
        ch.execute_complete(app, args, app_uuid=app_uuid)
