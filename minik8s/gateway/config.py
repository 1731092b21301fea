"""Render nginx.conf for the gateway from DNS objects and Services: a pure, deterministic function.

Upstreams are the Services' ClusterIP:port, not their Endpoints: the per-node proxy already
balances over ready endpoints and follows them as pods come and go, so nginx's config (and a
reload) changes only when routes or Services change, not on every pod churn, and a request
through the gateway takes exactly the path a request to ClusterIP:port would.

Path semantics are element-wise prefixes (Kubernetes Ingress `Prefix`): `/api` matches `/api`,
`/api/` and `/api/x`, not `/apix`. Each path becomes two nginx locations, `= /api` and `/api/`;
nginx picks the longest prefix. Stripping uses a proxy_pass URI of `/`, which nginx substitutes
for the matched location text; `keepPrefix` passes the request URI unchanged.

Anything that could break the file is left out and reported instead: host names must be
lowercase RFC 1123 names, paths a safe character set; the two cannot inject nginx syntax.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: what a host name must look like to become a server_name (lowercase RFC 1123, no wildcards)
HOST_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$")
MAX_HOST = 253
#: URL path characters allowed in a location (RFC 3986 pchar and "/"); no quotes, braces, spaces, backslashes
PATH_RE = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")
MAX_PATH = 1024
UPSTREAM_KEEPALIVE = 64


@dataclass(frozen=True)
class Backend:
    """What the renderer needs to know about one Service."""

    cluster_ip: str | None  # None: headless, or not allocated yet
    ports: tuple[int, ...]  # TCP service ports
    ready_endpoints: int  # ready addresses in its Endpoints


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
    path: str  # normalised: no trailing slash except "/"
    upstream: str | None  # upstream block name, None: answer 503
    strip: bool
    message: str  # the 503 body when upstream is None


@dataclass
class Plan:
    """The routes per host, the upstreams they use, and each DNS object's `status.paths`."""

    servers: dict[str, list[Route]] = field(default_factory=dict)
    upstreams: dict[str, str] = field(default_factory=dict)  # name -> "ip:port"
    statuses: dict[tuple[str, str], list[PathStatus]] = field(default_factory=dict)


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


def normalize_path(path: str) -> str:
    return path.rstrip("/") or "/"


def upstream_name(namespace: str, service: str, port: int) -> str:
    return f"svc_{namespace}_{service}_{port}".replace("-", "_").replace(".", "_")


def _meta(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name") or ""), str(meta.get("creationTimestamp")
                                                                                      or "")


def _target(namespace: str, route: Mapping[str, Any], backends: Mapping[tuple[str, str], Backend],
            plan: Plan) -> tuple[str | None, PathStatus]:
    path, service, port = str(route.get("path")), str(route.get("service")), route.get("port")
    backend = backends.get((namespace, service))
    ref = f"{namespace}/{service}"
    if backend is None:
        return None, PathStatus(path, service, False, f"service {ref} does not exist")
    if not backend.cluster_ip:
        return None, PathStatus(path, service, False, f"service {ref} has no cluster IP (headless?)")
    if not isinstance(port, int) or port not in backend.ports:
        return None, PathStatus(path, service, False, f"service {ref} has no TCP port {port}")
    if backend.ready_endpoints <= 0:
        return None, PathStatus(path, service, False, f"service {ref} has no ready endpoints")
    name = upstream_name(namespace, service, port)
    plan.upstreams[name] = f"{backend.cluster_ip}:{port}"
    return name, PathStatus(path, service, True, None)


def plan(dnses: Iterable[Mapping[str, Any]], backends: Mapping[tuple[str, str], Backend]) -> Plan:
    """Routes from wire-form DNS objects. The oldest object wins a (host, path) claimed twice."""
    out = Plan()
    claimed: dict[tuple[str, str], str] = {}
    ordered = sorted(dnses, key=lambda o: (_meta(o)[2], _meta(o)[0], _meta(o)[1]))
    for obj in ordered:
        namespace, name, _ = _meta(obj)
        spec = obj.get("spec") or {}
        host = str(spec.get("host") or "").lower().rstrip(".")
        statuses: list[PathStatus] = []
        out.statuses[(namespace, name)] = statuses
        host_ok = len(host) <= MAX_HOST and bool(HOST_RE.match(host))
        for route in spec.get("paths") or []:
            raw, service = str(route.get("path")), str(route.get("service"))
            if not host_ok:
                statuses.append(PathStatus(raw, service, False, f'host "{host}" is not a valid DNS name'))
                continue
            if len(raw) > MAX_PATH or not PATH_RE.match(raw) or "//" in raw:
                statuses.append(PathStatus(raw, service, False, f'path "{raw}" has characters the gateway '
                                                                "does not route (or an empty segment)"))
                continue
            path = normalize_path(raw)
            owner = claimed.get((host, path))
            if owner is not None:
                statuses.append(PathStatus(raw, service, False, f"{host}{path} is already routed by DNS {owner}"))
                continue
            claimed[(host, path)] = f"{namespace}/{name}"
            upstream, status = _target(namespace, route, backends, out)
            statuses.append(status)
            out.servers.setdefault(host, []).append(
                Route(path, upstream, not route.get("keepPrefix"), status.message or ""))
    for routes in out.servers.values():
        routes.sort(key=lambda r: r.path)
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


def _server(host: str, routes: list[Route], listen: str) -> list[str]:
    lines = ["    server {", f"        listen {listen};", f"        server_name {host};"]
    has_root = False
    for route in routes:
        if route.path == "/":
            has_root = True
            _location(route, '"/"', lines)
            continue
        _location(route, f"= {_quote(route.path)}", lines)
        _location(route, _quote(route.path + "/"), lines)
    if not has_root:
        lines += ["        location / {", f"            return 404 {_body('no route for this path')};",
                  "        }"]
    lines += ["    }", ""]
    return lines


def render_plan(p: Plan, options: RenderOptions | None = None) -> str:
    o = options or RenderOptions()
    lines = ["# Generated by the minik8s gateway controller from DNS objects and Services; do not edit.",
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
    lines += ["    server {", f"        listen {o.listen} default_server;", "        server_name _;",
              f"        return 404 {_body('no gateway route for this host')};", "    }", ""]
    for host in sorted(p.servers):
        lines += _server(host, p.servers[host], o.listen)
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dnses: Iterable[Mapping[str, Any]], backends: Mapping[tuple[str, str], Backend],
           options: RenderOptions | None = None) -> str:
    """nginx.conf for these DNS objects; the same input gives a byte-identical file."""
    return render_plan(plan(dnses, backends), options)


def version_of(text: str) -> str:
    """A config's version: its content hash, so every controller replica and restart agrees."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def backend_of(service: Mapping[str, Any], endpoints: Mapping[str, Any] | None) -> Backend:
    """A Backend from wire-form Service and Endpoints objects."""
    spec = service.get("spec") or {}
    ip = spec.get("clusterIP")
    ports = tuple(sorted(int(pt["port"]) for pt in spec.get("ports") or [] if (pt.get("protocol") or "TCP") == "TCP"))
    ready = sum(len(s.get("addresses") or []) for s in (endpoints or {}).get("subsets") or [])
    return Backend(ip if ip and ip != "None" else None, ports, ready)
