"""PodTopologySpread (filter and score), the priority queue and preemption's victim selection, with the
scheduler's in-memory harness (no cluster)."""

from __future__ import annotations

from typing import Any

import pytest

from minik8s.api import types as t
from minik8s.api.validation import validate_pod
from minik8s.scheduler import preemption
from minik8s.scheduler.policy import UNRESOLVABLE, fits
from minik8s.scheduler.queue import PriorityWorkQueue
from minik8s.scheduler.snapshot import Snapshot
from tests.unit.test_scheduler_policy import Harness, node, pod

APP = {"app": "web"}


def spread(max_skew: int = 1, key: str = "kubernetes.io/hostname", when: str = "DoNotSchedule",
           **extra: Any) -> dict[str, Any]:
    return {"maxSkew": max_skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": APP}, **extra}


def spread_pod(name: str, *constraints: dict[str, Any], labels: dict[str, str] | None = None, **kw: Any) -> t.Pod:
    return pod(name, labels=labels if labels is not None else APP,
               topologySpreadConstraints=list(constraints) or [spread()], **kw)


# --- filter ----------------------------------------------------------------------------------

def test_six_replicas_max_skew_one_land_two_per_node() -> None:
    h = Harness([node("a"), node("b"), node("c")])
    for i in range(6):
        assert h.place(spread_pod(f"w{i}")) is not None
    per_node: dict[str | None, int] = {}
    for _, n in h.placements:
        per_node[n] = per_node.get(n, 0) + 1
    assert per_node == {"a": 2, "b": 2, "c": 2}


def test_skew_blocks_the_crowded_node_even_when_it_scores_best() -> None:
    # b and c are full for cpu except a little; a has 2 matching pods: a would make skew 3-0 > 1
    h = Harness([node("a", cpu="8"), node("b", cpu="1"), node("c", cpu="1")],
                [pod("x1", labels=APP, node_name="a"), pod("x2", labels=APP, node_name="a"),
                 pod("hog-b", cpu="900m", node_name="b"), pod("hog-c", cpu="900m", node_name="c")])
    assert h.place(spread_pod("new", cpu="500m")) is None
    assert "2 Insufficient cpu" in h.message()
    assert "1 node(s) didn't match pod topology spread constraints" in h.message()


def test_node_without_the_topology_key_is_refused_with_missing_label_reason() -> None:
    h = Harness([node("a", labels={"zone": "z1"}), node("b")])
    assert h.place(spread_pod("p", spread(key="zone"))) == "a"
    assert h.place(spread_pod("q", spread(key="zone"))) == "a"  # one domain only: skew stays 0
    h2 = Harness([node("b")])
    assert h2.place(spread_pod("p", spread(key="zone"))) is None
    assert "(missing required label)" in h2.message()


def test_zone_spread_by_any_node_label() -> None:
    nodes = [node("a", labels={"zone": "z1"}), node("b", labels={"zone": "z1"}), node("c", labels={"zone": "z2"})]
    h = Harness(nodes, [pod("e1", labels=APP, node_name="a")])
    # z1 has 1, z2 has 0: the next must go to z2 (c), then either zone
    assert h.place(spread_pod("p", spread(key="zone"))) == "c"


def test_min_domains_treats_missing_domains_as_zero() -> None:
    # two nodes, minDomains 3: the global minimum is 0, so each node takes at most maxSkew matching pods
    h = Harness([node("a"), node("b")])
    c = spread(minDomains=3)
    assert h.place(spread_pod("p1", c)) is not None
    assert h.place(spread_pod("p2", c)) is not None
    assert h.place(spread_pod("p3", c)) is None
    h2 = Harness([node("a"), node("b")])  # without minDomains the third fits (skew 2-1 = 1)
    for i in range(3):
        assert h2.place(spread_pod(f"p{i}", spread())) is not None


def test_pods_not_selected_or_in_other_namespaces_or_terminating_do_not_count() -> None:
    gone = pod("gone", labels=APP, node_name="a")
    gone.metadata.deletionTimestamp = "2026-01-01T00:00:00Z"
    h = Harness([node("a"), node("b")], [pod("other", labels={"app": "db"}, node_name="a"),
                                         pod("elsewhere", labels=APP, node_name="a", ns="other"), gone,
                                         pod("one", labels=APP, node_name="b")])
    assert h.place(spread_pod("p")) == "a"


def test_node_affinity_policy_honor_ignores_nodes_the_pod_cannot_use() -> None:
    nodes = [node("a", labels={"disk": "ssd"}), node("b", labels={"disk": "ssd"}), node("c")]
    existing = [pod("e1", labels=APP, node_name="a"), pod("e2", labels=APP, node_name="b")]
    # Honor (default): c is outside the pod's nodeSelector, so its 0 does not set the minimum
    h = Harness(nodes, existing)
    assert h.place(spread_pod("p", nodeSelector={"disk": "ssd"})) == "a"
    # Ignore: c counts with 0, so a and b (1 each) plus self would be skew 2 > 1
    h2 = Harness(nodes, existing)
    assert h2.place(spread_pod("p", spread(nodeAffinityPolicy="Ignore"), nodeSelector={"disk": "ssd"})) is None


def test_node_taints_policy_honor_skips_tainted_domains() -> None:
    taint = [{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]
    nodes = [node("a"), node("b"), node("t", taints=taint)]
    existing = [pod("e1", labels=APP, node_name="a"), pod("e2", labels=APP, node_name="b")]
    # Ignore (default): t counts with 0, so neither a nor b may take another
    assert Harness(nodes, existing).place(spread_pod("p")) is None
    assert Harness(nodes, existing).place(spread_pod("p", spread(nodeTaintsPolicy="Honor"))) == "a"


def test_match_label_keys_spreads_each_revision_separately() -> None:
    c = spread(matchLabelKeys=["rev"])
    old = [pod("o1", labels={**APP, "rev": "1"}, node_name="a"), pod("o2", labels={**APP, "rev": "1"}, node_name="a")]
    nodes = [node("a"), node("b", ready=False)]  # b still is a domain (with 0 pods), but no place to go
    # rev 2 pods count only rev 2 pods: a takes one (skew 1), then no more
    h = Harness(nodes, old)
    assert h.place(spread_pod("n1", c, labels={**APP, "rev": "2"})) == "a"
    assert h.place(spread_pod("n2", c, labels={**APP, "rev": "2"})) is None
    # without matchLabelKeys the rev 1 pods count: a would have skew 3
    assert Harness(nodes, old).place(spread_pod("n1", spread(), labels={**APP, "rev": "2"})) is None


# --- score -----------------------------------------------------------------------------------

def test_schedule_anyway_prefers_the_emptier_domain_but_never_refuses() -> None:
    h = Harness([node("a"), node("b")], [pod("e1", labels=APP, node_name="a"), pod("e2", labels=APP, node_name="a")])
    assert h.place(spread_pod("p", spread(when="ScheduleAnyway"))) == "b"
    full = Harness([node("a"), node("b", ready=False)], [pod("e1", labels=APP, node_name="a")])
    assert full.place(spread_pod("p", spread(when="ScheduleAnyway"))) == "a"


def test_schedule_anyway_outweighs_least_allocated() -> None:
    # b is busier (cpu) but holds no matching pod; spread (weight 2) wins over LeastAllocated (weight 1)
    h = Harness([node("a", cpu="8"), node("b", cpu="8")],
                [pod("m1", labels=APP, node_name="a"), pod("hog", cpu="3", node_name="b")])
    assert h.place(spread_pod("p", spread(when="ScheduleAnyway"))) == "b"


# --- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize(("constraint", "field", "text"), [
    (spread(max_skew=0), "maxSkew", "must be greater than zero"),
    (spread(key=""), "topologyKey", "can not be empty"),
    (spread(when="ScheduleAnyway", minDomains=2), "minDomains", "whenUnsatisfiable=DoNotSchedule"),
    (spread(minDomains=0), "minDomains", "must be greater than zero"),
    (spread(matchLabelKeys=["app"]), "matchLabelKeys[0]", "exists in both"),
])
def test_invalid_constraints_are_refused_naming_the_field(constraint: dict[str, Any], field: str, text: str) -> None:
    causes = validate_pod(spread_pod("p", constraint))
    assert any(path == f"spec.topologySpreadConstraints[0].{field}" and text in msg for path, msg in causes), causes


