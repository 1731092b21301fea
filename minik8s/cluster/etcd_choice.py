"""Which etcd a cluster keeps its state in: the managed one, or an existing etcd cluster.

`minik8s up` runs a managed etcd (data under ``<state_dir>/etcd``) unless it is given
``--etcd-endpoints``; then it starts none and the API server uses those endpoints. The choice is
recorded in ``<state_dir>/etcd-endpoints`` at the first ``up``:

- a later ``up`` without the flag keeps using what was recorded (the cluster's objects are there);
- ``up`` with endpoints other than the recorded ones is refused, because the objects would stay
  behind in the other etcd; ``down --purge`` forgets the choice (and deletes the managed etcd's data);
- ``down`` never stops an external etcd, and ``--purge`` leaves its keys alone.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import NamedTuple

from minik8s.cluster.config import ClusterConfig
from minik8s.errors import BadRequest, Unavailable

ETCD_ENDPOINTS_FILE = "etcd-endpoints"
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


def record(cfg: ClusterConfig, external: list[str]) -> None:
    _file(cfg).write_text("\n".join(external or [MANAGED]) + "\n")


def member_health(endpoint: str) -> MemberHealth:
    """Is the member at ``endpoint`` up with a leader, and its role and version (etcd's HTTP API)."""
    base = endpoint.rstrip("/")
    try:
        try:
            with _HTTP.open(base + "/health", timeout=PROBE_TIMEOUT_S) as resp:
                body = resp.read()
        except urllib.error.HTTPError as exc:  # 503, with the same JSON, while the member has no leader
            body = exc.read()
        healthy = json.loads(body).get("health") == "true"
        req = urllib.request.Request(base + "/v3/maintenance/status", data=b"{}", method="POST")
        with _HTTP.open(req, timeout=PROBE_TIMEOUT_S) as resp:
            st = json.loads(resp.read())
    except (OSError, ValueError) as exc:  # refused, timed out, HTTP error, not JSON
        reason = getattr(exc, "reason", None) or exc
        return MemberHealth(endpoint, False, f"{endpoint} not answering: {reason}")
    member = st.get("header", {}).get("member_id")
    role = "leader" if member and st.get("leader") == member else "follower"
    if not healthy:
        role = "no leader"
    return MemberHealth(endpoint, healthy, f"{endpoint} {role}, etcd {st.get('version', '?')}")


def check_reachable(external: list[str]) -> None:
    """Raise Unavailable (naming each endpoint's problem) unless some member is up with a leader."""
    members = [member_health(e) for e in external]
    if not any(m.healthy for m in members):
        raise Unavailable("no etcd endpoint is healthy: " + "; ".join(m.detail for m in members))
