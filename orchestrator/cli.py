"""The ``sipagent`` command line."""

from __future__ import annotations

import asyncio
import functools
import io
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrator import __version__
from orchestrator.config import Deployment, Diagnostic, LoadResult, Severity, check_file
from orchestrator.config.diagnostics import printable
from orchestrator.config.files import ENV_FILE_LIMIT, FileReadError, read_text_bounded
from orchestrator.config.model import ElevenLabsAgent, RoutingRule
from orchestrator.config.types import e164, is_hostname, is_ip_address

EXIT_OK = 0
EXIT_FAILED = 1  # stale render (--check), output directory problems
EXIT_INVALID = 2  # the deployment file has errors
EXIT_INTERNAL = 70

app = typer.Typer(
    name="sipagent",
    help="Voice AI agents on SIP trunks through FreeSWITCH: validate and render deployments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
tls_app = typer.Typer(help="TLS helpers.", no_args_is_help=True)
app.add_typer(tls_app, name="tls")
records_app = typer.Typer(help="Call records in the call store (docs/operations.md).", no_args_is_help=True)
app.add_typer(records_app, name="records")

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)

F = TypeVar("F", bound=Callable[..., Any])

FileArg = Annotated[Path, typer.Argument(help="Deployment YAML file.", show_default=False)]
EnvFileOpt = Annotated[
    Path | None,
    typer.Option("--env-file", help="Read ${VAR} values from this dotenv file (the process environment wins)."),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the directory even if sipagent did not render it.")]


def line(*parts: object) -> Text:
    """One line of output built from plain pieces, never parsed as markup.

    A piece is a value (shown with control characters, line breaks and bidirectional overrides
    escaped, so nothing from a deployment file can restyle the terminal or forge a line) or a
    ``(value, style)`` pair.
    """
    text = Text()
    for part in parts:
        if isinstance(part, tuple):
            text.append(printable(str(part[0])), style=part[1])
        else:
            text.append(printable(str(part)))
    return text


def _cell(value: object) -> Text:
    return Text(printable(str(value)))


def _fail(message: str, code: int) -> typer.Exit:
    """Print ``sipagent: <message>`` and return the exit to raise."""
    err.print(line("sipagent: ", message))
    return typer.Exit(code)


def _guard(fn: F) -> F:
    """Plain-words errors instead of tracebacks (set SIPAGENT_DEBUG=1 to see them)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:
            if os.environ.get("SIPAGENT_DEBUG"):
                raise
            from orchestrator.logs import Redactor  # credentials in an exception's text are not printed either

            err.print(line(f"sipagent: internal error: {type(exc).__name__}: ", Redactor().redact(str(exc)[:500])))
            err.print("This is a bug; run again with SIPAGENT_DEBUG=1 and report the traceback.")
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper  # type: ignore[return-value]


def _environment(env_file: Path | None) -> Mapping[str, str]:
    """The process environment, over the values of ``env_file`` (read bounded, taken literally)."""
    if env_file is None:
        return os.environ
    from dotenv import dotenv_values

    try:
        text = read_text_bounded(env_file, ENV_FILE_LIMIT)
    except FileReadError as exc:
        raise _fail(f"cannot read the env file: {exc}", EXIT_INVALID) from None
    # no ${VAR} expansion inside the env file: chained references could grow without bound
    values = dotenv_values(stream=io.StringIO(text), interpolate=False)
    return {**{k: v for k, v in values.items() if v is not None}, **os.environ}


def _print_diagnostics(diagnostics: list[Diagnostic]) -> None:
    for d in diagnostics:
        colour = "red" if d.severity is Severity.ERROR else "yellow"
        where = f"{d.source}:{d.line}:{d.column}"
        err.print(line(f"{where}: ", (d.severity.value, colour), ": ", (d.dotted_path, "bold"), ": ", d.message))


def _load(file: Path, env_file: Path | None, strict: bool = False, quiet_ok: bool = False) -> LoadResult:
    """Validate ``file`` and print the findings; exits 2 unless the result has a deployment."""
    result = check_file(file, _environment(env_file))
    _print_diagnostics(result.diagnostics)
    errors, warnings = len(result.errors), len(result.warnings)
    if errors or (strict and warnings) or result.deployment is None:
        err.print(line((f"{file}: {errors} error(s), {warnings} warning(s)", "red")))
        raise typer.Exit(EXIT_INVALID)
    if not quiet_ok:
        err.print(line(f"{file}: valid" + (f" ({warnings} warning(s))" if warnings else "")))
    return result


def _version(value: bool) -> None:
    if value:
        out.print(f"sipagent {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Voice AI agents on SIP trunks through FreeSWITCH."""


@app.command()
@_guard
def validate(
    file: FileArg,
    env_file: EnvFileOpt = None,
    strict: Annotated[bool, typer.Option(help="Treat warnings as errors.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print findings as JSON on stdout.")] = False,
) -> None:
    """Check a deployment file and report every problem with its YAML path and line (exit 2 on errors)."""
    if json_output:
        result = check_file(file, _environment(env_file))
        sys.stdout.write(json.dumps([d.to_dict() for d in result.diagnostics], indent=2) + "\n")
        failed = result.errors or (strict and result.warnings)
        raise typer.Exit(EXIT_INVALID if failed else EXIT_OK)
    _load(file, env_file, strict)


@app.command()
@_guard
def render(
    file: FileArg,
    out_dir: Annotated[
        Path, typer.Option("--out", "-o", help="Configuration directory to write (FreeSWITCH's conf dir).")
    ],
    env_file: EnvFileOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 and show a diff when the directory is stale.")
    ] = False,
    force: ForceOpt = False,
    edge_conf_dir: EdgeConfDirOpt = None,
) -> None:
    """Render the FreeSWITCH configuration tree for a deployment, replacing OUT atomically.

    With an edge: OUT/kamailio (the Kamailio edge) and OUT/nodes/<name> (each node's FreeSWITCH tree)."""
    _, files = _load_and_render(file, env_file, _edge_dir(edge_conf_dir, out_dir))
    if check:
        diff = _diff(files, out_dir)
        if not diff.stale:
            err.print(line(f"{out_dir}: up to date ({len(files)} files)"))
            return
        _print_diff(diff)
        err.print(line((f"{out_dir} is stale: run 'sipagent render {file} --out {out_dir}'", "red")))
        raise typer.Exit(EXIT_FAILED)
    _write(files, out_dir, force)
    secret_files = sum(1 for f in files.values() if f.sensitive)
    err.print(line(f"rendered {len(files)} files into {out_dir} ({secret_files} holding secrets, mode 0600)"))


EdgeConfDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--edge-conf-dir",
        help="With an edge: the directory Kamailio will read its rendered files from (named in kamailio.cfg); "
        "default: OUT/kamailio (CONF_DIR/kamailio for apply).",
    ),
]


def _edge_dir(given: Path | None, out_dir: Path) -> Path:
    return (given if given is not None else out_dir / "kamailio").absolute()


def _load_and_render(
    file: Path, env_file: Path | None, edge_conf_dir: Path | None = None
) -> tuple[Deployment, dict[str, Any]]:
    """Validate ``file`` (exit 2 on errors) and render it. A TLS file changed or gone since validation exits 2,
    naming it."""
    from orchestrator.config.tls_material import TlsMaterialError
    from orchestrator.render import render_all

    result = _load(file, env_file, quiet_ok=True)
    assert result.deployment is not None
    try:
        return result.deployment, render_all(result.deployment, result.base_dir, edge_conf_dir)
    except TlsMaterialError as exc:
        raise _fail(f"transports.tls.{exc.setting}: {exc.message}", EXIT_INVALID) from None
    except ValueError as exc:  # the edge's configuration cannot express a value
        raise _fail(f"edge: {exc}", EXIT_INVALID) from None


def _diff(files: dict[str, Any], out_dir: Path) -> Any:
    """Compare with the directory on disk; an unreadable directory exits 1."""
    from orchestrator.render import diff_tree

    try:
        return diff_tree(files, out_dir)
    except OSError as exc:
        raise _fail(f"cannot read {out_dir}: {exc.strerror or exc}", EXIT_FAILED) from None


def _print_diff(diff: Any) -> None:
    """A rendered tree vs the directory on disk (files holding secrets are named, never shown)."""
    for rel in diff.added:
        out.print(line((f"+ {rel}", "green"), " (missing on disk)"))
    for rel in diff.removed:
        out.print(line((f"- {rel}", "red"), " (not rendered any more)"))
    for rel in diff.changed:
        patch = diff.patches.get(rel)
        if patch:
            for patch_line in patch.splitlines():  # the file on disk may hold anything
                out.print(line(patch_line))
        else:
            out.print(line((f"~ {rel}", "yellow"), " (changed; holds secrets, diff not shown)"))
    for rel, old, new in diff.mode_changed:
        out.print(line((f"~ {rel}", "yellow"), f" mode {old:o} -> {new:o}"))


