"""Pod Security, encryption at rest and the audit log against a real etcd and a real API server (HTTP)."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pyetcd.etcdrpc import rpc_pb2 as rpc

from minik8s import Client
from minik8s.apiserver.app import ApiServer, ApiServerConfig
from minik8s.apiserver.server import ServerThread
from minik8s.store import EtcdStore, encryption
from tests.conftest import TEST_TOKEN, free_port, uniq, wait_for


@pytest.fixture(scope="module")
def secured(etcd_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, Path]]:
    state = tmp_path_factory.mktemp("state")
    port = free_port()
    config = ApiServerConfig(etcd_endpoints=[etcd_endpoint], token=TEST_TOKEN, port=port,
                             encryption_config=str(encryption.ensure_config(encryption.config_path(state))),
                             audit_log=str(state / "audit" / "audit.log"))
    api = ApiServer(config)
    server = ServerThread(api.app, ["127.0.0.1"], port, name="secured-apiserver")
    server.start()
    http = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TEST_TOKEN}"})
    yield http, state
    http.close()
    server.stop()
    if api.audit:
        api.audit.close()


def _namespace(http: httpx.Client, labels: dict[str, str] | None = None) -> str:
    name = uniq("psa")
    r = http.post("/api/v1/namespaces", json={"metadata": {"name": name, "labels": labels or {}}})
    assert r.status_code == 201, r.text
    return name


def _pod(name: str, **container: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "busybox", **container}]}}


def test_privileged_pod_refused_in_baseline_accepted_in_privileged(secured: tuple[httpx.Client, Path]) -> None:
    http, _ = secured
    ns = _namespace(http)
    r = http.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("p", securityContext={"privileged": True}))
    assert r.status_code == 403
    assert r.json()["message"] == ('pods "p" is forbidden: violates PodSecurity "baseline:latest": privileged '
                                   '(container "c" must not set securityContext.privileged=true)')
    assert http.get(f"/api/v1/namespaces/{ns}/pods/p").status_code == 404  # nothing half-created
    open_ns = _namespace(http, {"pod-security.kubernetes.io/enforce": "privileged"})
    r = http.post(f"/api/v1/namespaces/{open_ns}/pods", json=_pod("p", securityContext={"privileged": True}))
    assert r.status_code == 201, r.text


def test_label_changes_take_effect_and_warn_mode_answers_with_headers(secured: tuple[httpx.Client, Path]) -> None:
    http, _ = secured
    ns = _namespace(http, {"pod-security.kubernetes.io/enforce": "privileged"})
    r = http.patch(f"/api/v1/namespaces/{ns}", content=json.dumps({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted"}}}),
        headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 200, r.text
    assert http.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("h", ports=[
        {"containerPort": 80, "hostPort": 8080}])).status_code == 403
    r = http.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("ok"))
    assert r.status_code == 201
    assert r.headers.get_list("warning")[0].startswith('299 - "would violate PodSecurity \\"restricted:latest\\":')
    deploy = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}, "spec": {
        "selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {
            "containers": [{"name": "c", "image": "busybox", "securityContext": {"privileged": True}}]}}}}
    r = http.post(f"/apis/apps/v1/namespaces/{ns}/deployments", json=deploy)
    assert r.status_code == 201, r.text  # workloads are warned, their pods refused
    assert any("baseline:latest" in w and "privileged" in w for w in r.headers.get_list("warning"))
    sdk = Client(str(http.base_url).rstrip("/"), TEST_TOKEN)
    said: list[str] = []
    sdk.on_warning = said.append  # the CLI prints these as `Warning: ...`, as kubectl does
    try:
        sdk.create({"apiVersion": "v1", "kind": "Pod", **_pod("sdk")}, ns)
    finally:
        sdk.close()
    assert said and said[0].startswith('would violate PodSecurity "restricted:latest": allowPrivilegeEscalation')
    bad = http.patch(f"/api/v1/namespaces/{ns}", content=json.dumps({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "strict"}}}), headers={"Content-Type": "application/merge-patch+json"})
    assert bad.status_code == 422 and "pod-security.kubernetes.io/enforce" in bad.text


def test_secrets_are_encrypted_in_etcd_and_plaintext_ones_still_read(
        secured: tuple[httpx.Client, Path], etcd_endpoint: str) -> None:
    http, _ = secured
    ns = _namespace(http)
    plain = base64.b64encode(b"hunter2-plaintext-marker").decode()
    r = http.post(f"/api/v1/namespaces/{ns}/secrets", json={"metadata": {"name": "s"}, "data": {"pw": plain}})
    assert r.status_code == 201, r.text
    raw = EtcdStore([etcd_endpoint])  # no transformer: what etcd holds
    try:
        member = raw._members.members[0]
        value = member.kv.Range(rpc.RangeRequest(key=f"/registry/secrets/{ns}/s".encode()), 5).kvs[0].value
        assert value.startswith(b"k8s:enc:aesgcm:v1:key1:")
        assert plain.encode() not in value and b"hunter2" not in value and b'"pw"' not in value
        assert http.get(f"/api/v1/namespaces/{ns}/secrets/s").json()["data"] == {"pw": plain}
        # a Secret written before encryption was turned on is still read (identity provider)
        raw.create(f"/registry/secrets/{ns}/old", {"apiVersion": "v1", "kind": "Secret", "metadata": {
            "name": "old", "namespace": ns, "uid": "u"}, "data": {"pw": plain}})
        assert http.get(f"/api/v1/namespaces/{ns}/secrets/old").json()["data"] == {"pw": plain}
        cm = http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "c"}, "data": {"k": "v"}})
        assert cm.status_code == 201
        cm_value = member.kv.Range(rpc.RangeRequest(key=f"/registry/configmaps/{ns}/c".encode()), 5).kvs[0].value
        assert cm_value.startswith(b"{")  # only what the configuration names is encrypted
    finally:
        raw.close()


def test_every_mutating_request_is_audited_with_user_and_code(secured: tuple[httpx.Client, Path]) -> None:
    http, state = secured
    ns = _namespace(http)
    assert http.post(f"/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "a"}}).status_code == 201
    assert http.delete(f"/api/v1/namespaces/{ns}/configmaps/a").status_code == 200
    assert http.delete(f"/api/v1/namespaces/{ns}/configmaps/a").status_code == 404
    assert http.post(f"/api/v1/namespaces/{ns}/pods", json=_pod("p", securityContext={"privileged": True})
                     ).status_code == 403
    base = str(http.base_url).rstrip("/")
    anonymous = httpx.post(f"{base}/api/v1/namespaces/{ns}/configmaps", json={"metadata": {"name": "z"}})
    assert anonymous.status_code == 401
    http.get(f"/api/v1/namespaces/{ns}/configmaps")  # reads are not audited
    watched = _namespace(http, {"pod-security.kubernetes.io/audit": "restricted"})
    assert http.post(f"/api/v1/namespaces/{watched}/pods", json=_pod("audited")).status_code == 201
    path = state / "audit" / "audit.log"

    def mine() -> list[dict[str, Any]]:
        lines = path.read_text().splitlines() if path.exists() else []
        return [e for e in map(json.loads, lines) if (e.get("objectRef") or {}).get("namespace") == ns]

    events = wait_for(lambda: len(mine()) >= 5 and mine(), timeout=10)
    got = [(e["verb"], e["objectRef"].get("name"), e["responseStatus"]["code"], e["user"]["username"])
           for e in events]
    assert got == [("create", "a", 201, "admin"), ("delete", "a", 200, "admin"), ("delete", "a", 404, "admin"),
                   ("create", "p", 403, "admin"),  # a refused create is named from its body
                   ("create", None, 401, "system:anonymous")]  # refused before its body was read
    assert all(e["sourceIPs"] == ["127.0.0.1"] and e["apiVersion"] == "audit.k8s.io/v1" for e in events)
    assert time.strptime(events[0]["requestReceivedTimestamp"][:19], "%Y-%m-%dT%H:%M:%S")
    audited = wait_for(lambda: [e for e in map(json.loads, path.read_text().splitlines())
                                if (e.get("objectRef") or {}).get("namespace") == watched], timeout=10)
    notes = audited[0]["annotations"]  # the `audit` mode: recorded, not refused
    assert notes["pod-security.kubernetes.io/enforce-policy"] == "baseline:latest"
    assert notes["pod-security.kubernetes.io/audit-violations"].startswith(
        'would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false')


def test_key_rotation_rewrites_under_the_new_key_even_when_nothing_changed(etcd_endpoint: str) -> None:
    from minik8s.api import kinds as k
    from minik8s.apiserver.resources import Resources

    def key(name: str, fill: int) -> dict[str, str]:
        return {"name": name, "secret": base64.b64encode(bytes([fill]) * 32).decode()}

    def store(*keys: dict[str, str]) -> EtcdStore:
        doc = {"apiVersion": encryption.API_VERSION, "kind": encryption.KIND, "resources": [
            {"resources": ["secrets"], "providers": [{"aesgcm": {"keys": list(keys)}}, {"identity": {}}]}]}
        return EtcdStore([etcd_endpoint], transformer=encryption.parse(doc, encryption.registry_prefix))

    secret, ns, name = k.lookup("Secret"), "default", uniq("rot")
    old, new, raw = store(key("k1", 1)), store(key("k2", 2), key("k1", 1)), EtcdStore([etcd_endpoint])

    def stored() -> bytes:
        member = raw._members.members[0]
        return bytes(member.kv.Range(rpc.RangeRequest(key=f"/registry/secrets/{ns}/{name}".encode()), 5).kvs[0].value)

    try:
        before = Resources(old).create(secret, ns, {"metadata": {"name": name}, "stringData": {"a": "b"}})
        assert stored().startswith(b"k8s:enc:aesgcm:v1:k1:")
        rotated = Resources(new)
        current = rotated.get(secret, ns, name)  # read under the old key: the new configuration still lists it
        assert current["data"] == before["data"]
        after = rotated.update(secret, ns, name, current)  # changes nothing, yet is written: re-encrypted
        assert stored().startswith(b"k8s:enc:aesgcm:v1:k2:")
        assert int(after["metadata"]["resourceVersion"]) > int(current["metadata"]["resourceVersion"])
        again = rotated.update(secret, ns, name, rotated.get(secret, ns, name))
        assert again["metadata"]["resourceVersion"] == after["metadata"]["resourceVersion"]  # now a true no-op
        rotated.delete(secret, ns, name)
    finally:
        for s in (old, new, raw):
            s.close()
