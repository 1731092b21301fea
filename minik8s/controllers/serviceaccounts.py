"""ServiceAccounts controller: every namespace has a `default` ServiceAccount (kube-controller-manager's
serviceaccounts controller). A new namespace gets one; a deleted one is made again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from minik8s.api.config import DEFAULT_SERVICE_ACCOUNT
from minik8s.client import Client, InformerFactory
from minik8s.client.informer import informer_for
from minik8s.controllers.base import QueueWorkers
from minik8s.errors import AlreadyExists, Conflict, NotFound

log = logging.getLogger("minik8s.controllers.serviceaccounts")


@dataclass
class ServiceAccountsConfig:
    workers: int = 1
    resync_s: float = 30.0
    #: The ServiceAccounts every namespace gets.
    names: tuple[str, ...] = (DEFAULT_SERVICE_ACCOUNT,)


class ServiceAccountsController(QueueWorkers):
    """Keys are namespace names."""

    name = "serviceaccounts"

    def __init__(self, client: Client, config: ServiceAccountsConfig | None = None,
                 informers: InformerFactory | None = None) -> None:
        self.config = config or ServiceAccountsConfig()
        super().__init__(self.config.workers)
        self.client = client
        self.namespaces = informer_for(informers, client, "Namespace", resync_seconds=self.config.resync_s)
        self.accounts = informer_for(informers, client, "ServiceAccount", resync_seconds=self.config.resync_s)
        self.namespaces.add_handler(on_add=self._namespace_changed,
                                    on_update=lambda _old, new: self._namespace_changed(new))
        self.accounts.add_handler(on_delete=self._account_deleted)

    def start(self) -> None:
        self.namespaces.start()
        self.accounts.start()
        self.namespaces.wait_synced()
        self.accounts.wait_synced()
        self.run_workers()
        log.info("serviceaccounts controller started")

    def stop(self) -> None:
        self.shutdown()
        self.namespaces.stop()
        self.accounts.stop()

    def _namespace_changed(self, ns: Any) -> None:
        self.queue.add(ns.metadata.name)

    def _account_deleted(self, sa: Any) -> None:
        if sa.metadata.name in self.config.names and sa.metadata.namespace:
            self.queue.add(sa.metadata.namespace)

    def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or ns.metadata.deletionTimestamp or (ns.status and ns.status.phase == "Terminating"):
            return
        for name in self.config.names:
            if self.accounts.get(f"{key}/{name}") is not None:
                continue
            try:
                self.client.create({"apiVersion": "v1", "kind": "ServiceAccount",
                                    "metadata": {"name": name, "namespace": key}})
                log.info("created service account", extra={"namespace": key, "serviceaccount": name})
            except AlreadyExists:
                continue  # the cache lags behind the API: it is there
            except (NotFound, Conflict):
                return  # the namespace is gone or going
