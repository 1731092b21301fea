"""What a node may do: Kubernetes' Node authorizer and its NodeRestriction admission plug-in.

A node (`system:node:<name>` in `system:nodes`, see :mod:`.user`) reads what its components need:
the pods bound to it (a list or watch must select `spec.nodeName=<name>`), the Secrets, ConfigMaps,
PersistentVolumeClaims and ServiceAccounts those pods name and the PersistentVolumes bound to those
claims, and every Node, Service, Endpoints and Namespace. It writes only its own Node and Lease,
the status of pods bound to it, pod deletions on it (the kubelet ends a pod's graceful deletion),
events, its metrics report and tokens for the ServiceAccounts of its pods.

`NodeAuthorizer` decides on the request's attributes and, where the answer depends on objects
(is this pod bound to me? does one of my pods name this Secret?), reads them through a `PodIndex`
(blocking: the API server calls it off its event loop, for node users only). It answers None (no
opinion) for anyone who is not a node, and, unlike Kubernetes' (which leaves the rest to RBAC),
*denies* a node whatever it does not allow: it must hold on its own, before RBAC exists, and
nothing should grant nodes more.

`NodeRestriction` (an admission plug-in) checks the objects a node writes: a Node or Lease named
after it, a pod status only for pods bound to it (before and after), and no labels it may not set
(the `node-restriction.kubernetes.io/` prefix, and Kubernetes' own label domains beyond those the
kubelet sets).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from minik8s.auth.authz import Attributes, Decision
from minik8s.auth.user import UserInfo, node_name_of
from minik8s.errors import Forbidden

READ_VERBS = frozenset({"get", "list", "watch"})
WRITE_VERBS = frozenset({"create", "update", "patch"})
NODE_LEASE_NAMESPACE = "kube-node-lease"
METRICS_REPORT_PATH = "/minik8s/metrics/v1/nodes/{node}"  # minik8s.metrics.types.REPORT_PATH
RESTRICTED_LABEL_PREFIX = "node-restriction.kubernetes.io/"
#: labels in Kubernetes' domains a kubelet may still set on its own Node (kubelet's allowed set)
KUBELET_LABELS = frozenset({"kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os",
                            "beta.kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type",
                            "node.kubernetes.io/instance-type", "topology.kubernetes.io/region",
                            "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
                            "failure-domain.beta.kubernetes.io/zone"})
KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")
#: how long a "yes, one of your pods names it" stays true without reading again (a kubelet polls them)
REFERENCE_TTL_S = 5.0

Obj = dict[str, Any]
#: what a pod can name, by resource: (resource, name)
Ref = tuple[str, str]


class PodIndex(Protocol):
    """The objects the authorizer reads (blocking): the API server's store, or a dict in unit tests."""

    def pod(self, namespace: str, name: str) -> Obj | None: ...

    def pods_on_node(self, node: str, namespace: str) -> list[Obj]: ...

    def claim(self, namespace: str, name: str) -> Obj | None: ...


# --- what a pod references ----------------------------------------------------------------------

def _volume_refs(volume: Obj) -> Iterable[Ref]:
    if (volume.get("secret") or {}).get("secretName"):
        yield "secrets", volume["secret"]["secretName"]
    if (volume.get("configMap") or {}).get("name"):
        yield "configmaps", volume["configMap"]["name"]
    if (volume.get("persistentVolumeClaim") or {}).get("claimName"):
        yield "persistentvolumeclaims", volume["persistentVolumeClaim"]["claimName"]
    for source in (volume.get("projected") or {}).get("sources") or []:
        if (source.get("secret") or {}).get("name"):
            yield "secrets", source["secret"]["name"]
        if (source.get("configMap") or {}).get("name"):
            yield "configmaps", source["configMap"]["name"]


def _container_refs(container: Obj) -> Iterable[Ref]:
    for var in container.get("env") or []:
        source = var.get("valueFrom") or {}
        if (source.get("secretKeyRef") or {}).get("name"):
            yield "secrets", source["secretKeyRef"]["name"]
        if (source.get("configMapKeyRef") or {}).get("name"):
            yield "configmaps", source["configMapKeyRef"]["name"]
    for env_from in container.get("envFrom") or []:
        if (env_from.get("secretRef") or {}).get("name"):
            yield "secrets", env_from["secretRef"]["name"]
        if (env_from.get("configMapRef") or {}).get("name"):
            yield "configmaps", env_from["configMapRef"]["name"]


def pod_references(pod: Obj) -> set[Ref]:
    """Every Secret, ConfigMap, PVC and ServiceAccount a pod names (the edges of Kubernetes' node graph)."""
    spec = pod.get("spec") or {}
    refs: set[Ref] = set()
    for volume in spec.get("volumes") or []:
        refs.update(_volume_refs(volume))
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or []),
                      *(spec.get("ephemeralContainers") or [])]:
        refs.update(_container_refs(container))
    for secret in spec.get("imagePullSecrets") or []:
        if secret.get("name"):
            refs.add(("secrets", secret["name"]))
    if spec.get("serviceAccountName"):
        refs.add(("serviceaccounts", spec["serviceAccountName"]))
    return refs


