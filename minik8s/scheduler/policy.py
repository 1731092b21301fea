"""Placement as a pure function: snapshot in, node name (or the reasons why none) out.

Filters and scorers are plug-ins in registries (`FILTERS`, `SCORERS`), as in Nomad's
scheduler. Each receives a `Cycle` (the pod being placed, the snapshot and a memo for what
is computed once per decision, like the domains where the pod's affinity terms are met) and
one `NodeInfo`. A filter returns None when the node fits, else a short reason; the reasons
are counted into "0/3 nodes are available: 2 Insufficient memory, 1 node(s) were not ready.".
A scorer returns a raw score; its optional normalizer maps the raw scores of all feasible
nodes to 0..100 before weighting, as Kubernetes' NormalizeScore does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from minik8s.api import types as t
from minik8s.scheduler import affinity as a
from minik8s.scheduler import spread
from minik8s.scheduler.snapshot import NodeInfo, OwnerKey, Snapshot, owner_key, pod_requests

__all__ = ["FILTERS", "POLICIES", "SCORERS", "Cycle", "NodeInfo", "Placement", "Policy", "ScorePlugin", "Snapshot",
           "pod_requests", "schedule"]

MAX_SCORE = 100.0
T = TypeVar("T")


class Cycle:
    """One scheduling decision: the pod, the snapshot, and values computed once for all nodes."""

    def __init__(self, pod: t.Pod, snapshot: Snapshot) -> None:
        self.pod, self.snapshot = pod, snapshot
        self.namespace = pod.metadata.namespace or "default"
        self.cpu, self.mem = pod_requests(pod)
        self.owner: OwnerKey | None = owner_key(pod)
        aff = pod.spec.affinity
        self.node_affinity = aff.nodeAffinity if aff else None
        self.pod_affinity = aff.podAffinity if aff else None
        self.pod_anti_affinity = aff.podAntiAffinity if aff else None
        self._memo: dict[str, Any] = {}
        self.feasible: list[NodeInfo] = []  # set before scoring: the nodes that passed every filter

    def memo(self, name: str, compute: Callable[[Cycle], T]) -> T:
        if name not in self._memo:
            self._memo[name] = compute(self)
        return self._memo[name]  # type: ignore[no-any-return]


Filter = Callable[[Cycle, NodeInfo], str | None]
Scorer = Callable[[Cycle, NodeInfo], float]
Normalizer = Callable[[list[float]], list[float]]


# --- filters ---------------------------------------------------------------------------------

def node_ready(c: Cycle, ni: NodeInfo) -> str | None:
    return None if ni.ready else "node(s) were not ready"


UNSCHEDULABLE_TAINT = t.Taint(key="node.kubernetes.io/unschedulable", effect="NoSchedule")


def node_schedulable(c: Cycle, ni: NodeInfo) -> str | None:
    """Kubernetes' NodeUnschedulable: a pod that tolerates the unschedulable taint (daemon pods do) still fits."""
    if not ni.unschedulable or any(tolerates(tol, UNSCHEDULABLE_TAINT) for tol in c.pod.spec.tolerations or []):
        return None
    return "node(s) were unschedulable"


def fits_resources(c: Cycle, ni: NodeInfo) -> str | None:
    a_cpu, a_mem, a_pods = ni.alloc
    if len(ni.pods) + 1 > a_pods:
        return "Too many pods"
    if c.cpu and ni.cpu + c.cpu > a_cpu:
        return "Insufficient cpu"
    if c.mem and ni.mem + c.mem > a_mem:
        return "Insufficient memory"
    return None


def node_selector(c: Cycle, ni: NodeInfo) -> str | None:
    wanted = c.pod.spec.nodeSelector
    if not wanted:
        return None
    labels = ni.labels
    return None if all(labels.get(k) == v for k, v in wanted.items()) else "node(s) didn't match Pod's node selector"


def node_affinity(c: Cycle, ni: NodeInfo) -> str | None:
    req = c.node_affinity.requiredDuringSchedulingIgnoredDuringExecution if c.node_affinity else None
    if req is None:
        return None
    if any(a.node_term_matches(term, ni.name, ni.labels) for term in req.nodeSelectorTerms):
        return None
    return "node(s) didn't match Pod's node affinity/selector"


