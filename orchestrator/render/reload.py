"""What a running FreeSWITCH must be told when its configuration tree changes (sans-I/O).

``plan_reload(old, new)`` compares the files on disk with a fresh render and returns the API
commands that load the change **without dropping calls**, in order, plus what cannot be loaded live
(it would drop calls or the event socket) with the command an operator runs in a maintenance window:

* anything changed → ``reloadxml`` (dialplan, directory, vars, sofia globals are read per call);
* ``acl.conf.xml`` → ``reloadacl``;
* a module newly listed in ``modules.conf.xml`` → ``load <module>`` (never unloaded live);
* ``switch.conf.xml`` call limits → ``fsctl max_sessions`` / ``fsctl sps``;
* a new SIP profile → ``sofia profile <p> start``; a removed one → ``stop`` (drops its calls: only
  with ``allow_restart``);
* a profile's gateways: removed → ``killgw``, added or changed → ``killgw`` (changed) then
  ``rescan``; established calls through a gateway are not affected;
* a profile's listening settings (address, port, transport, TLS) or its certificate files can only
  be applied by ``sofia profile <p> restart``, which drops the calls on that profile: only with
  ``allow_restart``; other settings → ``rescan``;
* ``event_socket.conf.xml`` needs ``reload mod_event_socket`` (drops ESL connections, not calls):
  reported, never done here (it would cut this very connection).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

__all__ = ["EDGE_RELOADS", "ReloadPlan", "Step", "plan_edge_reload", "plan_reload"]

#: profile settings sofia only reads when the profile starts (listening sockets and TLS context)
RESTART_SETTINGS = frozenset(
    {
        "sip-ip",
        "sip-port",
        "rtp-ip",
        "ext-sip-ip",
        "ext-rtp-ip",
        "bind-params",
        "tls",
        "tls-only",
        "tls-bind-params",
        "tls-sip-port",
        "tls-cert-dir",
        "tls-version",
        "tls-ciphers",
        "tls-passphrase",
        "tls-verify-policy",
        "tls-verify-depth",
        "tls-verify-date",
        "tls-verify-in-subjects",
        "apply-inbound-acl",
        "local-network-acl",
        "apply-nat-acl",
        "inbound-codec-prefs",
        "outbound-codec-prefs",
    }
)
_PROFILE = re.compile(r"sip_profiles/([A-Za-z0-9_-]+)\.xml")


@dataclass(frozen=True)
class Step:
    """One API command and why it is needed."""

    command: str
    reason: str


@dataclass
class ReloadPlan:
    """What to run, and what needs a restart."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    restart_needed: list[Step] = field(default_factory=list)  # not run: would drop calls or our connection

    @property
    def empty(self) -> bool:
        """Nothing changed."""
        return not (self.added or self.removed or self.changed)


def _xml(data: bytes | None) -> ET.Element | None:
    if not data:
        return None
    try:
        return ET.fromstring(data)
    except ET.ParseError:
        return None


def _profile(data: bytes | None) -> tuple[dict[str, str], dict[str, bytes]]:
    """A profile file's settings and gateways (each gateway as canonical bytes)."""
    root = _xml(data)
    if root is None:
        return {}, {}
    settings = {p.get("name", ""): p.get("value", "") for p in root.findall("./settings/param")}
    gateways = {}
    for g in root.findall("./gateways/gateway"):
        g.tail = None  # what follows the element is not part of it
        gateways[g.get("name", "")] = ET.tostring(g)
    return settings, gateways


def _modules(data: bytes | None) -> list[str]:
    root = _xml(data)
    return [m.get("module", "") for m in root.iter("load")] if root is not None else []


def _switch_params(data: bytes | None) -> dict[str, str]:
    root = _xml(data)
    if root is None:
        return {}
    return {p.get("name", ""): p.get("value", "") for p in root.iter("param")}


