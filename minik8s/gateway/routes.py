"""The gateway's routing table: host + path claims from DNS objects and Ingresses, one owner each.

Both kinds become `Claim`s keyed by (host, path, exact). A key claimed twice is never merged:
the oldest claim (creationTimestamp, then kind, namespace, name, position) wins, as ingress-nginx
picks among duplicates, and every other claim on it is a `Lost` naming the winner, which the
controller reports (DNS `status.paths`, Warning events). An Ingress `defaultBackend` claims `/`
(Prefix) on its hosts, or on the catch-all server when it has no rules, only after every explicit
path has been placed: an explicit `/` of any age takes precedence over a default backend.

Exact and Prefix claims on one path are distinct keys (Kubernetes lets both exist; Exact wins the
exact URL, the renderer takes care of that), so they do not conflict.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from minik8s.api.networking import BAD_PATH_ENDS

#: a host the renderer accepts: a lowercase RFC 1123 name, or `*.` and one (Ingress wildcards)
HOST_RE = re.compile(r"^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
MAX_HOST = 253
#: URL path characters allowed in a location (RFC 3986 pchar and "/"); no quotes, braces, spaces, backslashes
PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")
MAX_PATH = 1024
ANY_HOST = ""  # the catch-all server: Ingress rules without a host, rule-less default backends


@dataclass(frozen=True)
class Claim:
    kind: str  # "DNS" or "Ingress"
    namespace: str
    name: str
    created: str
    index: int  # its position in the owner (DNS path index; Ingress rule/path ordinal), for status order
    host: str  # normalised; ANY_HOST for the catch-all server
    path: str  # as written
    exact: bool
    service: str
    port: int | str  # a number, or a Service port name (Ingress)
    strip: bool  # strip the matched prefix before forwarding (DNS default)
    default: bool = False  # from an Ingress defaultBackend

    @property
    def owner(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def key(self) -> tuple[str, str, bool]:
        return self.host, self.path if self.exact else normalize_path(self.path), self.exact

    def where(self) -> str:
        kind = "Exact" if self.exact else "Prefix"
        return f"host \"{self.host or '*'}\" path \"{self.path}\" ({kind})"


@dataclass(frozen=True)
class Lost:
    claim: Claim
    winner: Claim | None  # None: refused by the table itself (see `reason`)
    reason: str


def normalize_path(path: str) -> str:
    return path.rstrip("/") or "/"


def normalize_host(host: str) -> str:
    return host.lower().rstrip(".")


def _meta(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""),
            str(meta.get("creationTimestamp") or ""))


def dns_claims(obj: Mapping[str, Any]) -> list[Claim]:
    namespace, name, created = _meta(obj)
    spec = obj.get("spec") or {}
    host = normalize_host(str(spec.get("host") or ""))
    return [Claim("DNS", namespace, name, created, i, host, str(r.get("path")), False, str(r.get("service")),
                  int(r.get("port") or 0), not r.get("keepPrefix"))
            for i, r in enumerate(spec.get("paths") or [])]


def _service_target(backend: Mapping[str, Any]) -> tuple[str, int | str] | None:
    svc = backend.get("service")
    if not svc:
        return None
    port = svc.get("port") or {}
    return str(svc.get("name")), (str(port["name"]) if port.get("name") else int(port.get("number") or 0))


def ingress_claims(obj: Mapping[str, Any]) -> list[Claim]:
    """Every path of a wire-form Ingress, then its defaultBackend's `/` claims. Paths keep the URI (no strip)."""
    namespace, name, created = _meta(obj)
    spec = obj.get("spec") or {}
    out: list[Claim] = []
    hosts: list[str] = []
    for rule in spec.get("rules") or []:
        host = normalize_host(str(rule.get("host") or ""))
        hosts.append(host)
        for route in (rule.get("http") or {}).get("paths") or []:
            target = _service_target(route.get("backend") or {})
            if target is None:
                continue  # a resource backend: refused at admission
            exact = route.get("pathType") == "Exact"
            out.append(Claim("Ingress", namespace, name, created, len(out), host, str(route.get("path") or "/"),
                             exact, target[0], target[1], False))
    default = _service_target(spec.get("defaultBackend") or {})
    if default is not None:
        for host in dict.fromkeys(hosts if spec.get("rules") else [ANY_HOST]):
            out.append(Claim("Ingress", namespace, name, created, len(out), host, "/", False, default[0],
                             default[1], False, default=True))
    return out


def _unroutable(claim: Claim) -> str | None:
    """Why the renderer cannot write this claim safely, or None."""
    if (claim.host != ANY_HOST or claim.kind == "DNS") and (len(claim.host) > MAX_HOST or not HOST_RE.match(claim.host)
                                   or (claim.kind == "DNS" and claim.host.startswith("*."))):
        return f'host "{claim.host}" is not a valid DNS name'
    path = claim.path
    if len(path) > MAX_PATH or not PATH_RE.match(path) or "//" in path or \
            (claim.kind == "Ingress" and any(path.endswith(e) for e in BAD_PATH_ENDS)):
        return f'path "{path}" has characters the gateway does not route (or an empty segment)'
    return None


def _order(claim: Claim) -> tuple[bool, str, str, str, str, int]:
    return claim.default, claim.created, claim.kind, claim.namespace, claim.name, claim.index


def resolve(claims: Iterable[Claim]) -> tuple[list[Claim], list[Lost]]:
    """(winners in table order, losers). Deterministic whatever the input order."""
    won: dict[tuple[str, str, bool], Claim] = {}
    lost: list[Lost] = []
    for claim in sorted(claims, key=_order):
        why = _unroutable(claim)
        if why is not None:
            lost.append(Lost(claim, None, why))
            continue
        holder = won.get(claim.key)
        if holder is None:
            won[claim.key] = claim
        elif claim.default and (holder.kind, holder.namespace, holder.name) == (claim.kind, claim.namespace,
                                                                                claim.name):
            continue  # the Ingress routes "/" itself: its default backend is not needed there
        elif claim.default and not holder.default:
            continue  # an explicit "/" takes precedence over default backends, silently (not a duplicate)
        else:
            lost.append(Lost(claim, holder, f"{claim.where()} is already routed by {holder.owner}"))
    return list(won.values()), lost


def all_claims(dnses: Iterable[Mapping[str, Any]], ingresses: Iterable[Mapping[str, Any]]) -> list[Claim]:
    out = [c for d in dnses for c in dns_claims(d)]
    out += [c for i in ingresses for c in ingress_claims(i)]
    return out