def _untolerated(c: Cycle, taint: t.Taint) -> bool:
    return not any(tolerates(tol, taint) for tol in c.pod.spec.tolerations or [])


def taints_tolerated(c: Cycle, ni: NodeInfo) -> str | None:
    """NoSchedule and NoExecute taints both keep a pod off the node unless tolerated."""
    for taint in ni.taints:
        if taint.effect in ("NoSchedule", "NoExecute") and _untolerated(c, taint):
            return "node(s) had untolerated taint"
    return None


def tolerates(tol: t.Toleration, taint: t.Taint) -> bool:
    if tol.effect and tol.effect != taint.effect:
        return False
    if tol.operator == "Exists":
        return not tol.key or tol.key == taint.key
    return tol.key == taint.key and (tol.value or "") == (taint.value or "")


def _required_affinity(c: Cycle) -> list[set[a.Domain]] | None:
    """Per required term, the domains holding a selected pod; None when the pod may go anywhere it matches itself.

    Kubernetes lets the first pod of a group that selects itself land when no pod matches yet.
    """
    terms = c.pod_affinity.requiredDuringSchedulingIgnoredDuringExecution if c.pod_affinity else None
    domains = [a.matching_domains(term, c.namespace, c.snapshot) for term in terms or []]
    if not any(domains) and all(a.term_matches_pod(term, c.namespace, c.pod, c.snapshot) for term in terms or []):
        return None
    return domains


def pod_affinity(c: Cycle, ni: NodeInfo) -> str | None:
    terms = c.pod_affinity.requiredDuringSchedulingIgnoredDuringExecution if c.pod_affinity else None
    if not terms:
        return None
    domains = c.memo("affinity", _required_affinity)
    for i, term in enumerate(terms):
        dom = a.domain_of(ni, term.topologyKey)
        if dom is None or (domains is not None and dom not in domains[i]):
            return "node(s) didn't match pod affinity rules"
    return None


def _forbidden_by_own_terms(c: Cycle) -> set[a.Domain]:
    terms = c.pod_anti_affinity.requiredDuringSchedulingIgnoredDuringExecution if c.pod_anti_affinity else None
    found: set[a.Domain] = set()
    for term in terms or []:
        found |= a.matching_domains(term, c.namespace, c.snapshot)
    return found


def _forbidden_by_existing(c: Cycle) -> set[a.Domain]:
    """Domains where an existing pod's required anti-affinity selects the new pod (the symmetric rule)."""
    found: set[a.Domain] = set()
    snap = c.snapshot
    for key, pod in snap.anti_affinity_pods.items():
        ni = snap.get(snap.node_of(key) or "")
        anti = pod.spec.affinity.podAntiAffinity if pod.spec.affinity else None
        if ni is None or anti is None:
            continue
        for term in anti.requiredDuringSchedulingIgnoredDuringExecution or []:
            dom = a.domain_of(ni, term.topologyKey)
            if dom is not None and a.term_matches_pod(term, pod.metadata.namespace or "default", c.pod, snap):
                found.add(dom)
    return found


def _in_any(ni: NodeInfo, domains: set[a.Domain]) -> bool:
    return any(ni.labels.get(key) == value for key, value in domains)


def pod_anti_affinity(c: Cycle, ni: NodeInfo) -> str | None:
    if c.pod_anti_affinity and c.pod_anti_affinity.requiredDuringSchedulingIgnoredDuringExecution:
        if _in_any(ni, c.memo("anti-own", _forbidden_by_own_terms)):
            return "node(s) didn't match pod anti-affinity rules"
    if c.snapshot.anti_affinity_pods and _in_any(ni, c.memo("anti-existing", _forbidden_by_existing)):
        return "node(s) didn't satisfy existing pods anti-affinity rules"
    return None


def _affinity_ok(c: Cycle) -> Callable[[NodeInfo], bool]:
    return lambda ni: node_selector(c, ni) is None and node_affinity(c, ni) is None


def _taints_ok(c: Cycle) -> Callable[[NodeInfo], bool]:
    return lambda ni: taints_tolerated(c, ni) is None


