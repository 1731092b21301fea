"""The netlink applier of the VXLAN overlay (pyroute2): device, peers, host routes, setup, teardown.

Every function takes ``netns``: ``None`` for the calling process's own netns (the agent runs
inside its node), a name under /var/run/netns, or a path such as ``/proc/PID/ns/net``.
Everything is idempotent and diff-based: it reads the kernel, computes a
:class:`~minik8s.network.plan.Plan`, and changes only what differs.  Routes we add carry
protocol :data:`VxlanConfig.route_proto`, so we find exactly ours and leave others alone.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from minik8s.network import nft
from minik8s.network.netns import read_sysctl, write_sysctl
from minik8s.network.plan import Fdb, LocalNode, Neigh, Peer, PeerState, Plan, Route, desired_state, diff

log = logging.getLogger("minik8s.network")

NUD_PERMANENT = 0x80
NTF_SELF = 0x02
RTNH_F_ONLINK = 0x04
MAIN_TABLE = 254
IFF_UP = 0x1
#: Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
VXLAN_OVERHEAD = 50


@dataclass(frozen=True)
class VxlanConfig:
    """The overlay's fixed parameters; the defaults are flannel's (except the device name)."""

    device: str = "mk8s.vx"
    """VXLAN device name in each node netns (flannel: ``flannel.1``)."""
    vni: int = 1
    port: int = 8472
    """UDP port of VXLAN (8472: the Linux/flannel default, not IANA's 4789)."""
    underlay_dev: str = "eth0"
    """Node interface carrying the encapsulated packets."""
    cluster_cidr: str = "10.244.0.0/16"
    """Whole pod network: traffic to it is never masqueraded."""
    nft_table: str = "minik8s-nat"
    mtu: int | None = None
    """Device MTU; None = underlay MTU minus the 50 bytes of VXLAN overhead."""
    route_proto: int = 155
    """rtnetlink protocol marking our routes (any value > 4 is ours to pick; 155 is unassigned in iproute2)."""
    masquerade: bool = True


class HostRouteTarget(Protocol):
    """Anything naming a node's pod subnet and underlay IP (``minik8s.cluster.config.NodeConfig`` does)."""

    @property
    def pod_cidr(self) -> str: ...
    @property
    def ip(self) -> str: ...


@contextmanager
def _ipr(netns: str | None) -> Iterator[IPRoute]:
    # flags=0: pyroute2 defaults to O_CREAT, which would silently create a missing netns.
    ipr = IPRoute() if netns is None else IPRoute(netns=netns, flags=0)
    try:
        yield ipr
    finally:
        ipr.close()


def _ignore(code: int, fn: Any, *args: Any, **kwargs: Any) -> None:
    try:
        fn(*args, **kwargs)
    except NetlinkError as e:
        if e.code != code:
            raise


def _link_index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


# ---- device ----------------------------------------------------------------------------------------


def _vxlan_info(link: Any) -> dict[str, Any]:
    info = link.get("IFLA_LINKINFO")
    if info is None or info.get("IFLA_INFO_KIND") != "vxlan":
        return {}
    data = info.get("IFLA_INFO_DATA")
    return dict(data["attrs"]) if data is not None else {}


def _device_matches(link: Any, local: LocalNode, cfg: VxlanConfig, underlay_idx: int) -> bool:
    """Is the existing device a VXLAN with the attributes we would create it with (MAC, MTU aside)?"""
    info = _vxlan_info(link)
    return (bool(info) and info.get("IFLA_VXLAN_ID") == cfg.vni and info.get("IFLA_VXLAN_PORT") == cfg.port
            and info.get("IFLA_VXLAN_LOCAL") == local.public_ip and info.get("IFLA_VXLAN_LINK") == underlay_idx
            and info.get("IFLA_VXLAN_LEARNING") == 0)


def ensure_device(local: LocalNode, cfg: VxlanConfig = VxlanConfig(), netns: str | None = None) -> bool:
    """Create or fix the VXLAN device: attributes, MAC, MTU, ``<vtep_ip>/32``, up.  True if anything changed.

    A device with the wrong VNI/port/local address is re-created (those cannot change in
    place); peers' entries go with it and the next :func:`sync_peers` restores them.
    """
    changed = False
    with _ipr(netns) as ipr:
        underlay = _link_index(ipr, cfg.underlay_dev)
        if underlay is None:
            raise RuntimeError(f"underlay device {cfg.underlay_dev} not found (netns {netns or 'current'})")
        mtu = cfg.mtu or int(ipr.get_links(underlay)[0].get("IFLA_MTU")) - VXLAN_OVERHEAD
        idx = _link_index(ipr, cfg.device)
        if idx is not None and not _device_matches(ipr.get_links(idx)[0], local, cfg, underlay):
            log.warning("re-creating VXLAN device with wrong attributes", extra={"device": cfg.device, "netns": netns})
            ipr.link("del", index=idx)
            idx = None
        if idx is None:
            log.info("creating VXLAN device", extra={"device": cfg.device, "netns": netns, "vni": cfg.vni,
                                                     "local": local.public_ip, "mac": local.vtep_mac})
            ipr.link("add", ifname=cfg.device, kind="vxlan", vxlan_id=cfg.vni, vxlan_port=cfg.port,
                     vxlan_local=local.public_ip, vxlan_link=underlay, vxlan_learning=0,
                     address=local.vtep_mac, mtu=mtu)
            idx = _link_index(ipr, cfg.device)
            assert idx is not None
            changed = True
        link = ipr.get_links(idx)[0]
        if link.get("IFLA_ADDRESS") != local.vtep_mac or link.get("IFLA_MTU") != mtu:
            ipr.link("set", index=idx, address=local.vtep_mac, mtu=mtu)
            changed = True
        changed |= _ensure_only_addr(ipr, idx, local.vtep_ip)
        if not link["flags"] & IFF_UP:
            ipr.link("set", index=idx, state="up")
            changed = True
    return changed


def _ensure_only_addr(ipr: IPRoute, idx: int, address: str) -> bool:
    """``address/32`` is the device's only IPv4 address (a node whose pod CIDR changed leaves a stale one)."""
    have = {(a.get("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(index=idx, family=socket.AF_INET)}
    changed = False
    for addr, plen in have - {(address, 32)}:
        ipr.addr("del", index=idx, address=addr, prefixlen=plen)
        changed = True
    if (address, 32) not in have:
        ipr.addr("add", index=idx, address=address, prefixlen=32)
        changed = True
    return changed


# ---- peers -----------------------------------------------------------------------------------------


def _read_state(ipr: IPRoute, idx: int, cfg: VxlanConfig) -> PeerState:
    routes = set()
    for r in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE, oif=idx):
        if r["proto"] != cfg.route_proto or r.get("RTA_OIF") != idx:
            continue
        gw = r.get("RTA_GATEWAY")
        if gw is not None:
            routes.add(Route(f"{r.get('RTA_DST')}/{r['dst_len']}", gw))
    neighs = {Neigh(n.get("NDA_DST"), n.get("NDA_LLADDR"))
              for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=idx)
              if n["state"] & NUD_PERMANENT and n.get("NDA_LLADDR") and n["ifindex"] == idx}
    fdbs = {Fdb(n.get("NDA_LLADDR"), n.get("NDA_DST"))
            for n in ipr.fdb("dump", ifindex=idx)
            if n["ifindex"] == idx and n["state"] & NUD_PERMANENT and n.get("NDA_DST")
            and n.get("NDA_LLADDR") != "00:00:00:00:00:00"}
    return PeerState(frozenset(routes), frozenset(neighs), frozenset(fdbs))


def read_peer_state(cfg: VxlanConfig = VxlanConfig(), netns: str | None = None) -> PeerState:
    """The routes (ours, by protocol), permanent neighbours and FDB entries now on the device."""
    with _ipr(netns) as ipr:
        idx = _link_index(ipr, cfg.device)
        if idx is None:
            return PeerState()
        return _read_state(ipr, idx, cfg)


def _apply_plan(ipr: IPRoute, idx: int, plan: Plan, cfg: VxlanConfig) -> None:
    # Deletes first: a peer whose MAC or IP changed must not hold both entries at once.
    for r in plan.del_routes:
        _ignore(errno.ESRCH, ipr.route, "del", dst=r.dst, gateway=r.gateway, oif=idx, table=MAIN_TABLE)
    for n in plan.del_neighs:
        _ignore(errno.ENOENT, ipr.neigh, "del", dst=n.ip, lladdr=n.mac, ifindex=idx)
    for f in plan.del_fdbs:
        _ignore(errno.ENOENT, ipr.fdb, "del", ifindex=idx, lladdr=f.mac, dst=f.dst)
    # FDB, then neighbour, then route: by the time traffic can take the route, it can be delivered.
    for f in plan.add_fdbs:
        ipr.fdb("append", ifindex=idx, lladdr=f.mac, dst=f.dst, state=NUD_PERMANENT, flags=NTF_SELF)
    for n in plan.add_neighs:
        ipr.neigh("replace", dst=n.ip, lladdr=n.mac, ifindex=idx, state=NUD_PERMANENT)
    for r in plan.add_routes:
        ipr.route("replace", dst=r.dst, gateway=r.gateway, oif=idx, flags=RTNH_F_ONLINK, proto=cfg.route_proto,
                  table=MAIN_TABLE)


def sync_peers(local: LocalNode, peers: Iterable[Peer], cfg: VxlanConfig = VxlanConfig(),
               netns: str | None = None) -> Plan:
    """Make the device's routes/neighbours/FDB match ``peers`` (``local`` itself is skipped); the applied plan."""
    with _ipr(netns) as ipr:
        idx = _link_index(ipr, cfg.device)
        if idx is None:
            raise RuntimeError(f"VXLAN device {cfg.device} missing (netns {netns or 'current'}): run ensure_device")
        plan = diff(_read_state(ipr, idx, cfg), desired_state(local.name, peers))
        if not plan.empty:
            _apply_plan(ipr, idx, plan, cfg)
            log.info("VXLAN peers synced", extra={"netns": netns, "node": local.name, **plan.summary()})
    return plan


# ---- node setup ------------------------------------------------------------------------------------


def ensure_ip_forward(netns: str | None = None) -> bool:
    """``net.ipv4.ip_forward=1`` in the netns; True if it was off."""
    if read_sysctl("net.ipv4.ip_forward", netns) == "1":
        return False
    write_sysctl("net.ipv4.ip_forward", "1", netns)
    return True


def masquerade_spec(local: LocalNode, cfg: VxlanConfig) -> nft.MasqueradeSpec:
    return nft.MasqueradeSpec(cfg.nft_table, local.pod_cidr, cfg.cluster_cidr)


def setup_node(local: LocalNode, peers: Iterable[Peer] = (), cfg: VxlanConfig = VxlanConfig(),
               netns: str | None = None) -> bool:
    """Everything a node needs: forwarding, the device, the nft table, and the peers.  True if anything changed."""
    changed = ensure_ip_forward(netns)
    changed |= ensure_device(local, cfg, netns)
    if cfg.masquerade:
        changed |= nft.ensure_masquerade(masquerade_spec(local, cfg), netns)
    changed |= not sync_peers(local, peers, cfg, netns).empty
    return changed


def teardown_node(cfg: VxlanConfig = VxlanConfig(), netns: str | None = None) -> None:
    """Delete the device (its routes, neighbours and FDB go with it) and our nft table.  ip_forward stays."""
    with _ipr(netns) as ipr:
        idx = _link_index(ipr, cfg.device)
        if idx is not None:
            log.info("deleting VXLAN device", extra={"device": cfg.device, "netns": netns})
            ipr.link("del", index=idx)
    nft.remove_masquerade(cfg.nft_table, netns)


# ---- root netns routes -----------------------------------------------------------------------------


def _host_routes(nodes: Iterable[HostRouteTarget]) -> dict[str, str]:
    return {str(ipaddress.IPv4Network(n.pod_cidr, strict=True)): n.ip for n in nodes}


def _routes_to(ipr: IPRoute, dst: str) -> list[Any]:
    """Main-table IPv4 routes for exactly ``dst`` (a dump filtered here: a netlink "get" would do a lookup)."""
    net = ipaddress.IPv4Network(dst)
    return [r for r in ipr.get_routes(family=socket.AF_INET, table=MAIN_TABLE)
            if r["dst_len"] == net.prefixlen and r.get("RTA_DST") == str(net.network_address)]


def ensure_host_routes(nodes: Iterable[HostRouteTarget], netns: str | None = None,
                       proto: int = VxlanConfig.route_proto) -> int:
    """Routes ``<node podCIDR> via <node IP>`` (in the root netns by default); the number added or fixed.

    This is how the control plane and the user's shell reach pod IPs, and how replies to pods
    that talked to the root netns (not masqueraded: the destination is a node-side address) find their way.
    """
    changed = 0
    with _ipr(netns) as ipr:
        for dst, via in _host_routes(nodes).items():
            if any(r.get("RTA_GATEWAY") == via for r in _routes_to(ipr, dst)):
                continue
            ipr.route("replace", dst=dst, gateway=via, proto=proto, table=MAIN_TABLE)
            log.info("host route set", extra={"dst": dst, "via": via, "netns": netns})
            changed += 1
    return changed


def remove_host_routes(nodes: Iterable[HostRouteTarget], netns: str | None = None,
                       proto: int = VxlanConfig.route_proto) -> int:
    """Delete the routes :func:`ensure_host_routes` made for ``nodes`` (ours only, by protocol); the number removed."""
    removed = 0
    with _ipr(netns) as ipr:
        for dst in _host_routes(nodes):
            for r in _routes_to(ipr, dst):
                if r["proto"] == proto:
                    _ignore(errno.ESRCH, ipr.route, "del", dst=dst, gateway=r.get("RTA_GATEWAY"), table=MAIN_TABLE)
                    removed += 1
    return removed
