"""Rendering Services into nftables objects, and the per-service diff (pure: no nft, no API).

Layout of ``table ip minik8s-proxy`` (``T`` below)::

    map svc-ips        ClusterIP . proto . port  : goto svc-<h>     (services with ready endpoints)
    map svc-nodeports  proto . nodePort          : goto np-<h>
    set no-ep-ips      ClusterIP . proto . port                     (no ready endpoints: rejected)
    set no-ep-nodeports proto . nodePort
    chain services     the two vmaps (NodePorts only for local destinations: fib daddr type local)
    chain prerouting   nat, hook prerouting (pods, other nodes, the root netns) -> services
    chain output       nat, hook output (processes in the node netns) -> services
    chain postrouting  nat: packets marked 0x4000 are masqueraded
    chain filter-*     filter, hooks forward/output/input: no-endpoint services get a tcp reset /
                       icmp port-unreachable instead of a hang
    chain svc-<h>      one per service port: mark traffic from outside the pod network (so replies
                       come back through this node), then numgen random (or jhash ip saddr for
                       sessionAffinity ClientIP) over the endpoint chains
    chain ep-<h>-<i>   mark hairpin (source is this endpoint), DNAT to pod IP:port
    chain np-<h>       mark (NodePort traffic is masqueraded), goto svc-<h>

A Service renders to a :class:`ServiceRules` (its chains and its map elements). The diff of two
snapshots is computed per Service; only changed Services' elements and chains appear in the
transaction, in an order nft accepts (element deletes, chain adds, flushes, rules, element adds,
chain deletes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from minik8s.api.services import Endpoints, Service

TABLE = "minik8s-proxy"
MASQ_MARK = 0x4000
MAP_IPS = "svc-ips"
MAP_NODEPORTS = "svc-nodeports"
SET_NOEP_IPS = "no-ep-ips"
SET_NOEP_NODEPORTS = "no-ep-nodeports"


@dataclass(frozen=True)
class ProxyRulesConfig:
    table: str = TABLE
    cluster_cidr: str | None = None
    """The pod network: ClusterIP traffic from outside it is masqueraded (None: never)."""


@dataclass(frozen=True)
class Element:
    map: str
    key: str
    value: str | None = None  # None for set elements


@dataclass(frozen=True)
class ServiceRules:
    chains: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(chain name, rules) in dependency order: endpoint chains first."""
    elements: frozenset[Element] = field(default_factory=frozenset)


def chain_hash(namespace: str, name: str, port_name: str, protocol: str) -> str:
    return hashlib.sha256(f"{namespace}/{name}:{port_name}/{protocol}".encode()).hexdigest()[:12]


def service_key(namespace: str | None, name: str | None) -> str:
    return f"{namespace or 'default'}/{name}"


def ready_backends(ep: Endpoints | None, port_name: str, protocol: str) -> list[tuple[str, int]]:
    """(ip, port) of the ready addresses for the service port named `port_name`, sorted, unique."""
    out: set[tuple[str, int]] = set()
    for subset in (ep.subsets if ep else None) or []:
        ports = [p for p in subset.ports or [] if (p.name or "") == port_name and (p.protocol or "TCP") == protocol]
        for port in ports:
            for addr in subset.addresses or []:
                out.add((addr.ip, port.port))
    return sorted(out, key=lambda b: (tuple(int(x) for x in b[0].split(".")), b[1]))


def render_service(svc: Service, ep: Endpoints | None, cfg: ProxyRulesConfig) -> ServiceRules:
    spec = svc.spec
    if not spec.clusterIP or spec.clusterIP == "None":
        return ServiceRules()  # headless: nothing to proxy
    chains: list[tuple[str, tuple[str, ...]]] = []
    elements: set[Element] = set()
    mark = f"meta mark set meta mark | {MASQ_MARK:#x}"
    for sp in spec.ports or []:
        proto = sp.protocol or "TCP"
        lproto = proto.lower()
        h = chain_hash(svc.metadata.namespace or "default", svc.metadata.name or "", sp.name or "", proto)
        backends = ready_backends(ep, sp.name or "", proto)
        ip_key = f"{spec.clusterIP} . {lproto} . {sp.port}"
        np_key = f"{lproto} . {sp.nodePort}" if spec.type == "NodePort" and sp.nodePort else None
        if not backends:
            elements.add(Element(SET_NOEP_IPS, ip_key))
            if np_key:
                elements.add(Element(SET_NOEP_NODEPORTS, np_key))
            continue
        svc_chain = f"svc-{h}"
        ep_chains = [f"ep-{h}-{i}" for i in range(len(backends))]
        for chain, (ip, port) in zip(ep_chains, backends, strict=True):
            chains.append((chain, (f"ip saddr {ip} {mark}", f"meta l4proto {lproto} dnat to {ip}:{port}")))
        rules: list[str] = []
        if cfg.cluster_cidr:
            rules.append(f"ip saddr != {cfg.cluster_cidr} {mark}")
        if len(ep_chains) == 1:
            rules.append(f"goto {ep_chains[0]}")
        else:
            pick = "jhash ip saddr mod {n} seed 0x0" if spec.sessionAffinity == "ClientIP" else "numgen random mod {n}"
            vmap = ", ".join(f"{i} : goto {c}" for i, c in enumerate(ep_chains))
            rules.append(f"{pick.format(n=len(ep_chains))} vmap {{ {vmap} }}")
        chains.append((svc_chain, tuple(rules)))
        elements.add(Element(MAP_IPS, ip_key, f"goto {svc_chain}"))
        if np_key:
            chains.append((f"np-{h}", (mark, f"goto {svc_chain}")))
            elements.add(Element(MAP_NODEPORTS, np_key, f"goto np-{h}"))
    return ServiceRules(tuple(chains), frozenset(elements))


