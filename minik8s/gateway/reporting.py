"""What the gateway tells users about their routes: Ingress status, and conflict events said once.

An Ingress shows the gateway Service's ClusterIP in `status.loadBalancer.ingress` while at least
one of its routes is in the table (even one answering 503 for a missing backend: the address is
where the route lives, as with ingress-nginx); an Ingress all of whose routes lost to older claims
gets no address. Conflicts become Warning events `HostPathConflict` naming the winner, recorded
when they first appear (not on every resync), for the DNS object or Ingress that lost.
"""

from __future__ import annotations

import threading
from typing import Any

from minik8s.gateway.config import IngressReport, Plan
from minik8s.gateway.manifests import HTTP_PORT

CONFLICT_REASON = "HostPathConflict"


def ingress_status(report: IngressReport, gateway_ip: str | None) -> dict[str, Any]:
    """The `status.loadBalancer` an Ingress should have."""
    if report.served <= 0 or not gateway_ip:
        return {}
    return {"ingress": [{"ip": gateway_ip, "ports": [{"port": HTTP_PORT, "protocol": "TCP"}]}]}


def lb_ips(obj: dict[str, Any]) -> list[str]:
    return [str(i.get("ip")) for i in ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []]


def dns_losses(plan: Plan, namespace: str, name: str) -> list[str]:
    """The conflicts a DNS object lost (to another owner; unroutable input is in its status only)."""
    return [loss.reason for loss in plan.lost
            if loss.winner is not None and loss.claim.kind == "DNS"
            and (loss.claim.namespace, loss.claim.name) == (namespace, name)]


class ConflictLog:
    """The conflict messages already reported per object, so each is recorded once while it lasts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._said: dict[str, frozenset[str]] = {}

    def new_messages(self, owner: str, messages: list[str]) -> list[str]:
        current = frozenset(messages)
        with self._lock:
            before = self._said.get(owner, frozenset())
            if current:
                self._said[owner] = current
            else:
                self._said.pop(owner, None)
        return [m for m in messages if m not in before]

    def forget(self, owner: str) -> None:
        with self._lock:
            self._said.pop(owner, None)
