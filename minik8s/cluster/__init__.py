"""The local cluster on one machine: its configuration, network namespaces and managed processes.

This package owns what ``minik8s up`` / ``down`` / ``status`` create on the machine: the
underlay bridge and one network namespace per node, and the long-lived daemons (etcd, the
image registry, the builder ``dockerd``, the Ray head, and per node a ``dockerd`` and a Ray
worker), each a detached session leader with a pidfile and a log under the state dir.
:mod:`~minik8s.cluster.local` runs those processes and knows nothing of the API;
:mod:`~minik8s.cluster.bootstrap` holds the cluster's secrets, join tokens and each component's
settings; :mod:`~minik8s.cluster.nodes` joins a node through the API and starts its processes;
:mod:`~minik8s.cluster.components` is the component registry. No Ray driver or actor is made
here (`local` only runs Ray's processes and probes its GCS): placing the components as Ray
actors is ``actors/``' job, and the CLI runs the steps in order.
"""
