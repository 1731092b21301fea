"""Chaos: SIGKILL each control-plane and node actor in turn while traffic flows through a Service.

Ray restarts every actor by itself (max_restarts=-1); the restarted actor rebuilds from the API
and from its node. Traffic to the ClusterIP and NodePort must not fail even once, no container
is restarted or duplicated, and the proxy rebuilds byte-identical rules.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest
import ray

from minik8s import Client
from minik8s.cluster.config import ClusterConfig
from minik8s.proxy import nft
from tests.e2e.chaos.test_control_plane import NODE_IPS, app_containers
from tests.e2e.conftest import run, unique, wait_for, web_app

ACTORS = ["apiserver", "scheduler", "controller-manager", "kubelet-node-2", "proxy-node-2", "network-node-2"]
REQUEST_INTERVAL_S = 0.1
MAX_REQUESTS = 600


def actor_pid(name: str) -> int:
    cfg = ClusterConfig()
    if not ray.is_initialized():
        ray.init(address=cfg.ray_address, namespace=cfg.ray_namespace, log_to_driver=False)
    return int(ray.get(ray.get_actor(name).health.remote(), timeout=30)["pid"])


def proxy_rules(node: int) -> list[str]:
    """The proxy table's maps, sets and chains in a canonical order (nft lists chains in creation order)."""
    return nft.canonical_listing(nft.list_table("minik8s-proxy", f"mk8s-node-{node}"))


@pytest.fixture(scope="module")
def service(client: Client) -> tuple[str, list[str]]:
    name = unique("crash")
    run("apply", "-f", "-", input=web_app(name, replicas=3, service_type="NodePort"))
    wait_for("3 endpoints", lambda: sum(len(s.addresses or []) for s in client.get("Endpoints", name).subsets or [])
             == 3, timeout=120)
    svc = client.get("Service", name)
    targets = [f"http://{ip}:{svc.spec.ports[0].nodePort}/" for ip in NODE_IPS] + [f"http://{svc.spec.clusterIP}/"]
    wait_for("every target answering", lambda: all(httpx.get(u, timeout=2).status_code == 200 for u in targets))
    yield name, targets
    run("delete", "deploy", name)
    run("delete", "svc", name)


@pytest.mark.parametrize("actor", ACTORS)
def test_killed_actor_is_restarted_without_hurting_traffic(client: Client, service: tuple[str, list[str]],
                                                           actor: str) -> None:
    name, targets = service
    cfg = ClusterConfig()
    containers = app_containers(cfg, name)
    rules = proxy_rules(2)
    results: list[bool] = []
    stop = threading.Event()

    def traffic() -> None:
        for i in range(MAX_REQUESTS):
            if stop.is_set():
                return
            try:
                results.append(httpx.get(targets[i % len(targets)], timeout=2).status_code == 200)
            except httpx.HTTPError:
                results.append(False)
            time.sleep(REQUEST_INTERVAL_S)

    th = threading.Thread(target=traffic, daemon=True)
    th.start()
    old = actor_pid(actor)
    os.kill(old, signal.SIGKILL)
    new = wait_for(f"Ray to restart {actor}", lambda: (p := actor_pid(actor)) != old and p, timeout=90)
    assert new != old
    time.sleep(5)  # let the restarted actor resync
    stop.set()
    th.join(30)
    assert results and all(results), f"{results.count(False)} of {len(results)} requests failed"
    assert app_containers(cfg, name) == containers  # nothing restarted, nothing duplicated
    assert "UNHEALTHY" not in run("status").stdout
    if actor.startswith(("proxy", "network")):
        assert wait_for("identical proxy rules", lambda: proxy_rules(2) == rules, timeout=20)
