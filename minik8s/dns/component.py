"""ClusterDns: informers on Services, Endpoints, DNS objects and Ingresses push a fresh snapshot to the server.

Every informer event only marks the records stale; one builder thread rebuilds from the caches
and swaps the snapshot in, so a burst (the initial list of 1000 Services) costs one rebuild,
and a change is served within milliseconds of its watch event.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from minik8s.api.networking import served_by
from minik8s.client import Client, Informer
from minik8s.dns.records import build_snapshot
from minik8s.dns.server import DnsConfig, DnsServer

log = logging.getLogger("minik8s.dns")


class ClusterDns:
    def __init__(self, client: Client, config: DnsConfig | None = None) -> None:
        self.config = config or DnsConfig()
        self.server = DnsServer(self.config)
        self.services = Informer(client, "Service", resync_seconds=self.config.resync_s)
        self.dnses = Informer(client, "DNS", resync_seconds=self.config.resync_s)
        # hosts of the Ingresses the gateway serves resolve to it too (their class decides which)
        self.ingresses = Informer(client, "Ingress", resync_seconds=self.config.resync_s)
        self.classes = Informer(client, "IngressClass", resync_seconds=self.config.resync_s)
        # a headless Service answers with its ready endpoints (and their pods' hostnames)
        self.endpoints = Informer(client, "Endpoints", resync_seconds=self.config.resync_s)
        self.informers = (self.services, self.dnses, self.ingresses, self.classes, self.endpoints)
        self._stale = threading.Event()
        self._stop = threading.Event()
        self._builder: threading.Thread | None = None
        self.generation = 0  # snapshots pushed so far
        for inf in self.informers[:-1]:
            inf.add_handler(on_add=self._changed, on_update=self._changed2, on_delete=self._changed)
        self.endpoints.add_handler(on_add=self._endpoints_changed, on_delete=self._endpoints_changed,
                                   on_update=self._endpoints_updated)

    def _changed(self, _obj: Any) -> None:
        self._stale.set()

    def _changed2(self, old: Any, new: Any) -> None:
        if old is None or old.metadata.resourceVersion != new.metadata.resourceVersion:
            self._stale.set()

    def _endpoints_changed(self, ep: Any) -> None:
        """Only a headless Service's endpoints are records: the others' churn costs no rebuild."""
        svc = self.services.get(f"{ep.metadata.namespace or 'default'}/{ep.metadata.name}")
        if svc is not None and svc.spec.clusterIP == "None":
            self._stale.set()

    def _endpoints_updated(self, old: Any, new: Any) -> None:
        if old is None or old.metadata.resourceVersion != new.metadata.resourceVersion:
            self._endpoints_changed(new)

    def ingress_hosts(self) -> list[str]:
        classes = [c.to_dict() for c in self.classes.list()]
        wired = [i.to_dict() for i in self.ingresses.list()]
        return [str(r["host"]) for i in wired if served_by(i, classes)
                for r in (i.get("spec") or {}).get("rules") or [] if r.get("host")]

    def rebuild(self) -> None:
        headless = {(s.metadata.namespace, s.metadata.name) for s in self.services.list() if s.spec.clusterIP == "None"}
        endpoints = [ep for ep in self.endpoints.list() if (ep.metadata.namespace, ep.metadata.name) in headless]
        snap = build_snapshot(self.services.list(), self.dnses.list(), self.config.domain, self.config.ttl,
                              self.config.gateway_service, self.ingress_hosts(), endpoints)
        self.server.set_snapshot(snap)
        self.generation += 1
        log.debug("dns snapshot pushed", extra={"names": len(snap.a) + len(snap.srv), "generation": self.generation})

    def _build_loop(self) -> None:
        while not self._stop.is_set():
            self._stale.wait()
            if self._stop.is_set():
                return
            self._stale.clear()
            try:
                self.rebuild()
            except Exception:  # keep serving the last good snapshot; the next event retries
                log.exception("dns snapshot rebuild failed")

    def start(self) -> None:
        """Bind the sockets first (a bad address fails here), then follow the API."""
        self.server.start()
        for inf in self.informers:
            inf.start()
        for inf in self.informers:
            inf.wait_synced()
        self.rebuild()
        self._builder = threading.Thread(target=self._build_loop, name="dns-builder", daemon=True)
        self._builder.start()

    def alive(self) -> bool:
        return self.server.alive()

    def stop(self) -> None:
        self._stop.set()
        self._stale.set()
        for inf in self.informers:
            inf.stop()
        self.server.stop()
