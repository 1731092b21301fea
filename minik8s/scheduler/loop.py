"""The scheduler component: informers on nodes and unscheduled pods, bind through the API."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from minik8s.api import types as t
from minik8s.client import Client, Informer, WorkQueue
from minik8s.client.events import EventRecorder
from minik8s.errors import Conflict, MiniK8sError, NotFound
from minik8s.scheduler.policy import NodeInfo, Snapshot, schedule

log = logging.getLogger("minik8s.scheduler")


@dataclass
class SchedulerConfig:
    workers: int = 1  # one binder keeps the snapshot consistent without locking
    retry_unschedulable_s: float = 5.0  # also retried at once when nodes or pods change
    resync_s: float = 30.0


class Scheduler:
    def __init__(self, client: Client, config: SchedulerConfig | None = None) -> None:
        self.client = client
        self.config = config or SchedulerConfig()
        self.queue = WorkQueue()
        self.pending = Informer(client, "Pod", field_selector="spec.nodeName=", resync_seconds=self.config.resync_s)
        self.pods = Informer(client, "Pod", resync_seconds=self.config.resync_s)
        self.nodes = Informer(client, "Node", resync_seconds=self.config.resync_s)
        self.events = EventRecorder(client, "default-scheduler")
        self._stop = threading.Event()
        self._unschedulable: set[str] = set()
        self._lock = threading.Lock()

    def _requeue_unschedulable(self, *_args: Any) -> None:
        with self._lock:
            keys, self._unschedulable = self._unschedulable, set()
        for key in keys:
            self.queue.add(key)

    def _enqueue(self, pod: t.Pod) -> None:
        if not pod.spec.nodeName and not pod.metadata.deletionTimestamp:
            self.queue.add(f"{pod.metadata.namespace}/{pod.metadata.name}")

    def start(self) -> None:
        self.pending.add_handler(on_add=self._enqueue, on_update=lambda _o, n: self._enqueue(n))
        self.nodes.add_handler(on_add=self._requeue_unschedulable, on_update=self._node_changed)
        self.pods.add_handler(on_delete=self._requeue_unschedulable)
        for inf in (self.nodes, self.pods, self.pending):
            inf.start()
        for inf in (self.nodes, self.pods, self.pending):
            inf.wait_synced()
        for i in range(self.config.workers):
            threading.Thread(target=self._worker, name=f"scheduler-{i}", daemon=True).start()
        log.info("scheduler started")

    def _node_changed(self, old: t.Node, new: t.Node) -> None:
        if old.metadata.resourceVersion != new.metadata.resourceVersion:
            self._requeue_unschedulable()

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        for inf in (self.nodes, self.pods, self.pending):
            inf.stop()

    def snapshot(self) -> Snapshot:
        by_node: dict[str, list[t.Pod]] = {}
        for p in self.pods.list():
            if p.spec.nodeName and (p.status is None or p.status.phase not in ("Succeeded", "Failed")):
                by_node.setdefault(p.spec.nodeName, []).append(p)
        return Snapshot([NodeInfo(n, by_node.get(n.metadata.name or "", [])) for n in self.nodes.list()])

    def _worker(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get()
            if key is None:
                return
            try:
                self.sync(key)
                self.queue.forget(key)
            except MiniK8sError as exc:
                log.warning("scheduling failed, retrying", extra={"pod": key, "error": exc.message})
                self.queue.add_rate_limited(key)
            except Exception:
                log.exception("scheduling crashed", extra={"pod": key})
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    def sync(self, key: str) -> None:
        pod = self.pending.get(key)
        if pod is None or pod.spec.nodeName or pod.metadata.deletionTimestamp:
            return
        if pod.spec.schedulerName not in (None, "default-scheduler"):
            return
        snap = self.snapshot()
        placement = schedule(pod, snap)
        ns, name = pod.metadata.namespace or "default", pod.metadata.name or ""
        if placement.node is None:
            message = placement.message(len(snap.nodes))
            self._mark_unschedulable(pod, message)
            with self._lock:
                self._unschedulable.add(key)
            self.queue.add_after(key, self.config.retry_unschedulable_s)
            return
        try:
            self.client.bind(name, placement.node, ns)
        except (Conflict, NotFound):
            return  # bound by someone else, or gone: nothing to do
        self.events.record(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {placement.node}")
        log.info("bound", extra={"pod": key, "node": placement.node})

    def _mark_unschedulable(self, pod: t.Pod, message: str) -> None:
        conds = (pod.status.conditions if pod.status else None) or []
        current = next((c for c in conds if c.type == "PodScheduled"), None)
        if current and current.status == "False" and current.message == message:
            return
        cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
        others = [c.to_dict() for c in conds if c.type != "PodScheduled"]
        try:
            self.client.patch("Pod", pod.metadata.name or "", {"status": {"conditions": [*others, cond]}},
                              pod.metadata.namespace, subresource="status")
        except NotFound:
            return
        self.events.record(pod, "Warning", "FailedScheduling", message)
