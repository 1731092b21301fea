"""Bring a cluster up, join nodes to it, remove them: the one place that places every actor.

`up` and `join` share one path: a node, local or not, joins through the API with the join
token (k3s-style `K10<sha256 of the CA>::<secret>`), gets its Node object and pod CIDR from
the API, then starts its dockerd and raylet and gets its actors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from actors import launch
from actors.components import (
    ApiServerActor,
    ControllerManagerActor,
    DnsActor,
    GatewayActor,
    KubeletActor,
    NetworkAgentActor,
    ProxyActor,
    SchedulerActor,
)
from minik8s.cluster import local
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.errors import BadRequest, MiniK8sError, Unavailable, from_status
from minik8s.pki import Pki, ensure_pki

log = logging.getLogger("minik8s.actors.cluster")

TOKEN_FILE = "token"
JOIN_TOKEN_FILE = "join-token"
TOKEN_BYTES = 32
KUBELET_PORT = 10250
DNS_PORT = 53
DNS_LOOPBACK_PORT = 5353
JOIN_TIMEOUT_S = 30.0
LOCAL_NODE_NAME = re.compile(r"^node-([1-9][0-9]*)$")
Echo = Callable[[str], None]


@dataclass
class ControlPlaneOptions:
    etcd_endpoints: list[str] | None = None
    skip_images: bool = False
    node_monitor_grace_s: float = 40.0
    pod_eviction_timeout_s: float = 300.0


@dataclass
class JoinRequest:
    """What a node asks for when it joins (the fields of `minik8s join --config node.yaml`)."""

    name: str
    server: str
    token: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[dict[str, Any]] = field(default_factory=list)
    resources: dict[str, Any] = field(default_factory=dict)  # cpu, memory, pods to advertise
    address: str | None = None  # the node's IP; on one machine it follows from the name


def _secret_file(path: Path, make: Callable[[], str]) -> str:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make())
    return path.read_text().strip()


def api_token(cfg: ClusterConfig) -> str:
    """The API bearer token: made at the first `up`, mode 0600 in the state dir."""
    return _secret_file(cfg.state_dir / TOKEN_FILE, lambda: secrets.token_hex(TOKEN_BYTES))


def pki(cfg: ClusterConfig) -> Pki:
    return ensure_pki(cfg.state_dir / "pki", ["127.0.0.1", cfg.head_ip], ["localhost", "minik8s-apiserver"])


def ca_hash(ca_pem: str) -> str:
    return hashlib.sha256(ca_pem.encode()).hexdigest()


def join_token(cfg: ClusterConfig) -> str:
    """`K10<sha256 of the cluster CA>::<secret>`: a joining node checks the CA it is handed against it."""
    ca = pki(cfg).ca_pem()
    return _secret_file(cfg.state_dir / JOIN_TOKEN_FILE,
                        lambda: f"K10{ca_hash(ca)}::node:{secrets.token_hex(TOKEN_BYTES // 2)}")


def api_url(cfg: ClusterConfig, host: str = "127.0.0.1") -> str:
    return f"https://{host}:{cfg.api_port}"


# --- control plane --------------------------------------------------------------------------

def gateway_settings(cfg: ClusterConfig) -> dict[str, Any]:
    """Where the gateway controller serves its config: loopback and the underlay, where pods reach it."""
    from minik8s.gateway.controller import DEFAULT_PORT

    return {"hosts": ["127.0.0.1", cfg.head_ip], "port": DEFAULT_PORT,
            "config_url": f"http://{cfg.head_ip}:{DEFAULT_PORT}/config"}


def dns_settings(cfg: ClusterConfig) -> dict[str, Any]:
    """Cluster DNS listens on the head's underlay address (kube-dns' endpoint) and on loopback for tests."""
    return {"listen": [f"{cfg.head_ip}:{DNS_PORT}", f"127.0.0.1:{DNS_LOOPBACK_PORT}"]}


def ensure_cluster_services(cfg: ClusterConfig) -> None:
    """Objects the control plane itself needs in the API: `kube-system/kube-dns` → the head."""
    from minik8s.client import Client
    from minik8s.dns.bootstrap import ensure_kube_dns

    client = Client(api_url(cfg), api_token(cfg), ca=pki(cfg).ca_pem())
    try:
        ensure_kube_dns(client, cfg.dns_ip, cfg.head_ip, DNS_PORT)
    finally:
        client.close()


def control_plane_specs(cfg: ClusterConfig, opts: ControlPlaneOptions) -> tuple[list[launch.ActorSpec],
                                                                                list[launch.ActorSpec]]:
    token, certs = api_token(cfg), pki(cfg)
    api_cfg = {"etcd_endpoints": local.etcd_endpoints(cfg), "token": token, "hosts": ["127.0.0.1", cfg.head_ip],
               "port": cfg.api_port, "tls_cert": str(certs.server_cert), "tls_key": str(certs.server_key),
               "pod_cidr": cfg.pod_cidr, "node_cidr_prefix": cfg.node_pod_prefixlen, "join_token": join_token(cfg),
               "service_cidr": cfg.service_cidr,
               "cluster_info": {"rayAddress": cfg.ray_address, "registry": cfg.registry_addr,
                                "ca": certs.ca_pem(), "server": api_url(cfg, cfg.head_ip)}}
    server, ca = api_url(cfg, cfg.head_ip), certs.ca_pem()
    lifecycle = {"node_monitor_grace_s": opts.node_monitor_grace_s,
                 "pod_eviction_timeout_s": opts.pod_eviction_timeout_s}
    first = [launch.ActorSpec("apiserver", ApiServerActor, cfg.ray_control_plane_resource, (api_cfg,))]
    rest = [launch.ActorSpec("scheduler", SchedulerActor, cfg.ray_control_plane_resource, (server, token, ca)),
            launch.ActorSpec("controller-manager", ControllerManagerActor, cfg.ray_control_plane_resource,
                             (server, token, ca, lifecycle)),
            launch.ActorSpec("gateway", GatewayActor, cfg.ray_control_plane_resource,
                             (server, token, ca, gateway_settings(cfg))),
            launch.ActorSpec("dns", DnsActor, cfg.ray_control_plane_resource, (dns_settings(cfg), server, token, ca))]
    return first, rest


def start_control_plane(cfg: ClusterConfig, opts: ControlPlaneOptions, echo: Echo) -> dict[str, dict[str, Any]]:
    echo("control plane: etcd, registry, image builder, Ray head ...")
    local.start_control_plane(cfg, opts.etcd_endpoints)
    if not opts.skip_images:
        import docker

        from minik8s.images.base import ensure_base_images

        echo("base images ...")
        ensure_base_images(docker.DockerClient(base_url=f"unix://{cfg.builder_socket}"), cfg.registry_addr,
                           cfg.state_dir / "images")
    launch.connect(cfg.ray_address, cfg.ray_namespace)
    first, rest = control_plane_specs(cfg, opts)
    launch.ensure(first)
    states = launch.wait_healthy([s.name for s in first])
    ensure_cluster_services(cfg)
    launch.ensure(rest)
    states.update(launch.wait_healthy([s.name for s in rest]))
    return states


# --- nodes ----------------------------------------------------------------------------------

def request_join(req: JoinRequest, pod_cidr: str | None = None) -> dict[str, Any]:
    """Present the join token; verify the CA we are handed against the hash inside the token."""
    m = re.match(r"^K10([0-9a-f]{64})::(.+)$", req.token)
    if not m:
        raise BadRequest("the join token is malformed: expected K10<hash>::<secret> (see `minik8s token`)")
    body = {"name": req.name, "labels": req.labels, "taints": req.taints, "podCIDR": pod_cidr}
    try:
        # The CA is not known yet: the reply is trusted only once its CA matches the token's hash.
        resp = httpx.post(f"{req.server.rstrip('/')}/minik8s/join", json=body, verify=False,  # noqa: S501
                          headers={"Authorization": f"Bearer {req.token}"}, timeout=JOIN_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach the API server at {req.server}: {exc}") from None
    if resp.status_code >= 400:
        raise from_status(resp.status_code, resp.json() if resp.content else None)
    reply: dict[str, Any] = resp.json()
    if ca_hash(reply["clusterInfo"]["ca"]) != m.group(1):
        raise BadRequest("the API server's CA does not match the join token: refusing to join")
    return reply


def local_node(cfg: ClusterConfig, name: str) -> NodeConfig:
    m = LOCAL_NODE_NAME.match(name)
    if not m:
        raise BadRequest(f'on one machine nodes are named node-N (N from 1), got "{name}"')
    return cfg.node(int(m.group(1)))


def kubelet_config(node: NodeConfig, token: str, registry: str, req: JoinRequest | None) -> dict[str, Any]:
    resources = (req.resources if req else None) or {}
    return {"node_name": node.name, "node_ip": node.ip, "pod_cidr": node.pod_cidr, "docker_url": node.docker_url,
            "pods_dir": str(node.dir / "pods"), "api_token": token, "server_port": KUBELET_PORT,
            "image_registry": registry, "node_labels": dict(req.labels) if req else {},
            "cpu": str(resources["cpu"]) if "cpu" in resources else None,
            "memory": str(resources["memory"]) if "memory" in resources else None,
            **({"max_pods": int(resources["pods"])} if "pods" in resources else {})}


def node_specs(node: NodeConfig, reply: dict[str, Any], req: JoinRequest | None) -> list[launch.ActorSpec]:
    info = reply["clusterInfo"]
    token, server, ca = reply["token"], info["server"], info["ca"]
    facts = {"name": node.name, "ip": node.ip, "pod_cidr": node.pod_cidr}
    return [launch.ActorSpec(f"kubelet-{node.name}", KubeletActor, node.ray_resource,
                             (kubelet_config(node, token, info["registry"], req), server, token, ca)),
            launch.ActorSpec(f"network-{node.name}", NetworkAgentActor, node.ray_resource, (facts, server, token, ca)),
            launch.ActorSpec(f"proxy-{node.name}", ProxyActor, node.ray_resource, (facts, server, token, ca))]


def join_local(cfg: ClusterConfig, req: JoinRequest, echo: Echo) -> dict[str, dict[str, Any]]:
    """Join a node that lives on this machine: netns, dockerd, raylet, then its actors."""
    node = local_node(cfg, req.name)
    if req.address and req.address != node.ip:
        raise BadRequest(f"on one machine {node.name} has the address {node.ip}, not {req.address}")
    reply = request_join(req, node.pod_cidr)
    granted = reply["node"]["spec"].get("podCIDR")
    if granted != node.pod_cidr:
        raise MiniK8sError(f"the API gave {node.name} the pod CIDR {granted}, but its slot is {node.pod_cidr}")
    echo(f"{node.name}: netns {node.netns}, {node.ip}, pods {node.pod_cidr}, dockerd, raylet ...")
    local.start_node(cfg, node)
    launch.connect(reply["clusterInfo"]["rayAddress"], cfg.ray_namespace)
    specs = node_specs(node, reply, req)
    launch.ensure(specs)
    return launch.wait_healthy([s.name for s in specs])


def node_actor_names(name: str) -> list[str]:
    return [f"kubelet-{name}", f"network-{name}", f"proxy-{name}"]
