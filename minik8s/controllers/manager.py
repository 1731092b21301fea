"""The controller-manager: starts every controller with one client and one config."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from minik8s.client import Client
from minik8s.controllers.nodelifecycle import NodeLifecycleConfig, NodeLifecycleController

log = logging.getLogger("minik8s.controllers")


@dataclass
class ControllerManagerConfig:
    node_lifecycle: NodeLifecycleConfig = field(default_factory=NodeLifecycleConfig)


class ControllerManager:
    def __init__(self, client: Client, config: ControllerManagerConfig | None = None) -> None:
        self.config = config or ControllerManagerConfig()
        self.node_lifecycle = NodeLifecycleController(client, self.config.node_lifecycle)

    def start(self) -> None:
        self.node_lifecycle.start()
        log.info("controllers started")

    def stop(self) -> None:
        self.node_lifecycle.stop()
