"""ClusterIP and NodePort allocation, done by the API server when a Service is written.

Allocations are derived from the Services that exist (no separate bitmap to keep in step):
under one lock, list the Services, collect what they hold, pick. Deleting a Service releases
its IP and ports simply because it is no longer listed. Both are immutable once given.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from typing import Any

from minik8s.api.services import HEADLESS, NODE_PORT_MAX, NODE_PORT_MIN
from minik8s.errors import Invalid

Obj = dict[str, Any]
DEFAULT_SERVICE_CIDR = "10.96.0.0/16"
DNS_HOST_OFFSET = 10  # 10.96.0.10, kept for the cluster DNS service unless asked for by name


def _svc_name(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}"


def taken_ips(services: list[Obj], skip: str | None = None) -> dict[str, str]:
    out = {}
    for s in services:
        if _svc_name(s) == skip:
            continue
        ip = (s.get("spec") or {}).get("clusterIP")
        if ip and ip != HEADLESS:
            out[ip] = _svc_name(s)
    return out


def taken_node_ports(services: list[Obj], skip: str | None = None) -> dict[tuple[int, str], str]:
    out = {}
    for s in services:
        if _svc_name(s) == skip:
            continue
        for port in (s.get("spec") or {}).get("ports") or []:
            if port.get("nodePort"):
                out[(int(port["nodePort"]), port.get("protocol") or "TCP")] = _svc_name(s)
    return out


def pick_cluster_ip(network: ipaddress.IPv4Network, taken: dict[str, str], name: str,
                    requested: str | None = None) -> str:
    """The requested IP when inside `network` and free, else the lowest free one (skipping .0, .1, DNS)."""
    if requested:
        ip = ipaddress.IPv4Address(requested)
        if ip not in network or ip in (network.network_address, network.broadcast_address):
            raise Invalid("Service", name, [("spec.clusterIP", f'Invalid value: "{requested}": provided IP is not '
                                                               f"in the valid range. The range of valid IPs is "
                                                               f"{network}")])
        if requested in taken:
            raise Invalid("Service", name, [("spec.clusterIP", f'Invalid value: "{requested}": provided IP is '
                                                               f'already allocated (to service "{taken[requested]}")')])
        return requested
    reserved = {network.network_address, network.network_address + 1, network.network_address + DNS_HOST_OFFSET,
                network.broadcast_address}
    for ip in network:
        if ip not in reserved and str(ip) not in taken:
            return str(ip)
    raise Invalid("Service", name, [("spec.clusterIP", f"Internal error: no free cluster IP left in {network}")])


def pick_node_port(taken: dict[tuple[int, str], str], protocol: str, name: str, path: str,
                   requested: int | None = None) -> int:
    if requested:
        other = taken.get((requested, protocol))
        if other:
            raise Invalid("Service", name, [(path, f"Invalid value: {requested}: provided port is already allocated "
                                                   f'(to service "{other}")')])
        return requested
    for port in range(NODE_PORT_MIN, NODE_PORT_MAX + 1):
        if (port, protocol) not in taken:
            return port
    raise Invalid("Service", name, [(path, "Internal error: no free node port left")])


class ServiceAllocator:
    """Gives a Service its ClusterIP and NodePorts; `list_services` lists every Service (all namespaces)."""

    def __init__(self, service_cidr: str, list_services: Callable[[], list[Obj]]) -> None:
        self.network = ipaddress.IPv4Network(service_cidr)
        self.list_services = list_services
        self.lock = threading.Lock()  # hold around allocate + store write

    def allocate(self, obj: Obj, current: Obj | None = None) -> None:
        """Fill spec.clusterIP(s) and nodePorts in place (call under `lock`). `current`: the stored object
        on update; its allocations carry over and may not change."""
        spec = obj.setdefault("spec", {})
        name = (obj.get("metadata") or {}).get("name", "")
        key = _svc_name(obj)
        services = self.list_services()
        old_spec = (current or {}).get("spec") or {}
        if current is not None:
            old_ip = old_spec.get("clusterIP")
            new_ip = spec.get("clusterIP") or (spec.get("clusterIPs") or [None])[0]
            if new_ip and old_ip and new_ip != old_ip:
                raise Invalid("Service", name, [("spec.clusterIP", f'Invalid value: "{new_ip}": field is immutable')])
            if old_ip:
                spec["clusterIP"], spec["clusterIPs"] = old_ip, [old_ip]
        if not spec.get("clusterIP") and spec.get("clusterIPs"):
            spec["clusterIP"] = spec["clusterIPs"][0]
        if spec.get("clusterIP") != HEADLESS and (current is None or not old_spec.get("clusterIP")):
            spec["clusterIP"] = pick_cluster_ip(self.network, taken_ips(services, skip=key), name,
                                                spec.get("clusterIP"))
        if spec.get("clusterIP"):
            spec["clusterIPs"] = [spec["clusterIP"]]
        self._node_ports(spec, old_spec if current is not None else {}, services, key, name)

    def _node_ports(self, spec: Obj, old_spec: Obj, services: list[Obj], key: str, name: str) -> None:
        ports = spec.get("ports") or []
        if spec.get("type", "ClusterIP") != "NodePort":
            for port in ports:
                port.pop("nodePort", None)
            return
        old = {(p.get("port"), p.get("protocol") or "TCP"): p.get("nodePort")
               for p in old_spec.get("ports") or [] if p.get("nodePort")}
        taken = taken_node_ports(services, skip=key)
        for i, port in enumerate(ports):
            proto = port.get("protocol") or "TCP"
            path = f"spec.ports[{i}].nodePort"
            had = old.get((port.get("port"), proto))
            if had and port.get("nodePort") not in (None, had):
                raise Invalid("Service", name, [(path, f"Invalid value: {port['nodePort']}: field is immutable "
                                                       f"(allocated {had})")])
            if had:
                port["nodePort"] = had
            else:
                port["nodePort"] = pick_node_port(taken, proto, name, path, port.get("nodePort"))
            taken[(port["nodePort"], proto)] = key
