"""Three nodes, scheduling constraints, joining from a config file, node failure and removal."""

from __future__ import annotations

import subprocess
import textwrap
from collections import Counter
from pathlib import Path

import pytest

from minik8s import Client
from minik8s.cluster.config import ClusterConfig
from minik8s.cluster.local import _node_raylet
from tests.e2e.conftest import EVICTION_S, NODE_GRACE_S, UP_ARGS, UP_TIMEOUT_S, run, unique, wait_for, wait_running


def pod_yaml(name: str, extra_spec: str = "", labels: str = "{}") -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, labels: {labels}}}
        spec:
          terminationGracePeriodSeconds: 1
          containers:
          - {{name: main, image: busybox, command: [sleep, "3600"]}}
        """) + textwrap.indent(textwrap.dedent(extra_spec), "  ")


def ready_nodes(client: Client) -> list[str]:
    return sorted(n.metadata.name for n in client.list("Node").items
                  if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []))


def test_three_nodes_ready_with_their_own_addresses(client: Client) -> None:
    assert {"node-1", "node-2", "node-3"} <= set(ready_nodes(client))
    table = run("get", "nodes", "-o", "wide").stdout
    for i in (1, 2, 3):
        row = next(line for line in table.splitlines() if line.startswith(f"node-{i} "))
        assert f"10.200.0.1{i}" in row and f"10.244.{i}.0/24" in row and "Ready" in row and "docker://" in row


def test_pods_without_constraints_spread_over_the_nodes(client: Client, ns: str) -> None:
    tag = unique("spread")
    names = [f"{tag}-{i}" for i in range(6)]
    run("apply", "-n", ns, "-f", "-", input="---\n".join(pod_yaml(n, labels=f"{{spread: {tag}}}") for n in names))
    placed = Counter(wait_running(client, n, namespace=ns).spec.nodeName for n in names)
    assert set(placed) >= {"node-1", "node-2", "node-3"}, placed
    ips = {client.get("Pod", n, ns).status.podIP for n in names}
    assert len(ips) == 6
    run("delete", "pod", "-n", ns, *names, "--grace-period", "0")


def test_node_selector_and_too_large_requests(client: Client, ns: str) -> None:
    client.patch("Node", "node-2", {"metadata": {"labels": {"disk": "ssd"}}}, None)
    picky, huge = unique("picky"), unique("huge")
    run("apply", "-n", ns, "-f", "-", input=pod_yaml(picky, "nodeSelector: {disk: ssd}\n"))
    assert wait_running(client, picky, namespace=ns).spec.nodeName == "node-2"
    run("apply", "-n", ns, "-f", "-", input=pod_yaml(huge).replace(
        'command: [sleep, "3600"]}', 'command: [sleep, "3600"], resources: {requests: {memory: 900Gi}}}'))

    def unschedulable() -> str | None:
        pod = client.get("Pod", huge, ns)
        cond = next((c for c in (pod.status.conditions or []) if c.type == "PodScheduled"), None)
        return cond.message if cond and cond.status == "False" else None

    message = wait_for("PodScheduled=False", unschedulable, timeout=30)
    assert "Insufficient memory" in message and message.startswith("0/")
    assert client.get("Pod", huge, ns).status.phase == "Pending"
    described = run("describe", "pod", "-n", ns, huge).stdout
    assert "FailedScheduling" in described and "Insufficient memory" in described
    run("delete", "pod", "-n", ns, picky, huge, "--grace-period", "0")
    client.patch("Node", "node-2", {"metadata": {"labels": {"disk": None}}}, None)


def _join_file(tmp_path: Path, name: str, token: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text(textwrap.dedent(f"""\
        apiVersion: minik8s.io/v1
        kind: NodeJoinConfig
        name: {name}
        server: https://10.200.0.1:6443
        token: "{token}"
        labels: {{pool: extra}}
        taints: [{{key: dedicated, value: extra, effect: NoSchedule}}]
        resources: {{cpu: "1", memory: 1Gi, pods: 20}}
        """))
    return path


def test_join_from_config_receives_pods_then_remove(client: Client, ns: str, tmp_path: Path) -> None:
    if "node-4" in [n.metadata.name for n in client.list("Node").items]:  # left by an interrupted run
        run("node", "remove", "node-4", timeout=180)
    token = run("token").stdout.strip()
    assert token.startswith("K10")
    wrong = run("join", "--config", str(_join_file(tmp_path, "node-4", token[:-4] + "XXXX")), check=False)
    assert wrong.returncode == 1 and "invalid join token" in wrong.stderr
    assert "node-4" not in [n.metadata.name for n in client.list("Node").items]

    run("join", "--config", str(_join_file(tmp_path, "node-4", token)), timeout=180)
    wait_for("node-4 Ready", lambda: "node-4" in ready_nodes(client), timeout=60)
    node = client.get("Node", "node-4", None)
    assert node.metadata.labels["pool"] == "extra" and node.spec.podCIDR == "10.244.4.0/24"
    assert node.status.allocatable["cpu"] in ("1", 1) and str(node.status.allocatable["pods"]) == "20"
    assert [t.key for t in node.spec.taints or []] == ["dedicated"]
    name = unique("extra")
    run("apply", "-n", ns, "-f", "-", input=pod_yaml(name, textwrap.dedent("""\
        nodeSelector: {pool: extra}
        tolerations: [{key: dedicated, operator: Equal, value: extra, effect: NoSchedule}]
        """)))
    pod = wait_running(client, name, namespace=ns)
    assert pod.spec.nodeName == "node-4" and pod.status.podIP.startswith("10.244.4.")

    out = run("node", "remove", "node-4", timeout=180).stdout
    assert "node/node-4 removed" in out
    assert "node-4" not in [n.metadata.name for n in client.list("Node").items]
    assert "mk8s-node-4" not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    with pytest.raises(Exception, match="not found"):
        client.get("Pod", name, ns)


def test_node_that_stops_goes_not_ready_and_its_pods_are_evicted(client: Client) -> None:
    # left in `default` on purpose: it stops a node and reruns `up`; its pod's name is unique, so leftovers
    # cannot fail it, and a namespace deleted while node-3 comes back would only add a way to fail
    name = unique("victim")
    run("apply", "-f", "-", input=pod_yaml(name, "nodeSelector: {kubernetes.io/hostname: node-3}\n"))
    wait_running(client, name)
    cfg = ClusterConfig()
    raylet = _node_raylet(cfg, cfg.node(3))
    assert raylet.stop(timeout=30)  # the raylet and the kubelet actor running on it are gone

    def not_ready() -> bool:
        node = client.get("Node", "node-3", None)
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        return ready.status == "Unknown" and "unreachable" in str(node.spec.taints)

    wait_for("node-3 NotReady", not_ready, timeout=NODE_GRACE_S + 30)
    assert "NotReady" in run("get", "nodes").stdout
    wait_for("the pod marked for deletion", lambda: client.get("Pod", name).metadata.deletionTimestamp,
             timeout=EVICTION_S + 30)
    # bring node-3 back: `up` is idempotent and restarts only what is missing
    run(*UP_ARGS, timeout=UP_TIMEOUT_S)
    wait_for("node-3 Ready again", lambda: "node-3" in ready_nodes(client), timeout=90)
    wait_for("the evicted pod gone", lambda: name not in run("get", "pods", "-o", "name").stdout, timeout=60)
