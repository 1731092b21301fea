"""Node identities against a real API server (TLS, client certificates) on a real etcd: the join hands a
node its own certificate (never the admin token), pins the CA before sending the token, and keeps a
taken name with its holder; the node's credential is held to the Node authorizer and NodeRestriction."""

from __future__ import annotations

import contextlib
import http.server
import json
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minik8s import Client
from minik8s.cluster.bootstrap import JoinRequest, NodeCredentials, ca_hash, request_join
from minik8s.errors import AlreadyExists, BadRequest, Forbidden, Unauthorized
from minik8s.pki import cert_subject, ensure_pki
from tests.conftest import TEST_TOKEN, apiserver_pki_config, free_port, uniq

JOIN_SECRET = "node:0123456789abcdef"


@pytest.fixture(scope="module")
def api(etcd_endpoint: str, test_pki: Any) -> Iterator[tuple[str, str]]:
    """(server URL, join token) of an API server asking TLS clients for certificates from the cluster CA."""
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    join_token = f"K10{ca_hash(test_pki.ca_pem())}::{JOIN_SECRET}"
    server_url = f"https://127.0.0.1:{port}"
    cfg = ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port, pod_cidr="10.0.0.0/8",
                          tls_cert=str(test_pki.server_cert), tls_key=str(test_pki.server_key), join_token=join_token,
                          cluster_info={"ca": test_pki.ca_pem(), "server": server_url, "registry": "r:5000",
                                        "rayAddress": "r:6379"}, **apiserver_pki_config(test_pki))
    server = ServerThread(ApiServer(cfg).app, ["127.0.0.1"], port, name="test-node-identity",
                          tls_cert=cfg.tls_cert, tls_key=cfg.tls_key, client_ca=cfg.ca_cert)
    server.start()
    yield server_url, join_token
    server.stop()


@pytest.fixture
def admin(api: tuple[str, str], test_pki: Any) -> Iterator[Client]:
    c = Client(api[0], TEST_TOKEN, ca=test_pki.ca_pem())
    yield c
    c.close()


def join(api: tuple[str, str], name: str, node_dir: Path, force: bool = False) -> dict[str, Any]:
    return request_join(JoinRequest(name=name, server=api[0], token=api[1], force=force), node_dir, "127.0.0.1")


def as_node(api: tuple[str, str], node_dir: Path, test_pki: Any) -> Client:
    creds = NodeCredentials.of(node_dir)
    return Client(api[0], None, ca=test_pki.ca_pem(), cert=str(creds.client_cert), key=str(creds.client_key))


def put_status(client: Client, path: str, obj: Any, status: dict[str, Any]) -> None:
    client.request("PUT", f"{path}/status", json={**obj.to_dict(), "status": status})


def test_join_returns_the_nodes_certificate_never_the_admin_token(api: tuple[str, str], test_pki: Any,
                                                                   tmp_path: Path) -> None:
    name = uniq("nid")
    reply = join(api, name, tmp_path / name)
    assert "token" not in reply and TEST_TOKEN not in json.dumps(reply)
    creds = NodeCredentials.of(tmp_path / name)
    assert cert_subject(creds.client_cert) == f"CN=system:node:{name},O=system:nodes"
    assert creds.dir.stat().st_mode & 0o777 == 0o700
    assert creds.client_key.stat().st_mode & 0o777 == 0o600 and creds.serving_key.stat().st_mode & 0o777 == 0o600
    assert creds.ca.read_text() == test_pki.ca_pem()
    with contextlib.closing(as_node(api, tmp_path / name, test_pki)) as node:
        assert node.get("Node", name, None).metadata.name == name  # the certificate authenticates


