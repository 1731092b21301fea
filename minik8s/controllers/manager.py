"""The controller-manager: starts every controller with one client and one config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from minik8s.client import Client
from minik8s.controllers.cronjob import CronJobConfig, CronJobController
from minik8s.controllers.daemonset import DaemonSetConfig, DaemonSetController
from minik8s.controllers.deployment import DeploymentConfig, DeploymentController
from minik8s.controllers.endpoints import EndpointsConfig, EndpointsController
from minik8s.controllers.gc import GarbageCollector, GarbageCollectorConfig
from minik8s.controllers.hpa import HPAConfig, HPAController
from minik8s.controllers.job import JobConfig, JobController
from minik8s.controllers.nodelifecycle import NodeLifecycleConfig, NodeLifecycleController
from minik8s.controllers.replicaset import ReplicaSetConfig, ReplicaSetController
from minik8s.controllers.replication import ReplicationConfig, ReplicationManager
from minik8s.controllers.serviceaccounts import ServiceAccountsConfig, ServiceAccountsController

log = logging.getLogger("minik8s.controllers")


@dataclass
class ControllerManagerConfig:
    node_lifecycle: NodeLifecycleConfig = field(default_factory=NodeLifecycleConfig)
    replicaset: ReplicaSetConfig = field(default_factory=ReplicaSetConfig)
    deployment: DeploymentConfig = field(default_factory=DeploymentConfig)
    daemonset: DaemonSetConfig = field(default_factory=DaemonSetConfig)
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    garbage_collector: GarbageCollectorConfig = field(default_factory=GarbageCollectorConfig)
    endpoints: EndpointsConfig = field(default_factory=EndpointsConfig)
    hpa: HPAConfig = field(default_factory=HPAConfig)
    serviceaccounts: ServiceAccountsConfig = field(default_factory=ServiceAccountsConfig)
    job: JobConfig = field(default_factory=JobConfig)
    cronjob: CronJobConfig = field(default_factory=CronJobConfig)


class ControllerManager:
    def __init__(self, client: Client, config: ControllerManagerConfig | None = None) -> None:
        self.config = config or ControllerManagerConfig()
        self.node_lifecycle = NodeLifecycleController(client, self.config.node_lifecycle)
        self.replicaset = ReplicaSetController(client, self.config.replicaset)
        self.deployment = DeploymentController(client, self.config.deployment)
        self.daemonset = DaemonSetController(client, self.config.daemonset)
        self.replication = ReplicationManager(client, self.config.replication)
        self.garbage_collector = GarbageCollector(client, self.config.garbage_collector)
        self.endpoints = EndpointsController(client, self.config.endpoints)
        self.hpa = HPAController(client, self.config.hpa)
        self.serviceaccounts = ServiceAccountsController(client, self.config.serviceaccounts)
        self.batch = (JobController(client, self.config.job), CronJobController(client, self.config.cronjob))

    def start(self) -> None:
        self.node_lifecycle.start()
        for workload in (self.replicaset, self.deployment, self.daemonset, self.replication, self.garbage_collector):
            workload.start()
        self.endpoints.start()
        self.hpa.start()
        self.serviceaccounts.start()
        for batch_controller in self.batch:
            batch_controller.start()
        log.info("controllers started")

    def stop(self) -> None:
        self.node_lifecycle.stop()
        for workload in (self.replicaset, self.deployment, self.daemonset, self.replication, self.garbage_collector):
            workload.stop()
        self.endpoints.stop()
        self.hpa.stop()
        self.serviceaccounts.stop()
        for batch_controller in self.batch:
            batch_controller.stop()