def _write(files: Any, out_dir: Path, force: bool) -> None:
    """Write the tree atomically; a refused directory exits 1 with the reason."""
    from orchestrator.render import OutputError, write_tree

    try:
        write_tree(files, out_dir, force=force)
    except OutputError as exc:
        raise _fail(str(exc), EXIT_FAILED) from None


@app.command()
@_guard
def apply(
    file: FileArg,
    conf_dir: Annotated[
        Path, typer.Option("--conf-dir", "-c", help="FreeSWITCH's configuration directory (rendered by sipagent).")
    ],
    env_file: EnvFileOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change and what would run.")] = False,
    restart_profiles: Annotated[
        bool,
        typer.Option(
            "--restart-profiles",
            help="Also restart SIP profiles whose listening/TLS settings changed (drops their calls).",
        ),
    ] = False,
    force: ForceOpt = False,
    edge_conf_dir: EdgeConfDirOpt = None,
) -> None:
    """Validate, render into CONF_DIR and load the change into the running FreeSWITCH nodes without dropping calls.

    With an edge, CONF_DIR is the tree `render` wrote: each node gets the reloads of its own nodes/<name>, and
    Kamailio reloads its dispatcher list, address table and TLS configuration over its RPC socket."""
    from orchestrator.calls.nodes import node_endpoints
    from orchestrator.render import read_tree
    from orchestrator.render.apply import apply_all
    from orchestrator.render.reload import plan_reload

    deployment, files = _load_and_render(file, env_file, _edge_dir(edge_conf_dir, conf_dir))
    try:
        on_disk = read_tree(conf_dir)
    except OSError as exc:
        raise _fail(f"cannot read {conf_dir}: {exc.strerror or exc}", EXIT_FAILED) from None
    if deployment.edge is not None:
        _apply_edge(deployment, files, on_disk, conf_dir, dry_run, restart_profiles, force)
        return
    plan = plan_reload(on_disk, {rel: f.content for rel, f in files.items()}, allow_restart=restart_profiles)
    if plan.empty:
        err.print(line(f"{conf_dir}: up to date, nothing to apply"))
        return
    _print_diff(_diff(files, conf_dir))
    out.print(line(("will run on each node:", "bold")))
    for step in plan.steps:
        out.print(line(f"  {step.command}   ", (f"# {step.reason}", "dim")))
    for step in plan.restart_needed:
        out.print(line((f"  not run (would drop calls): {step.command}   # {step.reason}", "yellow")))
    if dry_run:
        err.print("dry run: nothing written, nothing loaded")
        return
    _write(files, conf_dir, force)
    failed = _print_applied(asyncio.run(apply_all(node_endpoints(deployment), plan.steps)))
    if plan.restart_needed:
        err.print(line(("some changes wait for a profile restart (see above; --restart-profiles)", "yellow")))
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _apply_edge(
    deployment: Deployment,
    files: dict[str, Any],
    on_disk: dict[str, bytes],
    conf_dir: Path,
    dry_run: bool,
    restart_profiles: bool,
    force: bool,
) -> None:
    """``apply`` for a pool: per-node ESL reloads from each node's own subtree, the edge's live RPC reloads."""
    from orchestrator.calls.nodes import node_endpoints
    from orchestrator.edge.rpc import RpcError, reload
    from orchestrator.render import EDGE_DIR, NODES_DIR
    from orchestrator.render.apply import apply_all
    from orchestrator.render.reload import plan_edge_reload, plan_reload

    assert deployment.edge is not None
    rpc_socket = deployment.edge.rpc_socket

    def sub(tree: dict[str, Any], prefix: str) -> dict[str, bytes]:
        return {
            rel[len(prefix) :]: (f if isinstance(f, bytes) else f.content)
            for rel, f in tree.items()
            if rel.startswith(prefix)
        }

    endpoints = {ep.name: ep for ep in node_endpoints(deployment)}
    node_plans = {
        name: plan_reload(
            sub(on_disk, f"{NODES_DIR}/{name}/"), sub(files, f"{NODES_DIR}/{name}/"), allow_restart=restart_profiles
        )
        for name in endpoints
    }
    edge_plan = plan_edge_reload(sub(on_disk, f"{EDGE_DIR}/"), sub(files, f"{EDGE_DIR}/"))
    if edge_plan.empty and all(p.empty for p in node_plans.values()):
        err.print(line(f"{conf_dir}: up to date, nothing to apply"))
        return
    _print_diff(_diff(files, conf_dir))
    for name, plan in node_plans.items():
        if plan.empty:
            continue
        out.print(line((f"will run on node {name}:", "bold")))
        for step in plan.steps:
            out.print(line(f"  {step.command}   ", (f"# {step.reason}", "dim")))
        for step in plan.restart_needed:
            out.print(line((f"  not run (would drop calls): {step.command}   # {step.reason}", "yellow")))
    if not edge_plan.empty:
        out.print(line(("will ask the edge (Kamailio RPC):", "bold")))
        for step in edge_plan.steps:
            out.print(line(f"  {step.command}   ", (f"# {step.reason}", "dim")))
        for step in {s.reason: s for s in edge_plan.restart_needed}.values():
            out.print(line((f"  not done (restart Kamailio for it): {step.reason}", "yellow")))
    if dry_run:
        err.print("dry run: nothing written, nothing loaded")
        return
    _write(files, conf_dir, force)

    async def run() -> tuple[list[Any], list[Any], str | None]:
        nodes = await asyncio.gather(
            *(apply_all([endpoints[name]], plan.steps) for name, plan in node_plans.items() if not plan.empty)
        )
        edge_results: list[Any] = []
        edge_error = None
        if edge_plan.steps:
            try:
                edge_results = await reload(
                    rpc_socket, [s.command for s in edge_plan.steps], reply_dir=Path(rpc_socket).parent
                )
            except RpcError as exc:
                edge_error = str(exc)
        return [r for results in nodes for r in results], edge_results, edge_error

    node_results, edge_results, edge_error = asyncio.run(run())
    failed = _print_applied(node_results)
    if edge_error is not None:
        failed = True
        err.print(line((f"edge: not reachable on {rpc_socket}: {edge_error}", "red")))
    for r in edge_results:
        if r.ok:
            out.print(line("edge: ", ("ok", "green"), f" {r.method}"))
        else:
            failed = True
            out.print(line("edge: ", ("failed", "red"), f" {r.method}: {r.error}"))
    if edge_plan.restart_needed or any(p.restart_needed for p in node_plans.values()):
        err.print(line(("some changes wait for a restart (see above)", "yellow")))
    if failed:
        raise typer.Exit(EXIT_FAILED)


