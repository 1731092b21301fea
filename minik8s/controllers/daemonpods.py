"""Pure DaemonSet logic: which nodes run a daemon pod, the pod itself, what a rolling update replaces, status.

No I/O here, so it is tested without a cluster. The rules are Kubernetes' (pkg/controller/daemon):
- a node should run a daemon pod when the template's nodeName (if any), nodeSelector and required node
  affinity match it and every NoSchedule/NoExecute taint is tolerated; a pod already there may keep
  running while only NoSchedule taints are untolerated (`should_continue`);
- daemon pods get the automatic tolerations (not-ready/unreachable NoExecute; disk-, memory-, pid-pressure
  and unschedulable NoSchedule; network-unavailable for hostNetwork pods), so cordoned nodes keep them;
- the pod is placed by the scheduler through required node affinity `matchFields metadata.name In [node]`,
  which replaces the template's required node affinity (the controller has already checked it);
- a RollingUpdate (maxSurge 0) deletes old pods while at most maxUnavailable (rounded up, at least 1)
  of the nodes that should run a pod lack an available, updated one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from minik8s.api import daemonsets as dsapi
from minik8s.api import types as t
from minik8s.controllers import workloads as w
from minik8s.scheduler.affinity import NODE_NAME_FIELD, node_term_matches
from minik8s.scheduler.policy import tolerates

REVISION_HASH_LABEL = "controller-revision-hash"
NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
_NO_SCHEDULE_TOLERATED = ("node.kubernetes.io/disk-pressure", "node.kubernetes.io/memory-pressure",
                          "node.kubernetes.io/pid-pressure", "node.kubernetes.io/unschedulable")


def daemon_tolerations(spec: t.PodSpec) -> list[t.Toleration]:
    """The template's tolerations plus Kubernetes' automatic daemon ones (an equal user one is replaced)."""
    auto = [t.Toleration(key=key, operator="Exists", effect="NoExecute") for key in (NOT_READY, UNREACHABLE)]
    keys = (*_NO_SCHEDULE_TOLERATED, *((NETWORK_UNAVAILABLE,) if spec.hostNetwork else ()))
    auto += [t.Toleration(key=key, operator="Exists", effect="NoSchedule") for key in keys]

    def same(a: t.Toleration, b: t.Toleration) -> bool:
        return (a.key, a.operator, a.value, a.effect) == (b.key, b.operator, b.value, b.effect)

    return [tol for tol in spec.tolerations or [] if not any(same(tol, x) for x in auto)] + auto


def _untolerated(taints: Iterable[t.Taint], tolerations: list[t.Toleration], effects: tuple[str, ...]) -> bool:
    return any(taint.effect in effects and not any(tolerates(tol, taint) for tol in tolerations) for taint in taints)


def should_run(spec: t.PodSpec, node: t.Node) -> tuple[bool, bool]:
    """(should run a new daemon pod, may keep a running one) on `node` for a template `spec`."""
    name = node.metadata.name or ""
    labels = node.metadata.labels or {}
    if spec.nodeName and spec.nodeName != name:
        return False, False
    if any(labels.get(key) != val for key, val in (spec.nodeSelector or {}).items()):
        return False, False
    node_aff = spec.affinity.nodeAffinity if spec.affinity else None
    required = node_aff.requiredDuringSchedulingIgnoredDuringExecution if node_aff else None
    if required is not None and not any(node_term_matches(term, name, labels) for term in required.nodeSelectorTerms):
        return False, False
    taints = node.spec.taints or []
    tolerations = daemon_tolerations(spec)
    if _untolerated(taints, tolerations, ("NoSchedule", "NoExecute")):
        return False, not _untolerated(taints, tolerations, ("NoExecute",))
    return True, True


def target_node(pod: t.Pod) -> str | None:
    """The node a daemon pod is for: where it is bound, else its `matchFields metadata.name` affinity."""
    if pod.spec.nodeName:
        return pod.spec.nodeName
    node_aff = pod.spec.affinity.nodeAffinity if pod.spec.affinity else None
    required = node_aff.requiredDuringSchedulingIgnoredDuringExecution if node_aff else None
    for term in required.nodeSelectorTerms if required else []:
        for req in term.matchFields or []:
            if req.key == NODE_NAME_FIELD and req.operator == "In" and len(req.values or []) == 1:
                return (req.values or [""])[0]
    return None


def revision_hash(ds: dsapi.DaemonSet) -> str:
    """The hash that tells current pods from old ones (the Deployment's template hash)."""
    return w.template_hash(w.template_dict(ds.spec.template))


def is_updated(pod: t.Pod, hash_: str) -> bool:
    return (pod.metadata.labels or {}).get(REVISION_HASH_LABEL) == hash_


def pod_for(ds: dsapi.DaemonSet, node_name: str, hash_: str, api_version: str, kind: str) -> dict[str, Any]:
    """The daemon pod for `node_name`: template + revision label, owner, automatic tolerations, node affinity."""
    template = w.template_dict(ds.spec.template)
    meta = dict(template.get("metadata") or {})
    for drop in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "ownerReferences"):
        meta.pop(drop, None)
    meta["labels"] = {**(meta.get("labels") or {}), REVISION_HASH_LABEL: hash_}
    meta["generateName"] = f"{ds.metadata.name}-"
    meta["ownerReferences"] = [w.owner_ref(ds, api_version, kind)]
    spec = dict(template["spec"])
    spec["tolerations"] = [tol.to_dict() for tol in daemon_tolerations(ds.spec.template.spec)]
    affinity = dict(spec.get("affinity") or {})
    affinity["nodeAffinity"] = {**(affinity.get("nodeAffinity") or {}),
                                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                                    {"matchFields": [{"key": NODE_NAME_FIELD, "operator": "In",
                                                      "values": [node_name]}]}]}}
    spec["affinity"] = affinity
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def oldest_first(pods: list[t.Pod]) -> list[t.Pod]:
    """Running before pending, then oldest first (Kubernetes' podByCreationTimestampAndPhase)."""
    def key(pod: t.Pod) -> tuple[int, str]:
        phase = pod.status.phase if pod.status else None
        return (0 if phase == "Running" else 1, pod.metadata.creationTimestamp or "")
    return sorted(pods, key=key)


