"""Endpoints controller: for each Service with a selector, an Endpoints object of the same name.

Like kube-controller-manager's endpoints controller: Ready pods (Ready condition True, a podIP,
no deletionTimestamp) go to `addresses`, the others with a podIP to `notReadyAddresses`; each
port's targetPort is resolved per pod (a number, or a container port name looked up in the
pod's containers; a pod without that named port is left out and a Warning event names it).
Pods whose ports resolve the same way share a subset; a headless Service without ports lists its pods
in one subset without ports. An address carries the pod's `hostname` when the pod's `subdomain` names
the Service (cluster DNS then answers `<hostname>.<service>.<ns>.svc`). Writes only when the subsets changed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from minik8s.api import types as t
from minik8s.api.podutil import sidecars
from minik8s.api.services import Service
from minik8s.client import Client, InformerFactory
from minik8s.client.events import EventRecorder
from minik8s.client.informer import informer_for
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import AlreadyExists, NotFound

log = logging.getLogger("minik8s.controllers.endpoints")

Obj = dict[str, Any]


@dataclass
class EndpointsConfig:
    workers: int = 2
    resync_s: float = 30.0


def pod_ready(pod: t.Pod) -> bool:
    for cond in (pod.status.conditions if pod.status else None) or []:
        if cond.type == "Ready":
            return cond.status == "True"
    return False


def selector_matches(selector: dict[str, str] | None, labels: dict[str, str] | None) -> bool:
    """A Service selector: equality on every key; an empty or missing selector selects nothing here."""
    if not selector:
        return False
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def resolve_port(pod: t.Pod, target: int | str | None, protocol: str) -> int | None:
    if target is None:
        return None
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    for c in [*pod.spec.containers, *sidecars(pod)]:  # a named port may be a native sidecar's, as in Kubernetes
        for cp in c.ports or []:
            if cp.name == target and (cp.protocol or "TCP") == protocol:
                return cp.containerPort
    return None


def compute_subsets(svc: Service, pods: list[t.Pod]) -> tuple[list[Obj], list[tuple[str, str]]]:
    """The wire `subsets` of the Service's Endpoints, and (pod name, port name) pairs that did not resolve.

    Deterministic: subsets sorted by their ports, addresses by IP, so an unchanged world compares equal."""
    groups: dict[tuple[tuple[str, int, str], ...], dict[str, list[Obj]]] = {}
    missing: list[tuple[str, str]] = []
    sel = svc.spec.selector
    for pod in pods:
        meta = pod.metadata
        if meta.namespace != svc.metadata.namespace or not selector_matches(sel, meta.labels):
            continue
        ip = pod.status.podIP if pod.status else None
        if not ip or meta.deletionTimestamp:
            continue
        if pod.status and pod.status.phase in ("Succeeded", "Failed"):
            continue
        ports: list[tuple[str, int, str]] = []
        for sp in svc.spec.ports or []:
            proto = sp.protocol or "TCP"
            number = resolve_port(pod, sp.targetPort if sp.targetPort is not None else sp.port, proto)
            if number is None:
                missing.append((meta.name or "", str(sp.targetPort)))
                continue
            ports.append((sp.name or "", number, proto))
        if not ports and (svc.spec.ports or svc.spec.clusterIP != "None"):
            continue  # a headless Service without ports still lists its pods (their DNS records)
        addr: Obj = {"ip": ip, "targetRef": {"kind": "Pod", "namespace": meta.namespace, "name": meta.name,
                                             "uid": meta.uid}}
        if pod.spec.hostname and pod.spec.subdomain == svc.metadata.name:
            addr["hostname"] = pod.spec.hostname  # cluster DNS answers <hostname>.<service>.<ns>.svc
        if pod.spec.nodeName:
            addr["nodeName"] = pod.spec.nodeName
        bucket = groups.setdefault(tuple(sorted(ports)), {"addresses": [], "notReadyAddresses": []})
        bucket["addresses" if pod_ready(pod) else "notReadyAddresses"].append(addr)
    subsets = []
    for ports_key in sorted(groups):
        bucket = groups[ports_key]
        subset: Obj = {}
        for field in ("addresses", "notReadyAddresses"):
            if bucket[field]:
                subset[field] = sorted(bucket[field], key=lambda a: (tuple(int(x) for x in a["ip"].split(".")),
                                                                     a["targetRef"]["name"]))
        if ports_key:
            subset["ports"] = [{**({"name": n} if n else {}), "port": num, "protocol": proto}
                               for n, num, proto in ports_key]
        subsets.append(subset)
    return subsets, missing


class EndpointsController(QueueWorkers):
    name = "endpoints"

    def __init__(self, client: Client, config: EndpointsConfig | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or EndpointsConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.services = informer_for(informers, client, "Service", resync_seconds=self.config.resync_s)
        self.pods = informer_for(informers, client, "Pod", resync_seconds=self.config.resync_s)
        self.endpoints = informer_for(informers, client, "Endpoints", resync_seconds=self.config.resync_s)
        self.events = EventRecorder(client, "endpoint-controller")
        self._warned: set[tuple[str, str, str]] = set()
        self.services.add_handler(on_add=self._enqueue_obj, on_update=lambda _o, n: self._enqueue_obj(n),
                                  on_delete=self._enqueue_obj)
        self.endpoints.add_handler(on_update=lambda _o, n: self._enqueue_obj(n), on_delete=self._enqueue_obj)
        self.pods.add_handler(on_add=self._pod_changed, on_update=self._pod_changed2, on_delete=self._pod_changed)

    # --- event handlers ----------------------------------------------------------------------
    @staticmethod
    def _key(obj: Any) -> str:
        return f"{obj.metadata.namespace}/{obj.metadata.name}"

    def _enqueue_obj(self, obj: Any) -> None:
        self.queue.add(self._key(obj))

    def _pod_changed(self, pod: t.Pod) -> None:
        self._pod_changed2(None, pod)

    def _pod_changed2(self, old: t.Pod | None, new: t.Pod) -> None:
        label_sets = [p.metadata.labels for p in (old, new) if p is not None]
        for svc in self.services.list():
            if svc.metadata.namespace != new.metadata.namespace:
                continue
            if any(selector_matches(svc.spec.selector, labels) for labels in label_sets):
                self.queue.add(self._key(svc))

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for inf in (self.services, self.pods, self.endpoints):
            inf.start()
        for inf in (self.services, self.pods, self.endpoints):
            inf.wait_synced()
        for svc in self.services.list():
            self._enqueue_obj(svc)
        for ep in self.endpoints.list():  # Endpoints whose Service went away while we were down
            self._enqueue_obj(ep)
        self.run_workers()

    def stop(self) -> None:
        self.shutdown()
        for inf in (self.services, self.pods, self.endpoints):
            inf.stop()

    # --- the sync --------------------------------------------------------------------------
    def sync(self, key: str) -> None:
        namespace, name = key.split("/", 1)
        svc: Service | None = self.services.get(key)
        current = self.endpoints.get(key)
        if svc is None:
            if current is not None:
                try:
                    self.client.delete("Endpoints", name, namespace)
                except NotFound:
                    pass
            return
        if not svc.spec.selector:
            return  # a Service without a selector: its Endpoints are the user's
        pods = [p for p in self.pods.list() if p.metadata.namespace == namespace]
        subsets, missing = compute_subsets(svc, pods)
        for pod_name, port_name in missing:
            mark = (key, pod_name, port_name)
            if mark not in self._warned:
                self._warned.add(mark)
                self.events.record(svc, "Warning", "FailedToResolvePort",
                                   f'pod "{pod_name}" has no container port named "{port_name}"; left out')
        if current is not None and (current.to_dict().get("subsets") or []) == subsets:
            return
        body: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                     "metadata": {"name": name, "namespace": namespace, "labels": dict(svc.metadata.labels or {})},
                     "subsets": subsets}
        if current is None:
            try:
                self.client.create(body)
            except AlreadyExists:  # our cache is behind: the update path will follow
                self.queue.add_after(key, 0.05)
            return
        body["metadata"]["resourceVersion"] = current.metadata.resourceVersion
        self.client.update(body)