def test_duplicate_key_and_action_is_refused() -> None:
    causes = validate_pod(spread_pod("p", spread(), spread(max_skew=2)))
    assert any(path == "spec.topologySpreadConstraints[1]" and "Duplicate" in msg for path, msg in causes)


def test_unknown_constraint_fields_and_values_are_refused() -> None:
    with pytest.raises(ValueError, match="whenUnsatisfiable"):
        spread_pod("p", spread(when="Sometimes"))
    with pytest.raises(ValueError, match="nodeTaintsPolicy"):
        spread_pod("p", spread(nodeTaintsPolicy="Maybe"))


# --- priority queue ----------------------------------------------------------------------------

def test_queue_hands_out_highest_priority_first_fifo_among_equals() -> None:
    prio = {"low": 0, "high": 1000, "mid": 10, "mid2": 10}
    q = PriorityWorkQueue(lambda key: prio[key])
    for key in ("low", "mid", "high", "mid2"):
        q.add(key)
    got = []
    for _ in range(4):
        key = q.get(timeout=0)
        assert key is not None
        got.append(key)
        q.done(key)
    assert got == ["high", "mid", "mid2", "low"]
    assert q.get(timeout=0) is None


# --- preemption ----------------------------------------------------------------------------------

def prio_pod(name: str, priority: int, cpu: str, node_name: str | None = None, labels: dict[str, str] | None = None,
             start: str = "2026-01-01T00:00:00Z", **spec: Any) -> t.Pod:
    p = pod(name, cpu=cpu, node_name=node_name, labels=labels, priority=priority, **spec)
    p.status = t.PodStatus(phase="Running", startTime=start)
    return p


