"""Bootstrapping a cluster: its secrets (API token, CA, join token), the settings each component
starts with, and a node's join handshake.

The join token is k3s-shaped, `K10<sha256 of the CA>::<secret>`: a joining node presents it to
the API (`POST /minik8s/join`), gets its Node object, pod CIDR and the cluster's facts back, and
trusts the reply only once the CA in it matches the hash inside the token. Where components
run (Ray actors, pinned to the head or a node) is decided in `actors/`, not here.
"""

from __future__ import annotations

import hashlib
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

from minik8s.cluster import host, local
from minik8s.cluster.components import node_actor_names
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.errors import BadRequest, Unavailable, from_status
from minik8s.pki import Pki, ensure_pki

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


def control_plane_settings(cfg: ClusterConfig, opts: ControlPlaneOptions) -> dict[str, dict[str, Any]]:
    """Each control-plane component's settings, by component name."""
    token, certs = api_token(cfg), pki(cfg)
    api_cfg = {"etcd_endpoints": local.etcd_endpoints(cfg), "token": token, "hosts": control_plane_hosts(cfg),
               "port": cfg.api_port, "tls_cert": str(certs.server_cert), "tls_key": str(certs.server_key),
               "pod_cidr": cfg.pod_cidr, "node_cidr_prefix": cfg.node_pod_prefixlen, "join_token": join_token(cfg),
               "service_cidr": cfg.service_cidr,
               "cluster_info": {"rayAddress": cfg.ray_address, "registry": cfg.registry_addr,
                                "ca": certs.ca_pem(), "server": api_url(cfg, cfg.control_plane_ip)}}
    client = {"server": api_url(cfg, cfg.head_ip), "token": token, "ca": certs.ca_pem()}
    lifecycle = {"node_monitor_grace_s": opts.node_monitor_grace_s,
                 "pod_eviction_timeout_s": opts.pod_eviction_timeout_s}
    return {"apiserver": {"config": api_cfg},
            "scheduler": client,
            "controller-manager": {**client, "node_lifecycle": lifecycle},
            "gateway": {**client, "gateway": gateway_settings(cfg)},
            "dns": {**client, "dns": dns_settings(cfg)}}


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


def node_settings(node: NodeConfig, reply: dict[str, Any], req: JoinRequest | None) -> dict[str, dict[str, Any]]:
    """Each node component's settings, by component name, from the API's join reply."""
    info = reply["clusterInfo"]
    client = {"server": info["server"], "token": reply["token"], "ca": info["ca"]}
    facts = {"name": node.name, "ip": node.ip, "pod_cidr": node.pod_cidr, "interface": node.interface}
    return {"kubelet": {**client, "kubelet": kubelet_config(node, reply["token"], info["registry"], req)},
            "network": {**client, "node": facts},
            "proxy": {**client, "node": facts}}


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


