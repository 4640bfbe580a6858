"""Record the ESL scenarios of this folder against a running FreeSWITCH (not part of the test run).

Needs FreeSWITCH with ``fs-config/`` added (profile ``fixtures`` on 127.0.0.1:5090 with gateway ``fxgw``, context
``fixtures``), ESL on 127.0.0.1:8021 (password ClueCon), and ``sipp`` on PATH. Usage::

    python tests/fixtures_esl/record.py OUT_DIR [scenario ...]     # scenarios: 11 12 13 14 15 16 17 18

Writes ``OUT_DIR/<scenario>/esl.bin`` (every byte received), ``esl.txt`` (transcript) and ``sip.txt``.
"""

from __future__ import annotations

import datetime
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIPP = HERE / "sipp"
BOGUS = "00000000-0000-0000-0000-000000000000"
T0 = time.monotonic()


class Frame:
    """A received frame; ``ev`` holds the decoded headers of a plain event."""

    def __init__(self, headers: dict[str, str], body: bytes):
        self.headers, self.body, self.ev = headers, body, None
        if headers.get("Content-Type") == "text/event-plain":
            head, _, rest = body.decode().partition("\n\n")
            ev = {}
            for line in head.split("\n"):
                k, _, v = line.partition(": ")
                ev.setdefault(k, urllib.parse.unquote(v))
            ev["_body"] = rest
            self.ev = ev

    def name(self) -> str | None:
        if self.ev is None:
            return None
        return self.ev.get("Event-Subclass") if self.ev.get("Event-Name") == "CUSTOM" else self.ev.get("Event-Name")


