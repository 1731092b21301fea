"""Bootstrapping a cluster: its secrets (API token, CA, join token), the settings each component
starts with, and a node's join handshake.

The join token is k3s-shaped, `K10<sha256 of the CA>::<secret>`. A joining node first fetches the
cluster CA unauthenticated (`GET /cacerts`) and checks it against the hash inside the token; only
then does it present the token, over TLS verified against that CA (`POST /minik8s/join`), with
certificate requests for keys it made itself. It gets its Node object, pod CIDR, its certificates
and the cluster's facts back, never the admin token. Where components run (Ray actors, pinned to the
head or a node) is decided in `actors/`, not here.

A node's credentials live in `<state>/nodes/<name>/pki/` (0700): `ca.crt`, `node.crt` + `node.key`
(its identity toward the API, `system:node:<name>`), `kubelet.crt` + `kubelet.key` (the kubelet's
serving certificate); keys 0600. Its components read them from there (their settings carry paths).
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shlex
import shutil
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from minik8s.auth import user
from minik8s.auth.authn import TokenAuthenticator
from minik8s.auth.user import NODE_PREFIX, NODES
from minik8s.cluster import host, local, raytoken
from minik8s.cluster.components import node_actor_names
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.errors import BadRequest, Unavailable, from_status
from minik8s.pki import Pki, ensure_pki, new_key_and_csr, write_file
from minik8s.store.failover import EtcdTLS

TOKEN_FILE = "token"
#: kube-apiserver's --token-auth-file: one credential per control-plane component (0600, state dir)
COMPONENT_TOKENS_FILE = "component-tokens.csv"
#: component name (as in minik8s.cluster.components) -> the user its credential proves
COMPONENT_USERS = {"scheduler": user.SCHEDULER, "controller-manager": user.CONTROLLER_MANAGER,
                   "proxy": user.PROXY, "dns": user.DNS, "gateway": user.GATEWAY, "netpol": user.NETPOL}
#: where the join reply's cluster facts carry the node proxies' credential
PROXY_TOKEN_KEY = "proxyToken"
#: ... and the credential of the NetworkPolicy agents (in each kubelet)
NETPOL_TOKEN_KEY = "netpolToken"
JOIN_TOKEN_FILE = "join-token"
SA_KEY_FILE = "sa.key"  # signs ServiceAccount tokens (kube-apiserver's --service-account-signing-key-file)
CLUSTER_DOMAIN = "cluster.local"  # the DNS domain pods name Services in (the kubelet's default)
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
    pod_eviction_timeout_s: float = 300.0  # toleration of node.kubernetes.io/unreachable (a silent kubelet)
    etcd_tls: EtcdTLS | None = None  # `up --etcd-cafile/--etcd-certfile/--etcd-keyfile` (https:// endpoints)
    #: toleration of node.kubernetes.io/not-ready (a kubelet that posts Ready=False, e.g. its dockerd is down)
    not_ready_toleration_s: float = 300.0


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
    force: bool = False  # take over a node name that is already in the cluster (`join --force`)


@dataclass(frozen=True)
class NodeCredentials:
    """A node's certificates and keys, in its state dir (see the module's docstring)."""

    dir: Path

    @classmethod
    def of(cls, node_dir: Path) -> NodeCredentials:
        return cls(node_dir / "pki")

    @property
    def ca(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def client_cert(self) -> Path:
        return self.dir / "node.crt"

    @property
    def client_key(self) -> Path:
        return self.dir / "node.key"

    @property
    def serving_cert(self) -> Path:
        return self.dir / "kubelet.crt"

    @property
    def serving_key(self) -> Path:
        return self.dir / "kubelet.key"

    def held_for(self, ca_pem: str) -> bool:
        """Whether these are credentials of the cluster whose CA is `ca_pem` (a re-join presents them)."""
        return all(p.exists() for p in (self.ca, self.client_cert, self.client_key)) and self.ca.read_text() == ca_pem

    def client_settings(self) -> dict[str, str]:
        return {"cert": str(self.client_cert), "key": str(self.client_key)}


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


def component_tokens(cfg: ClusterConfig) -> dict[str, str]:
    """Each control-plane component's own bearer token, by component name; made at the first `up` (a
    component added later gets its line then), kept in the token file the API server reads."""
    path = cfg.state_dir / COMPONENT_TOKENS_FILE
    tokens = TokenAuthenticator.load(path) if path.exists() else TokenAuthenticator()
    by_user = {info.name: token for token, info in tokens.entries.items()}
    missing = [c for c, name in COMPONENT_USERS.items() if name not in by_user]
    for component in missing:
        name = COMPONENT_USERS[component]
        token = secrets.token_hex(TOKEN_BYTES)
        tokens.add(token, user.UserInfo(name, (), f"minik8s-{component}"))
        by_user[name] = token
    if missing or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(tokens.dump())
        os.replace(tmp, path)
    return {component: by_user[name] for component, name in COMPONENT_USERS.items()}


def control_plane_hosts(cfg: ClusterConfig) -> list[str]:
    """Where the control plane listens: loopback, the underlay, and the advertised address if any."""
    return list(dict.fromkeys(["127.0.0.1", cfg.head_ip, cfg.control_plane_ip]))


def pki(cfg: ClusterConfig) -> Pki:
    """The CA and the API server's certificate, valid for the control plane's addresses and for how pods name
    the API: the `kubernetes` Service's ClusterIP and `kubernetes.default.svc[.cluster.local]`."""
    from minik8s.apiserver.masterservice import cluster_ip

    names = ["localhost", "minik8s-apiserver", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             f"kubernetes.default.svc.{CLUSTER_DOMAIN}"]
    return ensure_pki(cfg.state_dir / "pki", [*control_plane_hosts(cfg), cluster_ip(cfg.service_cidr)], names)