def run_preemption(snapshot: Snapshot, p: t.Pod, pdbs: list[dict[str, Any]] | None = None
                   ) -> preemption.Candidate | None:
    from minik8s.scheduler.policy import POLICIES
    placement = POLICIES["default"].schedule(p, snapshot)
    assert placement.node is None
    resolvable = {n: r for n, r in placement.failed.items() if r not in UNRESOLVABLE}
    return preemption.preempt(p, snapshot, resolvable, fits, pdbs or [])


def names(cand: preemption.Candidate | None) -> list[str]:
    assert cand is not None
    return sorted(v.metadata.name or "" for v in cand.victims)


def test_picks_the_node_whose_victims_have_the_lowest_priority_and_restores_the_snapshot() -> None:
    snap = Snapshot.build([node("a", cpu="2"), node("b", cpu="2")],
                          [prio_pod("a-low", 10, "1500m", "a"), prio_pod("b-mid", 100, "1500m", "b")])
    before = {ni.name: ni.requested() for ni in snap.nodes}
    cand = run_preemption(snap, prio_pod("high", 1000, "1"))
    assert cand is not None and cand.node == "a" and names(cand) == ["a-low"]
    assert {ni.name: ni.requested() for ni in snap.nodes} == before


def test_only_strictly_lower_priority_pods_are_victims() -> None:
    snap = Snapshot.build([node("a", cpu="2")], [prio_pod("same", 1000, "1500m", "a")])
    assert run_preemption(snap, prio_pod("high", 1000, "1")) is None