class Conn:
    """One ESL connection that logs every send/recv like the shared fixtures' transcripts."""

    def __init__(self, name: str, out: Path, prefix: str = "esl", port: int = 8021):
        self.txt = (out / f"{prefix}.txt").open("w")
        self.bin = (out / f"{prefix}.bin").open("wb")
        self.txt.write(
            f'# Raw ESL wire transcript, FreeSWITCH 1.10.12 mod_event_socket 127.0.0.1:{port}, connection "{name}"\n'
            "# Format: [seconds since scenario start] SEND/RECV <n> bytes: <python repr of exactly one "
            "sendall()/recv()>\n"
            f"# {prefix}.bin = concatenation of all RECV bytes, unmodified\n"
            f"# Captured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M:%S} UTC\n"
        )
        self.lock = threading.Condition()
        self.frames: list[Frame] = []
        self.buf = b""
        self.closed = False
        self.comment(f"connect to 127.0.0.1:{port}; greeting on connect")
        self.sock = socket.create_connection(("127.0.0.1", port))
        threading.Thread(target=self._reader, daemon=True).start()
        self.wait(lambda f: f.headers.get("Content-Type") == "auth/request")

    def _log(self, line: str) -> None:
        self.txt.write(line + "\n")
        self.txt.flush()

    def comment(self, text: str) -> None:
        with self.lock:
            self._log(f"\n### {text}")

    def _reader(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                data = b""
            t = time.monotonic() - T0
            with self.lock:
                if not data:
                    self._log(f"[{t:8.3f}] RECV EOF (peer closed connection)")
                    self.closed = True
                    self.lock.notify_all()
                    return
                self._log(f"[{t:8.3f}] RECV {len(data)} bytes: {data!r}")
                self.bin.write(data)
                self.bin.flush()
                self.buf += data
                while (i := self.buf.find(b"\n\n")) >= 0:
                    headers = dict(line.partition(": ")[::2] for line in self.buf[:i].decode().split("\n"))
                    n = int(headers.get("Content-Length", "0"))
                    if len(self.buf) < i + 2 + n:
                        break
                    self.frames.append(Frame(headers, self.buf[i + 2 : i + 2 + n]))
                    self.buf = self.buf[i + 2 + n :]
                self.lock.notify_all()

    def send(self, data: bytes) -> None:
        with self.lock:
            self._log(f"[{time.monotonic() - T0:8.3f}] SEND {len(data)} bytes: {data!r}")
        self.sock.sendall(data)

    def mark(self) -> int:
        with self.lock:
            return len(self.frames)

    def wait(self, pred, start: int = 0, timeout: float = 10.0) -> Frame | None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for f in self.frames[start:]:
                    if pred(f):
                        return f
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    if not self.closed:
                        self._log(f"[{time.monotonic() - T0:8.3f}] (wait timed out after {timeout}s)")
                    return None
                self.lock.wait(left)

    def wait_event(self, name: str, start: int = 0, timeout: float = 10.0, uuid: str | None = None) -> Frame | None:
        def pred(f: Frame) -> bool:
            return f.name() == name and (uuid is None or f.ev.get("Unique-ID") == uuid)

        return self.wait(pred, start, timeout)

    def cmd(self, line: str, comment: str | None = None, extra: str = "") -> Frame:
        if comment != "":
            self.comment(comment or line)
        start = self.mark()
        self.send(f"{line}\n{extra}\n".encode())
        reply = self.wait(lambda f: f.headers.get("Content-Type") in ("command/reply", "api/response"), start, 30)
        assert reply is not None, line
        return reply

    def api(self, command: str, comment: str | None = None) -> str:
        return self.cmd(f"api {command}", comment).body.decode()

    def close(self) -> None:
        self.cmd("exit")
        time.sleep(0.3)
        self.sock.close()
        self.txt.close()
        self.bin.close()


class Sipp:
    """One sipp instance (UDP, one call) with a -trace_msg log."""

    def __init__(self, out: Path, name: str, scenario: str, port: int, service: str | None = None, uas: bool = False):
        self.out, self.name, self.scenario = out, name, scenario
        args = ["sipp", "-sf", str(SIPP / scenario), "-i", "127.0.0.1", "-p", str(port), "-t", "u1", "-m", "1"]
        args += ["-mi", "127.0.0.1", "-mp", str(6000 + (port % 100) * 10), "-trace_msg", "-nostdin", "-nd"]
        args += ["-message_file", str(out / f"{name}_messages.log")]
        if service:
            args += ["-s", service]
        if not uas:
            args.append("127.0.0.1:5090")
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.terminate()
            return self.p.wait(5)


def sip_txt(out: Path, sipps: list[Sipp]) -> None:
    with (out / "sip.txt").open("w") as f:
        for s in sipps:
            f.write(f"===== {s.name}: sipp scenario {s.scenario} =====\n{(SIPP / s.scenario).read_text()}")
            log = out / f"{s.name}_messages.log"
            f.write(f"\n===== {s.name}: -trace_msg log =====\n{log.read_text() if log.exists() else ''}\n")
            log.unlink(missing_ok=True)


def login(out: Path, events: str = "ALL", name: str = "A-plain", prefix: str = "esl") -> Conn:
    c = Conn(name, out, prefix)
    c.cmd("auth ClueCon")
    c.cmd(f"event plain {events}")
    return c


def parked_call(c: Conn, out: Path, port: int, number: str, scenario: str = "uac-wait-bye.xml") -> tuple[Sipp, str]:
    m = c.mark()
    c.comment(f"--- sipp UAC (UDP :{port}, {scenario}) calls {number} ---")
    uac = Sipp(out, "uac", scenario, port, service=number)
    park = c.wait_event("CHANNEL_PARK", m, 15)
    assert park is not None
    return uac, park.ev["Unique-ID"]


def end(c: Conn, out: Path, sipps: list[Sipp], uuid: str | None = None, start: int = 0) -> None:
    if uuid:
        c.wait_event("CHANNEL_DESTROY", start, 15, uuid)
    time.sleep(0.5)
    for s in sipps:
        rc = s.wait()
        c.comment(f"(sipp {s.name} exit code {rc})")
    c.close()
    sip_txt(out, sipps)


# -- scenarios ------------------------------------------------------------------------------------------
def s11(out: Path) -> None:
    c = login(out)
    uac, u = parked_call(c, out, 5061, "+15557650001")
    time.sleep(0.5)
    c.api(f"uuid_park {u}", "api uuid_park <uuid>  (claim: re-park without timeout)")
    time.sleep(5.0)
    c.api(f"uuid_exists {u}", "api uuid_exists <uuid>  (still there after park_timeout?)")
    c.api(f"uuid_getvar {u} park_timeout")
    c.api(f"uuid_answer {u}")
    time.sleep(0.7)
    c.api(f"uuid_answer {u}", "api uuid_answer <uuid>  (again)")
    for cmd in (
        "uuid_setvar {u} sipagent_state claimed",
        "uuid_setvar {u} sipagent_note hello world",
        "uuid_getvar {u} sipagent_note",
        "uuid_setvar {u} sipagent_note",
        "uuid_getvar {u} sipagent_note",
        "uuid_setvar_multi {u} sipagent_a=1;sipagent_b=two words",
        "uuid_getvar {u} sipagent_b",
        "uuid_setvar_multi {u} sipagent_a=;sipagent_c=3",
        "uuid_getvar {u} sipagent_a",
        "uuid_send_dtmf {u} 12#",
        "uuid_send_dtmf {u} 5@400",
        "uuid_break {u}",
        "uuid_park {u}",
        "global_getvar hostname",
        "global_getvar no_such_global",
    ):
        c.api(cmd.format(u=u), f"api {cmd.format(u='<uuid>')}")
        time.sleep(0.3)
    for cmd in (
        f"uuid_park {BOGUS}",
        f"uuid_answer {BOGUS}",
        f"uuid_setvar {BOGUS} a b",
        f"uuid_setvar_multi {BOGUS} a=b",
        f"uuid_send_dtmf {BOGUS} 1",
        f"uuid_break {BOGUS}",
        f"uuid_kill {BOGUS} USER_BUSY",
        f"uuid_deflect {BOGUS} sip:x@127.0.0.1",
        f"uuid_transfer {BOGUS} park inline",
        f"uuid_bridge {BOGUS} {u}",
        f"uuid_audio_fork {BOGUS} start ws://127.0.0.1:1/x mono 16k",
        f"uuid_dump {BOGUS}",
        "uuid_park",
        "uuid_setvar",
        f"uuid_setvar {u}",
        "uuid_send_dtmf",
        f"uuid_send_dtmf {u}",
        "uuid_kill",
        "uuid_answer",
        "uuid_getvar",
        "uuid_exists",
        "originate",
        "uuid_bridge",
        "uuid_transfer",
    ):
        c.api(cmd)
    m = c.mark()
    c.api(f"uuid_kill {u} USER_BUSY")
    end(c, out, [uac], u, m)


def s12(out: Path) -> None:
    c = login(out)
    uac, u = parked_call(c, out, 5062, "+15557650002", "uac-unclaimed.xml")
    c.wait_event("CHANNEL_DESTROY", 0, 10, u)
    c.comment(f"(sipp UAC exit code {uac.wait()}: 0 = got the expected 503)")
    m = c.mark()
    c.comment("--- sipp UAC #2 (UDP :5063) calls +15557650001; rejected before answer: uuid_kill CALL_REJECTED ---")
    uac2 = Sipp(out, "uac2", "uac-expect-603.xml", 5063, service="+15557650001")
    u2 = c.wait_event("CHANNEL_PARK", m, 15).ev["Unique-ID"]
    time.sleep(0.3)
    c.api(f"uuid_kill {u2} CALL_REJECTED")
    end(c, out, [uac, uac2], u2, m)


def s13(out: Path) -> None:
    for i, variant in enumerate(("notify-200", "notify-603", "no-notify")):
        d = out / variant
        d.mkdir(parents=True, exist_ok=True)
        c = login(d)
        scenario = f"uac-refer-{variant.split('-')[1] if variant != 'no-notify' else 'none'}.xml"
        uac, u = parked_call(c, d, 5072 + i, "+15551234567", scenario)
        time.sleep(0.5)
        c.api(f"uuid_setvar {u} sip_refer_continue_after_reply true")
        m = c.mark()
        t0 = time.monotonic()
        body = c.api(f"uuid_deflect {u} sip:+15559998888@127.0.0.1:5071", "api uuid_deflect <uuid> sip:...")
        c.comment(f"(uuid_deflect returned after {time.monotonic() - t0:.3f} s: {body!r})")
        if c.wait_event("CHANNEL_HANGUP", m, 12, u) is None:
            c.comment("(no CHANNEL_HANGUP within 12 s after uuid_deflect returned: the call is still up)")
            for cmd in ("uuid_exists {u}", "uuid_getvar {u} sip_refer_reply", "uuid_getvar {u} sip_refer_status_code"):
                c.api(cmd.format(u=u))
            c.api(f"uuid_kill {u}", "api uuid_kill <uuid>  (end the call)")
        end(c, d, [uac], u, m)


def s14(out: Path) -> None:
    for i, variant in enumerate(("inline-answer", "inline-486", "uuid-bridge")):
        d = out / variant
        d.mkdir(parents=True, exist_ok=True)
        c = login(d)
        uac, a = parked_call(c, d, 5081 + i, "+15557650001")
        time.sleep(0.3)
        c.api(f"uuid_park {a}")
        time.sleep(0.3)
        c.api(f"uuid_answer {a}")
        time.sleep(0.5)
        uas = Sipp(d, "uas", "uas-486.xml" if variant == "inline-486" else "uas-answer-bye-3s.xml", 5070, uas=True)
        time.sleep(0.5)
        m = c.mark()
        if variant == "inline-answer":
            c.api(f"uuid_transfer {a} 'bridge:{{sip_h_X-Transfer-Reason=human}}sofia/gateway/fxgw/+15557654321' inline")
            c.wait_event("CHANNEL_BRIDGE", m)
            time.sleep(0.5)
            for cmd in ("show calls as json", "show channels as json", "show calls", f"uuid_dump {a} json"):
                c.api(cmd)
        elif variant == "inline-486":
            c.api(f"uuid_transfer {a} bridge:sofia/gateway/fxgw/+15557654321 inline")
        else:
            job = c.cmd(
                "bgapi originate {origination_caller_id_number=+15550001111,sip_h_X-Call-Purpose=transfer}"
                "sofia/gateway/fxgw/+15557654321 &park()"
            ).headers["Job-UUID"]
            bj = c.wait(lambda f, job=job: f.name() == "BACKGROUND_JOB" and f.ev.get("Job-UUID") == job, m, 15)
            time.sleep(0.3)
            c.api(f"uuid_bridge {a} {bj.ev['_body'].split()[1]}")
            time.sleep(0.5)
            c.api("show calls as json")
        if c.wait_event("CHANNEL_HANGUP", m, 8, a) is None:
            c.api(f"uuid_kill {a}")
        time.sleep(0.5)
        end(c, d, [uac, uas], a, m)


def s15(out: Path) -> None:
    a = login(out)
    b = Conn("B-json", out, "esl-json")
    b.cmd("auth ClueCon")
    b.cmd("event json ALL")
    uac, u = parked_call(a, out, 5091, "+15557650001")
    time.sleep(0.3)
    a.api("show channels as json")
    a.cmd(f"filter Unique-ID {u}")
    m = a.mark()
    a.cmd("bgapi status", "bgapi status  (A filters on Unique-ID: is BACKGROUND_JOB/API still delivered?)")
    a.wait(lambda f: f.name() == "BACKGROUND_JOB", m, 1.5)
    a.api(f"uuid_park {u}")
    time.sleep(0.3)
    a.api(f"uuid_answer {u}")
    time.sleep(0.5)
    a.api(f"uuid_audio_fork {u} stop", "api uuid_audio_fork <uuid> stop  (no fork running)")
    m = a.mark()
    a.api(f"uuid_audio_fork {u} start ws://127.0.0.1:8799/x mono 16k", "api uuid_audio_fork <uuid> start ... (dead)")
    a.wait_event("mod_audio_fork::connect_failed", m, 5)
    mb = b.mark()
    b.cmd("bgapi status", "bgapi status on the json connection")
    b.wait(lambda f: b"BACKGROUND_JOB" in f.body, mb, 3)
    for cmd in (f"filter delete Unique-ID {u}", "filter delete Unique-ID", "filter delete all", "filter"):
        a.cmd(cmd)
    m = a.mark()
    a.api(f"uuid_kill {u} NOT_A_CAUSE")
    b.close()
    end(a, out, [uac], u, m)


def s16(out: Path) -> None:
    c = Conn("A", out)
    c.cmd("auth ClueCon")
    for line in (
        "nixevent CHANNEL_CREATE",
        "noevents",
        "event plain",
        "noevents",
        "event plain NO_SUCH_EVENT",
        "event ALL",
        "event xml API",
        "api status",
        "noevents",
        "event plain CUSTOM",
        "event plain CHANNEL_ANSWER CUSTOM mod_audio_fork::connect sofia::notify_refer",
        "nixevent CUSTOM sofia::notify_refer",
        "noevents",
        "api",
        "api ",
        "bgapi",
        "filter Event-Name",
        "filter delete",
        "filter Event-Name CHANNEL_CREATE extra words",
        "filter delete all",
    ):
        c.cmd(line)
    for raw in (b"\n\n", b"foo: bar baz\n\n"):
        c.comment(f"raw {raw!r}")
        c.send(raw)
        c.wait(lambda f: False, timeout=1.0)
    for line in ("API status", "Event plain ALL", "noevents", "api STATUS", "api version ", "api uuid_exists"):
        c.cmd(line)
    c.close()


def s17(out: Path) -> None:
    c = login(out, "CHANNEL_PARK CHANNEL_DESTROY")
    uac, u = parked_call(c, out, 5093, "+15551234567")
    for name, value in (
        ("t_pct", "100%41%2x%zz%4a"),
        ("t_utf", "caf\u00e9 \u20ac"),
        ("t_chars", "!$&'()*+,-./:;<=>?@[]^_`{|}~\\\""),
        ("t_tab", "a\tb"),
    ):
        c.api(f"uuid_setvar {u} {name} {value}")
    for cmd in ("uuid_getvar {u} t_chars", "uuid_dump {u}", "uuid_dump {u} json"):
        c.api(cmd.format(u=u))
    m = c.mark()
    c.api(f"uuid_kill {u}")
    end(c, out, [uac], u, m)


def s18(out: Path) -> None:
    c = login(out, "BACKGROUND_JOB CHANNEL_CREATE CHANNEL_HANGUP_COMPLETE")
    for cmd in (
        "originate sofia/gateway/no_such_gw/+15557654321 &park()",
        "originate sofia/no_such_profile/+15557654321@127.0.0.1:5070 &park()",
        "originate nosuchendpoint/foo &park()",
        "originate {origination_caller_id_number=+15550001111}sofia/gateway/fxgw/+15557654321 &park()",
    ):
        t0 = time.monotonic()
        c.api(cmd)
        c.comment(f"(returned after {time.monotonic() - t0:.2f} s)")
        time.sleep(0.5)
    m = c.mark()
    c.cmd("bgapi originate sofia/gateway/no_such_gw/+15557654321 &park()")
    c.wait(lambda f: f.name() == "BACKGROUND_JOB", m, 10)
    c.close()


SCENARIOS = {
    "11": ("11-park-claim", s11),
    "12": ("12-park-timeout", s12),
    "13": ("13-refer-continue", s13),
    "14": ("14-bridge", s14),
    "15": ("15-misc", s15),
    "16": ("16-esl-edge", s16),
    "17": ("17-url-encoding", s17),
    "18": ("18-originate-errors", s18),
}


def main(argv: list[str]) -> None:
    if not argv:
        raise SystemExit(__doc__)
    out = Path(argv[0])
    for key in argv[1:] or list(SCENARIOS):
        name, fn = SCENARIOS[re.sub(r"\D.*", "", key)]
        d = out / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        fn(d)
        print(f"recorded {d}")


if __name__ == "__main__":
    main(sys.argv[1:])
