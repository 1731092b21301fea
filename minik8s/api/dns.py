"""The `DNS` kind (minik8s.io/v1): a host name served by cluster DNS and the gateway's path routes.

`spec.host` resolves (cluster DNS, `minik8s.dns`) to the ClusterIP of the gateway Service
`kube-system/gateway`; `spec.paths` say which Service and port each URL path prefix goes to.
The gateway controller reports per-path readiness in `status.paths`. That no two objects claim
the same host + path is a cross-object rule, checked by the API server (`minik8s.apiserver.dnshosts`).
"""

from __future__ import annotations

from typing import Any

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api.validation import (
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    MAX_LABEL,
    MAX_PORT,
    MAX_SUBDOMAIN,
    Causes,
    check_meta,
)

GROUP = "minik8s.io"
VERSION = "v1"


class DNSPath(t.Model):
    path: str
    service: str
    port: int
    #: False (default): the gateway strips the matched prefix before forwarding.
    keepPrefix: bool | None = None


class DNSSpec(t.Model):
    host: str
    paths: list[DNSPath] | None = None


class DNSPathStatus(t.Model):
    path: str
    service: str | None = None
    ready: bool = False
    message: str | None = None


class DNSStatus(t.Model):
    paths: list[DNSPathStatus] | None = None


class DNS(t.TypedObject):
    spec: DNSSpec
    status: DNSStatus | None = None


def normalize_host(host: str) -> str:
    """Host names compare case-insensitively and without a trailing dot."""
    return host.lower().rstrip(".")


def validate_dns(obj: DNS) -> Causes:
    causes: Causes = []
    check_meta(obj.metadata, causes)
    host = obj.spec.host
    if (not host or len(host) > MAX_SUBDOMAIN or not DNS1123_SUBDOMAIN.match(host)
            or any(len(part) > MAX_LABEL for part in host.split("."))):
        causes.append(("spec.host", f'Invalid value: "{host}": must be a lowercase DNS name (RFC 1123 labels '
                                    "separated by dots, e.g. \"shop.example.com\")"))
    seen: set[str] = set()
    for i, route in enumerate(obj.spec.paths or []):
        path = f"spec.paths[{i}]"
        if not route.path.startswith("/"):
            causes.append((f"{path}.path", f'Invalid value: "{route.path}": must start with "/"'))
        if route.path in seen:
            causes.append((f"{path}.path", f'Duplicate value: "{route.path}"'))
        seen.add(route.path)
        if len(route.service) > MAX_LABEL or not DNS1123_LABEL.match(route.service):
            causes.append((f"{path}.service", f'Invalid value: "{route.service}": must be a Service name '
                                              "(a lowercase RFC 1123 label)"))
        if not 1 <= route.port <= MAX_PORT:
            causes.append((f"{path}.port", f"Invalid value: {route.port}: must be between 1 and {MAX_PORT}, "
                                           "inclusive"))
    return causes


def claims(obj: dict[str, Any]) -> set[tuple[str, str]]:
    """The (host, path) pairs a wire-form DNS object claims."""
    host = normalize_host(str((obj.get("spec") or {}).get("host") or ""))
    return {(host, str(r.get("path"))) for r in (obj.get("spec") or {}).get("paths") or []}


def _paths(obj: dict[str, Any]) -> str:
    paths = [str(r.get("path")) for r in (obj.get("spec") or {}).get("paths") or []]
    return ",".join(paths) or "<none>"


DNS_COLUMNS = [p.Column("NAME", p.name), p.Column("HOST", lambda o: p._dig(o, "spec", "host")),
               p.Column("PATHS", _paths), p.Column("AGE", p.age)]
