"""Keep pods away from everything internal: one nftables table, ``inet minik8s-lockdown``, per namespace.

Pods may reach the API (6443), cluster DNS (53), the gateway's config endpoint (its pods' sidecars
long-poll it) and NodePorts; every other port of the control plane and of the nodes (etcd, the
registry, Ray's GCS, client server, dashboard, raylets, workers and agents, kubelets' 10250, ...)
answers a pod with a TCP reset or an ICMP "administratively prohibited".

Where the rules sit, and why there: pod traffic leaving the pod network is masqueraded to the
node's address in the node's own namespace (:mod:`minik8s.network.nft`), so the control plane
sees a node, not a pod.  The only place a pod's source address is still visible is the namespace
of its node, so each node gets the table there (a netns for a local node, the machine's namespace
in host mode):

* hook ``input``: pod -> an address of the node itself (its underlay IP, its ``docker0`` gateway,
  anything listening on a wildcard address there: raylet, workers, kubelet);
* hook ``forward``: pod -> anything outside the pod network on one machine (the head, the other
  nodes, and every other address of the machine, where wildcard listeners answer as well); pod ->
  the control plane's addresses in host mode.  Service traffic is DNAT'ed in prerouting, before
  this hook, so a ClusterIP that leads to the API or DNS is checked against its real destination.

The control-plane namespace gets the ``input`` chain too, for pod traffic that arrives there with
its pod address (a node whose masquerade is off): defence in depth, not the main wall.

Connections the nodes or the control plane open toward pods (probes, ``exec``, port-forward, a
user's shell) are untouched: their replies are ``established``.  The table is replaced whole in one
``nft -f`` transaction (declare, delete, re-create) and deleted by ``minik8s down`` / ``leave``.
"""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from minik8s.api.services import NODE_PORT_MAX, NODE_PORT_MIN
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.cluster.host import POD_BRIDGE
from minik8s.network.netns import nsenter_argv
from minik8s.proxy import nft

log = logging.getLogger("minik8s.cluster.lockdown")

#: The control plane's table is the node table's name plus this: two names, so a host-mode node that
#: is also the head machine (one real machine) keeps both, and `leave` removes only its own.
CONTROL_PLANE_SUFFIX = "-cp"
DNS_PORT = 53
#: ``inet``: one table sees IPv4 and IPv6 (see :attr:`LockdownSpec.pod_bridge`).
FAMILY = "inet"
#: A guarded destination meaning "every address outside the pod network".
ANYWHERE = "0.0.0.0/0"
#: Before the proxy's and the network agent's filter chains: a reject here is final whatever they accept.
PRIORITY = "filter - 10"


@dataclass(frozen=True)
class LockdownSpec:
    """What one namespace's table lets pods reach; everything else from ``pod_cidr`` is refused."""

    table: str
    """Table name (family ``ip``); nothing else in the namespace is touched."""
    pod_cidr: str
    """Sources the table applies to: the cluster's whole pod network."""
    control_plane: tuple[str, ...]
    """Addresses of the control plane: the API and DNS ports are open on them, and only on them."""
    guarded: tuple[str, ...] = ()
    """Destinations checked in the ``forward`` hook (pods on this node -> other machines of the cluster);
    empty: no ``forward`` chain (the control-plane namespace routes no pod traffic)."""
    api_ports: tuple[int, ...] = (6443,)
    """TCP ports open on the control-plane addresses (the API; the gateway's config endpoint)."""
    node_ports: tuple[int, int] | None = (NODE_PORT_MIN, NODE_PORT_MAX)
    """NodePort range, open toward the guarded addresses but the control plane's (a pod may use another
    node's NodePort)."""
    pod_bridge: str | None = None
    """The node's pod bridge: IPv6 arriving on it is refused.  Pods have no IPv6 address in the pod
    network, but Docker 20.10 leaves them IPv6 link-local addresses, and the node's wildcard
    listeners (raylet, workers) accept IPv6 too: ``fe80::…%eth0`` would walk around the IPv4 rules."""

    def __post_init__(self) -> None:
        ipaddress.IPv4Network(self.pod_cidr, strict=True)
        if not self.control_plane:
            raise ValueError("a lockdown table needs at least one control-plane address")
        for addr in (*self.control_plane, *self.guarded):
            ipaddress.IPv4Network(addr, strict=False)
        for port in self.api_ports:
            if not 0 < port < 65536:
                raise ValueError(f"api port {port} is not a TCP port")


def _set(items: Iterable[object]) -> str:
    return "{ " + ", ".join(str(i) for i in items) + " }"


def _networks(addrs: Iterable[str]) -> str:
    """An nft set of addresses and networks, with the ones inside another dropped (nft refuses overlaps)."""
    nets = ipaddress.collapse_addresses(ipaddress.IPv4Network(a, strict=False) for a in addrs)
    return _set(str(n.network_address) if n.prefixlen == 32 else str(n) for n in nets)


