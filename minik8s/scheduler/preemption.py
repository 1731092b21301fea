"""Preemption, as kube-scheduler's DefaultPreemption plug-in: when a pod fits no node, find the node
where deleting pods of strictly lower priority makes it fit, disturbing as little as possible.

Per node (skipping nodes whose failure no deletion can fix, such as a selector mismatch): remove
every lower-priority pod; if the pod still does not fit, the node is no candidate. Otherwise add the
removed pods back one by one, most important first (higher priority, then longer running), those
whose eviction would break a PodDisruptionBudget before the others, keeping each that still leaves
room: what cannot be kept is the node's victims. Among candidates the node chosen has (in order) the
fewest budget violations, the lowest highest-victim priority, the lowest sum of victim priorities,
the fewest victims, and then comes first by name.

The snapshot is changed while a node is tried and restored before returning; the caller holds the
cache's lock for the whole call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from minik8s.api import types as t
from minik8s.api.podutil import selects
from minik8s.scheduler.snapshot import NodeInfo, Snapshot, pod_key

Obj = dict[str, Any]
# Makes every priority positive in the sum, as kube-scheduler adds MaxInt32+1.
PRIORITY_OFFSET = 2**31
FAR_FUTURE = "9999"

FitCheck = Callable[[t.Pod, NodeInfo, Snapshot], str | None]


def priority(pod: t.Pod) -> int:
    return pod.spec.priority or 0


def _start_time(pod: t.Pod) -> str:
    return (pod.status.startTime if pod.status else None) or pod.metadata.creationTimestamp or FAR_FUTURE


def more_important_first(pods: list[t.Pod]) -> list[t.Pod]:
    """Higher priority first; among equals, the one running longer (kube-scheduler's MoreImportantPod)."""
    return sorted(pods, key=lambda p: (-priority(p), _start_time(p)))


@dataclass
class Candidate:
    node: str
    victims: list[t.Pod] = field(default_factory=list)
    pdb_violations: int = 0

    def rank(self) -> tuple[int, int, int, int]:
        prios = [priority(v) for v in self.victims]
        return (self.pdb_violations, max(prios, default=-PRIORITY_OFFSET),
                sum(p + PRIORITY_OFFSET for p in prios), len(self.victims))


def split_by_budget(pods: list[t.Pod], pdbs: list[Obj]) -> tuple[list[t.Pod], list[t.Pod]]:
    """(violating, not violating), spending each budget's disruptionsAllowed in the order given."""
    allowed = {id(b): int((b.get("status") or {}).get("disruptionsAllowed", 0)) for b in pdbs}
    violating: list[t.Pod] = []
    fine: list[t.Pod] = []
    for pod in pods:
        wire = pod.to_dict()
        ns = pod.metadata.namespace or "default"
        broke = False
        for b in pdbs:
            if (b.get("metadata") or {}).get("namespace", "default") != ns:
                continue
            if not selects((b.get("spec") or {}).get("selector"), wire):
                continue
            if (pod.metadata.name or "") in ((b.get("status") or {}).get("disruptedPods") or {}):
                continue  # already counted by an eviction in flight
            allowed[id(b)] -= 1
            if allowed[id(b)] < 0:
                broke = True
        (violating if broke else fine).append(pod)
    return violating, fine


def _victims_on(pod: t.Pod, ni: NodeInfo, snapshot: Snapshot, fits: FitCheck, pdbs: list[Obj]) -> Candidate | None:
    lower = [p for p in ni.pods.values() if priority(p) < priority(pod)]
    if not lower:
        return None
    for p in lower:
        snapshot.remove_pod(pod_key(p))
    try:
        if fits(pod, ni, snapshot) is not None:
            return None
        violating, fine = split_by_budget(more_important_first(lower), pdbs)
        cand = Candidate(ni.name)
        for group, breaks_budget in ((violating, True), (fine, False)):
            for p in group:
                snapshot.add_pod(p)
                if fits(pod, ni, snapshot) is None:
                    continue  # reprieved: it stays
                snapshot.remove_pod(pod_key(p))
                cand.victims.append(p)
                cand.pdb_violations += int(breaks_budget)
        return cand
    finally:
        for p in lower:
            snapshot.add_pod(p)


def eligible(pod: t.Pod, snapshot: Snapshot) -> bool:
    """PreemptionPolicy Never never preempts; a pod already nominated waits while lower-priority pods on
    its node are still terminating (they are its earlier victims)."""
    if pod.spec.preemptionPolicy == "Never":
        return False
    nominated = pod.status.nominatedNodeName if pod.status else None
    ni = snapshot.get(nominated) if nominated else None
    if ni is not None and any(p.metadata.deletionTimestamp and priority(p) < priority(pod)
                              for p in ni.pods.values()):
        return False
    return True


def preempt(pod: t.Pod, snapshot: Snapshot, reasons: Mapping[str, str], fits: FitCheck,
            pdbs: list[Obj]) -> Candidate | None:
    """The best candidate node and its victims, or None. `reasons`: why each node failed (node -> reason);
    nodes whose reason is not listed as resolvable by the caller are to be left out of `reasons`."""
    best: Candidate | None = None
    for ni in snapshot.nodes:
        if ni.name not in reasons:
            continue
        cand = _victims_on(pod, ni, snapshot, fits, pdbs)
        if cand is not None and cand.victims and (best is None or cand.rank() < best.rank()):
            best = cand
    return best
