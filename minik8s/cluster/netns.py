"""The underlay bridge and the per-node network namespaces, over netlink (pyroute2).

Layout: bridge ``cfg.underlay_bridge`` in the root netns holds the head address; node ``i``
is netns ``node.netns`` joined by a veth pair (``node.veth_host`` on the bridge, ``eth0``
inside with the node address and a default route via the head).  Every function here is
idempotent: it creates what is missing and leaves what is right alone.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import subprocess
from pathlib import Path

from pyroute2 import IPRoute, netns
from pyroute2.netlink.exceptions import NetlinkError

from minik8s.cluster.config import ClusterConfig, NodeConfig

log = logging.getLogger(__name__)

#: Suffix of the veth peer's name while it is still in the root netns (renamed to eth0 inside).
PEER_SUFFIX = "p"
#: `ip netns exec <name>` bind-mounts /etc/netns/<name>/resolv.conf over /etc/resolv.conf.
ETC_NETNS = Path("/etc/netns")


def _ensure_addr(ipr: IPRoute, index: int, address: str, prefixlen: int) -> None:
    try:
        ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise


def _link_index(ipr: IPRoute, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return found[0] if found else None


def _netns_mounted(name: str) -> bool:
    """True if /var/run/netns/NAME is a bind mount of a namespace (not a stale empty file)."""
    target = os.path.realpath(Path(netns.NETNS_RUN_DIR) / name)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == target for line in f)


def netns_exists(name: str) -> bool:
    return name in netns.listnetns() and _netns_mounted(name)


def link_exists(ifname: str) -> bool:
    with IPRoute() as ipr:
        return _link_index(ipr, ifname) is not None


# ---- underlay --------------------------------------------------------------------------------------


def ensure_underlay(cfg: ClusterConfig) -> None:
    """Create the underlay bridge with the head address, and bring it up."""
    with IPRoute() as ipr:
        idx = _link_index(ipr, cfg.underlay_bridge)
        if idx is None:
            log.info("creating bridge %s", cfg.underlay_bridge, extra={"link": cfg.underlay_bridge})
            ipr.link("add", ifname=cfg.underlay_bridge, kind="bridge")
            idx = _link_index(ipr, cfg.underlay_bridge)
            assert idx is not None
        _ensure_addr(ipr, idx, cfg.head_ip, cfg.underlay_network.prefixlen)
        ipr.link("set", index=idx, state="up")


def remove_underlay(cfg: ClusterConfig) -> None:
    """Delete the underlay bridge (its address goes with it)."""
    with IPRoute() as ipr:
        idx = _link_index(ipr, cfg.underlay_bridge)
        if idx is not None:
            log.info("deleting bridge %s", cfg.underlay_bridge, extra={"link": cfg.underlay_bridge})
            ipr.link("del", index=idx)


def underlay_ok(cfg: ClusterConfig) -> tuple[bool, str]:
    """Is the bridge up with the head address?  (healthy, detail) for ``status``."""
    with IPRoute() as ipr:
        idx = _link_index(ipr, cfg.underlay_bridge)
        if idx is None:
            return False, f"bridge {cfg.underlay_bridge} missing"
        addrs = {a.get("address") for a in ipr.get_addr(index=idx)}
        up = bool(ipr.get_links(idx)[0]["flags"] & 1)
    if cfg.head_ip not in addrs:
        return False, f"bridge {cfg.underlay_bridge} lacks {cfg.head_ip}"
    if not up:
        return False, f"bridge {cfg.underlay_bridge} is down"
    return True, f"{cfg.underlay_bridge} {cfg.head_ip}/{cfg.underlay_network.prefixlen}"


# ---- nodes -----------------------------------------------------------------------------------------


def _netns_of(node: NodeConfig) -> tuple[str, str]:
    """(netns, root-side veth) of a local node; a host-mode node has neither."""
    if node.netns is None or node.veth_host is None:
        raise ValueError(f"{node.name} is a host-mode node: it has no netns or veth of its own")
    return node.netns, node.veth_host


def ensure_node_netns(cfg: ClusterConfig, node: NodeConfig) -> None:
    """Create the node's netns and veth pair, address and route it, enable forwarding inside."""
    ns, veth = _netns_of(node)
    ensure_underlay(cfg)
    if not netns_exists(ns):
        if ns in netns.listnetns():
            log.warning("removing stale netns file %s", ns)
            (Path(netns.NETNS_RUN_DIR) / ns).unlink()
        log.info("creating netns %s", ns, extra={"netns": ns})
        netns.create(ns)
    peer = veth + PEER_SUFFIX
    with IPRoute() as ipr:
        host_idx = _link_index(ipr, veth)
        if host_idx is None:
            # A half-made pair from an interrupted run: the peer was never moved.
            stale = _link_index(ipr, peer)
            if stale is not None:
                ipr.link("del", index=stale)
            log.info("creating veth %s", veth, extra={"link": veth, "netns": ns})
            ipr.link("add", ifname=veth, kind="veth", peer=peer)
            host_idx = _link_index(ipr, veth)
            peer_idx = _link_index(ipr, peer)
            assert host_idx is not None and peer_idx is not None
            ipr.link("set", index=peer_idx, net_ns_fd=ns)
        br_idx = _link_index(ipr, cfg.underlay_bridge)
        ipr.link("set", index=host_idx, master=br_idx, state="up")
    with IPRoute(netns=ns) as nipr:
        lo = _link_index(nipr, "lo")
        nipr.link("set", index=lo, state="up")
        idx = _link_index(nipr, node.veth_node)
        if idx is None:
            idx = _link_index(nipr, peer)
            if idx is None:
                raise RuntimeError(f"netns {ns}: neither {node.veth_node} nor {peer} exists")
            nipr.link("set", index=idx, ifname=node.veth_node)
        _ensure_addr(nipr, idx, node.ip, node.prefixlen)
        nipr.link("set", index=idx, state="up")
        try:
            nipr.route("add", dst="0.0.0.0/0", gateway=node.gateway)
        except NetlinkError as e:
            if e.code != errno.EEXIST:
                raise
    # /proc/sys/net is per-netns as seen by the opener; nsenter only switches the netns.
    subprocess.run(
        ["nsenter", f"--net={node.netns_path}", "--", "sysctl", "-qw", "net.ipv4.ip_forward=1"],
        check=True, capture_output=True,
    )
    write_node_resolv_conf(cfg, node)


