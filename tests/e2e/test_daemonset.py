"""DaemonSets and ReplicationControllers on the real 3-node cluster, driven through the CLI and kubectl."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minik8s import Client
from tests.e2e.conftest import run, unique, wait_for
from tests.e2e.test_compat import kubectl
from tests.e2e.test_nodes import _join_file, ready_nodes
from tests.integration.test_workloads import ReadyWatch

NODES = {"node-1", "node-2", "node-3"}
POD_TIMEOUT_S = 120.0


def daemonset_yaml(name: str, command: str = "sleep 3600", node_selector: dict[str, str] | None = None) -> str:
    selector = f"\n              nodeSelector: {node_selector}" if node_selector else ""
    return textwrap.dedent(f"""\
        apiVersion: apps/v1
        kind: DaemonSet
        metadata: {{name: {name}}}
        spec:
          selector: {{matchLabels: {{app: {name}}}}}
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:{selector}
              terminationGracePeriodSeconds: 1
              tolerations: [{{key: dedicated, operator: Exists}}]
              containers:
              - {{name: main, image: busybox, command: [sh, -c, "{command}"]}}
        """)


def live(client: Client, app: str, ns: str) -> list[Any]:
    return [p for p in client.list("Pod", ns, f"app={app}").items if not p.metadata.deletionTimestamp]


def ready_on(client: Client, app: str, ns: str) -> dict[str, Any]:
    """node -> the Ready pod of `app` there, when every live pod of `app` is Ready and each node has one."""
    pods = live(client, app, ns)
    ready = {p.spec.nodeName: p for p in pods if p.spec.nodeName and p.status and any(
        c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])}
    return ready if len(ready) == len(pods) else {}


def ds_status(client: Client, name: str, ns: str) -> tuple[int, ...]:
    s = client.get("DaemonSet", name, ns).status
    return (s.desiredNumberScheduled, s.currentNumberScheduled, s.numberReady, s.updatedNumberScheduled,
            s.numberAvailable) if s else ()


@pytest.fixture
def daemonset(client: Client, ns: str) -> Iterator[str]:
    """A DaemonSet name in the test's namespace; the DaemonSet and its pods are gone afterwards."""
    name = unique("agent")
    yield name
    run("delete", "ds", "-n", ns, name, check=False)
    wait_for("daemon pods collected", lambda: not live(client, name, ns), timeout=POD_TIMEOUT_S)


def test_one_ready_pod_per_node_rolling_update_and_joining_node(client: Client, daemonset: str, ns: str,
                                                                kubeconfig: Path, tmp_path: Path) -> None:  # noqa: F811
    name = daemonset
    run("apply", "-n", ns, "-f", "-", input=daemonset_yaml(name))
    wait_for("one Ready pod per node", lambda: set(ready_on(client, name, ns)) == NODES, timeout=POD_TIMEOUT_S)
    wait_for("status 3/3", lambda: ds_status(client, name, ns) == (3, 3, 3, 3, 3))
    table = kubectl(kubeconfig, "get", "ds", "-n", ns, name)
    assert table.returncode == 0, table.stderr
    header, row = table.stdout.splitlines()
    assert header.split() == ["NAME", "DESIRED", "CURRENT", "READY", "UP-TO-DATE", "AVAILABLE", "NODE", "SELECTOR",
                              "AGE"]
    assert row.split()[:7] == [name, "3", "3", "3", "3", "3", "<none>"]

    watch = ReadyWatch(client, ns, f"app={name}")
    run("apply", "-n", ns, "-f", "-", input=daemonset_yaml(name, command="sleep 7200"))
    out = run("rollout", "status", "-n", ns, f"ds/{name}", "--timeout", "240", timeout=300).stdout
    assert f'daemon set "{name}" successfully rolled out' in out
    assert watch.stop() >= len(NODES) - 1  # maxUnavailable 1: never more than one node without its daemon
    pods = wait_for("the new command on every node", lambda: set(ready_on(client, name, ns)) == NODES
                    and ready_on(client, name, ns), timeout=POD_TIMEOUT_S)
    assert {p.spec.containers[0].command[-1] for p in pods.values()} == {"sleep 7200"}

    if "node-4" in [n.metadata.name for n in client.list("Node").items]:  # left by an interrupted run
        run("node", "remove", "node-4", timeout=180)
    token = run("token").stdout.strip()
    try:
        # the joining node is tainted dedicated=extra:NoSchedule; this DaemonSet tolerates it
        run("join", "--config", str(_join_file(tmp_path, "node-4", token)), timeout=180)
        wait_for("node-4 Ready", lambda: "node-4" in ready_nodes(client), timeout=POD_TIMEOUT_S)
        wait_for("a daemon pod on the joining node", lambda: set(ready_on(client, name, ns)) == NODES | {"node-4"},
                 timeout=POD_TIMEOUT_S)
        wait_for("status 4/4", lambda: ds_status(client, name, ns) == (4, 4, 4, 4, 4))
    finally:
        run("node", "remove", "node-4", timeout=180)
    wait_for("the removed node's pod gone", lambda: set(ready_on(client, name, ns)) == NODES, timeout=POD_TIMEOUT_S)
    wait_for("status back to 3", lambda: ds_status(client, name, ns) == (3, 3, 3, 3, 3))


