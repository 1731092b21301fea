"""Render nginx.conf for the gateway from DNS objects, Ingresses and Services: a pure, deterministic function.

Upstreams are the Services' ClusterIP:port, not their Endpoints: the per-node proxy already
balances over ready endpoints and follows them as pods come and go, so nginx's config (and a
reload) changes only when routes or Services change, not on every pod churn, and a request
through the gateway takes exactly the path a request to ClusterIP:port would.

Which object owns which host + path is decided by the routing table (`routes`): DNS paths and
Ingress paths share it, the oldest claim wins, the others are reported, never merged.
Prefix paths are element-wise prefixes (Kubernetes Ingress `Prefix`): `/api` matches `/api`,
`/api/` and `/api/x`, not `/apix`. Each becomes two nginx locations, `= /api` and `/api/`;
nginx picks the longest prefix, and an `Exact` path (`= /api` alone) takes the exact URL from a
Prefix one on the same path. DNS paths strip the matched prefix (a proxy_pass URI of `/`, which
nginx substitutes for the matched location text) unless `keepPrefix`; Ingress paths never do.
Wildcard Ingress hosts (`*.example.com`) match exactly one label, as in Kubernetes.

Anything that could break the file is left out and reported instead: host names must be
lowercase RFC 1123 names, paths a safe character set; the two cannot inject nginx syntax.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from minik8s.gateway import routes as rt
from minik8s.gateway.routes import HOST_RE, MAX_HOST, MAX_PATH, PATH_RE, normalize_path

__all__ = ["HOST_RE", "MAX_HOST", "MAX_PATH", "PATH_RE", "normalize_path"]

UPSTREAM_KEEPALIVE = 64


@dataclass(frozen=True)
class Backend:
    """What the renderer needs to know about one Service."""

    cluster_ip: str | None  # None: headless, or not allocated yet
    ports: tuple[int, ...]  # TCP service ports
    ready_endpoints: int  # ready addresses in its Endpoints
    named_ports: tuple[tuple[str, int], ...] = ()  # (name, port) of the named TCP ports, for Ingress port.name


@dataclass(frozen=True)
class PathStatus:
    path: str
    service: str
    ready: bool
    message: str | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "service": self.service, "ready": self.ready}
        if self.message:
            out["message"] = self.message
        return out


@dataclass(frozen=True)
class Route:
    path: str  # normalised: no trailing slash except "/" (Exact paths as written)
    upstream: str | None  # upstream block name, None: answer 503
    strip: bool
    message: str  # the 503 body when upstream is None
    exact: bool = False


@dataclass
class IngressReport:
    """What the gateway made of one Ingress: routes it serves, routes it lost (with the message)."""

    served: int = 0
    lost: list[str] = field(default_factory=list)
    unready: list[str] = field(default_factory=list)  # served routes whose backend answers 503


@dataclass
class Plan:
    """The routes per host, the upstreams they use, each DNS object's `status.paths`, each Ingress's report."""

    servers: dict[str, list[Route]] = field(default_factory=dict)  # rt.ANY_HOST: the catch-all server
    upstreams: dict[str, str] = field(default_factory=dict)  # name -> "ip:port"
    statuses: dict[tuple[str, str], list[PathStatus]] = field(default_factory=dict)
    ingresses: dict[tuple[str, str], IngressReport] = field(default_factory=dict)
    lost: list[rt.Lost] = field(default_factory=list)


@dataclass(frozen=True)
class RenderOptions:
    """The process-level part of nginx.conf; the defaults are the gateway pod's."""

    listen: str = "80"
    pid: str = "/run/nginx.pid"
    error_log: str = "stderr warn"
    user: str | None = "www-data"
    worker_processes: str = "auto"
    worker_connections: int = 4096
    temp_dir: str | None = None  # None: nginx's compiled-in temp paths


def upstream_name(namespace: str, service: str, port: int) -> str:
    return f"svc_{namespace}_{service}_{port}".replace("-", "_").replace(".", "_")


