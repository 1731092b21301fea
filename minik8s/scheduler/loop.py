"""The scheduler component: informers feed an incremental cache; one thread decides, a pool binds.

Decisions stay single-threaded so each one sees every earlier decision (assumed in the
cache before its bind is sent); the HTTP calls (binding, status, events) go to a small
thread pool so a decision never waits for the API server.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from minik8s.api import types as t
from minik8s.client import Client, Informer, WorkQueue
from minik8s.client.events import EventRecorder
from minik8s.errors import Conflict, MiniK8sError, NotFound
from minik8s.health import WATCHDOG
from minik8s.scheduler import preemption
from minik8s.scheduler.cache import SchedulerCache
from minik8s.scheduler.policy import POLICIES, UNRESOLVABLE, Placement, Policy, fits
from minik8s.scheduler.queue import PriorityWorkQueue
from minik8s.scheduler.snapshot import pod_key

log = logging.getLogger("minik8s.scheduler")

SCHEDULER_NAME = "default-scheduler"


@dataclass
class SchedulerConfig:
    policy: str = "default"  # a key of policy.POLICIES: "default" (filter + score) or "round-robin"
    scheduler_name: str = SCHEDULER_NAME  # pods naming another spec.schedulerName are left alone
    bind_workers: int = 16  # concurrent binding/status/event requests; decisions stay on one thread
    max_inflight_binds: int = 512  # decisions wait when this many API calls are queued (back-pressure)
    record_scheduled_events: bool = True  # a "Scheduled" Event per bind, as kube-scheduler writes
    retry_unschedulable_s: float = 5.0  # also retried at once when nodes or pods change
    resync_s: float = 30.0
    event_writers: int = 4  # threads sending the Scheduled events (the bind workers never wait for them)
    event_flush_s: float = 30.0  # on stop, how long queued events may take to go out


class Scheduler:
    def __init__(self, client: Client, config: SchedulerConfig | None = None) -> None:
        self.client = client
        self.config = config or SchedulerConfig()
        if self.config.policy not in POLICIES:
            raise ValueError(f"unknown scheduler policy {self.config.policy!r}: one of {', '.join(POLICIES)}")
        self.policy: Policy = POLICIES[self.config.policy]
        self.cache = SchedulerCache()
        self.pods = Informer(client, "Pod", resync_seconds=self.config.resync_s)
        self.queue: WorkQueue = PriorityWorkQueue(self._priority_of)
        self.nodes = Informer(client, "Node", resync_seconds=self.config.resync_s)
        self.namespaces = Informer(client, "Namespace", resync_seconds=self.config.resync_s)
        self.pdbs = Informer(client, "PodDisruptionBudget", resync_seconds=self.config.resync_s)
        # pending pods that preempted others: key -> the pod, held on its nominated node for pods not above it
        self._nominated: dict[str, t.Pod] = {}
        # events go out from their own thread, like kube-scheduler's broadcaster: never ahead of a bind
        self.events = EventRecorder(client, self.config.scheduler_name, asynchronous=True,
                                    writers=self.config.event_writers)
        self._pool = ThreadPoolExecutor(self.config.bind_workers, thread_name_prefix="scheduler-bind")
        self._inflight = threading.BoundedSemaphore(self.config.max_inflight_binds)
        self._stop = threading.Event()
        self._unschedulable: set[str] = set()
        self._lock = threading.Lock()
        self._last_node: str | None = None  # round-robin's cursor
        self._thread: threading.Thread | None = None

    # --- informer handlers ---------------------------------------------------------------------
    def _requeue_unschedulable(self, *_args: Any) -> None:
        with self._lock:
            keys, self._unschedulable = self._unschedulable, set()
        for key in keys:
            self.queue.add(key)

    def _priority_of(self, key: str) -> int:
        pod = self.pods.get(key)
        return preemption.priority(pod) if pod is not None else 0

    def _track_nomination(self, pod: t.Pod) -> None:
        key = pod_key(pod)
        with self.cache.lock:
            if not pod.spec.nodeName and pod.status and pod.status.nominatedNodeName and \
                    not pod.metadata.deletionTimestamp:
                self._nominated[key] = pod
            else:
                self._nominated.pop(key, None)

    def _pod_added(self, pod: t.Pod) -> None:
        self.cache.update_pod(pod)
        self._track_nomination(pod)
        self._enqueue(pod)

    def _pod_updated(self, old: t.Pod, new: t.Pod) -> None:
        self.cache.update_pod(new)
        self._track_nomination(new)
        with self._lock:
            waiting = pod_key(new) in self._unschedulable
        if waiting and old.spec == new.spec and old.metadata.labels == new.metadata.labels:
            return  # e.g. our own PodScheduled=False write: the retry timer or a cluster change requeues it
        self._enqueue(new)
        if old.spec.nodeName and new.status and new.status.phase in ("Succeeded", "Failed") and \
                not (old.status and old.status.phase in ("Succeeded", "Failed")):
            self._requeue_unschedulable()  # its resources are free again

    def _pod_deleted(self, pod: t.Pod) -> None:
        self.cache.remove_pod(pod)
        with self.cache.lock:
            self._nominated.pop(pod_key(pod), None)
        if pod.spec.nodeName:
            self._requeue_unschedulable()

    def _node_added(self, node: t.Node) -> None:
        self.cache.set_node(node)
        self._requeue_unschedulable()

    def _node_changed(self, old: t.Node, new: t.Node) -> None:
        self.cache.set_node(new)
        if old.metadata.resourceVersion != new.metadata.resourceVersion:
            self._requeue_unschedulable()

    def _mine(self, pod: t.Pod) -> bool:
        return (pod.spec.schedulerName or SCHEDULER_NAME) == self.config.scheduler_name

    def _enqueue(self, pod: t.Pod) -> None:
        if not pod.spec.nodeName and not pod.metadata.deletionTimestamp and \
                self._mine(pod):
            self.queue.add(pod_key(pod))

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self.namespaces.add_handler(on_add=self.cache.set_namespace,
                                    on_update=lambda _o, n: self.cache.set_namespace(n))
        self.nodes.add_handler(on_add=self._node_added, on_update=self._node_changed,
                               on_delete=self.cache.remove_node)
        self.pods.add_handler(on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted)
        informers = (self.namespaces, self.nodes, self.pdbs, self.pods)
        for inf in informers:
            inf.start()
        for inf in informers:
            inf.wait_synced()
        self._thread = threading.Thread(target=self._decide_loop, name="scheduler", daemon=True)
        self._thread.start()
        log.info("scheduler started", extra={"policy": self.config.policy})

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        for inf in (self.namespaces, self.nodes, self.pdbs, self.pods):
            inf.stop()
        if self._thread:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.events.close(self.config.event_flush_s)

    # --- the decision loop ---------------------------------------------------------------------
    def _decide_loop(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get()
            if key is None:
                return
            try:
                with WATCHDOG.busy("scheduler-decide"):
                    self.sync(key)
            except Exception:
                log.exception("scheduling crashed", extra={"pod": key})
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    def sync(self, key: str) -> None:
        """Decide for one pending pod; the bind (or the unschedulable report) is sent from the pool."""
        pod: t.Pod | None = self.pods.get(key)
        if pod is None or pod.spec.nodeName or pod.metadata.deletionTimestamp or \
                not self._mine(pod):
            return
        with self.cache.lock:
            if self.cache.is_assumed(key):
                return  # already decided; the bind is in flight or the informer has not caught up
            placement = self._place(pod)
            total = len(self.cache.snapshot.nodes)
            candidate = None
            if placement.node is not None:
                self.cache.assume(pod, placement.node)
                self._last_node = placement.node
                self._nominated.pop(key, None)
            elif preemption.eligible(pod, self.cache.snapshot):
                resolvable = {n: r for n, r in placement.failed.items() if r not in UNRESOLVABLE}
                candidate = preemption.preempt(pod, self.cache.snapshot, resolvable, fits,
                                               [b.to_dict() for b in self.pdbs.list()])
                if candidate is not None:  # hold the node for it at once, before the victims are gone
                    status = (pod.status or t.PodStatus()).model_copy(update={"nominatedNodeName": candidate.node})
                    self._nominated[key] = pod.model_copy(update={"status": status})
        if candidate is not None:
            self._inflight.acquire()
            self._submit(self._preempt, pod, candidate)
        self._inflight.acquire()
        if placement.node is None:
            with self._lock:
                self._unschedulable.add(key)
            self.queue.add_after(key, self.config.retry_unschedulable_s)
            self._submit(self._report_unschedulable, pod, placement, total)
        else:
            self.queue.forget(key)
            self._submit(self._bind, pod, placement.node)

    def _place(self, pod: t.Pod) -> Placement:
        """Decide with the pods nominated to nodes (of at least this pod's priority) counted there, as
        kube-scheduler does, so a lower-priority pod cannot take the room a preemption made. Caller holds
        the cache lock."""
        snap = self.cache.snapshot
        key = pod_key(pod)
        held = [p for k, p in self._nominated.items() if k != key and
                preemption.priority(p) >= preemption.priority(pod) and snap.node_of(k) is None]
        for p in held:
            node = p.status.nominatedNodeName if p.status else None
            snap.add_pod(p.model_copy(update={"spec": p.spec.model_copy(update={"nodeName": node})}))
        try:
            return self.policy.schedule(pod, snap, self._last_node)
        finally:
            for p in held:
                snap.remove_pod(pod_key(p))

    def _submit(self, fn: Any, *args: Any) -> None:
        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("scheduler API call crashed", extra={"call": getattr(fn, "__name__", "?")})
            finally:
                self._inflight.release()
        try:
            self._pool.submit(run)
        except RuntimeError:  # the pool is shut down: we are stopping
            self._inflight.release()

    # --- API calls (pool threads) ----------------------------------------------------------------
    def _bind(self, pod: t.Pod, node: str) -> None:
        ns, name = pod.metadata.namespace or "default", pod.metadata.name or ""
        try:
            self.client.bind(name, node, ns)
        except (Conflict, NotFound):
            self.cache.forget(pod)  # bound by someone else, or gone: the informer has the truth
            return
        except MiniK8sError as exc:
            self.cache.forget(pod)
            log.warning("binding failed, retrying", extra={"pod": pod_key(pod), "node": node, "error": exc.message})
            self.queue.add_rate_limited(pod_key(pod))
            return
        if self.config.record_scheduled_events:
            self.events.record(pod, "Normal", "Scheduled", f"Successfully assigned {ns}/{name} to {node}")
        log.debug("bound", extra={"pod": pod_key(pod), "node": node})

    def _preempt(self, pod: t.Pod, candidate: preemption.Candidate) -> None:
        """Nominate the node on the preemptor, then delete the victims gracefully (they get their grace period)."""
        ns, name = pod.metadata.namespace or "default", pod.metadata.name or ""
        try:
            self.client.patch("Pod", name, {"status": {"nominatedNodeName": candidate.node}}, ns,
                              subresource="status")
        except NotFound:
            return
        except MiniK8sError as exc:
            log.warning("could not nominate a node", extra={"pod": pod_key(pod), "error": exc.message})
        for victim in candidate.victims:
            if victim.metadata.deletionTimestamp:
                continue
            try:
                self.client.delete("Pod", victim.metadata.name or "", victim.metadata.namespace)
            except NotFound:
                continue
            except MiniK8sError as exc:
                log.warning("could not delete a preemption victim", extra={"pod": pod_key(victim),
                                                                           "error": exc.message})
                continue
            self.events.record(victim, "Normal", "Preempted",
                               f"Preempted by pod {pod.metadata.uid} on node {candidate.node}")
        log.info("preempted", extra={"pod": pod_key(pod), "node": candidate.node,
                                     "victims": [pod_key(v) for v in candidate.victims]})

    def _report_unschedulable(self, pod: t.Pod, placement: Placement, total: int) -> None:
        """PodScheduled=False with the reasons, and a FailedScheduling event."""
        message = placement.message(total)
        conds = (pod.status.conditions if pod.status else None) or []
        current = next((c for c in conds if c.type == "PodScheduled"), None)
        if not (current and current.status == "False" and current.message == message):
            cond = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}
            others = [c.to_dict() for c in conds if c.type != "PodScheduled"]
            try:
                self.client.patch("Pod", pod.metadata.name or "", {"status": {"conditions": [*others, cond]}},
                                  pod.metadata.namespace, subresource="status")
            except NotFound:
                return
            except MiniK8sError as exc:
                log.warning("could not mark pod unschedulable", extra={"pod": pod_key(pod), "error": exc.message})
        self.events.record(pod, "Warning", "FailedScheduling", message)
        log.info("unschedulable", extra={"pod": pod_key(pod), "reason": message})
