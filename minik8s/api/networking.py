"""networking.k8s.io/v1 Ingress and IngressClass, served by the minik8s gateway (nginx in `kube-system`).

An Ingress is ours when its class (`spec.ingressClassName`, else the legacy `kubernetes.io/ingress.class`
annotation, else the default IngressClass) names an IngressClass whose `spec.controller` is
`minik8s.io/gateway`; Ingresses of other classes are left alone, as every Kubernetes ingress
controller does. What minik8s does not do is refused at admission with the field named:
- `spec.tls`: the gateway serves plain HTTP only (no TLS termination);
- `backend.resource`: only Service backends are routed.
`pathType: ImplementationSpecific` is served as `Prefix` (element-wise prefix, like ingress-nginx
without regex annotations). Routes are not rewritten: the backend sees the request path as sent.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any, Literal

from minik8s.api import printers as p
from minik8s.api import types as t
from minik8s.api.validation import (
    DNS1123_SUBDOMAIN,
    MAX_LABEL,
    MAX_PORT,
    MAX_SUBDOMAIN,
    Causes,
    check_meta,
)

GROUP = "networking.k8s.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"
CONTROLLER = "minik8s.io/gateway"
DEFAULT_CLASS = "minik8s"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"
LEGACY_CLASS_ANNOTATION = "kubernetes.io/ingress.class"
PATH_TYPES = ("Exact", "ImplementationSpecific", "Prefix")
MAX_CONTROLLER = 250
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
MAX_PORT_NAME = 15
#: path fragments Kubernetes refuses in Exact and Prefix paths (they would bypass prefix matching)
BAD_PATH_PARTS = ("//", "/./", "/../", "%2f", "%2F")
BAD_PATH_ENDS = ("/..", "/.")

SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
                 "and must start and end with an alphanumeric character (e.g. 'example.com')")
WILDCARD_MSG = ("a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which "
                "must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric "
                "character (e.g. '*.example.com')")


# --- models ------------------------------------------------------------------------------------

class ServiceBackendPort(t.Model):
    name: str | None = None
    number: int | None = None


class IngressServiceBackend(t.Model):
    name: str
    port: ServiceBackendPort


class TypedLocalObjectReference(t.Model):
    apiGroup: str | None = None
    kind: str
    name: str


class IngressBackend(t.Model):
    service: IngressServiceBackend | None = None
    resource: TypedLocalObjectReference | None = None


class HTTPIngressPath(t.Model):
    path: str | None = None
    pathType: str | None = None  # required; a plain str so a bad value gets Kubernetes' "Unsupported value"
    backend: IngressBackend


class HTTPIngressRuleValue(t.Model):
    paths: list[HTTPIngressPath] | None = None


class IngressRule(t.Model):
    host: str | None = None
    http: HTTPIngressRuleValue | None = None


class IngressTLS(t.Model):
    hosts: list[str] | None = None
    secretName: str | None = None


class IngressSpec(t.Model):
    ingressClassName: str | None = None
    defaultBackend: IngressBackend | None = None
    rules: list[IngressRule] | None = None
    tls: list[IngressTLS] | None = None


class IngressPortStatus(t.Model):
    port: int
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    error: str | None = None


class IngressLoadBalancerIngress(t.Model):
    ip: str | None = None
    hostname: str | None = None
    ports: list[IngressPortStatus] | None = None


class IngressLoadBalancerStatus(t.Model):
    ingress: list[IngressLoadBalancerIngress] | None = None


class IngressStatus(t.Model):
    loadBalancer: IngressLoadBalancerStatus | None = None


class Ingress(t.TypedObject):
    spec: IngressSpec
    status: IngressStatus | None = None


class IngressClassParametersReference(t.Model):
    apiGroup: str | None = None
    kind: str
    name: str
    scope: Literal["Cluster", "Namespace"] | None = None
    namespace: str | None = None


class IngressClassSpec(t.Model):
    controller: str | None = None
    parameters: IngressClassParametersReference | None = None


class IngressClass(t.TypedObject):
    spec: IngressClassSpec


# --- validation --------------------------------------------------------------------------------

def _check_host(host: str, path: str, causes: Causes) -> None:
    try:
        ipaddress.ip_address(host)
        causes.append((path, f'Invalid value: "{host}": must be a DNS name, not an IP address'))
        return
    except ValueError:
        pass
    if host.startswith("*."):
        rest = host[2:]
        if len(host) > MAX_SUBDOMAIN or not DNS1123_SUBDOMAIN.match(rest):
            causes.append((path, f'Invalid value: "{host}": {WILDCARD_MSG}'))
        return
    if len(host) > MAX_SUBDOMAIN or not DNS1123_SUBDOMAIN.match(host) \
            or any(len(label) > MAX_LABEL for label in host.split(".")):
        causes.append((path, f'Invalid value: "{host}": {SUBDOMAIN_MSG}'))


def _check_path(route: HTTPIngressPath, path: str, causes: Causes) -> None:
    if route.pathType is None:
        causes.append((f"{path}.pathType", "Required value: pathType must be specified"))
        return
    if route.pathType not in PATH_TYPES:
        supported = ", ".join(f'"{v}"' for v in PATH_TYPES)
        causes.append((f"{path}.pathType", f'Unsupported value: "{route.pathType}": supported values: {supported}'))
        return
    value = route.path or ""
    if route.pathType == "ImplementationSpecific" and not value:
        return  # served as "/"
    if not value.startswith("/"):
        causes.append((f"{path}.path", f'Invalid value: "{value}": must be an absolute path'))
        return
    if route.pathType in ("Exact", "Prefix"):
        for bad in BAD_PATH_PARTS:
            if bad in value:
                causes.append((f"{path}.path", f"Invalid value: \"{value}\": must not contain '{bad}'"))
        for bad in BAD_PATH_ENDS:
            if value.endswith(bad):
                causes.append((f"{path}.path", f"Invalid value: \"{value}\": cannot end with '{bad}'"))


def _check_backend(backend: IngressBackend, path: str, causes: Causes) -> None:
    if backend.resource is not None:
        causes.append((f"{path}.resource", "Unsupported value: resource backends are not supported by the "
                                           "minik8s gateway; use backend.service"))
        return
    if backend.service is None:
        causes.append((path, "Invalid value: one backend (service or resource) must be specified"))
        return
    svc = backend.service
    if not svc.name:
        causes.append((f"{path}.service.name", "Required value"))
    elif len(svc.name) > MAX_LABEL or not DNS1035_LABEL.match(svc.name):
        causes.append((f"{path}.service.name", f'Invalid value: "{svc.name}": a DNS-1035 label must consist of '
                                               "lower case alphanumeric characters or '-', start with an alphabetic "
                                               "character, and end with an alphanumeric character"))
    port = svc.port
    if port.name and port.number:
        causes.append((f"{path}.service.port", "Invalid value: cannot set both port name & port number"))
    elif port.name:
        if len(port.name) > MAX_PORT_NAME or not IANA_SVC_NAME.match(port.name) or "--" in port.name \
                or not re.search("[a-z]", port.name):
            causes.append((f"{path}.service.port.name", f'Invalid value: "{port.name}": must be an IANA_SVC_NAME '
                                                        "(at most 15 lowercase letters, digits and '-', with a "
                                                        "letter)"))
    elif port.number is not None and port.number != 0:
        if not 1 <= port.number <= MAX_PORT:
            causes.append((f"{path}.service.port.number", f"Invalid value: {port.number}: must be between 1 and "
                                                          f"{MAX_PORT}, inclusive"))
    else:
        causes.append((f"{path}.service.port", "Required value: port name or number is required"))


def validate_ingress(obj: Ingress) -> Causes:
    causes: Causes = []
    check_meta(obj.metadata, causes)
    spec = obj.spec
    annotations = obj.metadata.annotations or {}
    if spec.ingressClassName is not None:
        if len(spec.ingressClassName) > MAX_SUBDOMAIN or not DNS1123_SUBDOMAIN.match(spec.ingressClassName):
            causes.append(("spec.ingressClassName", f'Invalid value: "{spec.ingressClassName}": {SUBDOMAIN_MSG}'))
        if LEGACY_CLASS_ANNOTATION in annotations:
            causes.append((f"metadata.annotations.{LEGACY_CLASS_ANNOTATION}",
                           "Invalid value: can not be set when the class field is also set"))
    if spec.tls:
        causes.append(("spec.tls", "Unsupported value: the minik8s gateway serves plain HTTP only and does not "
                                   "terminate TLS; remove spec.tls"))
    if not spec.rules and spec.defaultBackend is None:
        causes.append(("spec", "Invalid value: either `defaultBackend` or `rules` must be specified"))
    if spec.defaultBackend is not None:
        _check_backend(spec.defaultBackend, "spec.defaultBackend", causes)
    for i, rule in enumerate(spec.rules or []):
        base = f"spec.rules[{i}]"
        if rule.host:
            _check_host(rule.host, f"{base}.host", causes)
        if rule.http is None:
            continue
        if not rule.http.paths:
            causes.append((f"{base}.http.paths", "Required value"))
        for j, route in enumerate(rule.http.paths or []):
            path = f"{base}.http.paths[{j}]"
            _check_path(route, path, causes)
            _check_backend(route.backend, f"{path}.backend", causes)
    return causes


def validate_ingress_class(obj: IngressClass) -> Causes:
    causes: Causes = []
    check_meta(obj.metadata, causes)
    controller = obj.spec.controller or ""
    if not controller:
        causes.append(("spec.controller", "Required value"))
    elif len(controller) > MAX_CONTROLLER:
        causes.append(("spec.controller", f"Too long: may not be more than {MAX_CONTROLLER} bytes"))
    elif "/" not in controller or not DNS1123_SUBDOMAIN.match(controller.split("/", 1)[0]):
        causes.append(("spec.controller", f'Invalid value: "{controller}": must be a domain-prefixed path '
                                          "(such as \"acme.io/foo\")"))
    if controller == CONTROLLER and obj.spec.parameters is not None:
        causes.append(("spec.parameters", f"Unsupported value: the {CONTROLLER} controller takes no parameters"))
    params = obj.spec.parameters
    if params is not None:
        if params.scope == "Namespace" and not params.namespace:
            causes.append(("spec.parameters.namespace", "Required value: `parameters.scope` is set to 'Namespace'"))
        if params.scope != "Namespace" and params.namespace:
            causes.append(("spec.parameters.namespace", "Forbidden: `parameters.scope` is set to 'Cluster'"))
    return causes


# --- class resolution --------------------------------------------------------------------------

def is_default_class(cls: dict[str, Any]) -> bool:
    return ((cls.get("metadata") or {}).get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION) == "true"


def default_class(classes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The default IngressClass; with several, the newest (as Kubernetes' admission plug-in does since 1.30)."""
    defaults = [c for c in classes if is_default_class(c)]
    if not defaults:
        return None
    return max(defaults, key=lambda c: (str((c.get("metadata") or {}).get("creationTimestamp") or ""),
                                        str((c.get("metadata") or {}).get("name") or "")))


