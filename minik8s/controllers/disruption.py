"""The disruption controller (kube-controller-manager's): keeps every PodDisruptionBudget's status.

For a budget, the pods it selects (its namespace, its selector; a missing selector selects none):
- `expectedPods`: with an integer `minAvailable`, the number of selected pods; with a percentage or
  with `maxUnavailable`, the replicas their controllers want (a ReplicaSet owned by a Deployment
  counts the Deployment's); a selected pod without such a controller makes the budget allow nothing.
- `desiredHealthy`: `minAvailable` (a percentage of expectedPods, rounded up), or expectedPods minus
  `maxUnavailable` (a percentage rounded up).
- `currentHealthy`: selected pods that are Ready, not being deleted and not in `disruptedPods`.
- `disruptedPods`: pods the Eviction subresource let go, kept until the pod is seen terminating or
  gone, or for `disrupted_timeout_s` (the eviction's delete never came).
- `disruptionsAllowed`: currentHealthy - desiredHealthy, not below 0.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from dataclasses import dataclass
from typing import Any

from minik8s.api import types as t
from minik8s.api.printers import parse_time
from minik8s.api.timefmt import now_iso
from minik8s.client import Client, InformerFactory
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import NotFound
from minik8s.scheduler.affinity import selector_matches

log = logging.getLogger("minik8s.controllers.disruption")

SCALED_KINDS = ("ReplicaSet", "Deployment", "ReplicationController")


@dataclass
class DisruptionConfig:
    workers: int = 2
    resync_s: float = 30.0
    disrupted_timeout_s: float = 120.0  # Kubernetes' DeletionTimeout for disruptedPods entries


class NoControllers(Exception):
    pass


def _scaled_value(value: int | str, total: int) -> int:
    """An int-or-percent against `total`, percentages rounded up (as the controller does)."""
    if isinstance(value, int):
        return value
    return math.ceil(int(value.rstrip("%")) * total / 100)


def _ready(pod: t.Pod) -> bool:
    conds = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conds)


class DisruptionController(QueueWorkers):
    """Keys are `namespace/name` of PodDisruptionBudgets."""

    name = "disruption"

    def __init__(self, client: Client, config: DisruptionConfig | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or DisruptionConfig()
        super().__init__(self.config.workers)
        self.client = client
        resync = self.config.resync_s
        self.pdbs = informer_for(informers, client, "PodDisruptionBudget", resync_seconds=resync)
        self.pods = informer_for(informers, client, "Pod", resync_seconds=resync)
        self.scaled = {kind: informer_for(informers, client, kind, resync_seconds=resync) for kind in SCALED_KINDS}
        self.events = EventRecorder(client, "controllermanager")
        self.pdbs.add_handler(on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n), on_delete=lambda _o: None)
        self.pods.add_handler(on_add=self._pod_changed, on_update=lambda _o, n: self._pod_changed(n),
                              on_delete=self._pod_changed)
        for inf in self.scaled.values():
            inf.add_handler(on_update=lambda old, new: self._scale_changed(old, new))

    def _informers(self) -> list[Any]:
        return [self.pdbs, self.pods, *self.scaled.values()]

    def start(self) -> None:
        for inf in self._informers():
            inf.start()
        for inf in self._informers():
            inf.wait_synced()
        self.run_workers()
        log.info("disruption controller started")

    def stop(self) -> None:
        self.shutdown()
        for inf in self._informers():
            inf.stop()

    # --- handlers --------------------------------------------------------------------------------
    def _enqueue(self, pdb: Any) -> None:
        self.queue.add(f"{pdb.metadata.namespace}/{pdb.metadata.name}")

    def _budgets_in(self, namespace: str) -> list[Any]:
        return [b for b in self.pdbs.list() if (b.metadata.namespace or "default") == namespace]

    def _pod_changed(self, pod: t.Pod) -> None:
        labels = pod.metadata.labels or {}
        for b in self._budgets_in(pod.metadata.namespace or "default"):
            if selector_matches(b.spec.selector, labels):
                self._enqueue(b)

    def _scale_changed(self, old: Any, new: Any) -> None:
        if getattr(old.spec, "replicas", None) != getattr(new.spec, "replicas", None):
            for b in self._budgets_in(new.metadata.namespace or "default"):
                self._enqueue(b)

    # --- sync ------------------------------------------------------------------------------------
    def _selected(self, pdb: Any) -> list[t.Pod]:
        ns = pdb.metadata.namespace or "default"
        return [p for p in self.pods.list() if (p.metadata.namespace or "default") == ns
                and selector_matches(pdb.spec.selector, p.metadata.labels or {})]

    def _controller_scale(self, pod: t.Pod) -> tuple[str, int]:
        ns = pod.metadata.namespace or "default"
        ref = next((r for r in pod.metadata.ownerReferences or [] if r.controller), None)
        if ref is None or ref.kind not in SCALED_KINDS:
            raise NoControllers(f"found no controllers for pod {pod.metadata.name!r}")
        owner = self.scaled[ref.kind].get(f"{ns}/{ref.name}")
        if owner is None or owner.metadata.uid != ref.uid:
            raise NoControllers(f"found no controllers for pod {pod.metadata.name!r}")
        if ref.kind == "ReplicaSet":  # a Deployment's ReplicaSet: the Deployment's replicas count
            dref = next((r for r in owner.metadata.ownerReferences or [] if r.controller), None)
            dep = self.scaled["Deployment"].get(f"{ns}/{dref.name}") if dref and dref.kind == "Deployment" else None
            if dep is not None and dep.metadata.uid == dref.uid:  # type: ignore[union-attr]
                return dep.metadata.uid or "", int(dep.spec.replicas)
        return owner.metadata.uid or "", int(owner.spec.replicas or 0)

    def _expected(self, pdb: Any, pods: list[t.Pod]) -> tuple[int, int]:
        """(expectedPods, desiredHealthy)."""
        spec = pdb.spec
        if spec.maxUnavailable is None and (spec.minAvailable is None or isinstance(spec.minAvailable, int)):
            return len(pods), int(spec.minAvailable or 0)
        scales: dict[str, int] = {}
        for pod in pods:
            uid, replicas = self._controller_scale(pod)
            scales[uid] = replicas
        expected = sum(scales.values())
        if spec.maxUnavailable is not None:
            return expected, max(0, expected - _scaled_value(spec.maxUnavailable, expected))
        return expected, _scaled_value(spec.minAvailable, expected)

    def _disrupted(self, pdb: Any, pods: list[t.Pod], now: dt.datetime) -> tuple[dict[str, str], bool]:
        """The entries still pending (pod present, not terminating, not expired); whether any will expire."""
        old = (pdb.status.disruptedPods if pdb.status else None) or {}
        by_name = {p.metadata.name: p for p in pods}
        kept: dict[str, str] = {}
        for name, when in old.items():
            pod = by_name.get(name)
            if pod is None or pod.metadata.deletionTimestamp:
                continue
            at = parse_time(when)
            if at is None or (now - at).total_seconds() > self.config.disrupted_timeout_s:
                log.info("disrupted pod entry expired", extra={"pdb": pdb.metadata.name, "pod": name})
                continue
            kept[name] = when
        return kept, bool(kept)

    def sync(self, key: str) -> None:
        pdb = self.pdbs.get(key)
        if pdb is None:
            return
        pods = self._selected(pdb)
        now = dt.datetime.now(dt.UTC)
        disrupted, pending = self._disrupted(pdb, pods, now)
        healthy = sum(1 for p in pods if _ready(p) and not p.metadata.deletionTimestamp
                      and p.metadata.name not in disrupted)
        try:
            expected, desired = self._expected(pdb, pods)
        except NoControllers as exc:
            self.events.record(pdb, "Warning", "NoControllers", str(exc))
            expected, desired, healthy_for_allowed = 0, 0, None
        else:
            healthy_for_allowed = healthy
        allowed = 0 if healthy_for_allowed is None else max(0, healthy_for_allowed - desired)
        self._write(pdb, {"observedGeneration": pdb.metadata.generation or 1, "disruptedPods": disrupted or None,
                          "disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
                          "expectedPods": expected}, allowed > 0)
        if pending:  # look again when the oldest entry may expire
            self.queue.add_after(key, self.config.disrupted_timeout_s)

    def _write(self, pdb: Any, status: dict[str, Any], allowed: bool) -> None:
        old = pdb.status.to_dict() if pdb.status else {}
        conds = old.get("conditions") or []
        prev = next((c for c in conds if c.get("type") == "DisruptionAllowed"), None)
        want = "True" if allowed else "False"
        cond = {"type": "DisruptionAllowed", "status": want,
                "reason": "SufficientPods" if allowed else "InsufficientPods",
                "observedGeneration": status["observedGeneration"],
                "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == want
                and prev.get("lastTransitionTime") else now_iso()}
        new = {k: v for k, v in status.items() if v is not None}
        new["conditions"] = [cond]
        if new == old:
            return
        body = pdb.to_dict()
        body["status"] = new
        try:
            self.client.update_status(body)  # carries the resourceVersion: a racing eviction makes this a Conflict
        except NotFound:
            return
