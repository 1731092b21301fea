"""Which etcd a cluster keeps its state in: the managed one, or an existing etcd cluster.

`minik8s up` runs a managed etcd (data under ``<state_dir>/etcd``) unless it is given
``--etcd-endpoints``; then it starts none and the API server uses those endpoints. The choice is
recorded in ``<state_dir>/etcd-endpoints`` at the first ``up``:

- a later ``up`` without the flag keeps using what was recorded (the cluster's objects are there);
- ``up`` with endpoints other than the recorded ones is refused, because the objects would stay
  behind in the other etcd; ``down --purge`` forgets the choice (and deletes the managed etcd's data);
- ``down`` never stops an external etcd, and ``--purge`` leaves its keys alone.

https:// endpoints are spoken to with TLS (``--etcd-cafile/--etcd-certfile/--etcd-keyfile``, each defaulting
to the cluster CA and the client certificate it issues the API server for etcd, ``pki/apiserver-etcd-client``):
members started with ``--client-cert-auth --trusted-ca-file <state>/pki/ca.crt`` take the API server and
nobody else. The files are recorded beside the endpoints (``etcd-tls.json``) for later ``up``s.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from minik8s.cluster.config import ClusterConfig
from minik8s.errors import BadRequest, Unavailable
from minik8s.store.failover import EtcdTLS, is_tls

ETCD_ENDPOINTS_FILE = "etcd-endpoints"
ETCD_TLS_FILE = "etcd-tls.json"
MANAGED = "managed"
#: Timeout of one probe of one endpoint.
PROBE_TIMEOUT_S = 2.0
#: Probes never go through a proxy: the endpoints are the user's own etcd members.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MemberHealth(NamedTuple):
    endpoint: str
    healthy: bool
    detail: str


def _file(cfg: ClusterConfig) -> Path:
    return cfg.state_dir / ETCD_ENDPOINTS_FILE


def recorded(cfg: ClusterConfig) -> list[str] | None:
    """The external endpoints recorded at the first ``up``; ``[]`` for the managed etcd; None if
    nothing is recorded. (A file from before this format lists the managed URLs: managed.)"""
    try:
        lines = _file(cfg).read_text().split()
    except FileNotFoundError:
        return None
    if not lines or lines == [MANAGED] or cfg.etcd_endpoints[0] in lines:
        return []
    return lines


def endpoints(cfg: ClusterConfig) -> list[str]:
    """The endpoints the cluster's API server uses."""
    return recorded(cfg) or cfg.etcd_endpoints


def is_external(cfg: ClusterConfig) -> bool:
    return bool(recorded(cfg))


def choose(cfg: ClusterConfig, given: list[str] | None) -> list[str]:
    """The external endpoints ``up`` is to use (``[]``: the managed etcd), from what the user gave and
    what is recorded. Raises BadRequest, changing nothing, when they disagree."""
    before = recorded(cfg)
    if not given:
        return before or []
    if before is None or set(before) == set(given):  # the order only says which member is tried first
        return list(given)
    where = "the managed etcd" if not before else "the etcd at " + ",".join(before)
    raise BadRequest(
        f"this cluster keeps its objects in {where} (recorded in {_file(cfg)}); it will not move to "
        f"{','.join(given)}. Run `minik8s up` without --etcd-endpoints to keep it, or `minik8s down --purge` "
        "to start over with another etcd")


def record(cfg: ClusterConfig, external: list[str], tls: EtcdTLS | None = None) -> None:
    _file(cfg).write_text("\n".join(external or [MANAGED]) + "\n")
    tls_file = cfg.state_dir / ETCD_TLS_FILE
    if tls is None:
        tls_file.unlink(missing_ok=True)
    else:
        tls_file.write_text(json.dumps({"cafile": tls.ca_file, "certfile": tls.cert_file, "keyfile": tls.key_file}))


def default_tls(cfg: ClusterConfig) -> EtcdTLS:
    """The cluster CA and the etcd client certificate it issued the API server (made now if missing)."""
    from minik8s.cluster.bootstrap import pki  # bootstrap imports this module (through local)

    certs = pki(cfg)
    return EtcdTLS(str(certs.ca_cert), str(certs.etcd_client_cert), str(certs.etcd_client_key))


def recorded_tls(cfg: ClusterConfig) -> EtcdTLS | None:
    """The TLS files recorded with https:// endpoints; None for the managed etcd or http:// endpoints."""
    if not any(is_tls(e) for e in recorded(cfg) or []):
        return None
    try:
        doc = json.loads((cfg.state_dir / ETCD_TLS_FILE).read_text())
    except FileNotFoundError:
        return default_tls(cfg)
    return EtcdTLS(doc.get("cafile"), doc.get("certfile"), doc.get("keyfile"))


def choose_tls(cfg: ClusterConfig, external: list[str], given: EtcdTLS | None) -> EtcdTLS | None:
    """The TLS files for ``external``: each given flag, else what is recorded, else the cluster's own."""
    if not any(is_tls(e) for e in external):
        if given is not None and given != EtcdTLS():
            raise BadRequest("--etcd-cafile/--etcd-certfile/--etcd-keyfile are for https:// --etcd-endpoints")
        return None
    given = given or EtcdTLS()
    base = recorded_tls(cfg) or default_tls(cfg)
    if given.cert_file is not None:  # a certificate and key are given together (EtcdTLS checks)
        base = EtcdTLS(base.ca_file, given.cert_file, given.key_file)
    return EtcdTLS(given.ca_file or base.ca_file, base.cert_file, base.key_file)


def _opener(endpoint: str, tls: EtcdTLS | None) -> urllib.request.OpenerDirector:
    if not is_tls(endpoint):
        return _HTTP
    return urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                       urllib.request.HTTPSHandler(context=(tls or EtcdTLS()).ssl_context()))


def member_health(endpoint: str, tls: EtcdTLS | None = None) -> MemberHealth:
    """Is the member at ``endpoint`` up with a leader, and its role and version (etcd's HTTP API)."""
    base = endpoint.rstrip("/")
    try:
        http = _opener(endpoint, tls)
        try:
            with http.open(base + "/health", timeout=PROBE_TIMEOUT_S) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:  # 503, with the same JSON, while the member has no leader
            body = exc.read()
        healthy = json.loads(body).get("health") == "true"
        req = urllib.request.Request(base + "/v3/maintenance/status", data=b"{}", method="POST")
        with http.open(req, timeout=PROBE_TIMEOUT_S) as resp:
            st = json.loads(resp.read())
    except (OSError, ValueError) as exc:  # refused, timed out, HTTP error, not JSON
        reason = getattr(exc, "reason", None) or exc
        return MemberHealth(endpoint, False, f"{endpoint} not answering: {reason}")
    member = st.get("header", {}).get("member_id")
    role = "leader" if member and st.get("leader") == member else "follower"
    if not healthy:
        role = "no leader"
    return MemberHealth(endpoint, healthy, f"{endpoint} {role}, etcd {st.get('version', '?')}")


def check_reachable(external: list[str], tls: EtcdTLS | None = None) -> None:
    """Raise Unavailable (naming each endpoint's problem) unless some member is up with a leader."""
    members = [member_health(e, tls) for e in external]
    if not any(m.healthy for m in members):
        hint = ""
        if tls is not None and tls.cert_file:  # the usual first-time problem: the members do not trust us yet
            hint = (f" (members must take the client certificate {tls.cert_file}: start them with "
                    f"--client-cert-auth --trusted-ca-file {tls.ca_file} or the CA that issued it)")
        raise Unavailable("no etcd endpoint is healthy: " + "; ".join(m.detail for m in members) + hint)