def _print_applied(results: list[Any]) -> bool:
    """What each node did with the reload steps; whether any node or step failed."""
    failed = False
    for node in results:
        if node.error:
            failed = True
            err.print(line((f"{node.node}: not reachable: {node.error}", "red")))
            continue
        for step, _reply in node.done:
            out.print(line(f"{node.node}: ", ("ok", "green"), f" {step.command}"))
        for name, seconds in node.profiles_up.items():
            out.print(line(f"{node.node}: profile {name} RUNNING after {seconds:.1f} s"))
        for step, reply in node.failed:
            failed = True
            out.print(line(f"{node.node}: ", ("failed", "red"), f" {step.command}: {reply}"))
        out.print(line(f"{node.node}: channels up {node.calls_before} before, {node.calls_after} after"))
    return failed


@app.command()
@_guard
def doctor(
    file: FileArg,
    env_file: EnvFileOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable results.")] = False,
    peer: Annotated[
        list[str] | None, typer.Option("--peer", help="Also check TLS with HOST:PORT (repeatable).")
    ] = None,
    no_trunks: Annotated[bool, typer.Option("--no-trunks", help="Skip DNS and OPTIONS to outbound trunks.")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds per network check.")] = 3.0,
) -> None:
    """Diagnose a live deployment: ESL, SIP profiles, certificate, TLS, trunk DNS/OPTIONS, codecs, NAT, UDP,
    edge DNS."""
    from orchestrator.calls.nodes import node_endpoints
    from orchestrator.doctor import FAIL, run_all

    result = _load(file, env_file, quiet_ok=True)
    assert result.deployment is not None
    peers = [_peer(item) for item in peer or []]
    results = asyncio.run(
        run_all(
            result.deployment,
            result.base_dir,
            node_endpoints(result.deployment),
            peers=peers,
            timeout=timeout,
            trunks=not no_trunks,
        )
    )
    if as_json:
        sys.stdout.write(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    else:
        out.print(_doctor_table(results))
    if any(r.status == FAIL for r in results):
        raise typer.Exit(EXIT_FAILED)


def _peer(item: str) -> tuple[str, int]:
    """A ``--peer HOST:PORT`` (``[v6]:port`` too); anything else exits 2."""
    host, _, port = item.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    valid_port = port.isascii() and port.isdigit() and len(port) <= 5 and 1 <= int(port) <= 65535
    if not valid_port or not (is_hostname(host) or is_ip_address(host)):
        err.print(line("sipagent: --peer ", item[:100], ": expected HOST:PORT (a host name or IP, port 1-65535)"))
        raise typer.Exit(EXIT_INVALID)
    return host, int(port)


def _doctor_table(results: list[Any]) -> Table:
    """The doctor's results for a terminal (their text escaped: it may quote what a peer sent)."""
    table = Table(show_header=True, header_style="bold")
    for column in ("check", "target", "status", "detail / fix"):
        table.add_column(column)
    colors = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    for r in results:
        text = escape(r.detail) + (f"\n[italic]{escape(r.fix)}[/italic]" if r.fix else "")
        table.add_row(r.check, escape(r.target), f"[{colors[r.status]}]{r.status}[/]", text)
    return table


@app.command()
@_guard
def schema(
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
) -> None:
    """Print the JSON Schema of the deployment file (for editor completion)."""
    text = schema_text()
    if output is None:
        sys.stdout.write(text)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise _fail(f"cannot write {output}: {exc.strerror or exc}", EXIT_FAILED) from None
        err.print(line(f"wrote {output}"))


def schema_text() -> str:
    """The deployment JSON Schema as stable, indented JSON."""
    doc = Deployment.model_json_schema()
    doc["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    doc["$id"] = "https://sipagent.dev/schema/deployment-v1.json"
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@app.command()
@_guard
def show(file: FileArg, env_file: EnvFileOpt = None) -> None:
    """Show the trunks, numbers and agents of a deployment as tables."""
    result = _load(file, env_file, quiet_ok=True)
    d = result.deployment
    assert d is not None
    fs = d.freeswitch
    t = d.transports
    summary = Table(title="FreeSWITCH", show_header=False)
    summary.add_row("bind", _cell(fs.bind_ip))
    summary.add_row("external SIP / RTP", _cell(f"{fs.ext_sip_ip or '-'} / {fs.ext_rtp_ip or '-'}"))
    summary.add_row("transports", _cell(", ".join(f"{name} {t.port(name)}" for name in t.enabled())))
    summary.add_row("RTP ports", _cell(f"{fs.rtp_ports.start}-{fs.rtp_ports.end}"))
    summary.add_row("codecs", _cell(", ".join(fs.codecs)))
    summary.add_row("event socket", _cell(f"{fs.event_socket.listen_ip}:{fs.event_socket.port}"))
    out.print(summary)

    trunks = Table(title="Trunks")
    for col in ("trunk", "inbound", "auth", "SRTP in", "outbound", "SRTP out"):
        trunks.add_column(col, overflow="fold")
    for trunk in d.trunks:
        ib, ob = trunk.inbound, trunk.outbound
        auth = []
        if ib and ib.auth.digest:
            auth.append(f"digest {ib.auth.digest.username}")
        if ib and ib.auth.acl:
            auth.append("acl " + " ".join(ib.auth.acl))
        cells = (
            trunk.name,
            ", ".join(ib.transports) if ib else "-",
            " + ".join(auth) or "-",
            ib.media_encryption if ib else "-",
            f"{ob.address}:{ob.effective_port} ({ob.transport})" if ob else "-",
            ob.media_encryption if ob else "-",
        )
        trunks.add_row(*map(_cell, cells))
    out.print(trunks)

    numbers = Table(
        title="Numbers", caption="An exact number wins over a block holding it, a smaller block over a larger."
    )
    for col in ("number", "holds", "trunk", "agent", "rules"):
        numbers.add_column(col, overflow="fold")
    rules = Table(title="Routing rules", caption="In order for each number: the first that matches answers.")
    for col in ("number", "rule", "when", "agent"):
        rules.add_column(col, overflow="fold")
    for n in d.numbers:
        pattern = n.pattern
        holds = "1 number" if pattern.exact else f"{pattern.size:,} numbers"
        numbers.add_row(*map(_cell, (n.number, holds, n.trunk, n.agent, len(n.rules) or "-")))
        for k, rule in enumerate(n.rules):
            rules.add_row(*map(_cell, (n.number, f"rules[{k}]", _rule_text(rule), rule.agent)))
    out.print(numbers)
    if rules.rows:
        out.print(rules)

    agents = Table(title="Agents")
    for col in ("agent", "protocol", "url", "audio"):
        agents.add_column(col, overflow="fold")
    for a in d.agents:
        url = f"{a.url}?agent_id={a.agent_id}" if isinstance(a, ElevenLabsAgent) else a.url
        agents.add_row(_cell(a.name), _cell(a.protocol), _cell(url), _cell(a.audio_format))
    out.print(agents)
    if d.edge is not None:
        _show_edge(d)


def _rule_text(rule: RoutingRule) -> str:
    """``caller +44…, mon-fri 09:00-17:00 Europe/Berlin``: a rule's conditions."""
    conditions = []
    if rule.caller_prefix is not None:
        conditions.append(f"caller {rule.caller_prefix}…")
    if rule.time is not None:
        conditions.append(rule.time.window().describe())
    return ", ".join(conditions)


NumberArg = Annotated[str, typer.Argument(help="The called number (E.164, e.g. +15557650042).", show_default=False)]
RouteFileArg = Annotated[
    Path,
    typer.Argument(
        help="Deployment YAML file (default: $SIPAGENT_DEPLOYMENT, else deployment.yaml).",
        envvar="SIPAGENT_DEPLOYMENT",
        show_default=False,
    ),
]


@app.command()
@_guard
def route(
    number: NumberArg,
    file: RouteFileArg = Path("deployment.yaml"),
    caller: Annotated[
        str, typer.Option("--from", help="The caller ID (E.164), for rules by caller prefix.", show_default=False)
    ] = "",
    at: Annotated[
        str,
        typer.Option(
            "--at",
            help="When the call arrives: ISO 8601 (2026-12-04T09:00, +01:00 or Z for an offset; without one, this "
            "machine's time zone). Default: now.",
            show_default=False,
        ),
    ] = "",
    trunk: Annotated[
        str | None, typer.Option("--trunk", help="The trunk the call arrives on (default: every trunk it is on).")
    ] = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Explain which number or block, and which of its rules, answers a call to NUMBER, and why (exit 1: none)."""
    from datetime import datetime

    from orchestrator.config import routing

    try:
        e164(number)
    except ValueError as exc:
        raise _fail(f"NUMBER: {exc}", EXIT_INVALID) from None
    if len(caller) > 64:
        raise _fail("--from: a caller ID of at most 64 characters", EXIT_INVALID)
    try:
        when = datetime.fromisoformat(at) if at else datetime.now()
    except ValueError:
        raise _fail(
            f"--at: {printable(at[:60])!r} is not an ISO 8601 time such as 2026-12-04T09:00", EXIT_INVALID
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()  # a time without an offset is this machine's local time
    result = _load(file, env_file, quiet_ok=True)
    assert result.deployment is not None
    table = routing.table(result.deployment)
    trunks: list[str | None] = [trunk] if trunk is not None else [*table.trunks(number)] or [None]
    answered = False
    for name in trunks:
        decision = table.decide(name, number, caller, when) if name is not None else None
        where = f" on trunk {name}" if name is not None else ""
        heading = f"{number}{where}, from {caller or '(no caller ID)'}, at {when:%Y-%m-%d %H:%M %Z (%a)}"
        out.print(line((heading, "bold")))
        if decision is None:
            out.print(line("  no number or block answers it", where, ": the call is refused (404, unknown_number)"))
            continue
        answered = True
        out.print(line("  answered by agent ", (decision.agent, "bold green"), f" ({decision.path})"))
        for reason in decision.why:
            out.print(line("  - ", reason))
    if not answered:
        raise typer.Exit(EXIT_FAILED)


_PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _show_edge(d: Deployment) -> None:
    """The static addresses carriers allowlist, and the pool behind the edge (never a password)."""
    import ipaddress

    edge = d.edge
    assert edge is not None
    public = d.public_transports
    allow = Table(
        title="Allowlist (static addresses for carriers)",
        caption="Media flows directly between carriers and the nodes: it is not anchored at the edge (no rtpengine).",
    )
    for col in ("address", "traffic", "ports", "where"):
        allow.add_column(col, overflow="fold")
    for address in edge.addresses:
        for name in ("tls", "tcp", "udp"):
            if name in public.enabled():
                allow.add_row(*map(_cell, (address, f"SIP {name.upper()}", public.port(name), f"edge {edge.host}")))
    rtp = d.freeswitch.rtp_ports
    for node in edge.nodes:
        where = f"node {node.name}"
        if any(ipaddress.ip_address(node.rtp_address) in ipaddress.ip_network(n) for n in _PRIVATE_NETWORKS):
            where += " (a private address: set the node's rtp_ip to its public one)"
        allow.add_row(*map(_cell, (node.rtp_address, "RTP UDP", f"{rtp.start}-{rtp.end}", where)))
    out.print(allow)

    pool = Table(title=f"Pool behind the edge (dispatch: {edge.dispatch.algorithm})")
    for col in ("node", "SIP (from the edge, TCP)", "weight", "event socket"):
        pool.add_column(col, overflow="fold")
    for node in edge.nodes:
        cells = (node.name, _hostport(node.sip_ip, node.sip_port), node.weight, _hostport(node.esl_host, node.esl.port))
        pool.add_row(*map(_cell, cells))
    out.print(pool)


@app.command()
@_guard
def dns(
    file: FileArg,
    env_file: EnvFileOpt = None,
    ttl: Annotated[int, typer.Option("--ttl", min=0, max=2**31 - 1, help="TTL of every record, in seconds.")] = 3600,
) -> None:
    """Print the DNS records to publish for the edge's name (RFC 3263: NAPTR, SRV, A/AAAA) as zone-file lines."""
    from orchestrator.edge.dns import zone_text

    result = _load(file, env_file, quiet_ok=True)
    assert result.deployment is not None
    if result.deployment.edge is None:
        raise _fail(f"{file} has no edge section: the records are for the edge's host name (edge.host)", EXIT_INVALID)
    sys.stdout.write(zone_text(result.deployment, ttl))


@app.command("run")
@_guard
def run_orchestrator(
    file: FileArg,
    env_file: EnvFileOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Run the orchestrator: drive calls on the FreeSWITCH nodes, serve the HTTP API and metrics."""
    import asyncio

    from orchestrator import logs
    from orchestrator.runtime import serve

    result = _load(file, env_file, quiet_ok=True)
    assert result.deployment is not None
    try:  # every secret of the deployment is redacted from every log line, at every level
        logs.setup(log_level, logs.deployment_secrets(result.deployment))
    except ValueError as exc:
        err.print(line("sipagent: --log-level: ", exc))
        raise typer.Exit(EXIT_INVALID) from None
    try:  # uvloop halves the event loop's share of the media hot path (bench/media.py)
        import uvloop

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    with runner:
        runner.run(serve(result.deployment, result.base_dir))


@app.command()
@_guard
def call(
    to: Annotated[str, typer.Argument(help="E.164 number or sip: URI to call.", show_default=False)],
    trunk: Annotated[str, typer.Option(help="Outbound trunk.")],
    agent: Annotated[str, typer.Option(help="Agent that talks to the callee.")],
    caller_id: Annotated[str | None, typer.Option(help="E.164 caller ID (default: the trunk's).")] = None,
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="X-Name=value (repeatable).")] = None,
    api: Annotated[
        str, typer.Option(envvar="SIPAGENT_API", help="Orchestrator API base URL.")
    ] = "http://127.0.0.1:8080",
    token_env: Annotated[str, typer.Option(help="Environment variable holding the API token.")] = "SIPAGENT_API_TOKEN",
    wait: Annotated[bool, typer.Option(help="Follow the call until it is answered or fails.")] = True,
) -> None:
    """Place an outbound call through a running orchestrator (`sipagent run`) and report its progress."""
    import httpx

    token = os.environ.get(token_env)
    if not token:
        err.print(line("sipagent: set ", token_env, " to the orchestrator's API token"))
        raise typer.Exit(EXIT_INVALID)
    body = {"trunk": trunk, "to": to, "agent": agent, "caller_id": caller_id, "headers": _headers(header or [])}
    auth = {"Authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=api, headers=auth, timeout=10) as client:
            call_id = _place_call(client, body)
            out.print(line("call ", call_id, ": dialing ", to, " via ", trunk))
            if wait:
                _follow_call(client, call_id, agent)
    except httpx.HTTPError as exc:
        err.print(line("sipagent: cannot reach the orchestrator at ", api, ": ", exc))
        raise typer.Exit(EXIT_FAILED) from None


def _headers(items: list[str]) -> dict[str, str]:
    """``--header Name=value`` options as a dict; one without ``=`` exits 2."""
    headers: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            err.print(line("sipagent: --header needs Name=value, got ", repr(item[:100])))
            raise typer.Exit(EXIT_INVALID)
        headers[name] = value
    return headers


def _place_call(client: Any, body: dict[str, Any]) -> str:
    """``POST /v1/calls``; the new call's id (a refusal, or an answer without an id, exits 1)."""
    resp = client.post("/v1/calls", json=body)
    if resp.status_code != 201:
        problem = _json(resp).get("error")
        message = str(problem.get("message", resp.text) if isinstance(problem, dict) else resp.text)
        err.print(line(f"sipagent: call refused ({resp.status_code}): ", message[:500]))
        raise typer.Exit(EXIT_FAILED)
    call_id = _json(resp).get("id")
    if not isinstance(call_id, str):
        err.print(line("sipagent: the orchestrator's answer has no call id: ", resp.text[:200]))
        raise typer.Exit(EXIT_FAILED)
    return call_id


def _follow_call(client: Any, call_id: str, agent: str) -> None:
    """Poll the call and print its progress until it is answered (return) or ends (exit 0 if completed, else 1)."""
    import time

    seen: set[str] = set()
    while True:
        time.sleep(0.5)
        state = _json(client.get(f"/v1/calls/{quote(call_id, safe='')}"))
        progress = state.get("progress")
        for status in progress if isinstance(progress, list) else []:
            if str(status) not in seen:
                seen.add(str(status))
                what = "ringing" if status == 180 else "session progress"
                out.print(line("call ", call_id, f": {status} {what}"))
        if state.get("answered_at") and "answered" not in seen:
            seen.add("answered")
            out.print(line("call ", call_id, ": answered (", state.get("codec"), "), agent ", agent, " connected"))
            return
        if state.get("result") or state.get("state") == "ended":
            hangup = state.get("hangup")
            if not isinstance(hangup, dict):
                hangup = {}
            sip = f"SIP {hangup.get('sip_status')} " if hangup.get("sip_status") else ""
            out.print(line("call ", call_id, ": ", state.get("result"), " (", sip, hangup.get("cause", ""), ")"))
            raise typer.Exit(EXIT_OK if state.get("result") == "completed" else EXIT_FAILED)


def _json(resp: Any) -> dict[str, Any]:
    """An API answer's JSON object, or {} when it is not one."""
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


@tls_app.command("self-signed")
@_guard
def tls_self_signed(
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="Directory for ca.crt, NAME.crt and NAME.key.")],
    name: Annotated[list[str], typer.Option("--name", "-n", help="DNS name for the certificate (repeatable).")],
    ip: Annotated[list[str] | None, typer.Option("--ip", help="IP address for the certificate (repeatable).")] = None,
    days: Annotated[int, typer.Option(min=1, max=825, help="Validity in days.")] = 365,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Create a private CA and a server certificate for labs and tests (not for production trunks)."""
    from orchestrator.config.selfsigned import generate

    try:
        files = generate(out_dir, name, ip or [], days, force)
    except FileExistsError as exc:
        raise _fail(f"already exists: {exc} (use --force to overwrite)", EXIT_FAILED) from None
    except ValueError as exc:
        raise _fail(str(exc), EXIT_INVALID) from None
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        raise _fail(f"cannot write into {out_dir}: {where}{exc.strerror or exc}", EXIT_FAILED) from None
    for label, path in (("CA", files.ca_certificate), ("certificate", files.certificate), ("key", files.private_key)):
        err.print(line(f"wrote {label}: {path}"))


def _when(value: str | None, option: str) -> float | None:
    """An ISO 8601 date or time from the command line as epoch seconds (UTC when it has no offset)."""
    if value is None:
        return None
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"{option}: not an ISO 8601 date or time: {value[:64]}", EXIT_INVALID) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@records_app.command("export")
@_guard
def records_export(
    file: FileArg,
    env_file: EnvFileOpt = None,
    since: Annotated[str | None, typer.Option(help="Calls that started at or after (ISO 8601).")] = None,
    until: Annotated[str | None, typer.Option(help="Calls that started before (ISO 8601).")] = None,
) -> None:
    """Print the stored call records as JSON lines, oldest first (sipagent records export d.yaml > calls.jsonl)."""
    from orchestrator import store

    start, end = _when(since, "--since"), _when(until, "--until")
    result = _load(file, env_file, quiet_ok=True)
    assert result.deployment is not None
    value = result.deployment.orchestrator.records
    if not value:
        raise _fail("orchestrator.records is off: there are no records", EXIT_FAILED)
    target = store.target(value, result.base_dir)
    if target.kind == "jsonl":
        raise _fail(f"orchestrator.records is a JSONL file ({target.name}): it is the export already", EXIT_FAILED)

    async def export() -> int:
        found = store.open_store(target, create=False) if target.kind == "sqlite" else store.open_store(target)
        count = 0
        try:
            if await found.db.schema_version() is None:
                raise _fail(f"{found.name} holds no call records (sipagent run has not written there)", EXIT_FAILED)
            chunk: list[str] = []
            async for record in found.export(store.Filters(since=start, until=end)):
                chunk.append(json.dumps(record, sort_keys=True) + "\n")
                count += 1
                if len(chunk) >= 500:
                    sys.stdout.write("".join(chunk))
                    chunk.clear()
            sys.stdout.write("".join(chunk))
            sys.stdout.flush()
        except store.StoreError as exc:
            raise _fail(f"cannot read the call store: {exc}", EXIT_FAILED) from None
        finally:
            await found.close()
        return count

    count = asyncio.run(export())
    err.print(line(f"{count} record(s) exported from {target.name}"))


def run() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    run()
