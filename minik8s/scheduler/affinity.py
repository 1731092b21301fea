"""Node affinity and inter-pod (anti-)affinity, with Kubernetes semantics.

Node selector terms are ORed, the requirements inside a term ANDed, and an empty term
matches nothing. A pod affinity term matches the pods its labelSelector selects (a missing
selector selects none, an empty one all) in its namespaces (default: the term owner's),
and is satisfied on a node when such a pod runs in the node's topology domain: the nodes
that share the node's value of `topologyKey`. A node without that label is in no domain.
"""

from __future__ import annotations

from collections.abc import Iterable

from minik8s.api import types as t
from minik8s.scheduler.snapshot import NodeInfo, Snapshot

Domain = tuple[str, str]  # (topologyKey, value)

NODE_NAME_FIELD = "metadata.name"


def _label_requirement(op: str, key: str, values: list[str] | None, labels: dict[str, str]) -> bool:
    present = key in labels
    if op == "In":
        return present and labels[key] in (values or [])
    if op == "NotIn":
        return not present or labels[key] not in (values or [])
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt"):
        try:
            have, want = int(labels[key]), int((values or [""])[0])
        except (KeyError, ValueError):
            return False
        return have > want if op == "Gt" else have < want
    return False  # unknown operators are rejected by validation; match nothing if one slips through


def node_term_matches(term: t.NodeSelectorTerm, name: str, labels: dict[str, str]) -> bool:
    if not term.matchExpressions and not term.matchFields:
        return False
    fields = {NODE_NAME_FIELD: name}
    return all(_label_requirement(r.operator, r.key, r.values, labels) for r in term.matchExpressions or []) and \
        all(r.key == NODE_NAME_FIELD and _label_requirement(r.operator, r.key, r.values, fields)
            for r in term.matchFields or [])


def selector_matches(sel: t.LabelSelector | None, labels: dict[str, str]) -> bool:
    if sel is None:
        return False
    if any(labels.get(k) != v for k, v in (sel.matchLabels or {}).items()):
        return False
    return all(_label_requirement(r.operator, r.key, r.values, labels) for r in sel.matchExpressions or [])


def term_matches_pod(term: t.PodAffinityTerm, owner_ns: str, pod: t.Pod, snapshot: Snapshot) -> bool:
    """Whether `pod` is one the term (written in a pod of namespace `owner_ns`) selects."""
    ns = pod.metadata.namespace or "default"
    if term.namespaceSelector is not None:
        # an empty namespaceSelector means every namespace; a non-empty one reads namespace labels
        in_ns = ns in (term.namespaces or []) or selector_matches(term.namespaceSelector,
                                                                  snapshot.namespace_labels.get(ns, {})) \
            or not (term.namespaceSelector.matchLabels or term.namespaceSelector.matchExpressions)
    else:
        in_ns = ns in (term.namespaces or [owner_ns])
    return in_ns and selector_matches(term.labelSelector, pod.metadata.labels or {})


def _domain(ni: NodeInfo, key: str) -> Domain | None:
    value = ni.labels.get(key)
    return None if value is None else (key, value)


def matching_domains(term: t.PodAffinityTerm, owner_ns: str, snapshot: Snapshot) -> set[Domain]:
    """The topology domains that hold at least one pod the term selects."""
    found: set[Domain] = set()
    for pod, ni in snapshot.pods():
        dom = _domain(ni, term.topologyKey)
        if dom is not None and dom not in found and term_matches_pod(term, owner_ns, pod, snapshot):
            found.add(dom)
    return found


def domain_of(ni: NodeInfo, key: str) -> Domain | None:
    return _domain(ni, key)


def weighted_domains(terms: Iterable[tuple[int, t.PodAffinityTerm]], owner_ns: str,
                     snapshot: Snapshot) -> dict[Domain, float]:
    """For preferred terms: each selected pod adds the term's weight to its node's domain."""
    scores: dict[Domain, float] = {}
    terms = list(terms)
    if not terms:
        return scores
    for pod, ni in snapshot.pods():
        for weight, term in terms:
            dom = _domain(ni, term.topologyKey)
            if dom is not None and term_matches_pod(term, owner_ns, pod, snapshot):
                scores[dom] = scores.get(dom, 0.0) + weight
    return scores