def plan_reload(old: dict[str, bytes], new: dict[str, bytes], *, allow_restart: bool = False) -> ReloadPlan:
    """Compare two trees (relative path → content) and plan the live reload."""
    plan = ReloadPlan(
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        changed=sorted(p for p in set(old) & set(new) if old[p] != new[p]),
    )
    if plan.empty:
        return plan
    touched = set(plan.added) | set(plan.removed) | set(plan.changed)
    steps, restart = plan.steps, plan.restart_needed
    steps.append(Step("reloadxml", "the configuration changed"))
    acl = "autoload_configs/acl.conf.xml"
    if acl in touched:
        steps.append(Step("reloadacl", "access lists changed"))
    mods = "autoload_configs/modules.conf.xml"
    if mods in touched:
        had = set(_modules(old.get(mods)))
        for module in _modules(new.get(mods)):
            if module not in had:
                steps.append(Step(f"load {module}", f"{module} is needed now"))
    sw = "autoload_configs/switch.conf.xml"
    if sw in touched:
        before, after = _switch_params(old.get(sw)), _switch_params(new.get(sw))
        for param, command in (("max-sessions", "fsctl max_sessions"), ("sessions-per-second", "fsctl sps")):
            if after.get(param) and after.get(param) != before.get(param):
                steps.append(Step(f"{command} {after[param]}", f"{param} changed"))
    if "autoload_configs/event_socket.conf.xml" in touched:
        restart.append(Step("reload mod_event_socket", "event socket settings changed (drops ESL connections)"))
    tls_changed = any(p.startswith("tls/") for p in touched)
    profiles = sorted(_profile_names(touched))
    tls_profiles = {n for n in _profile_names(new) if _profile(new[f"sip_profiles/{n}.xml"])[0].get("tls") == "true"}
    for name in sorted(tls_profiles - set(profiles)) if tls_changed else []:
        _restart(plan, name, "certificate files changed", allow_restart)
    for name in profiles:
        path = f"sip_profiles/{name}.xml"
        if path not in old:
            steps.append(Step(f"sofia profile {name} start", f"new SIP profile {name}"))
            continue
        if path not in new:
            cmd = Step(f"sofia profile {name} stop", f"SIP profile {name} removed (drops its calls)")
            (steps if allow_restart else restart).append(cmd)
            continue
        (s_old, g_old), (s_new, g_new) = _profile(old[path]), _profile(new[path])
        listening = sorted(k for k in set(s_old) | set(s_new) if k in RESTART_SETTINGS and s_old.get(k) != s_new.get(k))
        if listening or (tls_changed and name in tls_profiles):
            why = f"{', '.join(listening) or 'certificate files'} changed"
            _restart(plan, name, why, allow_restart)
            if allow_restart:
                continue  # the restart loads gateways too
        for gw in sorted(set(g_old) - set(g_new)):
            steps.append(Step(f"sofia profile {name} killgw {gw}", f"gateway {gw} removed"))
        changed_gw = sorted(gw for gw in set(g_old) & set(g_new) if g_old[gw] != g_new[gw])
        for gw in changed_gw:
            steps.append(Step(f"sofia profile {name} killgw {gw}", f"gateway {gw} changed"))
        other = any(s_old.get(k) != s_new.get(k) for k in set(s_old) | set(s_new) if k not in RESTART_SETTINGS)
        if set(g_new) - set(g_old) or changed_gw or other:
            steps.append(Step(f"sofia profile {name} rescan", f"profile {name}: gateways or settings changed"))
    return plan


def _profile_names(paths: set[str] | dict[str, bytes]) -> set[str]:
    return {m.group(1) for p in paths if (m := _PROFILE.fullmatch(p))}


def _restart(plan: ReloadPlan, name: str, why: str, allow: bool) -> None:
    step = Step(f"sofia profile {name} restart", f"profile {name}: {why} (drops the calls on {name})")
    (plan.steps if allow else plan.restart_needed).append(step)


#: Kamailio RPC that loads an edge file live (jsonrpcs); every other file is read only when Kamailio starts
EDGE_RELOADS = {
    "dispatcher.list": "dispatcher.reload",
    "address.list": "permissions.addressReload",
    "tls.cfg": "tls.reload",
}


def plan_edge_reload(old: dict[str, bytes], new: dict[str, bytes]) -> ReloadPlan:
    """Compare the edge's files (relative to its directory) and plan their live reload: the dispatcher list
    (nodes added, drained, re-weighted), the trunks' address table and the TLS configuration (certificates
    under ``tls/`` count as it) have RPCs that keep calls up; ``kamailio.cfg`` and the ``trunks.cfg`` it
    includes (digest users, carrier destinations, remote domains) are read at start only: a restart."""
    plan = ReloadPlan(
        added=sorted(set(new) - set(old)),
        removed=sorted(set(old) - set(new)),
        changed=sorted(p for p in set(old) & set(new) if old[p] != new[p]),
    )
    touched = [*plan.added, *plan.removed, *plan.changed]
    methods: dict[str, str] = {}
    for rel in sorted(touched):
        if rel.startswith("tls/"):
            methods.setdefault("tls.reload", f"{rel} changed")
        elif rel in EDGE_RELOADS:
            methods.setdefault(EDGE_RELOADS[rel], f"{rel} changed")
        elif not rel.startswith("."):
            plan.restart_needed.append(Step("restart kamailio", f"{rel} is read when Kamailio starts"))
    plan.steps = [Step(m, why) for m, why in methods.items()]
    return plan
