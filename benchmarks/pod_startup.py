"""Pod start-up latency through minik8s versus the same containers started directly with Docker.

Run on a cluster made by `minik8s up` (as root):

    .venv/bin/python benchmarks/pod_startup.py [--pods 30]

For each of N pods: time from the create call to the pod being seen Running (all containers
ready) on a watch. Baseline, same run, same node dockerd: create+start a pause container and
an app container joined to its network namespace with the Docker SDK (one at a time for the serial run;
all N pairs at once, spread over the nodes' dockerds, for the burst). Prints p50/p99 of both
and the ratio (target: p50 <= 2x direct, p99 <= 1.5 s), then the RSS of the whole control
plane + node processes when idle.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker

from benchmarks import smoke
from minik8s import Client
from minik8s.cluster import local
from minik8s.cluster.config import ClusterConfig
from minik8s.images.base import PAUSE_IMAGE

APP_CMD = ["sleep", "3600"]
SETTLE_S = 5.0
POD_TIMEOUT_S = 300.0
POLL_S = 0.005


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def through_minik8s(client: Client, n: int, sequential: bool) -> list[float]:
    tag = uuid.uuid4().hex[:6]
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    start_rv = client.list("Pod", "default").resource_version
    done = threading.Event()

    def watch() -> None:
        for ev in client.watch("Pod", "default", start_rv, label_selector=f"bench={tag}"):
            pod = ev.object
            statuses = (pod.status.containerStatuses if pod.status else None) or []
            if pod.status and pod.status.phase == "Running" and statuses and all(s.ready for s in statuses):
                running.setdefault(pod.metadata.name, time.perf_counter())
                if len(running) == n:
                    done.set()
                    return

    threading.Thread(target=watch, daemon=True).start()
    for i in range(n):
        name = f"bench-{tag}-{i}"
        created[name] = time.perf_counter()
        client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"bench": tag}},
                       "spec": {"containers": [{"name": "app", "image": "busybox", "command": APP_CMD}],
                                "terminationGracePeriodSeconds": 0}})
        while sequential and name not in running and time.perf_counter() - created[name] < POD_TIMEOUT_S:
            time.sleep(POLL_S)
    done.wait(POD_TIMEOUT_S)
    latencies = [running[k] - created[k] for k in created if k in running]
    for name in created:
        client.delete("Pod", name, grace_period_seconds=0)
    time.sleep(SETTLE_S)
    return latencies


def start_pair(engine: docker.DockerClient, name: str) -> list[Any]:
    """A pause container and an app container joined to its namespaces, as the kubelet makes a pod; [app, pause]."""
    pause = engine.containers.run(PAUSE_IMAGE, detach=True, ipc_mode="shareable", name=f"{name}-{uuid.uuid4().hex[:4]}")
    app = engine.containers.run("busybox", APP_CMD, detach=True, network_mode=f"container:{pause.id}",
                                ipc_mode=f"container:{pause.id}")
    return [app, pause]


def direct_docker(node_docker: docker.DockerClient, n: int) -> list[float]:
    latencies, made = [], []
    for i in range(n):
        t0 = time.perf_counter()
        made += start_pair(node_docker, f"direct-pause-{i}")
        latencies.append(time.perf_counter() - t0)
    for c in made:
        c.remove(force=True)
    return latencies


def direct_docker_burst(dockers: list[docker.DockerClient], n: int) -> list[float]:
    """The burst's baseline: the same N pause+app pairs started at once (one thread each), spread over the
    nodes' dockerds as the scheduler spreads the pods; each latency from that pair's start to its app running."""
    made: list[Any] = []
    lock = threading.Lock()

    def pair(i: int) -> float:
        t0 = time.perf_counter()
        pair_made = start_pair(dockers[i % len(dockers)], f"direct-burst-{i}")
        elapsed = time.perf_counter() - t0
        with lock:
            made.extend(pair_made)
        return elapsed

    with ThreadPoolExecutor(n) as pool:
        latencies = list(pool.map(pair, range(n)))
    for c in made:
        c.remove(force=True)
    return latencies


def rss_mb(state_dir: Path) -> float:
    """Resident memory of etcd, registry, dockerds and every Ray process of the cluster."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if str(state_dir) not in cmd and "ray" not in cmd and "minik8s" not in cmd:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=30)
    args = smoke.parse(parser, pods=3)
    cfg = ClusterConfig()
    client = Client.from_config()
    node_docker = docker.DockerClient(base_url=cfg.node(1).docker_url)
    # every node of this machine that runs: a joined-then-removed node may leave its directory behind
    engines = [docker.DockerClient(base_url=n.docker_url) for n in local.known_nodes(cfg) if n.docker_socket.exists()]
    baselines = {True: direct_docker(node_docker, args.pods), False: direct_docker_burst(engines, args.pods)}
    for label, sequential in (("one at a time", True), ("all at once (burst)", False)):
        direct = baselines[sequential]
        d50, d99 = percentile(direct, 50), percentile(direct, 99)
        print(f"direct docker (pause+app), {label}: p50 {d50 * 1000:.0f} ms  p99 {d99 * 1000:.0f} ms")
        ours = through_minik8s(client, args.pods, sequential)
        o50, o99 = percentile(ours, 50), percentile(ours, 99)
        print(f"minik8s create->Running, {label}: {len(ours)}/{args.pods} running, p50 {o50 * 1000:.0f} ms  "
              f"p99 {o99 * 1000:.0f} ms  mean {statistics.mean(ours) * 1000:.0f} ms  "
              f"ratio p50 minik8s/direct {o50 / d50:.2f} (target <= 2.0), p99 {o99:.2f} s (target <= 1.5 s)")
    time.sleep(SETTLE_S)
    print(f"idle RSS, control plane + {len(list(cfg.nodes_dir.glob('node-*')))} node(s): "
          f"{rss_mb(cfg.state_dir):.0f} MB")


if __name__ == "__main__":
    main()
