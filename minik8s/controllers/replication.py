"""ReplicationController controller: the ReplicaSet controller, reading an equality-only selector map.

Kubernetes runs the same code for both kinds (its ReplicationManager wraps the ReplicaSet
controller); so does this module: only the kind, its apiVersion and how the selector is read differ.
"""

from __future__ import annotations

from typing import Any

from minik8s.api.selectors import Requirement
from minik8s.controllers.replicaset import ReplicaSetConfig, ReplicaSetController


class ReplicationManager(ReplicaSetController):
    name = "replication"
    kind = "ReplicationController"
    api_version = "v1"

    def selector(self, rs: Any) -> list[Requirement]:
        return [Requirement(key, "=", (str(val),)) for key, val in (rs.spec.selector or {}).items()]


ReplicationConfig = ReplicaSetConfig
