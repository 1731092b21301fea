"""DaemonSet controller: one pod per eligible node, replaced by a rolling update or on delete.

Like Kubernetes' daemon controller (1.12+): pods are claimed by a controller ownerReference (so the
garbage collector removes them with their DaemonSet), created for each node that should run one with
node affinity `matchFields metadata.name In [node]` and the automatic daemon tolerations, and bound by
the scheduler (which checks resources); pods on nodes that stop matching, failed pods, extra pods and
pods for nodes that no longer exist are deleted. RollingUpdate deletes old pods within maxUnavailable,
and the next sync creates their replacements; OnDelete only creates missing pods. Status is written
last. The eligibility rules and the arithmetic live in `daemonpods` (pure, unit-tested).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from minik8s.api import daemonsets as dsapi
from minik8s.api import types as t
from minik8s.client import Client, InformerFactory
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for, object_key
from minik8s.controllers import daemonpods as dp
from minik8s.controllers import workloads as w
from minik8s.controllers.base import QueueWorkers
from minik8s.controllers.replicaset import OwnedPodEvents, claim_pods, selector_of
from minik8s.errors import MiniK8sError, NotFound

log = logging.getLogger("minik8s.controllers.daemonset")

API_VERSION = "apps/v1"
KIND = "DaemonSet"


@dataclass
class DaemonSetConfig:
    workers: int = 2
    burst: int = 100  # at most this many pods created or deleted per sync
    resync_s: float = 30.0


def _node_changed(old: t.Node, new: t.Node) -> bool:
    """Only what eligibility reads: labels, taints, unschedulable (not the kubelet's heartbeats)."""
    return old.metadata.labels != new.metadata.labels or old.spec != new.spec


class DaemonSetController(OwnedPodEvents, QueueWorkers):
    name = "daemonset"
    kind = KIND

    def __init__(self, client: Client, config: DaemonSetConfig | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or DaemonSetConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.daemonsets = informer_for(informers, client, KIND, resync_seconds=self.config.resync_s)
        self.owners = self.daemonsets
        self.pods = informer_for(informers, client, "Pod", resync_seconds=self.config.resync_s)
        self.nodes = informer_for(informers, client, "Node", resync_seconds=self.config.resync_s)
        self.events = EventRecorder(client, "daemonset-controller")
        self.expectations = w.Expectations()
        self.daemonsets.add_handler(lambda o: self.queue.add(object_key(o)),
                                    lambda _o, n: self.queue.add(object_key(n)),
                                    lambda o: self.expectations.forget(object_key(o)))
        self.pods.add_handler(self._pod_added, self._pod_updated, self._pod_deleted)
        self.nodes.add_handler(lambda _n: self._enqueue_all(),
                               lambda o, n: self._enqueue_all() if _node_changed(o, n) else None,
                               lambda _n: self._enqueue_all())

    def start(self) -> None:
        for inf in (self.daemonsets, self.pods, self.nodes):
            inf.start()
        for inf in (self.daemonsets, self.pods, self.nodes):
            inf.wait_synced()
        self.run_workers()
        log.info("daemonset controller started")

    def stop(self) -> None:
        self.shutdown()
        for inf in (self.daemonsets, self.pods, self.nodes):
            inf.stop()

    # --- event handlers -------------------------------------------------------------------------
    def _enqueue_all(self) -> None:
        for ds in self.daemonsets.list():
            self.queue.add(object_key(ds))

    # --- sync -----------------------------------------------------------------------------------
    def sync(self, key: str) -> None:
        ds = self.daemonsets.get(key)
        if ds is None:
            self.expectations.forget(key)
            return
        pods = claim_pods(self.client, self.pods.list(), ds, selector_of(ds), w.owner_ref(ds, API_VERSION, KIND))
        by_node: dict[str, list[t.Pod]] = {}
        for pod in pods:
            node = dp.target_node(pod)
            if node is not None:
                by_node.setdefault(node, []).append(pod)
        nodes = self.nodes.list()
        hash_ = dp.revision_hash(ds)
        if ds.metadata.deletionTimestamp is None and self.expectations.satisfied(key):
            acted = self._manage(ds, key, nodes, by_node, hash_)
            if not acted and ds.spec.updateStrategy.type == "RollingUpdate":
                self._delete(ds, key, dp.rolling_deletes(ds, nodes, by_node, hash_, w.now()), "rolling update")
        self._update_status(ds, nodes, by_node, hash_)

    def _manage(self, ds: dsapi.DaemonSet, key: str, nodes: list[t.Node], by_node: dict[str, list[t.Pod]],
                hash_: str) -> bool:
        """Create and delete pods so each eligible node runs one; whether anything was done."""
        plan = dp.plan_nodes(ds.spec.template.spec, nodes, by_node)
        victims = plan.delete[:self.config.burst]
        create_on = plan.create_on[:max(0, self.config.burst - len(victims))]
        if not victims and not create_on:
            return False
        self.expectations.expect(key, adds=len(create_on), deletes={p.metadata.uid or "" for p, _ in victims})
        for pod, why in victims:
            self._delete_one(ds, key, pod, why)
        created = 0
        for i, node in enumerate(create_on):
            try:
                self.client.create(dp.pod_for(ds, node, hash_, API_VERSION, KIND), ds.metadata.namespace)
                created += 1
            except MiniK8sError:
                self.expectations.lower(key, adds=len(create_on) - i)
                raise
        if created:
            self.events.record(ds, "Normal", "SuccessfulCreate", f"Created {created} daemon pod(s)")
        return True

    def _delete(self, ds: dsapi.DaemonSet, key: str, victims: list[t.Pod], why: str) -> None:
        victims = victims[:self.config.burst]
        if not victims:
            return
        self.expectations.expect(key, deletes={p.metadata.uid or "" for p in victims})
        for pod in victims:
            self._delete_one(ds, key, pod, why)

    def _delete_one(self, ds: dsapi.DaemonSet, key: str, pod: t.Pod, why: str) -> None:
        try:
            self.client.delete("Pod", pod.metadata.name or "", pod.metadata.namespace)
        except NotFound:
            self.expectations.lower(key, uid=pod.metadata.uid)
            return
        except MiniK8sError:
            self.expectations.lower(key, uid=pod.metadata.uid)
            raise
        log.info("deleted daemon pod", extra={"pod": pod.metadata.name, "reason": why})
        self.events.record(ds, "Normal", "SuccessfulDelete", f"Deleted pod: {pod.metadata.name} ({why})")

    def _update_status(self, ds: dsapi.DaemonSet, nodes: list[t.Node], by_node: dict[str, list[t.Pod]],
                       hash_: str) -> None:
        status = dp.compute_status(ds, nodes, by_node, hash_, w.now())
        min_ready = ds.spec.minReadySeconds or 0
        if min_ready and status.numberAvailable is not None and status.numberAvailable < status.numberReady:
            self.queue.add_after(object_key(ds), float(min_ready))
        if ds.status is not None and ds.status.to_dict() == status.to_dict():
            return
        self.client.patch(KIND, ds.metadata.name or "", {"status": status.to_dict()}, ds.metadata.namespace,
                          subresource="status")

