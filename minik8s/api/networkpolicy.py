"""networking.k8s.io/v1 NetworkPolicy: which traffic may reach (ingress) and leave (egress) selected pods.

Enforced on every node by the kubelet's policy agent (`minik8s.netpol`) with nftables in each pod's
own network namespace. What the API accepts here is what Kubernetes 1.32 accepts, with its defaults:
`policyTypes` becomes `[Ingress]`, plus `Egress` when egress rules are given, and a port's protocol
defaults to TCP. Everything validated here is enforced; nothing is accepted and ignored.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from pydantic import Field

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api.validation import MAX_PORT, Causes, check_label_selector, check_meta

GROUP = "networking.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
POLICY_TYPES = ("Ingress", "Egress")
PROTOCOLS = ("SCTP", "TCP", "UDP")
DEFAULT_PROTOCOL = "TCP"
MAX_PORT_NAME = 15
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


# --- models ------------------------------------------------------------------------------------

class IPBlock(t.Model):
    cidr: str = ""
    except_: list[str] | None = Field(default=None, alias="except")


class NetworkPolicyPeer(t.Model):
    podSelector: t.LabelSelector | None = None
    namespaceSelector: t.LabelSelector | None = None
    ipBlock: IPBlock | None = None


class NetworkPolicyPort(t.Model):
    protocol: str | None = None  # a plain str so a bad value gets Kubernetes' "Unsupported value"
    port: int | str | None = None
    endPort: int | None = None


class NetworkPolicyIngressRule(t.Model):
    ports: list[NetworkPolicyPort] | None = None
    from_: list[NetworkPolicyPeer] | None = Field(default=None, alias="from")


class NetworkPolicyEgressRule(t.Model):
    ports: list[NetworkPolicyPort] | None = None
    to: list[NetworkPolicyPeer] | None = None


class NetworkPolicySpec(t.Model):
    podSelector: t.LabelSelector = Field(default_factory=t.LabelSelector)
    ingress: list[NetworkPolicyIngressRule] | None = None
    egress: list[NetworkPolicyEgressRule] | None = None
    policyTypes: list[str] | None = None


class NetworkPolicy(t.TypedObject):
    spec: NetworkPolicySpec = Field(default_factory=NetworkPolicySpec)


# --- validation (Kubernetes' ValidateNetworkPolicy) --------------------------------------------

def _check_port(port: NetworkPolicyPort, path: str, causes: Causes) -> None:
    if port.protocol is not None and port.protocol not in PROTOCOLS:
        supported = ", ".join(f'"{v}"' for v in PROTOCOLS)
        causes.append((f"{path}.protocol", f'Unsupported value: "{port.protocol}": supported values: {supported}'))
    if port.port is None:
        if port.endPort is not None:
            causes.append((f"{path}.endPort", "Required value: may not be specified when `port` is not specified"))
        return
    if isinstance(port.port, int):
        if not 1 <= port.port <= MAX_PORT:
            causes.append((f"{path}.port", f"Invalid value: {port.port}: must be between 1 and {MAX_PORT}, "
                                           "inclusive"))
        if port.endPort is not None:
            if port.endPort < port.port:
                causes.append((f"{path}.endPort", f"Invalid value: {port.endPort}: must be greater than or equal "
                                                  "to `port`"))
            elif port.endPort > MAX_PORT:
                causes.append((f"{path}.endPort", f"Invalid value: {port.endPort}: must be between 1 and "
                                                  f"{MAX_PORT}, inclusive"))
        return
    name = port.port
    if len(name) > MAX_PORT_NAME or not IANA_SVC_NAME.match(name) or "--" in name or not re.search("[a-z]", name):
        causes.append((f"{path}.port", f'Invalid value: "{name}": must be a port number or an IANA_SVC_NAME '
                                       "(at most 15 lowercase letters, digits and '-', with a letter)"))
    if port.endPort is not None:
        causes.append((f"{path}.endPort", "Invalid value: may not be specified when `port` is non-numeric"))


def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return None


def _check_ip_block(block: IPBlock, path: str, causes: Causes) -> None:
    if not block.cidr:
        causes.append((f"{path}.cidr", "Required value"))
        return
    net = _network(block.cidr)
    if net is None or "/" not in block.cidr:
        causes.append((f"{path}.cidr", f'Invalid value: "{block.cidr}": must be a valid CIDR value, '
                                       "(e.g. 10.9.8.0/24 or 2001:db8::/64)"))
        return
    for i, text in enumerate(block.except_ or []):
        sub = _network(text)
        if sub is None or "/" not in text:
            causes.append((f"{path}.except[{i}]", f'Invalid value: "{text}": must be a valid CIDR value, '
                                                  "(e.g. 10.9.8.0/24 or 2001:db8::/64)"))
        elif sub.version != net.version or not sub.subnet_of(net) or sub.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
            causes.append((f"{path}.except[{i}]", f'Invalid value: "{text}": must be a strict subset of '
                                                  f"`cidr` ({block.cidr})"))


def _check_peer(peer: NetworkPolicyPeer, path: str, causes: Causes) -> None:
    given = [f for f in ("podSelector", "namespaceSelector", "ipBlock") if getattr(peer, f) is not None]
    if not given:
        causes.append((path, "Required value: must specify a peer"))
    elif peer.ipBlock is not None and len(given) > 1:
        causes.append((path, "Forbidden: may not specify both ipBlock and another peer"))
    if peer.podSelector is not None:
        check_label_selector(peer.podSelector, f"{path}.podSelector", causes)
    if peer.namespaceSelector is not None:
        check_label_selector(peer.namespaceSelector, f"{path}.namespaceSelector", causes)
    if peer.ipBlock is not None:
        _check_ip_block(peer.ipBlock, f"{path}.ipBlock", causes)


def validate_network_policy(obj: NetworkPolicy) -> Causes:
    causes: Causes = []
    check_meta(obj.metadata, causes)
    spec = obj.spec
    check_label_selector(spec.podSelector, "spec.podSelector", causes)
    for i, irule in enumerate(spec.ingress or []):
        for j, port in enumerate(irule.ports or []):
            _check_port(port, f"spec.ingress[{i}].ports[{j}]", causes)
        for j, peer in enumerate(irule.from_ or []):
            _check_peer(peer, f"spec.ingress[{i}].from[{j}]", causes)
    for i, erule in enumerate(spec.egress or []):
        for j, port in enumerate(erule.ports or []):
            _check_port(port, f"spec.egress[{i}].ports[{j}]", causes)
        for j, peer in enumerate(erule.to or []):
            _check_peer(peer, f"spec.egress[{i}].to[{j}]", causes)
    types = spec.policyTypes or []
    for i, value in enumerate(types):
        if value not in POLICY_TYPES:
            causes.append((f"spec.policyTypes[{i}]", f'Unsupported value: "{value}": supported values: '
                                                     '"Ingress", "Egress"'))
    if len(types) > len(POLICY_TYPES):
        causes.append(("spec.policyTypes", f"Invalid value: {types}: may not specify more than two policyTypes"))
    return causes


# --- defaults (Kubernetes' SetDefaults_NetworkPolicySpec / _NetworkPolicyPort) ------------------

def default_network_policy(obj: dict[str, Any]) -> None:
    """Fill what Kubernetes fills: an empty podSelector, TCP ports, and policyTypes from the rules given."""
    spec = obj.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", DEFAULT_PROTOCOL)
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


# --- printer columns ---------------------------------------------------------------------------

def format_selector(selector: dict[str, Any] | None) -> str:
    """A LabelSelector the way kubectl prints it (metav1.FormatLabelSelector); `<none>` when empty."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), ",".join(expr.get("values") or [])
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


def _pod_selector(obj: p.Obj) -> str:
    return format_selector((obj.get("spec") or {}).get("podSelector"))


NETWORK_POLICY_COLUMNS = [p.Column("NAME", p.name), p.Column("POD-SELECTOR", _pod_selector), p.Column("AGE", p.age)]
