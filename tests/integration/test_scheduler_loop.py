"""The Scheduler against a real etcd + API server: bindings, unschedulable reporting, retry on a new node."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from minik8s import Client
from minik8s.scheduler.loop import Scheduler, SchedulerConfig

WAIT_S = 15.0
POLL_S = 0.05


def wait_for(check: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}")


def make_node(client: Client, name: str, mem: str, labels: dict[str, str] | None = None) -> None:
    res = {"cpu": "4", "memory": mem, "pods": "110"}
    client.create({"apiVersion": "v1", "kind": "Node",
                   "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, **(labels or {})}},
                   "status": {"allocatable": res, "capacity": res,
                              "conditions": [{"type": "Ready", "status": "True"}]}})


def make_pod(client: Client, ns: str, name: str, mem: str = "64Mi", **spec: Any) -> None:
    """Pods name this test's scheduler, so other tests' pending pods on the shared API server stay out of it."""
    labels = spec.pop("labels", None)
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
                   "spec": {"containers": [{"name": "c", "image": "busybox",
                                            "resources": {"requests": {"memory": mem}}}],
                            "schedulerName": f"{ns}-scheduler", **spec}})


def config(ns: str, **kw: Any) -> SchedulerConfig:
    return SchedulerConfig(scheduler_name=f"{ns}-scheduler", **kw)


@pytest.fixture
def env(client: Client) -> Iterator[tuple[Client, str, str]]:
    """A fresh namespace and a node-name prefix, so tests sharing the session's API server don't meet."""
    tag = uuid.uuid4().hex[:6]
    ns = f"sched-{tag}"
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    yield client, ns, tag
    for n in client.list("Node").items:
        if n.metadata.name.startswith(tag):
            client.delete("Node", n.metadata.name, None)


def node_of(client: Client, ns: str, name: str) -> str | None:
    return client.get("Pod", name, ns).spec.nodeName  # type: ignore[no-any-return]


def test_binds_by_selector_anti_affinity_and_reports_unschedulable(env: tuple[Client, str, str]) -> None:
    client, ns, tag = env
    nodes = [f"{tag}-n{i}" for i in range(3)]
    for i, n in enumerate(nodes):
        make_node(client, n, "1Gi", labels={"disk": "ssd" if i == 2 else "hdd"})
    scoped = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": nodes}]}]}}}
    make_pod(client, ns, "ssd", nodeSelector={"disk": "ssd"})
    anti = {**scoped, "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}}
    for i in range(3):
        make_pod(client, ns, f"web-{i}", labels={"app": "web"}, affinity=anti)
    make_pod(client, ns, "huge", mem="2Gi", affinity=scoped)

    sched = Scheduler(client, config(ns, retry_unschedulable_s=0.5))
    sched.start()
    try:
        assert wait_for(lambda: node_of(client, ns, "ssd"), "ssd bound") == nodes[2]
        webs = [wait_for(lambda i=i: node_of(client, ns, f"web-{i}"), f"web-{i} bound") for i in range(3)]
        assert sorted(webs) == nodes

        def unschedulable() -> Any:
            p = client.get("Pod", "huge", ns)
            return next((c for c in (p.status.conditions or []) if c.type == "PodScheduled" and c.status == "False"),
                        None)
        cond = wait_for(unschedulable, "PodScheduled=False on huge")
        # other sessions' nodes may exist on the shared API server: check the reason, not the totals
        assert cond.reason == "Unschedulable"
        assert cond.message.startswith(tuple(f"0/{n} nodes are available: " for n in range(3, 1000)))
        assert "Insufficient memory" in cond.message
        assert node_of(client, ns, "huge") is None
        events = wait_for(lambda: [e for e in client.list("Event", ns).items
                                   if e.involvedObject.name == "huge" and e.reason == "FailedScheduling"],
                          "FailedScheduling event")
        assert events[0].type == "Warning" and events[0].message == cond.message
        scheduled = [e for e in client.list("Event", ns).items if e.reason == "Scheduled"]
        assert {e.involvedObject.name for e in scheduled} >= {"ssd", "web-0"}

    finally:
        sched.stop()


def test_unschedulable_pod_lands_when_a_big_enough_node_appears(env: tuple[Client, str, str]) -> None:
    client, ns, tag = env
    make_node(client, f"{tag}-small", "1Gi", labels={"pool": tag})
    make_pod(client, ns, "big", mem="3Gi", nodeSelector={"pool": tag})
    sched = Scheduler(client, config(ns, retry_unschedulable_s=30.0))  # the node event must trigger the retry
    sched.start()
    try:
        wait_for(lambda: any(c.type == "PodScheduled" and c.status == "False"
                             for c in (client.get("Pod", "big", ns).status.conditions or [])), "PodScheduled=False")
        make_node(client, f"{tag}-large", "8Gi", labels={"pool": tag})
        assert wait_for(lambda: node_of(client, ns, "big"), "big bound") == f"{tag}-large"
    finally:
        sched.stop()


def test_round_robin_policy_binds_in_name_order(env: tuple[Client, str, str]) -> None:
    client, ns, tag = env
    nodes = [f"{tag}-rr{i}" for i in range(3)]
    for n in nodes:
        make_node(client, n, "1Gi", labels={"pool": tag})
    sched = Scheduler(client, config(ns, policy="round-robin"))
    sched.start()
    try:
        for i in range(3):  # one at a time so the order of decisions is the order of creation
            make_pod(client, ns, f"p{i}", nodeSelector={"pool": tag})
            wait_for(lambda i=i: node_of(client, ns, f"p{i}"), f"p{i} bound")
        placed = [node_of(client, ns, f"p{i}") for i in range(3)]
        assert sorted(placed) == nodes  # type: ignore[type-var]
        assert placed in [nodes[k:] + nodes[:k] for k in range(3)]  # cycles in name order from wherever it starts
    finally:
        sched.stop()


def test_unknown_policy_is_rejected(client: Client) -> None:
    with pytest.raises(ValueError, match="unknown scheduler policy 'nope'"):
        Scheduler(client, SchedulerConfig(policy="nope"))
