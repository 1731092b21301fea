"""The Node authorizer and NodeRestriction: what a node may read and write, decided on request attributes
and the objects they name (an in-memory index stands in for the API server's store)."""

from __future__ import annotations

from typing import Any

import pytest

from minik8s.api import kinds as k
from minik8s.apiserver.admission import AdmissionRequest, default_chain
from minik8s.auth.authz import request_attributes
from minik8s.auth.node import NodeAuthorizer, pod_references, selected_value
from minik8s.auth.user import ADMIN, SYSTEM_MASTERS, UserInfo, node_user
from minik8s.errors import Forbidden

N1 = node_user("node-1")


def pod(name: str, node: str | None, ns: str = "default", **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {**({"nodeName": node} if node else {}), "containers": [{"name": "c", "image": "busybox"}],
                     **spec}}


class Index:
    def __init__(self, pods: list[dict[str, Any]], claims: dict[tuple[str, str], dict[str, Any]] | None = None):
        self.pods, self.claims, self.reads = pods, claims or {}, 0

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return next((p for p in self.pods if p["metadata"]["namespace"] == namespace
                     and p["metadata"]["name"] == name), None)

    def pods_on_node(self, node: str, namespace: str) -> list[dict[str, Any]]:
        self.reads += 1
        return [p for p in self.pods if p["spec"].get("nodeName") == node
                and (not namespace or p["metadata"]["namespace"] == namespace)]

    def claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.claims.get((namespace, name))


WEB = pod("web", "node-1", volumes=[{"name": "s", "secret": {"secretName": "web-tls"}},
                                   {"name": "d", "persistentVolumeClaim": {"claimName": "data"}}],
          serviceAccountName="web-sa")
WEB["spec"]["containers"][0]["env"] = [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "web-conf",
                                                                                        "key": "x"}}}]
OTHER = pod("db", "node-2", volumes=[{"name": "s", "secret": {"secretName": "db-password"}}])
INDEX = Index([WEB, OTHER], {("default", "data"): {"spec": {"volumeName": "pv-7"}}})


def decide(user: UserInfo, method: str, path: str, query: str = "", index: Index = INDEX) -> bool | None:
    decision = NodeAuthorizer(index).authorize(request_attributes(user, method, path, query))
    return None if decision is None else decision.allowed


def test_not_a_node_gets_no_opinion() -> None:
    admin = UserInfo(ADMIN, (SYSTEM_MASTERS,))
    assert decide(admin, "DELETE", "/api/v1/nodes/node-2") is None
    # a user merely named like a node, without the system:nodes group, is not one
    assert decide(UserInfo("system:node:node-1", ()), "PUT", "/api/v1/nodes/node-2") is None


@pytest.mark.parametrize("method,path,query", [
    ("GET", "/api/v1/nodes", ""),
    ("GET", "/api/v1/nodes", "watch=true"),
    ("PUT", "/api/v1/nodes/node-1/status", ""),
    ("PATCH", "/api/v1/nodes/node-1", ""),
    ("POST", "/api/v1/nodes", ""),
    ("GET", "/api/v1/pods", "fieldSelector=spec.nodeName%3Dnode-1"),
    ("GET", "/api/v1/pods", "watch=1&fieldSelector=spec.nodeName%3D%3Dnode-1"),
    ("PUT", "/api/v1/namespaces/default/pods/web/status", ""),
    ("DELETE", "/api/v1/namespaces/default/pods/web", ""),
    ("DELETE", "/api/v1/namespaces/default/pods/missing", ""),  # already gone: the kubelet gets its 404
    ("GET", "/api/v1/namespaces/default/secrets/web-tls", ""),
    ("GET", "/api/v1/namespaces/default/configmaps/web-conf", ""),
    ("GET", "/api/v1/namespaces/default/secrets", "fieldSelector=metadata.name%3Dweb-tls"),
    ("GET", "/api/v1/namespaces/default/persistentvolumeclaims/data", ""),
    ("GET", "/api/v1/persistentvolumes/pv-7", ""),
    ("POST", "/api/v1/namespaces/default/serviceaccounts/web-sa/token", ""),
    ("GET", "/api/v1/services", ""),
    ("GET", "/api/v1/endpoints", "watch=true"),
    ("POST", "/api/v1/namespaces/default/events", ""),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-1", ""),
    ("PUT", "/minik8s/metrics/v1/nodes/node-1", ""),
    ("GET", "/version", ""),
])
def test_a_node_may_do_what_its_components_need(method: str, path: str, query: str) -> None:
    assert decide(N1, method, path, query) is True


