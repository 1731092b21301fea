"""Root CA publisher: every namespace holds the `kube-root-ca.crt` ConfigMap with the cluster CA in `ca.crt`
(kube-controller-manager's root-ca-cert-publisher). A pod's ServiceAccount token volume projects it as
`ca.crt`, so in-cluster clients can verify the API server's certificate. A changed or deleted copy is put back.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from minik8s.client import Client, InformerFactory
from minik8s.client.informer import informer_for
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import AlreadyExists, Conflict, NotFound

log = logging.getLogger("minik8s.controllers.rootcacert")

CONFIGMAP_NAME = "kube-root-ca.crt"
CA_KEY = "ca.crt"
#: Kubernetes marks the ConfigMap so tools can tell it is the publisher's.
DESCRIPTION_ANNOTATION = "kubernetes.io/description"
DESCRIPTION = ("Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
               "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
               "distributions of Kubernetes clusters.")


@dataclass
class RootCACertConfig:
    #: The cluster CA (PEM); None turns the controller off (a cluster without its own CA).
    root_ca: str | None = None
    workers: int = 1
    resync_s: float = 30.0


class RootCACertPublisher(QueueWorkers):
    """Keys are namespace names."""

    name = "root-ca-cert-publisher"

    def __init__(self, client: Client, config: RootCACertConfig | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or RootCACertConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.namespaces = informer_for(informers, client, "Namespace", resync_seconds=self.config.resync_s)
        self.configmaps = informer_for(informers, client, "ConfigMap", resync_seconds=self.config.resync_s)
        self.namespaces.add_handler(on_add=self._namespace_changed,
                                    on_update=lambda _old, new: self._namespace_changed(new))
        self.configmaps.add_handler(on_update=lambda _old, new: self._configmap_changed(new),
                                    on_delete=self._configmap_changed)

    def start(self) -> None:
        if self.config.root_ca is None:
            log.info("no cluster CA configured: kube-root-ca.crt is not published")
            return
        self.namespaces.start()
        self.configmaps.start()
        self.namespaces.wait_synced()
        self.configmaps.wait_synced()
        self.run_workers()
        log.info("root CA publisher started")

    def stop(self) -> None:
        self.shutdown()
        self.namespaces.stop()
        self.configmaps.stop()

    def _namespace_changed(self, ns: Any) -> None:
        self.queue.add(ns.metadata.name)

    def _configmap_changed(self, cm: Any) -> None:
        if cm.metadata.name == CONFIGMAP_NAME and cm.metadata.namespace:
            self.queue.add(cm.metadata.namespace)

    def _wanted(self, namespace: str) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": CONFIGMAP_NAME, "namespace": namespace,
                             "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
                "data": {CA_KEY: self.config.root_ca or ""}}

    def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or ns.metadata.deletionTimestamp or (ns.status and ns.status.phase == "Terminating"):
            return
        wanted = self._wanted(key)
        current = self.configmaps.get(f"{key}/{CONFIGMAP_NAME}")
        try:
            if current is None:
                self.client.create(wanted)
                log.info("published the cluster CA", extra={"namespace": key})
            elif (current.data or {}) != wanted["data"]:
                wanted["metadata"]["resourceVersion"] = current.metadata.resourceVersion
                self.client.update(wanted)
                log.info("corrected the cluster CA copy", extra={"namespace": key})
        except AlreadyExists:
            return  # the cache lags behind the API: it is there, an update event follows if it differs
        except NotFound:
            return  # the namespace is gone
        except Conflict:
            self.queue.add_rate_limited(key)  # the namespace is terminating or the copy changed: look again
