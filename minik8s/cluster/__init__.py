"""The local cluster on one machine: its configuration, network namespaces and managed processes.

This package owns what ``minik8s up`` / ``down`` / ``status`` create on the machine: the
underlay bridge and one network namespace per node, and the long-lived daemons (etcd, the
image registry, the builder ``dockerd``, the Ray head, and per node a ``dockerd`` and a Ray
worker), each a detached session leader with a pidfile and a log under the state dir.
It knows nothing of the API or of Ray actors; the CLI calls :mod:`minik8s.cluster.local`.
"""