def test_a_node_credential_writes_only_its_own_node_and_pods(api: tuple[str, str], admin: Client, test_pki: Any,
                                                             tmp_path: Path) -> None:
    mine, other = uniq("nid"), uniq("nid")
    join(api, mine, tmp_path / mine)
    join(api, other, tmp_path / other)
    node = as_node(api, tmp_path / mine, test_pki)
    try:
        put_status(node, f"/api/v1/nodes/{mine}", node.get("Node", mine, None), {"phase": "Running"})
        node.patch("Node", mine, {"metadata": {"labels": {"disk": "ssd"}}}, None)
        with pytest.raises(Forbidden, match=f'User "system:node:{mine}" cannot patch resource "nodes"'):
            node.patch("Node", other, {"metadata": {"labels": {"disk": "ssd"}}}, None)
        with pytest.raises(Forbidden):
            put_status(node, f"/api/v1/nodes/{other}", admin.get("Node", other, None), {"phase": "Running"})
        with pytest.raises(Forbidden, match="node-restriction.kubernetes.io/trusted"):
            node.patch("Node", mine, {"metadata": {"labels": {"node-restriction.kubernetes.io/trusted": "y"}}}, None)

        here, there = uniq("p"), uniq("p")
        for pod, where in ((here, mine), (there, other)):
            admin.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod, "namespace": "default"},
                          "spec": {"nodeName": where, "containers": [{"name": "c", "image": "busybox"}]}})
        put_status(node, f"/api/v1/namespaces/default/pods/{here}", node.get("Pod", here), {"phase": "Running"})
        assert admin.get("Pod", here).status.phase == "Running"
        with pytest.raises(Forbidden, match=f'pod "default/{there}" is not bound to node "{mine}"'):
            node.get("Pod", there)
        with pytest.raises(Forbidden):
            put_status(node, f"/api/v1/namespaces/default/pods/{there}", admin.get("Pod", there), {"phase": "Running"})
        with pytest.raises(Forbidden):
            node.delete("Pod", there)
        assert [p.metadata.name for p in node.list("Pod", field_selector=f"spec.nodeName={mine}").items] == [here]
        with pytest.raises(Forbidden):
            node.list("Pod")
        with pytest.raises(Forbidden):
            node.list("Secret", namespace="kube-system")
        with pytest.raises(Forbidden):
            node.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": uniq("p"), "namespace": "default"},
                         "spec": {"nodeName": mine, "containers": [{"name": "c", "image": "busybox"}]}})
        node.delete("Pod", here)
    finally:
        node.close()


def test_a_taken_name_is_refused_without_force_but_its_holder_may_join_again(api: tuple[str, str], admin: Client,
                                                                             test_pki: Any, tmp_path: Path) -> None:
    name = uniq("nid")
    join(api, name, tmp_path / "first")
    first_cert = NodeCredentials.of(tmp_path / "first").client_cert.read_text()
    with pytest.raises(AlreadyExists, match=f'node "{name}" already exists.*--force'):
        join(api, name, tmp_path / "second")
    assert not (tmp_path / "second" / "pki").exists()  # nothing half-made is left behind
    join(api, name, tmp_path / "first")  # the holder re-joins with its own certificate
    assert NodeCredentials.of(tmp_path / "first").client_cert.read_text() != first_cert  # renewed, same key
    join(api, name, tmp_path / "second", force=True)
    with contextlib.closing(as_node(api, tmp_path / "second", test_pki)) as node:
        assert node.get("Node", name, None).metadata.name == name


def test_a_wrong_join_secret_is_refused(api: tuple[str, str], tmp_path: Path) -> None:
    bad = api[1].rsplit("::", 1)[0] + "::node:not-the-secret"
    with pytest.raises(Unauthorized, match="invalid join token"):
        request_join(JoinRequest(name=uniq("nid"), server=api[0], token=bad), tmp_path, "127.0.0.1")


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A server that is not the cluster's: it serves some CA and writes down every request it gets."""

    seen: list[tuple[str, str, str]] = []
    ca = ""

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(("GET", self.path, self.headers.get("Authorization", "")))
        body = self.ca.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        self.seen.append(("POST", self.path, self.headers.get("Authorization", "")))
        self.send_response(500)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_ca_mismatch_is_caught_before_the_secret_is_sent(test_pki: Any, tmp_path: Path) -> None:
    impostor = ensure_pki(tmp_path / "impostor", ["127.0.0.1"], ["localhost"])
    _Recorder.ca, _Recorder.seen = impostor.ca_pem(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(impostor.server_cert), str(impostor.server_key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        token = f"K10{ca_hash(test_pki.ca_pem())}::{JOIN_SECRET}"  # the real cluster's CA hash
        req = JoinRequest(name=uniq("nid"), server=f"https://127.0.0.1:{server.server_address[1]}", token=token)
        with pytest.raises(BadRequest, match="does not match the join token's hash: refusing to send the token"):
            request_join(req, tmp_path / "node", "127.0.0.1")
    finally:
        server.shutdown()
    assert _Recorder.seen == [("GET", "/cacerts", "")]  # the CA was fetched; nothing else, no secret
    assert not any(JOIN_SECRET in str(s) for s in _Recorder.seen)
    assert not (tmp_path / "node" / "pki").exists()


def test_a_join_without_certificate_requests_is_refused(api: tuple[str, str], test_pki: Any) -> None:
    import httpx

    resp = httpx.post(f"{api[0]}/minik8s/join", json={"name": uniq("nid"), "address": "127.0.0.1"},
                      headers={"Authorization": f"Bearer {api[1]}"}, verify=ssl.create_default_context(
                          cadata=test_pki.ca_pem()))
    assert resp.status_code == 400 and "csr" in resp.json()["message"]
    assert "token" not in resp.text
