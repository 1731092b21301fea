"""The uids of live Pods and ServiceAccounts, kept from etcd by list + watch, for token authentication.

A ServiceAccount token is valid only while its account (and its pod) exist with the uids in its
claims. Checking that with an etcd read per request would put a blocking call on the event loop of
every request a pod makes, so the API server keeps this small map (key -> uid) instead, fed by a
watch on the two prefixes. A key the map does not hold is read from etcd once (an object created
moments ago may not have reached the watch yet).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from minik8s.errors import MiniK8sError, NotFound
from minik8s.store import EtcdStore, StoreEvent

log = logging.getLogger("minik8s.apiserver.uidcache")

RESOURCES = ("pods", "serviceaccounts")
RETRY_S = 2.0


def _prefix(resource: str) -> str:
    return f"/registry/{resource}/"


class UidCache:
    def __init__(self, store: EtcdStore, resources: tuple[str, ...] = RESOURCES) -> None:
        self.store = store
        self.resources = resources
        self._uids: dict[str, str] = {}
        self._cancels: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    # --- lookups ---------------------------------------------------------------------------------
    def uid(self, resource: str, namespace: str, name: str) -> str | None:
        key = f"{_prefix(resource)}{namespace}/{name}"
        with self._lock:
            found = self._uids.get(key)
        if found is not None:
            return found
        try:  # not (yet) seen by the watch: ask etcd (the watch delivers it, so nothing is remembered here)
            obj = self.store.get(key)
        except NotFound:
            return None
        uid = (obj.get("metadata") or {}).get("uid")
        return str(uid) if uid else None

    # --- feeding ---------------------------------------------------------------------------------
    def start(self) -> None:
        for resource in self.resources:
            threading.Thread(target=self._run, args=(resource,), name=f"uidcache-{resource}", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        for cancel in list(self._cancels.values()):
            cancel()

    def _run(self, resource: str) -> None:
        """List, then watch from the list's revision; relist when the watch breaks (compaction, etcd away)."""
        while not self._stop.is_set():
            broken = threading.Event()
            try:
                self._list_and_watch(resource, broken)
            except MiniK8sError as exc:
                log.warning("uid cache: list/watch failed, retrying", extra={"resource": resource, "error": str(exc)})
                self._stop.wait(RETRY_S)
                continue
            while not self._stop.is_set() and not broken.wait(RETRY_S):
                pass
            cancel = self._cancels.pop(resource, None)
            if cancel is not None:
                cancel()

    def _list_and_watch(self, resource: str, broken: threading.Event) -> None:
        prefix = _prefix(resource)
        items, revision = self.store.list(prefix)

        def on_event(ev: StoreEvent) -> None:
            if ev.type == "ERROR":
                broken.set()
                return
            with self._lock:
                if ev.type == "DELETED":
                    self._uids.pop(ev.key, None)
                elif ev.object is not None:
                    self._set(ev.key, ev.object)

        with self._lock:
            for key in [k for k in self._uids if k.startswith(prefix)]:
                del self._uids[key]
            for obj in items:
                meta = obj.get("metadata") or {}
                self._set(f"{prefix}{meta.get('namespace')}/{meta.get('name')}", obj)
        self._cancels[resource] = self.store.watch(prefix, revision + 1, on_event)

    def _set(self, key: str, obj: dict[str, Any]) -> None:
        uid = (obj.get("metadata") or {}).get("uid")
        if uid:
            self._uids[key] = str(uid)