def selected_value(selector: str, field: str) -> str | None:
    """The value a field selector pins `field` to (`a=b,c==d`), else None."""
    for term in (t.strip() for t in selector.split(",") if t.strip()):
        key, op, value = term.partition("==") if "==" in term else term.partition("=")
        if op and not key.endswith("!") and key.strip() == field:
            return value.strip()
    return None


# --- the authorizer -----------------------------------------------------------------------------

class NodeAuthorizer:
    def __init__(self, index: PodIndex, clock: Callable[[], float] = time.monotonic) -> None:
        self.index, self.clock = index, clock
        self._seen: dict[tuple[str, str, str, str], float] = {}  # (node, resource, ns, name) -> valid until
        self._lock = threading.Lock()

    @staticmethod
    def applies_to(user: UserInfo) -> bool:
        return node_name_of(user) is not None

    def authorize(self, attrs: Attributes) -> Decision | None:
        node = node_name_of(attrs.user)
        if node is None:
            return None  # not a node: no opinion
        reason = self._why_not(node, attrs)
        return Decision(True, f"node {node}") if reason is None else Decision(False, reason)

    def _why_not(self, node: str, a: Attributes) -> str | None:
        """None when the node may; else why not, in a few words."""
        if not a.resource_request:
            if a.verb == "get" or (a.verb == "update" and a.path == METRICS_REPORT_PATH.format(node=node)):
                return None
            return f"a node may only read non-resource paths and report its own metrics, not {a.verb} {a.path}"
        rule = _RULES.get((a.api_group, a.resource))
        if rule is None:
            return f"a node has no access to {a.resource or 'this'} in API group {a.api_group!r}"
        return rule(self, node, a)

    # --- rules, by resource -------------------------------------------------------------------
    def _nodes(self, node: str, a: Attributes) -> str | None:
        if a.verb in READ_VERBS or a.verb == "create":  # a create's name is checked by NodeRestriction
            return None
        if a.verb in ("update", "patch", "delete") and a.name == node and a.subresource in ("", "status"):
            return None
        return f'node "{node}" may only modify its own Node object'

    def _leases(self, node: str, a: Attributes) -> str | None:
        if a.namespace != NODE_LEASE_NAMESPACE:
            return f"a node's lease lives in the namespace {NODE_LEASE_NAMESPACE}"
        if a.verb in ("list", "watch", "create") or a.name == node:
            return None
        return f'node "{node}" may only use its own Lease'

    def _pods(self, node: str, a: Attributes) -> str | None:
        if a.verb in ("list", "watch") and not a.subresource:
            if selected_value(a.field_selector, "spec.nodeName") == node:
                return None
            return f"a node may list and watch only the pods bound to it (fieldSelector spec.nodeName={node})"
        if a.subresource == "status" and a.verb in ("get", "update", "patch"):
            return self._bound_here(node, a)  # NodeRestriction checks the object written, too
        if not a.subresource and a.verb in ("get", "delete"):
            return self._bound_here(node, a)
        return f'node "{node}" may not {a.verb} pods{"/" + a.subresource if a.subresource else ""}'

    def _bound_here(self, node: str, a: Attributes) -> str | None:
        pod = self.index.pod(a.namespace, a.name)
        if pod is None and a.verb != "get":
            return None  # gone already: the write answers 404, which the kubelet expects (as NodeRestriction)
        if pod is not None and (pod.get("spec") or {}).get("nodeName") == node:
            return None
        return f'pod "{a.namespace}/{a.name}" is not bound to node "{node}"'

    def _referenced(self, node: str, a: Attributes) -> str | None:
        """Secrets, ConfigMaps, PVCs, ServiceAccounts: one a pod on this node names (get, or a list/watch
        selecting it by name, as the kubelet's single-object watches do)."""
        name = a.name or (selected_value(a.field_selector, "metadata.name") if a.verb in ("list", "watch") else None)
        token = a.resource == "serviceaccounts" and a.subresource == "token" and a.verb == "create"
        if not name or not (a.verb in READ_VERBS and not a.subresource or token):
            return f"a node may only read the {a.resource} its pods reference, one at a time"
        if self._pods_reference(node, a.resource, a.namespace, name):
            return None
        return f'no pod bound to node "{node}" references {a.resource} "{a.namespace}/{name}"'

    def _volumes(self, node: str, a: Attributes) -> str | None:
        if a.verb != "get" or not a.name:
            return "a node may only get the persistent volumes bound to its pods' claims"
        if self._seen_recently((node, "persistentvolumes", "", a.name)):
            return None
        for ns, claim_name in self._claims_of(node):
            claim = self.index.claim(ns, claim_name) or {}
            if (claim.get("spec") or {}).get("volumeName") == a.name:
                self._remember((node, "persistentvolumes", "", a.name))
                return None
        return f'persistentvolume "{a.name}" is not bound to a claim of a pod on node "{node}"'

    def _read_only(self, node: str, a: Attributes) -> str | None:
        return None if a.verb in READ_VERBS and not a.subresource else f"a node may only read {a.resource}"

    def _events(self, node: str, a: Attributes) -> str | None:
        return None if a.verb in READ_VERBS | WRITE_VERBS else "a node may create, update and read events"

    # --- the object graph, read when needed ---------------------------------------------------
    def _pods_reference(self, node: str, resource: str, namespace: str, name: str) -> bool:
        key = (node, resource, namespace, name)
        if self._seen_recently(key):
            return True
        found = any((resource, name) in pod_references(p) for p in self.index.pods_on_node(node, namespace))
        if found:
            self._remember(key)
        return found

    def _claims_of(self, node: str) -> list[tuple[str, str]]:
        return [((p.get("metadata") or {}).get("namespace", ""), name)
                for p in self.index.pods_on_node(node, "")
                for res, name in pod_references(p) if res == "persistentvolumeclaims"]

    def _seen_recently(self, key: tuple[str, str, str, str]) -> bool:
        with self._lock:
            until = self._seen.get(key)
            return until is not None and until > self.clock()

    def _remember(self, key: tuple[str, str, str, str]) -> None:
        now = self.clock()
        with self._lock:
            if len(self._seen) > 10_000:  # keep it bounded: drop what has expired
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            self._seen[key] = now + REFERENCE_TTL_S


