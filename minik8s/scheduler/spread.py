"""PodTopologySpread, as kube-scheduler's plug-in of that name.

For each constraint, matching pods (the pod's namespace, selected by `labelSelector` plus the pod's
own values of `matchLabelKeys`, not being deleted) are counted per topology domain: the values of
`topologyKey` among the eligible nodes. A node is eligible when it has every constraint's key, and
(by the policies' defaults) matches the pod's nodeSelector/required node affinity
(`nodeAffinityPolicy: Honor`) whatever its taints (`nodeTaintsPolicy: Ignore`).

- DoNotSchedule (filter): placing the pod in the node's domain must keep
  `count(domain) + self - min(count over domains) <= maxSkew`; the global minimum is 0 while fewer
  than `minDomains` domains exist. A node without the key fails.
- ScheduleAnyway (score): per node, `sum(count(domain) * log(domains + 2) + maxSkew - 1)` over the
  constraints, normalized so the lowest count scores 100; nodes without a key score 0.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from minik8s.api import types as t
from minik8s.scheduler import affinity as a
from minik8s.scheduler.snapshot import NodeInfo

HOSTNAME_KEY = "kubernetes.io/hostname"
MAX_SCORE = 100.0
FILTER_REASON = "node(s) didn't match pod topology spread constraints"
MISSING_LABEL_REASON = "node(s) didn't match pod topology spread constraints (missing required label)"


@dataclass
class Constraint:
    max_skew: int
    key: str
    selector: t.LabelSelector
    min_domains: int
    honor_affinity: bool
    honor_taints: bool


def _selector(c: t.TopologySpreadConstraint, pod_labels: dict[str, str]) -> t.LabelSelector:
    """labelSelector with `key In (pod's value)` for each matchLabelKeys key the pod has."""
    sel = c.labelSelector or t.LabelSelector()
    extra = [t.LabelSelectorRequirement(key=key, operator="In", values=[pod_labels[key]])
             for key in c.matchLabelKeys or [] if key in pod_labels]
    if not extra:
        return sel
    return t.LabelSelector(matchLabels=sel.matchLabels, matchExpressions=[*(sel.matchExpressions or []), *extra])


def constraints(pod: t.Pod, when: str) -> list[Constraint]:
    labels = pod.metadata.labels or {}
    out = []
    for c in pod.spec.topologySpreadConstraints or []:
        if c.whenUnsatisfiable != when:
            continue
        out.append(Constraint(c.maxSkew, c.topologyKey, _selector(c, labels), c.minDomains or 1,
                              (c.nodeAffinityPolicy or "Honor") == "Honor", c.nodeTaintsPolicy == "Honor"))
    return out


@dataclass
class SpreadState:
    """Counts per constraint: domain value -> matching pods (every eligible domain present, maybe 0)."""

    constraints: list[Constraint]
    counts: list[Counter[str]]
    self_match: list[int]


NodeCheck = Callable[[NodeInfo], bool]


def _matches(pod: t.Pod, namespace: str, sel: t.LabelSelector) -> bool:
    if (pod.metadata.namespace or "default") != namespace or pod.metadata.deletionTimestamp:
        return False
    return a.selector_matches(sel, pod.metadata.labels or {})


def _eligible(ni: NodeInfo, cons: list[Constraint], c: Constraint, affinity_ok: NodeCheck,
              taints_ok: NodeCheck) -> bool:
    if any(other.key not in ni.labels for other in cons):
        return False
    if c.honor_affinity and not affinity_ok(ni):
        return False
    return not (c.honor_taints and not taints_ok(ni))


def count(pod: t.Pod, nodes: list[NodeInfo], cons: list[Constraint], affinity_ok: NodeCheck,
          taints_ok: NodeCheck) -> SpreadState:
    namespace = pod.metadata.namespace or "default"
    labels = pod.metadata.labels or {}
    counts: list[Counter[str]] = []
    for c in cons:
        per: Counter[str] = Counter()
        for ni in nodes:
            if not _eligible(ni, cons, c, affinity_ok, taints_ok):
                continue
            domain = ni.labels[c.key]
            per[domain] += sum(1 for p in ni.pods.values() if _matches(p, namespace, c.selector))
        counts.append(per)
    return SpreadState(cons, counts, [int(a.selector_matches(c.selector, labels)) for c in cons])


def filter_node(state: SpreadState, ni: NodeInfo) -> str | None:
    for c, per, self_match in zip(state.constraints, state.counts, state.self_match, strict=True):
        domain = ni.labels.get(c.key)
        if domain is None:
            return MISSING_LABEL_REASON
        global_min = 0 if len(per) < c.min_domains else min(per.values(), default=0)
        if per.get(domain, 0) + self_match - global_min > c.max_skew:
            return FILTER_REASON
    return None


def score_node(state: SpreadState, ni: NodeInfo, domains: list[int]) -> float | None:
    """Raw score (lower is better); None for a node missing a key (it scores 0 after normalizing)."""
    total = 0.0
    for c, per, size in zip(state.constraints, state.counts, domains, strict=True):
        domain = ni.labels.get(c.key)
        if domain is None:
            return None
        total += per.get(domain, 0) * math.log(size + 2) + (c.max_skew - 1)
    return float(round(total))  # kube-scheduler's scores are integers


def normalize(raw: list[float | None]) -> list[float]:
    """Kubernetes' NormalizeScore for this plug-in: fewer matching pods is better, ignored nodes get 0."""
    known = [s for s in raw if s is not None]
    if not known:
        return [0.0] * len(raw)
    lo, hi = min(known), max(known)
    if hi == 0:
        return [MAX_SCORE if s is not None else 0.0 for s in raw]
    return [float(int(MAX_SCORE) * int(hi + lo - s) // int(hi)) if s is not None else 0.0 for s in raw]
