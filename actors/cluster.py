"""Bring a cluster up, join nodes to it, remove them: the one place that places every actor.

`up` and `join` share one path: a node, local or not, joins through the API with the join
token (see :mod:`minik8s.cluster.bootstrap`), gets its Node object and pod CIDR from the API,
then starts its dockerd and raylet and gets its actors.  This module only decides where each
component of the registry (:mod:`minik8s.cluster.components`) runs: control-plane components
pinned to the head, node components to their node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actors import launch
from minik8s.cluster import components as registry
from minik8s.cluster import host, local
from minik8s.cluster.bootstrap import (
    DNS_LOOPBACK_PORT,
    DNS_PORT,
    JOIN_TOKEN_FILE,
    KUBELET_PORT,
    LOCAL_NODE_NAME,
    PLAN_POD_CIDR,
    TOKEN_FILE,
    ControlPlaneOptions,
    JoinRequest,
    _host_address,
    api_token,
    api_url,
    ca_hash,
    control_plane_hosts,
    control_plane_settings,
    dns_settings,
    ensure_cluster_services,
    gateway_settings,
    host_join_plan,
    join_token,
    kubelet_config,
    local_node,
    node_settings,
    pki,
    request_join,
)
from minik8s.cluster.components import node_actor_names
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.errors import BadRequest, MiniK8sError

log = logging.getLogger("minik8s.actors.cluster")
Echo = Callable[[str], None]


# --- control plane --------------------------------------------------------------------------

def control_plane_specs(cfg: ClusterConfig, opts: ControlPlaneOptions) -> tuple[list[launch.ActorSpec],
                                                                                list[launch.ActorSpec]]:
    """Every control-plane component, pinned to the head: the bootstrap ones (the API) first."""
    settings = control_plane_settings(cfg, opts)
    specs = [launch.ActorSpec(c.actor_name(), c.name, cfg.ray_control_plane_resource, settings[c.name])
             for c in registry.control_plane()]
    first = [s for s, c in zip(specs, registry.control_plane(), strict=True) if c.bootstrap]
    return first, [s for s in specs if s not in first]


def start_control_plane(cfg: ClusterConfig, opts: ControlPlaneOptions, echo: Echo,
                        before_controllers: Callable[[], dict[str, dict[str, Any]]] | None = None
                        ) -> dict[str, dict[str, Any]]:
    """The processes, then the API server, then ``before_controllers`` (``up`` joins its nodes there),
    then the controllers, the scheduler and the rest.

    Kubelets before controllers: after the control plane was killed, its node lifecycle controller
    gives every node a grace period from its own start; a kubelet that came back later than that
    would see its node declared lost and its running pods evicted."""
    echo("control plane: etcd, registry, image builder, Ray head ...")
    etcd = local.start_control_plane(cfg, opts.etcd_endpoints, opts.etcd_tls)
    if etcd != cfg.etcd_endpoints:
        echo(f"etcd: external {','.join(etcd)} (not started or stopped by minik8s)")
    if not opts.skip_images:
        import docker

        from minik8s.images.base import ensure_base_images

        echo("base images ...")
        ensure_base_images(docker.DockerClient(base_url=f"unix://{cfg.builder_socket}"), cfg.registry_addr,
                           cfg.state_dir / "images")
    launch.connect(cfg.ray_address, cfg.ray_namespace, cfg.ray_token_path)
    first, rest = control_plane_specs(cfg, opts)
    echo(f"actors: {', '.join(s.name for s in first)} ...")
    launch.ensure(first)
    states = launch.wait_healthy([s.name for s in first])
    ensure_cluster_services(cfg)
    if before_controllers is not None:
        states.update(before_controllers())
    echo(f"actors: {', '.join(s.name for s in rest)} ...")
    launch.ensure(rest)
    states.update(launch.wait_healthy([s.name for s in rest]))
    return states


# --- nodes ----------------------------------------------------------------------------------

def node_specs(node: NodeConfig, reply: dict[str, Any], req: JoinRequest | None) -> list[launch.ActorSpec]:
    """Every node component, pinned to the node by its Ray resource."""
    settings = node_settings(node, reply, req)
    return [launch.ActorSpec(c.actor_name(node.name), c.name, node.ray_resource, settings[c.name])
            for c in registry.node_components()]


def join_local(cfg: ClusterConfig, req: JoinRequest, echo: Echo) -> dict[str, dict[str, Any]]:
    """Join a node that lives on this machine: netns, dockerd, raylet, then its actors."""
    return join_locals(cfg, [req], echo)


def join_locals(cfg: ClusterConfig, reqs: list[JoinRequest], echo: Echo) -> dict[str, dict[str, Any]]:
    """Join nodes that live on this machine: each one's netns, dockerd and raylet in turn, then every
    node's actors at once (after a control-plane restart all kubelets come back together)."""
    specs: list[launch.ActorSpec] = []
    for req in reqs:
        specs.extend(_prepare_local(cfg, req, echo))
    echo(f"node actors: {', '.join(s.name for s in specs)} ...")
    launch.ensure(specs)
    return launch.wait_healthy([s.name for s in specs])


