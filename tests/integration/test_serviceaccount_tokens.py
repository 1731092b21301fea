"""ServiceAccount tokens through the real API server (etcd): TokenRequest, authentication as the account,
revocation by deleting the pod or the account, audiences, the token volume admission adds, and the
`default/kubernetes` Service the API server keeps."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from minik8s import Client, errors
from tests.conftest import TEST_TOKEN, free_port, uniq, wait_for

WHOAMI = "/apis/authentication.k8s.io/v1/selfsubjectreviews"


def token_request(client: Client, name: str, spec: dict | None = None, namespace: str = "default") -> dict:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec or {}}
    return client.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token", json=body)


def whoami(apiserver: str, token: str) -> httpx.Response:
    return httpx.post(apiserver + WHOAMI, headers={"Authorization": f"Bearer {token}"},
                      json={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})


def account(client: Client, name: str, **extra: object) -> object:
    return client.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}, **extra})


def pod(client: Client, name: str, **spec: object) -> object:
    return client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                          "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}})


def test_token_request_authenticates_as_the_account(apiserver: str, client: Client) -> None:
    sa = uniq("robot")
    created = account(client, sa)
    out = token_request(client, sa)
    assert out["kind"] == "TokenRequest" and out["spec"]["audiences"] == ["minik8s"]
    assert out["spec"]["expirationSeconds"] == 3600 and out["status"]["expirationTimestamp"].endswith("Z")
    resp = whoami(apiserver, out["status"]["token"])
    assert resp.status_code == 201
    info = resp.json()["status"]["userInfo"]
    assert info["username"] == f"system:serviceaccount:default:{sa}"
    assert info["uid"] == created.metadata.uid  # type: ignore[attr-defined]
    assert set(info["groups"]) == {"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"}
    listed = httpx.get(f"{apiserver}/api/v1/namespaces/default/pods",
                       headers={"Authorization": f"Bearer {out['status']['token']}"})
    assert listed.status_code in (200, 403)  # 403 once RBAC decides; never 401


def test_deleting_the_bound_pod_or_the_account_revokes_the_token(apiserver: str, client: Client) -> None:
    sa, name = uniq("svc"), uniq("web")
    account(client, sa)
    p = pod(client, name, serviceAccountName=sa)
    bound = token_request(client, sa, {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": name,
                                                          "uid": p.metadata.uid}})  # type: ignore[attr-defined]
    free = token_request(client, sa)
    token = bound["status"]["token"]
    info = whoami(apiserver, token).json()["status"]["userInfo"]
    assert info["extra"]["authentication.kubernetes.io/pod-name"] == [name]
    client.delete("Pod", name, grace_period_seconds=0)
    wait_for(lambda: whoami(apiserver, token).status_code == 401)
    assert whoami(apiserver, free["status"]["token"]).status_code == 201  # not bound to the pod
    client.delete("ServiceAccount", sa)
    wait_for(lambda: whoami(apiserver, free["status"]["token"]).status_code == 401)
    account(client, sa)  # the same name again is another account: old tokens stay dead
    assert whoami(apiserver, free["status"]["token"]).status_code == 401


def test_bad_token_requests_are_refused_by_name(client: Client) -> None:
    sa = uniq("bad")
    with pytest.raises(errors.NotFound):
        token_request(client, sa)
    account(client, sa)
    with pytest.raises(errors.MiniK8sError, match="spec.expirationSeconds.*less than 10 minutes") as info:
        token_request(client, sa, {"expirationSeconds": 60})
    assert info.value.code == 422
    with pytest.raises(errors.MiniK8sError, match="spec.boundObjectRef.kind"):
        token_request(client, sa, {"boundObjectRef": {"kind": "Secret", "apiVersion": "v1", "name": "x"}})
    with pytest.raises(errors.NotFound):
        token_request(client, sa, {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": uniq("none")}})
    other = uniq("other")
    pod(client, other)  # runs as `default`
    with pytest.raises(errors.MiniK8sError, match="different serviceaccount name"):
        token_request(client, sa, {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": other}})
    with pytest.raises(errors.MiniK8sError, match="unknown field"):
        token_request(client, sa, {"audience": "typo"})


def test_wrong_audience_and_forged_tokens_are_401(apiserver: str, client: Client) -> None:
    sa = uniq("aud")
    account(client, sa)
    vault = token_request(client, sa, {"audiences": ["vault"]})["status"]["token"]
    assert whoami(apiserver, vault).status_code == 401
    both = token_request(client, sa, {"audiences": ["vault", "minik8s"]})["status"]["token"]
    assert whoami(apiserver, both).status_code == 201
    head, body, sig = both.split(".")
    assert whoami(apiserver, f"{head}.{body}.{sig[::-1]}").status_code == 401
    assert whoami(apiserver, TEST_TOKEN).json()["status"]["userInfo"]["username"] == "admin"


def test_admission_adds_the_token_volume_unless_opted_out(client: Client) -> None:
    p = pod(client, uniq("mounted"))
    vols = [v.to_dict() for v in p.spec.volumes or []]  # type: ignore[attr-defined]
    assert len(vols) == 1 and vols[0]["name"].startswith("kube-api-access-")
    sources = vols[0]["projected"]["sources"]
    assert sources[0] == {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}
    assert sources[1]["configMap"]["name"] == "kube-root-ca.crt"
    assert sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"] == "metadata.namespace"
    mounts = p.spec.containers[0].volumeMounts  # type: ignore[attr-defined]
    assert [(m.name, m.mountPath, m.readOnly) for m in mounts] == \
        [(vols[0]["name"], "/var/run/secrets/kubernetes.io/serviceaccount", True)]
    assert not pod(client, uniq("optout"), automountServiceAccountToken=False).spec.volumes  # type: ignore
    quiet = uniq("quiet")
    account(client, quiet, automountServiceAccountToken=False)
    assert not pod(client, uniq("q"), serviceAccountName=quiet).spec.volumes  # type: ignore[attr-defined]
    loud = pod(client, uniq("l"), serviceAccountName=quiet, automountServiceAccountToken=True)
    assert loud.spec.volumes  # type: ignore[attr-defined]  # the pod's own setting wins


def test_projected_volume_fields_are_validated(client: Client) -> None:
    def bad(sources: list, match: str) -> None:
        with pytest.raises(errors.MiniK8sError, match=match):
            pod(client, uniq("proj"), volumes=[{"name": "p", "projected": {"sources": sources}}])

    bad([{"serviceAccountToken": {"path": "t", "expirationSeconds": 5}}], "expirationSeconds")
    bad([{"downwardAPI": {"items": [{"path": "x", "fieldRef": {"fieldPath": "spec.nodeName"}}]}}], "fieldPath")
    bad([{"downwardAPI": {"items": [{"path": "x", "resourceFieldRef": {"resource": "limits.cpu"}}]}}],
        "resourceFieldRef.containerName")  # a volume file must name its container
    bad([{"clusterTrustBundle": {"path": "x"}}], "clusterTrustBundle")
    bad([{"serviceAccountToken": {"path": "../t"}}], r"serviceAccountToken.path")
    bad([{"serviceAccountToken": {"path": "t"}}, {"downwardAPI": {"items": [
        {"path": "t", "fieldRef": {"fieldPath": "metadata.name"}}]}}], "conflicting duplicate paths")


@pytest.fixture(scope="module")
def advertised(etcd_endpoint: str) -> Iterator[str]:
    """An API server that advertises an address, so it keeps `default/kubernetes`."""
    from minik8s.apiserver.app import ApiServer, ApiServerConfig
    from minik8s.apiserver.server import ServerThread

    port = free_port()
    api = ApiServer(ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port,
                                    advertise_address="10.200.0.1", service_cidr="10.96.0.0/16"))
    server = ServerThread(api.app, ["127.0.0.1"], port, name="advertised-apiserver")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def test_the_kubernetes_service_points_at_the_advertised_address(advertised: str) -> None:
    client = Client(advertised, TEST_TOKEN)
    try:
        svc = wait_for(lambda: client.get("Service", "kubernetes", "default"))
        assert svc.spec.clusterIP == "10.96.0.1"
        port = int(advertised.rsplit(":", 1)[1])  # the API server's real port
        assert [(p.name, p.port, p.targetPort) for p in svc.spec.ports] == [("https", 443, port)]
        ep = wait_for(lambda: client.get("Endpoints", "kubernetes", "default")).to_dict()
        assert ep["subsets"] == [{"addresses": [{"ip": "10.200.0.1"}],
                                  "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]
    finally:
        client.close()


def test_root_ca_publisher_keeps_the_ca_in_every_namespace(apiserver: str, client: Client) -> None:
    from minik8s.controllers.rootcacert import RootCACertConfig, RootCACertPublisher

    publisher = RootCACertPublisher(Client(apiserver, TEST_TOKEN), RootCACertConfig(root_ca="PEM\n", resync_s=60))
    publisher.start()
    try:
        ns = uniq("ca")
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        cm = wait_for(lambda: _get(client, "ConfigMap", "kube-root-ca.crt", ns))
        assert cm.data == {"ca.crt": "PEM\n"}
        client.patch("ConfigMap", "kube-root-ca.crt", {"data": {"ca.crt": "tampered"}}, ns)
        wait_for(lambda: _get(client, "ConfigMap", "kube-root-ca.crt", ns).data == {"ca.crt": "PEM\n"})
        client.delete("ConfigMap", "kube-root-ca.crt", ns)
        wait_for(lambda: _get(client, "ConfigMap", "kube-root-ca.crt", ns))
    finally:
        publisher.stop()


def _get(client: Client, kind: str, name: str, ns: str) -> object | None:
    try:
        return client.get(kind, name, ns)
    except errors.NotFound:
        return None
