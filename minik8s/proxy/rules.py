"""Rendering Services into nftables map elements, and the per-service diff (pure: no nft, no API).

Every Service lives in the table only as *elements* of a few maps and sets; the chains are a
fixed, shared set. A change to one Service is therefore a handful of element adds and deletes,
and nft never has to load (or check) a rule per Service: the cost of a sync follows the change,
not the number of Services (a chain per Service and per endpoint, as kube-proxy's iptables mode
has, makes every `nft -f` load tens of thousands of chains into its cache first).

Layout of ``table ip minik8s-proxy`` (``VIP`` a ClusterIP, ``i`` an endpoint's slot 0..n-1)::

    map svc-ips        VIP . proto . port          : goto pick-<proto>-<n> (ready endpoints)
    map svc-nodeports  proto . nodePort            : goto np-pick-<proto>-<n>
    map ip-backends-<proto>  VIP . port . i        : endpoint IP . port     (<proto>: tcp, udp)
    map np-backends-<proto>  nodePort . i          : endpoint IP . port
    set hairpin        VIP . endpoint IP . endpoint IP   (a pod reaching itself via its Service)
    set no-ep-ips      VIP . proto . port                (no ready endpoints: rejected)
    set no-ep-nodeports proto . nodePort
    chain services     the two vmaps (NodePorts only for local destinations: fib daddr type local)
    chain prerouting   nat, hook prerouting (pods, other nodes, the root netns) -> services
    chain output       nat, hook output (processes in the node netns) -> services
    chain postrouting  nat: packets marked 0x4000, and hairpin connections, are masqueraded
    chain filter-*     filter, hooks forward/output/input: no-endpoint services get a tcp reset /
                       icmp port-unreachable instead of a hang
    chain pick-<proto>-<n>  shared by every Service port with n ready endpoints: mark traffic from
                       outside the pod network (so replies come back through this node), then DNAT to
                       ip-backends-<proto>[VIP . port . (numgen random mod n)]; pick-<proto>-aff-<n>
                       hashes the client address instead (sessionAffinity: ClientIP); the np- variants
                       always mark (NodePort traffic is masqueraded) and look up np-backends-<proto>.

The backend maps are per protocol because a DNAT through a map takes its protocol from the map's
value type (nft adds a `meta l4proto tcp` check for a `tcp dport` value); with one map per protocol
that check is exactly right.

A Service renders to a :class:`ServiceRules`: its elements and the names of the shared pick chains
they jump to. A diff touches only the Services whose elements changed (a changed map value is a
delete and an add in the same transaction); a pick chain is created with the first Service that needs
it and deleted with the last, so the table is a function of the Services alone (a restarted proxy
writes the same table).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from minik8s.api.services import Endpoints, Service

TABLE = "minik8s-proxy"
MASQ_MARK = 0x4000
MAP_IPS = "svc-ips"
MAP_NODEPORTS = "svc-nodeports"
SET_HAIRPIN = "hairpin"
SET_NOEP_IPS = "no-ep-ips"
SET_NOEP_NODEPORTS = "no-ep-nodeports"

_MARK = f"meta mark set meta mark | {MASQ_MARK:#x}"


@dataclass(frozen=True)
class ProxyRulesConfig:
    table: str = TABLE
    cluster_cidr: str | None = None
    """The pod network: ClusterIP traffic from outside it is masqueraded (None: never)."""
    node_name: str | None = None
    """The node this proxy serves: a `Local` traffic policy keeps only endpoints on it (None: all)."""


@dataclass(frozen=True, order=True)
class Element:
    map: str
    key: str
    value: str | None = None  # None for set elements


@dataclass(frozen=True)
class ServiceRules:
    chains: frozenset[str] = field(default_factory=frozenset)
    """The shared pick chains this Service's elements jump to."""
    elements: frozenset[Element] = field(default_factory=frozenset)


def service_key(namespace: str | None, name: str | None) -> str:
    return f"{namespace or 'default'}/{name}"


def ready_backends(ep: Endpoints | None, port_name: str, protocol: str,
                   node: str | None = None) -> list[tuple[str, int]]:
    """(ip, port) of the ready addresses for the service port named `port_name`, sorted, unique;
    with `node`, only the addresses of pods on that node (a `Local` traffic policy)."""
    out: set[tuple[str, int]] = set()
    for subset in (ep.subsets if ep else None) or []:
        ports = [p for p in subset.ports or [] if (p.name or "") == port_name and (p.protocol or "TCP") == protocol]
        for port in ports:
            for addr in subset.addresses or []:
                if node is None or addr.nodeName == node:
                    out.add((addr.ip, port.port))
    return sorted(out, key=lambda b: (tuple(int(x) for x in b[0].split(".")), b[1]))