def service_account_key_file(cfg: ClusterConfig) -> str:
    """Where the API server keeps the key it signs ServiceAccount tokens with (made 0600 at its first start)."""
    return str(cfg.state_dir / "pki" / SA_KEY_FILE)


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


def _etcd_tls_settings(cfg: ClusterConfig) -> dict[str, str | None]:
    """The API server's TLS files toward https:// etcd members, as recorded by `up` (none for http://)."""
    from minik8s.cluster import etcd_choice

    tls = etcd_choice.recorded_tls(cfg)
    if tls is None:
        return {}
    return {"etcd_cafile": tls.ca_file, "etcd_certfile": tls.cert_file, "etcd_keyfile": tls.key_file}


def control_plane_settings(cfg: ClusterConfig, opts: ControlPlaneOptions) -> dict[str, dict[str, Any]]:
    """Each control-plane component's settings, by component name."""
    from minik8s.apiserver import audit
    from minik8s.store import encryption

    token, certs, own = api_token(cfg), pki(cfg), component_tokens(cfg)
    api_cfg = {"etcd_endpoints": local.etcd_endpoints(cfg), "token": token, "hosts": control_plane_hosts(cfg),
               "token_auth_file": str(cfg.state_dir / COMPONENT_TOKENS_FILE),
               "port": cfg.api_port, "tls_cert": str(certs.server_cert), "tls_key": str(certs.server_key),
               "ca_cert": str(certs.ca_cert), "ca_key": str(certs.ca_key),
               "kubelet_client_cert": str(certs.kubelet_client_cert),
               "kubelet_client_key": str(certs.kubelet_client_key),
               "pod_cidr": cfg.pod_cidr, "node_cidr_prefix": cfg.node_pod_prefixlen, "join_token": join_token(cfg),
               "service_cidr": cfg.service_cidr, "service_account_key_file": service_account_key_file(cfg),
               "advertise_address": cfg.control_plane_ip,
               # pods tolerate a failed node this long, then the taint eviction controller moves them
               "default_not_ready_toleration_seconds": round(opts.not_ready_toleration_s),
               "default_unreachable_toleration_seconds": round(opts.pod_eviction_timeout_s),
               # Secrets encrypted at rest under a key made at the first `up`; every write in the audit log
               "encryption_config": str(encryption.ensure_config(encryption.config_path(cfg.state_dir))),
               "audit_log": str(audit.log_path(cfg.state_dir)),
               **_etcd_tls_settings(cfg),
               "cluster_info": {"rayAddress": cfg.ray_address, "rayToken": raytoken.ensure(cfg.ray_token_path),
                                "registry": cfg.registry_addr,
                                "ca": certs.ca_pem(), "server": api_url(cfg, cfg.control_plane_ip),
                                PROXY_TOKEN_KEY: own["proxy"], NETPOL_TOKEN_KEY: own["netpol"]}}

    def client(component: str) -> dict[str, Any]:  # each with its own identity, never the admin's
        return {"server": api_url(cfg, cfg.head_ip), "token": own[component], "ca": certs.ca_pem()}

    lifecycle = {"node_monitor_grace_s": opts.node_monitor_grace_s}
    return {"apiserver": {"config": api_cfg},
            "scheduler": client("scheduler"),
            "controller-manager": {**client("controller-manager"), "node_lifecycle": lifecycle},
            "gateway": {**client("gateway"), "gateway": gateway_settings(cfg)},
            "dns": {**client("dns"), "dns": dns_settings(cfg)}}


