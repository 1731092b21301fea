"""kubectl itself against a real etcd + apiserver (no cluster): what `kubectl apply` twice, `kubectl patch
--type`, `kubectl apply --server-side` and `kubectl get --chunk-size` send, answered as Kubernetes would.

client-go never sends a bearer token over plain HTTP, so this module runs its own apiserver without
auth on the shared etcd (the e2e test tests/e2e/test_apply.py covers the same over TLS with a token).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import open_apiserver, uniq, write_kubeconfig

EVENTS = 120
CHUNK = 50


@pytest.fixture(scope="module")
def kubeconfig(etcd_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with open_apiserver(etcd_endpoint, "kubectl-apiserver") as url:
        yield write_kubeconfig(tmp_path_factory.mktemp("kubectl") / "kc", url)


def kubectl(kc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], capture_output=True, text=True, timeout=60)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def get(kc: Path, *args: str) -> Any:
    return json.loads(ok(kubectl(kc, "get", *args, "-o", "json")))


def manifest(name: str, ports: list[int], env: dict[str, str], sidecar: bool = False) -> str:
    containers: list[dict[str, Any]] = [{"name": "main", "image": "busybox:1", "env": [
        {"name": k, "value": v} for k, v in env.items()]}]
    if sidecar:
        containers.append({"name": "side", "image": "busybox:1"})
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": name}, "ports": [{"name": f"p{p}", "port": p} for p in ports]}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                  "spec": {"selector": {"matchLabels": {"app": name}},
                           "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}}}
    return yaml.safe_dump(service) + "---\n" + yaml.safe_dump(deployment)


def test_kubectl_apply_twice_with_edited_lists(kubeconfig: Path, tmp_path: Path) -> None:
    name = uniq("app")
    path = tmp_path / "app.yaml"
    path.write_text(manifest(name, [80, 443], {"A": "1", "B": "2"}))
    ok(kubectl(kubeconfig, "apply", "-f", str(path)))
    cluster_ip = get(kubeconfig, "svc", name)["spec"]["clusterIP"]
    path.write_text(manifest(name, [80], {"A": "3", "C": "4"}, sidecar=True))
    out = ok(kubectl(kubeconfig, "apply", "-f", str(path)))
    assert f"service/{name} configured" in out and f"deployment.apps/{name} configured" in out
    svc = get(kubeconfig, "svc", name)
    assert [p["port"] for p in svc["spec"]["ports"]] == [80] and svc["spec"]["clusterIP"] == cluster_ip
    containers = get(kubeconfig, "deploy", name)["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main", "side"]
    assert containers[0]["env"] == [{"name": "A", "value": "3"}, {"name": "C", "value": "4"}]
    assert f"service/{name} unchanged" in ok(kubectl(kubeconfig, "apply", "-f", str(path)))
    # minik8s apply's three-way patch and kubectl's agree: the SDK takes over from kubectl's annotation
    from minik8s import Client

    url = json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    client = Client(url, None)
    try:
        _, outcome = client.apply_outcome(yaml.safe_load(manifest(name, [443], {}).split("---")[0]))
    finally:
        client.close()
    assert outcome == "configured"
    assert [p["port"] for p in get(kubeconfig, "svc", name)["spec"]["ports"]] == [443]


def test_kubectl_patch_types_and_server_side_apply(kubeconfig: Path, tmp_path: Path) -> None:
    name = uniq("svc")
    path = tmp_path / "svc.yaml"
    path.write_text(manifest(name, [80], {}).split("---")[0])
    ok(kubectl(kubeconfig, "create", "-f", str(path)))
    ok(kubectl(kubeconfig, "patch", "svc", name, "-p", '{"spec":{"ports":[{"name":"b","port":81}]}}'))
    ok(kubectl(kubeconfig, "patch", "svc", name, "--type=json", "-p",
               '[{"op":"replace","path":"/spec/ports/0/port","value":90}]'))
    assert [p["port"] for p in get(kubeconfig, "svc", name)["spec"]["ports"]] == [90, 81]
    failed = kubectl(kubeconfig, "patch", "svc", name, "--type=json", "-p",
                     '[{"op":"test","path":"/spec/ports/0/port","value":1}]')
    assert failed.returncode != 0 and "testing value /spec/ports/0/port failed" in failed.stderr
    ok(kubectl(kubeconfig, "patch", "svc", name, "--type=merge", "-p", '{"spec":{"ports":[{"name":"c","port":7}]}}'))
    assert [p["port"] for p in get(kubeconfig, "svc", name)["spec"]["ports"]] == [7]
    ssa = kubectl(kubeconfig, "apply", "--server-side", "-f", str(path))
    assert ssa.returncode != 0
    assert "Server-side apply not available on the server" in ssa.stderr and "client-side apply" in ssa.stderr
    assert [p["port"] for p in get(kubeconfig, "svc", name)["spec"]["ports"]] == [7]  # nothing written
    missing = tmp_path / "missing.yaml"
    missing.write_text(manifest(uniq("none"), [80], {}).split("---")[0])
    ssa = kubectl(kubeconfig, "apply", "--server-side", "-f", str(missing))  # would create: refused the same
    assert ssa.returncode != 0 and "Server-side apply not available on the server" in ssa.stderr


def test_kubectl_get_in_chunks(kubeconfig: Path) -> None:
    namespace = uniq("chunks")
    url = json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    with httpx.Client(base_url=url) as http:
        assert http.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).status_code == 201
        for i in range(EVENTS):
            r = http.post(f"/api/v1/namespaces/{namespace}/events", json={
                "metadata": {"name": f"ev-{i:03d}"}, "involvedObject": {"kind": "Pod", "name": f"pod-{i}"},
                "reason": "Test", "message": f"event {i}", "type": "Normal"})
            assert r.status_code == 201, r.text
    run = kubectl(kubeconfig, "get", "events", "-n", namespace, "--chunk-size", str(CHUNK), "-v=6")
    rows = ok(run).splitlines()[1:]
    assert len(rows) == EVENTS
    requests = [line for line in run.stderr.splitlines() if "GET" in line and f"limit={CHUNK}" in line]
    assert len(requests) == -(-EVENTS // CHUNK)  # one request per chunk
    assert len(ok(kubectl(kubeconfig, "get", "events", "-n", namespace, "-o", "name")).split()) == EVENTS
    picked = ok(kubectl(kubeconfig, "get", "events", "-n", namespace, "--field-selector", "involvedObject.name=pod-7",
                        "-o", "name"))
    assert picked.split() == ["event/ev-007"]
    bad = kubectl(kubeconfig, "get", "events", "-n", namespace, "--field-selector", "spec.nodeName=x")
    assert bad.returncode != 0 and "field label not supported: spec.nodeName" in bad.stderr


def test_generator_protobuf_body_is_read(kubeconfig: Path) -> None:
    """`kubectl create namespace` (a generator) sends protobuf: the namespace is created as asked."""
    name = uniq("proto")
    assert ok(kubectl(kubeconfig, "create", "namespace", name)).strip() == f"namespace/{name} created"
    assert get(kubeconfig, "namespace", name)["metadata"]["name"] == name


def test_binary_bodies_minik8s_cannot_read_are_refused_with_415(kubeconfig: Path) -> None:
    """Protobuf of a kind without a decoding table, and CBOR: Kubernetes' 415 naming what is accepted,
    not a JSON parse error."""
    from minik8s.apiserver import protobuf

    server = json.loads(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    type_meta = b"\x0a\x02v1\x12\x03Pod"
    pod = protobuf.MAGIC + b"\x0a" + bytes([len(type_meta)]) + type_meta + b"\x12\x00"
    for content_type, body in ((protobuf.MEDIA_TYPE, pod), ("application/cbor", b"\xa0")):
        answer = httpx.post(f"{server}/api/v1/namespaces/default/pods", content=body,
                            headers={"Content-Type": content_type}, timeout=10)
        assert answer.status_code == 415, answer.text
        assert answer.json()["reason"] == "UnsupportedMediaType"
        assert "application/json" in answer.json()["message"]


def server_of(kc: Path) -> str:
    return str(json.loads(kc.read_text())["clusters"][0]["cluster"]["server"])


def test_kubectl_create_token(kubeconfig: Path) -> None:
    """`kubectl create token` posts a TokenRequest and prints the token (a JWT naming the account)."""
    import base64

    name = uniq("robot")
    httpx.post(f"{server_of(kubeconfig)}/api/v1/namespaces/default/serviceaccounts",
               json={"metadata": {"name": name}}).raise_for_status()
    token = ok(kubectl(kubeconfig, "create", "token", name, "--duration", "15m", "--audience", "minik8s")).strip()
    body = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    assert claims["sub"] == f"system:serviceaccount:default:{name}" and claims["aud"] == ["minik8s"]
    assert claims["exp"] - claims["iat"] == 900
    missing = kubectl(kubeconfig, "create", "token", uniq("nosuch"))
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_kubectl_apply_twice_with_an_edited_secret_string_data(kubeconfig: Path, tmp_path: Path) -> None:
    """What the e2e live-update test sends: the Secret's second apply patches `stringData`, which the API
    folds into `data` (and never keeps), so the kubelet sees a new resourceVersion and new bytes."""
    import base64

    name = uniq("sec")
    path = tmp_path / "secret.yaml"

    def apply(password: str) -> str:
        path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
                                        "stringData": {"PASSWORD": password, "token": "abc"}}))
        return ok(kubectl(kubeconfig, "apply", "-f", str(path)))

    assert f"secret/{name} created" in apply("s3cret")
    before = get(kubeconfig, "secret", name)
    assert f"secret/{name} configured" in apply("n3w-secret")
    after = get(kubeconfig, "secret", name)
    assert base64.b64decode(after["data"]["PASSWORD"]) == b"n3w-secret"
    assert base64.b64decode(after["data"]["token"]) == b"abc" and "stringData" not in after
    assert after["metadata"]["resourceVersion"] != before["metadata"]["resourceVersion"]
    ok(kubectl(kubeconfig, "delete", "secret", name))
