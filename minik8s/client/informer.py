"""The shared informer: list, then watch from the list's resourceVersion, keep a local cache.

`InformerFactory` (client-go's SharedInformerFactory) hands out one informer per kind (and
namespace, selectors) per process, so five controllers that follow Pods open one Pod watch.
A handler added to an informer that has already synced is first told about every cached
object as an add, exactly as if it had been there from the start.

Handlers get typed objects. Never mutate what the cache hands out: copy first
(`obj.model_copy(deep=True)`). A watch that breaks or expires (410) relists; every
`resync_seconds` each cached object is replayed to on_update so level-triggered controllers
converge even when an event was missed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from minik8s.api import kinds as k
from minik8s.client.sdk import Client
from minik8s.errors import MiniK8sError
from minik8s.health import WATCHDOG

log = logging.getLogger("minik8s.informer")

RETRY_DELAY_S = 1.0
WATCH_TIMEOUT_S = 300.0
DEFAULT_RESYNC_S = 30.0


def object_key(obj: Any) -> str:
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else str(meta.name)


@dataclass
class _Handler:
    on_add: Callable[[Any], None] | None
    on_update: Callable[[Any, Any], None] | None
    on_delete: Callable[[Any], None] | None


class Informer:
    def __init__(self, client: Client, kind: str, namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None, resync_seconds: float = DEFAULT_RESYNC_S) -> None:
        self.client, self.kind, self.namespace = client, kind, namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.resync_seconds = resync_seconds
        self._cache: dict[str, Any] = {}
        self._lock = threading.RLock()
        self._handlers: list[_Handler] = []
        self._synced = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._users = 0  # start() calls not yet matched by stop(): a shared informer stops with its last user

    def add_handler(self, on_add: Callable[[Any], None] | None = None,
                    on_update: Callable[[Any, Any], None] | None = None,
                    on_delete: Callable[[Any], None] | None = None) -> None:
        with self._lock:
            self._handlers.append(_Handler(on_add, on_update, on_delete))
            replay = list(self._cache.values()) if self._synced.is_set() and on_add else []
        for obj in replay:
            try:
                on_add(obj)  # type: ignore[misc]  # replay is empty when on_add is None
            except Exception:
                log.exception("informer handler failed", extra={"kind": self.kind})

    def start(self) -> None:
        """Start watching (once, however many controllers share this informer and call start)."""
        with self._lock:
            self._users += 1
            if self._threads:
                return
            for target, name in ((self._run, "watch"), (self._resync_loop, "resync")):
                th = threading.Thread(target=target, name=f"informer-{self.kind}-{name}", daemon=True)
                th.start()
                self._threads.append(th)

    def stop(self) -> None:
        """Stop once every start() has been matched by a stop()."""
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
        self._stop.set()

    def started(self) -> bool:
        return bool(self._threads)

    def alive(self) -> bool:
        """Started, not stopped, and its watch and resync threads still run."""
        return bool(self._threads) and not self._stop.is_set() and all(th.is_alive() for th in self._threads)

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def has_synced(self) -> bool:
        return self._synced.is_set()

    def get(self, key: str) -> Any | None:
        with self._lock:
            return self._cache.get(key)

    def list(self) -> list[Any]:
        with self._lock:
            return list(self._cache.values())

    # --- internals --------------------------------------------------------------------------
    def _emit(self, kind: str, old: Any, new: Any) -> None:
        for h in self._handlers:
            try:
                with WATCHDOG.busy(f"informer-{self.kind}"):
                    self._call(h, kind, old, new)
            except Exception:  # a handler bug must not kill the informer
                log.exception("informer handler failed", extra={"kind": self.kind})

    @staticmethod
    def _call(h: _Handler, kind: str, old: Any, new: Any) -> None:
        if kind == "add" and h.on_add:
            h.on_add(new)
        elif kind == "update" and h.on_update:
            h.on_update(old, new)
        elif kind == "delete" and h.on_delete:
            h.on_delete(old)

    def _relist(self) -> str:
        result = self.client.list(self.kind, self.namespace, self.label_selector, self.field_selector)
        fresh = {object_key(o): o for o in result.items}
        with self._lock:
            old = self._cache
            self._cache = dict(fresh)
        for key, obj in fresh.items():
            if key in old:
                if old[key].metadata.resourceVersion != obj.metadata.resourceVersion:
                    self._emit("update", old[key], obj)
            else:
                self._emit("add", None, obj)
        for key, obj in old.items():
            if key not in fresh:
                self._emit("delete", obj, None)
        self._synced.set()
        return result.resource_version

    def _run(self) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                for ev in self.client.watch(self.kind, self.namespace, rv, self.label_selector, self.field_selector,
                                            timeout_seconds=WATCH_TIMEOUT_S):
                    if self._stop.is_set():
                        return
                    self._apply(ev.type, ev.object)
                    rv = ev.object.metadata.resourceVersion or rv
            except MiniK8sError as exc:
                log.info("watch ended, relisting", extra={"kind": self.kind, "reason": exc.message})
                rv = None
                self._stop.wait(RETRY_DELAY_S)
            except Exception:
                log.exception("informer loop failed", extra={"kind": self.kind})
                rv = None
                self._stop.wait(RETRY_DELAY_S)

    def _apply(self, etype: str, obj: Any) -> None:
        key = object_key(obj)
        with self._lock:
            old = self._cache.get(key)
            if etype == "DELETED":
                self._cache.pop(key, None)
            else:
                self._cache[key] = obj
        if etype == "DELETED":
            self._emit("delete", old or obj, None)
        elif old is None:
            self._emit("add", None, obj)
        elif old.metadata.resourceVersion != obj.metadata.resourceVersion:
            self._emit("update", old, obj)

    def _resync_loop(self) -> None:
        while not self._stop.wait(self.resync_seconds):
            if not self._synced.is_set():
                continue
            for obj in self.list():
                self._emit("update", obj, obj)


class InformerFactory:
    """One shared informer per (kind, namespace, selectors) for everything in this process."""

    def __init__(self, client: Client, resync_seconds: float = DEFAULT_RESYNC_S) -> None:
        self.client = client
        self.resync_seconds = resync_seconds
        self._informers: dict[tuple[str, str | None, str | None, str | None], Informer] = {}
        self._lock = threading.Lock()

    def informer(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None, resync_seconds: float | None = None) -> Informer:
        """The shared informer; `resync_seconds` lowers its resync period (the most eager user wins)."""
        key = (k.lookup(kind).kind, namespace, label_selector, field_selector)
        with self._lock:
            inf = self._informers.get(key)
            if inf is None:
                inf = Informer(self.client, key[0], namespace, label_selector, field_selector,
                               resync_seconds or self.resync_seconds)
                self._informers[key] = inf
            elif resync_seconds and resync_seconds < inf.resync_seconds:
                inf.resync_seconds = resync_seconds
            return inf

    def informers(self) -> list[Informer]:
        with self._lock:
            return list(self._informers.values())

    def start(self) -> None:
        for inf in self.informers():
            if not inf.started():
                inf.start()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return all(inf.wait_synced(timeout) for inf in self.informers())

    def stop(self) -> None:
        for inf in self.informers():
            inf._stop.set()


def informer_for(factory: InformerFactory | None, client: Client, kind: str, namespace: str | None = None,
                 resync_seconds: float = DEFAULT_RESYNC_S) -> Informer:
    """The factory's shared informer, or (no factory: the old constructor style) one of the caller's own."""
    if factory is not None:
        return factory.informer(kind, namespace, resync_seconds=resync_seconds)
    return Informer(client, kind, namespace, resync_seconds=resync_seconds)
