"""ReplicaSet controller: keep `spec.replicas` active pods that match the selector.

Like Kubernetes' ReplicaSet controller: pods are claimed by a controller ownerReference
(adopting matching orphans, releasing owned pods that stop matching), missing pods are
created from the template (`<rs>-<5 chars>`), extra pods are deleted least valuable first,
and "expectations" keep it from acting twice on a cache that has not yet seen its own writes.
Status (replicas, fullyLabeledReplicas, readyReplicas, availableReplicas, observedGeneration)
is written last, through the status subresource.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from minik8s.api import apps
from minik8s.api import types as t
from minik8s.api.selectors import Requirement, labels_match, selector_from_match
from minik8s.client import Client, Informer, InformerFactory, WorkQueue
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for, object_key
from minik8s.controllers import workloads as w
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import AlreadyExists, Conflict, MiniK8sError, NotFound

log = logging.getLogger("minik8s.controllers.replicaset")

API_VERSION = "apps/v1"
KIND = "ReplicaSet"


@dataclass
class ReplicaSetConfig:
    workers: int = 2
    burst: int = 100  # at most this many pods created or deleted per sync
    resync_s: float = 30.0


def selector_of(rs: Any) -> list[Requirement]:
    return selector_from_match(rs.spec.selector.model_dump(exclude_none=True))


def claim_pods(client: Client, pods: list[t.Pod], owner: Any, reqs: list[Requirement],
               ref: dict[str, Any]) -> list[t.Pod]:
    """The pods `owner` controls after adopting matching orphans and releasing owned pods that stopped matching.

    `ref` is the controller ownerReference an adopted pod gets (Kubernetes' PodControllerRefManager).
    """
    owned: list[t.Pod] = []
    uid = owner.metadata.uid
    for pod in pods:
        if pod.metadata.namespace != owner.metadata.namespace:
            continue
        current = w.controller_ref(pod)
        matches = bool(reqs) and labels_match(reqs, pod.metadata.labels)
        if current is not None and current.uid == uid:
            if matches:
                owned.append(pod)
            elif not w.is_terminating(pod):
                _set_owner(client, pod, uid, None)
        elif current is None and matches and not w.is_terminating(pod) and owner.metadata.deletionTimestamp is None:
            adopted = _set_owner(client, pod, uid, ref)
            if adopted is not None:
                owned.append(adopted)
    return owned


def _set_owner(client: Client, pod: t.Pod, uid: str | None, ref: dict[str, Any] | None) -> t.Pod | None:
    """Adopt (ref given) or release (ref None); guarded by the pod's resourceVersion."""
    refs = [r.to_dict() for r in pod.metadata.ownerReferences or [] if r.uid != uid]
    if ref is not None:
        refs.append(ref)
    patch = {"metadata": {"ownerReferences": refs or None, "resourceVersion": pod.metadata.resourceVersion}}
    try:
        out: t.Pod = client.patch("Pod", pod.metadata.name or "", patch, pod.metadata.namespace)
    except (NotFound, Conflict):
        return None  # changed under us: the resulting event requeues the owner
    log.info("adopted pod" if ref else "released pod", extra={"pod": pod.metadata.name})
    return out


class OwnedPodEvents:
    """Pod event handlers of a controller whose objects own pods directly (ReplicaSet, ReplicationController,
    DaemonSet): requeue the owner, count observed creates and deletes against its expectations, and offer
    orphans to the owners whose selector matches them."""

    kind: str
    owners: Informer
    queue: WorkQueue
    expectations: w.Expectations

    def selector(self, owner: Any) -> list[Requirement]:
        return selector_of(owner)

    def _owner_key(self, pod: t.Pod) -> str | None:
        ref = w.controller_ref(pod)
        if ref is None or ref.kind != self.kind:
            return None
        owner = self.owners.get(f"{pod.metadata.namespace}/{ref.name}")
        if owner is None or owner.metadata.uid != ref.uid:
            return None
        return f"{pod.metadata.namespace}/{ref.name}"

    def _matching_owners(self, pod: t.Pod) -> list[str]:
        return [object_key(o) for o in self.owners.list()
                if o.metadata.namespace == pod.metadata.namespace and labels_match(self.selector(o),
                                                                                    pod.metadata.labels)]

    def _pod_added(self, pod: t.Pod) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.creation_observed(key)
            self.queue.add(key)
        elif w.controller_ref(pod) is None:
            for k in self._matching_owners(pod):
                self.queue.add(k)

    def _pod_updated(self, old: t.Pod, new: t.Pod) -> None:
        key = self._owner_key(new)
        if key and new.metadata.deletionTimestamp and not old.metadata.deletionTimestamp:
            self.expectations.deletion_observed(key, new.metadata.uid)
        old_key = self._owner_key(old)
        if old_key and old_key != key:
            self.queue.add(old_key)
        if key:
            self.queue.add(key)
        elif w.controller_ref(new) is None:
            for k in self._matching_owners(new):
                self.queue.add(k)

    def _pod_deleted(self, pod: t.Pod) -> None:
        key = self._owner_key(pod)
        if key:
            self.expectations.deletion_observed(key, pod.metadata.uid)
            self.queue.add(key)


class ReplicaSetController(OwnedPodEvents, QueueWorkers):
    """Subclasses that keep N pods for another kind (the ReplicationController) override the class
    attributes and `selector`."""

    name = "replicaset"
    kind = KIND
    api_version = API_VERSION

    def __init__(self, client: Client, config: ReplicaSetConfig | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or ReplicaSetConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.rs = informer_for(informers, client, self.kind, resync_seconds=self.config.resync_s)
        self.owners = self.rs
        self.pods = informer_for(informers, client, "Pod", resync_seconds=self.config.resync_s)
        self.events = EventRecorder(client, f"{self.name}-controller")
        self.expectations = w.Expectations()
        self.rs.add_handler(lambda o: self.queue.add(object_key(o)), lambda _o, n: self.queue.add(object_key(n)),
                            self._rs_deleted)
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    def start(self) -> None:
        self.rs.start()
        self.pods.start()
        self.rs.wait_synced()
        self.pods.wait_synced()
        self.run_workers()
        log.info("controller started", extra={"controller": self.name})

    def stop(self) -> None:
        self.shutdown()
        self.rs.stop()
        self.pods.stop()

    # --- event handlers -------------------------------------------------------------------------
    def _rs_deleted(self, rs: Any) -> None:
        self.expectations.forget(object_key(rs))

    # --- sync -----------------------------------------------------------------------------------
    def sync(self, key: str) -> None:
        rs = self.rs.get(key)
        if rs is None:
            self.expectations.forget(key)
            return
        reqs = self.selector(rs)
        pods = self._claim(rs, reqs)
        active = [p for p in pods if w.is_active(p)]
        if self.expectations.satisfied(key) and rs.metadata.deletionTimestamp is None:
            self._manage(rs, key, active)
        self._update_status(rs, active)

    def _claim(self, rs: Any, reqs: list[Requirement]) -> list[t.Pod]:
        return claim_pods(self.client, self.pods.list(), rs, reqs, w.owner_ref(rs, self.api_version, self.kind))

    def _manage(self, rs: Any, key: str, active: list[t.Pod]) -> None:
        diff = len(active) - rs.spec.replicas
        if diff < 0:
            count = min(-diff, self.config.burst)
            self.expectations.expect(key, adds=count)
            created = 0
            for _ in range(count):
                try:
                    self.client.create(self._pod_for(rs), rs.metadata.namespace)
                    created += 1
                except AlreadyExists:
                    self.expectations.lower(key, adds=1)
                    self.queue.add(key)
                except MiniK8sError:
                    self.expectations.lower(key, adds=count - created)
                    raise
            if created:
                self.events.record(rs, "Normal", "SuccessfulCreate", f"Created {created} pod(s)")
        elif diff > 0:
            victims = w.pods_to_delete(active, min(diff, self.config.burst))
            self.expectations.expect(key, deletes={p.metadata.uid or "" for p in victims})
            for pod in victims:
                try:
                    self.client.delete("Pod", pod.metadata.name or "", pod.metadata.namespace)
                except NotFound:
                    self.expectations.lower(key, uid=pod.metadata.uid)
                except MiniK8sError:
                    self.expectations.lower(key, uid=pod.metadata.uid)
                    raise
                self.events.record(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.metadata.name}")

    def _pod_for(self, rs: Any) -> dict[str, Any]:
        template = rs.spec.template.to_dict()
        meta = dict(template.get("metadata") or {})
        for drop in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp", "ownerReferences"):
            meta.pop(drop, None)
        meta["generateName"] = f"{rs.metadata.name}-"
        meta["ownerReferences"] = [w.owner_ref(rs, self.api_version, self.kind)]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template["spec"]}

    def _update_status(self, rs: Any, active: list[t.Pod]) -> None:
        at = w.now()
        min_ready = rs.spec.minReadySeconds or 0
        template_labels = rs.spec.template.metadata.labels or {}
        ready = [p for p in active if w.is_ready(p)]
        available = [p for p in ready if w.is_available(p, min_ready, at)]
        status = apps.ReplicaSetStatus(
            replicas=len(active),
            fullyLabeledReplicas=sum(1 for p in active if all((p.metadata.labels or {}).get(k2) == v
                                                              for k2, v in template_labels.items())),
            readyReplicas=len(ready), availableReplicas=len(available),
            observedGeneration=rs.metadata.generation,
            conditions=rs.status.conditions if rs.status else None)
        if min_ready and len(available) < len(ready):
            self.queue.add_after(object_key(rs), float(min_ready))
        if rs.status is not None and rs.status.to_dict() == status.to_dict():
            return
        self.client.patch(self.kind, rs.metadata.name, {"status": status.to_dict()}, rs.metadata.namespace,
                          subresource="status")
