"""The bootstrap RBAC policy: the roles and bindings every cluster starts with.

Modelled on kube-apiserver's `plugin/pkg/auth/authorizer/rbac/bootstrappolicy`: the user-facing
roles (cluster-admin, admin, edit, view), what every authenticated user may do (discovery, the
self reviews), and one role per control-plane component listing exactly the calls that component
makes (so a component's credential is worth no more than the component). The API server reconciles
them at startup like kube-apiserver: a missing object is created, and one still marked
`rbac.authorization.kubernetes.io/autoupdate: "true"` gets back any default rule or subject it lost
(additions a user made are kept). Aggregation is static: admin/edit/view list their rules outright.
"""

from __future__ import annotations

import logging
from typing import Any

from minik8s.api import rbac as api
from minik8s.auth import user as u

log = logging.getLogger("minik8s.auth.policy")

Obj = dict[str, Any]
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}
#: The group a join-token holder is in, as kubeadm's bootstrap tokens (`system:bootstrappers`).
BOOTSTRAPPERS = "system:bootstrappers"
BOOTSTRAP_USER = "system:bootstrap:join"
#: Where the gateway controller installs its data plane (minik8s.gateway.manifests.NAMESPACE).
SYSTEM_NAMESPACE = "kube-system"

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")
EVENT_WRITE = ("create", "patch", "update")


def rule(verbs: tuple[str, ...] | list[str], groups: tuple[str, ...], resources: tuple[str, ...],
         names: tuple[str, ...] = ()) -> Obj:
    out: Obj = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        out["resourceNames"] = list(names)
    return out


def url_rule(verbs: tuple[str, ...], urls: tuple[str, ...]) -> Obj:
    return {"verbs": list(verbs), "nonResourceURLs": list(urls)}


def _events() -> Obj:
    return rule(EVENT_WRITE, ("", "events.k8s.io"), ("events",))


# --- user-facing roles -----------------------------------------------------------------------

WORKLOADS = {  # group -> resources a namespace's users work with (the kinds table's namespaced kinds)
    "": ("pods", "pods/log", "pods/status", "services", "services/status", "endpoints", "configmaps",
         "serviceaccounts", "replicationcontrollers", "replicationcontrollers/scale",
         "replicationcontrollers/status", "events", "persistentvolumeclaims"),
    "apps": ("deployments", "deployments/scale", "deployments/status", "replicasets", "replicasets/scale",
             "replicasets/status", "daemonsets", "daemonsets/status", "statefulsets", "statefulsets/scale"),
    "autoscaling": ("horizontalpodautoscalers", "horizontalpodautoscalers/status"),
    "batch": ("jobs", "jobs/status", "cronjobs", "cronjobs/status"),
    "networking.k8s.io": ("ingresses", "ingresses/status", "networkpolicies"),
    "minik8s.io": ("dnses", "dnses/status"),
    "events.k8s.io": ("events",),
    "policy": ("poddisruptionbudgets", "poddisruptionbudgets/status"),
}


def _view_rules() -> list[Obj]:
    rules = [rule(READ, (group,), resources) for group, resources in WORKLOADS.items()]
    rules.append(rule(READ, ("",), ("namespaces", "namespaces/status")))
    rules.append(rule(READ, ("metrics.k8s.io",), ("pods",)))
    return rules


def _edit_rules() -> list[Obj]:
    rules = _view_rules()
    writable = {group: tuple(r for r in resources if not r.endswith("/status") and r != "pods/log")
                for group, resources in WORKLOADS.items()}
    rules += [rule(WRITE, (group,), resources) for group, resources in writable.items()]
    rules.append(rule((*READ, *WRITE), ("",), ("secrets",)))
    rules.append(rule(("create", "get"), ("",), ("pods/exec", "pods/attach", "pods/portforward")))
    rules.append(rule(("create",), ("",), ("pods/eviction", "serviceaccounts/token")))
    rules.append(rule(("impersonate",), ("",), ("serviceaccounts",)))
    return rules