def _target(claim: rt.Claim, backends: Mapping[tuple[str, str], Backend], plan: Plan) -> tuple[str | None, str | None]:
    """(upstream name, None) or (None, why the route answers 503)."""
    namespace, service, port = claim.namespace, claim.service, claim.port
    backend = backends.get((namespace, service))
    ref = f"{namespace}/{service}"
    if backend is None:
        return None, f"service {ref} does not exist"
    if not backend.cluster_ip:
        return None, f"service {ref} has no cluster IP (headless?)"
    if isinstance(port, str):
        number = dict(backend.named_ports).get(port)
        if number is None:
            return None, f'service {ref} has no TCP port named "{port}"'
        port = number
    if port not in backend.ports:
        return None, f"service {ref} has no TCP port {port}"
    if backend.ready_endpoints <= 0:
        return None, f"service {ref} has no ready endpoints"
    name = upstream_name(namespace, service, port)
    plan.upstreams[name] = f"{backend.cluster_ip}:{port}"
    return name, None


def plan(dnses: Iterable[Mapping[str, Any]], backends: Mapping[tuple[str, str], Backend],
         ingresses: Iterable[Mapping[str, Any]] = ()) -> Plan:
    """Routes from wire-form DNS objects and (already class-filtered) Ingresses; the oldest claim wins."""
    out = Plan()
    dnses, ingresses = list(dnses), list(ingresses)
    for obj in dnses:
        out.statuses[rt._meta(obj)[:2]] = []
    for obj in ingresses:
        out.ingresses[rt._meta(obj)[:2]] = IngressReport()
    won, lost = rt.resolve(rt.all_claims(dnses, ingresses))
    dns_paths: dict[tuple[str, str], list[tuple[int, PathStatus]]] = {}
    for claim in won:
        upstream, why = _target(claim, backends, out)
        path = claim.path if claim.exact else normalize_path(claim.path)
        out.servers.setdefault(claim.host, []).append(Route(path, upstream, claim.strip, why or "", claim.exact))
        if claim.kind == "DNS":
            dns_paths.setdefault((claim.namespace, claim.name), []).append(
                (claim.index, PathStatus(claim.path, claim.service, upstream is not None, why)))
        else:
            report = out.ingresses[(claim.namespace, claim.name)]
            report.served += 1
            if why:
                report.unready.append(f"{claim.where()}: {why}")
    for loss in lost:
        claim = loss.claim
        if claim.kind == "DNS":
            dns_paths.setdefault((claim.namespace, claim.name), []).append(
                (claim.index, PathStatus(claim.path, claim.service, False, loss.reason)))
        else:
            out.ingresses[(claim.namespace, claim.name)].lost.append(loss.reason)
    for key, items in dns_paths.items():
        out.statuses[key] = [status for _, status in sorted(items, key=lambda item: item[0])]
    out.lost = lost
    for host_routes in out.servers.values():
        host_routes.sort(key=lambda r: (r.path, r.exact))
    return out