PROTOCOLS = ("tcp", "udp")  # api.services.Protocol, lower case


def ip_backends(lproto: str) -> str:
    return f"ip-backends-{lproto}"


def np_backends(lproto: str) -> str:
    return f"np-backends-{lproto}"


def pick_chain(n: int, lproto: str, node_port: bool, affinity: bool, local: bool = False) -> str:
    """`local`: a NodePort with externalTrafficPolicy Local, whose traffic keeps its client address (no mark)."""
    prefix = ("npl-" if local else "np-") if node_port else ""
    return f"{prefix}pick-{lproto}-{'aff-' if affinity else ''}{n}"


def pick_chain_rules(name: str, cfg: ProxyRulesConfig) -> list[str]:
    """The rules of a pick chain, a pure function of its name (see :func:`pick_chain`)."""
    local = name.startswith("npl-")
    node_port = local or name.startswith("np-")
    lproto, _, rest = name.removeprefix("np-").removeprefix("npl-").removeprefix("pick-").partition("-")
    affinity = rest.startswith("aff-")
    n = int(rest.removeprefix("aff-"))
    slot = f"jhash ip saddr mod {n} seed 0x0" if affinity else f"numgen random mod {n}"
    if node_port:
        # Local: every endpoint is on this node, so replies come back through it without masquerading
        # and the pod sees the client's address (what externalTrafficPolicy: Local is for)
        return [*([] if local else [_MARK]), f"dnat ip to {lproto} dport . {slot} map @{np_backends(lproto)}"]
    rules = [f"ip saddr != {cfg.cluster_cidr} {_MARK}"] if cfg.cluster_cidr else []
    return [*rules, f"dnat ip to ip daddr . {lproto} dport . {slot} map @{ip_backends(lproto)}"]


def render_service(svc: Service, ep: Endpoints | None, cfg: ProxyRulesConfig) -> ServiceRules:
    spec = svc.spec
    if not spec.clusterIP or spec.clusterIP == "None":
        return ServiceRules()  # headless: nothing to proxy
    vip = spec.clusterIP
    affinity = spec.sessionAffinity == "ClientIP"
    # a Local policy keeps this node's endpoints only (none here: the traffic is refused, as kube-proxy drops it)
    internal_node = cfg.node_name if spec.internalTrafficPolicy == "Local" else None
    external_local = spec.externalTrafficPolicy == "Local" and cfg.node_name is not None
    chains: set[str] = set()
    elements: set[Element] = set()
    for sp in spec.ports or []:
        proto = sp.protocol or "TCP"
        lproto = proto.lower()
        backends = ready_backends(ep, sp.name or "", proto, internal_node)
        ip_key = f"{vip} . {lproto} . {sp.port}"
        if backends:
            pick = pick_chain(len(backends), lproto, False, affinity)
            chains.add(pick)
            elements.add(Element(MAP_IPS, ip_key, f"goto {pick}"))
            for i, (ip, port) in enumerate(backends):
                elements.add(Element(ip_backends(lproto), f"{vip} . {sp.port} . {i}", f"{ip} . {port}"))
                elements.add(Element(SET_HAIRPIN, f"{vip} . {ip} . {ip}"))
        else:
            elements.add(Element(SET_NOEP_IPS, ip_key))
        if spec.type == "NodePort" and sp.nodePort:
            np_backs = ready_backends(ep, sp.name or "", proto, cfg.node_name if external_local else None)
            _render_node_port(sp.nodePort, lproto, np_backs, affinity, external_local, chains, elements)
    return ServiceRules(frozenset(chains), frozenset(elements))


def _render_node_port(node_port: int, lproto: str, backends: list[tuple[str, int]], affinity: bool, local: bool,
                      chains: set[str], elements: set[Element]) -> None:
    np_key = f"{lproto} . {node_port}"
    if not backends:
        elements.add(Element(SET_NOEP_NODEPORTS, np_key))
        return
    np_pick = pick_chain(len(backends), lproto, True, affinity, local)
    chains.add(np_pick)
    elements.add(Element(MAP_NODEPORTS, np_key, f"goto {np_pick}"))
    for i, (ip, port) in enumerate(backends):
        elements.add(Element(np_backends(lproto), f"{node_port} . {i}", f"{ip} . {port}"))


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
    slot = "numgen random mod 1"  # `typeof` only names the key's type: any slot expression will do
    backend_maps = [line for p in PROTOCOLS for line in (
        f"add map {t} {ip_backends(p)} {{ typeof ip daddr . {p} dport . {slot} : ip daddr . {p} dport ; }}",
        f"add map {t} {np_backends(p)} {{ typeof {p} dport . {slot} : ip daddr . {p} dport ; }}")]
    return [
        f"add table {t}",
        f"add map {t} {MAP_IPS} {{ type ipv4_addr . inet_proto . inet_service : verdict ; }}",
        f"add map {t} {MAP_NODEPORTS} {{ type inet_proto . inet_service : verdict ; }}",
        *backend_maps,
        f"add set {t} {SET_HAIRPIN} {{ typeof ct original ip daddr . ip saddr . ip daddr ; }}",
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
        f"add rule {t} postrouting ct status dnat ct original ip daddr . ip saddr . ip daddr @{SET_HAIRPIN} "
        "masquerade",
        f"add rule {t} reject-svc meta l4proto tcp reject with tcp reset",
        f"add rule {t} reject-svc reject",
        f"add rule {t} filter-forward ip daddr . meta l4proto . th dport @{SET_NOEP_IPS} goto reject-svc",
        f"add rule {t} filter-output ip daddr . meta l4proto . th dport @{SET_NOEP_IPS} goto reject-svc",
        f"add rule {t} filter-input meta l4proto . th dport @{SET_NOEP_NODEPORTS} goto reject-svc",
    ]


