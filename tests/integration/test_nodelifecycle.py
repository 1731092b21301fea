"""The node lifecycle controller against a real API server, with a controlled clock."""

from __future__ import annotations

import datetime as dt
import time
import uuid

from minik8s import Client
from minik8s.controllers.nodelifecycle import UNREACHABLE_TAINT, NodeLifecycleConfig, NodeLifecycleController
from minik8s.controllers.tainteviction import TaintEvictionController

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def iso(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def make_node(client: Client, name: str, beat: dt.datetime) -> None:
    client.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    client.patch("Node", name, {"status": {"conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": iso(beat),
         "lastTransitionTime": iso(beat)}]}}, None, subresource="status")
    client.create({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                   "metadata": {"name": name, "namespace": "kube-node-lease"},
                   "spec": {"holderIdentity": name, "renewTime": iso(beat)}})


def wait_cached(ctrl: NodeLifecycleController | TaintEvictionController, name: str, check: object) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        node = ctrl.nodes.get(name)
        if node is not None and check(node):  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"informer never showed the expected state of {name}")


def test_silent_node_goes_unknown_then_its_pods_are_evicted_and_it_recovers(client: Client) -> None:
    name = f"quiet-{uuid.uuid4().hex[:6]}"
    now = [dt.datetime.now(dt.UTC)]
    make_node(client, name, now[0])
    pod = f"p-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
                   "spec": {"containers": [{"name": "a", "image": "busybox"}]}})
    client.bind(pod, name)
    # the pod was admitted with the default 300 s toleration of the unreachable taint
    assert any(tol.key == UNREACHABLE_TAINT and tol.tolerationSeconds == 300
               for tol in client.get("Pod", pod).spec.tolerations)
    ctrl = NodeLifecycleController(client, NodeLifecycleConfig(node_monitor_grace_s=40), clock=lambda: now[0])
    evictor = TaintEvictionController(client, clock=lambda: now[0])
    for inf in (ctrl.nodes, ctrl.leases, ctrl.pods, evictor.nodes, evictor.pods):
        inf.start()
        assert inf.wait_synced(30)
    try:
        wait_cached(ctrl, name, lambda n: True)
        ctrl.reconcile()  # fresh heartbeat: nothing happens
        assert client.get("Node", name, None).spec.taints is None

        # past the grace period, and silent for longer than the eviction timeout too (a control plane
        # that was down a while): the pass that taints never evicts; pods get the full timeout
        now[0] += dt.timedelta(seconds=400)
        ctrl.reconcile()
        node = client.get("Node", name, None)
        ready = next(c for c in node.status.conditions if c.type == "Ready")
        assert ready.status == "Unknown" and ready.reason == "NodeStatusUnknown"
        assert [t.key for t in node.spec.taints] == [UNREACHABLE_TAINT]
        assert [t.effect for t in node.spec.taints] == ["NoExecute"]
        wait_cached(evictor, name, lambda n: n.spec.taints)
        evictor.reconcile()  # tolerated for 300 s from when the taint was added
        assert client.get("Pod", pod).metadata.deletionTimestamp is None

        now[0] += dt.timedelta(seconds=290)
        ctrl.reconcile()
        evictor.reconcile()
        assert client.get("Pod", pod).metadata.deletionTimestamp is None
        now[0] += dt.timedelta(seconds=20)
        evictor.reconcile()
        assert client.get("Pod", pod).metadata.deletionTimestamp is not None

        # the kubelet comes back: Ready with a fresh heartbeat, and the taint goes
        client.patch("Node", name, {"status": {"conditions": [
            {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": iso(now[0]),
             "lastTransitionTime": iso(now[0])}]}}, None, subresource="status")
        wait_cached(ctrl, name, lambda n: n.status.conditions[0].status == "True")
        ctrl.reconcile()
        assert not client.get("Node", name, None).spec.taints
    finally:
        ctrl.stop()
        evictor.stop()


def test_pods_of_deleted_nodes_are_collected(client: Client) -> None:
    name = f"gone-{uuid.uuid4().hex[:6]}"
    make_node(client, name, dt.datetime.now(dt.UTC))
    pod = f"p-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod},
                   "spec": {"containers": [{"name": "a", "image": "busybox"}]}})
    client.bind(pod, name)
    client.delete("Node", name, None)
    ctrl = NodeLifecycleController(client)
    for inf in (ctrl.nodes, ctrl.leases, ctrl.pods):
        inf.start()
        assert inf.wait_synced(30)
    try:
        ctrl.reconcile()
        names = [p.metadata.name for p in client.list("Pod", "default").items]
        assert pod not in names
        assert name not in [le.metadata.name for le in client.list("Lease", "kube-node-lease").items]
    finally:
        ctrl.stop()
