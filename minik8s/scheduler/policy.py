"""Placement as a pure function: snapshot in, node name (or the reasons why none) out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from minik8s.api import types as t
from minik8s.api.quantity import QuantityError, cpu_millis, memory_bytes

DEFAULT_MAX_PODS = 110


@dataclass
class NodeInfo:
    node: t.Node
    pods: list[t.Pod] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.node.metadata.name or ""

    def allocatable(self) -> tuple[int, int, int]:
        alloc = (self.node.status.allocatable if self.node.status else None) or {}
        return (cpu_millis(alloc.get("cpu", 0)), memory_bytes(alloc.get("memory", 0)),
                int(alloc.get("pods", DEFAULT_MAX_PODS)))

    def requested(self) -> tuple[int, int, int]:
        cpu = mem = 0
        for p in self.pods:
            c, m = pod_requests(p)
            cpu, mem = cpu + c, mem + m
        return cpu, mem, len(self.pods)


@dataclass
class Snapshot:
    nodes: list[NodeInfo]


def pod_requests(pod: t.Pod) -> tuple[int, int]:
    cpu = mem = 0
    for c in pod.spec.containers:
        req = (c.resources.requests if c.resources else None) or {}
        lim = (c.resources.limits if c.resources else None) or {}
        try:
            cpu += cpu_millis(req.get("cpu", lim.get("cpu", 0)))
            mem += memory_bytes(req.get("memory", lim.get("memory", 0)))
        except QuantityError:
            continue  # the API server rejects bad quantities; never crash the scheduler on one
    return cpu, mem


# --- filters: return None when the node fits, else a short reason ---------------------------

Filter = Callable[[t.Pod, NodeInfo], str | None]


def node_ready(pod: t.Pod, ni: NodeInfo) -> str | None:
    conds = (ni.node.status.conditions if ni.node.status else None) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conds)
    return None if ready else "node(s) were not ready"


def node_schedulable(pod: t.Pod, ni: NodeInfo) -> str | None:
    return "node(s) were unschedulable" if ni.node.spec.unschedulable else None


def fits_resources(pod: t.Pod, ni: NodeInfo) -> str | None:
    cpu, mem = pod_requests(pod)
    a_cpu, a_mem, a_pods = ni.allocatable()
    u_cpu, u_mem, u_pods = ni.requested()
    if u_pods + 1 > a_pods:
        return "Too many pods"
    if cpu and u_cpu + cpu > a_cpu:
        return "Insufficient cpu"
    if mem and u_mem + mem > a_mem:
        return "Insufficient memory"
    return None


def node_selector(pod: t.Pod, ni: NodeInfo) -> str | None:
    labels = ni.node.metadata.labels or {}
    wanted = pod.spec.nodeSelector or {}
    return None if all(labels.get(k) == v for k, v in wanted.items()) else "node(s) didn't match Pod's node selector"


def taints_tolerated(pod: t.Pod, ni: NodeInfo) -> str | None:
    for taint in ni.node.spec.taints or []:
        if taint.effect == "PreferNoSchedule":
            continue
        if not any(_tolerates(tol, taint) for tol in pod.spec.tolerations or []):
            return "node(s) had untolerated taint"
    return None


def _tolerates(tol: t.Toleration, taint: t.Taint) -> bool:
    if tol.effect and tol.effect != taint.effect:
        return False
    if tol.operator == "Exists":
        return not tol.key or tol.key == taint.key
    return tol.key == taint.key and (tol.value or "") == (taint.value or "")


FILTERS: dict[str, Filter] = {
    "NodeReady": node_ready, "NodeUnschedulable": node_schedulable, "NodeResourcesFit": fits_resources,
    "NodeSelector": node_selector, "TaintToleration": taints_tolerated,
}


# --- scorers: higher is better, 0..100 ------------------------------------------------------

Scorer = Callable[[t.Pod, NodeInfo], float]


def least_allocated(pod: t.Pod, ni: NodeInfo) -> float:
    cpu, mem = pod_requests(pod)
    a_cpu, a_mem, a_pods = ni.allocatable()
    u_cpu, u_mem, u_pods = ni.requested()
    shares = [(u_pods + 1) / a_pods if a_pods else 1.0]
    if a_cpu:
        shares.append((u_cpu + cpu) / a_cpu)
    if a_mem:
        shares.append((u_mem + mem) / a_mem)
    return 100.0 * (1.0 - sum(shares) / len(shares))


SCORERS: dict[str, tuple[Scorer, float]] = {"LeastAllocated": (least_allocated, 1.0)}


@dataclass
class Placement:
    node: str | None
    reasons: Counter[str] = field(default_factory=Counter)

    def message(self, total: int) -> str:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items()))
        return f"0/{total} nodes are available: {detail}."


def schedule(pod: t.Pod, snapshot: Snapshot, filters: dict[str, Filter] | None = None,
             scorers: dict[str, tuple[Scorer, float]] | None = None) -> Placement:
    """The best node for `pod`, ties broken by name so placements are reproducible."""
    filters = FILTERS if filters is None else filters
    scorers = SCORERS if scorers is None else scorers
    reasons: Counter[str] = Counter()
    feasible: list[NodeInfo] = []
    for ni in snapshot.nodes:
        reason = next((r for f in filters.values() if (r := f(pod, ni))), None)
        if reason:
            reasons[reason] += 1
        else:
            feasible.append(ni)
    if not feasible:
        return Placement(None, reasons)
    best = max(feasible, key=lambda ni: (sum(w * s(pod, ni) for s, w in scorers.values()), _neg(ni.name)))
    return Placement(best.name)


def _neg(name: str) -> tuple[int, ...]:
    return tuple(-ord(ch) for ch in name)
