"""Scheduling and disruption policies on the real 3-node cluster, through kubectl, the CLI and the official
kubernetes client: topology spread, PriorityClass preemption, PodDisruptionBudget evictions and drain."""

from __future__ import annotations

import subprocess
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minik8s import Client
from minik8s.api.quantity import memory_bytes
from tests.e2e.conftest import run, unique, wait_for

NODES = ("node-1", "node-2", "node-3")
MI = 1024 * 1024


def kubectl(kc: Path, *args: str, input: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["kubectl", "--kubeconfig", str(kc), *args], input=input, capture_output=True, text=True,
                          timeout=timeout)


def apply(kc: Path, ns: str, manifest: str) -> None:
    done = kubectl(kc, "apply", "-n", ns, "-f", "-", input=textwrap.dedent(manifest))
    assert done.returncode == 0, done.stderr


def running_pods(client: Client, app: str, ns: str) -> list[Any]:
    pods = client.list("Pod", ns, label_selector=f"app={app}").items
    return [p for p in pods if p.status and p.status.phase == "Running" and not p.metadata.deletionTimestamp]


@pytest.fixture
def cleanup(kubeconfig: Path, ns: str) -> Iterator[list[str]]:
    """Objects (`kind/name`, in the test's namespace or cluster-wide) to delete after the test, whatever happened."""
    objs: list[str] = []
    yield objs
    for obj in reversed(objs):
        kubectl(kubeconfig, "delete", "-n", ns, obj, "--ignore-not-found", "--grace-period=0", "--wait=false")


def test_six_replicas_spread_two_per_node(client: Client, kubeconfig: Path, ns: str, cleanup: list[str]) -> None:
    name = unique("spread")
    cleanup.append(f"deployment/{name}")
    apply(kubeconfig, ns, f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: 6
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 0
              topologySpreadConstraints:
              - maxSkew: 1
                topologyKey: kubernetes.io/hostname
                whenUnsatisfiable: DoNotSchedule
                labelSelector: {{matchLabels: {{app: {name}}}}}
              containers: [{{name: main, image: busybox, command: [sleep, "3600"]}}]
        """)
    pods = wait_for("6 spread pods running", lambda: (p := running_pods(client, name, ns)) and len(p) == 6 and p, 120)
    assert Counter(p.spec.nodeName for p in pods) == {n: 2 for n in NODES}
    # a field the API accepts is checked: a bad constraint is refused naming it, nothing created
    bad = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}-bad}}
        spec:
          topologySpreadConstraints: [{{maxSkew: 0, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}}]
          containers: [{{name: main, image: busybox}}]
        """))
    assert bad.returncode != 0 and "spec.topologySpreadConstraints[0].maxSkew" in bad.stderr


def _free_memory(client: Client) -> dict[str, int]:
    """Allocatable memory minus what the pods already bound to each node request (what the scheduler counts)."""
    free: dict[str, int] = {}
    pods = client.list("Pod").items
    for node in client.list("Node").items:
        name = node.metadata.name
        used = 0
        for p in pods:
            if p.spec.nodeName != name or (p.status and p.status.phase in ("Succeeded", "Failed")):
                continue
            for c in p.spec.containers:
                req = (c.resources.requests if c.resources else None) or {}
                lim = (c.resources.limits if c.resources else None) or {}
                used += memory_bytes(req.get("memory", lim.get("memory", 0)))
        free[name] = memory_bytes(node.status.allocatable["memory"]) - used
    return free


def _priority_pod(name: str, pc: str, mem_mi: int, node: str | None = None) -> str:
    selector = f"\n  nodeSelector: {{kubernetes.io/hostname: {node}}}" if node else ""
    return f"""\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: {name}}}}}
spec:{selector}
  priorityClassName: {pc}
  terminationGracePeriodSeconds: 1
  containers:
  - {{name: main, image: busybox, command: [sleep, "3600"], resources: {{requests: {{memory: {mem_mi}Mi}}}}}}
"""