def _spread_filter_state(c: Cycle) -> spread.SpreadState:
    cons = spread.constraints(c.pod, "DoNotSchedule")
    return spread.count(c.pod, c.snapshot.nodes, cons, _affinity_ok(c), _taints_ok(c))


def topology_spread(c: Cycle, ni: NodeInfo) -> str | None:
    return spread.filter_node(c.memo("spread-filter", _spread_filter_state), ni)


def _has_hard_spread(c: Cycle) -> bool:
    return any(x.whenUnsatisfiable == "DoNotSchedule" for x in c.pod.spec.topologySpreadConstraints or [])


def _has_selector(c: Cycle) -> bool:
    return bool(c.pod.spec.nodeSelector)


def _has_required_node_affinity(c: Cycle) -> bool:
    return bool(c.node_affinity and c.node_affinity.requiredDuringSchedulingIgnoredDuringExecution)


def _has_required_pod_affinity(c: Cycle) -> bool:
    return bool(c.pod_affinity and c.pod_affinity.requiredDuringSchedulingIgnoredDuringExecution)


def _anti_affinity_in_play(c: Cycle) -> bool:
    own = c.pod_anti_affinity and c.pod_anti_affinity.requiredDuringSchedulingIgnoredDuringExecution
    return bool(own or c.snapshot.anti_affinity_pods)


# A filter listed here runs only for pods its predicate holds for: for the others it passes every node
# (Kubernetes' PreFilter returning Skip), and a decision need not call it once per node.
APPLIES: dict[Filter, Callable[[Cycle], bool]] = {
    node_selector: _has_selector, node_affinity: _has_required_node_affinity,
    pod_affinity: _has_required_pod_affinity, pod_anti_affinity: _anti_affinity_in_play,
    topology_spread: _has_hard_spread,
}

# Cheap, common checks first: a node is reported under the first filter it fails.
FILTERS: dict[str, Filter] = {
    "NodeUnschedulable": node_schedulable, "NodeReady": node_ready, "NodeSelector": node_selector,
    "NodeAffinity": node_affinity, "TaintToleration": taints_tolerated, "NodeResourcesFit": fits_resources,
    "InterPodAffinity": pod_affinity, "InterPodAntiAffinity": pod_anti_affinity,
    "PodTopologySpread": topology_spread,
}

# Failing one of these cannot be fixed by removing pods from the node, so preemption skips the node
# (kube-scheduler's UnschedulableAndUnresolvable).
UNRESOLVABLE = frozenset({
    "node(s) were not ready", "node(s) were unschedulable", "node(s) didn't match Pod's node selector",
    "node(s) didn't match Pod's node affinity/selector", "node(s) had untolerated taint",
    "node(s) didn't match pod affinity rules", spread.MISSING_LABEL_REASON})


# --- scorers ---------------------------------------------------------------------------------

def least_allocated(c: Cycle, ni: NodeInfo) -> float:
    a_cpu, a_mem, a_pods = ni.alloc
    total = (len(ni.pods) + 1) / a_pods if a_pods else 1.0
    n = 1
    if a_cpu:
        total, n = total + (ni.cpu + c.cpu) / a_cpu, n + 1
    if a_mem:
        total, n = total + (ni.mem + c.mem) / a_mem, n + 1
    return MAX_SCORE * (1.0 - total / n)


def owner_spread(c: Cycle, ni: NodeInfo) -> float:
    """Raw: pods of the same owner already on the node (normalized so fewer is better)."""
    return float(ni.owners.get(c.owner, 0)) if c.owner is not None else 0.0


def preferred_node_affinity(c: Cycle, ni: NodeInfo) -> float:
    prefs = c.node_affinity.preferredDuringSchedulingIgnoredDuringExecution if c.node_affinity else None
    return float(sum(p.weight for p in prefs or [] if a.node_term_matches(p.preference, ni.name, ni.labels)))


