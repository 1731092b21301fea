"""Node lifecycle: notice nodes whose kubelet went quiet or not ready, and taint them.

Like kube-controller-manager's node lifecycle controller:
- a node whose Lease was not renewed for `node_monitor_grace_s` gets Ready=Unknown
  ("Kubelet stopped posting node status.") and the `node.kubernetes.io/unreachable` NoExecute taint;
  a node whose kubelet reports Ready=False gets `node.kubernetes.io/not-ready` instead;
- the pods on a tainted node are evicted by the taint eviction controller (`tainteviction`), after
  the tolerationSeconds of their tolerations of that taint (300 s by default, added at admission
  from the cluster's --pod-eviction-timeout), or at once when they do not tolerate it;
- pods bound to a node that no longer exists are deleted at once (pod garbage collection);
- when the kubelet posts Ready again, the taint goes.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minik8s.api import types as t
from minik8s.client import Client, InformerFactory
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for
from minik8s.errors import MiniK8sError, NotFound
from minik8s.health import WATCHDOG

log = logging.getLogger("minik8s.controllers.nodelifecycle")

UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
NOT_READY_TAINT = "node.kubernetes.io/not-ready"
_LIFECYCLE_TAINTS = (UNREACHABLE_TAINT, NOT_READY_TAINT)
LEASE_NAMESPACE = "kube-node-lease"


@dataclass
class NodeLifecycleConfig:
    node_monitor_grace_s: float = 40.0  # kube-controller-manager's --node-monitor-grace-period
    period_s: float = 2.0  # how often nodes are checked


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


class NodeLifecycleController:
    def __init__(self, client: Client, config: NodeLifecycleConfig | None = None,
                 clock: Callable[[], dt.datetime] = _now, informers: InformerFactory | None = None) -> None:
        self.client = client
        self.config = config or NodeLifecycleConfig()
        self.clock = clock
        self.nodes = informer_for(informers, client, "Node")
        self.leases = informer_for(informers, client, "Lease", LEASE_NAMESPACE)
        self.pods = informer_for(informers, client, "Pod")
        self.events = EventRecorder(client, "node-controller")
        self._first_seen: dict[str, dt.datetime] = {}
        self._stop = threading.Event()

    def start(self) -> None:
        for inf in (self.nodes, self.leases, self.pods):
            inf.start()
        for inf in (self.nodes, self.leases, self.pods):
            inf.wait_synced()
        threading.Thread(target=self._loop, name="node-lifecycle", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for inf in (self.nodes, self.leases, self.pods):
            inf.stop()

    def _loop(self) -> None:
        WATCHDOG.expect("node-lifecycle", self.config.period_s)
        while not self._stop.wait(self.config.period_s):
            WATCHDOG.beat("node-lifecycle")
            try:
                self.reconcile()
            except MiniK8sError as exc:
                log.warning("node lifecycle pass failed", extra={"error": exc.message})
            except Exception:
                log.exception("node lifecycle pass crashed")

    # --- one pass ----------------------------------------------------------------------------
    def reconcile(self) -> None:
        now = self.clock()
        nodes = {n.metadata.name: n for n in self.nodes.list()}
        for node in nodes.values():
            self._check_node(node, now)
        self._collect_orphans(set(nodes))

    def _last_heartbeat(self, node: t.Node) -> dt.datetime | None:
        """The newest sign of life: Lease renewal, Ready heartbeat, or the Node's creation (a fresh node
        gets a full grace period even when a Lease of an earlier node of that name is still around)."""
        name = node.metadata.name or ""
        lease = self.leases.get(f"{LEASE_NAMESPACE}/{name}")
        times = [_parse(lease.spec.renewTime)] if lease else []
        times.append(_parse(node.metadata.creationTimestamp))
        for c in (node.status.conditions if node.status else None) or []:
            if c.type == "Ready":
                times.append(_parse(c.lastHeartbeatTime))
        known = [x for x in times if x is not None]
        return max(known) if known else None

    def _check_node(self, node: t.Node, now: dt.datetime) -> None:
        name = node.metadata.name or ""
        seen = self._first_seen.setdefault(node.metadata.uid or name, now)
        # Like Kubernetes' node controller, a node gets a full grace period from when this controller
        # first saw it: after a control-plane restart the kubelets need time to reconnect.
        beat = max(self._last_heartbeat(node) or seen, seen)
        ready = self._ready(node)
        silent = (now - beat).total_seconds() > self.config.node_monitor_grace_s
        if silent and ready is not None and ready.status != "Unknown":
            self._mark_unknown(node, now)
            ready = self._ready(self.nodes.get(name) or node)
        wanted = self._wanted_taint(ready, silent)
        current = [tn for tn in node.spec.taints or [] if tn.key in _LIFECYCLE_TAINTS]
        if [tn.key for tn in current] != ([wanted] if wanted else []):
            self._set_taint(node, wanted, _iso(now))

    @staticmethod
    def _wanted_taint(ready: t.Condition | None, silent: bool) -> str | None:
        """unreachable for a silent node (or Ready Unknown), not-ready for Ready False, none when Ready."""
        if silent or (ready is not None and ready.status == "Unknown"):
            return UNREACHABLE_TAINT
        if ready is not None and ready.status == "False":
            return NOT_READY_TAINT
        return None

    @staticmethod
    def _ready(node: t.Node) -> t.Condition | None:
        return next((c for c in (node.status.conditions if node.status else None) or [] if c.type == "Ready"), None)

    def _mark_unknown(self, node: t.Node, now: dt.datetime) -> None:
        name = node.metadata.name or ""
        conds = []
        for c in (node.status.conditions if node.status else None) or []:
            d = c.to_dict()
            if d["status"] != "Unknown":
                d.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                         lastTransitionTime=_iso(now))
            conds.append(d)
        try:
            self.client.patch("Node", name, {"status": {"conditions": conds}}, None, subresource="status")
        except NotFound:
            return
        log.warning("node stopped posting status", extra={"node": name})
        self.events.record(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady")

    def _set_taint(self, node: t.Node, key: str | None, added: str) -> None:
        """Replace this controller's taint; `timeAdded` starts the tolerationSeconds of the pods' tolerations."""
        taints = [tn.to_dict() for tn in node.spec.taints or [] if tn.key not in _LIFECYCLE_TAINTS]
        if key:
            taints.append({"key": key, "effect": "NoExecute", "timeAdded": added})
        try:
            self.client.patch("Node", node.metadata.name or "", {"spec": {"taints": taints or None}}, None)
        except NotFound:
            return

    def _collect_orphans(self, node_names: set[str]) -> None:
        for pod in self.pods.list():
            if pod.spec.nodeName and pod.spec.nodeName not in node_names:
                self._delete(pod, 0, f"Deleting pod bound to node {pod.spec.nodeName}, which no longer exists")
        for lease in self.leases.list():
            if lease.metadata.name not in node_names:
                try:
                    self.client.delete("Lease", lease.metadata.name or "", LEASE_NAMESPACE)
                except NotFound:
                    continue

    def _delete(self, pod: Any, grace: int | None, message: str) -> None:
        try:
            self.client.delete("Pod", pod.metadata.name or "", pod.metadata.namespace, grace_period_seconds=grace)
        except NotFound:
            return
        log.info(message)
        self.events.record(pod, "Normal", "PodGC", message)
