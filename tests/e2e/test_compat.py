"""kubectl and the official kubernetes Python client against the cluster; the token is required."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import httpx

from minik8s import Client
from tests.e2e.conftest import MINIK8S, run, unique, wait_for, wait_running


def kubectl(kc: Path, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], input=input, capture_output=True, text=True,
                          timeout=120)


def test_kubectl_create_get_delete(client: Client, kubeconfig: Path, ns: str, tmp_path: Path) -> None:
    name = unique("kctl")
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(f"""apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  containers:
  - name: main
    image: busybox
    command: ["sleep", "3600"]
""")
    created = kubectl(kubeconfig, "create", "-n", ns, "-f", str(manifest))
    assert created.returncode == 0, created.stderr
    assert f"pod/{name} created" in created.stdout
    wait_running(client, name, namespace=ns)
    table = kubectl(kubeconfig, "get", "pods", "-n", ns)
    assert table.returncode == 0 and table.stdout.startswith("NAME")
    assert any(line.startswith(name) and "Running" in line for line in table.stdout.splitlines())
    as_yaml = kubectl(kubeconfig, "get", "pod", name, "-n", ns, "-o", "yaml")
    assert f"name: {name}" in as_yaml.stdout and "podIP:" in as_yaml.stdout
    nodes = kubectl(kubeconfig, "get", "nodes")
    assert "node-1" in nodes.stdout and "Ready" in nodes.stdout
    deleted = kubectl(kubeconfig, "delete", "pod", name, "-n", ns, "--grace-period=1")
    assert deleted.returncode == 0, deleted.stderr
    assert f'pod "{name}" deleted' in deleted.stdout
    assert name not in kubectl(kubeconfig, "get", "pods", "-n", ns).stdout


def test_kubernetes_python_client(client: Client, kubeconfig: Path, ns: str) -> None:
    from kubernetes import client as k8s
    from kubernetes import config, watch

    api = k8s.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    name = unique("pyk8s")
    seen: list[str] = []
    start_rv = api.list_namespaced_pod(ns).metadata.resource_version

    def watcher() -> None:
        w = watch.Watch()
        for ev in w.stream(api.list_namespaced_pod, ns, resource_version=start_rv,
                           field_selector=f"metadata.name={name}", timeout_seconds=60):
            seen.append(ev["type"])
            if ev["type"] == "DELETED":
                w.stop()

    th = threading.Thread(target=watcher, daemon=True)
    th.start()
    body = k8s.V1Pod(metadata=k8s.V1ObjectMeta(name=name, labels={"from": "pyk8s"}),
                     spec=k8s.V1PodSpec(containers=[k8s.V1Container(name="main", image="busybox",
                                                                    command=["sleep", "3600"])]))
    api.create_namespaced_pod(ns, body)
    listed = api.list_namespaced_pod(ns, label_selector="from=pyk8s")
    assert name in [p.metadata.name for p in listed.items]
    wait_running(client, name, namespace=ns)
    assert api.read_namespaced_pod(name, ns).status.phase == "Running"
    api.delete_namespaced_pod(name, ns, grace_period_seconds=0)
    th.join(timeout=60)
    assert seen[0] == "ADDED" and "MODIFIED" in seen and seen[-1] == "DELETED"


def test_request_without_token_is_refused(cluster: None) -> None:
    # only reads (and is refused): the path names `default`, a namespace every cluster has
    cfg = Client.from_config()
    resp = httpx.get(f"{cfg.server}/api/v1/namespaces/default/pods", verify=False)
    assert resp.status_code == 401
    assert resp.json()["kind"] == "Status"
    wrong = httpx.get(f"{cfg.server}/api/v1/pods", headers={"Authorization": "Bearer nope"}, verify=False)
    assert wrong.status_code == 401


def test_apiserver_listens_on_loopback_and_underlay_only(cluster: None) -> None:
    out = subprocess.run(["ss", "-Htln", "sport = :6443"], capture_output=True, text=True).stdout
    addrs = {line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.strip()}
    assert addrs and addrs <= {"127.0.0.1", "10.200.0.1"}, addrs


def test_get_watch_prints_changes(client: Client, ns: str) -> None:
    name = unique("watch")
    proc = subprocess.Popen([MINIK8S, "get", "pods", "-n", ns, "-w"], stdout=subprocess.PIPE, text=True)
    try:
        run("apply", "-n", ns, "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec: {{containers: [{{name: main, image: busybox, command: [sleep, "3600"]}}]}}
""")
        lines: list[str] = []
        assert proc.stdout is not None

        def running_line() -> bool:
            line = proc.stdout.readline()  # type: ignore[union-attr]
            lines.append(line)
            return line.startswith(name) and "Running" in line

        wait_for("a Running line from get -w", running_line, timeout=60, interval=0)
    finally:
        proc.terminate()
        proc.wait(10)
    run("delete", "pod", "-n", ns, name, "--grace-period", "0")