def test_node_selector_follows_node_labels(client: Client, daemonset: str, ns: str,
                                           kubeconfig: Path) -> None:  # noqa: F811
    name = daemonset
    key = f"e2e-{name}"
    labelled = kubectl(kubeconfig, "label", "node", "node-2", f"{key}=yes")
    assert labelled.returncode == 0, labelled.stderr
    try:
        run("apply", "-n", ns, "-f", "-", input=daemonset_yaml(name, node_selector={key: "yes"}))
        wait_for("a pod on node-2 only", lambda: set(ready_on(client, name, ns)) == {"node-2"}, timeout=POD_TIMEOUT_S)
        wait_for("status 1/1", lambda: ds_status(client, name, ns) == (1, 1, 1, 1, 1))
        row = run("get", "ds", "-n", ns, name).stdout.splitlines()[1].split()
        assert row[:7] == [name, "1", "1", "1", "1", "1", f"{key}=yes"]
    finally:
        unlabelled = kubectl(kubeconfig, "label", "node", "node-2", f"{key}-")
    assert unlabelled.returncode == 0, unlabelled.stderr
    wait_for("the pod gone with the label", lambda: not live(client, name, ns), timeout=POD_TIMEOUT_S)
    wait_for("status 0", lambda: ds_status(client, name, ns) == (0, 0, 0, 0, 0))


def test_replication_controller_scaled_by_kubectl(client: Client, kubeconfig: Path, ns: str) -> None:  # noqa: F811
    name = unique("rc")
    run("apply", "-n", ns, "-f", "-", input=textwrap.dedent(f"""\
        apiVersion: v1
        kind: ReplicationController
        metadata: {{name: {name}}}
        spec:
          replicas: 2
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec:
              terminationGracePeriodSeconds: 1
              containers:
              - {{name: main, image: busybox, command: [sleep, "3600"]}}
        """))
    try:
        wait_for("2 Ready pods", lambda: _ready_count(client, name, ns) == 2,
                 timeout=POD_TIMEOUT_S)
        scaled = kubectl(kubeconfig, "scale", "rc", "-n", ns, name, "--replicas=3")
        assert scaled.returncode == 0 and f"replicationcontroller/{name} scaled" in scaled.stdout, scaled.stderr
        wait_for("3 Ready pods", lambda: _ready_count(client, name, ns) == 3, timeout=POD_TIMEOUT_S)
        wait_for("3 ready in the table", lambda: kubectl(kubeconfig, "get", "rc", "-n", ns, name).stdout.split()[5:9]
                 == [name, "3", "3", "3"])
        header = kubectl(kubeconfig, "get", "rc", "-n", ns, name).stdout.split()[:5]
        assert header == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    finally:
        run("delete", "rc", "-n", ns, name, check=False)
    wait_for("pods collected", lambda: not live(client, name, ns), timeout=POD_TIMEOUT_S)


def _ready_count(client: Client, app: str, ns: str) -> int:
    pods = live(client, app, ns)
    return sum(1 for p in pods if p.status and any(c.type == "Ready" and c.status == "True"
                                                   for c in p.status.conditions or []))