def _admin_rules() -> list[Obj]:
    return _edit_rules() + [
        rule((*READ, *WRITE), (api.GROUP,), ("roles", "rolebindings")),
        rule(("create",), ("authorization.k8s.io",), ("localsubjectaccessreviews",)),
    ]


DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/openapi", "/openapi/*", "/healthz", "/livez",
                  "/readyz", "/version", "/version/")
PUBLIC_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/", "/cacerts")


def _cluster_roles() -> dict[str, list[Obj]]:
    node_reads = rule(READ, ("",), ("nodes",))
    return {
        "cluster-admin": [rule(("*",), ("*",), ("*",)), url_rule(("*",), ("*",))],
        "admin": _admin_rules(),
        "edit": _edit_rules(),
        "view": _view_rules(),
        "system:discovery": [url_rule(("get",), DISCOVERY_URLS)],
        "system:public-info-viewer": [url_rule(("get",), PUBLIC_URLS)],
        "system:basic-user": [
            rule(("create",), ("authorization.k8s.io",), ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
            rule(("create",), ("authentication.k8s.io",), ("selfsubjectreviews",)),
        ],
        "system:node-bootstrapper": [url_rule(("create",), ("/minik8s/join",))],
        # kube-proxy: Services and Endpoints to program, Nodes for its own address
        "system:node-proxier": [rule(READ, ("",), ("services", "endpoints")), node_reads, _events()],
        "system:kube-scheduler": [
            rule(READ, ("",), ("pods", "nodes", "namespaces")),
            rule(("create",), ("",), ("pods/binding", "bindings")),
            rule(("patch", "update"), ("",), ("pods/status",)),
            rule(("delete",), ("",), ("pods",)),  # preemption removes lower-priority victims
            rule(READ, ("policy",), ("poddisruptionbudgets",)),  # ... breaking as few budgets as it can
            _events(),
        ],
        "system:kube-controller-manager": _controller_manager_rules(),
        "system:minik8s-dns": [
            rule(READ, ("",), ("services", "endpoints")),
            rule(READ, ("networking.k8s.io",), ("ingresses", "ingressclasses")),
            rule(READ, ("minik8s.io",), ("dnses",)),
        ],
        "system:minik8s-gateway": [
            rule(READ, ("",), ("services", "endpoints")),
            rule(READ, ("networking.k8s.io",), ("ingresses", "ingressclasses")),
            rule(("create",), ("networking.k8s.io",), ("ingressclasses",)),
            rule(("patch", "update"), ("networking.k8s.io",), ("ingresses/status",)),
            rule(READ, ("minik8s.io",), ("dnses",)),
            rule(("patch", "update"), ("minik8s.io",), ("dnses/status",)),
            _events(),
        ],
        # the NetworkPolicy agent: it reads, and writes nothing but nftables tables on its node
        "system:minik8s-netpol": [
            rule(READ, ("",), ("pods", "namespaces", "services", "endpoints")),
            rule(READ, ("networking.k8s.io",), ("networkpolicies",)),
        ],
        # what a kubelet may do at most; bound to no one (the Node authorizer scopes each node to its own objects)
        "system:node": [
            rule((*READ, "create", "patch", "update"), ("",), ("nodes",)),
            rule(("patch", "update"), ("",), ("nodes/status", "pods/status")),
            rule((*READ, "create", "delete"), ("",), ("pods",)),
            rule(READ, ("",), ("services", "endpoints", "configmaps", "secrets", "persistentvolumeclaims",
                               "namespaces")),
            rule(("create",), ("",), ("serviceaccounts/token",)),
            rule((*READ, "create", "patch", "update", "delete"), ("coordination.k8s.io",), ("leases",)),
            _events(),
            url_rule(("update",), ("/minik8s/metrics/v1/nodes/*",)),
        ],
    }


def _controller_manager_rules() -> list[Obj]:
    """The controllers: read what they watch, write what they own (pods, workloads, endpoints...)."""
    watched_core = ("pods", "nodes", "namespaces", "services", "endpoints", "serviceaccounts", "events",
                    "replicationcontrollers")
    return [
        rule(READ, ("",), watched_core),
        rule(READ, ("apps",), ("deployments", "replicasets", "daemonsets", "statefulsets")),
        rule(READ, ("batch",), ("jobs", "cronjobs")),
        rule(READ, ("autoscaling",), ("horizontalpodautoscalers",)),
        rule(READ, ("policy",), ("poddisruptionbudgets",)),
        rule(("patch", "update"), ("policy",), ("poddisruptionbudgets/status",)),
        # the root CA publisher: kube-root-ca.crt in every namespace
        rule((*READ, "create", "update"), ("",), ("configmaps",)),
        rule(READ, ("coordination.k8s.io",), ("leases",)),
        rule(("get", "list"), ("metrics.k8s.io",), ("pods", "nodes")),
        rule(WRITE, ("",), ("pods", "endpoints")),
        rule(("create",), ("",), ("serviceaccounts",)),
        rule(("patch", "update"), ("",), ("nodes", "nodes/status", "pods/status", "replicationcontrollers/status")),
        rule(("delete",), ("coordination.k8s.io",), ("leases",)),
        rule(WRITE, ("apps",), ("replicasets",)),
        rule(("patch", "update", "delete"), ("apps",), ("deployments", "daemonsets")),
        rule(("patch", "update"), ("apps",), ("deployments/status", "replicasets/status", "daemonsets/status")),
        rule(("get", "patch", "update"), ("", "apps"),
             ("replicationcontrollers/scale", "deployments/scale", "replicasets/scale", "statefulsets/scale")),
        rule(("patch", "update", "delete"), ("",), ("replicationcontrollers",)),
        rule(WRITE, ("batch",), ("jobs",)),
        rule(("patch", "update"), ("batch",), ("jobs/status", "cronjobs/status")),
        rule(("delete",), ("batch",), ("cronjobs",)),
        rule(("patch", "update"), ("autoscaling",), ("horizontalpodautoscalers/status",)),
        _events(),
    ]


def _subject(kind: str, name: str, namespace: str | None = None) -> Obj:
    out: Obj = {"kind": kind, "name": name, "apiGroup": "" if kind == api.SERVICE_ACCOUNT else api.GROUP}
    if namespace:
        out["namespace"] = namespace
    return out


def _cluster_role_bindings() -> dict[str, tuple[str, list[Obj]]]:
    """name -> (ClusterRole, subjects)."""
    user, group = api.USER, api.GROUP_KIND
    return {
        "cluster-admin": ("cluster-admin", [_subject(group, u.SYSTEM_MASTERS)]),
        "system:discovery": ("system:discovery", [_subject(group, u.AUTHENTICATED)]),
        "system:basic-user": ("system:basic-user", [_subject(group, u.AUTHENTICATED)]),
        "system:public-info-viewer": ("system:public-info-viewer",
                                      [_subject(group, u.AUTHENTICATED), _subject(group, u.UNAUTHENTICATED)]),
        "system:node-bootstrapper": ("system:node-bootstrapper", [_subject(group, BOOTSTRAPPERS)]),
        "system:node-proxier": ("system:node-proxier", [_subject(user, u.PROXY)]),
        "system:kube-scheduler": ("system:kube-scheduler", [_subject(user, u.SCHEDULER)]),
        "system:kube-controller-manager": ("system:kube-controller-manager",
                                           [_subject(user, u.CONTROLLER_MANAGER)]),
        "system:minik8s-dns": ("system:minik8s-dns", [_subject(user, u.DNS)]),
        "system:minik8s-gateway": ("system:minik8s-gateway", [_subject(user, u.GATEWAY)]),
        "system:minik8s-netpol": ("system:minik8s-netpol", [_subject(user, u.NETPOL)]),
        # no subjects, as in Kubernetes since 1.8: the Node authorizer decides what a node may do
        "system:node": ("system:node", []),
    }


def _namespaced_roles() -> dict[tuple[str, str], tuple[list[Obj], list[Obj]]]:
    """(namespace, name) -> (Role rules, RoleBinding subjects): grants that stay in one namespace."""
    return {
        # the gateway installs its own Deployment and Service, and nothing else, in kube-system
        (SYSTEM_NAMESPACE, "system:minik8s-gateway"): (
            [rule(("get", "create"), ("",), ("services",)), rule(("get", "create"), ("apps",), ("deployments",))],
            [_subject(api.USER, u.GATEWAY)]),
    }


def _meta(name: str, namespace: str | None = None) -> Obj:
    meta: Obj = {"name": name, "labels": dict(BOOTSTRAP_LABEL), "annotations": {AUTOUPDATE: "true"}}
    if namespace:
        meta["namespace"] = namespace
    return meta


def bootstrap_objects() -> list[Obj]:
    """Every default object, roles before the bindings that name them."""
    out: list[Obj] = []
    for name, rules in _cluster_roles().items():
        out.append({"apiVersion": api.API_VERSION, "kind": "ClusterRole", "metadata": _meta(name), "rules": rules})
    for name, (role, subjects) in _cluster_role_bindings().items():
        out.append({"apiVersion": api.API_VERSION, "kind": "ClusterRoleBinding", "metadata": _meta(name),
                    "roleRef": {"apiGroup": api.GROUP, "kind": "ClusterRole", "name": role}, "subjects": subjects})
    for (ns, name), (rules, subjects) in _namespaced_roles().items():
        out.append({"apiVersion": api.API_VERSION, "kind": "Role", "metadata": _meta(name, ns), "rules": rules})
        out.append({"apiVersion": api.API_VERSION, "kind": "RoleBinding", "metadata": _meta(name, ns),
                    "roleRef": {"apiGroup": api.GROUP, "kind": "Role", "name": name}, "subjects": subjects})
    return out


def reconciled(default: Obj, current: Obj) -> Obj | None:
    """The stored object with the default's missing rules or subjects added back, or None when nothing
    is missing or the user turned auto-update off (kube-apiserver's reconcile, additive only)."""
    annotations = (current.get("metadata") or {}).get("annotations") or {}
    if annotations.get(AUTOUPDATE, "true") != "true":
        return None
    field = "rules" if default["kind"] in ("ClusterRole", "Role") else "subjects"
    have = list(current.get(field) or [])
    missing = [item for item in default.get(field) or [] if item not in have]
    if not missing:
        return None
    return {**current, field: have + missing}


def reconcile_policy(resources: Any) -> None:
    """Create the missing default objects and restore lost defaults in the ones marked auto-update.
    `resources` is the API server's resource layer (create/get/update by kind info)."""
    from minik8s.api import kinds as k
    from minik8s.errors import AlreadyExists, Conflict, NotFound

    for default in bootstrap_objects():
        info = k.lookup(default["kind"])
        meta = default["metadata"]
        ns = meta.get("namespace")
        try:
            current = resources.get(info, ns, meta["name"])
        except NotFound:
            try:
                resources.create(info, ns, default)
                log.info("created bootstrap policy", extra={"kind": default["kind"], "object": meta["name"]})
            except AlreadyExists:  # another API server made it meanwhile
                pass
            continue
        fixed = reconciled(default, current)
        if fixed is not None:
            try:
                resources.update(info, ns, meta["name"], fixed)
                log.info("reconciled bootstrap policy", extra={"kind": default["kind"], "object": meta["name"]})
            except Conflict:  # changed meanwhile: the next start reconciles again
                log.warning("bootstrap policy changed while reconciling", extra={"object": meta["name"]})