def test_high_priority_pod_preempts_on_a_full_cluster(client: Client, kubeconfig: Path, ns: str,
                                                      cleanup: list[str]) -> None:
    low, high = unique("low"), unique("high")
    cleanup += [f"priorityclass/{low}", f"priorityclass/{high}"]
    apply(kubeconfig, ns, f"""\
        apiVersion: scheduling.k8s.io/v1
        kind: PriorityClass
        metadata: {{name: {low}}}
        value: 10
        description: batch work
        ---
        apiVersion: scheduling.k8s.io/v1
        kind: PriorityClass
        metadata: {{name: {high}}}
        value: 100000
        description: serving
        """)
    assert f"{high}" in run("get", "priorityclass").stdout
    free = _free_memory(client)
    want_mi = min(free[n] for n in NODES) // MI // 2  # the high pod's request: fits any empty-ish node
    fillers = []
    for node in NODES:  # leave each node less than the high pod needs
        filler = f"{low}-{node}"
        fillers.append(filler)
        cleanup.append(f"pod/{filler}")
        apply(kubeconfig, ns, _priority_pod(filler, low, free[node] // MI - want_mi // 2, node))
    wait_for("fillers running", lambda: all(running_pods(client, f, ns) for f in fillers), 120)
    assert client.get("Pod", fillers[0], ns).spec.priority == 10

    cleanup.append(f"pod/{high}")
    apply(kubeconfig, ns, _priority_pod(high, high, want_mi))
    pod = wait_for("the high-priority pod running", lambda: running_pods(client, high, ns), 120)[0]
    victim = f"{low}-{pod.spec.nodeName}"
    assert pod.spec.priority == 100000
    wait_for("the victim gone", lambda: not running_pods(client, victim, ns), 60)
    survivors = [f for f in fillers if f != victim]
    assert all(running_pods(client, f, ns) for f in survivors)  # exactly one victim
    events = kubectl(kubeconfig, "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={victim}")
    assert "Preempted" in events.stdout
    # an unknown class is refused naming it, and nothing is created
    bad = kubectl(kubeconfig, "apply", "-n", ns, "-f", "-", input=_priority_pod(f"{high}-bad", "no-such-class", 1))
    assert bad.returncode != 0 and "no PriorityClass with name no-such-class was found" in bad.stderr


def test_budget_refuses_eviction_and_drain_waits(client: Client, kubeconfig: Path, ns: str, cleanup: list[str]) -> None:
    from kubernetes import client as k8s
    from kubernetes import config

    name = unique("guarded")
    cleanup += [f"deployment/{name}", f"pdb/{name}"]
    apply(kubeconfig, ns, f"""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}}}
        spec:
          replicas: 2
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 1
              containers: [{{name: main, image: busybox, command: [sleep, "3600"]}}]
        ---
        apiVersion: policy/v1
        kind: PodDisruptionBudget
        metadata: {{name: {name}}}
        spec:
          minAvailable: 2
          selector: {{matchLabels: {{app: {name}}}}}
        """)
    pods = wait_for("2 guarded pods running", lambda: (p := running_pods(client, name, ns)) and len(p) == 2 and p, 120)
    wait_for("the budget's status", lambda: client.get("PodDisruptionBudget", name, ns).status.currentHealthy == 2, 60)
    table = run("get", "pdb", "-n", ns, name).stdout
    assert table.split("\n")[0].split() == ["NAME", "MIN", "AVAILABLE", "MAX", "UNAVAILABLE", "ALLOWED",
                                            "DISRUPTIONS", "AGE"]
    assert table.split("\n")[1].split()[1:4] == ["2", "N/A", "0"]

    api = k8s.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    target = pods[0]
    body = k8s.V1Eviction(metadata=k8s.V1ObjectMeta(name=target.metadata.name, namespace=ns))
    with pytest.raises(k8s.ApiException) as refused:
        api.create_namespaced_pod_eviction(target.metadata.name, ns, body)
    assert refused.value.status == 429
    assert "Cannot evict pod as it would violate the pod's disruption budget." in str(refused.value.body)
    assert client.get("Pod", target.metadata.name, ns).metadata.deletionTimestamp is None

    node = target.spec.nodeName
    drain = subprocess.Popen(["kubectl", "--kubeconfig", str(kubeconfig), "drain", node, "--ignore-daemonsets",
                              f"--pod-selector=app={name}", "--timeout=150s"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines: list[str] = []

        def refused_once() -> bool:
            assert drain.stdout is not None
            line = drain.stdout.readline()
            lines.append(line)
            return "will retry after 5s" in line and "disruption budget" in line
        wait_for("kubectl drain to be refused by the budget", refused_once, 60, interval=0)
        assert drain.poll() is None  # waiting, not failed
        assert len(running_pods(client, name, ns)) == 2
        # a third pod (not on the cordoned node) frees one
        run("scale", "deployment", "-n", ns, name, "--replicas", "3")
        out, _ = drain.communicate(timeout=150)
        lines.append(out)
        assert drain.returncode == 0, "".join(lines)
        assert f"node/{node} drained" in out
    finally:
        if drain.poll() is None:
            drain.kill()
        kubectl(kubeconfig, "uncordon", node)
    left = running_pods(client, name, ns)
    assert len(left) >= 2 and all(p.spec.nodeName != node for p in left)