def _quote(text: str) -> str:
    """An nginx double-quoted string; inputs are already restricted, this is belt and braces."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _body(text: str) -> str:
    """A `return` body: quoted, and without `$`, which nginx would read as a variable there."""
    return _quote(text.replace("$", ""))[:-1] + '\\n"'


def _location(route: Route, match: str, lines: list[str]) -> None:
    lines.append(f"        location {match} {{")
    if route.upstream is None:
        lines.append(f"            return 503 {_body(route.message)};")
    else:
        uri = "/" if route.strip else ""
        lines.append(f"            proxy_pass http://{route.upstream}{uri};")
    lines.append("        }")


def _server_name(host: str) -> str:
    if host.startswith("*."):  # one label, as Kubernetes matches wildcards (nginx's own `*.` matches any depth)
        return "~^[^.]+" + host[1:].replace(".", "\\.") + "$"
    return host


def _locations(routes: list[Route], lines: list[str], missing: str) -> None:
    exact = {r.path for r in routes if r.exact}
    has_root = False
    for route in routes:
        if route.exact:
            _location(route, f"= {_quote(route.path)}", lines)
            continue
        if route.path == "/":
            has_root = True
            _location(route, '"/"', lines)
            continue
        if route.path not in exact:  # an Exact path of the same name takes the exact URL
            _location(route, f"= {_quote(route.path)}", lines)
        _location(route, _quote(route.path + "/"), lines)
    if not has_root:
        lines += ["        location / {", f"            return 404 {_body(missing)};", "        }"]


def _server(host: str, routes: list[Route], listen: str) -> list[str]:
    lines = ["    server {", f"        listen {listen};", f"        server_name {_server_name(host)};"]
    _locations(routes, lines, "no route for this path")
    lines += ["    }", ""]
    return lines


def render_plan(p: Plan, options: RenderOptions | None = None) -> str:
    o = options or RenderOptions()
    lines = ["# Generated by the minik8s gateway controller from DNS objects, Ingresses and Services; do not edit.",
             *([f"user {o.user};"] if o.user else []),
             f"worker_processes {o.worker_processes};", f"pid {o.pid};", f"error_log {o.error_log};", "",
             "events {", f"    worker_connections {o.worker_connections};", "}", "", "http {",
             "    access_log off;", "    default_type text/plain;", "    server_tokens off;",
             "    server_names_hash_bucket_size 256;", "    server_names_hash_max_size 4096;",
             "    proxy_http_version 1.1;", '    proxy_set_header Connection "";',
             "    proxy_set_header Host $http_host;",
             "    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
             "    proxy_set_header X-Forwarded-Host $http_host;",
             "    proxy_set_header X-Forwarded-Proto $scheme;"]
    if o.temp_dir:
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            lines.append(f"    {kind}_temp_path {o.temp_dir}/{kind};")
    lines.append("")
    for name in sorted(p.upstreams):
        lines += [f"    upstream {name} {{", f"        server {p.upstreams[name]};",
                  f"        keepalive {UPSTREAM_KEEPALIVE};", "    }", ""]
    lines += ["    server {", f"        listen {o.listen} default_server;", "        server_name _;"]
    if rt.ANY_HOST in p.servers:  # Ingress rules without a host, default backends of rule-less Ingresses
        _locations(p.servers[rt.ANY_HOST], lines, "no gateway route for this host")
    else:
        lines.append(f"        return 404 {_body('no gateway route for this host')};")
    lines += ["    }", ""]
    for host in sorted(h for h in p.servers if h != rt.ANY_HOST):
        lines += _server(host, p.servers[host], o.listen)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dnses: Iterable[Mapping[str, Any]], backends: Mapping[tuple[str, str], Backend],
           options: RenderOptions | None = None, ingresses: Iterable[Mapping[str, Any]] = ()) -> str:
    """nginx.conf for these DNS objects and Ingresses; the same input gives a byte-identical file."""
    return render_plan(plan(dnses, backends, ingresses), options)


def version_of(text: str) -> str:
    """A config's version: its content hash, so every controller replica and restart agrees."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def backend_of(service: Mapping[str, Any], endpoints: Mapping[str, Any] | None) -> Backend:
    """A Backend from wire-form Service and Endpoints objects."""
    spec = service.get("spec") or {}
    ip = spec.get("clusterIP")
    tcp = [pt for pt in spec.get("ports") or [] if (pt.get("protocol") or "TCP") == "TCP"]
    ports = tuple(sorted(int(pt["port"]) for pt in tcp))
    named = tuple(sorted((str(pt["name"]), int(pt["port"])) for pt in tcp if pt.get("name")))
    ready = sum(len(s.get("addresses") or []) for s in (endpoints or {}).get("subsets") or [])
    return Backend(ip if ip and ip != "None" else None, ports, ready, named)
