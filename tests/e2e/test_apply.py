"""kubectl's apply, patch and chunked get against the cluster, with Kubernetes' results: client-side apply
run twice with edited lists (a Service's ports shrink, a container's env changes, a container is added),
`kubectl patch --type json|merge|strategic`, `kubectl apply --server-side` refused with a clear message,
`kubectl get --chunk-size` paging, and `minik8s apply` doing the same three-way merge."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from minik8s import Client
from tests.e2e.conftest import run, unique, wait_for

CHUNKED_EVENTS = 120
CHUNK = 50


def kubectl(kc: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], capture_output=True, text=True, timeout=120)


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def app_manifest(name: str, ports: list[int], env: dict[str, str], sidecar: bool = False) -> str:
    """A Service and a Deployment of busybox sleepers, as two YAML documents."""
    containers: list[dict[str, Any]] = [{"name": "main", "image": "busybox", "command": ["sleep", "3600"],
                                         "env": [{"name": k, "value": v} for k, v in env.items()]}]
    if sidecar:
        containers.append({"name": "side", "image": "busybox", "command": ["sleep", "3600"]})
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
               "spec": {"selector": {"app": name}, "ports": [{"name": f"p{p}", "port": p} for p in ports]}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                  "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                           "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": containers}}}}
    return yaml.safe_dump(service) + "---\n" + yaml.safe_dump(deployment)


def service_ports(kc: Path, name: str, ns: str) -> list[int]:
    jsonpath = "jsonpath={.spec.ports[*].port}"
    return [int(p) for p in ok(kubectl(kc, "get", "svc", name, "-n", ns, "-o", jsonpath)).split()]


def test_kubectl_apply_twice_merges_edited_lists(client: Client, kubeconfig: Path, ns: str, tmp_path: Path) -> None:
    name = unique("apply")
    manifest = tmp_path / "app.yaml"
    manifest.write_text(app_manifest(name, [80, 443], {"A": "1", "B": "2"}))
    assert f"service/{name} created" in ok(kubectl(kubeconfig, "apply", "-n", ns, "-f", str(manifest)))
    cluster_ip = client.get("Service", name, ns).spec.clusterIP
    manifest.write_text(app_manifest(name, [80], {"A": "3", "C": "4"}, sidecar=True))
    out = ok(kubectl(kubeconfig, "apply", "-n", ns, "-f", str(manifest)))
    assert f"service/{name} configured" in out and f"deployment.apps/{name} configured" in out
    assert service_ports(kubeconfig, name, ns) == [80]
    assert client.get("Service", name, ns).spec.clusterIP == cluster_ip  # set by the server: kept
    spec = client.get("Deployment", name, ns).to_dict()["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["main", "side"]
    assert spec["containers"][0]["env"] == [{"name": "A", "value": "3"}, {"name": "C", "value": "4"}]

    def rolled_out() -> Any:  # the new template reaches a running pod
        pods = client.list("Pod", ns, label_selector=f"app={name}").items
        return [p for p in pods if p.status and p.status.phase == "Running" and len(p.spec.containers) == 2
                and {e.name: e.value for e in p.spec.containers[0].env or []} == {"A": "3", "C": "4"}]

    wait_for("a pod of the applied template", rolled_out, timeout=180)
    assert "unchanged" in ok(kubectl(kubeconfig, "apply", "-n", ns, "-f", str(manifest)))
    ok(kubectl(kubeconfig, "delete", "-n", ns, "-f", str(manifest)))


def test_kubectl_patch_types(client: Client, kubeconfig: Path, ns: str) -> None:
    name = unique("patch")
    client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                   "spec": {"selector": {"app": name}, "ports": [{"name": "a", "port": 80}]}}, ns)
    ok(kubectl(kubeconfig, "patch", "svc", name, "-n", ns, "--type=strategic", "-p",
               '{"spec":{"ports":[{"name":"b","port":443}]}}'))
    assert service_ports(kubeconfig, name, ns) == [80, 443]
    ok(kubectl(kubeconfig, "patch", "svc", name, "-n", ns, "--type=json", "-p",
               '[{"op":"add","path":"/spec/ports/-","value":{"name":"c","port":8080}},'
               '{"op":"remove","path":"/spec/ports/0"}]'))
    assert service_ports(kubeconfig, name, ns) == [443, 8080]
    failed = kubectl(kubeconfig, "patch", "svc", name, "-n", ns, "--type=json", "-p",
                     '[{"op":"test","path":"/spec/ports/0/port","value":1}]')
    assert failed.returncode != 0 and "test failed" in failed.stderr
    ok(kubectl(kubeconfig, "patch", "svc", name, "-n", ns, "--type=merge", "-p",
               '{"spec":{"ports":[{"name":"d","port":9}]}}'))
    assert service_ports(kubeconfig, name, ns) == [9]
    client.delete("Service", name, ns)


def test_server_side_apply_is_refused_clearly(kubeconfig: Path, ns: str, tmp_path: Path) -> None:
    name = unique("ssa")
    manifest = tmp_path / "svc.yaml"
    manifest.write_text(app_manifest(name, [80], {}).split("---")[0])
    refused = kubectl(kubeconfig, "apply", "-n", ns, "--server-side", "-f", str(manifest))
    assert refused.returncode != 0
    assert "Server-side apply not available" in refused.stderr and "client-side apply" in refused.stderr
    assert kubectl(kubeconfig, "get", "svc", name, "-n", ns).returncode != 0  # nothing was written


def test_minik8s_apply_twice_removes_what_the_manifest_dropped(client: Client, ns: str, tmp_path: Path) -> None:
    name = unique("mapply")
    manifest = tmp_path / "svc.yaml"
    manifest.write_text(app_manifest(name, [80, 443], {}).split("---")[0])
    assert f"service/{name} created" in run("apply", "-n", ns, "-f", str(manifest)).stdout
    manifest.write_text(app_manifest(name, [443], {}).split("---")[0])
    assert f"service/{name} configured" in run("apply", "-n", ns, "-f", str(manifest)).stdout
    assert [p.port for p in client.get("Service", name, ns).spec.ports] == [443]
    assert f"service/{name} unchanged" in run("apply", "-n", ns, "-f", str(manifest)).stdout
    client.delete("Service", name, ns)


def test_kubectl_get_in_chunks(client: Client, kubeconfig: Path, ns: str) -> None:
    namespace = ns  # its own namespace, so the listing holds only these events
    for i in range(CHUNKED_EVENTS):
        client.create({"apiVersion": "v1", "kind": "Event", "metadata": {"name": f"ev-{i:03d}", "namespace": namespace},
                       "involvedObject": {"kind": "Pod", "name": f"pod-{i}", "namespace": namespace},
                       "reason": "Test", "message": f"event {i}", "type": "Normal"}, namespace)
    chunked = kubectl(kubeconfig, "get", "events", "-n", namespace, "--chunk-size", str(CHUNK), "-o", "name", "-v=6")
    names = ok(chunked).split()
    assert sorted(names) == sorted(f"event/ev-{i:03d}" for i in range(CHUNKED_EVENTS))
    requests = [line for line in chunked.stderr.splitlines() if "GET" in line and f"limit={CHUNK}" in line]
    assert len(requests) == -(-CHUNKED_EVENTS // CHUNK)  # one request per chunk
    unsupported = kubectl(kubeconfig, "get", "events", "-n", namespace, "--field-selector", "spec.nodeName=x")
    assert unsupported.returncode != 0 and "field label not supported: spec.nodeName" in unsupported.stderr
    selected = ok(kubectl(kubeconfig, "get", "events", "-n", namespace, "--field-selector",
                          "involvedObject.name=pod-7", "-o", "name"))
    assert selected.split() == ["event/ev-007"]
