"""Pure logic of the VXLAN overlay: who the peers are, what the kernel should hold, and the diff.

Nothing here touches netlink, so all of it is unit-tested without root.  The kernel state the
overlay manages on the VXLAN device is three sets of facts per peer node (flannel's ``vxlan``
backend, "directrouting" off):

- a route ``<peer podCIDR> via <peer .0> dev mk8s.vx onlink``,
- a permanent neighbour ``<peer .0> lladdr <peer VTEP MAC>``,
- a permanent FDB entry ``<peer VTEP MAC> dst <peer underlay IP>``.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Node annotation carrying the node's VTEP MAC (written by its network agent).
VTEP_MAC_ANNOTATION = "minik8s.io/vtep-mac"
#: Node annotation carrying the node's underlay (VXLAN endpoint) IP.
PUBLIC_IP_ANNOTATION = "minik8s.io/public-ip"


def vtep_mac(node_name: str) -> str:
    """A stable MAC for ``node_name``'s VXLAN device: same name, same MAC, across restarts.

    Locally administered (bit 1 of the first octet set) and unicast (bit 0 clear), so it can
    never collide with a vendor-assigned address or be taken for multicast.
    """
    if not node_name:
        raise ValueError("node name must not be empty")
    digest = hashlib.sha256(b"minik8s-vtep/" + node_name.encode()).digest()[:6]
    first = (digest[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in (first, *digest[1:]))


def vtep_ip(pod_cidr: str) -> str:
    """The VXLAN device address of a node: the network address (``.0``) of its pod subnet, as flannel does."""
    return str(ipaddress.IPv4Network(pod_cidr, strict=True).network_address)


def normalize_mac(mac: str) -> str:
    """Lower-case, colon-separated; raises ValueError on anything that is not 6 octets."""
    parts = mac.replace("-", ":").lower().split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p) for p in parts):
        raise ValueError(f"not a MAC address: {mac!r}")
    return ":".join(parts)


@dataclass(frozen=True)
class Peer:
    """Another node as the overlay sees it."""

    name: str
    public_ip: str
    """Underlay address: where VXLAN packets for this node go."""
    pod_cidr: str
    vtep_mac: str

    @property
    def vtep_ip(self) -> str:
        return vtep_ip(self.pod_cidr)


@dataclass(frozen=True)
class LocalNode:
    """This node: its name (for the MAC), underlay IP (VXLAN local address) and pod subnet."""

    name: str
    public_ip: str
    pod_cidr: str

    @property
    def vtep_mac(self) -> str:
        return vtep_mac(self.name)

    @property
    def vtep_ip(self) -> str:
        return vtep_ip(self.pod_cidr)


@dataclass(frozen=True, order=True)
class Route:
    dst: str
    """CIDR, e.g. ``10.244.2.0/24``."""
    gateway: str


@dataclass(frozen=True, order=True)
class Neigh:
    ip: str
    mac: str


@dataclass(frozen=True, order=True)
class Fdb:
    mac: str
    dst: str


@dataclass(frozen=True)
class PeerState:
    """Routes, neighbours and FDB entries on the VXLAN device (desired, or read from the kernel)."""

    routes: frozenset[Route] = frozenset()
    neighs: frozenset[Neigh] = frozenset()
    fdbs: frozenset[Fdb] = frozenset()


@dataclass(frozen=True)
class Plan:
    """What to delete, then add, to turn the current state into the desired one."""

    del_routes: tuple[Route, ...] = ()
    del_neighs: tuple[Neigh, ...] = ()
    del_fdbs: tuple[Fdb, ...] = ()
    add_routes: tuple[Route, ...] = ()
    add_neighs: tuple[Neigh, ...] = ()
    add_fdbs: tuple[Fdb, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def changes(self) -> int:
        return sum(len(x) for x in (self.del_routes, self.del_neighs, self.del_fdbs,
                                    self.add_routes, self.add_neighs, self.add_fdbs))

    def summary(self) -> dict[str, int]:
        return {"routes+": len(self.add_routes), "routes-": len(self.del_routes),
                "neigh+": len(self.add_neighs), "neigh-": len(self.del_neighs),
                "fdb+": len(self.add_fdbs), "fdb-": len(self.del_fdbs)}


def desired_state(local_name: str, peers: Iterable[Peer]) -> PeerState:
    """The entries for every peer except ``local_name`` itself.

    Two peers claiming one pod subnet would fight over one route; the first by name wins so
    the outcome is deterministic (the other is a configuration error the API should prevent).
    """
    routes: dict[str, Route] = {}
    neighs: set[Neigh] = set()
    fdbs: set[Fdb] = set()
    for p in sorted(peers, key=lambda p: p.name):
        if p.name == local_name:
            continue
        dst = str(ipaddress.IPv4Network(p.pod_cidr, strict=True))
        if dst in routes:
            continue
        mac = normalize_mac(p.vtep_mac)
        routes[dst] = Route(dst, p.vtep_ip)
        neighs.add(Neigh(p.vtep_ip, mac))
        fdbs.add(Fdb(mac, p.public_ip))
    return PeerState(frozenset(routes.values()), frozenset(neighs), frozenset(fdbs))


def diff(current: PeerState, desired: PeerState) -> Plan:
    """Entries to remove (present but not desired) and to add (desired but absent), sorted.

    A peer whose MAC or underlay IP changed shows up as one delete plus one add: deletes are
    applied first, so the kernel never holds both.
    """
    return Plan(
        del_routes=tuple(sorted(current.routes - desired.routes)),
        del_neighs=tuple(sorted(current.neighs - desired.neighs)),
        del_fdbs=tuple(sorted(current.fdbs - desired.fdbs)),
        add_routes=tuple(sorted(desired.routes - current.routes)),
        add_neighs=tuple(sorted(desired.neighs - current.neighs)),
        add_fdbs=tuple(sorted(desired.fdbs - current.fdbs)),
    )


@dataclass(frozen=True)
class NodeFacts:
    """What the agent reads from a Node object; ``missing`` lists what keeps it from being a peer."""

    name: str
    public_ip: str | None
    pod_cidr: str | None
    vtep_mac: str | None
    missing: tuple[str, ...] = field(default=())

    def peer(self) -> Peer | None:
        if self.public_ip and self.pod_cidr and self.vtep_mac:
            return Peer(self.name, self.public_ip, self.pod_cidr, self.vtep_mac)
        return None


def node_facts(node: Any) -> NodeFacts:
    """Extract a node's overlay facts from a typed ``Node`` (duck-typed, so tests can pass simple objects).

    The underlay IP is the ``minik8s.io/public-ip`` annotation, else the first InternalIP; the
    MAC only comes from the annotation (a node without an agent is not on the overlay yet).
    """
    meta = node.metadata
    ann: Mapping[str, str] = meta.annotations or {}
    public_ip = ann.get(PUBLIC_IP_ANNOTATION)
    if not public_ip and node.status is not None:
        for a in node.status.addresses or []:
            if a.type == "InternalIP":
                public_ip = a.address
                break
    pod_cidr = node.spec.podCIDR if node.spec is not None else None
    mac = ann.get(VTEP_MAC_ANNOTATION)
    missing: list[str] = []
    if not public_ip:
        missing.append("public IP")
    if not pod_cidr:
        missing.append("spec.podCIDR")
    if not mac:
        missing.append(f"annotation {VTEP_MAC_ANNOTATION}")
    try:
        if pod_cidr:
            ipaddress.IPv4Network(pod_cidr, strict=True)
        if public_ip:
            ipaddress.IPv4Address(public_ip)
        if mac:
            mac = normalize_mac(mac)
    except ValueError as exc:
        missing.append(f"invalid: {exc}")
    if missing:
        return NodeFacts(str(meta.name), None, None, None, tuple(missing))
    return NodeFacts(str(meta.name), public_ip, pod_cidr, mac)


def peers_from_nodes(nodes: Iterable[Any], local_name: str) -> tuple[list[Peer], list[NodeFacts]]:
    """(peers, skipped): every other node complete enough to be a peer, and those that are not yet."""
    peers: list[Peer] = []
    skipped: list[NodeFacts] = []
    for n in nodes:
        if n.metadata.name == local_name:
            continue
        facts = node_facts(n)
        peer = facts.peer()
        if peer is None:
            skipped.append(facts)
        else:
            peers.append(peer)
    return peers, skipped
