"""DaemonSets and ReplicationControllers against a real etcd + API server.

The DaemonSet, ReplicationController and garbage-collector controllers and a real scheduler run
in-process; the fake kubelet of test_workloads makes bound pods Ready and finishes deletions. Daemon
pods name this module's scheduler and select this module's nodes (label `ds-test=<tag>`), so the
nodes and pending pods of other tests on the session's API server stay out of it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from minik8s import Client, errors
from minik8s.controllers.daemonpods import REVISION_HASH_LABEL
from minik8s.controllers.daemonset import DaemonSetController
from minik8s.controllers.gc import GarbageCollector
from minik8s.controllers.replication import ReplicationManager
from minik8s.scheduler.loop import Scheduler, SchedulerConfig
from tests.integration.test_workloads import (
    ReadyWatch,
    cli_env,  # noqa: F401 - a fixture
    live_pods,
    namespace_with_fake_kubelet,
    run_cli,
    running_controllers,
    wait_for,
)

TAG = f"ds{uuid.uuid4().hex[:6]}"
SCHEDULER = f"{TAG}-scheduler"


@pytest.fixture(scope="module")
def controllers(apiserver: str) -> Iterator[None]:
    with running_controllers(apiserver, lambda c: [
            DaemonSetController(c), ReplicationManager(c), GarbageCollector(c),
            Scheduler(c, SchedulerConfig(scheduler_name=SCHEDULER, retry_unschedulable_s=0.5))]):
        yield


@pytest.fixture
def ns(client: Client, controllers: None) -> Iterator[str]:
    with namespace_with_fake_kubelet(client, "ds", bind_to=None) as name:
        yield name


@pytest.fixture
def nodes(client: Client) -> Iterator[list[str]]:
    """This test's node names; the nodes themselves are made with `make_node` and removed afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        try:
            client.delete("Node", name, None)
        except errors.NotFound:
            continue


def make_node(client: Client, made: list[str], name: str, labels: dict[str, str] | None = None,
              taints: list[dict[str, str]] | None = None, unschedulable: bool = False) -> str:
    full = f"{TAG}-{name}"
    res = {"cpu": "4", "memory": "4Gi", "pods": "110"}
    client.create({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": full, "labels": {"ds-test": TAG, "kubernetes.io/hostname": full,
                                                         **(labels or {})}},
                   "spec": {"taints": taints, "unschedulable": unschedulable or None},
                   "status": {"allocatable": res, "capacity": res,
                              "conditions": [{"type": "Ready", "status": "True"}]}})
    made.append(full)
    return full


def daemonset(name: str, node_selector: dict[str, str] | None = None, image: str = "busybox:v1",
              strategy: dict[str, Any] | None = None) -> dict[str, Any]:
    labels = {"app": name}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels},
                     "spec": {"schedulerName": SCHEDULER, "nodeSelector": {"ds-test": TAG, **(node_selector or {})},
                              "containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}}}
    if strategy:
        spec["updateStrategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name}, "spec": spec}


def placement(client: Client, ns: str, app: str) -> dict[str, str]:
    """node -> image of the live, bound, Ready pods of `app`."""
    out = {}
    for p in live_pods(client, ns, f"app={app}"):
        ready = any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions if p.status else None)
                    or [])
        if p.spec.nodeName and ready:
            out[p.spec.nodeName] = p.spec.containers[0].image
    return out


def settled(client: Client, ns: str, name: str, expected: set[str]) -> bool:
    """Exactly one Ready pod on each expected node, none elsewhere, and the status says so."""
    ds = client.get("DaemonSet", name, ns)
    s = ds.status
    pods = live_pods(client, ns, f"app={name}")
    return bool(set(placement(client, ns, name)) == expected and len(pods) == len(expected) and s
                and s.observedGeneration == ds.metadata.generation and s.desiredNumberScheduled == len(expected)
                and s.currentNumberScheduled == len(expected) and s.numberReady == len(expected)
                and s.numberAvailable == len(expected) and s.updatedNumberScheduled == len(expected)
                and s.numberMisscheduled == 0)


def test_daemonset_follows_selectors_taints_and_nodes(client: Client, ns: str, nodes: list[str]) -> None:
    edge = {"role": "edge"}
    plain = make_node(client, nodes, "plain", edge)
    tainted = make_node(client, nodes, "tainted", edge, taints=[{"key": "dedicated", "value": "db",
                                                                 "effect": "NoSchedule"}])
    cordoned = make_node(client, nodes, "cordoned", edge, unschedulable=True)
    other = make_node(client, nodes, "other")
    client.create(daemonset("agent", edge), ns)
    # the cordoned node still gets its daemon pod (bound by the scheduler thanks to the automatic
    # toleration); the untolerated taint and the missing label keep the others off
    wait_for("pods on plain and cordoned", lambda: settled(client, ns, "agent", {plain, cordoned}))
    pod = live_pods(client, ns, "app=agent")[0]
    assert pod.metadata.ownerReferences[0].kind == "DaemonSet"
    assert REVISION_HASH_LABEL in pod.metadata.labels
    assert tainted not in placement(client, ns, "agent")

    client.patch("Node", other, {"metadata": {"labels": edge}}, None)
    wait_for("a pod on the newly labelled node", lambda: settled(client, ns, "agent", {plain, cordoned, other}))
    client.patch("Node", plain, {"metadata": {"labels": {"role": None}}}, None)
    wait_for("the unlabelled node's pod gone", lambda: settled(client, ns, "agent", {cordoned, other}))
    joined = make_node(client, nodes, "joined", edge)
    wait_for("a pod on the joining node", lambda: settled(client, ns, "agent", {cordoned, other, joined}))
    client.delete("Node", joined, None)
    wait_for("the removed node's pod gone", lambda: settled(client, ns, "agent", {cordoned, other}))
    client.patch("Node", other, {"spec": {"taints": [{"key": "evict", "effect": "NoExecute"}]}}, None)
    wait_for("evicted by an untolerated NoExecute taint", lambda: settled(client, ns, "agent", {cordoned}))

    client.delete("DaemonSet", "agent", ns)
    wait_for("the garbage collector removes the daemon pods", lambda: not live_pods(client, ns, "app=agent"))


