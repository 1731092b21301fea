"""Chaos: the whole control plane (Ray head and etcd) is killed with SIGKILL while traffic flows.

Containers, pod IPs and Service rules live on the nodes (dockerd, netns, nftables), so NodePort
and ClusterIP traffic must not see a single failure during the outage. Cluster DNS is a
control-plane actor: names stop resolving while it is gone, and only then. `minik8s up` then
brings the control plane back and adopts everything: same container IDs, restart counts
unchanged; the Service answers by ClusterIP, NodePort and DNS name (from a node and from inside a
pod), and the controllers resume (a pod deleted after recovery is replaced).
"""

from __future__ import annotations

import time

import httpx

from minik8s import Client
from minik8s.cluster.config import ClusterConfig
from tests.e2e.chaos.common import (
    BY_NAME,
    Traffic,
    app_containers,
    app_hostnames,
    client_pod,
    endpoint_count,
    fetch_in_pod,
    kill_control_plane,
    served_app,
    summary,
)
from tests.e2e.conftest import UP_ARGS, UP_TIMEOUT_S, leave_ray, run, wait_for

OUTAGE_S = 20.0
#: From the start of `minik8s up` to the Service answering by DNS name again (the slowest of the three).
RECOVERY_S = 180.0
AFTER_RECOVERY_S = 2.0


def test_killing_the_whole_control_plane_never_hurts_running_pods(client: Client) -> None:
    cfg = ClusterConfig()
    with client_pod(client) as pod, served_app(client, "chaos") as app:
        before = app_containers(cfg, app.name)
        assert len(before) == 6  # 3 pods: pause + web each
        traffic = Traffic(app, cfg).start()
        time.sleep(1)
        killed = time.monotonic()
        leave_ray()  # a driver whose GCS is killed exits its whole process once Ray gives up reconnecting
        kill_control_plane(cfg)
        assert run("get", "pods", check=False).returncode == 1  # the API is really gone
        time.sleep(OUTAGE_S)
        data_plane = list(app.urls)
        failed = traffic.failures(data_plane)
        assert not failed, summary(failed, len(traffic.requests))

        up_at = time.monotonic()
        run(*UP_ARGS, timeout=UP_TIMEOUT_S)
        wait_for("the Service's DNS name and the gateway host to answer again",
                 lambda: all(traffic.once(t) for t in BY_NAME), timeout=RECOVERY_S)
        recovered = time.monotonic()
        time.sleep(AFTER_RECOVERY_S)
        requests = traffic.stop()

        failed = traffic.failures(data_plane)
        assert not failed, summary(failed, len(requests))
        assert all(traffic.count(t) > 20 for t in data_plane), {t: traffic.count(t) for t in data_plane}
        assert traffic.failures(["dns"], window=None), "DNS kept answering: was the control plane really down?"
        failed = traffic.failures(list(BY_NAME), window=(killed, recovered))
        assert not failed, "DNS failed outside the outage: " + summary(failed, traffic.count("dns"))
        assert traffic.count("gateway") > 5
        assert recovered - up_at < RECOVERY_S
        assert "UNHEALTHY" not in run("status").stdout
        assert app_containers(cfg, app.name) == before  # same containers, same restart counts
        for url in app.urls.values():
            assert httpx.get(url, timeout=3).status_code == 200
        served_by = fetch_in_pod(pod, f"http://{app.dns_name}/")
        assert served_by in app_hostnames(client, app), served_by

        # the controllers resumed: a deleted pod is replaced
        pods = sorted(app_hostnames(client, app))
        run("delete", "pod", pods[0], "--grace-period", "0")
        wait_for("the replacement", lambda: endpoint_count(client, app.name) == 3
                 and pods[0] not in app_hostnames(client, app), timeout=90)
        print(f"control plane: `minik8s up` took {recovered - up_at:.1f}s to DNS answering again; "
              f"{len(requests)} requests, {len(traffic.failures())} failed (all by name, during the outage)")
