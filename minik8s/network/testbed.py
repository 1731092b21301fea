"""A throwaway two-node overlay topology with no dockerd, for the integration test and the benchmark.

Layout (defaults; distinct from a real cluster's names and ranges, so both run side by side)::

    root netns:  bridge mk8snt0 10.202.0.1/24 ── veth mk8snta / mk8sntb
    netns mk8snt-a: eth0 10.202.0.11/24, bridge cni0 10.247.1.1/24 ── pod netns mk8snt-pa (eth0 10.247.1.2)
    netns mk8snt-b: eth0 10.202.0.12/24, bridge cni0 10.247.2.1/24 ── pod netns mk8snt-pb (eth0 10.247.2.2)

A node netns stands for a minik8s node, its ``cni0`` for the node's ``docker0`` and a pod
netns for a pod.  ``pods_per_node`` > 1 adds pods ``mk8snt-pa2`` (10.247.1.3), ... on the same
bridge: two pods on one node are the same-bridge baseline of the benchmark.  The overlay itself
is not set up here; callers apply :mod:`minik8s.network.vxlan` to the node netns.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import string
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from pyroute2 import IPRoute, netns

from minik8s.network.netns import NETNS_RUN_DIR, nsenter_argv, write_sysctl
from minik8s.network.plan import LocalNode, Peer, vtep_mac
from minik8s.network.vxlan import VxlanConfig

log = logging.getLogger("minik8s.network.testbed")

#: How long teardown waits for the kernel to release a deleted netns's links.
LINK_GONE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class TestbedConfig:
    __test__ = False  # not a pytest class, despite the name

    prefix: str = "mk8snt"
    """Every netns is ``<prefix>-…``, the bridge ``<prefix>0``, root-side veths ``<prefix><letter>``."""
    underlay_cidr: str = "10.202.0.0/24"
    pod_cidr: str = "10.247.0.0/16"
    nodes: int = 2
    pods_per_node: int = 1
    node_host_offset: int = 10
    """Node ``i`` (1-based) gets underlay host ``node_host_offset + i`` and pod subnet ``i``."""
    first_pod_subnet: int = 1
    """Node ``i`` gets the ``/24`` number ``first_pod_subnet + i - 1`` of ``pod_cidr``."""
    pod_bridge: str = "cni0"
    pod_mtu: int | None = None
    """Pod interface MTU; None = the veth default (1500), as Docker's docker0 gives pods."""

    @property
    def bridge(self) -> str:
        return f"{self.prefix}0"

    @property
    def gateway(self) -> str:
        return str(ipaddress.IPv4Network(self.underlay_cidr)[1])


@dataclass(frozen=True)
class BedPod:
    netns: str
    ip: str
    host_veth: str
    """The veth end left in the node netns, on the pod bridge."""


@dataclass(frozen=True)
class BedNode:
    name: str
    netns: str
    ip: str
    prefixlen: int
    pod_cidr: str
    bridge_ip: str
    root_veth: str
    pods: tuple[BedPod, ...] = field(default=())

    @property
    def local(self) -> LocalNode:
        return LocalNode(self.name, self.ip, self.pod_cidr)

    @property
    def peer(self) -> Peer:
        return Peer(self.name, self.ip, self.pod_cidr, vtep_mac(self.name))


def plan_testbed(cfg: TestbedConfig) -> list[BedNode]:
    """Names and addresses of every node and pod (pure)."""
    under = ipaddress.IPv4Network(cfg.underlay_cidr)
    pods = ipaddress.IPv4Network(cfg.pod_cidr)
    subnets = list(pods.subnets(new_prefix=24))
    out = []
    for i in range(1, cfg.nodes + 1):
        letter = string.ascii_lowercase[i - 1]
        subnet = subnets[cfg.first_pod_subnet + i - 1]
        node_pods = tuple(
            BedPod(netns=f"{cfg.prefix}-p{letter}" + (str(k) if k > 1 else ""), ip=str(subnet[1 + k]),
                    host_veth=f"vp{letter}{k}")
            for k in range(1, cfg.pods_per_node + 1)
        )
        out.append(BedNode(name=f"node-{letter}", netns=f"{cfg.prefix}-{letter}",
                            ip=str(under[cfg.node_host_offset + i]), prefixlen=under.prefixlen,
                            pod_cidr=str(subnet), bridge_ip=str(subnet[1]),
                            root_veth=f"{cfg.prefix}{letter}", pods=node_pods))
    return out


def _veth_into(ipr: IPRoute, name: str, target_ns: str) -> int:
    """Create veth ``name`` with a peer moved into ``target_ns`` (still called ``name``+``p`` there)."""
    ipr.link("add", ifname=name, kind="veth", peer=name + "p")
    peer = ipr.link_lookup(ifname=name + "p")[0]
    ipr.link("set", index=peer, net_ns_fd=target_ns)
    return int(ipr.link_lookup(ifname=name)[0])


def _configure_eth0(ns: str, temp_name: str, ip: str, prefixlen: int, gateway: str, mtu: int | None) -> None:
    with IPRoute(netns=ns, flags=0) as ipr:
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        idx = ipr.link_lookup(ifname=temp_name)[0]
        ipr.link("set", index=idx, ifname="eth0", **({"mtu": mtu} if mtu else {}))
        ipr.addr("add", index=idx, address=ip, prefixlen=prefixlen)
        ipr.link("set", index=idx, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway)


