"""NetworkPolicy through a real API server on a real etcd: the official kubernetes client's CRUD, Kubernetes'
defaults, refusals naming the field (and storing nothing), kubectl's table columns, and the policy agent's
identity (read-only)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from minik8s import Client
from minik8s.auth import user as u
from tests.conftest import TEST_TOKEN, open_apiserver, uniq, write_kubeconfig

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


@pytest.fixture
def namespace(client: Client) -> str:
    name = uniq("netpol")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def net_api(apiserver: str) -> Iterator[Any]:
    from kubernetes import client as k8s

    cfg = k8s.Configuration()
    cfg.host = apiserver
    cfg.api_key = {"authorization": f"Bearer {TEST_TOKEN}"}
    api = k8s.ApiClient(cfg)
    yield k8s.NetworkingV1Api(api)
    api.close()


def netpol(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def call(apiserver: str, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.request(method, apiserver + path, json=body, timeout=10,
                         headers={"Authorization": f"Bearer {TEST_TOKEN}", **headers})


def test_official_client_crud_and_kubernetes_defaults(net_api: Any, namespace: str) -> None:
    body = netpol("web", {"podSelector": {"matchLabels": {"app": "web"}},
                          "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}],
                                       "ports": [{"port": 80}]}],
                          "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}]})
    created = net_api.create_namespaced_network_policy(namespace, body)
    assert created.spec.policy_types == ["Ingress", "Egress"]
    assert created.spec.ingress[0].ports[0].protocol == "TCP"
    got = net_api.read_namespaced_network_policy("web", namespace)
    assert got.spec.ingress[0]._from[0].pod_selector.match_labels == {"role": "client"}
    got.spec.ingress = [{}]
    net_api.replace_namespaced_network_policy("web", namespace, got)
    names = [p.metadata.name for p in net_api.list_namespaced_network_policy(namespace).items]
    assert names == ["web"]
    assert net_api.read_namespaced_network_policy("web", namespace).spec.ingress[0]._from is None
    net_api.delete_namespaced_network_policy("web", namespace)
    assert net_api.list_namespaced_network_policy(namespace).items == []


def test_ingress_only_policy_defaults_to_ingress_type(client: Client, namespace: str) -> None:
    created = client.create(netpol("deny", {"podSelector": {}}), namespace).to_dict()
    assert created["spec"]["policyTypes"] == ["Ingress"]
    assert created["spec"]["podSelector"] == {}


@pytest.mark.parametrize(("spec", "field", "message"), [
    ({"podSelector": {}, "policyTypes": ["Both"]}, "spec.policyTypes[0]", 'Unsupported value: "Both"'),
    ({"podSelector": {}, "ingress": [{"ports": [{"protocol": "ICMP"}]}]}, "spec.ingress[0].ports[0].protocol",
     'Unsupported value: "ICMP"'),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": 90, "endPort": 80}]}]}, "spec.ingress[0].ports[0].endPort",
     "must be greater than or equal to `port`"),
    ({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 80}]}]},
     "spec.ingress[0].ports[0].endPort", "non-numeric"),
    ({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
     "spec.egress[0].to[0].ipBlock.cidr", "must be a valid CIDR"),
    ({"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]},
     "spec.egress[0].to[0].ipBlock.except[0]", "strict subset"),
    ({"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     "spec.ingress[0].from[0]", "may not specify both ipBlock and another peer"),
])
def test_bad_policies_are_refused_naming_the_field(apiserver: str, namespace: str, spec: dict[str, Any],
                                                    field: str, message: str) -> None:
    path = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies"
    resp = call(apiserver, "POST", path, netpol("bad", spec))
    assert resp.status_code == 422, resp.text
    causes = resp.json()["details"]["causes"]
    assert any(c["field"] == field and message in c["message"] for c in causes), causes
    assert call(apiserver, "GET", path).json()["items"] == []


def test_table_columns_are_kubectls(apiserver: str, client: Client, namespace: str) -> None:
    client.create(netpol("web", {"podSelector": {"matchLabels": {"app": "web"}}}), namespace)
    client.create(netpol("all", {"podSelector": {}}), namespace)
    table = call(apiserver, "GET", f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
                 Accept=TABLE).json()
    assert [c["name"] for c in table["columnDefinitions"]][:3] == ["Name", "Pod-Selector", "Age"]
    rows = {r["cells"][0]: r["cells"][1] for r in table["rows"]}
    assert rows == {"web": "app=web", "all": "<none>"}


def test_the_policy_agent_identity_reads_and_cannot_write(apiserver: str, namespace: str) -> None:
    as_agent = {"Impersonate-User": u.NETPOL}
    for path in ("/apis/networking.k8s.io/v1/networkpolicies", "/api/v1/pods", "/api/v1/namespaces",
                 "/api/v1/endpoints", "/api/v1/services"):
        assert call(apiserver, "GET", path, **as_agent).status_code == 200, path
    refused = call(apiserver, "POST", f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies",
                   netpol("x", {"podSelector": {}}), **as_agent)
    assert refused.status_code == 403
    assert call(apiserver, "GET", f"/api/v1/namespaces/{namespace}/secrets", **as_agent).status_code == 403


@pytest.fixture(scope="module")
def kubeconfig(etcd_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with open_apiserver(etcd_endpoint, "netpol-kubectl-apiserver") as url:
        yield write_kubeconfig(tmp_path_factory.mktemp("kubectl") / "kc", url)


def kubectl(kc: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], input=stdin, capture_output=True, text=True,
                          timeout=60)


ALLOW_CLIENTS = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {role: client}}}], ports: [{port: http}]}]
"""


def test_kubectl_get_describe_apply_and_delete(kubeconfig: Path) -> None:
    ns = uniq("np")
    assert kubectl(kubeconfig, "create", "namespace", ns).returncode == 0
    applied = kubectl(kubeconfig, "-n", ns, "apply", "-f", "-", stdin=ALLOW_CLIENTS)
    assert applied.returncode == 0, applied.stderr
    table = kubectl(kubeconfig, "-n", ns, "get", "netpol").stdout.splitlines()
    assert table[0].split() == ["NAME", "POD-SELECTOR", "AGE"] and table[1].split()[:2] == ["web", "app=web"]
    described = kubectl(kubeconfig, "-n", ns, "describe", "networkpolicy", "web")
    assert described.returncode == 0, described.stderr
    assert "role=client" in described.stdout and "http/TCP" in described.stdout
    bad = kubectl(kubeconfig, "-n", ns, "apply", "-f", "-",
                  stdin=ALLOW_CLIENTS.replace("name: web", "name: bad").replace("port: http", "port: http, endPort: 9"))
    assert bad.returncode == 1 and "spec.ingress[0].ports[0].endPort" in bad.stderr
    assert kubectl(kubeconfig, "-n", ns, "get", "netpol", "-o", "name").stdout.split() == [
        "networkpolicy.networking.k8s.io/web"]
    assert kubectl(kubeconfig, "-n", ns, "delete", "netpol", "web").returncode == 0
    assert kubectl(kubeconfig, "-n", ns, "get", "netpol", "-o", "name").stdout.split() == []
