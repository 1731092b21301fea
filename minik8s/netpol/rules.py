"""NetworkPolicy semantics as nftables text: one table per pod, in the pod's own network namespace.

Pure functions over wire-form objects (no kernel, no API), so the semantics are unit-tested alone.

Kubernetes' rules, as enforced here:
- a pod is isolated for ingress (egress) only when some policy selecting it lists that policyType; an
  isolated direction drops what no rule of any selecting policy allows (rules only add, never subtract);
- a peer's `podSelector` picks pods in the policy's namespace, `namespaceSelector` every pod in the
  matching namespaces, both together the matching pods in the matching namespaces; `ipBlock` matches
  addresses in `cidr` and not in `except`; an empty or absent `from`/`to` matches every address;
- a port is a number, a range (`endPort`) or a name, resolved against the destination pod's container
  ports (ingress: the selected pod; egress: each peer pod, so a name may mean different numbers for
  different peers); an ipBlock or an empty peer list with a named port means the known pods inside it;
- every namespace carries the `kubernetes.io/metadata.name` label, as Kubernetes sets it;
- packets of established and related connections, and loopback, are always accepted, so a flow that
  was allowed when it started is not cut midway; so is traffic between the pod and its own node
  (`host_ips`: the node bridge the pod's packets from the node come from, kubelet probes among them, and
  the node's address), as Kubernetes specifies ("traffic to and from the node where a Pod is running is
  always allowed").

Egress to a Service: the ClusterIP is translated in the node's network namespace, after the packet
left the pod's, so the pod's output chain sees the ClusterIP. A `ClusterIP:port` is allowed when the
Service has at least one endpoint and every current endpoint (address, target port) is allowed by the
pod's egress rules; an endpoint change re-renders the rule. Allowing it when only some endpoints are
allowed would let the proxy pick a forbidden one; refusing it outright would break the common case of
"allow egress to app=db" used through the db Service.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from minik8s.api.selectors import labels_match, selector_from_match

Obj = dict[str, Any]

TABLE = "minik8s-netpol"
FAMILY = "inet"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_PROTOCOL = "TCP"
TERMINAL_PHASES = ("Succeeded", "Failed")
_NFT_PROTO = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}


@dataclass
class ClusterView:
    """What the renderer reads: every policy, pod, namespace, Service and Endpoints (wire form)."""

    policies: list[Obj] = field(default_factory=list)
    pods: list[Obj] = field(default_factory=list)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> labels
    services: list[Obj] = field(default_factory=list)
    endpoints: dict[tuple[str, str], Obj] = field(default_factory=dict)  # (namespace, name) -> Endpoints
    #: pod uid -> IP known on this node before the API has it (a sandbox just started here)
    local_ips: dict[str, str] = field(default_factory=dict)

    def namespace_labels(self, name: str) -> dict[str, str]:
        return {**self.namespaces.get(name, {}), NAMESPACE_NAME_LABEL: name}


# --- small accessors ---------------------------------------------------------------------------

def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _ns(obj: Obj) -> str:
    return str(_meta(obj).get("namespace") or "default")


def pod_ip(pod: Obj, view: ClusterView) -> str | None:
    """The pod's address for policy purposes; None for host-network, finished or unaddressed pods."""
    spec, status = pod.get("spec") or {}, pod.get("status") or {}
    if spec.get("hostNetwork") or status.get("phase") in TERMINAL_PHASES:
        return None
    return status.get("podIP") or view.local_ips.get(str(_meta(pod).get("uid") or "")) or None


def _selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    return labels_match(selector_from_match(selector), labels)


def selecting_policies(pod: Obj, view: ClusterView) -> list[Obj]:
    """The policies in the pod's namespace whose podSelector matches it."""
    ns, labels = _ns(pod), _meta(pod).get("labels") or {}
    return [p for p in view.policies if _ns(p) == ns and _selects((p.get("spec") or {}).get("podSelector"), labels)]


