"""The `kube-system/kube-dns` Service and Endpoints that point pods at the cluster DNS server.

The Service has no selector (the server is a Ray actor, not a pod), so the endpoints controller
leaves its Endpoints alone and we write them: one address, the head, where `DnsActor` listens.
The per-node proxy DNATs 10.96.0.10:53 to it like any other Service.
"""

from __future__ import annotations

import logging
from typing import Any

from minik8s.client import Client
from minik8s.errors import AlreadyExists, NotFound

log = logging.getLogger("minik8s.dns")

NAMESPACE, NAME = "kube-system", "kube-dns"
DNS_PORT = 53


def kube_dns_objects(cluster_ip: str, server_ip: str, port: int = DNS_PORT) -> tuple[dict[str, Any], dict[str, Any]]:
    labels = {"k8s-app": "kube-dns"}
    meta = {"name": NAME, "namespace": NAMESPACE, "labels": labels}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"clusterIP": cluster_ip, "ports": [
                   {"name": "dns", "port": DNS_PORT, "targetPort": port, "protocol": "UDP"},
                   {"name": "dns-tcp", "port": DNS_PORT, "targetPort": port, "protocol": "TCP"}]}}
    endpoints = {"apiVersion": "v1", "kind": "Endpoints", "metadata": dict(meta),
                 "subsets": [{"addresses": [{"ip": server_ip}],
                              "ports": [{"name": "dns", "port": port, "protocol": "UDP"},
                                        {"name": "dns-tcp", "port": port, "protocol": "TCP"}]}]}
    return service, endpoints


def ensure_kube_dns(client: Client, cluster_ip: str, server_ip: str, port: int = DNS_PORT) -> None:
    """Create the Service and Endpoints if missing; Endpoints pointing elsewhere are corrected."""
    service, endpoints = kube_dns_objects(cluster_ip, server_ip, port)
    try:
        client.create(service)
        log.info("created kube-dns service", extra={"cluster_ip": cluster_ip})
    except AlreadyExists:
        pass
    try:
        current = client.get("Endpoints", NAME, NAMESPACE)
    except NotFound:
        client.create(endpoints)
        log.info("created kube-dns endpoints", extra={"server_ip": server_ip})
        return
    if (current.to_dict().get("subsets") or []) != endpoints["subsets"]:
        endpoints["metadata"]["resourceVersion"] = current.metadata.resourceVersion
        client.update(endpoints)
