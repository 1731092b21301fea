"""The API server's in-memory metrics: the newest window each node reported, served as metrics.k8s.io objects.

A node's report replaces everything that node reported before (pods gone from it disappear); a node
that stops reporting ages out after ``ttl_s``. Nothing here touches etcd.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from minik8s.api.selectors import labels_match, parse_label_selector
from minik8s.errors import BadRequest, NotFound
from minik8s.metrics.types import GROUP_VERSION

Obj = dict[str, Any]
DEFAULT_TTL_S = 120.0


@dataclass
class _Report:
    received: float
    node: Obj | None
    pods: dict[tuple[str, str], Obj] = field(default_factory=dict)


class MetricsStore:
    def __init__(self, ttl_s: float = DEFAULT_TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._reports: dict[str, _Report] = {}
        self._lock = threading.Lock()

    # --- write ----------------------------------------------------------------------------------
    def report(self, node: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise BadRequest("a metrics report must be a JSON object")
        pods: dict[tuple[str, str], Obj] = {}
        for i, pm in enumerate(body.get("pods") or []):
            meta = (pm or {}).get("metadata") or {}
            if not meta.get("name") or not isinstance(pm.get("containers"), list):
                raise BadRequest(f"pods[{i}]: metadata.name and containers are required")
            obj = {"kind": "PodMetrics", "apiVersion": GROUP_VERSION,
                   "metadata": {"name": meta["name"], "namespace": meta.get("namespace") or "default",
                                **({"labels": meta["labels"]} if meta.get("labels") else {}),
                                **({"annotations": meta["annotations"]} if meta.get("annotations") else {}),
                                "creationTimestamp": pm.get("timestamp")},
                   "timestamp": pm.get("timestamp"), "window": pm.get("window"), "containers": pm["containers"]}
            pods[(obj["metadata"]["namespace"], meta["name"])] = obj
        nm = body.get("node")
        node_obj = None
        if isinstance(nm, dict):
            node_obj = {"kind": "NodeMetrics", "apiVersion": GROUP_VERSION,
                        "metadata": {"name": node, **({"labels": nm["labels"]} if nm.get("labels") else {}),
                                     "creationTimestamp": nm.get("timestamp")},
                        "timestamp": nm.get("timestamp"), "window": nm.get("window"), "usage": nm.get("usage") or {}}
        with self._lock:
            self._reports[node] = _Report(self._clock(), node_obj, pods)

    # --- read -----------------------------------------------------------------------------------
    def _fresh(self) -> list[_Report]:
        now = self._clock()
        with self._lock:
            for name in [n for n, r in self._reports.items() if now - r.received > self.ttl_s]:
                del self._reports[name]
            return list(self._reports.values())

    def list_pods(self, namespace: str | None, label_selector: str | None = None) -> list[Obj]:
        reqs = parse_label_selector(label_selector)
        out = [copy.deepcopy(pm) for r in self._fresh() for (ns, _), pm in r.pods.items()
               if (namespace is None or ns == namespace) and labels_match(reqs, pm["metadata"].get("labels"))]
        out.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
        return out

    def get_pod(self, namespace: str, name: str) -> Obj:
        for r in self._fresh():
            pm = r.pods.get((namespace, name))
            if pm is not None:
                return copy.deepcopy(pm)
        raise NotFound(f'podmetrics.metrics.k8s.io "{name}" not found', {"name": name, "kind": "pods"})

    def list_nodes(self, label_selector: str | None = None) -> list[Obj]:
        reqs = parse_label_selector(label_selector)
        out = [copy.deepcopy(r.node) for r in self._fresh()
               if r.node is not None and labels_match(reqs, r.node["metadata"].get("labels"))]
        out.sort(key=lambda o: o["metadata"]["name"])
        return out

    def get_node(self, name: str) -> Obj:
        for r in self._fresh():
            if r.node is not None and r.node["metadata"]["name"] == name:
                return copy.deepcopy(r.node)
        raise NotFound(f'nodemetrics.metrics.k8s.io "{name}" not found', {"name": name, "kind": "nodes"})