def policy_types(policy: Obj) -> list[str]:
    """policyTypes as stored, or as Kubernetes defaults them when absent."""
    spec = policy.get("spec") or {}
    return list(spec.get("policyTypes") or (["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]))


def isolation(policies: Iterable[Obj]) -> tuple[bool, bool]:
    """(isolated for ingress, isolated for egress) under these selecting policies."""
    types = {t for p in policies for t in policy_types(p)}
    return "Ingress" in types, "Egress" in types


def peer_pods(peer: Obj, policy_ns: str, view: ClusterView) -> list[Obj]:
    """The pods a podSelector/namespaceSelector peer picks (none for an ipBlock peer)."""
    pod_sel, ns_sel = peer.get("podSelector"), peer.get("namespaceSelector")
    if pod_sel is None and ns_sel is None:
        return []
    out = []
    for pod in view.pods:
        ns = _ns(pod)
        if ns_sel is None:
            if ns != policy_ns:
                continue
        elif not _selects(ns_sel, view.namespace_labels(ns)):
            continue
        if pod_sel is not None and not _selects(pod_sel, _meta(pod).get("labels")):
            continue
        out.append(pod)
    return out


def _in_block(ip: str, block: Obj) -> bool:
    addr = ipaddress.ip_address(ip)
    net = ipaddress.ip_network(block["cidr"], strict=False)
    if addr.version != net.version or addr not in net:
        return False
    return not any(addr in ipaddress.ip_network(e, strict=False) for e in block.get("except") or []
                   if ipaddress.ip_network(e, strict=False).version == addr.version)


def resolve_port(port: Obj, dest_pod: Obj | None) -> tuple[str, int, int] | None:
    """(protocol, first, last) of a NetworkPolicyPort against the destination pod; None if a name does not
    resolve (such a port matches nothing, as in Kubernetes)."""
    proto = str(port.get("protocol") or DEFAULT_PROTOCOL)
    value = port.get("port")
    if value is None:
        return proto, 1, 65535
    if isinstance(value, int):
        return proto, value, int(port.get("endPort") or value)
    if dest_pod is None:
        return None
    for c in (dest_pod.get("spec") or {}).get("containers") or []:
        for cp in c.get("ports") or []:
            if cp.get("name") == value and str(cp.get("protocol") or DEFAULT_PROTOCOL) == proto:
                return proto, int(cp["containerPort"]), int(cp["containerPort"])
    return None


# --- the evaluator (one flow): used for Service ClusterIPs and as the tests' oracle --------------

def _peer_allows(peer: Obj, policy_ns: str, ip: str, dest_pod: Obj | None, view: ClusterView) -> bool:
    block = peer.get("ipBlock")
    if block is not None:
        return _in_block(ip, block)
    return dest_pod is not None and any(p is dest_pod for p in peer_pods(peer, policy_ns, view))


def _ports_allow(ports: list[Obj] | None, port: int, proto: str, port_owner: Obj | None) -> bool:
    if not ports:
        return True
    for entry in ports:
        resolved = resolve_port(entry, port_owner)
        if resolved is not None and resolved[0] == proto and resolved[1] <= port <= resolved[2]:
            return True
    return False


def pod_by_ip(ip: str, view: ClusterView) -> Obj | None:
    return next((p for p in view.pods if pod_ip(p, view) == ip), None)


def allows_egress(pod: Obj, ip: str, port: int, proto: str, view: ClusterView) -> bool:
    """Whether `pod` may open a flow to ip:port/proto under the current policies."""
    policies = [p for p in selecting_policies(pod, view) if "Egress" in policy_types(p)]
    if not policies:
        return True
    dest = pod_by_ip(ip, view)
    for policy in policies:
        for rule in (policy.get("spec") or {}).get("egress") or []:
            peers = rule.get("to") or []
            if not _ports_allow(rule.get("ports"), port, proto, dest):
                continue
            if not peers or any(_peer_allows(peer, _ns(policy), ip, dest, view) for peer in peers):
                return True
    return False


def allows_ingress(pod: Obj, source_ip: str, port: int, proto: str, view: ClusterView) -> bool:
    """Whether a flow from source_ip to `pod`'s port/proto is let in under the current policies."""
    policies = [p for p in selecting_policies(pod, view) if "Ingress" in policy_types(p)]
    if not policies:
        return True
    source = pod_by_ip(source_ip, view)
    for policy in policies:
        for rule in (policy.get("spec") or {}).get("ingress") or []:
            peers = rule.get("from") or []
            if not _ports_allow(rule.get("ports"), port, proto, pod):
                continue
            if not peers or any(_peer_allows(peer, _ns(policy), source_ip, source, view) for peer in peers):
                return True
    return False


# --- the renderer ------------------------------------------------------------------------------

def _addr_field(ip_or_net: str, direction: str) -> str:
    family = "ip6" if ":" in ip_or_net else "ip"
    return f"{family} {'saddr' if direction == 'ingress' else 'daddr'}"


def _set(items: Iterable[str]) -> str:
    values = sorted(set(items), key=_sort_key)
    return values[0] if len(values) == 1 else "{ " + ", ".join(values) + " }"


def _sort_key(value: str) -> tuple[int, Any, str]:
    try:
        net = ipaddress.ip_network(value, strict=False)
        return (net.version, int(net.network_address), value)
    except ValueError:
        return (0, 0, value)


def _port_text(resolved: Iterable[tuple[str, int, int]]) -> list[str]:
    """Port matches grouped by protocol: `tcp dport { 80, 8000-8080 }`; all ports of a protocol: `meta
    l4proto tcp`."""
    by_proto: dict[str, set[tuple[int, int]]] = {}
    for proto, first, last in resolved:
        by_proto.setdefault(proto, set()).add((first, last))
    out = []
    for proto in sorted(by_proto):
        name = _NFT_PROTO[proto]
        ranges = sorted(by_proto[proto])
        if (1, 65535) in ranges:
            out.append(f"meta l4proto {name}")
            continue
        items = [str(a) if a == b else f"{a}-{b}" for a, b in ranges]
        out.append(f"{name} dport " + (items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"))
    return out


def _block_text(block: Obj, direction: str) -> str:
    cidr = str(ipaddress.ip_network(block["cidr"], strict=False))
    field_ = _addr_field(cidr, direction)
    text = f"{field_} {cidr}"
    excepts = [str(ipaddress.ip_network(e, strict=False)) for e in block.get("except") or []]
    if excepts:
        text += f" {field_} != {_set(excepts)}"
    return text


def _rule_lines(rule: Obj, peers_key: str, policy_ns: str, self_pod: Obj, direction: str,
                view: ClusterView) -> list[str]:
    """The accept lines of one ingress or egress rule."""
    peers = rule.get(peers_key) or []
    ports = rule.get("ports") or []
    named = [p for p in ports if isinstance(p.get("port"), str)]
    numeric = [p for p in ports if not isinstance(p.get("port"), str)]
    if direction == "ingress":
        # the destination is the pod itself: every port, named or not, resolves once
        resolved = [r for r in (resolve_port(p, self_pod) for p in ports) if r is not None]
        numeric_ports = _port_text(resolved) if ports else [""]
        if ports and not resolved:
            return []
        named = []
    else:
        numeric_ports = _port_text(r for r in (resolve_port(p, None) for p in numeric) if r is not None)
        if not ports:
            numeric_ports = [""]
    # addresses: pod peers as one set, each ipBlock on its own (its except is per block)
    pod_ips: set[str] = set()
    blocks: list[Obj] = []
    for peer in peers:
        if peer.get("ipBlock") is not None:
            blocks.append(peer["ipBlock"])
        else:
            pod_ips.update(ip for ip in (pod_ip(p, view) for p in peer_pods(peer, policy_ns, view)) if ip)
    addrs: list[str] = []
    if not peers:
        addrs = [""]
    else:
        v4 = {ip for ip in pod_ips if ":" not in ip}
        v6 = pod_ips - v4
        addrs += [f"{_addr_field(next(iter(group)), direction)} {_set(group)}" for group in (v4, v6) if group]
        addrs += [_block_text(b, direction) for b in blocks]
    lines = [" ".join(x for x in (a, p, "accept") if x) for a in addrs for p in numeric_ports]
    if named:
        lines += _named_egress_lines(named, peers, policy_ns, view)
    return lines


def _named_egress_lines(named: list[Obj], peers: list[Obj], policy_ns: str, view: ClusterView) -> list[str]:
    """Named egress ports resolve per destination pod: one line per (pod address, its port numbers)."""
    candidates: list[Obj] = []
    if not peers:
        candidates = list(view.pods)
    for peer in peers:
        if peer.get("ipBlock") is not None:
            candidates += [p for p in view.pods if (ip := pod_ip(p, view)) and _in_block(ip, peer["ipBlock"])]
        else:
            candidates += peer_pods(peer, policy_ns, view)
    lines = []
    seen: set[str] = set()
    for pod in candidates:
        ip = pod_ip(pod, view)
        if not ip or ip in seen:
            continue
        seen.add(ip)
        resolved = [r for r in (resolve_port(p, pod) for p in named) if r is not None]
        for port in _port_text(resolved):
            lines.append(f"{_addr_field(ip, 'egress')} {ip} {port} accept")
    return lines


def _service_lines(pod: Obj, view: ClusterView) -> list[str]:
    """ClusterIP:port accepts for Services all of whose current endpoints the pod may reach."""
    lines = []
    for svc in view.services:
        spec = svc.get("spec") or {}
        vip = spec.get("clusterIP")
        if not vip or vip == "None":
            continue
        eps = view.endpoints.get((_ns(svc), str(_meta(svc).get("name"))))
        for sport in spec.get("ports") or []:
            proto = str(sport.get("protocol") or DEFAULT_PROTOCOL)
            targets = _endpoint_targets(eps, sport.get("name"), proto)
            if targets and all(allows_egress(pod, ip, port, proto, view) for ip, port in targets):
                lines.append(f"ip daddr {vip} {_NFT_PROTO[proto]} dport {int(sport['port'])} accept")
    return lines


def _endpoint_targets(eps: Obj | None, port_name: str | None, proto: str) -> list[tuple[str, int]]:
    out = []
    for subset in (eps or {}).get("subsets") or []:
        for ep_port in subset.get("ports") or []:
            if (ep_port.get("name") or None) != (port_name or None):
                continue
            if str(ep_port.get("protocol") or DEFAULT_PROTOCOL) != proto:
                continue
            out += [(str(a["ip"]), int(ep_port["port"])) for a in subset.get("addresses") or []]
    return out


def _chain(name: str, hook: str, lo: str, isolated: bool, extra: list[str], lines: list[str]) -> list[str]:
    out = [f"\tchain {name} {{",
           f"\t\ttype filter hook {hook} priority filter; policy {'drop' if isolated else 'accept'};"]
    if isolated:
        out += [f'\t\t{lo} "lo" accept', "\t\tct state established,related accept"]
        out += [f"\t\t{line}" for line in extra + list(dict.fromkeys(lines))]
    out.append("\t}")
    return out


def render_pod_table(pod: Obj, view: ClusterView, host_ips: Iterable[str] = ()) -> str:
    """The pod's whole table (`table inet minik8s-netpol { ... }`): input chain for ingress, output for egress.

    A direction the pod is not isolated in gets an empty accepting chain, so every pod has the table
    from its start and a later policy only changes rules."""
    policies = selecting_policies(pod, view)
    isolated_in, isolated_out = isolation(policies)
    ingress: list[str] = []
    egress: list[str] = []
    for policy in policies:
        spec, ns = policy.get("spec") or {}, _ns(policy)
        types = policy_types(policy)
        if "Ingress" in types:
            for rule in spec.get("ingress") or []:
                ingress += _rule_lines(rule, "from", ns, pod, "ingress", view)
        if "Egress" in types:
            for rule in spec.get("egress") or []:
                egress += _rule_lines(rule, "to", ns, pod, "egress", view)
    if isolated_out:
        egress += _service_lines(pod, view)
    hosts = sorted(set(host_ips), key=_sort_key)
    lines = [f"table {FAMILY} {TABLE} {{"]
    lines += _chain("input", "input", "iif", isolated_in,
                    [f"{_addr_field(h, 'ingress')} {h} accept" for h in hosts], ingress)
    lines.append("")
    lines += _chain("output", "output", "oif", isolated_out,
                    [f"{_addr_field(h, 'egress')} {h} accept" for h in hosts], egress)
    lines.append("}")
    return "\n".join(lines) + "\n"


def replace_script(table_text: str) -> str:
    """`nft -f` input swapping the table in one transaction (declaring it first makes the delete safe)."""
    return f"table {FAMILY} {TABLE}\ndelete table {FAMILY} {TABLE}\n{table_text}"
