"""Host mode: a node that is a whole machine (a real one, or whatever netns ran ``minik8s join``).

A local node gets a netns, a veth and an underlay address from :mod:`.netns`; a host-mode node
already has all three: the network namespace it runs in, a NIC and that NIC's address.  So
the node's dockerd and raylet (:mod:`.local`) start right here, and this module holds only
what differs: finding the address and device to use, refusing a ``docker0`` that another
Docker daemon owns, recording how the node joined (so ``minik8s leave`` can undo it), and
removing what the node's agents put into this namespace (VXLAN device, nftables tables, the
pod bridge), which for a local node goes away with its netns.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from minik8s.cluster import raytoken
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.errors import BadRequest

log = logging.getLogger(__name__)

#: How a host-mode node joined, kept in its node dir (0600; its credentials are beside it, in pki/).
RECORD_FILE = "host-node.json"
#: The cluster's Ray auth token as the join reply gave it, in the node dir (0600).
RAY_TOKEN_FILE = "ray-auth-token"
#: The bridge a node dockerd makes for ``--bip`` (the proxy keeps its ports in hairpin mode).
POD_BRIDGE = "docker0"
#: nftables table of the service proxy (``minik8s.proxy.proxy.ProxyConfig.table``).
PROXY_TABLE = "minik8s-proxy"


class HostModeError(BadRequest):
    """The machine cannot be a host-mode node as configured (a clear one-line reason)."""


# ---- which address and device ------------------------------------------------------------------


@dataclass(frozen=True)
class HostAddress:
    ip: str
    interface: str
    prefixlen: int


def _addresses(ipr: IPRoute) -> list[HostAddress]:
    out = []
    for a in ipr.get_addr(family=socket.AF_INET):
        links = ipr.get_links(a["index"])
        out.append(HostAddress(a.get_attr("IFA_ADDRESS"), links[0].get_attr("IFLA_IFNAME"), a["prefixlen"]))
    return out


def resolve_address(toward: str, address: str | None = None, interface: str | None = None) -> HostAddress:
    """The node's address and device: as configured, else the source address and device of this
    namespace's route toward ``toward`` (the API server), as k3s picks its node IP.  A kernel
    route lookup: no packet is sent.  Raises :class:`HostModeError` when they do not fit together."""
    with IPRoute() as ipr:
        have = _addresses(ipr)
        if address is None:
            try:
                route = ipr.route("get", dst=toward)[0]
            except NetlinkError as e:
                raise HostModeError(f"no route from this machine to {toward}: {os.strerror(e.code)}") from None
            src, oif = route.get_attr("RTA_PREFSRC"), route.get_attr("RTA_OIF")
            dev = ipr.get_links(oif)[0].get_attr("IFLA_IFNAME")
            if interface is not None and dev != interface:
                raise HostModeError(f"the route to {toward} leaves through {dev}, not {interface}: "
                                    "set `address` to this machine's IP on that interface")
            address = src
    found = [h for h in have if h.ip == address and (interface is None or h.interface == interface)]
    if not found:
        where = f" on {interface}" if interface else ""
        mine = ", ".join(f"{h.ip} ({h.interface})" for h in have if not ipaddress.IPv4Address(h.ip).is_loopback)
        raise HostModeError(f"{address} is not an address of this machine{where} (it has: {mine or 'none'})")
    return found[0]


# ---- before start, after stop ------------------------------------------------------------------


def check_pod_bridge(node: NodeConfig) -> None:
    """The node dockerd makes ``docker0`` with the node's pod gateway; one holding another address
    belongs to another Docker daemon (a system docker.service), and dockerd would fail on it."""
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=POD_BRIDGE)
        if not idx:
            return
        addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(index=idx[0])]
    ours = f"{node.pod_gateway}/{node.pod_cidr.split('/')[1]}"
    if addrs and ours not in addrs:
        raise HostModeError(f"{POD_BRIDGE} already exists with {', '.join(addrs)} (another Docker daemon's "
                            f"bridge?): stop that daemon and `ip link delete {POD_BRIDGE}`, then join again")


def teardown_network(node: NodeConfig) -> None:
    """Remove what the node's network agent, proxy and dockerd left in this namespace."""
    from minik8s.network import vxlan
    from minik8s.proxy import nft as proxy_nft

    vxlan.teardown_node(vxlan.VxlanConfig(underlay_dev=node.interface))
    proxy_nft.delete_table(PROXY_TABLE)
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=POD_BRIDGE)
        if idx and any(a.get_attr("IFA_ADDRESS") == node.pod_gateway for a in ipr.get_addr(index=idx[0])):
            log.info("deleting bridge %s", POD_BRIDGE, extra={"link": POD_BRIDGE, "node": node.name})
            try:
                ipr.link("del", index=idx[0])
            except NetlinkError as e:
                if e.code != errno.ENODEV:
                    raise


