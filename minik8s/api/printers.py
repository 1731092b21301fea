"""Printer columns for `get` tables (served as meta.k8s.io Table and printed by the CLI)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Column:
    name: str
    get: Callable[[Obj], str]
    wide: bool = False
    type: str = "string"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_time(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))


def human_duration(seconds: float) -> str:
    """kubectl's short ages: 45s, 5m12s, 3h, 2d4h."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 48:
        return f"{h}h"
    d = h // 24
    return f"{d}d{h % 24}h" if d < 8 and h % 24 else f"{d}d"


def age(obj: Obj) -> str:
    created = parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return human_duration((now() - created).total_seconds()) if created else "<unknown>"


def name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _dig(obj: Obj, *path: str, default: str = "<none>") -> str:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    return default if cur in (None, "") else str(cur)


# --- Pod ---------------------------------------------------------------------------------

def _sidecar_names(obj: Obj) -> set[str]:
    """Names of the pod's native sidecars (init containers with restartPolicy Always)."""
    inits = (obj.get("spec") or {}).get("initContainers") or []
    return {c.get("name") for c in inits if c.get("restartPolicy") == "Always"}


def pod_ready(obj: Obj) -> str:
    """kubectl's READY: ready app containers and started, ready sidecars, over both."""
    status = obj.get("status") or {}
    statuses = status.get("containerStatuses") or []
    sidecars = _sidecar_names(obj)
    total = len((obj.get("spec") or {}).get("containers") or []) + len(sidecars)
    ready = sum(1 for s in statuses if s.get("ready"))
    ready += sum(1 for s in status.get("initContainerStatuses") or []
                 if s.get("name") in sidecars and s.get("started") and s.get("ready"))
    return f"{ready}/{total}"


def _init_reason(obj: Obj) -> str | None:
    """kubectl printPod's init-container pass: "Init:N/M", "Init:<reason>", or None once initialization is over."""
    status = obj.get("status") or {}
    sidecars = _sidecar_names(obj)
    total = len((obj.get("spec") or {}).get("initContainers") or [])
    for i, cs in enumerate(status.get("initContainerStatuses") or []):
        state = cs.get("state") or {}
        term, waiting = state.get("terminated"), state.get("waiting")
        if term is not None and term.get("exitCode") == 0:
            continue
        if cs.get("name") in sidecars and cs.get("started"):
            continue
        if term is not None:
            if term.get("reason"):
                return f"Init:{term['reason']}"
            if term.get("signal"):
                return f"Init:Signal:{term['signal']}"
            return f"Init:ExitCode:{term.get('exitCode')}"
        if waiting is not None and waiting.get("reason") and waiting["reason"] != "PodInitializing":
            return f"Init:{waiting['reason']}"
        return f"Init:{i}/{total}"
    return None


def _initialized(obj: Obj) -> bool:
    conds = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Initialized" and c.get("status") == "True" for c in conds)


def pod_status(obj: Obj) -> str:
    """kubectl's STATUS column: a waiting/terminated reason beats the phase."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return "Terminating"
    reason = status.get("reason") or status.get("phase") or "Pending"
    init_reason = _init_reason(obj)
    if init_reason is not None and not _initialized(obj):
        return init_reason
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if state.get("waiting", {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif state.get("terminated") and reason == "Running":
            reason = state["terminated"].get("reason") or "Error"
    return str(reason)


def pod_restarts(obj: Obj) -> str:
    """kubectl's RESTARTS: init containers' restarts count until the pod is initialized, then only sidecars'."""
    status = obj.get("status") or {}
    done, sidecars = _initialized(obj), _sidecar_names(obj)
    statuses = [s for s in status.get("initContainerStatuses") or [] if not done or s.get("name") in sidecars]
    statuses += status.get("containerStatuses") or []
    return str(sum(int(s.get("restartCount", 0)) for s in statuses))


POD_COLUMNS = [
    Column("NAME", name), Column("READY", pod_ready), Column("STATUS", pod_status),
    Column("RESTARTS", pod_restarts, type="integer"), Column("AGE", age),
    Column("IP", lambda o: _dig(o, "status", "podIP"), wide=True),
    Column("NODE", lambda o: _dig(o, "spec", "nodeName"), wide=True),
]


# --- Node --------------------------------------------------------------------------------

def node_status(obj: Obj) -> str:
    conds = {c.get("type"): c.get("status") for c in (obj.get("status") or {}).get("conditions") or []}
    state = "Ready" if conds.get("Ready") == "True" else "NotReady"
    if (obj.get("spec") or {}).get("unschedulable"):
        state += ",SchedulingDisabled"
    return state


def node_roles(obj: Obj) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    roles = sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
    return ",".join(roles) or "<none>"


def node_ip(obj: Obj) -> str:
    for a in (obj.get("status") or {}).get("addresses") or []:
        if a.get("type") == "InternalIP":
            return str(a.get("address"))
    return "<none>"


NODE_COLUMNS = [
    Column("NAME", name), Column("STATUS", node_status), Column("ROLES", node_roles), Column("AGE", age),
    Column("VERSION", lambda o: _dig(o, "status", "nodeInfo", "kubeletVersion")),
    Column("INTERNAL-IP", node_ip, wide=True),
    Column("POD-CIDR", lambda o: _dig(o, "spec", "podCIDR"), wide=True),
    Column("OS-IMAGE", lambda o: _dig(o, "status", "nodeInfo", "osImage"), wide=True),
    Column("CONTAINER-RUNTIME", lambda o: _dig(o, "status", "nodeInfo", "containerRuntimeVersion"), wide=True),
]

NAMESPACE_COLUMNS = [Column("NAME", name), Column("STATUS", lambda o: _dig(o, "status", "phase")),
                     Column("AGE", age)]


def _event_object(obj: Obj) -> str:
    inv = obj.get("involvedObject") or {}
    return f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"


def event_last_seen(obj: Obj) -> str:
    ts = parse_time(obj.get("lastTimestamp") or obj.get("eventTime")
                    or (obj.get("metadata") or {}).get("creationTimestamp"))
    return human_duration((now() - ts).total_seconds()) if ts else "<unknown>"


EVENT_COLUMNS = [
    Column("LAST SEEN", event_last_seen), Column("TYPE", lambda o: _dig(o, "type")),
    Column("REASON", lambda o: _dig(o, "reason")), Column("OBJECT", _event_object),
    Column("MESSAGE", lambda o: _dig(o, "message", default="")),
]

LEASE_COLUMNS = [Column("NAME", name), Column("HOLDER", lambda o: _dig(o, "spec", "holderIdentity", default="")),
                 Column("AGE", age)]

DEFAULT_COLUMNS = [Column("NAME", name), Column("AGE", age)]


def table_rows(columns: list[Column], items: list[Obj], wide: bool) -> tuple[list[str], list[list[str]]]:
    cols = [c for c in columns if wide or not c.wide]
    return [c.name for c in cols], [[c.get(o) for c in cols] for o in items]


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    """kubectl's layout: columns separated by three spaces, left aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = ["   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
             for r in [headers, *rows]]
    return "\n".join(lines)
