"""What a machine runs before its actors: the control plane's processes, and a node's join and processes.

`up` and `join` share one path: a node, local or not, joins through the API with the join token
(:func:`minik8s.cluster.bootstrap.request_join`), gets its Node object and pod CIDR from the API,
then starts its dockerd and raylet. What comes back (:class:`JoinedNode`) is what `actors/` needs to
place the node's actors on its raylet; placing them is `actors/`' job, not this module's (nothing
here imports Ray). `leave` and `node remove` undo a host-mode join with :func:`stop_host_node`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from minik8s.cluster import host, local
from minik8s.cluster.bootstrap import ControlPlaneOptions, JoinRequest, _host_address, local_node, request_join
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.errors import BadRequest, MiniK8sError

Echo = Callable[[str], None]


@dataclass(frozen=True)
class JoinedNode:
    """A node the API has admitted and whose dockerd and raylet run: what its actors are placed from."""

    node: NodeConfig
    reply: dict[str, Any]
    """The API's join reply (the Node, the cluster's facts: Ray head, registry, CA, component credentials)."""
    req: JoinRequest
    ray_address: str
    ray_token_path: Path
    node_ip: str | None = None
    """The raylet to attach through when several run on this machine (a host-mode node); None: any."""


def start_control_plane_processes(cfg: ClusterConfig, opts: ControlPlaneOptions, echo: Echo) -> None:
    """etcd (unless external), the registry, the image builder and the Ray head; then the base images."""
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


def join_locals(cfg: ClusterConfig, reqs: list[JoinRequest], echo: Echo) -> list[JoinedNode]:
    """Join nodes that live on this machine, each one's netns, dockerd and raylet in turn (their actors
    are then placed all at once: after a control-plane restart all kubelets come back together)."""
    return [join_local(cfg, req, echo) for req in reqs]


def join_local(cfg: ClusterConfig, req: JoinRequest, echo: Echo) -> JoinedNode:
    """Join a node that lives on this machine (`node-N`, in its own netns): the API admits it with the
    pod CIDR of its slot, then its netns, dockerd and raylet start."""
    node = local_node(cfg, req.name)
    if req.address and req.address != node.ip:
        raise BadRequest(f"on one machine {node.name} has the address {node.ip}, not {req.address}")
    reply = request_join(req, node.dir, node.ip, node.pod_cidr)
    granted = reply["node"]["spec"].get("podCIDR")
    if granted != node.pod_cidr:
        raise MiniK8sError(f"the API gave {node.name} the pod CIDR {granted}, but its slot is {node.pod_cidr}")
    echo(f"{node.name}: netns {node.netns}, {node.ip}, pods {node.pod_cidr}, dockerd, raylet ...")
    local.start_node(cfg, node)
    return JoinedNode(node, reply, req, reply["clusterInfo"]["rayAddress"], cfg.ray_token_path)


def join_host(cfg: ClusterConfig, req: JoinRequest, echo: Echo) -> JoinedNode:
    """Join this machine, in its current network namespace, as node `req.name`: the join token is
    checked by the API, then a dockerd with the pod subnet the API gave and a raylet joined to the
    head start here, exactly as for a local node but without a netns. The join is recorded (state
    dir) so that `leave` can undo it."""
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
    return JoinedNode(node, reply, req, view.ray_address, view.ray_token_path, node_ip=node.ip)


def stop_host_node(cfg: ClusterConfig, record: host.HostNodeRecord) -> None:
    """Stop what `join_host` started on this machine and forget it. Its actors must be gone or going, and
    this process detached from Ray (a driver attached to the raylet about to stop would die with it)."""
    local.stop_node(record.cluster(cfg), record.node(cfg))
    host.forget(cfg, record.name)


__all__ = ["Echo", "JoinedNode", "join_host", "join_local", "join_locals", "start_control_plane_processes",
           "stop_host_node"]