def write_node_resolv_conf(cfg: ClusterConfig, node: NodeConfig, etc_netns: Path = ETC_NETNS) -> Path:
    """The node's own processes (`ip netns exec <netns> …`) resolve cluster names via cluster DNS."""
    from minik8s.dns.resolver import ResolverConf

    ns, _ = _netns_of(node)
    path = etc_netns / ns / "resolv.conf"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ResolverConf.for_node(nameservers=[cfg.dns_ip]).render()
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def remove_node_netns(cfg: ClusterConfig, node: NodeConfig) -> None:
    """Delete the node's veth pair and netns.  Stop the processes inside first: they pin it."""
    ns, veth = _netns_of(node)
    with IPRoute() as ipr:
        for name in (veth, veth + PEER_SUFFIX):
            idx = _link_index(ipr, name)
            if idx is not None:
                log.info("deleting veth %s", name, extra={"link": name})
                ipr.link("del", index=idx)
    if ns in netns.listnetns():
        log.info("deleting netns %s", ns, extra={"netns": ns})
        netns.remove(ns)
    shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)


def node_netns_ok(cfg: ClusterConfig, node: NodeConfig) -> tuple[bool, str]:
    """Does the netns exist with eth0 addressed and up?  (healthy, detail) for ``status``."""
    ns, _ = _netns_of(node)
    if not netns_exists(ns):
        return False, f"netns {ns} missing"
    with IPRoute(netns=ns) as nipr:
        idx = _link_index(nipr, node.veth_node)
        if idx is None:
            return False, f"{ns}: no {node.veth_node}"
        addrs = {a.get("address") for a in nipr.get_addr(index=idx)}
        up = bool(nipr.get_links(idx)[0]["flags"] & 1)
    if node.ip not in addrs or not up:
        return False, f"{ns}: {node.veth_node} lacks {node.ip} or is down"
    return True, f"{ns} {node.ip}"


def node_netns_names(cfg: ClusterConfig) -> list[str]:
    """Existing netns names that belong to this cluster's prefix."""
    return [n for n in netns.listnetns() if n.startswith(cfg.netns_prefix)]