def render(spec: LockdownSpec) -> str:
    """The table, in ``nft -f`` syntax."""
    cp = _networks(spec.control_plane)
    rules = [
        "ct state established,related accept",
        "meta l4proto icmp accept",
        f"ip daddr {cp} tcp dport {_set(sorted(spec.api_ports))} accept",
        f"ip daddr {cp} meta l4proto {{ tcp, udp }} th dport {DNS_PORT} accept",
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx type admin-prohibited",
    ]
    into = [f"ip saddr {spec.pod_cidr} jump from-pods"]
    if spec.pod_bridge:
        # Neighbour discovery still works (the pods' own IPv6 link), nothing above it does.  Dropped, not
        # rejected: a reset to a link-local address is routed by address alone, and with fe80::/64 on
        # several links of the node it leaves through the wrong one anyway.
        into.append(f'iifname "{spec.pod_bridge}" meta nfproto ipv6 meta l4proto != ipv6-icmp drop')
    body = [f"table {FAMILY} {spec.table} {{",
            "\tchain from-pods {", *(f"\t\t{r}" for r in rules), "\t}",
            "\tchain input {", f"\t\ttype filter hook input priority {PRIORITY}; policy accept;",
            *(f"\t\t{r}" for r in into), "\t}"]
    if spec.guarded:
        # Pod-to-pod traffic (another node's pods, through the overlay) is never this table's business.
        to_guarded = f"ip saddr {spec.pod_cidr} ip daddr != {spec.pod_cidr}"
        if ANYWHERE not in spec.guarded:
            to_guarded += f" ip daddr {_networks(spec.guarded)}"
        forward = [f"{to_guarded} jump from-pods"]
        if spec.node_ports and set(spec.guarded) - set(spec.control_plane):
            # Another node's NodePort (a local one is DNAT'ed before this hook); none on the control plane.
            lo, hi = spec.node_ports
            forward.insert(0, f"{to_guarded} ip daddr != {cp} meta l4proto {{ tcp, udp }} th dport {lo}-{hi} accept")
        body += ["\tchain forward {", f"\t\ttype filter hook forward priority {PRIORITY}; policy accept;",
                 *(f"\t\t{r}" for r in forward), "\t}"]
    return "\n".join([*body, "}"]) + "\n"


def replace_script(spec: LockdownSpec) -> str:
    """Declaring the table first makes the delete safe when it is absent: one atomic swap."""
    return f"table {FAMILY} {spec.table}\ndelete table {FAMILY} {spec.table}\n{render(spec)}"


# ---- the specs of a cluster ------------------------------------------------------------------------


def _control_plane_addrs(cfg: ClusterConfig) -> tuple[str, ...]:
    return tuple(dict.fromkeys([cfg.head_ip, cfg.control_plane_ip]))


def _api_ports(cfg: ClusterConfig) -> tuple[int, ...]:
    """The API, and the gateway controller's config endpoint: the gateway pods' sidecars long-poll it."""
    from minik8s.gateway.controller import DEFAULT_PORT as GATEWAY_CONFIG_PORT

    return (cfg.api_port, GATEWAY_CONFIG_PORT)


def control_plane_table(cfg: ClusterConfig) -> str:
    return cfg.lockdown_table + CONTROL_PLANE_SUFFIX


def control_plane_spec(cfg: ClusterConfig) -> LockdownSpec:
    """The control plane's own namespace: pod sources to its addresses (no forward chain)."""
    return LockdownSpec(control_plane_table(cfg), cfg.pod_cidr, _control_plane_addrs(cfg), api_ports=_api_ports(cfg))


def node_spec(cfg: ClusterConfig, node: NodeConfig) -> LockdownSpec:
    """A node's namespace.  A local node guards every destination outside the pod network: all of
    them are this machine (the underlay, and every other address of the root namespace, where the
    control plane's wildcard listeners answer too); nothing leaves the machine anyway.  A host-mode
    node guards the control plane's addresses: the rest of its LAN is the user's, not ours."""
    cp = _control_plane_addrs(cfg)
    guarded = cp if node.host_mode else (ANYWHERE,)
    return LockdownSpec(cfg.lockdown_table, cfg.pod_cidr, cp, guarded=tuple(dict.fromkeys(guarded)),
                        api_ports=_api_ports(cfg), pod_bridge=POD_BRIDGE)


# ---- applying ------------------------------------------------------------------------------------------


def ensure(spec: LockdownSpec, netns: str | None = None) -> None:
    """Write the table in ``netns`` (None: this namespace), replacing whatever version is there."""
    nft.apply(replace_script(spec), netns)
    log.info("lockdown table written", extra={"table": spec.table, "netns": netns, "pod_cidr": spec.pod_cidr})


def present(table: str, netns: str | None = None) -> bool:
    res = subprocess.run(nsenter_argv(netns, ["nft", "list", "tables", FAMILY]), capture_output=True, text=True,
                         timeout=nft.NFT_TIMEOUT_S)
    return res.returncode == 0 and f"table {FAMILY} {table}" in res.stdout.splitlines()


def remove(table: str, netns: str | None = None) -> None:
    """Delete the table if present (absent is fine: ``down`` may run twice)."""
    if present(table, netns):
        nft.apply(f"table {FAMILY} {table}\ndelete table {FAMILY} {table}\n", netns)
        log.info("lockdown table deleted", extra={"table": table, "netns": netns})
