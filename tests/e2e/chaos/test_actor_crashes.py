"""Chaos: SIGKILL each control-plane and node actor in turn while traffic flows through a Service.

Ray restarts every actor by itself (max_restarts=-1); the restarted actor rebuilds from the API
and from its node. Traffic to the ClusterIP, the NodePorts and the Service's DNS name must not
fail even once, no container is restarted or duplicated, and the proxy rebuilds byte-identical rules.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any, cast

import pytest
import ray

from minik8s import Client
from minik8s.cluster import raytoken
from minik8s.cluster.config import ClusterConfig
from tests.e2e.chaos.common import App, Traffic, app_containers, served_app, summary
from tests.e2e.conftest import run, wait_for

ACTORS = ["apiserver", "scheduler", "controller-manager", "kubelet-node-2", "proxy-node-2", "network-node-2"]
#: The restarted actor gets this long to resync while traffic still flows.
RESYNC_S = 5.0


def actor_pid(name: str) -> int:
    cfg = ClusterConfig()
    if not ray.is_initialized():
        raytoken.use(cfg.ray_token_path)
        ray.init(address=cfg.ray_address, namespace=cfg.ray_namespace, log_to_driver=False)
    health = cast(dict[str, Any], ray.get(ray.get_actor(name).health.remote(), timeout=30))
    return int(health["pid"])


def proxy_rules(node: int) -> list[str]:
    """The proxy table's maps, sets and chains, each as text, sorted: nft lists chains in creation order."""
    text = subprocess.run(["ip", "netns", "exec", f"mk8s-node-{node}", "nft", "list", "table", "ip",
                           "minik8s-proxy"], capture_output=True, text=True, timeout=30).stdout
    body = text.strip().removesuffix("}")  # the table's closing brace would stick to whichever chain is last
    return sorted(block.strip() for block in body.split("\n\n"))


@pytest.fixture(scope="module")
def app(client: Client) -> Iterator[App]:
    with served_app(client, "crash") as served:
        yield served


@pytest.mark.parametrize("actor", ACTORS)
def test_killed_actor_is_restarted_without_hurting_traffic(client: Client, app: App, actor: str) -> None:
    cfg = ClusterConfig()
    containers = app_containers(cfg, app.name)
    rules = proxy_rules(2)
    traffic = Traffic(app, cfg).start()
    old = actor_pid(actor)
    os.kill(old, signal.SIGKILL)
    new = wait_for(f"Ray to restart {actor}", lambda: (p := actor_pid(actor)) != old and p, timeout=90)
    assert new != old
    time.sleep(RESYNC_S)
    requests = traffic.stop()
    assert requests and not traffic.failures(), summary(traffic.failures(), len(requests))
    assert traffic.count("dns") > 0 and traffic.count("gateway") > 0
    assert app_containers(cfg, app.name) == containers  # nothing restarted, nothing duplicated
    # every component healthy again (a probe of etcd on this 2-core machine may miss once under load)
    wait_for("status: all healthy", lambda: run("status", check=False, timeout=180).returncode == 0, timeout=60)
    if actor.startswith(("proxy", "network")):
        assert wait_for("identical proxy rules", lambda: proxy_rules(2) == rules, timeout=20)
