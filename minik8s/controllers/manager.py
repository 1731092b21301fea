"""The controller-manager: starts every controller with one client, one config and one informer factory.

Controllers get their informers from the shared factory, so the process opens one watch per
kind (one Pod watch, not one per controller). A controller built without the factory (the
older constructor style) still works: it opens its own informers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from minik8s.client import Client, InformerFactory
from minik8s.controllers.deployment import DeploymentConfig, DeploymentController
from minik8s.controllers.endpoints import EndpointsConfig, EndpointsController
from minik8s.controllers.gc import GarbageCollector, GarbageCollectorConfig
from minik8s.controllers.hpa import HPAConfig, HPAController
from minik8s.controllers.nodelifecycle import NodeLifecycleConfig, NodeLifecycleController
from minik8s.controllers.replicaset import ReplicaSetConfig, ReplicaSetController

log = logging.getLogger("minik8s.controllers")


@dataclass
class ControllerManagerConfig:
    node_lifecycle: NodeLifecycleConfig = field(default_factory=NodeLifecycleConfig)
    replicaset: ReplicaSetConfig = field(default_factory=ReplicaSetConfig)
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    garbage_collector: GarbageCollectorConfig = field(default_factory=GarbageCollectorConfig)
    endpoints: EndpointsConfig = field(default_factory=EndpointsConfig)
    hpa: HPAConfig = field(default_factory=HPAConfig)


class ControllerManager:
    def __init__(self, client: Client, config: ControllerManagerConfig | None = None) -> None:
        self.config = config or ControllerManagerConfig()
        self.informers = InformerFactory(client)
        informers = self.informers
        self.node_lifecycle = NodeLifecycleController(client, self.config.node_lifecycle, informers=informers)
        self.replicaset = ReplicaSetController(client, self.config.replicaset, informers=informers)
        self.deployment = DeploymentController(client, self.config.deployment, informers=informers)
        self.garbage_collector = GarbageCollector(client, self.config.garbage_collector, informers=informers)
        self.endpoints = EndpointsController(client, self.config.endpoints, informers=informers)
        self.hpa = HPAController(client, self.config.hpa, informers=informers)

    def start(self) -> None:
        # every informer starts before any controller waits for its own to sync: one relist each, in parallel
        self.informers.start()
        self.node_lifecycle.start()
        for workload in (self.replicaset, self.deployment, self.garbage_collector):
            workload.start()
        self.endpoints.start()
        self.hpa.start()
        log.info("controllers started")

    def stop(self) -> None:
        self.node_lifecycle.stop()
        for workload in (self.replicaset, self.deployment, self.garbage_collector):
            workload.stop()
        self.endpoints.stop()
        self.hpa.stop()
        self.informers.stop()
