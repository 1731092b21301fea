"""minik8s: a small, real container orchestrator.

The library owns the API types and validation (`api`), the etcd store (`store`), the API
server (`apiserver`), the client/SDK with the shared informer and work queue (`client`),
and the node and control-plane components. It knows nothing of Ray: `actors/` places it.
"""

from minik8s.client.sdk import Client

__all__ = ["Client"]
