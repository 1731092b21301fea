"""Thin Ray actor wrappers: they decide where components run and restart them; no logic here.

Every actor is named, detached, `max_restarts=-1`, and pinned by a custom resource: the
control plane to `minik8s/control-plane`, a node's actors to `minik8s/node/<name>`. An actor
holds nothing that is not in etcd or on its node, so a restart rebuilds it from the API.
"""