def _preferred_pod_domains(c: Cycle) -> dict[a.Domain, float]:
    terms: list[tuple[int, t.PodAffinityTerm]] = []
    for rules, sign in ((c.pod_affinity, 1), (c.pod_anti_affinity, -1)):
        for wt in (rules.preferredDuringSchedulingIgnoredDuringExecution if rules else None) or []:
            terms.append((sign * wt.weight, wt.podAffinityTerm))
    return a.weighted_domains(terms, c.namespace, c.snapshot)


def preferred_pod_affinity(c: Cycle, ni: NodeInfo) -> float:
    if not (c.pod_affinity and c.pod_affinity.preferredDuringSchedulingIgnoredDuringExecution) and \
            not (c.pod_anti_affinity and c.pod_anti_affinity.preferredDuringSchedulingIgnoredDuringExecution):
        return 0.0
    domains = c.memo("preferred-pod", _preferred_pod_domains)
    return sum(score for (key, value), score in domains.items() if ni.labels.get(key) == value)


def prefer_no_schedule(c: Cycle, ni: NodeInfo) -> float:
    """Raw: untolerated PreferNoSchedule taints (normalized so fewer is better)."""
    return float(sum(1 for taint in ni.taints if taint.effect == "PreferNoSchedule" and _untolerated(c, taint)))


NO_SPREAD_KEY = -1.0  # a node missing a ScheduleAnyway constraint's key: 0 after normalizing


def _spread_score_state(c: Cycle) -> tuple[spread.SpreadState, list[int]]:
    cons = spread.constraints(c.pod, "ScheduleAnyway")
    state = spread.count(c.pod, c.snapshot.nodes, cons, _affinity_ok(c), _taints_ok(c))
    with_keys = [ni for ni in c.feasible if all(x.key in ni.labels for x in cons)]
    sizes = [len({ni.labels[x.key] for ni in with_keys}) for x in cons]
    return state, sizes


def spread_score(c: Cycle, ni: NodeInfo) -> float:
    state, sizes = c.memo("spread-score", _spread_score_state)
    raw = spread.score_node(state, ni, sizes)
    return NO_SPREAD_KEY if raw is None else raw


def spread_normalize(raw: list[float]) -> list[float]:
    return spread.normalize([None if s == NO_SPREAD_KEY else s for s in raw])


def _no_soft_spread(c: Cycle) -> bool:
    return not any(x.whenUnsatisfiable == "ScheduleAnyway" for x in c.pod.spec.topologySpreadConstraints or [])


def scale_to_max(raw: list[float]) -> list[float]:
    top = max(raw, default=0.0)
    return [MAX_SCORE * s / top for s in raw] if top > 0 else [0.0] * len(raw)


def fewer_is_better(raw: list[float]) -> list[float]:
    top = max(raw, default=0.0)
    return [MAX_SCORE * (top - s) / top for s in raw] if top > 0 else [MAX_SCORE] * len(raw)


def min_max(raw: list[float]) -> list[float]:
    lo, hi = min(raw, default=0.0), max(raw, default=0.0)
    return [MAX_SCORE * (s - lo) / (hi - lo) for s in raw] if hi > lo else [0.0] * len(raw)


@dataclass(frozen=True)
class ScorePlugin:
    """`uniform`: for a pod it holds for, the plug-in gives every node the same score, so the decision
    skips it (a constant added to every node never changes which node is best)."""

    score: Scorer
    weight: float = 1.0
    normalize: Normalizer | None = None
    uniform: Callable[[Cycle], bool] | None = None


def _no_preferred_node_affinity(c: Cycle) -> bool:
    return not (c.node_affinity and c.node_affinity.preferredDuringSchedulingIgnoredDuringExecution)


def _no_node_tainted(c: Cycle) -> bool:
    return not any(ni.taints for ni in c.snapshot.nodes)


def _no_preferred_pod_affinity(c: Cycle) -> bool:
    return not (c.pod_affinity and c.pod_affinity.preferredDuringSchedulingIgnoredDuringExecution) and \
        not (c.pod_anti_affinity and c.pod_anti_affinity.preferredDuringSchedulingIgnoredDuringExecution)