def fetch_ca(server: str) -> str:
    """The CA the server at `server` presents as the cluster's (unauthenticated: check it before trusting it)."""
    try:
        # nothing secret is sent, and nothing is trusted until the hash check: hence no verification here
        resp = httpx.get(f"{server.rstrip('/')}/cacerts", verify=False, timeout=JOIN_TIMEOUT_S)  # noqa: S501
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach the API server at {server}: {exc}") from None
    if resp.status_code != 200:
        raise Unavailable(f"the API server at {server} gives no cluster CA (/cacerts: HTTP {resp.status_code})")
    return resp.text


def request_join(req: JoinRequest, node_dir: Path, address: str, pod_cidr: str | None = None) -> dict[str, Any]:
    """Check the server's CA against the token's hash, then present the token (over TLS pinned to that CA)
    with certificate requests; store the node's certificates under `node_dir`. The reply has no token."""
    m = re.match(r"^K10([0-9a-f]{64})::(.+)$", req.token)
    if not m:
        raise BadRequest("the join token is malformed: expected K10<hash>::<secret> (see `minik8s token`)")
    ca = fetch_ca(req.server)
    if ca_hash(ca) != m.group(1):
        raise BadRequest(f"the CA of the API server at {req.server} does not match the join token's hash: "
                         "refusing to send the token there")
    creds = NodeCredentials.of(node_dir)
    rejoin = creds.held_for(ca)
    fresh = not creds.dir.exists()
    try:
        reply = _post_join(req, creds, ca, rejoin, address, pod_cidr)
    except BaseException:
        if fresh:  # nothing half-made is left behind: the keys were for this join only
            shutil.rmtree(creds.dir, ignore_errors=True)
        raise
    creds_files = reply.get("credentials") or {}
    write_file(creds.ca, ca, 0o644)
    write_file(creds.client_cert, str(creds_files["clientCertificate"]), 0o644)
    write_file(creds.serving_cert, str(creds_files["servingCertificate"]), 0o644)
    return reply


