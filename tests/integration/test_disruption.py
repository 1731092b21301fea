"""PriorityClass admission, PodDisruptionBudget status, the Eviction subresource and preemption against a
real etcd + API server (the disruption controller and the scheduler run in-process)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from minik8s import Client
from minik8s.controllers.disruption import DisruptionConfig, DisruptionController
from minik8s.errors import BadRequest, Forbidden, MiniK8sError, NotFound, TooManyRequests
from minik8s.scheduler.loop import Scheduler
from tests.conftest import uniq, wait_for
from tests.integration.test_scheduler_loop import config, make_node

WAIT_S = 15.0


@pytest.fixture
def ns(client: Client) -> Iterator[str]:
    name = uniq("pdb")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    client.delete("Namespace", name, None)


@contextlib.contextmanager
def invalid(match: str) -> Iterator[None]:
    """A 422 Invalid whose message matches."""
    with pytest.raises(MiniK8sError, match=match) as err:
        yield
    assert err.value.code == 422


def pod_body(ns: str, name: str, labels: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}}


def priority_class(name: str, value: int, **extra: Any) -> dict[str, Any]:
    return {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
            "value": value, **extra}


# --- PriorityClass and the Priority admission plug-in -------------------------------------------

def test_builtin_classes_exist(client: Client) -> None:
    assert client.get("PriorityClass", "system-cluster-critical", None).value == 2_000_000_000
    assert client.get("PriorityClass", "system-node-critical", None).value == 2_000_001_000


def test_priority_class_name_resolves_to_priority(client: Client, ns: str) -> None:
    high = uniq("high")
    client.create(priority_class(high, 1000, description="important"))
    try:
        pod = client.create(pod_body(ns, "p", priorityClassName=high))
        assert pod.spec.priority == 1000 and pod.spec.preemptionPolicy == "PreemptLowerPriority"
        plain = client.create(pod_body(ns, "plain"))
        assert plain.spec.priority == 0 and plain.spec.priorityClassName is None
        crit = client.create(pod_body(ns, "crit", priorityClassName="system-cluster-critical"))
        assert crit.spec.priority == 2_000_000_000
        with pytest.raises(Forbidden, match="no PriorityClass with name nope-class was found"):
            client.create(pod_body(ns, "bad", priorityClassName="nope-class"))
        with pytest.raises(Forbidden, match=r"the integer value of priority \(5\) must not be provided"):
            client.create(pod_body(ns, "bad2", priorityClassName=high, priority=5))
        with pytest.raises(NotFound):
            client.get("Pod", "bad", ns)  # nothing half-created
        with invalid("value"):
            client.patch("PriorityClass", high, {"value": 7}, None)
    finally:
        client.delete("PriorityClass", high, None)


def test_global_default_applies_and_only_one_may_exist(client: Client, ns: str) -> None:
    first, second = uniq("default"), uniq("default")
    client.create(priority_class(first, 50, globalDefault=True, preemptionPolicy="Never"))
    try:
        pod = client.create(pod_body(ns, "p"))
        assert (pod.spec.priority, pod.spec.priorityClassName, pod.spec.preemptionPolicy) == (50, first, "Never")
        with invalid("already marked as default"):
            client.create(priority_class(second, 60, globalDefault=True))
    finally:
        client.delete("PriorityClass", first, None)


@pytest.mark.parametrize(("body", "text"), [
    (priority_class("system-mine", 5), "reserved for system use"),
    (priority_class("too-high", 1_000_000_001), "maximum allowed value"),
])
def test_bad_priority_classes_are_refused(client: Client, body: dict[str, Any], text: str) -> None:
    with invalid(text):
        client.create(body)


# --- PodDisruptionBudget status and Eviction ------------------------------------------------------

def ready_pod(client: Client, ns: str, name: str, labels: dict[str, str], **meta: Any) -> None:
    body = pod_body(ns, name, labels)
    body["metadata"].update(meta)
    client.create(body)
    client.patch("Pod", name, {"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}},
                 ns, subresource="status")


def evict(client: Client, ns: str, name: str, **extra: Any) -> Any:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": name, "namespace": ns}, **extra}
    return client.request("POST", f"/api/v1/namespaces/{ns}/pods/{name}/eviction", json=body)


def pdb_status(client: Client, ns: str, name: str) -> dict[str, Any]:
    return client.get("PodDisruptionBudget", name, ns).status.to_dict()  # type: ignore[no-any-return]


@pytest.fixture
def controller(client: Client) -> Iterator[DisruptionController]:
    ctl = DisruptionController(client, DisruptionConfig(resync_s=60.0))
    ctl.start()
    yield ctl
    ctl.stop()


def test_budget_status_and_eviction_429_then_201(client: Client, ns: str, controller: DisruptionController) -> None:
    app = {"app": "db"}
    for i in range(2):
        ready_pod(client, ns, f"db-{i}", app)
    client.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": "db", "namespace": ns},
                   "spec": {"minAvailable": 2, "selector": {"matchLabels": app}}})
    status = wait_for(lambda: (s := pdb_status(client, ns, "db")).get("observedGeneration") and s, WAIT_S)
    assert (status["currentHealthy"], status["desiredHealthy"], status["expectedPods"],
            status["disruptionsAllowed"]) == (2, 2, 2, 0)
    with pytest.raises(TooManyRequests) as refused:
        evict(client, ns, "db-0")
    assert refused.value.code == 429
    assert refused.value.message == "Cannot evict pod as it would violate the pod's disruption budget."
    assert "needs 2 healthy pods and has 2 currently" in str(refused.value.details)
    assert client.get("Pod", "db-0", ns).metadata.deletionTimestamp is None

    ready_pod(client, ns, "db-2", app)
    wait_for(lambda: pdb_status(client, ns, "db")["disruptionsAllowed"] == 1, WAIT_S)
    dry = client.request("POST", f"/api/v1/namespaces/{ns}/pods/db-0/eviction", params={"dryRun": "All"},
                         json={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "db-0"}})
    assert dry["status"] == "Success"  # checked, nothing written
    assert pdb_status(client, ns, "db")["disruptionsAllowed"] == 1
    assert client.get("Pod", "db-0", ns).metadata.deletionTimestamp is None
    result = evict(client, ns, "db-0")
    assert result["status"] == "Success"
    # the budget is spent at once (disruptedPods bookkeeping), before the controller sees the pod go
    with pytest.raises(TooManyRequests):
        evict(client, ns, "db-1")
    wait_for(lambda: pdb_status(client, ns, "db")["currentHealthy"] == 2, WAIT_S)


def test_percent_and_max_unavailable_need_controllers(client: Client, ns: str,
                                                      controller: DisruptionController) -> None:
    ready_pod(client, ns, "lone", {"app": "lone"})
    client.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": "lone", "namespace": ns},
                   "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "lone"}}}})
    wait_for(lambda: pdb_status(client, ns, "lone").get("observedGeneration"), WAIT_S)
    assert pdb_status(client, ns, "lone")["disruptionsAllowed"] == 0
    assert wait_for(lambda: [e for e in client.list("Event", ns).items if e.reason == "NoControllers"], WAIT_S)


def test_eviction_without_budget_deletes_and_bad_bodies_are_refused(client: Client, ns: str) -> None:
    ready_pod(client, ns, "free", {"app": "free"})
    with pytest.raises(BadRequest, match="name in URL does not match"):
        client.request("POST", f"/api/v1/namespaces/{ns}/pods/free/eviction",
                       json={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}})
    assert evict(client, ns, "free")["status"] == "Success"
    gone = wait_for(lambda: _gone_or_deleting(client, ns, "free"), WAIT_S)
    assert gone
    with pytest.raises(NotFound):
        evict(client, ns, "no-such-pod")


def _gone_or_deleting(client: Client, ns: str, name: str) -> bool:
    try:
        return client.get("Pod", name, ns).metadata.deletionTimestamp is not None
    except NotFound:
        return True


def test_bad_budgets_are_refused(client: Client, ns: str) -> None:
    base = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "x", "namespace": ns}}
    with invalid("cannot be both set"):
        client.create({**base, "spec": {"minAvailable": 1, "maxUnavailable": 1}})
    with invalid("spec.maxUnavailable"):
        client.create({**base, "spec": {"maxUnavailable": "lots"}})


def test_discovery_names_the_eviction_subresource(client: Client) -> None:
    core = client.request("GET", "/api/v1")
    ev = next(r for r in core["resources"] if r["name"] == "pods/eviction")
    assert (ev["kind"], ev["group"], ev["version"]) == ("Eviction", "policy", "v1")
    assert any(g["name"] == "policy" for g in client.request("GET", "/apis")["groups"])


# --- preemption through the scheduler loop ----------------------------------------------------------

def test_high_priority_pod_preempts_a_low_one(client: Client, ns: str) -> None:
    tag = ns.split("-")[-1]
    node = f"{tag}-pre"
    make_node(client, node, "1Gi", labels={"pool": tag})
    low_pc, high_pc = uniq("low"), uniq("high")
    client.create(priority_class(low_pc, 10))
    client.create(priority_class(high_pc, 1000))
    sched = Scheduler(client, config(ns, retry_unschedulable_s=0.5))
    sched.start()

    def body(name: str, pc: str, **spec: Any) -> dict[str, Any]:
        b = pod_body(ns, name, priorityClassName=pc, schedulerName=f"{ns}-scheduler", nodeSelector={"pool": tag},
                     **spec)
        b["spec"]["containers"][0]["resources"] = {"requests": {"memory": "700Mi"}}
        return b

    try:
        client.create(body("low", low_pc))
        assert wait_for(lambda: client.get("Pod", "low", ns).spec.nodeName, WAIT_S) == node
        client.create(body("never", high_pc, preemptionPolicy="PreemptLowerPriority"))
        client.delete("Pod", "never", ns, grace_period_seconds=0)
        client.create(body("high", high_pc))
        wait_for(lambda: (client.get("Pod", "high", ns).status or None) and
                 client.get("Pod", "high", ns).status.nominatedNodeName == node, WAIT_S)
        wait_for(lambda: client.get("Pod", "low", ns).metadata.deletionTimestamp, WAIT_S)  # graceful: kubelet's turn
        assert client.get("Pod", "high", ns).spec.nodeName is None  # waits until the victim is gone
        assert [e for e in client.list("Event", ns).items if e.reason == "Preempted"]
        client.delete("Pod", "low", ns, grace_period_seconds=0)  # what the kubelet does once it stopped
        assert wait_for(lambda: client.get("Pod", "high", ns).spec.nodeName, WAIT_S) == node
    finally:
        sched.stop()
        for name in (low_pc, high_pc):
            client.delete("PriorityClass", name, None)
        client.delete("Node", node, None)


def test_preemption_policy_never_waits(client: Client, ns: str) -> None:
    tag = ns.split("-")[-1]
    node = f"{tag}-nev"
    make_node(client, node, "1Gi", labels={"pool": tag})
    low_pc, meek_pc = uniq("low"), uniq("meek")
    client.create(priority_class(low_pc, 10))
    client.create(priority_class(meek_pc, 1000, preemptionPolicy="Never"))
    sched = Scheduler(client, config(ns, retry_unschedulable_s=0.5))
    sched.start()
    try:
        for name, pc in (("low", low_pc), ("meek", meek_pc)):
            b = pod_body(ns, name, priorityClassName=pc, schedulerName=f"{ns}-scheduler", nodeSelector={"pool": tag})
            b["spec"]["containers"][0]["resources"] = {"requests": {"memory": "700Mi"}}
            client.create(b)
            if name == "low":
                wait_for(lambda: client.get("Pod", "low", ns).spec.nodeName, WAIT_S)
        wait_for(lambda: any(c.type == "PodScheduled" and c.status == "False"
                             for c in (client.get("Pod", "meek", ns).status.conditions or [])), WAIT_S)
        assert client.get("Pod", "low", ns).metadata.deletionTimestamp is None
        assert client.get("Pod", "meek", ns).status.nominatedNodeName is None
    finally:
        sched.stop()
        for name in (low_pc, meek_pc):
            client.delete("PriorityClass", name, None)
        client.delete("Node", node, None)


# --- drain through the Eviction API ---------------------------------------------------------------

def test_drain_waits_for_the_budget_then_evicts(client: Client, ns: str, controller: DisruptionController,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from cli import drain as drain_mod

    tag = ns.split("-")[-1]
    node = f"{tag}-drain"
    make_node(client, node, "1Gi")
    app = {"app": "guarded"}
    try:
        ready_pod(client, ns, "g-0", app)
        client.patch("Pod", "g-0", {"spec": {"nodeName": node}}, ns)
        client.create({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                       "metadata": {"name": "g", "namespace": ns},
                       "spec": {"minAvailable": 1, "selector": {"matchLabels": app}}})
        wait_for(lambda: pdb_status(client, ns, "g").get("observedGeneration"), WAIT_S)
        with pytest.raises(MiniK8sError, match="would violate a PodDisruptionBudget") as err:
            drain_mod.drain(client, node, timeout_s=1.0)
        assert err.value.code == 504
        assert "Cannot evict pod as it would violate the pod's disruption budget." in capsys.readouterr().out
        assert client.get("Pod", "g-0", ns).metadata.deletionTimestamp is None  # still running
        assert client.get("Node", node, None).spec.unschedulable is True

        ready_pod(client, ns, "g-1", app)  # elsewhere: now one may go
        wait_for(lambda: pdb_status(client, ns, "g")["disruptionsAllowed"] == 1, WAIT_S)
        drain_mod.drain(client, node, timeout_s=3.0)  # evicted, then (no kubelet here) finished forcibly
        assert "evicting pod " + f"{ns}/g-0" in capsys.readouterr().out
        with pytest.raises(NotFound):
            client.get("Pod", "g-0", ns)
    finally:
        client.delete("Node", node, None)
