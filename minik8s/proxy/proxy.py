"""The per-node proxy: Services + Endpoints -> the node netns's ``table ip minik8s-proxy``.

Informers on Services and Endpoints mark the changed Service keys dirty; the sync loop renders
only those, diffs them against what it last applied, and writes one ``nft -f`` transaction
(nothing at all when the rendering did not change). The first sync, a restart, or a failed
transaction replaces the whole table atomically, so a restarted proxy rebuilds identical rules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from minik8s.api.services import Endpoints, Service
from minik8s.client import Client, Informer
from minik8s.errors import MiniK8sError
from minik8s.proxy import nft
from minik8s.proxy.hairpin import ensure_hairpin
from minik8s.proxy.rules import (
    ProxyRulesConfig,
    ServiceRules,
    chain_refs_after,
    diff_script,
    full_script,
    render_service,
    service_key,
)

log = logging.getLogger("minik8s.proxy")

Applier = Callable[[str, str | None], None]


@dataclass
class ProxyConfig:
    table: str = "minik8s-proxy"
    cluster_cidr: str | None = "10.244.0.0/16"
    """The pod network; ClusterIP traffic from outside it is masqueraded."""
    resync_s: float = 30.0
    """Full re-render and comparison (and a table-exists check) at least this often."""
    pod_bridge: str | None = "docker0"
    """The node's pod bridge: its ports are kept in hairpin mode (a pod reaching itself via its Service)."""
    hairpin_period_s: float = 1.0

    @property
    def rules(self) -> ProxyRulesConfig:
        return ProxyRulesConfig(self.table, self.cluster_cidr)


@dataclass
class SyncStats:
    services: int = 0
    changed: int = 0
    lines: int = 0
    seconds: float = 0.0
    full: bool = False


class Proxier:
    """What was applied, and the diff to what is wanted; `apply` runs an nft script in `netns`."""

    def __init__(self, cfg: ProxyRulesConfig, netns: str | None = None, apply: Applier = nft.apply) -> None:
        self.cfg, self.netns, self._apply = cfg, netns, apply
        self.applied: dict[str, ServiceRules] | None = None
        self.chain_refs: Counter[str] = Counter()
        """The shared pick chains in the table, and how many applied Services use each."""

    def replace(self, desired: dict[str, ServiceRules]) -> SyncStats:
        t0 = time.perf_counter()
        script = full_script(desired, self.cfg)
        self.applied = None
        self._apply(script, self.netns)
        self.applied = dict(desired)
        self.chain_refs = chain_refs_after(Counter(), {}, desired)
        return SyncStats(len(desired), len(desired), script.count("\n"), time.perf_counter() - t0, True)

    def update(self, changes: dict[str, ServiceRules | None]) -> SyncStats:
        """Apply the changed Services (None: deleted). A full replace when nothing was applied yet."""
        if self.applied is None:
            raise RuntimeError("replace() first")
        t0 = time.perf_counter()
        old = {k: self.applied[k] for k in changes if k in self.applied}
        new = {k: v for k, v in changes.items() if v is not None}
        refs = chain_refs_after(self.chain_refs, old, new)
        script = diff_script(old, new, self.cfg, refs.keys() - self.chain_refs.keys(),
                             self.chain_refs.keys() - refs.keys())
        if script:
            try:
                self._apply(script, self.netns)
            except MiniK8sError:
                self.applied = None  # unknown state: the next sync replaces the table
                raise
        self.chain_refs = refs
        for k, v in changes.items():
            if v is None:
                self.applied.pop(k, None)
            else:
                self.applied[k] = v
        changed = sum(1 for k in changes if old.get(k) != new.get(k))
        return SyncStats(len(self.applied), changed, script.count("\n"), time.perf_counter() - t0, False)


