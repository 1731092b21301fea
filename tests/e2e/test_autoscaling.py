"""Metrics and autoscaling on the live cluster: `top`, a CPU HPA under load from a pod, a memory HPA."""

from __future__ import annotations

import textwrap
import threading
import time
from pathlib import Path

from minik8s import Client
from tests.e2e.conftest import REPO, run, unique, wait_for, wait_running

HPA_EXAMPLE = Path(REPO) / "examples" / "hpa" / "hpa.yaml"
LOAD_EXAMPLE = Path(REPO) / "examples" / "hpa" / "load.yaml"


def hpa_replicas(client: Client, name: str, ns: str) -> int:
    return int(client.get("Deployment", name, ns).spec.replicas or 0)


def test_top_shows_real_usage(client: Client, ns: str) -> None:
    name = unique("burn")
    run("apply", "-n", ns, "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}}}
        spec:
          terminationGracePeriodSeconds: 0
          containers:
          - name: spin
            image: busybox
            command: [sh, -c, "while :; do :; done"]
            resources: {{limits: {{cpu: 500m}}}}
        """))
    wait_running(client, name, namespace=ns)

    def burning() -> int | None:
        rows = [line.split() for line in run("top", "pods", "-n", ns).stdout.splitlines()[1:]]
        row = next((r for r in rows if r[0] == name), None)
        millis = int(row[1].rstrip("m")) if row and row[1].endswith("m") else 0
        return millis if millis > 300 else None

    millis = wait_for("the spinning pod's CPU in `top pods`", burning, timeout=90, interval=3)
    assert 300 < millis <= 600  # capped at 500m by its limit
    nodes = run("top", "nodes").stdout
    assert nodes.splitlines()[0].split()[:3] == ["NAME", "CPU(cores)", "CPU%"] and "node-1" in nodes
    run("delete", "pod", "-n", ns, name, "--grace-period", "0")


def test_cpu_hpa_scales_out_under_load_and_back_in(client: Client, ns: str) -> None:
    manifest = HPA_EXAMPLE.read_text().replace("stabilizationWindowSeconds: 60", "stabilizationWindowSeconds: 10")
    run("apply", "-n", ns, "-f", "-", input=manifest)
    wait_for("the burner ready", lambda: client.get("Deployment", "burner", ns).status.readyReplicas == 1, timeout=120)
    # the example's own load generator (pod `load`, 4 clients), aimed at the Service in this namespace
    load = LOAD_EXAMPLE.read_text().replace("burner.default.svc.cluster.local", f"burner.{ns}.svc.cluster.local")
    run("apply", "-n", ns, "-f", "-", input=load)
    seen: list[int] = []
    stop = threading.Event()

    def watch_replicas() -> None:
        while not stop.is_set():
            seen.append(hpa_replicas(client, "burner", ns))
            time.sleep(1)

    th = threading.Thread(target=watch_replicas, daemon=True)
    th.start()
    try:
        wait_for("a scale-out", lambda: hpa_replicas(client, "burner", ns) >= 2, timeout=120, interval=2)
        assert "burner" in run("get", "hpa", "-n", ns).stdout
        described = run("describe", "hpa", "-n", ns, "burner").stdout
        assert "SuccessfulRescale" in described
        run("delete", "pod", "-n", ns, "load", "--grace-period", "0")  # as the example says, to stop early
        wait_for("the scale-in back to 1", lambda: hpa_replicas(client, "burner", ns) == 1, timeout=150, interval=2)
    finally:
        stop.set()
        th.join(5)
        run("delete", "pod", "-n", ns, "load", "--grace-period", "0", check=False)
        run("delete", "-n", ns, "-f", str(HPA_EXAMPLE), check=False)
    assert max(seen) <= 4, seen


def test_memory_hpa_scales_on_memory(client: Client, ns: str) -> None:
    name = unique("mem")
    run("apply", "-n", ns, "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: 1
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 0
              containers:
              - name: hog
                image: "python:3"
                command: [python3, -c, "import time; x = bytearray(60 * 2**20); time.sleep(3600)"]
                resources: {{requests: {{memory: 40Mi}}}}
        ---
        apiVersion: autoscaling/v2
        kind: HorizontalPodAutoscaler
        metadata: {{name: {name}}}
        spec:
          scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
          minReplicas: 1
          maxReplicas: 3
          metrics:
          - type: Resource
            resource: {{name: memory, target: {{type: Utilization, averageUtilization: 80}}}}
        """))
    wait_for("a memory scale-out", lambda: hpa_replicas(client, name, ns) >= 2, timeout=150, interval=3)
    assert "memory:" in run("get", "hpa", "-n", ns, name).stdout
    run("delete", "hpa", "-n", ns, name)
    run("delete", "deploy", "-n", ns, name)


def test_invalid_hpas_are_rejected(ns: str) -> None:
    base = ("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: bad}\nspec:\n"
            "  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: x}\n")
    cases = [
        (base + "  minReplicas: 3\n  maxReplicas: 2\n", "spec.maxReplicas"),
        (base + "  maxReplicas: 2\n  metrics: [{type: Resource, resource: {name: gpu, target: "
                "{type: Utilization, averageUtilization: 50}}}]\n", "spec.metrics[0].resource.name"),
        ("apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: bad}\nspec:\n"
         "  maxReplicas: 2\n", "spec.scaleTargetRef"),
    ]
    for manifest, expected in cases:
        proc = run("apply", "-n", ns, "-f", "-", input=manifest, check=False)
        assert proc.returncode == 1 and expected in proc.stderr, proc.stderr