_RULES: dict[tuple[str, str], Callable[[NodeAuthorizer, str, Attributes], str | None]] = {
    ("", "nodes"): NodeAuthorizer._nodes,
    ("coordination.k8s.io", "leases"): NodeAuthorizer._leases,
    ("", "pods"): NodeAuthorizer._pods,
    ("", "secrets"): NodeAuthorizer._referenced,
    ("", "configmaps"): NodeAuthorizer._referenced,
    ("", "persistentvolumeclaims"): NodeAuthorizer._referenced,
    ("", "serviceaccounts"): NodeAuthorizer._referenced,
    ("", "persistentvolumes"): NodeAuthorizer._volumes,
    ("", "services"): NodeAuthorizer._read_only,
    ("", "endpoints"): NodeAuthorizer._read_only,
    ("discovery.k8s.io", "endpointslices"): NodeAuthorizer._read_only,
    ("", "namespaces"): NodeAuthorizer._read_only,
    ("storage.k8s.io", "storageclasses"): NodeAuthorizer._read_only,
    ("", "events"): NodeAuthorizer._events,
    ("events.k8s.io", "events"): NodeAuthorizer._events,
}


# --- NodeRestriction ----------------------------------------------------------------------------

def _label_allowed(key: str) -> bool:
    if key.startswith(RESTRICTED_LABEL_PREFIX):
        return False
    domain = key.split("/", 1)[0] if "/" in key else ""
    k8s_domain = any(domain == d or domain.endswith("." + d) for d in ("kubernetes.io", "k8s.io"))
    if not k8s_domain:
        return True
    return key in KUBELET_LABELS or any(domain == d or domain.endswith("." + d) for d in KUBELET_LABEL_DOMAINS)


def changed_labels(obj: Obj, old: Obj | None) -> list[str]:
    new_labels = (obj.get("metadata") or {}).get("labels") or {}
    old_labels = ((old or {}).get("metadata") or {}).get("labels") or {}
    return sorted(k for k in set(new_labels) | set(old_labels) if new_labels.get(k) != old_labels.get(k))


class NodeRestriction:
    """Validating admission: a node writes only itself, its lease and its pods' status."""

    name = "NodeRestriction"
    KINDS = ("Node", "Pod", "Lease")

    def handles(self, req: Any) -> bool:
        user = getattr(req, "user_info", None)
        return user is not None and node_name_of(user) is not None and req.info.kind in self.KINDS

    def admit(self, req: Any) -> None:
        node = node_name_of(req.user_info) or ""
        name = (req.obj.get("metadata") or {}).get("name")
        if req.info.kind == "Node":
            if name != node:
                raise Forbidden(f'node "{node}" is not allowed to modify node "{name}"')
            bad = [k for k in changed_labels(req.obj, req.old) if not _label_allowed(k)]
            if bad:
                raise Forbidden(f'node "{node}" is not allowed to modify labels: {", ".join(bad)}')
        elif req.info.kind == "Lease":
            if name != node or req.namespace != NODE_LEASE_NAMESPACE:
                raise Forbidden(f'node "{node}" can only access its own lease in {NODE_LEASE_NAMESPACE}, '
                                f'not "{req.namespace}/{name}"')
        elif req.operation == "CREATE":
            raise Forbidden(f'node "{node}" is not allowed to create pods (mirror pods are not supported)')
        elif req.subresource != "status":
            raise Forbidden(f'node "{node}" may only update the status of pods, not their spec')
        else:
            bound = {((o or {}).get("spec") or {}).get("nodeName") for o in (req.obj, req.old)}
            if bound != {node}:
                raise Forbidden(f'node "{node}" can only update the status of pods bound to it, '
                                f'not pod "{req.namespace}/{name}"')
