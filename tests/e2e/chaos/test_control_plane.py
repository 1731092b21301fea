"""Chaos: the whole control plane (Ray head and etcd) is killed with SIGKILL while traffic flows.

Containers, pod IPs and Service rules live on the nodes (dockerd, netns, nftables), so NodePort
and ClusterIP traffic must not see a single failure during the outage. `minik8s up` then brings
the control plane back and adopts everything: same container IDs, restart counts unchanged, and
the controllers resume (a pod deleted after recovery is replaced).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import docker
import httpx

from minik8s import Client
from minik8s.cluster.config import ClusterConfig
from minik8s.cluster.local import _etcd, _ray_head
from minik8s.cluster.procs import session_members
from minik8s.kubelet import labels as L
from tests.e2e.conftest import UP_ARGS, UP_TIMEOUT_S, run, unique, wait_for, web_app

NODE_IPS = ["10.200.0.11", "10.200.0.12", "10.200.0.13"]
OUTAGE_S = 20.0
REQUEST_INTERVAL_S = 0.1
MAX_REQUESTS = 3000


def app_containers(cfg: ClusterConfig, app: str) -> dict[str, str]:
    """container id -> restart-count label, for the app's pods' containers (pause included) on every node."""
    out = {}
    for i in (1, 2, 3):
        dk = docker.DockerClient(base_url=cfg.node(i).docker_url)
        for c in dk.containers.list(filters={"label": L.POD_NAME}):
            if c.labels.get(L.POD_NAME, "").startswith(app):
                out[c.id] = c.labels.get(L.RESTART_COUNT, "")
    return out


def kill_control_plane(cfg: ClusterConfig) -> None:
    for proc in (_ray_head(cfg), _etcd(cfg)):
        pid = proc.pid()
        assert pid is not None, f"{proc.name} is not running"
        for member in session_members(os.getsid(pid)):
            os.kill(member, signal.SIGKILL)


def test_killing_the_whole_control_plane_never_hurts_running_pods(client: Client) -> None:
    cfg = ClusterConfig()
    name = unique("chaos")
    run("apply", "-f", "-", input=web_app(name, replicas=3, service_type="NodePort"))

    def endpoints() -> int:
        ep = client.get("Endpoints", name)
        return sum(len(s.addresses or []) for s in ep.subsets or [])

    wait_for("3 endpoints", lambda: endpoints() == 3, timeout=120)
    svc = client.get("Service", name)
    vip, node_port = svc.spec.clusterIP, svc.spec.ports[0].nodePort
    targets = [f"http://{ip}:{node_port}/" for ip in NODE_IPS] + [f"http://{vip}/"]
    wait_for("every target answering", lambda: all(httpx.get(u, timeout=2).status_code == 200 for u in targets))
    before = app_containers(cfg, name)
    assert len(before) == 6  # 3 pods: pause + web each

    results: list[tuple[str, bool]] = []
    stop = threading.Event()

    def traffic() -> None:  # bounded in count and time
        for i in range(MAX_REQUESTS):
            if stop.is_set():
                return
            url = targets[i % len(targets)]
            try:
                results.append((url, httpx.get(url, timeout=2).status_code == 200))
            except httpx.HTTPError:
                results.append((url, False))
            time.sleep(REQUEST_INTERVAL_S)

    th = threading.Thread(target=traffic, daemon=True)
    th.start()
    kill_control_plane(cfg)
    assert run("get", "pods", check=False).returncode == 1  # the API is really gone
    time.sleep(OUTAGE_S)
    during = list(results)
    stop.set()
    th.join(10)
    failed = [u for u, ok in during if not ok]
    assert len(during) > 50 and not failed, f"{len(failed)} of {len(during)} requests failed: {failed[:5]}"

    run(*UP_ARGS, timeout=UP_TIMEOUT_S)
    assert "UNHEALTHY" not in run("status").stdout
    after = app_containers(cfg, name)
    assert after == before  # same containers, same restart counts: nothing was restarted
    for url in targets:
        assert httpx.get(url, timeout=3).status_code == 200
    # the controllers resumed: a deleted pod is replaced
    pods = [p.metadata.name for p in client.list("Pod", "default", label_selector=f"app={name}").items]
    run("delete", "pod", pods[0], "--grace-period", "0")
    wait_for("the replacement", lambda: endpoints() == 3 and pods[0] not in [
        p.metadata.name for p in client.list("Pod", "default", label_selector=f"app={name}").items], timeout=90)
    run("delete", "deploy", name)
    run("delete", "svc", name)
