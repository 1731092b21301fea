"""The node agent: runs a node's pods on its Docker Engine and reports them to the API.

This package owns:

- ``runtime``: :class:`DockerRuntime`, pods as a pause (sandbox) container plus app
  containers that join its network and IPC namespaces; adoption by labels; restarts with
  back-off; image pulls that never stall other pods; logs and exec.
- ``status``: pure computation of a ``PodStatus`` (phase, conditions, container states,
  QoS class) from what Docker reports.
- ``kubelet``: :class:`KubeletConfig` and :class:`Kubelet`: node registration and
  heartbeat, the node Lease, the pod informer + work queue + workers, Docker events,
  Events, and the kubelet HTTP server (``server``: logs, exec, healthz).

Nothing here knows about Ray; an actor wrapper constructs ``Kubelet(config, client)`` and
calls ``run()`` / ``stop()``.
"""

from __future__ import annotations