class Testbed:
    """Build and tear down the topology of :class:`TestbedConfig` (root only)."""

    __test__ = False  # not a pytest class, despite the name

    def __init__(self, cfg: TestbedConfig | None = None) -> None:
        self.cfg = cfg or TestbedConfig()
        self.nodes = plan_testbed(self.cfg)

    @property
    def vxlan_config(self) -> VxlanConfig:
        return VxlanConfig(cluster_cidr=self.cfg.pod_cidr)

    def all_netns(self) -> list[str]:
        return [n.netns for n in self.nodes] + [p.netns for n in self.nodes for p in n.pods]

    def build(self) -> None:
        """Create everything, after removing leftovers of an interrupted run."""
        self.teardown()
        under = ipaddress.IPv4Network(self.cfg.underlay_cidr)
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.cfg.bridge, kind="bridge")
            br = ipr.link_lookup(ifname=self.cfg.bridge)[0]
            ipr.addr("add", index=br, address=self.cfg.gateway, prefixlen=under.prefixlen)
            ipr.link("set", index=br, state="up")
            for node in self.nodes:
                netns.create(node.netns)
                idx = _veth_into(ipr, node.root_veth, node.netns)
                ipr.link("set", index=idx, master=br, state="up")
        for node in self.nodes:
            self._build_node(node)
        log.info("testbed built", extra={"netns": self.all_netns()})

    def _build_node(self, node: BedNode) -> None:
        _configure_eth0(node.netns, node.root_veth + "p", node.ip, node.prefixlen, self.cfg.gateway, None)
        write_sysctl("net.ipv4.ip_forward", "1", node.netns)
        plen = ipaddress.IPv4Network(node.pod_cidr).prefixlen
        with IPRoute(netns=node.netns, flags=0) as ipr:
            ipr.link("add", ifname=self.cfg.pod_bridge, kind="bridge")
            br = ipr.link_lookup(ifname=self.cfg.pod_bridge)[0]
            ipr.addr("add", index=br, address=node.bridge_ip, prefixlen=plen)
            ipr.link("set", index=br, state="up")
            for pod in node.pods:
                netns.create(pod.netns)
                idx = _veth_into(ipr, pod.host_veth, pod.netns)
                ipr.link("set", index=idx, master=br, state="up", **({"mtu": self.cfg.pod_mtu}
                                                                      if self.cfg.pod_mtu else {}))
        for pod in node.pods:
            _configure_eth0(pod.netns, pod.host_veth + "p", pod.ip, plen, node.bridge_ip, self.cfg.pod_mtu)

    def teardown(self) -> None:
        """Delete every netns and link this testbed names (pods first; processes inside must be stopped)."""
        existing = set(netns.listnetns())
        with IPRoute() as ipr:
            for node in self.nodes:
                for idx in ipr.link_lookup(ifname=node.root_veth) + ipr.link_lookup(ifname=node.root_veth + "p"):
                    ipr.link("del", index=idx)
            for idx in ipr.link_lookup(ifname=self.cfg.bridge):
                ipr.link("del", index=idx)
        for name in [p.netns for n in self.nodes for p in n.pods] + [n.netns for n in self.nodes]:
            if name in existing:
                netns.remove(name)
            elif os.path.exists(NETNS_RUN_DIR / name):
                (NETNS_RUN_DIR / name).unlink()  # a stale mount point file from a crash

    def leftovers(self) -> list[str]:
        """What of this testbed still exists (empty after :meth:`teardown`)."""
        found = [f"netns {n}" for n in self.all_netns() if n in netns.listnetns()]
        deadline = time.monotonic() + LINK_GONE_TIMEOUT_S
        with IPRoute() as ipr:
            names = [self.cfg.bridge] + [n.root_veth for n in self.nodes]
            while True:
                links = [f"link {name}" for name in names if ipr.link_lookup(ifname=name)]
                if not links or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        return found + links

    def popen(self, ns: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``argv`` in network namespace ``ns`` (only the netns changes: same files, same Python)."""
        return subprocess.Popen(nsenter_argv(ns, list(argv)), **kwargs)  # type: ignore[call-overload]

    def run(self, ns: str, argv: Sequence[str], timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(nsenter_argv(ns, list(argv)), capture_output=True, text=True, timeout=timeout)


#: A server for checks: every TCP connection and UDP datagram gets back the peer's IP (to see NAT),
#: prints "ready" once bound.  Args: bind IP, port.
PEER_SERVER = """
import socket, sys, threading
ip, port = sys.argv[1], int(sys.argv[2])
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind((ip, port)); t.listen(16)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((ip, port))
def udp():
    while True:
        data, peer = u.recvfrom(2048)
        u.sendto(data + b" " + peer[0].encode(), peer)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
while True:
    c, peer = t.accept()
    c.sendall(peer[0].encode() + b"\\n"); c.close()
"""

#: Client of PEER_SERVER.  Args: tcp|udp, IP, port; prints what the server answered.
PEER_CLIENT = """
import socket, sys
proto, ip, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
if proto == "tcp":
    with socket.create_connection((ip, port), timeout=3) as s:
        print(s.recv(100).decode().strip())
else:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3); s.sendto(b"hello", (ip, port)); print(s.recv(100).decode())
"""

#: ICMP echo with a raw socket, so no ``ping`` binary is needed.  Arg: IP; prints "reply".
PING = """
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
hdr = struct.pack('!BBHHH', 8, 0, 0, 0x4d6b, 1) + b'minik8s!'
pkt = hdr[:2] + struct.pack('!H', csum(hdr)) + hdr[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
s.sendto(pkt, (sys.argv[1], 0))
while True:
    data, (src, _) = s.recvfrom(1500)
    ihl = (data[0] & 0x0f) * 4
    if src == sys.argv[1] and data[ihl] == 0:
        print('reply'); break
"""