def class_name_of(ingress: dict[str, Any]) -> str | None:
    spec = ingress.get("spec") or {}
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    return spec.get("ingressClassName") or annotations.get(LEGACY_CLASS_ANNOTATION)


def served_by(ingress: dict[str, Any], classes: list[dict[str, Any]], controller: str = CONTROLLER) -> bool:
    """Whether `controller` serves this wire-form Ingress, given every IngressClass (wire form)."""
    name = class_name_of(ingress)
    if name is None:
        chosen = default_class(classes)
    else:
        chosen = next((c for c in classes if (c.get("metadata") or {}).get("name") == name), None)
    return chosen is not None and (chosen.get("spec") or {}).get("controller") == controller


def default_ingress_class(ingress: dict[str, Any], list_classes: Callable[[], list[dict[str, Any]]]) -> None:
    """Admission (Kubernetes' DefaultIngressClass plug-in): a new Ingress without a class gets the default."""
    if class_name_of(ingress) is not None:
        return
    chosen = default_class(list_classes())
    if chosen is not None:
        ingress.setdefault("spec", {})["ingressClassName"] = chosen["metadata"]["name"]


def default_class_object() -> dict[str, Any]:
    """The IngressClass the cluster starts with: the gateway, marked default."""
    return {"apiVersion": API_VERSION, "kind": "IngressClass",
            "metadata": {"name": DEFAULT_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "spec": {"controller": CONTROLLER}}


# --- printer columns ---------------------------------------------------------------------------

def _hosts(obj: dict[str, Any]) -> str:
    hosts = [str(r.get("host") or "*") for r in (obj.get("spec") or {}).get("rules") or []]
    return ",".join(dict.fromkeys(hosts)) or "*"


def _address(obj: dict[str, Any]) -> str:
    lb = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return ",".join(str(i.get("ip") or i.get("hostname") or "") for i in lb)


def _ports(obj: dict[str, Any]) -> str:
    return "80, 443" if (obj.get("spec") or {}).get("tls") else "80"


def _class(obj: dict[str, Any]) -> str:
    return class_name_of(obj) or "<none>"


def _parameters(obj: dict[str, Any]) -> str:
    params = (obj.get("spec") or {}).get("parameters")
    if not params:
        return "<none>"
    group = f".{params['apiGroup']}" if params.get("apiGroup") else ""
    return f"{params.get('kind')}{group}/{params.get('name')}"


INGRESS_COLUMNS = [p.Column("NAME", p.name), p.Column("CLASS", _class), p.Column("HOSTS", _hosts),
                   p.Column("ADDRESS", _address), p.Column("PORTS", _ports), p.Column("AGE", p.age)]
INGRESS_CLASS_COLUMNS = [p.Column("NAME", p.name), p.Column("CONTROLLER", lambda o: p._dig(o, "spec", "controller")),
                         p.Column("PARAMETERS", _parameters), p.Column("AGE", p.age)]
