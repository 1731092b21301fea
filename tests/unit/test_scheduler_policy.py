"""Placement policy without a cluster: a harness feeds in-memory nodes and pods and records placements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from minik8s.api import types as t
from minik8s.api.validation import validate_pod
from minik8s.scheduler.policy import FILTERS, POLICIES, SCORERS, Placement, Policy, schedule
from minik8s.scheduler.snapshot import NodeInfo, Snapshot


def node(name: str, cpu: str = "4", mem: str = "8Gi", pods: int = 110, labels: dict[str, str] | None = None,
         taints: list[dict[str, Any]] | None = None, ready: bool = True, unschedulable: bool = False) -> t.Node:
    res = {"cpu": cpu, "memory": mem, "pods": str(pods)}
    return t.Node.model_validate({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
        "spec": {"taints": taints, "unschedulable": unschedulable or None},
        "status": {"allocatable": res, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})


def pod(name: str, cpu: str | None = None, mem: str | None = None, labels: dict[str, str] | None = None,
        node_name: str | None = None, owner: str | None = None, ns: str = "default", **spec: Any) -> t.Pod:
    requests = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v}
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": owner,
                                    "controller": True}]
    return t.Pod.model_validate({
        "metadata": meta,
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": {"requests": requests}}],
                 "nodeName": node_name, **spec}})


@dataclass
class Harness:
    """In-memory cluster state; `place` schedules a pod, accounts it on its node and records the placement."""

    nodes: list[t.Node]
    pods: list[t.Pod] = field(default_factory=list)
    policy: Policy = field(default_factory=lambda: POLICIES["default"])
    placements: list[tuple[str, str | None]] = field(default_factory=list)
    last: Placement | None = None

    def __post_init__(self) -> None:
        self.snapshot = Snapshot.build(self.nodes, self.pods)
        self._cursor: str | None = None

    def place(self, p: t.Pod) -> str | None:
        self.last = self.policy.schedule(p, self.snapshot, self._cursor)
        self.placements.append((p.metadata.name or "", self.last.node))
        if self.last.node:
            self._cursor = self.last.node
            self.snapshot.add_pod(p.model_copy(update={"spec": p.spec.model_copy(update={"nodeName": self.last.node})}))
        return self.last.node

    def message(self) -> str:
        assert self.last is not None
        return self.last.message(len(self.snapshot.nodes))


def na(*terms: dict[str, Any]) -> dict[str, Any]:
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}}}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    return {"key": key, "operator": op, **({"values": list(values)} if values else {})}


def pod_term(labels: dict[str, str], key: str = "kubernetes.io/hostname", **extra: Any) -> dict[str, Any]:
    return {"labelSelector": {"matchLabels": labels}, "topologyKey": key, **extra}


ZONES = [node("a", labels={"zone": "z1", "gen": "3"}), node("b", labels={"zone": "z1", "gen": "5"}),
         node("c", labels={"zone": "z2", "gen": "7"})]

# (id, nodes, existing pods, the pod, expected node, expected message when None)
CASES: list[tuple[str, list[t.Node], list[t.Pod], t.Pod, str | None, str | None]] = [
    ("least-allocated picks the emptiest", [node("a"), node("b")], [pod("x", cpu="2", node_name="a")],
     pod("p", cpu="1"), "b", None),
    ("ties break by name", [node("b"), node("a")], [], pod("p"), "a", None),
    ("not ready", [node("a", ready=False), node("b")], [], pod("p"), "b", None),
    ("unschedulable", [node("a", unschedulable=True)], [], pod("p"), None,
     "0/1 nodes are available: 1 node(s) were unschedulable."),
    ("insufficient memory", [node("a", mem="1Gi"), node("b", mem="1Gi"), node("c", mem="1Gi")], [],
     pod("p", mem="2Gi"), None, "0/3 nodes are available: 3 Insufficient memory."),
    ("insufficient cpu counts bound pods", [node("a", cpu="2")], [pod("x", cpu="1500m", node_name="a")],
     pod("p", cpu="1"), None, "0/1 nodes are available: 1 Insufficient cpu."),
    ("too many pods", [node("a", pods=1)], [pod("x", node_name="a")], pod("p"), None,
     "0/1 nodes are available: 1 Too many pods."),
    ("finished pods free their node", [node("a", pods=1)],
     [pod("x", node_name="a").model_copy(update={"status": t.PodStatus(phase="Succeeded")})], pod("p"), "a", None),
    ("mixed reasons", [node("a", ready=False), node("b", mem="1Gi"), node("c", mem="1Gi")], [],
     pod("p", mem="2Gi"), None, "0/3 nodes are available: 2 Insufficient memory, 1 node(s) were not ready."),
    ("node selector", ZONES, [], pod("p", nodeSelector={"zone": "z2"}), "c", None),
    ("node selector matches none", ZONES, [], pod("p", nodeSelector={"zone": "z9"}), None,
     "0/3 nodes are available: 3 node(s) didn't match Pod's node selector."),
    ("affinity In", ZONES, [], pod("p", affinity=na({"matchExpressions": [expr("zone", "In", "z2")]})), "c", None),
    ("affinity NotIn", ZONES, [], pod("p", affinity=na({"matchExpressions": [expr("zone", "NotIn", "z1")]})),
     "c", None),
    ("affinity Exists", [node("a"), node("b", labels={"gpu": "yes"})], [],
     pod("p", affinity=na({"matchExpressions": [expr("gpu", "Exists")]})), "b", None),
    ("affinity DoesNotExist", [node("a", labels={"gpu": "yes"}), node("b")], [],
     pod("p", affinity=na({"matchExpressions": [expr("gpu", "DoesNotExist")]})), "b", None),
    ("affinity Gt", ZONES, [], pod("p", affinity=na({"matchExpressions": [expr("gen", "Gt", "6")]})), "c", None),
    ("affinity Lt", ZONES, [], pod("p", affinity=na({"matchExpressions": [expr("gen", "Lt", "4")]})), "a", None),
    ("affinity terms are ORed", ZONES, [pod("x", cpu="3", node_name="a")],
     pod("p", affinity=na({"matchExpressions": [expr("gen", "In", "3")]},
                          {"matchExpressions": [expr("gen", "In", "5")]})), "b", None),
    ("affinity expressions are ANDed", ZONES, [],
     pod("p", affinity=na({"matchExpressions": [expr("zone", "In", "z1"), expr("gen", "Gt", "4")]})), "b", None),
    ("affinity matchFields metadata.name", ZONES, [],
     pod("p", affinity=na({"matchFields": [expr("metadata.name", "In", "b")]})), "b", None),
    ("affinity matches none", ZONES, [], pod("p", affinity=na({"matchExpressions": [expr("zone", "In", "z9")]})),
     None, "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."),
    ("empty affinity term matches nothing", ZONES, [], pod("p", affinity=na({})), None,
     "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."),
    ("NoSchedule taint", [node("a", taints=[{"key": "k", "effect": "NoSchedule"}]), node("b", cpu="1")], [],
     pod("p"), "b", None),
    ("NoExecute taint filters like NoSchedule", [node("a", taints=[{"key": "k", "value": "v", "effect": "NoExecute"}])],
     [], pod("p"), None, "0/1 nodes are available: 1 node(s) had untolerated taint."),
    ("NoExecute tolerated", [node("a", taints=[{"key": "k", "value": "v", "effect": "NoExecute"}])], [],
     pod("p", tolerations=[{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute"}]), "a", None),
    ("Exists toleration without key tolerates all", [node("a", taints=[{"key": "k", "effect": "NoSchedule"}])], [],
     pod("p", tolerations=[{"operator": "Exists"}]), "a", None),
    ("toleration for another effect does not help", [node("a", taints=[{"key": "k", "effect": "NoExecute"}])], [],
     pod("p", tolerations=[{"key": "k", "operator": "Exists", "effect": "NoSchedule"}]), None,
     "0/1 nodes are available: 1 node(s) had untolerated taint."),
    ("PreferNoSchedule only scores", [node("a", taints=[{"key": "k", "effect": "PreferNoSchedule"}]), node("b")], [],
     pod("p"), "b", None),
    ("PreferNoSchedule still usable", [node("a", taints=[{"key": "k", "effect": "PreferNoSchedule"}])], [],
     pod("p"), "a", None),
    ("pod affinity same host", ZONES, [pod("db", labels={"app": "db"}, node_name="b")],
     pod("p", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"})]}}),
     "b", None),
    ("pod affinity by zone", ZONES, [pod("db", labels={"app": "db"}, node_name="c"), pod("y", cpu="3", node_name="c")],
     pod("p", cpu="2", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         pod_term({"app": "db"}, "zone")]}}), None,
     "0/3 nodes are available: 1 Insufficient cpu, 2 node(s) didn't match pod affinity rules."),
    ("pod affinity ignores other namespaces", ZONES, [pod("db", labels={"app": "db"}, node_name="b", ns="other")],
     pod("p", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "db"})]}}),
     None, "0/3 nodes are available: 3 node(s) didn't match pod affinity rules."),
    ("pod affinity with namespaces list", ZONES, [pod("db", labels={"app": "db"}, node_name="b", ns="other")],
     pod("p", affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         pod_term({"app": "db"}, namespaces=["other"])]}}), "b", None),
    ("first pod of a self-affine group may land", ZONES, [],
     pod("p", labels={"app": "web"}, affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         pod_term({"app": "web"})]}}), "a", None),
    ("anti-affinity per host", ZONES, [pod("w1", labels={"app": "web"}, node_name="a"),
                                       pod("w2", labels={"app": "web"}, node_name="b")],
     pod("p", labels={"app": "web"}, affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         pod_term({"app": "web"})]}}), "c", None),
    ("anti-affinity per zone", ZONES, [pod("w1", labels={"app": "web"}, node_name="a")],
     pod("p", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         pod_term({"app": "web"}, "zone")]}}), "c", None),
    ("anti-affinity blocks all", ZONES, [pod("w1", labels={"app": "web"}, node_name="a"),
                                         pod("w2", labels={"app": "web"}, node_name="c")],
     pod("p", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         pod_term({"app": "web"}, "zone")]}}), None,
     "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."),
    ("existing pod's anti-affinity is symmetric", [node("a"), node("b", cpu="2")],
     [pod("loner", node_name="a", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         pod_term({"app": "web"})]}})], pod("p", labels={"app": "web"}), "b", None),
    ("anti-affinity matchExpressions", ZONES, [pod("w1", labels={"tier": "x"}, node_name="a"),
                                               pod("w2", labels={"tier": "y"}, node_name="b")],
     pod("p", affinity={"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
         {"labelSelector": {"matchExpressions": [expr("tier", "In", "x", "y")]},
          "topologyKey": "kubernetes.io/hostname"}]}}), "c", None),
    ("preferred node affinity", ZONES, [],
     pod("p", affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
         {"weight": 10, "preference": {"matchExpressions": [expr("zone", "In", "z1")]}},
         {"weight": 50, "preference": {"matchExpressions": [expr("gen", "Gt", "4")]}}]}}), "b", None),
    ("preferred pod affinity", ZONES, [pod("db", labels={"app": "db"}, node_name="c")],
     pod("p", affinity={"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
         {"weight": 100, "podAffinityTerm": pod_term({"app": "db"})}]}}), "c", None),
    ("preferred pod anti-affinity", ZONES, [pod("w1", labels={"app": "web"}, node_name="a"),
                                            pod("w2", labels={"app": "web"}, node_name="b")],
     pod("p", affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
         {"weight": 100, "podAffinityTerm": pod_term({"app": "web"}, "zone")}]}}), "c", None),
    ("spread by owner", [node("a"), node("b")], [pod("r1", owner="rs1", node_name="a"),
                                                 pod("o1", owner="other", node_name="b")],
     pod("p", owner="rs1"), "b", None),
    ("spread by labels without owner", [node("a"), node("b")],
     [pod("r1", labels={"app": "x"}, node_name="a"), pod("o1", labels={"app": "y"}, node_name="b")],
     pod("p", labels={"app": "x"}), "b", None),
]


@pytest.mark.parametrize("name,nodes,existing,p,want,message", CASES, ids=[c[0] for c in CASES])
def test_placement(name: str, nodes: list[t.Node], existing: list[t.Pod], p: t.Pod, want: str | None,
                   message: str | None) -> None:
    h = Harness(nodes, existing)
    assert h.place(p) == want
    if message is not None:
        assert h.message() == message


def test_every_plugin_has_a_case() -> None:
    covered = " ".join(c[0] for c in CASES).lower()
    for word in ("selector", "affinity", "taint", "memory", "cpu", "ready", "unschedulable", "anti-affinity",
                 "least-allocated", "spread", "prefernoschedule", "preferred node", "preferred pod"):
        assert word in covered
    assert set(FILTERS) >= {"NodeAffinity", "InterPodAffinity", "InterPodAntiAffinity", "TaintToleration"}
    assert set(SCORERS) >= {"LeastAllocated", "SelectorSpread", "NodeAffinity", "InterPodAffinity"}


def test_replicas_spread_evenly_and_own_placements_count() -> None:
    h = Harness([node(n, cpu="100", mem="100Gi") for n in "abc"])
    for i in range(9):
        h.place(pod(f"r{i}", cpu="100m", owner="rs"))
    per_node = {n: sum(1 for _, placed in h.placements if placed == n) for n in "abc"}
    assert per_node == {"a": 3, "b": 3, "c": 3}


def test_capacity_fills_then_reports() -> None:
    h = Harness([node("a", cpu="1"), node("b", cpu="1")])
    placed = [h.place(pod(f"p{i}", cpu="500m")) for i in range(5)]
    assert sorted(n for n in placed if n) == ["a", "a", "b", "b"] and placed[-1] is None
    assert h.message() == "0/2 nodes are available: 2 Insufficient cpu."


def test_anti_affinity_replicas_one_per_node() -> None:
    anti = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"app": "web"})]}}
    h = Harness([node(n) for n in "abc"])
    placed = [h.place(pod(f"w{i}", labels={"app": "web"}, affinity=anti)) for i in range(4)]
    assert sorted(placed[:3]) == ["a", "b", "c"]  # type: ignore[type-var]
    assert placed[3] is None
    assert h.message() == "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."


def test_round_robin_cycles_feasible_nodes_in_name_order() -> None:
    h = Harness([node("c"), node("a"), node("b", ready=False), node("d", cpu="1")], policy=POLICIES["round-robin"])
    placed = [h.place(pod(f"p{i}", cpu="600m")) for i in range(6)]
    assert placed == ["a", "c", "d", "a", "c", "a"]


def test_round_robin_reports_unschedulable() -> None:
    h = Harness([node("a", mem="1Gi")], policy=POLICIES["round-robin"])
    assert h.place(pod("p", mem="2Gi")) is None
    assert h.message() == "0/1 nodes are available: 1 Insufficient memory."


def test_schedule_with_custom_registry() -> None:
    snap = Snapshot([NodeInfo(node("a"), [pod("x", cpu="3", node_name="a")]), NodeInfo(node("b"))])
    assert schedule(pod("p", cpu="1"), snap).node == "b"
    # with no scorers, the first feasible node in name order wins
    assert schedule(pod("p", cpu="1"), snap, scorers={}).node == "a"
    assert schedule(pod("p", cpu="2"), snap, filters={}, scorers={}).node == "a"


def test_snapshot_tracks_removals_and_node_changes() -> None:
    snap = Snapshot.build([node("a", cpu="1")], [pod("x", cpu="1", node_name="a")])
    assert schedule(pod("p", cpu="1"), snap).node is None
    snap.remove_pod("default/x")
    assert schedule(pod("p", cpu="1"), snap).node == "a"
    snap.set_node(node("a", cpu="1", ready=False))
    assert schedule(pod("p", cpu="1"), snap).message(1) == "0/1 nodes are available: 1 node(s) were not ready."
    snap.remove_node("a")
    assert snap.nodes == []


def test_node_updates_reach_the_next_decision() -> None:
    """Readiness, cordoning and taints are read once per node update: each update must be seen."""
    snap = Snapshot.build([node("a", ready=False)], [])
    assert schedule(pod("p"), snap).node is None
    snap.set_node(node("a"))
    assert schedule(pod("p"), snap).node == "a"
    snap.set_node(node("a", unschedulable=True))
    assert schedule(pod("p"), snap).message(1) == "0/1 nodes are available: 1 node(s) were unschedulable."
    snap.set_node(node("a", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}]))
    assert schedule(pod("p"), snap).message(1) == "0/1 nodes are available: 1 node(s) had untolerated taint."
    snap.set_node(node("a"))
    assert schedule(pod("p"), snap).node == "a"


@pytest.mark.parametrize("affinity,path", [
    (na({"matchExpressions": [expr("k", "Near", "v")]}),
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
     ".matchExpressions[0].operator"),
    (na({"matchExpressions": [expr("k", "Gt", "x")]}),
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
     ".matchExpressions[0].values"),
    (na({"matchFields": [expr("metadata.labels", "In", "x")]}),
     "spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
     ".matchFields[0].key"),
    ({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchExpressions": [expr("app", "Gt", "1")]}, "topologyKey": "zone"}]}},
     "spec.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector"
     ".matchExpressions[0].operator"),
    ({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [pod_term({"a": "b"}, "")]}},
     "spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey"),
    ({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 0, "podAffinityTerm": pod_term({"a": "b"})}]}},
     "spec.affinity.podAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight"),
])
def test_validation_rejects_bad_affinity(affinity: dict[str, Any], path: str) -> None:
    causes = validate_pod(pod("p", affinity=affinity))
    assert [c[0] for c in causes] == [path]


def test_validation_accepts_good_affinity_and_wire_form_round_trips() -> None:
    aff = {**na({"matchExpressions": [expr("gen", "Gt", "3"), expr("gpu", "Exists")],
                 "matchFields": [expr("metadata.name", "NotIn", "x")]}),
           "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
               {"weight": 5, "podAffinityTerm": pod_term({"app": "web"}, "zone")}]}}
    p = pod("p", affinity=aff)
    assert validate_pod(p) == []
    assert p.to_dict()["spec"]["affinity"] == aff