# Weights follow the Kubernetes defaults (NodeAffinity 2, InterPodAffinity 2, TaintToleration 3).
SCORERS: dict[str, ScorePlugin] = {
    "LeastAllocated": ScorePlugin(least_allocated, 1.0),
    "SelectorSpread": ScorePlugin(owner_spread, 1.0, fewer_is_better),
    "NodeAffinity": ScorePlugin(preferred_node_affinity, 2.0, scale_to_max, _no_preferred_node_affinity),
    "InterPodAffinity": ScorePlugin(preferred_pod_affinity, 2.0, min_max, _no_preferred_pod_affinity),
    "TaintToleration": ScorePlugin(prefer_no_schedule, 3.0, fewer_is_better, _no_node_tainted),
    "PodTopologySpread": ScorePlugin(spread_score, 2.0, spread_normalize, _no_soft_spread),
}


# --- the decision ----------------------------------------------------------------------------

@dataclass
class Placement:
    node: str | None
    reasons: Counter[str] = field(default_factory=Counter)
    failed: dict[str, str] = field(default_factory=dict)  # node -> the first filter it failed

    def message(self, total: int) -> str:
        detail = ", ".join(f"{n} {r}" for r, n in sorted(self.reasons.items()))
        return f"0/{total} nodes are available: {detail}."


@dataclass(frozen=True)
class Policy:
    """Filters, then either the best-scoring node or (round_robin) the next feasible node in name order."""

    filters: Mapping[str, Filter] = field(default_factory=lambda: FILTERS)
    scorers: Mapping[str, ScorePlugin] = field(default_factory=lambda: SCORERS)
    round_robin: bool = False

    def schedule(self, pod: t.Pod, snapshot: Snapshot, last: str | None = None) -> Placement:
        """`last`: the node round-robin placed the previous pod on (ignored by scoring)."""
        c = Cycle(pod, snapshot)
        filters = [f for f in self.filters.values() if f not in APPLIES or APPLIES[f](c)]
        reasons: Counter[str] = Counter()
        failed: dict[str, str] = {}
        feasible: list[NodeInfo] = []
        for ni in snapshot.nodes:
            for f in filters:
                reason = f(c, ni)
                if reason:
                    reasons[reason] += 1
                    failed[ni.name] = reason
                    break
            else:
                feasible.append(ni)
        if not feasible:
            return Placement(None, reasons, failed)
        c.feasible = feasible
        if self.round_robin:
            after = next((ni for ni in feasible if last is not None and ni.name > last), feasible[0])
            return Placement(after.name)
        return Placement(feasible[_best(c, feasible, self.scorers)].name)


def fits(pod: t.Pod, ni: NodeInfo, snapshot: Snapshot, filters: Mapping[str, Filter] | None = None) -> str | None:
    """The first filter `ni` fails for `pod` (None: it fits), for preemption's what-if checks."""
    c = Cycle(pod, snapshot)
    for f in (FILTERS if filters is None else filters).values():
        if f in APPLIES and not APPLIES[f](c):
            continue
        reason = f(c, ni)
        if reason:
            return reason
    return None


def _best(c: Cycle, feasible: list[NodeInfo], scorers: Mapping[str, ScorePlugin]) -> int:
    """Index of the highest weighted score; ties go to the first node in name order, so results reproduce."""
    if len(feasible) == 1:
        return 0
    totals = [0.0] * len(feasible)
    for plugin in scorers.values():
        if plugin.uniform is not None and plugin.uniform(c):
            continue  # every node gets the same score: it cannot change which node is best
        raw = [plugin.score(c, ni) for ni in feasible]
        if plugin.normalize is not None:
            raw = plugin.normalize(raw)
        w = plugin.weight
        for i, s in enumerate(raw):
            totals[i] += w * s
    best = 0
    for i in range(1, len(totals)):
        if totals[i] > totals[best]:
            best = i
    return best


POLICIES: dict[str, Policy] = {"default": Policy(), "round-robin": Policy(scorers={}, round_robin=True)}


def schedule(pod: t.Pod, snapshot: Snapshot, filters: Mapping[str, Filter] | None = None,
             scorers: Mapping[str, ScorePlugin] | None = None) -> Placement:
    """The best node for `pod` under the given (default: all registered) filters and scorers."""
    return Policy(FILTERS if filters is None else filters, SCORERS if scorers is None else scorers).schedule(
        pod, snapshot)