def render_all(services: list[Service], endpoints: Mapping[str, Endpoints],
               cfg: ProxyRulesConfig) -> dict[str, ServiceRules]:
    out = {}
    for svc in services:
        key = service_key(svc.metadata.namespace, svc.metadata.name)
        out[key] = render_service(svc, endpoints.get(key), cfg)
    return out


# --- nft text --------------------------------------------------------------------------------

def base_script(cfg: ProxyRulesConfig) -> list[str]:
    """The fixed part of the table, as `nft -f` commands."""
    t = f"ip {cfg.table}"
    return [
        f"add table {t}",
        f"add map {t} {MAP_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
        f"add map {t} {MAP_NODEPORTS} {{ type inet_proto . inet_service : verdict ; }}",
        f"add set {t} {SET_NOEP_IPS} {{ type ipv4_addr . inet_proto . inet_service ; }}",
        f"add set {t} {SET_NOEP_NODEPORTS} {{ type inet_proto . inet_service ; }}",
        f"add chain {t} services",
        f"add chain {t} prerouting {{ type nat hook prerouting priority dstnat ; policy accept ; }}",
        f"add chain {t} output {{ type nat hook output priority -100 ; policy accept ; }}",
        f"add chain {t} postrouting {{ type nat hook postrouting priority srcnat ; policy accept ; }}",
        f"add chain {t} reject-svc",
        f"add chain {t} filter-forward {{ type filter hook forward priority filter - 10 ; policy accept ; }}",
        f"add chain {t} filter-output {{ type filter hook output priority filter - 10 ; policy accept ; }}",
        f"add chain {t} filter-input {{ type filter hook input priority filter - 10 ; policy accept ; }}",
        f"add rule {t} services ip daddr . meta l4proto . th dport vmap @{MAP_IPS}",
        f"add rule {t} services fib daddr type local meta l4proto . th dport vmap @{MAP_NODEPORTS}",
        f"add rule {t} prerouting jump services",
        f"add rule {t} output jump services",
        f"add rule {t} postrouting meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} "
        f"meta mark set meta mark ^ {MASQ_MARK:#x} masquerade",
        f"add rule {t} reject-svc meta l4proto tcp reject with tcp reset",
        f"add rule {t} reject-svc reject",
        f"add rule {t} filter-forward ip daddr . meta l4proto . th dport @{SET_NOEP_IPS} goto reject-svc",
        f"add rule {t} filter-output ip daddr . meta l4proto . th dport @{SET_NOEP_IPS} goto reject-svc",
        f"add rule {t} filter-input meta l4proto . th dport @{SET_NOEP_NODEPORTS} goto reject-svc",
    ]


def _element(cmd: str, table: str, el: Element, with_value: bool) -> str:
    body = f"{el.key} : {el.value}" if with_value and el.value is not None else el.key
    return f"{cmd} element ip {table} {el.map} {{ {body} }}"


def full_script(desired: Mapping[str, ServiceRules], cfg: ProxyRulesConfig) -> str:
    """Replace the whole table atomically (first sync, restart): declare, delete, re-create."""
    lines = [f"table ip {cfg.table}", f"delete table ip {cfg.table}", *base_script(cfg)]
    return "\n".join(lines + diff_lines({}, desired, cfg)) + "\n"


def diff_lines(old: Mapping[str, ServiceRules], new: Mapping[str, ServiceRules], cfg: ProxyRulesConfig) -> list[str]:
    """The commands turning `old` into `new`, touching only Services whose rules differ."""
    t = cfg.table
    del_elements: list[str] = []
    add_chains: list[str] = []
    flushes: list[str] = []
    rules: list[str] = []
    add_elements: list[str] = []
    del_chains: list[str] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key, ServiceRules()), new.get(key, ServiceRules())
        if before == after:
            continue
        after_keys = {(e.map, e.key): e for e in after.elements}
        before_keys = {(e.map, e.key): e for e in before.elements}
        for mk, el in sorted(before_keys.items()):
            if mk not in after_keys or after_keys[mk] != el:
                del_elements.append(_element("delete", t, el, with_value=False))
        for mk, el in sorted(after_keys.items()):
            if mk not in before_keys or before_keys[mk] != el:
                add_elements.append(_element("add", t, el, with_value=True))
        before_chains, after_chains = dict(before.chains), dict(after.chains)
        for name, body in after.chains:
            if name not in before_chains:
                add_chains.append(f"add chain ip {t} {name}")
            elif before_chains[name] == body:
                continue
            else:
                flushes.append(f"flush chain ip {t} {name}")
            rules.extend(f"add rule ip {t} {name} {r}" for r in body)
        for name, _ in before.chains:
            if name not in after_chains:
                flushes.append(f"flush chain ip {t} {name}")
                del_chains.append(f"delete chain ip {t} {name}")
    # a chain is deleted only after every goto to it is gone: svc/np chains before their ep chains
    del_chains.sort(key=lambda line: 1 if " ep-" in line else 0)
    return del_elements + add_chains + flushes + rules + add_elements + del_chains


def diff_script(old: Mapping[str, ServiceRules], new: Mapping[str, ServiceRules], cfg: ProxyRulesConfig) -> str:
    """One `nft -f` transaction, or "" when nothing changed."""
    lines = diff_lines(old, new, cfg)
    return "\n".join(lines) + "\n" if lines else ""
