"""The official `kubernetes` client's in-cluster loader (what `config.load_incluster_config()` runs) against a
real TLS API server on a real etcd, with what a pod finds in its ServiceAccount volume and environment: the
account's token, the cluster CA, `KUBERNETES_SERVICE_HOST/PORT`. Its pod list is refused (403) until a
RoleBinding grants `list pods`, then answered. The e2e test does the same from inside a pod with urllib
(the pod image has no `kubernetes` package)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minik8s import Client
from tests.conftest import TEST_TOKEN, apiserver_pki_config, free_port, uniq, wait_for


@pytest.fixture(scope="module")
def tls_api(etcd_endpoint: str, test_pki: Any) -> Iterator[int]:
    """An API server serving TLS with the cluster CA's certificate (RBAC on); its port."""
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    cfg = ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port, pod_cidr="10.0.0.0/8",
                          tls_cert=str(test_pki.server_cert), tls_key=str(test_pki.server_key),
                          **apiserver_pki_config(test_pki))
    server = ServerThread(ApiServer(cfg).app, ["127.0.0.1"], port, name="test-incluster",
                          tls_cert=cfg.tls_cert, tls_key=cfg.tls_key, client_ca=cfg.ca_cert)
    server.start()
    yield port
    server.stop()


def test_load_incluster_config_lists_pods_once_granted(tls_api: int, test_pki: Any, tmp_path: Path) -> None:
    from kubernetes import client as k8s
    from kubernetes.client.exceptions import ApiException
    from kubernetes.config.incluster_config import InClusterConfigLoader

    admin = Client(f"https://127.0.0.1:{tls_api}", TEST_TOKEN, ca=test_pki.ca_pem())
    ns, sa = uniq("incluster"), uniq("reader")
    try:
        admin.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        admin.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa, "namespace": ns}})
        token = admin.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
                              json={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
        (tmp_path / "token").write_text(token["status"]["token"])
        (tmp_path / "ca.crt").write_text(test_pki.ca_pem())
        config = k8s.Configuration()
        InClusterConfigLoader(str(tmp_path / "token"), str(tmp_path / "ca.crt"),
                              environ={"KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                       "KUBERNETES_SERVICE_PORT": str(tls_api)}).load_and_set(config)
        assert config.host == f"https://127.0.0.1:{tls_api}" and config.verify_ssl
        with k8s.ApiClient(config) as api_client:
            core = k8s.CoreV1Api(api_client)
            with pytest.raises(ApiException) as refused:
                core.list_namespaced_pod(ns)
            assert refused.value.status == 403
            message = json.loads(refused.value.body)["message"]
            assert f'User "system:serviceaccount:{ns}:{sa}" cannot list resource "pods"' in message
            admin.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                          "metadata": {"name": "pod-reader", "namespace": ns},
                          "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
            admin.create({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                          "metadata": {"name": "read-pods", "namespace": ns},
                          "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
                          "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"}})

            def listed() -> Any:
                try:
                    return core.list_namespaced_pod(ns)
                except ApiException as exc:
                    assert exc.status == 403, exc
                    return None

            pods = wait_for(listed, timeout=10)
            assert pods.items == []  # typed and empty: the namespace holds no pods
            with pytest.raises(ApiException) as other:  # the grant is this namespace's only
                core.list_namespaced_pod("default")
            assert other.value.status == 403
    finally:
        admin.delete("Namespace", ns)
        admin.close()
