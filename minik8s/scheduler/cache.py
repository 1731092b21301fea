"""The scheduler's incremental cache: a Snapshot kept current from informer events and own binds.

A bind is "assumed" the moment it is decided, so the next decision already counts it, long
before the watch event confirms it (Kubernetes' scheduler cache does the same). An assumed
pod stays where it was assumed until the informer shows it bound (anywhere) or deleted, or
the bind fails and it is forgotten.
"""

from __future__ import annotations

import threading

from minik8s.api import types as t
from minik8s.scheduler.snapshot import Snapshot, pod_key


class SchedulerCache:
    def __init__(self) -> None:
        self.lock = threading.RLock()  # held by the decision loop for the length of one decision
        self.snapshot = Snapshot()
        self._assumed: set[str] = set()

    # --- informer events ---------------------------------------------------------------------
    def set_node(self, node: t.Node) -> None:
        with self.lock:
            self.snapshot.set_node(node)

    def remove_node(self, node: t.Node) -> None:
        with self.lock:
            self.snapshot.remove_node(node.metadata.name or "")

    def set_namespace(self, ns: t.Namespace) -> None:
        with self.lock:
            self.snapshot.namespace_labels[ns.metadata.name or ""] = ns.metadata.labels or {}

    def update_pod(self, pod: t.Pod) -> None:
        key = pod_key(pod)
        with self.lock:
            if key in self._assumed:
                if not pod.spec.nodeName:
                    return  # an event from before our bind landed: keep the assumed placement
                self._assumed.discard(key)
            self.snapshot.add_pod(pod)

    def remove_pod(self, pod: t.Pod) -> None:
        key = pod_key(pod)
        with self.lock:
            self._assumed.discard(key)
            self.snapshot.remove_pod(key)

    # --- own decisions -----------------------------------------------------------------------
    def assume(self, pod: t.Pod, node: str) -> None:
        bound = pod.model_copy(update={"spec": pod.spec.model_copy(update={"nodeName": node})})
        with self.lock:
            self.snapshot.add_pod(bound)
            self._assumed.add(pod_key(pod))

    def forget(self, pod: t.Pod) -> None:
        """The bind failed: undo the assumption (no-op once the informer has shown the pod bound)."""
        key = pod_key(pod)
        with self.lock:
            if key in self._assumed:
                self._assumed.discard(key)
                self.snapshot.remove_pod(key)

    def is_assumed(self, key: str) -> bool:
        with self.lock:
            return key in self._assumed