@dataclass
class NodePlan:
    """What `manage` does: nodes needing a pod, pods to delete (with why)."""

    create_on: list[str] = field(default_factory=list)
    delete: list[tuple[t.Pod, str]] = field(default_factory=list)


def plan_nodes(spec: t.PodSpec, nodes: list[t.Node], by_node: dict[str, list[t.Pod]]) -> NodePlan:
    """Kubernetes' podsShouldBeOnNode over every node, plus pods for nodes that no longer exist."""
    plan = NodePlan()
    for node in nodes:
        name = node.metadata.name or ""
        pods = by_node.get(name, [])
        run, keep = should_run(spec, node)
        live = [p for p in pods if not w.is_terminating(p)]
        if run and not pods:
            plan.create_on.append(name)
        elif keep:
            failed = [p for p in live if p.status and p.status.phase == "Failed"]
            plan.delete += [(p, "failed") for p in failed]
            running = oldest_first([p for p in live if p not in failed])
            plan.delete += [(p, "extra") for p in running[1:]]
        else:
            plan.delete += [(p, "not eligible") for p in live]
    known = {n.metadata.name for n in nodes}
    for name, pods in by_node.items():
        if name not in known:
            plan.delete += [(p, "node gone") for p in pods if not w.is_terminating(p)]
    return plan


def max_unavailable(ds: dsapi.DaemonSet, desired: int) -> int:
    ru = ds.spec.updateStrategy.rollingUpdate
    value = ru.maxUnavailable if ru else dsapi.DEFAULT_MAX_UNAVAILABLE
    # maxSurge is 0 (validation refuses more), so 0 unavailable would stall: Kubernetes then allows 1
    return w.scaled_value(value, desired, True) or 1


def rolling_deletes(ds: dsapi.DaemonSet, nodes: list[t.Node], by_node: dict[str, list[t.Pod]], hash_: str,
                    at: dt.datetime) -> list[t.Pod]:
    """Old pods a maxSurge-0 rolling update deletes now (Kubernetes' rollingUpdate)."""
    min_ready = ds.spec.minReadySeconds or 0
    wanted = {n.metadata.name or "" for n in nodes if should_run(ds.spec.template.spec, n)[0]}
    budget = max_unavailable(ds, len(wanted))
    unavailable = 0
    replace_now: list[t.Pod] = []  # old pods that are unavailable anyway
    candidates: list[t.Pod] = []
    for name in sorted(wanted | set(by_node)):
        live = [p for p in by_node.get(name, []) if not w.is_terminating(p)]
        new = [p for p in live if is_updated(p, hash_)]
        old = [p for p in live if not is_updated(p, hash_)]
        if len(new) > 1 or len(old) > 1 or len(new) == len(old):
            unavailable += 1  # missing, or being sorted out by `plan_nodes`
        elif new:
            unavailable += 0 if w.is_available(new[0], min_ready, at) else 1
        elif not w.is_available(old[0], min_ready, at):
            replace_now.append(old[0])
        elif unavailable < budget:
            candidates.append(old[0])
    room = min(max(0, budget - unavailable), len(candidates))
    return replace_now + candidates[:room]


def compute_status(ds: dsapi.DaemonSet, nodes: list[t.Node], by_node: dict[str, list[t.Pod]], hash_: str,
                   at: dt.datetime) -> dsapi.DaemonSetStatus:
    """Kubernetes' updateDaemonSetStatus counts, over live (not terminating) pods."""
    min_ready = ds.spec.minReadySeconds or 0
    desired = current = ready = available = updated = misscheduled = 0
    for node in nodes:
        live = oldest_first([p for p in by_node.get(node.metadata.name or "", []) if not w.is_terminating(p)])
        if not should_run(ds.spec.template.spec, node)[0]:
            misscheduled += 1 if live else 0
            continue
        desired += 1
        if not live:
            continue
        current += 1
        pod = live[0]
        if w.is_ready(pod):
            ready += 1
            available += 1 if w.is_available(pod, min_ready, at) else 0
        updated += 1 if is_updated(pod, hash_) else 0
    old = ds.status
    return dsapi.DaemonSetStatus(
        desiredNumberScheduled=desired, currentNumberScheduled=current, numberReady=ready,
        numberAvailable=available, numberUnavailable=desired - available, updatedNumberScheduled=updated,
        numberMisscheduled=misscheduled, observedGeneration=ds.metadata.generation,
        collisionCount=old.collisionCount if old else None, conditions=old.conditions if old else None)