def test_rolling_update_respects_max_unavailable_then_on_delete(client: Client, ns: str, nodes: list[str],
                                                                cli_env: None) -> None:  # noqa: F811
    names = {make_node(client, nodes, f"r{i}", {"pool": "roll"}) for i in range(4)}
    client.create(daemonset("roll", {"pool": "roll"}), ns)
    wait_for("4 daemon pods", lambda: settled(client, ns, "roll", names))
    watch = ReadyWatch(client, ns, "app=roll")
    client.patch("DaemonSet", "roll", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "busybox:v2", "command": ["sleep", "3600"]}]}}}}, ns)
    out = run_cli("rollout", "status", "ds/roll", "-n", ns, "--timeout", "60")
    assert out.exit_code == 0, out.output
    assert 'daemon set "roll" successfully rolled out' in out.output
    assert watch.stop() >= 3  # maxUnavailable 1 of 4
    wait_for("all on v2", lambda: settled(client, ns, "roll", names)
             and set(placement(client, ns, "roll").values()) == {"busybox:v2"})

    client.patch("DaemonSet", "roll", {"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": None},
                                                "template": {"spec": {"containers": [
                                                    {"name": "main", "image": "busybox:v3",
                                                     "command": ["sleep", "3600"]}]}}}}, ns)
    wait_for("status sees the new template", lambda: client.get("DaemonSet", "roll", ns).status.updatedNumberScheduled
             == 0)
    assert set(placement(client, ns, "roll").values()) == {"busybox:v2"}  # OnDelete: nothing replaced yet
    victim = live_pods(client, ns, "app=roll")[0]
    client.delete("Pod", victim.metadata.name, ns)
    wait_for("the deleted pod comes back on v3", lambda: placement(client, ns, "roll").get(victim.spec.nodeName)
             == "busybox:v3" and len(placement(client, ns, "roll")) == 4)
    assert sorted(placement(client, ns, "roll").values()).count("busybox:v2") == 3


def test_daemonset_bad_update_strategy_and_selector_change_are_refused(client: Client, ns: str) -> None:
    body = daemonset("surge", strategy={"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0,
                                                                                  "maxSurge": 1}})
    with pytest.raises(errors.MiniK8sError) as exc:
        client.create(body, ns)
    assert exc.value.code == 422 and "spec.updateStrategy.rollingUpdate.maxSurge" in exc.value.message
    assert not client.list("DaemonSet", ns).items
    client.create(daemonset("fixed"), ns)
    with pytest.raises(errors.MiniK8sError) as exc:
        client.patch("DaemonSet", "fixed", {"spec": {"selector": {"matchLabels": {"app": "fixed", "x": "y"}},
                                                     "template": {"metadata": {"labels": {"x": "y"}}}}}, ns)
    assert exc.value.code == 422 and "spec.selector" in exc.value.message and "immutable" in exc.value.message
    assert client.get("DaemonSet", "fixed", ns).spec.selector.matchLabels == {"app": "fixed"}


@pytest.fixture
def rc_ns(client: Client, controllers: None) -> Iterator[str]:
    with namespace_with_fake_kubelet(client, "rc") as name:
        yield name


def test_replication_controller_scales_and_cascades(client: Client, rc_ns: str, cli_env: None) -> None:  # noqa: F811
    ns = rc_ns
    client.create({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web"},
                   "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                       "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}}}, ns)
    rc = client.get("ReplicationController", "web", ns)
    assert rc.spec.selector == {"app": "web"} and rc.metadata.labels == {"app": "web"}  # defaulted

    def ready(n: int) -> bool:
        cur = client.get("ReplicationController", "web", ns)
        return bool(cur.status and cur.status.readyReplicas == n and cur.status.replicas == n
                    and len(live_pods(client, ns, "app=web")) == n)

    wait_for("2 ready", lambda: ready(2))
    scale = client.request("GET", f"/api/v1/namespaces/{ns}/replicationcontrollers/web/scale")
    assert scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=web"
    out = run_cli("scale", "rc", "web", "--replicas", "3", "-n", ns)
    assert out.exit_code == 0 and "replicationcontroller/web scaled" in out.output, out.output
    wait_for("3 ready", lambda: ready(3))
    table = run_cli("get", "rc", "-n", ns)
    assert table.output.split()[:5] == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"], table.output
    assert table.output.split()[5:9] == ["web", "3", "3", "3"], table.output

    with pytest.raises(errors.MiniK8sError) as exc:
        client.create({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "bad"},
                       "spec": {"selector": {"app": "x"}, "template": {"metadata": {"labels": {"app": "y"}}, "spec": {
                           "containers": [{"name": "main", "image": "busybox"}]}}}}, ns)
    assert exc.value.code == 422 and "spec.template.metadata.labels" in exc.value.message
    client.delete("ReplicationController", "web", ns)
    wait_for("pods collected", lambda: not live_pods(client, ns, "app=web"))