def _post_join(req: JoinRequest, creds: NodeCredentials, ca: str, rejoin: bool, address: str,
               pod_cidr: str | None) -> dict[str, Any]:
    creds.dir.mkdir(parents=True, exist_ok=True)
    os.chmod(creds.dir, 0o700)
    if not rejoin:  # keys of another cluster (or a half-made set) are no use: make new ones
        for stale in (creds.client_key, creds.serving_key, creds.client_cert, creds.serving_cert):
            stale.unlink(missing_ok=True)
    user = NODE_PREFIX + req.name
    csrs = {"client": new_key_and_csr(creds.client_key, user, [NODES]),
            "serving": new_key_and_csr(creds.serving_key, user, [NODES])}
    context = ssl.create_default_context(cadata=ca)
    if rejoin:  # the name's holder proves it is: the API lets it re-join without --force
        context.load_cert_chain(str(creds.client_cert), str(creds.client_key))
    body = {"name": req.name, "labels": req.labels, "taints": req.taints, "podCIDR": pod_cidr,
            "address": address, "csr": csrs, "force": req.force}
    try:
        resp = httpx.post(f"{req.server.rstrip('/')}/minik8s/join", json=body, verify=context,
                          headers={"Authorization": f"Bearer {req.token}"}, timeout=JOIN_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot reach the API server at {req.server}: {exc}") from None
    if resp.status_code >= 400:
        raise from_status(resp.status_code, resp.json() if resp.content else None)
    reply: dict[str, Any] = resp.json()
    return reply


def local_node(cfg: ClusterConfig, name: str) -> NodeConfig:
    m = LOCAL_NODE_NAME.match(name)
    if not m:
        raise BadRequest(f'on one machine nodes are named node-N (N from 1), got "{name}"')
    return cfg.node(int(m.group(1)))


def kubelet_config(node: NodeConfig, registry: str, req: JoinRequest | None) -> dict[str, Any]:
    resources = (req.resources if req else None) or {}
    creds = NodeCredentials.of(node.dir)
    return {"node_name": node.name, "node_ip": node.ip, "pod_cidr": node.pod_cidr, "docker_url": node.docker_url,
            "pods_dir": str(node.dir / "pods"), "server_port": KUBELET_PORT,
            "tls_cert": str(creds.serving_cert), "tls_key": str(creds.serving_key), "client_ca": str(creds.ca),
            "image_registry": registry, "node_labels": dict(req.labels) if req else {},
            "cpu": str(resources["cpu"]) if "cpu" in resources else None,
            "memory": str(resources["memory"]) if "memory" in resources else None,
            **({"max_pods": int(resources["pods"])} if "pods" in resources else {})}


def node_settings(node: NodeConfig, reply: dict[str, Any], req: JoinRequest | None) -> dict[str, dict[str, Any]]:
    """Each node component's settings, by component name, from the API's join reply."""
    info = reply["clusterInfo"]
    # the node's own identity (files in its state dir), never the admin token
    client = {"server": info["server"], "ca": info["ca"], **NodeCredentials.of(node.dir).client_settings()}
    facts = {"name": node.name, "ip": node.ip, "pod_cidr": node.pod_cidr, "interface": node.interface}
    # the proxy has its own identity (system:kube-proxy); the kubelet and network agent are the node
    proxy = {"server": info["server"], "ca": info["ca"], "token": info[PROXY_TOKEN_KEY]}
    # the kubelet's NetworkPolicy agent reads policies, pods, namespaces as system:minik8s-netpol
    netpol = {"server": info["server"], "ca": info["ca"], "token": info[NETPOL_TOKEN_KEY]} \
        if info.get(NETPOL_TOKEN_KEY) else None
    return {"kubelet": {**client, "kubelet": kubelet_config(node, info["registry"], req), "netpol": netpol},
            "network": {**client, "node": facts},
            "proxy": {**proxy, "node": facts}}


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
            f"join: GET {req.server.rstrip('/')}/cacerts, check it against the token's hash, then POST "
            f"{req.server.rstrip('/')}/minik8s/join with the token and certificate requests"
            f"{', wishing pod CIDR ' + req.pod_cidr if req.pod_cidr else ' (the API assigns the pod CIDR)'}",
            f"state: {node.dir}",
            f"start: {cmds[0]}",
            f"start: {cmds[1]}",
            f"actors: {', '.join(node_actor_names(node.name))} (pinned by Ray resource {node.ray_resource})"]


