"""The API server's half of a node's join, and the objects the Node authorizer reads.

A joining node has already checked the cluster CA (`GET /cacerts`) against the hash in its join
token, so it sends the token only to this server. It sends two certificate requests; this end signs
them with the subject and names it decides: a client certificate `CN=system:node:<name>,
O=system:nodes` (the node's identity toward the API) and the kubelet's serving certificate (its IP
and name). The reply carries the Node, those certificates and the cluster's facts: never the admin
token. A name that is taken stays with its holder: a node re-joining presents its own certificate
(its state dir); anyone else is refused unless the request says `force`.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from minik8s.api import kinds as k
from minik8s.auth.user import NODES, UserInfo, node_name_of
from minik8s.errors import AlreadyExists, BadRequest, NotFound, Unavailable
from minik8s.pki import CLIENT_AUTH, SERVER_AUTH, sign_csr

if TYPE_CHECKING:
    from minik8s.apiserver.app import ApiServerConfig
    from minik8s.apiserver.resources import Resources

log = logging.getLogger("minik8s.apiserver.join")

Obj = dict[str, Any]
#: a node name is a DNS subdomain (it is the CN of a certificate and a SAN of the kubelet's)
NODE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


class StorePodIndex:
    """`minik8s.auth.node.PodIndex` over the API server's own store (blocking reads)."""

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    def pod(self, namespace: str, name: str) -> Obj | None:
        try:
            found: Obj = self.resources.get(k.lookup("Pod"), namespace, name)
            return found
        except NotFound:
            return None

    def pods_on_node(self, node: str, namespace: str) -> list[Obj]:
        items, _rev = self.resources.list(k.lookup("Pod"), namespace or None, None, f"spec.nodeName={node}")
        return list(items)

    def claim(self, namespace: str, name: str) -> Obj | None:
        try:
            found: Obj = self.resources.get(k.lookup("PersistentVolumeClaim"), namespace, name)
            return found
        except NotFound:
            return None


def cluster_ca_pem(config: ApiServerConfig) -> str | None:
    """The CA exactly as the join token hashes it (the file's text)."""
    if config.ca_cert:
        return Path(config.ca_cert).read_text()
    ca = config.cluster_info.get("ca")
    return str(ca) if ca else None


def _request(body: Any) -> tuple[str, str, Obj]:
    """(name, address, csrs) of a join request, or the 400 naming what is wrong."""
    if not isinstance(body, dict) or not body.get("name"):
        raise BadRequest("a join request needs the node's name")
    name = str(body["name"])
    if len(name) > 253 or not NODE_NAME.match(name):
        raise BadRequest(f'node name "{name}" is not a DNS subdomain (lower-case letters, digits, "-", ".")')
    address = body.get("address")
    try:
        ipaddress.IPv4Address(str(address))
    except ValueError:
        raise BadRequest(f"address: the node's IPv4 address is required, got {address!r}") from None
    csrs = body.get("csr")
    if not isinstance(csrs, dict) or not isinstance(csrs.get("client"), str) or not isinstance(
            csrs.get("serving"), str):
        raise BadRequest("csr: certificate requests for the node's client and serving certificates are required "
                         "(csr.client, csr.serving; this minik8s is newer than the joining one)")
    return name, str(address), csrs


def _check_name(resources: Resources, name: str, peer: UserInfo | None, force: bool) -> None:
    """A taken name may be joined again only by its holder (its certificate), or with `force`."""
    try:
        resources.get(k.lookup("Node"), None, name)
    except NotFound:
        return
    if peer is not None and node_name_of(peer) == name:
        return
    if force:
        log.warning("node name taken over with force", extra={"node": name})
        return
    raise AlreadyExists(f'node "{name}" already exists: join it again from the machine that holds its '
                        "credential (its state dir), remove it first (`minik8s node remove`), "
                        "or join with --force to take the name over")


def join(resources: Resources, config: ApiServerConfig, body: Any, peer: UserInfo | None) -> Obj:
    """Register (or re-register) a joining node and sign its certificates (blocking: etcd and openssl)."""
    name, address, csrs = _request(body)
    if not (config.ca_cert and config.ca_key):
        raise Unavailable("this API server cannot sign node certificates (no cluster CA key configured)")
    _check_name(resources, name, peer, bool(body.get("force")))
    try:
        client = _sign(config, csrs["client"], f"system:node:{name}", [NODES], CLIENT_AUTH, None)
        serving = _sign(config, csrs["serving"], f"system:node:{name}", [NODES], SERVER_AUTH,
                        [f"IP:{address}", f"DNS:{name}"])
    except ValueError as exc:
        raise BadRequest(f"csr: {exc}") from None
    node = resources.join_node(body)
    log.info("node joined", extra={"node": name, "address": address})
    return {"node": node, "clusterInfo": config.cluster_info,
            "credentials": {"clientCertificate": client, "servingCertificate": serving}}


def _sign(config: ApiServerConfig, csr: str, cn: str, orgs: list[str], usage: str, sans: list[str] | None) -> str:
    return sign_csr(Path(str(config.ca_cert)), Path(str(config.ca_key)), csr, cn, orgs, usage, sans)
