"""The `default/kubernetes` Service and its Endpoints: how pods find the API (kube-apiserver's bootstrap
controller). The Service takes the first address of the service CIDR, port 443 (`https`); its Endpoints,
which the API server writes itself (the Service has no selector), point at the API server's advertised
address and real port. Every pod gets KUBERNETES_SERVICE_HOST/PORT for it from its kubelet, which is
what in-cluster clients (`config.load_incluster_config()`) read.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from minik8s.api import kinds as k
from minik8s.apiserver.resources import Resources
from minik8s.errors import AlreadyExists, Conflict, NotFound

log = logging.getLogger("minik8s.apiserver.masterservice")

NAMESPACE, NAME = "default", "kubernetes"
PORT_NAME, SERVICE_PORT = "https", 443
#: How often the Service and Endpoints are checked (and put back if someone removed or changed them).
RECONCILE_INTERVAL_S = 30.0

Obj = dict[str, Any]


def cluster_ip(service_cidr: str) -> str:
    """The first usable address of the service network, as Kubernetes gives the `kubernetes` Service."""
    return str(ipaddress.ip_network(service_cidr, strict=False).network_address + 1)


def objects(service_cidr: str, address: str, port: int) -> tuple[Obj, Obj]:
    labels = {"component": "apiserver", "provider": "kubernetes"}
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels},
               "spec": {"type": "ClusterIP", "clusterIP": cluster_ip(service_cidr), "sessionAffinity": "None",
                        "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": port, "protocol": "TCP"}]}}
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(labels)},
                 "subsets": [{"addresses": [{"ip": address}],
                              "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}]}]}
    return service, endpoints


def reconcile(res: Resources, service_cidr: str, address: str, port: int) -> None:
    """Create the Service if missing and keep its Endpoints equal to this API server's address."""
    service, endpoints = objects(service_cidr, address, port)
    try:
        res.create(k.lookup("Service"), NAMESPACE, service)
        log.info("created the kubernetes service", extra={"cluster_ip": service["spec"]["clusterIP"]})
    except AlreadyExists:
        pass
    ep_info = k.lookup("Endpoints")
    try:
        current = res.get(ep_info, NAMESPACE, NAME)
    except NotFound:
        try:
            res.create(ep_info, NAMESPACE, endpoints)
            log.info("created the kubernetes endpoints", extra={"address": address, "port": port})
        except AlreadyExists:
            pass  # another API server was quicker; the next round compares
        return
    if current.get("subsets") != endpoints["subsets"]:
        endpoints["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        try:
            res.update(ep_info, NAMESPACE, NAME, endpoints)
            log.info("updated the kubernetes endpoints", extra={"address": address, "port": port})
        except Conflict:
            pass  # changed meanwhile: the next round looks again
