"""Bring a cluster up, join nodes to it, remove them: the one place that places every actor.

`up` and `join` share one path: a node, local or not, joins through the API with the join
token (k3s-style `K10<sha256 of the CA>::<secret>`), gets its Node object and pod CIDR from
the API, then starts its dockerd and raylet and gets its actors.  A local node lives in a netns
of this machine; a host-mode node is the machine (or netns) running `minik8s join` itself.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import shlex
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
from minik8s.cluster import host, local
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
#: Stands for the pod subnet in `join --dry-run` output until the API assigns one (TEST-NET-2).
PLAN_POD_CIDR = "198.51.100.0/24"
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
    host: bool = False  # host mode: the node is this machine (its current netns), not a netns made for it
    interface: str | None = None  # host mode: the device holding `address` (default: the route to the API's)
    pod_cidr: str | None = None  # host mode: a wished pod subnet (default: the API assigns one)


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


def control_plane_hosts(cfg: ClusterConfig) -> list[str]:
    """Where the control plane listens: loopback, the underlay, and the advertised address if any."""
    return list(dict.fromkeys(["127.0.0.1", cfg.head_ip, cfg.control_plane_ip]))


def pki(cfg: ClusterConfig) -> Pki:
    return ensure_pki(cfg.state_dir / "pki", control_plane_hosts(cfg), ["localhost", "minik8s-apiserver"])


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

    return {"hosts": control_plane_hosts(cfg), "port": DEFAULT_PORT,
            "config_url": f"http://{cfg.control_plane_ip}:{DEFAULT_PORT}/config"}


def dns_settings(cfg: ClusterConfig) -> dict[str, Any]:
    """Cluster DNS listens on the head's underlay address (kube-dns' endpoint) and on loopback for tests."""
    hosts = dict.fromkeys([cfg.head_ip, cfg.control_plane_ip])
    return {"listen": [*(f"{h}:{DNS_PORT}" for h in hosts), f"127.0.0.1:{DNS_LOOPBACK_PORT}"]}


def ensure_cluster_services(cfg: ClusterConfig) -> None:
    """Objects the control plane itself needs in the API: `kube-system/kube-dns` → the head."""
    from minik8s.client import Client
    from minik8s.dns.bootstrap import ensure_kube_dns

    client = Client(api_url(cfg), api_token(cfg), ca=pki(cfg).ca_pem())
    try:
        ensure_kube_dns(client, cfg.dns_ip, cfg.control_plane_ip, DNS_PORT)
    finally:
        client.close()


def control_plane_specs(cfg: ClusterConfig, opts: ControlPlaneOptions) -> tuple[list[launch.ActorSpec],
                                                                                list[launch.ActorSpec]]:
    token, certs = api_token(cfg), pki(cfg)
    api_cfg = {"etcd_endpoints": local.etcd_endpoints(cfg), "token": token, "hosts": control_plane_hosts(cfg),
               "port": cfg.api_port, "tls_cert": str(certs.server_cert), "tls_key": str(certs.server_key),
               "pod_cidr": cfg.pod_cidr, "node_cidr_prefix": cfg.node_pod_prefixlen, "join_token": join_token(cfg),
               "service_cidr": cfg.service_cidr,
               "cluster_info": {"rayAddress": cfg.ray_address, "registry": cfg.registry_addr,
                                "ca": certs.ca_pem(), "server": api_url(cfg, cfg.control_plane_ip)}}
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
    etcd = local.start_control_plane(cfg, opts.etcd_endpoints)
    if etcd != cfg.etcd_endpoints:
        echo(f"etcd: external {','.join(etcd)} (not started or stopped by minik8s)")
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
    facts = {"name": node.name, "ip": node.ip, "pod_cidr": node.pod_cidr, "interface": node.interface}
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


# --- host mode: this machine is the node ----------------------------------------------------

def _server_ip(server: str) -> str:
    """The API server's IPv4 address (resolved as the join request's HTTP client would)."""
    name = urlsplit(server).hostname
    if not name:
        raise BadRequest(f'server must be a URL like https://HEAD-IP:6443, got "{server}"')
    try:
        return str(socket.getaddrinfo(name, None, socket.AF_INET)[0][4][0])
    except OSError as exc:
        raise Unavailable(f"cannot resolve the API server's host {name}: {exc}") from None


def _host_address(req: JoinRequest) -> host.HostAddress:
    return host.resolve_address(_server_ip(req.server), req.address, req.interface)


def host_join_plan(cfg: ClusterConfig, req: JoinRequest) -> list[str]:
    """What `join` would do for a host-mode node, without asking the API or starting anything.

    The Ray head and registry are shown at the API server's host with this config's ports; the
    join reply decides them, and the pod subnet, for real."""
    addr = _host_address(req)
    head = _server_ip(req.server)
    view = replace(cfg, nodes=0, advertise_address=head)
    node = cfg.host_node(req.name, addr.ip, addr.prefixlen, addr.interface, req.pod_cidr or PLAN_POD_CIDR, head)
    cmds = [shlex.join(local._node_dockerd(view, node).argv), shlex.join(local._node_raylet(view, node).argv)]
    if not req.pod_cidr:
        bip = f"--bip={node.pod_gateway}/{PLAN_POD_CIDR.split('/')[1]}"
        cmds = [c.replace(bip, "--bip=<pod-gateway>/<prefix>") for c in cmds]
    return [f"node {node.name}: host mode, {addr.ip}/{addr.prefixlen} on {addr.interface} "
            "(this network namespace: no netns or veth is made)",
            f"join: POST {req.server.rstrip('/')}/minik8s/join with the join token"
            f"{', wishing pod CIDR ' + req.pod_cidr if req.pod_cidr else ' (the API assigns the pod CIDR)'}",
            f"state: {node.dir}",
            f"start: {cmds[0]}",
            f"start: {cmds[1]}",
            f"actors: {', '.join(node_actor_names(node.name))} (pinned by Ray resource {node.ray_resource})"]


def join_host(cfg: ClusterConfig, req: JoinRequest, echo: Echo) -> dict[str, dict[str, Any]]:
    """Join this machine, in its current network namespace, as node `req.name`: the join token is
    checked by the API, then a dockerd with the pod subnet the API gave, a raylet joined to the
    head, and the node's actors start here, exactly as for a local node but without a netns."""
    addr = _host_address(req)  # config errors before the API hears of the node
    previous = host.load_record(cfg, req.name)
    reply = request_join(req, req.pod_cidr or (previous.pod_cidr if previous else None))
    granted = reply["node"]["spec"].get("podCIDR")
    if not granted or (req.pod_cidr and granted != req.pod_cidr):
        raise MiniK8sError(f"the API gave {req.name} the pod CIDR {granted}, not {req.pod_cidr or 'one'}")
    info = reply["clusterInfo"]
    record = host.HostNodeRecord(req.name, addr.ip, addr.prefixlen, addr.interface, granted, info["server"],
                                 info["rayAddress"], info["registry"], info["ca"], reply["token"])
    view, node = record.cluster(cfg), record.node(cfg)
    echo(f"{node.name}: host mode, {node.ip} on {node.interface}, pods {node.pod_cidr}, dockerd, raylet "
         f"(Ray head {view.ray_address}) ...")
    record.save(cfg)
    local.start_node(view, node)
    launch.connect(view.ray_address, cfg.ray_namespace, node_ip=node.ip)
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