# ---- the join record ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HostNodeRecord:
    """What ``minik8s join`` learnt; ``minik8s leave`` and a second ``join`` read it back."""

    name: str
    ip: str
    prefixlen: int
    interface: str
    pod_cidr: str
    server: str
    """The API server as the cluster advertises it (``https://<control plane>:6443``)."""
    ray_address: str
    registry: str
    ca: str
    ray_token: str = ""
    """The cluster's Ray auth token from the join reply; written to :attr:`ray_token_file` for the raylet."""

    def ray_token_file(self, cfg: ClusterConfig) -> Path:
        return cfg.nodes_dir / self.name / RAY_TOKEN_FILE

    def client(self, cfg: ClusterConfig) -> Any:
        """A client of the API with this node's own credential (`system:node:<name>`)."""
        from minik8s.client import Client
        from minik8s.cluster.bootstrap import NodeCredentials

        creds = NodeCredentials.of(cfg.nodes_dir / self.name)
        return Client(self.server, None, ca=self.ca, cert=str(creds.client_cert), key=str(creds.client_key))

    def node(self, cfg: ClusterConfig) -> NodeConfig:
        return cfg.host_node(self.name, self.ip, self.prefixlen, self.interface, self.pod_cidr,
                             self.ray_address.rsplit(":", 1)[0])

    def cluster(self, cfg: ClusterConfig) -> ClusterConfig:
        """``cfg`` as seen from this machine: the control plane's Ray head and registry are those of the reply."""
        return cluster_view(cfg, self.ray_address, self.registry, self.ray_token_file(cfg))

    def save(self, cfg: ClusterConfig) -> Path:
        """The record and the Ray token file, both 0600."""
        if not self.ray_token:
            raise HostModeError("the cluster's join reply carries no Ray token: its control plane predates "
                                "Ray token authentication (run `minik8s up` there again)")
        raytoken.write(self.ray_token_file(cfg), self.ray_token)
        path = cfg.nodes_dir / self.name / RECORD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(self), f, indent=1)
        return path


def _host_port(addr: str, what: str) -> tuple[str, int]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        raise HostModeError(f'the cluster sent a {what} address without a port: "{addr}"')
    return host, int(port)


def cluster_view(cfg: ClusterConfig, ray_address: str, registry: str, ray_token_file: Path | None = None
                 ) -> ClusterConfig:
    """A worker machine's :class:`ClusterConfig`: its own state dir and settings, the head's addresses,
    and the copy of the cluster's Ray token it was given (``ray_token_file``)."""
    from dataclasses import replace

    ray_host, ray_port = _host_port(ray_address, "Ray")
    reg_host, reg_port = _host_port(registry, "registry")
    if ray_host != reg_host:
        raise HostModeError(f"the cluster's Ray head ({ray_host}) and registry ({reg_host}) are on different hosts")
    return replace(cfg, nodes=0, advertise_address=ray_host, ray_port=ray_port, registry_port=reg_port,
                   ray_auth_token_file=ray_token_file or cfg.ray_auth_token_file)


def load_record(cfg: ClusterConfig, name: str) -> HostNodeRecord | None:
    try:
        raw = json.loads((cfg.nodes_dir / name / RECORD_FILE).read_text())
    except FileNotFoundError:
        return None
    raw.pop("token", None)  # joined by an older minik8s, which kept the admin token here: drop it
    return HostNodeRecord(**raw)


def recorded_nodes(cfg: ClusterConfig) -> list[str]:
    """Names of the host-mode nodes joined from this machine (state dir)."""
    if not cfg.nodes_dir.is_dir():
        return []
    return sorted(p.parent.name for p in cfg.nodes_dir.glob(f"*/{RECORD_FILE}"))


def forget(cfg: ClusterConfig, name: str) -> None:
    (cfg.nodes_dir / name / RECORD_FILE).unlink(missing_ok=True)
    (cfg.nodes_dir / name / RAY_TOKEN_FILE).unlink(missing_ok=True)