@pytest.mark.parametrize("method,path,query", [
    ("PUT", "/api/v1/nodes/node-2/status", ""),
    ("PATCH", "/api/v1/nodes/node-2", ""),
    ("DELETE", "/api/v1/nodes/node-2", ""),
    ("GET", "/api/v1/pods", ""),  # every pod: no
    ("GET", "/api/v1/pods", "fieldSelector=spec.nodeName%3Dnode-2"),
    ("GET", "/api/v1/pods", "fieldSelector=spec.nodeName%21%3Dnode-1"),
    ("GET", "/api/v1/namespaces/default/pods/db", ""),
    ("PUT", "/api/v1/namespaces/default/pods/db/status", ""),
    ("DELETE", "/api/v1/namespaces/default/pods/db", ""),
    ("GET", "/api/v1/namespaces/default/pods/missing", ""),
    ("PUT", "/api/v1/namespaces/default/pods/web", ""),  # the spec of its own pod: no
    ("POST", "/api/v1/namespaces/default/pods", ""),
    ("POST", "/api/v1/namespaces/default/pods/web/exec", ""),
    ("GET", "/api/v1/namespaces/default/secrets/db-password", ""),
    ("GET", "/api/v1/namespaces/other/secrets/web-tls", ""),  # same name, another namespace
    ("GET", "/api/v1/namespaces/default/secrets", ""),
    ("GET", "/api/v1/secrets", "watch=true"),
    ("PUT", "/api/v1/namespaces/default/secrets/web-tls", ""),
    ("GET", "/api/v1/persistentvolumes/pv-9", ""),
    ("POST", "/api/v1/namespaces/default/serviceaccounts/other-sa/token", ""),
    ("DELETE", "/api/v1/namespaces/default/services/kubernetes", ""),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-2", ""),
    ("PUT", "/apis/coordination.k8s.io/v1/namespaces/default/leases/node-1", ""),
    ("GET", "/apis/apps/v1/deployments", ""),
    ("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", ""),
    ("PUT", "/minik8s/metrics/v1/nodes/node-2", ""),
    ("POST", "/minik8s/anything", ""),
])
def test_a_node_is_refused_the_rest(method: str, path: str, query: str) -> None:
    assert decide(N1, method, path, query) is False


def test_a_refusal_says_why() -> None:
    decision = NodeAuthorizer(INDEX).authorize(request_attributes(N1, "GET", "/api/v1/namespaces/default/secrets/"
                                                                  "db-password"))
    assert decision is not None and not decision.allowed
    assert 'no pod bound to node "node-1" references secrets "default/db-password"' in decision.reason


def test_a_reference_is_remembered_briefly_then_read_again() -> None:
    index = Index([WEB])
    now = [0.0]
    authz = NodeAuthorizer(index, clock=lambda: now[0])
    attrs = request_attributes(N1, "GET", "/api/v1/namespaces/default/secrets/web-tls")
    assert authz.authorize(attrs).allowed and authz.authorize(attrs).allowed  # type: ignore[union-attr]
    assert index.reads == 1
    index.pods.clear()  # the pod went away
    now[0] += 60
    assert not authz.authorize(attrs).allowed  # type: ignore[union-attr]


