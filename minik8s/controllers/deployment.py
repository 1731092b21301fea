"""Deployment controller: roll a pod template out through ReplicaSets named `<deploy>-<pod-template-hash>`.

Like Kubernetes' deployment controller:
- the ReplicaSet whose template equals the Deployment's (ignoring `pod-template-hash`) is the new one;
  it gets revision max(old)+1 in `deployment.kubernetes.io/revision` (so `rollout undo` re-promotes an old set);
- RollingUpdate scales the new set up by at most maxSurge over `replicas` and the old sets down while at least
  `replicas - maxUnavailable` pods stay available (counted from the pods themselves, so a stale ReplicaSet
  status never lets it scale down too far); Recreate scales old sets to 0, waits for their pods to go, then
  scales the new one up;
- old sets scaled to 0 beyond `revisionHistoryLimit` are deleted; status and the Available/Progressing
  conditions are written last.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Literal

from minik8s.api import apps
from minik8s.api import types as t
from minik8s.api.selectors import labels_match, selector_from_match
from minik8s.client import Client, InformerFactory
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for, object_key
from minik8s.controllers import deployprogress as dp
from minik8s.controllers import workloads as w
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import AlreadyExists, Conflict, NotFound

log = logging.getLogger("minik8s.controllers.deployment")

API_VERSION = "apps/v1"
KIND = "Deployment"


@dataclass
class DeploymentConfig:
    workers: int = 2
    resync_s: float = 30.0


class DeploymentController(QueueWorkers):
    name = "deployment"

    def __init__(self, client: Client, config: DeploymentConfig | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or DeploymentConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.deployments = informer_for(informers, client, KIND, resync_seconds=self.config.resync_s)
        self.rs = informer_for(informers, client, "ReplicaSet", resync_seconds=self.config.resync_s)
        self.pods = informer_for(informers, client, "Pod", resync_seconds=self.config.resync_s)
        self.events = EventRecorder(client, "deployment-controller")
        # our own ReplicaSet writes, newer than the informer may yet know (uid -> object)
        self._written: dict[str, Any] = {}
        self._written_lock = threading.Lock()
        self.deployments.add_handler(lambda o: self.queue.add(object_key(o)),
                                     lambda _o, n: self.queue.add(object_key(n)), None)
        self.rs.add_handler(self._rs_event, lambda _o, n: self._rs_event(n), self._rs_event)
        self.pods.add_handler(self._pod_event, lambda _o, n: self._pod_event(n), self._pod_event)

    def start(self) -> None:
        for inf in (self.deployments, self.rs, self.pods):
            inf.start()
        for inf in (self.deployments, self.rs, self.pods):
            inf.wait_synced()
        self.run_workers()
        log.info("deployment controller started")

    def stop(self) -> None:
        self.shutdown()
        for inf in (self.deployments, self.rs, self.pods):
            inf.stop()

    # --- event handlers -------------------------------------------------------------------------
    def _owner_key(self, obj: Any, kind: str) -> str | None:
        ref = w.controller_ref(obj)
        if ref is None or ref.kind != kind:
            return None
        return f"{obj.metadata.namespace}/{ref.name}"

    def _rs_event(self, rs: Any) -> None:
        key = self._owner_key(rs, KIND)
        if key:
            self.queue.add(key)
            return
        for d in self.deployments.list():  # an orphan: a Deployment may adopt it
            if d.metadata.namespace == rs.metadata.namespace and labels_match(
                    selector_from_match(d.spec.selector.model_dump(exclude_none=True)), rs.metadata.labels):
                self.queue.add(object_key(d))

    def _pod_event(self, pod: t.Pod) -> None:
        """Availability is counted from pods, and Recreate waits for old pods to be gone."""
        rs_key = self._owner_key(pod, "ReplicaSet")
        rs = self.rs.get(rs_key) if rs_key else None
        if rs is not None:
            key = self._owner_key(rs, KIND)
            if key:
                self.queue.add(key)

    # --- reading -----------------------------------------------------------------------------------
    def _fresh(self, rs: Any) -> Any:
        with self._written_lock:
            mine = self._written.get(rs.metadata.uid or "")
        if mine is not None and int(mine.metadata.resourceVersion or 0) > int(rs.metadata.resourceVersion or 0):
            return mine
        return rs

    def _remember(self, rs: Any) -> Any:
        with self._written_lock:
            self._written[rs.metadata.uid or ""] = rs
        return rs

    def _claim(self, d: apps.Deployment) -> list[Any]:
        reqs = selector_from_match(d.spec.selector.model_dump(exclude_none=True))
        owned = []
        for rs in self.rs.list():
            if rs.metadata.namespace != d.metadata.namespace:
                continue
            rs = self._fresh(rs)
            ref = w.controller_ref(rs)
            matches = labels_match(reqs, rs.metadata.labels)
            if ref is not None and ref.uid == d.metadata.uid:
                if matches:
                    owned.append(rs)
                elif rs.metadata.deletionTimestamp is None:
                    self._set_owner(rs, d, adopt=False)
            elif ref is None and matches and d.metadata.deletionTimestamp is None \
                    and rs.metadata.deletionTimestamp is None:
                adopted = self._set_owner(rs, d, adopt=True)
                if adopted is not None:
                    owned.append(adopted)
        return owned

    def _set_owner(self, rs: Any, d: apps.Deployment, adopt: bool) -> Any | None:
        refs = [r.to_dict() for r in rs.metadata.ownerReferences or [] if r.uid != d.metadata.uid]
        if adopt:
            refs.append(w.owner_ref(d, API_VERSION, KIND))
        patch = {"metadata": {"ownerReferences": refs or None, "resourceVersion": rs.metadata.resourceVersion}}
        try:
            return self._remember(self.client.patch("ReplicaSet", rs.metadata.name, patch, rs.metadata.namespace))
        except (NotFound, Conflict):
            return None

    def _available_pods(self, rs: Any, min_ready: int) -> int:
        """Available pods of a set, capped at its spec.replicas (pods beyond it are about to go)."""
        at = w.now()
        count = 0
        for pod in self.pods.list():
            ref = w.controller_ref(pod)
            if ref is None or ref.uid != rs.metadata.uid or not w.is_active(pod):
                continue
            if w.is_available(pod, min_ready, at):
                count += 1
        return min(count, rs.spec.replicas)

    def _has_pods(self, rs_list: list[Any]) -> bool:
        uids = {rs.metadata.uid for rs in rs_list}
        for pod in self.pods.list():
            ref = w.controller_ref(pod)
            if ref is not None and ref.uid in uids and (pod.status is None or pod.status.phase not in
                                                        ("Succeeded", "Failed")):
                return True
        return False

    # --- sync -----------------------------------------------------------------------------------
    def sync(self, key: str) -> None:
        d = self.deployments.get(key)
        if d is None or d.metadata.deletionTimestamp is not None:
            return
        rss = self._claim(d)
        template = w.template_dict(d.spec.template)
        new = next((rs for rs in rss if w.same_template(w.template_dict(rs.spec.template), template)), None)
        olds = [rs for rs in rss if new is None or rs.metadata.uid != new.metadata.uid]
        if d.spec.paused:
            self._update_status(d, new, olds)
            return
        max_old_revision = max((w.revision_of(rs) for rs in olds), default=0)
        if d.spec.strategy.type == "Recreate":
            new = self._recreate(d, new, olds, template, max_old_revision)
        else:
            new = self._rolling(d, new, olds, template, max_old_revision)
        self._cleanup(d, olds)
        self._update_status(d, new, olds)

    def _ensure_new(self, d: apps.Deployment, new: Any, template: dict[str, Any], max_old_revision: int,
                    replicas: int) -> Any:
        revision = str(max_old_revision + 1)
        if new is not None:
            if w.revision_of(new) <= max_old_revision:
                new = self._remember(self.client.patch(
                    "ReplicaSet", new.metadata.name,
                    {"metadata": {"annotations": {w.REVISION_ANNOTATION: revision}}}, new.metadata.namespace))
            return new
        h = w.template_hash(template)
        tmpl = w.strip_hash(template)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[w.HASH_LABEL] = h
        selector = d.spec.selector.model_dump(exclude_none=True)
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), w.HASH_LABEL: h}
        body = {"apiVersion": API_VERSION, "kind": "ReplicaSet",
                "metadata": {"name": f"{d.metadata.name}-{h}", "namespace": d.metadata.namespace,
                             "labels": tmpl["metadata"]["labels"],
                             "annotations": {w.REVISION_ANNOTATION: revision},
                             "ownerReferences": [w.owner_ref(d, API_VERSION, KIND)]},
                "spec": {"replicas": replicas, "minReadySeconds": d.spec.minReadySeconds or 0,
                         "selector": selector, "template": tmpl}}
        try:
            created = self._remember(self.client.create(body, d.metadata.namespace))
        except AlreadyExists:
            existing = self.client.get("ReplicaSet", f"{d.metadata.name}-{h}", d.metadata.namespace)
            ref = w.controller_ref(existing)
            if ref is not None and ref.uid == d.metadata.uid:
                return self._remember(existing)
            raise Conflict(f'replica set "{d.metadata.name}-{h}" exists and is not owned by this deployment') \
                from None
        self.events.record(d, "Normal", "ScalingReplicaSet",
                           f"Scaled up replica set {created.metadata.name} to {replicas}")
        return created

    def _scale(self, d: apps.Deployment, rs: Any, replicas: int) -> Any:
        if rs.spec.replicas == replicas:
            return rs
        out = self._remember(self.client.patch("ReplicaSet", rs.metadata.name,
                                               {"spec": {"replicas": replicas},
                                                "metadata": {"resourceVersion": rs.metadata.resourceVersion}},
                                               rs.metadata.namespace))
        verb = "up" if replicas > rs.spec.replicas else "down"
        self.events.record(d, "Normal", "ScalingReplicaSet",
                           f"Scaled {verb} replica set {rs.metadata.name} from {rs.spec.replicas} to {replicas}")
        return out

    def _rolling(self, d: apps.Deployment, new: Any, olds: list[Any], template: dict[str, Any],
                 max_old_revision: int) -> Any:
        desired = d.spec.replicas
        ru = d.spec.strategy.rollingUpdate or apps.RollingUpdateDeployment()
        surge, unavailable = w.resolve_fenceposts(ru.maxSurge, ru.maxUnavailable, desired)
        total = sum(rs.spec.replicas for rs in olds) + (new.spec.replicas if new is not None else 0)
        if new is None:
            start = w.new_rs_replicas(desired, total, 0, surge) if olds else desired
            new = self._ensure_new(d, None, template, max_old_revision, start)
            return new
        new = self._ensure_new(d, new, template, max_old_revision, new.spec.replicas)
        new = self._scale(d, new, w.new_rs_replicas(desired, total, new.spec.replicas, surge)
                          if new.spec.replicas < desired else desired)
        self._scale_down_old(d, new, olds, unavailable)
        return new

    def _scale_down_old(self, d: apps.Deployment, new: Any, olds: list[Any], max_unavailable: int) -> None:
        live = [rs for rs in olds if rs.spec.replicas > 0]
        if not live:
            return
        min_ready = d.spec.minReadySeconds or 0
        avail = {rs.metadata.uid: self._available_pods(rs, min_ready) for rs in live}
        new_avail = self._available_pods(new, min_ready)
        all_replicas = sum(rs.spec.replicas for rs in live) + new.spec.replicas
        budget = w.max_old_scale_down(d.spec.replicas, max_unavailable, all_replicas, new.spec.replicas, new_avail)
        if budget <= 0:
            return
        live.sort(key=lambda rs: (w.revision_of(rs), rs.metadata.creationTimestamp or ""))
        # first the old pods that are not available anyway: removing them costs no availability
        replicas = {rs.metadata.uid: rs.spec.replicas for rs in live}  # never mutate cached objects
        latest = {rs.metadata.uid: rs for rs in live}
        for rs in live:
            if budget <= 0:
                return
            cut = min(replicas[rs.metadata.uid] - avail[rs.metadata.uid], budget)
            if cut > 0:
                replicas[rs.metadata.uid] -= cut
                latest[rs.metadata.uid] = self._scale(d, rs, replicas[rs.metadata.uid])
                budget -= cut
        min_available = d.spec.replicas - max_unavailable
        available_total = sum(avail.values()) + new_avail
        budget = min(budget, available_total - min_available)
        for rs in live:
            if budget <= 0:
                return
            cut = min(replicas[rs.metadata.uid], budget)
            if cut > 0:
                self._scale(d, latest[rs.metadata.uid], replicas[rs.metadata.uid] - cut)
                budget -= cut

    def _recreate(self, d: apps.Deployment, new: Any, olds: list[Any], template: dict[str, Any],
                  max_old_revision: int) -> Any:
        for rs in olds:
            if rs.spec.replicas:
                self._scale(d, rs, 0)
        if self._has_pods(olds):
            return new
        new = self._ensure_new(d, new, template, max_old_revision, d.spec.replicas)
        return self._scale(d, new, d.spec.replicas)

    def _cleanup(self, d: apps.Deployment, olds: list[Any]) -> None:
        idle = [rs for rs in olds if rs.spec.replicas == 0 and not (rs.status and rs.status.replicas)
                and rs.metadata.deletionTimestamp is None]
        extra = len(idle) - d.spec.revisionHistoryLimit
        if extra <= 0:
            return
        for rs in sorted(idle, key=w.revision_of)[:extra]:
            try:
                self.client.delete("ReplicaSet", rs.metadata.name, rs.metadata.namespace)
            except NotFound:
                continue

    # --- status ---------------------------------------------------------------------------------
    def _update_status(self, d: apps.Deployment, new: Any, olds: list[Any]) -> None:
        all_rs = [*olds, *([new] if new is not None else [])]

        def total(field: str) -> int:
            return sum(int(getattr(rs.status, field) or 0) for rs in all_rs if rs.status)

        desired = d.spec.replicas
        ru = d.spec.strategy.rollingUpdate
        _, max_unavailable = w.resolve_fenceposts(ru.maxSurge, ru.maxUnavailable, desired) if ru else (0, 0)
        updated = int(new.status.replicas or 0) if new is not None and new.status else 0
        available = total("availableReplicas")
        replicas = total("replicas")
        now = w.iso(w.now())
        old_conds = {c.type: c for c in (d.status.conditions if d.status else None) or []}

        def cond(type_: str, ok: bool, reason: str, message: str) -> apps.DeploymentCondition:
            prev = old_conds.get(type_)
            status: Literal["True", "False"] = "True" if ok else "False"
            if prev is not None and prev.status == status and prev.reason == reason:
                return prev
            changed = prev is None or prev.status != status
            return apps.DeploymentCondition(
                type=type_, status=status, reason=reason, message=message, lastUpdateTime=now,
                lastTransitionTime=now if changed else (prev.lastTransitionTime if prev else now))

        complete = (new is not None and updated == desired and replicas == desired and available == desired
                    and all(rs.spec.replicas == 0 for rs in olds))
        new_name = str(new.metadata.name if new is not None else d.metadata.name)
        ready = total("readyReplicas")
        clock = w.now()
        progress = dp.progressing(d, dp.Counts(updated, replicas, ready, available), complete, new_name, clock)
        progressing = dp.condition(progress, old_conds.get(dp.PROGRESSING), now)
        conditions = [
            cond("Available", available >= desired - max_unavailable,
                 "MinimumReplicasAvailable" if available >= desired - max_unavailable else "MinimumReplicasUnavailable",
                 "Deployment has minimum availability." if available >= desired - max_unavailable
                 else "Deployment does not have minimum availability."),
            progressing,
        ]
        recheck = dp.recheck_after(d, progressing, clock)
        if recheck is not None:  # notice a missed progressDeadlineSeconds even if nothing else changes
            self.queue.add_after(object_key(d), recheck)
        status = apps.DeploymentStatus(
            observedGeneration=d.metadata.generation, replicas=replicas, updatedReplicas=updated,
            readyReplicas=ready, availableReplicas=available,
            unavailableReplicas=max(0, desired - available), conditions=conditions,
            collisionCount=d.status.collisionCount if d.status else None)
        if d.status is not None and d.status.to_dict() == status.to_dict():
            return
        self.client.patch(KIND, d.name, {"status": status.to_dict()}, d.metadata.namespace,
                          subresource="status")
