"""The controller-manager: starts every controller with one client, one config and one informer factory.

Controllers get their informers from the shared factory, so the process opens one watch per
kind (one Pod watch, not one per controller). A controller built without the factory (the
older constructor style) still works: it opens its own informers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from minik8s.client import Client, InformerFactory
from minik8s.controllers.cronjob import CronJobConfig, CronJobController
from minik8s.controllers.daemonset import DaemonSetConfig, DaemonSetController
from minik8s.controllers.deployment import DeploymentConfig, DeploymentController
from minik8s.controllers.disruption import DisruptionConfig, DisruptionController
from minik8s.controllers.endpoints import EndpointsConfig, EndpointsController
from minik8s.controllers.gc import GarbageCollector, GarbageCollectorConfig
from minik8s.controllers.hpa import HPAConfig, HPAController
from minik8s.controllers.job import JobConfig, JobController
from minik8s.controllers.nodelifecycle import NodeLifecycleConfig, NodeLifecycleController
from minik8s.controllers.replicaset import ReplicaSetConfig, ReplicaSetController
from minik8s.controllers.replication import ReplicationConfig, ReplicationManager
from minik8s.controllers.rootcacert import RootCACertConfig, RootCACertPublisher
from minik8s.controllers.serviceaccounts import ServiceAccountsConfig, ServiceAccountsController
from minik8s.controllers.tainteviction import TaintEvictionConfig, TaintEvictionController

log = logging.getLogger("minik8s.controllers")


class Controller(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ControllerManagerConfig:
    node_lifecycle: NodeLifecycleConfig = field(default_factory=NodeLifecycleConfig)
    taint_eviction: TaintEvictionConfig = field(default_factory=TaintEvictionConfig)
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
    root_ca: RootCACertConfig = field(default_factory=RootCACertConfig)
    disruption: DisruptionConfig = field(default_factory=DisruptionConfig)


class ControllerManager:
    def __init__(self, client: Client, config: ControllerManagerConfig | None = None) -> None:
        self.config = config or ControllerManagerConfig()
        self.informers = InformerFactory(client)
        informers, cfg = self.informers, self.config
        self.node_lifecycle = NodeLifecycleController(client, cfg.node_lifecycle, informers=informers)
        self.taint_eviction = TaintEvictionController(client, cfg.taint_eviction, informers=informers)
        self.replicaset = ReplicaSetController(client, cfg.replicaset, informers=informers)
        self.deployment = DeploymentController(client, cfg.deployment, informers=informers)
        self.daemonset = DaemonSetController(client, cfg.daemonset, informers=informers)
        self.replication = ReplicationManager(client, cfg.replication, informers=informers)
        self.garbage_collector = GarbageCollector(client, cfg.garbage_collector, informers=informers)
        self.endpoints = EndpointsController(client, cfg.endpoints, informers=informers)
        self.hpa = HPAController(client, cfg.hpa, informers=informers)
        self.serviceaccounts = ServiceAccountsController(client, cfg.serviceaccounts, informers=informers)
        self.job = JobController(client, cfg.job, informers=informers)
        self.cronjob = CronJobController(client, cfg.cronjob, informers=informers)
        self.root_ca = RootCACertPublisher(client, cfg.root_ca, informers=informers)
        self.disruption = DisruptionController(client, cfg.disruption, informers=informers)
        self.controllers: list[Controller] = [
            self.node_lifecycle, self.taint_eviction, self.replicaset, self.deployment, self.daemonset,
            self.replication, self.garbage_collector, self.endpoints, self.hpa, self.serviceaccounts, self.job,
            self.cronjob, self.root_ca, self.disruption]

    def start(self) -> None:
        # every informer starts before any controller waits for its own to sync: one relist each, in parallel
        self.informers.start()
        for controller in self.controllers:
            controller.start()
        log.info("controllers started")

    def stop(self) -> None:
        for controller in self.controllers:
            controller.stop()
        self.informers.stop()
