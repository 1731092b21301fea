"""ReplicaSets, Deployments and garbage collection against a real etcd + API server.

The controllers run in-process; a fake kubelet in this module binds pods to a made-up node,
marks them Running+Ready through the status subresource, and finishes graceful deletions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from minik8s import Client, errors
from minik8s.controllers.deployment import DeploymentController
from minik8s.controllers.gc import GarbageCollector
from minik8s.controllers.replicaset import ReplicaSetController
from minik8s.controllers.workloads import REVISION_ANNOTATION, is_ready
from tests.conftest import TEST_TOKEN, uniq

WAIT_S = 30.0
POLL_S = 0.05
READY_DELAY_S = 0.15  # the fake kubelet waits this long before a pod turns Ready


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(POLL_S)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


class FakeKubelet:
    """Binds every pod of one namespace (to `bind_to`; None leaves binding to a real scheduler), makes it
    Ready after a short delay, completes deletions."""

    def __init__(self, client: Client, namespace: str, bind_to: str | None = "fake-node") -> None:
        self.client, self.namespace, self.bind_to = client, namespace, bind_to
        self._stop = threading.Event()
        self._seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._pass()
            except errors.MiniK8sError:
                continue  # a race with a controller: the next pass sees fresh state

    def _pass(self) -> None:
        now = time.monotonic()
        for pod in self.client.list("Pod", self.namespace).items:
            name = pod.metadata.name
            if pod.metadata.deletionTimestamp:
                self.client.delete("Pod", name, self.namespace, grace_period_seconds=0)
            elif not pod.spec.nodeName:
                if self.bind_to:
                    self.client.bind(name, self.bind_to, self.namespace)
            elif not is_ready(pod) and pod.status.phase not in ("Failed", "Succeeded"):
                first = self._seen.setdefault(pod.metadata.uid, now)
                if now - first >= READY_DELAY_S:
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    self.client.patch("Pod", name, {"status": {
                        "phase": "Running", "podIP": "10.9.9.9",
                        "conditions": [{"type": "PodScheduled", "status": "True"},
                                       {"type": "Ready", "status": "True", "lastTransitionTime": stamp}]}},
                        self.namespace, subresource="status")


@contextmanager
def running_controllers(apiserver: str, make: Callable[[Client], list[Any]]) -> Iterator[None]:
    """The controllers `make` builds on their own client, started, then stopped."""
    c = Client(apiserver, TEST_TOKEN)
    ctrls = make(c)
    for ctrl in ctrls:
        ctrl.start()
    yield
    for ctrl in ctrls:
        ctrl.stop()
    c.close()


@contextmanager
def namespace_with_fake_kubelet(client: Client, prefix: str, bind_to: str | None = "fake-node") -> Iterator[str]:
    name = uniq(prefix)
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    kubelet = FakeKubelet(client, name, bind_to)
    kubelet.start()
    yield name
    kubelet.stop()


@pytest.fixture(scope="module")
def controllers(apiserver: str) -> Iterator[None]:
    with running_controllers(apiserver, lambda c: [ReplicaSetController(c), DeploymentController(c),
                                                   GarbageCollector(c)]):
        yield


@pytest.fixture
def ns(client: Client, controllers: None) -> Iterator[str]:
    with namespace_with_fake_kubelet(client, "wl") as name:
        yield name


def template(labels: dict[str, str], image: str = "busybox:v1") -> dict[str, Any]:
    return {"metadata": {"labels": labels},
            "spec": {"containers": [{"name": "main", "image": image, "command": ["sleep", "3600"]}]}}


def replicaset(name: str, replicas: int, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": template(labels)}}


def deployment(name: str, replicas: int, labels: dict[str, str], image: str = "busybox:v1",
               strategy: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": labels},
                            "template": template(labels, image)}
    if strategy:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def live_pods(client: Client, ns: str, selector: str | None = None) -> list[Any]:
    return [p for p in client.list("Pod", ns, selector).items if not p.metadata.deletionTimestamp]


def owned_by(pod: Any, uid: str) -> bool:
    return any(r.uid == uid and r.controller for r in pod.metadata.ownerReferences or [])


def rs_ready(client: Client, ns: str, name: str, n: int) -> bool:
    rs = client.get("ReplicaSet", name, ns)
    pods = [p for p in live_pods(client, ns) if owned_by(p, rs.metadata.uid)]
    return bool(rs.status and rs.status.readyReplicas == n and rs.status.replicas == n and len(pods) == n
                and rs.status.observedGeneration == rs.metadata.generation)


def deploy_complete(client: Client, ns: str, name: str, n: int) -> bool:
    d = client.get("Deployment", name, ns)
    s = d.status
    return bool(s and s.observedGeneration == d.metadata.generation and s.updatedReplicas == n
                and s.replicas == n and s.availableReplicas == n)


# --- ReplicaSet ---------------------------------------------------------------------------------------

def test_replicaset_creates_replaces_adopts_and_releases(client: Client, ns: str) -> None:
    labels = {"app": "web"}
    rs = client.create(replicaset("web", 3, labels), ns)
    assert rs.spec.replicas == 3
    wait_for("3 ready pods", lambda: rs_ready(client, ns, "web", 3))
    pods = live_pods(client, ns)
    assert all(p.metadata.name.startswith("web-") and len(p.metadata.name) == len("web-") + 5 for p in pods)
    assert all(owned_by(p, rs.metadata.uid) for p in pods)

    victim = pods[0].metadata.name
    client.delete("Pod", victim, ns, grace_period_seconds=0)
    wait_for("a replacement", lambda: rs_ready(client, ns, "web", 3)
             and victim not in {p.metadata.name for p in live_pods(client, ns)})

    # an orphan that matches is adopted, and the set deletes one pod to stay at 3
    client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stray", "labels": labels},
                   "spec": template(labels)["spec"]}, ns)
    def adopted() -> bool:
        # the set may pick the (not yet ready) stray as the one to delete right after adopting it; it
        # deletes only pods it owns, so a stray that is gone or going was adopted too
        try:
            stray = client.get("Pod", "stray", ns)
        except errors.NotFound:
            return True
        return owned_by(stray, rs.metadata.uid) or stray.metadata.deletionTimestamp is not None

    wait_for("adoption", adopted)
    wait_for("back to 3", lambda: len(live_pods(client, ns)) == 3 and rs_ready(client, ns, "web", 3))

    # a pod relabelled out of the selector is released and replaced
    keep = live_pods(client, ns)[0].metadata.name
    client.patch("Pod", keep, {"metadata": {"labels": {"app": "debug"}}}, ns)
    wait_for("release", lambda: not client.get("Pod", keep, ns).metadata.ownerReferences)
    wait_for("replacement of the released pod", lambda: rs_ready(client, ns, "web", 3))
    assert len(live_pods(client, ns, "app=web")) == 3


def test_replicaset_scale_subresource_up_and_down(client: Client, ns: str) -> None:
    client.create(replicaset("sc", 2, {"app": "sc"}), ns)
    wait_for("2 ready", lambda: rs_ready(client, ns, "sc", 2))
    scale = client.request("GET", f"/apis/apps/v1/namespaces/{ns}/replicasets/sc/scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=sc"
    client.patch("ReplicaSet", "sc", {"spec": {"replicas": 5}}, ns, subresource="scale")
    wait_for("5 ready", lambda: rs_ready(client, ns, "sc", 5))
    client.patch("ReplicaSet", "sc", {"spec": {"replicas": 1}}, ns, subresource="scale")
    wait_for("1 left", lambda: rs_ready(client, ns, "sc", 1))
    with pytest.raises(errors.MiniK8sError) as exc:
        client.patch("ReplicaSet", "sc", {"spec": {"replicas": -1}}, ns, subresource="scale")
    assert exc.value.code == 422 and "spec.replicas" in exc.value.message
    assert client.get("ReplicaSet", "sc", ns).spec.replicas == 1


# --- Deployment -----------------------------------------------------------------------------------------

class ReadyWatch:
    """Samples the number of ready, non-terminating pods of a selector; keeps the minimum."""

    def __init__(self, client: Client, ns: str, selector: str) -> None:
        self.client, self.ns, self.selector = client, ns, selector
        self.minimum: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S / 2):
            n = sum(1 for p in live_pods(self.client, self.ns, self.selector) if is_ready(p))
            self.minimum = n if self.minimum is None else min(self.minimum, n)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.minimum if self.minimum is not None else 0


def images(client: Client, ns: str, selector: str) -> set[str]:
    return {p.spec.containers[0].image for p in live_pods(client, ns, selector)}


def test_deployment_rolling_update_then_undo(client: Client, ns: str) -> None:
    labels = {"app": "roll"}
    d = client.create(deployment("roll", 4, labels), ns)
    assert d.spec.strategy.type == "RollingUpdate"
    assert d.spec.strategy.rollingUpdate.maxSurge == "25%" and d.spec.revisionHistoryLimit == 10
    wait_for("v1 complete", lambda: deploy_complete(client, ns, "roll", 4))
    rs1 = client.list("ReplicaSet", ns).items
    assert len(rs1) == 1 and rs1[0].metadata.name.startswith("roll-")
    assert rs1[0].metadata.annotations[REVISION_ANNOTATION] == "1"
    assert "pod-template-hash" in rs1[0].spec.selector.matchLabels

    watch = ReadyWatch(client, ns, "app=roll")
    client.patch("Deployment", "roll", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "busybox:v2", "command": ["sleep", "3600"]}]}}}}, ns)
    wait_for("v2 complete", lambda: deploy_complete(client, ns, "roll", 4) and images(client, ns, "app=roll")
             == {"busybox:v2"} and len(live_pods(client, ns)) == 4)
    minimum = watch.stop()
    assert minimum >= 4 - 1, f"ready pods dropped to {minimum} (maxUnavailable 25% of 4 = 1)"
    sets = {rs.metadata.annotations[REVISION_ANNOTATION]: rs for rs in client.list("ReplicaSet", ns).items}
    assert set(sets) == {"1", "2"} and sets["1"].spec.replicas == 0 and sets["2"].spec.replicas == 4
    d = client.get("Deployment", "roll", ns)
    conds = {c.type: (c.status, c.reason) for c in d.status.conditions}
    assert conds["Available"] == ("True", "MinimumReplicasAvailable")
    assert conds["Progressing"] == ("True", "NewReplicaSetAvailable")

    # undo: the revision-1 template comes back, as revision 3, in the same ReplicaSet
    from cli.workloads import undo_deployment
    undo_deployment(client, "roll", ns, None)
    wait_for("v1 again", lambda: deploy_complete(client, ns, "roll", 4) and images(client, ns, "app=roll")
             == {"busybox:v1"} and len(live_pods(client, ns)) == 4)
    sets = {rs.metadata.name: rs for rs in client.list("ReplicaSet", ns).items}
    assert len(sets) == 2
    assert sets[rs1[0].metadata.name].metadata.annotations[REVISION_ANNOTATION] == "3"


def test_deployment_recreate_replaces_all_at_once(client: Client, ns: str) -> None:
    client.create(deployment("rec", 2, {"app": "rec"}, strategy={"type": "Recreate"}), ns)
    wait_for("v1 complete", lambda: deploy_complete(client, ns, "rec", 2))
    client.patch("Deployment", "rec", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "busybox:v2", "command": ["sleep", "3600"]}]}}}}, ns)
    seen_mixed = threading.Event()

    def check() -> bool:
        if len(images(client, ns, "app=rec")) > 1:
            seen_mixed.set()
        return deploy_complete(client, ns, "rec", 2) and images(client, ns, "app=rec") == {"busybox:v2"}

    wait_for("v2 complete", check)
    assert not seen_mixed.is_set(), "Recreate ran old and new pods side by side"


def test_deployment_scale_and_cascading_delete(client: Client, ns: str) -> None:
    client.create(deployment("casc", 2, {"app": "casc"}), ns)
    wait_for("complete", lambda: deploy_complete(client, ns, "casc", 2))
    client.patch("Deployment", "casc", {"spec": {"replicas": 3}}, ns, subresource="scale")
    wait_for("3", lambda: deploy_complete(client, ns, "casc", 3))
    client.delete("Deployment", "casc", ns)
    wait_for("replica sets gone", lambda: not client.list("ReplicaSet", ns).items)
    wait_for("pods gone", lambda: not client.list("Pod", ns).items)


def test_orphan_delete_keeps_pods_without_owner(client: Client, ns: str) -> None:
    client.create(replicaset("orph", 2, {"app": "orph"}), ns)
    wait_for("2 ready", lambda: rs_ready(client, ns, "orph", 2))
    before = {p.metadata.name for p in live_pods(client, ns)}
    client.request("DELETE", f"/apis/apps/v1/namespaces/{ns}/replicasets/orph",
                   json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Orphan"})
    with pytest.raises(errors.NotFound):
        client.get("ReplicaSet", "orph", ns)
    time.sleep(1.0)  # give the garbage collector a chance to do the wrong thing
    pods = live_pods(client, ns)
    assert {p.metadata.name for p in pods} == before
    assert all(not p.metadata.ownerReferences for p in pods)


def test_bad_specs_are_rejected_with_field_paths(client: Client, ns: str) -> None:
    bad = replicaset("bad", 1, {"app": "a"})
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "b"}
    with pytest.raises(errors.MiniK8sError) as exc:
        client.create(bad, ns)
    assert exc.value.code == 422 and "spec.template.metadata.labels" in exc.value.message
    neg = deployment("neg", -1, {"app": "a"})
    with pytest.raises(errors.MiniK8sError) as exc:
        client.create(neg, ns)
    assert exc.value.code == 422 and "spec.replicas" in exc.value.message
    nocontainer = deployment("noc", 1, {"app": "a"})
    nocontainer["spec"]["template"]["spec"]["containers"][0]["image"] = ""
    with pytest.raises(errors.MiniK8sError) as exc:
        client.create(nocontainer, ns)
    assert "spec.template.spec.containers[0].image" in exc.value.message
    surge = deployment("surge", 1, {"app": "a"}, strategy={"type": "RollingUpdate",
                                                             "rollingUpdate": {"maxSurge": "abc"}})
    with pytest.raises(errors.MiniK8sError) as exc:
        client.create(surge, ns)
    assert "spec.strategy.rollingUpdate.maxSurge" in exc.value.message
    assert not client.list("Deployment", ns).items and not client.list("ReplicaSet", ns).items


# --- CLI ----------------------------------------------------------------------------------------------

@pytest.fixture
def cli_env(apiserver: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"server": apiserver, "token": TEST_TOKEN}))
    monkeypatch.setenv("MINIK8S_CONFIG", str(cfg))


def run_cli(*args: str) -> Any:
    from click.testing import CliRunner

    from cli.main import cli
    return CliRunner().invoke(cli, list(args))


def test_cli_scale_restart_history_status_and_orphan_delete(client: Client, ns: str, cli_env: None) -> None:
    client.create(deployment("web", 2, {"app": "web"}), ns)
    out = run_cli("rollout", "status", "deploy/web", "-n", ns, "--timeout", "30")
    assert out.exit_code == 0, out.output
    assert 'deployment "web" successfully rolled out' in out.output
    out = run_cli("scale", "deploy", "web", "--replicas", "3", "-n", ns)
    assert out.exit_code == 0 and "deployment.apps/web scaled" in out.output
    wait_for("3", lambda: deploy_complete(client, ns, "web", 3))
    out = run_cli("get", "deploy", "-n", ns)
    assert out.output.split("\n")[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert out.output.split("\n")[1].split()[:4] == ["web", "3/3", "3", "3"]

    before = {p.metadata.name for p in live_pods(client, ns)}
    out = run_cli("rollout", "restart", "deploy/web", "-n", ns)
    assert out.exit_code == 0, out.output
    out = run_cli("rollout", "status", "deploy", "web", "-n", ns, "--timeout", "30")
    assert out.exit_code == 0, out.output
    wait_for("all pods replaced", lambda: len(live_pods(client, ns)) == 3
             and not before & {p.metadata.name for p in live_pods(client, ns)})
    out = run_cli("rollout", "history", "deploy/web", "-n", ns)
    assert out.exit_code == 0 and [line.split()[0] for line in out.output.splitlines()[2:]] == ["1", "2"]
    out = run_cli("rollout", "undo", "deploy/web", "-n", ns, "--to-revision", "7")
    assert out.exit_code == 1 and "revision 7" in out.output

    rs_names = {rs.metadata.name for rs in client.list("ReplicaSet", ns).items}
    out = run_cli("delete", "deploy", "web", "-n", ns, "--cascade=orphan")
    assert out.exit_code == 0, out.output
    time.sleep(1.0)
    left = client.list("ReplicaSet", ns).items
    assert {rs.metadata.name for rs in left} == rs_names and all(not rs.metadata.ownerReferences for rs in left)
    assert len(live_pods(client, ns)) == 3


def test_cli_rollout_status_times_out(client: Client, controllers: None, cli_env: None) -> None:
    quiet = uniq("quiet")  # no kubelet here: pods never become ready
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": quiet}})
    client.create(deployment("stuck", 1, {"app": "stuck"}), quiet)
    out = run_cli("rollout", "status", "deploy/stuck", "-n", quiet, "--timeout", "1")
    assert out.exit_code == 1 and "timed out" in out.output
    client.delete("Namespace", quiet)


def test_stuck_rollout_exceeds_its_progress_deadline_and_rollout_status_fails(
        client: Client, controllers: None, cli_env: None) -> None:
    quiet = uniq("stuck")  # no kubelet here: pods never become ready
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": quiet}})
    body = deployment("stuck", 1, {"app": "stuck"})
    body["spec"]["progressDeadlineSeconds"] = 2
    client.create(body, quiet)

    def progressing() -> Any:
        d = client.get("Deployment", "stuck", quiet)
        return next((c for c in (d.status.conditions if d.status else None) or [] if c.type == "Progressing"), None)

    first = wait_for("Progressing", progressing)
    assert (first.status, first.reason) == ("True", "ReplicaSetUpdated")
    late = wait_for("ProgressDeadlineExceeded", lambda: (c := progressing()) and c.reason == "ProgressDeadlineExceeded"
                    and c)
    assert late.status == "False" and "has timed out progressing" in late.message
    out = run_cli("rollout", "status", "deploy/stuck", "-n", quiet, "--timeout", "30")
    assert out.exit_code == 1 and 'deployment "stuck" exceeded its progress deadline' in out.output, out.output
    client.delete("Namespace", quiet)


def test_foreground_delete_removes_dependents_first(client: Client, ns: str) -> None:
    client.create(deployment("fg", 2, {"app": "fg"}), ns)
    wait_for("complete", lambda: deploy_complete(client, ns, "fg", 2))
    client.delete("Deployment", "fg", ns, propagation_policy="Foreground")
    assert not client.list("ReplicaSet", ns).items  # gone before the call returned
    wait_for("pods gone", lambda: not client.list("Pod", ns).items)
