"""Garbage collector: delete dependents whose owners are gone (background cascading deletion).

Watches the kinds that can be dependents (Pods, ReplicaSets) and owners (ReplicaSets, Deployments,
DaemonSets, ReplicationControllers).
A dependent all of whose ownerReferences name objects that no longer exist (by uid; checked
against the API before acting, so a cache that lags never deletes a live object's children) is
deleted; the deletion of a ReplicaSet then cascades to its pods the same way. Orphaning
(`propagationPolicy=Orphan`) is done by the API server before the owner goes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minik8s.api import kinds as k
from minik8s.client import Client, Informer, InformerFactory
from minik8s.client.informer import informer_for, object_key
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import NotFound

log = logging.getLogger("minik8s.controllers.gc")

DEPENDENT_KINDS = ("Pod", "ReplicaSet", "Job")
OWNER_KINDS = ("ReplicaSet", "Deployment", "Job", "CronJob", "DaemonSet", "ReplicationController")


@dataclass
class GarbageCollectorConfig:
    workers: int = 2
    resync_s: float = 30.0


class GarbageCollector(QueueWorkers):
    name = "garbage-collector"

    def __init__(self, client: Client, config: GarbageCollectorConfig | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or GarbageCollectorConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.informers: dict[str, Informer] = {
            kind: informer_for(informers, client, kind, resync_seconds=self.config.resync_s)
            for kind in dict.fromkeys((*DEPENDENT_KINDS, *OWNER_KINDS))}
        for kind in DEPENDENT_KINDS:
            changed = self._dependent_changed(kind)
            self.informers[kind].add_handler(changed, self._on_update(changed), None)
        for kind in OWNER_KINDS:
            self.informers[kind].add_handler(None, None, self._owner_deleted)

    def start(self) -> None:
        for inf in self.informers.values():
            inf.start()
        for inf in self.informers.values():
            inf.wait_synced()
        self.run_workers()
        log.info("garbage collector started")

    def stop(self) -> None:
        self.shutdown()
        for inf in self.informers.values():
            inf.stop()

    def _dependent_changed(self, kind: str) -> Callable[[Any], None]:
        def handler(obj: Any) -> None:
            if obj.metadata.ownerReferences and obj.metadata.deletionTimestamp is None:
                self.queue.add(f"{kind}/{object_key(obj)}")
        return handler

    @staticmethod
    def _on_update(handler: Callable[[Any], None]) -> Callable[[Any, Any], None]:
        return lambda _old, new: handler(new)

    def _owner_deleted(self, owner: Any) -> None:
        uid = owner.metadata.uid
        for kind in DEPENDENT_KINDS:
            for obj in self.informers[kind].list():
                if any(r.uid == uid for r in obj.metadata.ownerReferences or []):
                    self.queue.add(f"{kind}/{object_key(obj)}")

    # --- sync -----------------------------------------------------------------------------------
    def _owner_exists(self, namespace: str | None, ref: Any) -> bool:
        try:
            info = k.by_kind(ref.apiVersion, ref.kind)
        except NotFound:
            return True  # a kind we do not serve: never guess
        cached = self.informers[info.kind].get(f"{namespace}/{ref.name}") if info.kind in self.informers else None
        if cached is not None and cached.metadata.uid == ref.uid:
            return True
        try:
            live = self.client.get(info.kind, ref.name, namespace)
        except NotFound:
            return False
        return bool(live.metadata.uid == ref.uid)

    def sync(self, key: str) -> None:
        kind, _, obj_key = key.partition("/")
        obj = self.informers[kind].get(obj_key)
        if obj is None or obj.metadata.deletionTimestamp is not None or not obj.metadata.ownerReferences:
            return
        ns = obj.metadata.namespace
        if any(self._owner_exists(ns, ref) for ref in obj.metadata.ownerReferences):
            return
        try:
            # the cache may lag an orphaning delete, which strips the references before removing the
            # owner: judge the dependent as it is now, not as cached
            live = self.client.get(kind, obj.metadata.name, ns)
            if live.metadata.uid != obj.metadata.uid or live.metadata.deletionTimestamp is not None or \
                    not live.metadata.ownerReferences or \
                    any(self._owner_exists(ns, ref) for ref in live.metadata.ownerReferences):
                return
            self.client.delete(kind, obj.metadata.name, ns, propagation_policy="Background")
        except NotFound:
            return
        log.info("deleted dependent of a deleted owner", extra={"kind": kind, "key": obj_key})