def _elements(cmd: str, table: str, els: Iterable[Element], with_value: bool) -> list[str]:
    """One command per map or set (nft parses one long element list far faster than many commands)."""
    by_map: dict[str, list[str]] = {}
    for el in sorted(els):
        body = f"{el.key} : {el.value}" if with_value and el.value is not None else el.key
        by_map.setdefault(el.map, []).append(body)
    return [f"{cmd} element ip {table} {m} {{ {', '.join(bodies)} }}" for m, bodies in by_map.items()]


def chain_lines(names: Iterable[str], cfg: ProxyRulesConfig) -> list[str]:
    """Create pick chains (sorted, so the same set always renders the same script)."""
    t = cfg.table
    lines: list[str] = []
    for name in sorted(names):
        lines.append(f"add chain ip {t} {name}")
        lines.extend(f"add rule ip {t} {name} {r}" for r in pick_chain_rules(name, cfg))
    return lines


def full_script(desired: Mapping[str, ServiceRules], cfg: ProxyRulesConfig) -> str:
    """Replace the whole table atomically (first sync, restart): declare, delete, re-create."""
    lines = [f"table ip {cfg.table}", f"delete table ip {cfg.table}", *base_script(cfg)]
    chains = frozenset().union(*(r.chains for r in desired.values()))
    return "\n".join(lines + diff_lines({}, desired, cfg, add_chains=chains)) + "\n"


def chain_refs_after(refs: Mapping[str, int], old: Mapping[str, ServiceRules],
                     new: Mapping[str, ServiceRules]) -> Counter[str]:
    """How many Services use each pick chain once the Services in `old` are replaced by `new` (keys of
    `old` missing from `new` are deleted); `refs` is the count before. Costs O(changed Services)."""
    out = Counter(refs)
    for rules in old.values():
        out.subtract(rules.chains)
    for rules in new.values():
        out.update(rules.chains)
    return +out  # drops the chains no Service uses any more


def diff_lines(old: Mapping[str, ServiceRules], new: Mapping[str, ServiceRules], cfg: ProxyRulesConfig,
               add_chains: Iterable[str] = (), del_chains: Iterable[str] = ()) -> list[str]:
    """The commands turning `old` into `new`, touching only Services whose elements differ; pick
    chains in `add_chains` are created before any element jumps to them, and those in `del_chains`
    deleted after the last element jumping to them is gone."""
    t = cfg.table
    deletes: list[Element] = []
    adds: list[Element] = []
    for key in set(old) | set(new):
        before, after = old.get(key, ServiceRules()), new.get(key, ServiceRules())
        if before == after:
            continue
        after_keys = {(e.map, e.key): e for e in after.elements}
        before_keys = {(e.map, e.key): e for e in before.elements}
        deletes.extend(el for mk, el in before_keys.items() if after_keys.get(mk) != el)
        adds.extend(el for mk, el in after_keys.items() if before_keys.get(mk) != el)
    drops = [line for name in sorted(del_chains)
             for line in (f"flush chain ip {t} {name}", f"delete chain ip {t} {name}")]
    return (_elements("delete", t, deletes, with_value=False) + chain_lines(add_chains, cfg)
            + _elements("add", t, adds, with_value=True) + drops)


def diff_script(old: Mapping[str, ServiceRules], new: Mapping[str, ServiceRules], cfg: ProxyRulesConfig,
                add_chains: Iterable[str] = (), del_chains: Iterable[str] = ()) -> str:
    """One `nft -f` transaction, or "" when nothing changed."""
    lines = diff_lines(old, new, cfg, add_chains, del_chains)
    return "\n".join(lines) + "\n" if lines else ""