def test_fewest_victims_and_reprieve_the_more_important() -> None:
    # a: two small low pods (need both gone); b: one bigger low pod of the same priority -> b (fewer victims)
    snap = Snapshot.build([node("a", cpu="2"), node("b", cpu="2")],
                          [prio_pod("a1", 5, "800m", "a"), prio_pod("a2", 5, "800m", "a"),
                           prio_pod("b1", 5, "1800m", "b")])
    cand = run_preemption(snap, prio_pod("high", 100, "1300m"))
    assert cand is not None and cand.node == "b" and names(cand) == ["b1"]
    # on one node, the higher-priority pod is reprieved when one victim is enough
    snap2 = Snapshot.build([node("a", cpu="2")], [prio_pod("lo", 1, "900m", "a"), prio_pod("mid", 50, "900m", "a")])
    assert names(run_preemption(snap2, prio_pod("high", 100, "1"))) == ["lo"]


def test_pdb_violations_are_avoided_when_another_node_works() -> None:
    guarded = {"app": "db"}
    snap = Snapshot.build([node("a", cpu="2"), node("b", cpu="2")],
                          [prio_pod("a-db", 1, "1500m", "a", labels=guarded), prio_pod("b-x", 5, "1500m", "b")])
    pdb = {"metadata": {"name": "db", "namespace": "default"}, "spec": {"selector": {"matchLabels": guarded}},
           "status": {"disruptionsAllowed": 0}}
    cand = run_preemption(snap, prio_pod("high", 100, "1"), [pdb])
    assert cand is not None and cand.node == "b" and cand.pdb_violations == 0
    # when the budget allows it, the lower priority victim on a wins again
    pdb["status"] = {"disruptionsAllowed": 1}
    cand = run_preemption(snap, prio_pod("high", 100, "1"), [pdb])
    assert cand is not None and cand.node == "a"


def test_unresolvable_nodes_and_never_policy_do_not_preempt() -> None:
    snap = Snapshot.build([node("a", cpu="2")], [prio_pod("low", 1, "1500m", "a")])
    assert run_preemption(snap, prio_pod("high", 100, "1", nodeSelector={"disk": "ssd"})) is None
    never = prio_pod("high", 100, "1", preemptionPolicy="Never")
    assert not preemption.eligible(never, snap)
    assert preemption.eligible(prio_pod("high", 100, "1"), snap)


def test_nominated_pod_waits_while_its_victims_terminate() -> None:
    victim = prio_pod("low", 1, "1500m", "a")
    victim.metadata.deletionTimestamp = "2026-01-01T00:00:00Z"
    snap = Snapshot.build([node("a", cpu="2")], [victim])
    waiting = prio_pod("high", 100, "1")
    waiting.status = t.PodStatus(phase="Pending", nominatedNodeName="a")
    assert not preemption.eligible(waiting, snap)


def test_spread_failure_is_resolvable_by_preemption() -> None:
    snap = Snapshot.build([node("a", cpu="2"), node("b", cpu="2")],
                          [prio_pod("m1", 1, "100m", "a", labels=APP), prio_pod("m2", 1, "100m", "a", labels=APP),
                           prio_pod("hog", 1000, "2", "b")])
    p = prio_pod("p", 100, "100m", labels=APP, topologySpreadConstraints=[spread()])
    cand = run_preemption(snap, p)
    assert cand is not None and cand.node == "a" and names(cand) == ["m1", "m2"]


def test_spread_normalize_as_kube_scheduler() -> None:
    from minik8s.scheduler import spread as s

    assert s.normalize([0.0, 2.0, None]) == [100.0, 0.0, 0.0]
    assert s.normalize([3.0, 5.0]) == [100.0, 60.0]  # 100 * (5 + 3 - s) // 5
    assert s.normalize([0.0, 0.0, None]) == [100.0, 100.0, 0.0]
