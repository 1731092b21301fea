"""The cluster itself: status, the Node and its Lease, and a kubelet that Ray restarts."""

from __future__ import annotations

import os
import signal

import docker
import ray

from minik8s import Client
from minik8s.cluster import raytoken
from minik8s.cluster.config import ClusterConfig
from tests.e2e.conftest import run, unique, wait_for, wait_running


def test_status_reports_every_component_healthy(cluster: None) -> None:
    out = run("status").stdout
    for component in ("etcd", "registry", "apiserver", "scheduler", "kubelet-node-1"):
        rows = [line for line in out.splitlines() if component in line]
        assert rows and all("UNHEALTHY" not in r and "healthy" in r for r in rows), out


def test_node_registered_with_capacity_and_lease(client: Client) -> None:
    node = client.get("Node", "node-1", None)
    assert node.status and node.status.capacity and node.status.allocatable
    assert {"cpu", "memory", "pods"} <= set(node.status.allocatable)
    assert any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])
    assert any(a.type == "InternalIP" and a.address == "10.200.0.11" for a in node.status.addresses or [])
    lease = client.get("Lease", "node-1", "kube-node-lease")
    assert lease.spec.holderIdentity == "node-1" and lease.spec.renewTime
    table = run("get", "nodes", "-o", "wide").stdout
    assert "INTERNAL-IP" in table and "10.200.0.11" in table and "Ready" in table


def _kubelet_pid() -> int:
    cfg = ClusterConfig()
    if not ray.is_initialized():
        raytoken.use(cfg.ray_token_path)
        ray.init(address=cfg.ray_address, namespace=cfg.ray_namespace, log_to_driver=False)
    return int(ray.get(ray.get_actor("kubelet-node-1").health.remote(), timeout=30)["pid"])


def test_killed_kubelet_is_restarted_and_adopts_containers(client: Client) -> None:
    # left in `default`: it kills node-1's kubelet; its pods' names are unique, so leftovers cannot fail it
    name = unique("adopt")
    run("apply", "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: node-1}}
  containers: [{{name: main, image: busybox, command: [sleep, "3600"]}}]
""")
    wait_running(client, name)
    node = ClusterConfig().node(1)
    dk = docker.DockerClient(base_url=node.docker_url)
    before = sorted(c.id for c in dk.containers.list(all=True) if name in str(c.labels))
    assert len(before) == 2  # pause + main
    old_pid = _kubelet_pid()
    os.kill(old_pid, signal.SIGKILL)
    new_pid = wait_for("Ray to restart the kubelet", lambda: (p := _kubelet_pid()) != old_pid and p, timeout=90)
    assert new_pid != old_pid
    new_name = unique("after")
    run("apply", "-f", "-", input=f"""apiVersion: v1
kind: Pod
metadata: {{name: {new_name}}}
spec:
  nodeSelector: {{kubernetes.io/hostname: node-1}}
  containers: [{{name: main, image: busybox, command: [sleep, "3600"]}}]
""")
    wait_running(client, new_name)
    after = sorted(c.id for c in dk.containers.list(all=True) if name in str(c.labels))
    assert after == before
    assert client.get("Pod", name).status.containerStatuses[0].restartCount == 0
    run("delete", "pod", name, new_name, "--grace-period", "0")