def test_pod_references_cover_volumes_env_projected_and_pull_secrets() -> None:
    p = pod("x", "n", imagePullSecrets=[{"name": "reg"}], volumes=[
        {"name": "p", "projected": {"sources": [{"secret": {"name": "ps"}}, {"configMap": {"name": "pc"}}]}}])
    p["spec"]["initContainers"] = [{"name": "i", "envFrom": [{"secretRef": {"name": "ef"}},
                                                             {"configMapRef": {"name": "cf"}}]}]
    assert pod_references(p) == {("secrets", "reg"), ("secrets", "ps"), ("configmaps", "pc"), ("secrets", "ef"),
                                 ("configmaps", "cf")}


def test_selected_value_reads_equality_terms_only() -> None:
    assert selected_value("spec.nodeName=a,metadata.name==b", "metadata.name") == "b"
    assert selected_value("spec.nodeName!=a", "spec.nodeName") is None
    assert selected_value("", "spec.nodeName") is None


# --- NodeRestriction ----------------------------------------------------------------------------

def admit(kind: str, op: str, obj: dict[str, Any], old: dict[str, Any] | None = None, sub: str | None = None,
          user: UserInfo = N1) -> None:
    req = AdmissionRequest(op, k.lookup(kind), obj, old, sub)  # type: ignore[arg-type]
    req.user_info = user
    default_chain().validate(req)


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "spec": {}}


def test_node_restriction_is_in_the_default_chain() -> None:
    assert "NodeRestriction" in default_chain().names()


def test_a_node_writes_only_its_own_node_object() -> None:
    admit("Node", "CREATE", node("node-1"))
    admit("Node", "UPDATE", node("node-1", **{"kubernetes.io/hostname": "node-1", "disk": "ssd"}), node("node-1"))
    with pytest.raises(Forbidden, match='node "node-1" is not allowed to modify node "node-2"'):
        admit("Node", "CREATE", node("node-2"))


@pytest.mark.parametrize("label", ["node-restriction.kubernetes.io/trusted", "node-role.kubernetes.io/control-plane",
                                   "example.k8s.io/x"])
def test_a_node_may_not_set_restricted_labels(label: str) -> None:
    with pytest.raises(Forbidden, match=label):
        admit("Node", "UPDATE", node("node-1", **{label: "x"}), node("node-1"))
    with pytest.raises(Forbidden, match=label):  # nor remove one an admin set
        admit("Node", "UPDATE", node("node-1"), node("node-1", **{label: "x"}))
    admit("Node", "UPDATE", node("node-1", **{label: "x"}), node("node-1", **{label: "x"}))  # untouched: fine


def test_a_node_updates_only_the_status_of_its_own_pods() -> None:
    admit("Pod", "UPDATE", pod("web", "node-1"), pod("web", "node-1"), "status")
    with pytest.raises(Forbidden, match="bound to it"):
        admit("Pod", "UPDATE", pod("db", "node-2"), pod("db", "node-2"), "status")
    with pytest.raises(Forbidden, match="bound to it"):  # nor moves one here
        admit("Pod", "UPDATE", pod("db", "node-1"), pod("db", "node-2"), "status")
    with pytest.raises(Forbidden, match="not their spec"):
        admit("Pod", "UPDATE", pod("web", "node-1"), pod("web", "node-1"))
    with pytest.raises(Forbidden, match="mirror pods"):
        admit("Pod", "CREATE", pod("new", "node-1"))


def test_a_node_uses_only_its_own_lease() -> None:
    lease = {"metadata": {"name": "node-1", "namespace": "kube-node-lease"}, "spec": {}}
    admit("Lease", "CREATE", lease)
    with pytest.raises(Forbidden, match="own lease"):
        admit("Lease", "UPDATE", {"metadata": {"name": "node-2", "namespace": "kube-node-lease"}, "spec": {}})


def test_node_restriction_leaves_other_users_alone() -> None:
    admin = UserInfo(ADMIN, (SYSTEM_MASTERS,))
    admit("Node", "UPDATE", node("node-2", **{"node-restriction.kubernetes.io/x": "y"}), node("node-2"), user=admin)
    admit("Pod", "CREATE", pod("new", "node-2"), user=admin)
