"""Service and Endpoints: typed models, semantic validation and `get` columns.

Allocation (ClusterIP, NodePort) happens in the API server (`minik8s.apiserver.services`);
the Endpoints object of a Service is kept by `minik8s.controllers.endpoints`; the per-node
proxy (`minik8s.proxy`) turns both into nftables rules.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import Field

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api.validation import DNS1123_LABEL, MAX_LABEL, MAX_PORT, Causes, check_labels, check_meta

NODE_PORT_MIN = 30000
NODE_PORT_MAX = 32767
HEADLESS = "None"
Protocol = Literal["TCP", "UDP"]
#: The cluster is single-stack IPv4; PreferDualStack is accepted and resolves to it, as in Kubernetes.
IP_FAMILIES = ("IPv4",)
IP_FAMILY_POLICIES = ("SingleStack", "PreferDualStack")
TRAFFIC_POLICIES = ("Cluster", "Local")


# --- Service ---------------------------------------------------------------------------------

class ServicePort(t.Model):
    name: str | None = None
    protocol: Protocol | None = None
    port: int
    targetPort: int | str | None = None
    nodePort: int | None = None
    appProtocol: str | None = None


class ServiceSpec(t.Model):
    type: Literal["ClusterIP", "NodePort"] | None = None
    clusterIP: str | None = None
    clusterIPs: list[str] | None = None
    selector: dict[str, str] | None = None
    ports: list[ServicePort] | None = None
    sessionAffinity: Literal["None", "ClientIP"] | None = None
    externalTrafficPolicy: Literal["Cluster", "Local"] | None = None
    ipFamilies: list[str] | None = None
    ipFamilyPolicy: str | None = None
    internalTrafficPolicy: str | None = None


class LoadBalancerStatus(t.Model):
    ingress: list[dict[str, Any]] | None = None


class ServiceStatus(t.Model):
    loadBalancer: LoadBalancerStatus | None = None


class Service(t.TypedObject):
    spec: ServiceSpec = Field(default_factory=ServiceSpec)
    status: ServiceStatus | None = None


# --- Endpoints -------------------------------------------------------------------------------

class EndpointAddress(t.Model):
    ip: str
    hostname: str | None = None
    nodeName: str | None = None
    targetRef: t.ObjectReference | None = None


class EndpointPort(t.Model):
    name: str | None = None
    port: int
    protocol: Protocol | None = None
    appProtocol: str | None = None


class EndpointSubset(t.Model):
    addresses: list[EndpointAddress] | None = None
    notReadyAddresses: list[EndpointAddress] | None = None
    ports: list[EndpointPort] | None = None


class Endpoints(t.TypedObject):
    subsets: list[EndpointSubset] | None = None


# --- validation --------------------------------------------------------------------------------

def _check_port_number(value: int, path: str, causes: Causes) -> None:
    if not 1 <= value <= MAX_PORT:
        causes.append((path, f"Invalid value: {value}: must be between 1 and {MAX_PORT}, inclusive"))


def _check_ip(value: str, path: str, causes: Causes) -> bool:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        causes.append((path, f'Invalid value: "{value}": must be a valid IPv4 address'))
        return False
    return True


def validate_service(svc: Service) -> Causes:
    causes: Causes = []
    check_meta(svc.metadata, causes, label_name=True)
    spec = svc.spec
    check_labels(spec.selector, "spec.selector", causes)
    ports = spec.ports or []
    headless = spec.clusterIP == HEADLESS
    if not ports and not headless:
        causes.append(("spec.ports", "Required value"))
    names: set[str] = set()
    keys: set[tuple[int, str]] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        if len(ports) > 1 and not port.name:
            causes.append((f"{path}.name", "Required value: a name is required when a service has several ports"))
        if port.name:
            if len(port.name) > MAX_LABEL or not DNS1123_LABEL.match(port.name):
                causes.append((f"{path}.name", f'Invalid value: "{port.name}": must be a lowercase RFC 1123 label'))
            if port.name in names:
                causes.append((f"{path}.name", f'Duplicate value: "{port.name}"'))
            names.add(port.name)
        _check_port_number(port.port, f"{path}.port", causes)
        key = (port.port, port.protocol or "TCP")
        if key in keys:
            causes.append((f"{path}", f"Duplicate value: {port.port}/{key[1]}"))
        keys.add(key)
        if isinstance(port.targetPort, int):
            _check_port_number(port.targetPort, f"{path}.targetPort", causes)
        elif isinstance(port.targetPort, str) and (
                len(port.targetPort) > 15 or not DNS1123_LABEL.match(port.targetPort)):
            causes.append((f"{path}.targetPort", f'Invalid value: "{port.targetPort}": must be a port number '
                                                 "or a container port name (at most 15 characters)"))
        if port.nodePort is not None:
            if spec.type != "NodePort":
                causes.append((f"{path}.nodePort", "Forbidden: may not be used when `type` is 'ClusterIP'"))
            elif not NODE_PORT_MIN <= port.nodePort <= NODE_PORT_MAX:
                causes.append((f"{path}.nodePort", f"Invalid value: {port.nodePort}: provided port is not in the "
                                                   f"valid range. The range of valid ports is "
                                                   f"{NODE_PORT_MIN}-{NODE_PORT_MAX}"))
    if spec.clusterIP and not headless:
        _check_ip(spec.clusterIP, "spec.clusterIP", causes)
    if spec.clusterIPs:
        if spec.clusterIP and spec.clusterIPs[0] != spec.clusterIP:
            causes.append(("spec.clusterIPs[0]", f'Invalid value: "{spec.clusterIPs[0]}": must match '
                                                 f'spec.clusterIP "{spec.clusterIP}"'))
        if len(spec.clusterIPs) > 1:
            causes.append(("spec.clusterIPs", "Invalid value: only one (IPv4) cluster IP is supported"))
    if headless and spec.type == "NodePort":
        causes.append(("spec.clusterIP", 'Invalid value: "None": may not be set to \'None\' for NodePort services'))
    _check_ip_families(spec, causes)
    _check_traffic_policies(spec, causes)
    return causes


def _check_ip_families(spec: ServiceSpec, causes: Causes) -> None:
    """The cluster is IPv4 single-stack: IPv6 and RequireDualStack are refused, as on such a Kubernetes cluster."""
    for i, family in enumerate(spec.ipFamilies or []):
        if family not in IP_FAMILIES:
            causes.append((f"spec.ipFamilies[{i}]", f'Unsupported value: "{family}": supported values: "IPv4"'))
    if spec.ipFamilies and len(spec.ipFamilies) > 1:
        causes.append(("spec.ipFamilies", "Invalid value: this cluster is configured for IPv4 single-stack only"))
    if spec.ipFamilyPolicy is not None and spec.ipFamilyPolicy not in IP_FAMILY_POLICIES:
        causes.append(("spec.ipFamilyPolicy", f'Unsupported value: "{spec.ipFamilyPolicy}": supported values: '
                                              '"SingleStack", "PreferDualStack"'
                       + (" (this cluster is IPv4 single-stack)" if spec.ipFamilyPolicy == "RequireDualStack" else "")))


def _check_traffic_policies(spec: ServiceSpec, causes: Causes) -> None:
    if spec.internalTrafficPolicy is not None and spec.internalTrafficPolicy not in TRAFFIC_POLICIES:
        causes.append(("spec.internalTrafficPolicy", f'Unsupported value: "{spec.internalTrafficPolicy}": '
                                                     'supported values: "Cluster", "Local"'))
    # "Cluster" left over from a NodePort turned ClusterIP is dropped by the defaults; Local would mean nothing
    if spec.externalTrafficPolicy == "Local" and spec.type != "NodePort":
        causes.append(("spec.externalTrafficPolicy", 'Invalid value: "Local": may only be set for '
                                                     "externally-accessible services (type NodePort)"))


def validate_endpoints(ep: Endpoints) -> Causes:
    causes: Causes = []
    check_meta(ep.metadata, causes)
    for i, subset in enumerate(ep.subsets or []):
        for field in ("addresses", "notReadyAddresses"):
            for j, addr in enumerate(getattr(subset, field) or []):
                _check_ip(addr.ip, f"subsets[{i}].{field}[{j}].ip", causes)
        for j, port in enumerate(subset.ports or []):
            _check_port_number(port.port, f"subsets[{i}].ports[{j}].port", causes)
    return causes


# --- printer columns -----------------------------------------------------------------------------

def service_ports(obj: dict[str, Any]) -> str:
    out = []
    for port in (obj.get("spec") or {}).get("ports") or []:
        proto = port.get("protocol") or "TCP"
        node_port = f":{port['nodePort']}" if port.get("nodePort") else ""
        out.append(f"{port.get('port')}{node_port}/{proto}")
    return ",".join(out) or "<none>"


def endpoints_list(obj: dict[str, Any], limit: int = 3) -> str:
    items = []
    for subset in obj.get("subsets") or []:
        for addr in subset.get("addresses") or []:
            for port in subset.get("ports") or [{}]:
                items.append(f"{addr['ip']}:{port['port']}" if port.get("port") else addr["ip"])
    if not items:
        return "<none>"
    more = f" + {len(items) - limit} more..." if len(items) > limit else ""
    return ",".join(items[:limit]) + more


def _selector(obj: dict[str, Any]) -> str:
    sel = (obj.get("spec") or {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(sel.items())) or "<none>"


SERVICE_COLUMNS = [
    p.Column("NAME", p.name), p.Column("TYPE", lambda o: p._dig(o, "spec", "type", default="ClusterIP")),
    p.Column("CLUSTER-IP", lambda o: p._dig(o, "spec", "clusterIP")),
    p.Column("EXTERNAL-IP", lambda o: "<none>"), p.Column("PORT(S)", service_ports), p.Column("AGE", p.age),
    p.Column("SELECTOR", _selector, wide=True),
]
ENDPOINTS_COLUMNS = [p.Column("NAME", p.name), p.Column("ENDPOINTS", endpoints_list), p.Column("AGE", p.age)]


# --- defaulting (the API server's DEFAULTERS) ----------------------------------------------------

def service_defaults(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("internalTrafficPolicy", "Cluster")
    if spec["type"] == "NodePort":
        spec.setdefault("externalTrafficPolicy", "Cluster")
    else:
        spec.pop("externalTrafficPolicy", None)  # only NodePorts have external traffic
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    obj["status"] = obj.get("status") or {"loadBalancer": {}}
