"""The scheduler's view of the cluster: nodes with their pods and running totals.

A `NodeInfo` keeps the requested cpu/memory and a count of pods per owner up to date as
pods are added and removed, so a placement decision costs O(nodes), not O(pods). The
`Snapshot` routes pods to their node and indexes the pods that carry required
anti-affinity terms (the only existing pods a new pod must check besides its own terms).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator

from minik8s.api import types as t
from minik8s.api.quantity import QuantityError, cpu_millis, memory_bytes

DEFAULT_MAX_PODS = 110
TERMINAL_PHASES = ("Succeeded", "Failed")

OwnerKey = tuple[str, ...]


def pod_key(pod: t.Pod) -> str:
    return f"{pod.metadata.namespace or 'default'}/{pod.metadata.name}"


def container_requests(c: t.Container) -> tuple[int, int]:
    """(cpu millicores, memory bytes) of one container; without requests its limits count, as Kubernetes defaults."""
    req = (c.resources.requests if c.resources else None) or {}
    lim = (c.resources.limits if c.resources else None) or {}
    try:
        return cpu_millis(req.get("cpu", lim.get("cpu", 0))), memory_bytes(req.get("memory", lim.get("memory", 0)))
    except QuantityError:
        return 0, 0  # the API server rejects bad quantities; never crash the scheduler on one


def pod_requests(pod: t.Pod) -> tuple[int, int]:
    """(cpu millicores, memory bytes) as kube-scheduler computes a pod's requests: the app containers and the
    sidecars run together; each regular init container runs alone beside the sidecars declared before it; the pod
    needs the most of these, per resource."""
    cpu = mem = 0
    for c in pod.spec.containers:
        c_cpu, c_mem = container_requests(c)
        cpu, mem = cpu + c_cpu, mem + c_mem
    side_cpu = side_mem = init_cpu = init_mem = 0
    for c in pod.spec.initContainers or []:
        c_cpu, c_mem = container_requests(c)
        if c.restartPolicy == "Always":  # a sidecar: it keeps running next to what follows it
            side_cpu, side_mem = side_cpu + c_cpu, side_mem + c_mem
            cpu, mem = cpu + c_cpu, mem + c_mem
            c_cpu, c_mem = side_cpu, side_mem
        else:
            c_cpu, c_mem = c_cpu + side_cpu, c_mem + side_mem
        init_cpu, init_mem = max(init_cpu, c_cpu), max(init_mem, c_mem)
    return max(cpu, init_cpu), max(mem, init_mem)


def owner_key(pod: t.Pod) -> OwnerKey | None:
    """Pods that spread together: same controller uid, else same namespace and labels; None for neither."""
    for ref in pod.metadata.ownerReferences or []:
        if ref.controller:
            return ("uid", ref.uid)
    labels = pod.metadata.labels
    if labels:
        return ("labels", pod.metadata.namespace or "default", *sorted(f"{k}={v}" for k, v in labels.items()))
    return None


def has_required_anti_affinity(pod: t.Pod) -> bool:
    aff = pod.spec.affinity
    return bool(aff and aff.podAntiAffinity and aff.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution)


def _allocatable(node: t.Node | None) -> tuple[int, int, int]:
    alloc = ((node.status.allocatable if node and node.status else None) or {})
    try:
        return (cpu_millis(alloc.get("cpu", 0)), memory_bytes(alloc.get("memory", 0)),
                int(alloc.get("pods", DEFAULT_MAX_PODS)))
    except (QuantityError, ValueError):
        return 0, 0, 0  # a node with unreadable capacity fits nothing rather than everything


class NodeInfo:
    """One node and the pods bound (or assumed bound) to it. `node` is None while only its pods are known."""

    def __init__(self, node: t.Node | None, pods: Iterable[t.Pod] = ()) -> None:
        self.name = ""
        self.node: t.Node | None = None
        self.labels: dict[str, str] = {}
        self.alloc = (0, 0, 0)
        # facts of the Node object, computed once per node update rather than once per decision
        self.ready = False
        self.unschedulable = False
        self.taints: list[t.Taint] = []
        self.pods: dict[str, t.Pod] = {}
        self._requests: dict[str, tuple[int, int]] = {}
        self.cpu = self.mem = 0
        self.owners: Counter[OwnerKey] = Counter()
        self.set_node(node)
        for p in pods:
            self.add_pod(p)

    def set_node(self, node: t.Node | None) -> None:
        self.node = node
        if node is not None:
            self.name = node.metadata.name or ""
            self.labels = node.metadata.labels or {}
        self.alloc = _allocatable(node)
        conds = (node.status.conditions if node and node.status else None) or []
        self.ready = any(cond.type == "Ready" and cond.status == "True" for cond in conds)
        self.unschedulable = bool(node and node.spec.unschedulable)
        self.taints = list((node.spec.taints if node else None) or [])

    def add_pod(self, pod: t.Pod) -> None:
        key = pod_key(pod)
        self.remove_pod(key)
        cpu, mem = pod_requests(pod)
        self.pods[key] = pod
        self._requests[key] = (cpu, mem)
        self.cpu, self.mem = self.cpu + cpu, self.mem + mem
        owner = owner_key(pod)
        if owner is not None:
            self.owners[owner] += 1

    def remove_pod(self, key: str) -> t.Pod | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        cpu, mem = self._requests.pop(key)
        self.cpu, self.mem = self.cpu - cpu, self.mem - mem
        owner = owner_key(pod)
        if owner is not None:
            self.owners[owner] -= 1
            if self.owners[owner] <= 0:
                del self.owners[owner]
        return pod

    def allocatable(self) -> tuple[int, int, int]:
        return self.alloc

    def requested(self) -> tuple[int, int, int]:
        return self.cpu, self.mem, len(self.pods)


class Snapshot:
    """All nodes by name plus where each pod sits. Mutate only through its methods."""

    def __init__(self, nodes: Iterable[NodeInfo] = (), namespace_labels: dict[str, dict[str, str]] | None = None):
        self._infos: dict[str, NodeInfo] = {}
        self._where: dict[str, str] = {}
        self.anti_affinity_pods: dict[str, t.Pod] = {}
        self.namespace_labels: dict[str, dict[str, str]] = namespace_labels or {}
        self._sorted: list[NodeInfo] | None = None
        for ni in nodes:
            self._infos[ni.name] = ni
            for key, pod in ni.pods.items():
                self._where[key] = ni.name
                if has_required_anti_affinity(pod):
                    self.anti_affinity_pods[key] = pod

    @classmethod
    def build(cls, nodes: Iterable[t.Node], pods: Iterable[t.Pod]) -> Snapshot:
        """From plain lists: bound, non-terminal pods count against their node."""
        snap = cls()
        for n in nodes:
            snap.set_node(n)
        for p in pods:
            snap.add_pod(p)
        return snap

    @property
    def nodes(self) -> list[NodeInfo]:
        """Known nodes in name order (cached until the node set changes)."""
        if self._sorted is None:
            self._sorted = sorted((ni for ni in self._infos.values() if ni.node is not None), key=lambda ni: ni.name)
        return self._sorted

    def get(self, name: str) -> NodeInfo | None:
        ni = self._infos.get(name)
        return ni if ni is not None and ni.node is not None else None

    def set_node(self, node: t.Node) -> None:
        name = node.metadata.name or ""
        ni = self._infos.get(name)
        if ni is None:
            self._infos[name] = NodeInfo(node)
            self._sorted = None
        else:
            if ni.node is None:
                self._sorted = None
            ni.set_node(node)

    def remove_node(self, name: str) -> None:
        """Forget the node; its pods stay accounted in case it comes back before they are deleted."""
        ni = self._infos.get(name)
        if ni is None:
            return
        ni.set_node(None)
        self._sorted = None
        if not ni.pods:
            del self._infos[name]

    def node_of(self, key: str) -> str | None:
        return self._where.get(key)

    def add_pod(self, pod: t.Pod) -> None:
        """Account a pod on `pod.spec.nodeName`; unbound and finished pods are removed instead."""
        key = pod_key(pod)
        self.remove_pod(key)
        node = pod.spec.nodeName
        if not node or (pod.status is not None and pod.status.phase in TERMINAL_PHASES):
            return
        ni = self._infos.get(node)
        if ni is None:
            ni = self._infos[node] = NodeInfo(None)
            ni.name = node
        ni.add_pod(pod)
        self._where[key] = node
        if has_required_anti_affinity(pod):
            self.anti_affinity_pods[key] = pod

    def remove_pod(self, key: str) -> None:
        node = self._where.pop(key, None)
        self.anti_affinity_pods.pop(key, None)
        if node is None:
            return
        ni = self._infos.get(node)
        if ni is not None:
            ni.remove_pod(key)
            if ni.node is None and not ni.pods:
                del self._infos[node]

    def pods(self) -> Iterator[tuple[t.Pod, NodeInfo]]:
        """Every accounted pod with its (known) node."""
        for ni in self.nodes:
            for pod in ni.pods.values():
                yield pod, ni
