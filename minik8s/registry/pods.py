"""Pods: defaults and QoS class, a bound pod stays on its node, graceful deletion, and the binding."""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any

from minik8s import jsonc
from minik8s.api.config import pod_config_defaults
from minik8s.api.strategy import Obj, ServerView, Strategy
from minik8s.api.timefmt import now_iso
from minik8s.api.validation import Causes
from minik8s.errors import Conflict, Invalid, NotFound, details

if TYPE_CHECKING:
    from minik8s.api.kinds import KindInfo

DEFAULT_GRACE_S = 30
RECENT_PODS = 10000  # new pods remembered for their binding (~1 KB each)


def pod_defaults(obj: Obj) -> None:
    spec = obj["spec"]
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", DEFAULT_GRACE_S)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    pod_config_defaults(spec)
    for c in [*(spec.get("initContainers") or []), *spec["containers"]]:
        image = str(c.get("image", ""))
        tag = image.rsplit("/", 1)[-1]
        latest = ":" not in tag or tag.endswith(":latest")
        c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        for p in c.get("ports") or []:
            p.setdefault("protocol", "TCP")
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", qos_class(spec))


def qos_class(spec: Obj) -> str:
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]  # as Kubernetes counts
    reqs = [((c.get("resources") or {}).get("requests") or {}) for c in containers]
    lims = [((c.get("resources") or {}).get("limits") or {}) for c in containers]
    if not any(reqs) and not any(lims):
        return "BestEffort"
    guaranteed = all(
        all(r in lim for r in ("cpu", "memory")) and all(str(req.get(r, lim[r])) == str(lim[r]) for r in lim)
        for req, lim in zip(reqs, lims, strict=True)
    )
    return "Guaranteed" if guaranteed else "Burstable"


class RecentWrites:
    """What this server last wrote for up to `size` keys (oldest forgotten first), as encoded bytes, so
    a write that soon follows (a new pod's binding) can compare-and-swap on it without reading it back.
    A stale entry (someone wrote the key since) only costs that write its conflict and a read."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put(self, key: str, obj: Obj) -> None:
        value = jsonc.dumps(obj)
        with self._lock:
            self._items.pop(key, None)
            if len(self._items) >= self._size:
                del self._items[next(iter(self._items))]
            self._items[key] = value

    def take(self, key: str) -> Obj | None:
        """The remembered object (a fresh copy, with its resourceVersion), forgetting it."""
        with self._lock:
            value = self._items.pop(key, None)
        return jsonc.loads(value) if value is not None else None

    def forget(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)


class PodStrategy(Strategy):
    def __init__(self, server: ServerView) -> None:
        super().__init__(server)
        self.recent = RecentWrites(RECENT_PODS)  # new pods, for their binding

    def prepare_for_create(self, obj: Obj) -> None:
        pod_defaults(obj)

    def prepare_for_update(self, new: Obj, old: Obj) -> None:
        if "spec" in new:
            pod_defaults(new)

    def validate_update(self, new: Obj, old: Obj) -> Causes:
        old_node = old["spec"].get("nodeName")
        if old_node and new["spec"].get("nodeName") != old_node:
            return [("spec.nodeName", "Forbidden: a bound pod cannot move to another node")]
        return []

    def after_create(self, key: str, created: Obj) -> None:
        if not created["spec"].get("nodeName"):
            self.recent.put(key, created)

    def after_write(self, key: str) -> None:
        self.recent.forget(key)

    def delete(self, info: KindInfo, current: Obj, grace: int | None) -> Obj:
        """A pod running on a node is deleted gracefully: marked here, stopped and deleted by its kubelet."""
        meta = current["metadata"]
        if grace is None:
            grace = int(current["spec"].get("terminationGracePeriodSeconds", DEFAULT_GRACE_S))
        running = bool(current["spec"].get("nodeName")) and (current.get("status") or {}).get("phase") not in (
            "Succeeded", "Failed")
        if grace == 0 or not running:
            return self.server.delete_now(info, current)
        if meta.get("deletionTimestamp") and int(meta.get("deletionGracePeriodSeconds") or 0) <= grace:
            return current
        new = copy.deepcopy(current)
        new["metadata"]["deletionTimestamp"] = now_iso()
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        key = info.key(meta["namespace"], meta["name"])
        try:
            return self.server.store.update(key, new, int(meta["resourceVersion"]))
        except Conflict:
            return self.delete(info, self.server.get(info, meta["namespace"], meta["name"]), grace)

    def bind(self, info: KindInfo, namespace: str, name: str, binding: Any) -> Obj:
        """Assign the pod to a node: one compare-and-swap on the pod as this server last wrote it (a new
        pod), or as read from etcd when that is unknown or turns out stale."""
        target = (binding if isinstance(binding, dict) else {}).get("target") or {}
        node = target.get("name") if isinstance(target, dict) else None
        if not node:
            raise Invalid("Binding", name, [("target.name", "Required value")])
        if not isinstance(node, str):
            raise Invalid("Binding", name, [("target.name", f"Invalid value: {node!r}: must be a string")])
        key = info.key(namespace, name)
        pod = self.recent.take(key)
        remembered = pod is not None
        while True:
            if pod is None:
                pod = self.server.get(info, namespace, name)
            if pod["spec"].get("nodeName"):
                raise Conflict(f'Operation cannot be fulfilled on pods/binding "{name}": pod {name} is already '
                               f'assigned to node "{pod["spec"]["nodeName"]}"', details(name, "pods/binding"))
            pod["spec"]["nodeName"] = str(node)  # ours to change: decoded for this call alone
            conds = [c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastTransitionTime": now_iso()})
            pod.setdefault("status", {})["conditions"] = conds
            try:
                self.server.store.update(key, pod, int(pod["metadata"]["resourceVersion"]))
            except (Conflict, NotFound):
                if not remembered:
                    raise Conflict(f'Operation cannot be fulfilled on pods "{name}": the object has been '
                                   "modified; please apply your changes to the latest version and try again",
                                   {"name": name, "kind": "pods"}) from None
                pod, remembered = None, False  # someone wrote it since we did: read what is there now
                continue
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