def _prepare_local(cfg: ClusterConfig, req: JoinRequest, echo: Echo) -> list[launch.ActorSpec]:
    node = local_node(cfg, req.name)
    if req.address and req.address != node.ip:
        raise BadRequest(f"on one machine {node.name} has the address {node.ip}, not {req.address}")
    reply = request_join(req, node.dir, node.ip, node.pod_cidr)
    granted = reply["node"]["spec"].get("podCIDR")
    if granted != node.pod_cidr:
        raise MiniK8sError(f"the API gave {node.name} the pod CIDR {granted}, but its slot is {node.pod_cidr}")
    echo(f"{node.name}: netns {node.netns}, {node.ip}, pods {node.pod_cidr}, dockerd, raylet ...")
    local.start_node(cfg, node)
    launch.connect(reply["clusterInfo"]["rayAddress"], cfg.ray_namespace, cfg.ray_token_path)
    return node_specs(node, reply, req)


# --- host mode: this machine is the node ----------------------------------------------------

def join_host(cfg: ClusterConfig, req: JoinRequest, echo: Echo) -> dict[str, dict[str, Any]]:
    """Join this machine, in its current network namespace, as node `req.name`: the join token is
    checked by the API, then a dockerd with the pod subnet the API gave, a raylet joined to the
    head, and the node's actors start here, exactly as for a local node but without a netns."""
    addr = _host_address(req)  # config errors before the API hears of the node
    previous = host.load_record(cfg, req.name)
    reply = request_join(req, cfg.nodes_dir / req.name, addr.ip,
                         req.pod_cidr or (previous.pod_cidr if previous else None))
    granted = reply["node"]["spec"].get("podCIDR")
    if not granted or (req.pod_cidr and granted != req.pod_cidr):
        raise MiniK8sError(f"the API gave {req.name} the pod CIDR {granted}, not {req.pod_cidr or 'one'}")
    info = reply["clusterInfo"]
    record = host.HostNodeRecord(req.name, addr.ip, addr.prefixlen, addr.interface, granted, info["server"],
                                 info["rayAddress"], info["registry"], info["ca"], ray_token=info.get("rayToken", ""))
    view, node = record.cluster(cfg), record.node(cfg)
    echo(f"{node.name}: host mode, {node.ip} on {node.interface}, pods {node.pod_cidr}, dockerd, raylet "
         f"(Ray head {view.ray_address}) ...")
    record.save(cfg)
    local.start_node(view, node)
    launch.connect(view.ray_address, cfg.ray_namespace, view.ray_token_path, node_ip=node.ip)
    specs = node_specs(node, reply, req)
    launch.ensure(specs)
    return launch.wait_healthy([s.name for s in specs])


def stop_host_node(cfg: ClusterConfig, record: host.HostNodeRecord) -> None:
    """Stop what `join_host` started on this machine (its actors must be gone or going) and forget it."""
    import ray

    if ray.is_initialized():  # a driver attached to the raylet about to stop would die with it
        ray.shutdown()
    local.stop_node(record.cluster(cfg), record.node(cfg))
    host.forget(cfg, record.name)


__all__ = ["DNS_LOOPBACK_PORT", "DNS_PORT", "JOIN_TOKEN_FILE", "KUBELET_PORT", "LOCAL_NODE_NAME", "PLAN_POD_CIDR",
           "TOKEN_FILE", "ControlPlaneOptions", "JoinRequest", "api_token", "api_url", "ca_hash",
           "control_plane_hosts", "control_plane_specs", "dns_settings", "ensure_cluster_services",
           "gateway_settings", "host", "host_join_plan", "join_host", "join_local", "join_locals", "join_token",
           "kubelet_config",
           "local_node", "node_actor_names", "node_specs", "pki", "request_join", "start_control_plane",
           "stop_host_node"]