class Proxy:
    def __init__(self, client: Client, node_name: str, node_ip: str, netns: str | None = None,
                 config: ProxyConfig | None = None, apply: Applier = nft.apply) -> None:
        self.client, self.node_name, self.node_ip, self.netns = client, node_name, node_ip, netns
        self.config = config or ProxyConfig()
        self.rules = replace(self.config.rules, node_name=node_name)
        self.proxier = Proxier(self.rules, netns, apply)
        self.services = Informer(client, "Service", resync_seconds=self.config.resync_s)
        self.endpoints = Informer(client, "Endpoints", resync_seconds=self.config.resync_s)
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.last_sync: SyncStats | None = None
        for inf in (self.services, self.endpoints):
            inf.add_handler(on_add=self._mark, on_update=lambda old, new: self._changed(old, new),
                            on_delete=self._mark)

    def _changed(self, old: Any, new: Any) -> None:
        if old is new:  # an informer resync replays the cache: nothing new
            return
        self._mark(new)

    def _mark(self, obj: Any) -> None:
        with self._lock:
            self._dirty.add(service_key(obj.metadata.namespace, obj.metadata.name))
        self._wake.set()

    def _render(self, key: str) -> ServiceRules | None:
        svc: Service | None = self.services.get(key)
        if svc is None:
            return None
        ep: Endpoints | None = self.endpoints.get(key)
        return render_service(svc, ep, self.rules)

    def desired(self) -> dict[str, ServiceRules]:
        out = {}
        for svc in self.services.list():
            key = service_key(svc.metadata.namespace, svc.metadata.name)
            out[key] = render_service(svc, self.endpoints.get(key), self.rules)
        return out

    def sync_all(self) -> SyncStats:
        """Re-render everything; replace the table when it is missing or nothing is known to be applied."""
        with self._lock:
            self._dirty.clear()
        desired = self.desired()
        if self.proxier.applied is None or not nft.table_exists(self.config.table, self.netns):
            return self.proxier.replace(desired)
        changes: dict[str, ServiceRules | None] = dict(desired)
        changes.update({k: None for k in self.proxier.applied if k not in desired})
        return self.proxier.update(changes)

    def sync_dirty(self) -> SyncStats | None:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
        if not dirty:
            return None
        if self.proxier.applied is None:
            return self.sync_all()
        return self.proxier.update({k: self._render(k) for k in dirty})

    def run(self) -> None:
        """Blocks until stop(): sync on every change, a full pass every `resync_s`."""
        for inf in (self.services, self.endpoints):
            inf.start()
        for inf in (self.services, self.endpoints):
            inf.wait_synced()
        last_full = 0.0
        while not self._stop.is_set():
            try:
                stats: SyncStats | None
                if time.monotonic() - last_full >= self.config.resync_s or self.proxier.applied is None:
                    stats = self.sync_all()
                    last_full = time.monotonic()
                else:
                    stats = self.sync_dirty()
                self.last_sync = stats or self.last_sync
                if stats and stats.lines:  # only a pass that wrote something (not every hairpin wake-up)
                    log.info("proxy rules synced", extra={"node": self.node_name, "changed": stats.changed,
                                                          "lines": stats.lines, "ms": round(stats.seconds * 1000, 2)})
            except MiniK8sError as exc:
                log.warning("proxy sync failed, retrying", extra={"node": self.node_name, "error": exc.message})
                self._stop.wait(1.0)
                continue
            except Exception:
                log.exception("proxy sync crashed")
                self._stop.wait(1.0)
                continue
            if self.config.pod_bridge:
                ensure_hairpin(self.config.pod_bridge, self.netns)
            wait = self.config.resync_s - (time.monotonic() - last_full)
            if self.config.pod_bridge:
                wait = min(wait, self.config.hairpin_period_s)
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def stop(self, remove_rules: bool = False) -> None:
        self._stop.set()
        self._wake.set()
        for inf in (self.services, self.endpoints):
            inf.stop()
        if remove_rules:
            nft.delete_table(self.config.table, self.netns)


def ensure_root_route(service_cidr: str, via: str) -> None:
    """Route the service CIDR from the calling netns (the user's shell: the root netns) to a node IP,
    whose proxy rules then DNAT it. Idempotent (`replace`)."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.route("replace", dst=service_cidr, gateway=via)
