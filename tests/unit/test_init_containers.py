"""Init containers and native sidecars without Docker: status, phase, conditions, kubectl's columns,
validation, the scheduler's effective requests, QoS, describe and the logs/exec container check."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import pytest
from pydantic import ValidationError

from cli.describe import _describe_pod
from minik8s.api import printers
from minik8s.api.types import Pod, PodStatus
from minik8s.api.validation import pydantic_causes, validate_pod
from minik8s.apiserver.streams import kubelet_endpoint
from minik8s.controllers.endpoints import resolve_port
from minik8s.errors import BadRequest
from minik8s.kubelet.probes import Prober
from minik8s.kubelet.status import ContainerRecord, PodObservation, pod_status, qos_class
from minik8s.registry.pods import qos_class as registry_qos
from minik8s.scheduler.snapshot import pod_requests

NOW = 1_800_000_000.0
BUSY = {"image": "busybox"}


def pod(inits: list[dict[str, Any]], apps: list[dict[str, Any]] | None = None, **spec: Any) -> Pod:
    return Pod.model_validate({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"nodeName": "n1", "initContainers": [{**BUSY, **c} for c in inits],
                 "containers": [{**BUSY, **c} for c in apps or [{"name": "app"}]], **spec},
    })


def rec(name: str, status: str = "running", exit_code: int = 0, restarts: int = 0) -> ContainerRecord:
    return ContainerRecord(id=f"id-{name}-{restarts}", name=name, restart_count=restarts, image_id="sha256:x",
                           status=status, exit_code=exit_code, started_at="2027-01-15T08:00:00Z",
                           finished_at=None if status == "running" else "2027-01-15T08:00:05Z")


def observe(p: Pod, *records: ContainerRecord, waiting: dict[str, tuple[str, str]] | None = None) -> PodStatus:
    obs = PodObservation(pod_ip="10.0.0.5", host_ip="192.168.0.2", waiting=waiting or {})
    for r in records:
        obs.containers.setdefault(r.name, []).append(r)
    status = pod_status(p, obs, NOW)
    p.status = status
    return status


def conditions(status: PodStatus) -> dict[str, str]:
    return {c.type: c.status for c in status.conditions or []}


def columns(p: Pod) -> tuple[str, str, str]:
    obj = p.to_dict()
    return printers.pod_ready(obj), printers.pod_status(obj), printers.pod_restarts(obj)


TWO_INITS = [{"name": "one"}, {"name": "two"}]


# --- status, phase, conditions and kubectl's STATUS column ---------------------------------------------------

def test_first_init_container_running_pod_pending_init_0_of_2() -> None:
    p = pod(TWO_INITS)
    status = observe(p, rec("one"))
    assert status.phase == "Pending"
    assert conditions(status)["Initialized"] == "False"
    init = next(c for c in status.conditions or [] if c.type == "Initialized")
    assert init.reason == "ContainersNotInitialized" and init.message == "containers with incomplete status: [one two]"
    one, two = status.initContainerStatuses or []
    assert one.state.running is not None and not one.ready  # type: ignore[union-attr]
    assert two.state.waiting.reason == "PodInitializing"  # type: ignore[union-attr]
    app = (status.containerStatuses or [])[0]
    assert app.state.waiting.reason == "PodInitializing"  # type: ignore[union-attr]
    assert columns(p) == ("0/1", "Init:0/2", "0")


def test_second_init_container_running_shows_init_1_of_2() -> None:
    p = pod(TWO_INITS)
    status = observe(p, rec("one", "exited"), rec("two"))
    assert status.phase == "Pending"
    assert (status.initContainerStatuses or [])[0].ready
    assert columns(p)[1] == "Init:1/2"


def test_initialized_before_the_app_starts_reads_pod_initializing() -> None:
    p = pod(TWO_INITS)
    status = observe(p, rec("one", "exited"), rec("two", "exited"))
    assert conditions(status)["Initialized"] == "True"
    assert status.phase == "Pending"
    assert columns(p)[1] == "PodInitializing"


def test_initialized_and_app_running() -> None:
    p = pod(TWO_INITS)
    status = observe(p, rec("one", "exited"), rec("two", "exited"), rec("app"))
    assert status.phase == "Running"
    assert conditions(status) == {"Initialized": "True", "Ready": "True", "ContainersReady": "True",
                                  "PodScheduled": "True"}
    assert columns(p) == ("1/1", "Running", "0")


def test_failed_init_container_fails_a_never_pod() -> None:
    p = pod(TWO_INITS, restartPolicy="Never")
    status = observe(p, rec("one", "exited", exit_code=3))
    assert status.phase == "Failed"
    assert conditions(status)["Initialized"] == "False"
    assert (status.containerStatuses or [])[0].state.waiting.reason == "PodInitializing"  # type: ignore[union-attr]
    assert columns(p)[1] == "Init:Error"


@pytest.mark.parametrize("policy", ["Always", "OnFailure"])
def test_crash_looping_init_container_keeps_the_pod_pending(policy: str) -> None:
    p = pod(TWO_INITS, restartPolicy=policy)
    status = observe(p, rec("one", "exited", exit_code=1, restarts=2),
                     waiting={"one": ("CrashLoopBackOff", "back-off 20s restarting failed container")})
    assert status.phase == "Pending"
    one = (status.initContainerStatuses or [])[0]
    assert one.restartCount == 2 and one.lastState.terminated.exitCode == 1  # type: ignore[union-attr]
    assert columns(p) == ("0/1", "Init:CrashLoopBackOff", "2")


def test_pod_without_init_containers_has_no_init_statuses() -> None:
    p = Pod.model_validate({"metadata": {"name": "p", "uid": "u"},
                            "spec": {"nodeName": "n", "containers": [{"name": "a", "image": "busybox"}]}})
    status = observe(p)
    assert status.initContainerStatuses is None
    assert (status.containerStatuses or [])[0].state.waiting.reason == "ContainerCreating"  # type: ignore[union-attr]
    assert conditions(status)["Initialized"] == "True"


# --- native sidecars ---------------------------------------------------------------------------------------------

SIDECAR = [{"name": "side", "restartPolicy": "Always"}, {"name": "after"}]


def test_running_sidecar_counts_in_ready_and_lets_init_continue() -> None:
    p = pod(SIDECAR)
    status = observe(p, rec("side"), rec("after"))
    assert status.phase == "Pending"
    assert columns(p)[1] == "Init:1/2"  # the sidecar started: the regular init container after it runs
    status = observe(p, rec("side"), rec("after", "exited"), rec("app"))
    assert status.phase == "Running"
    assert conditions(status)["Ready"] == "True"
    assert columns(p) == ("2/2", "Running", "0")


def test_unready_sidecar_makes_the_pod_unready() -> None:
    p = pod(SIDECAR)
    obs = PodObservation(containers={"side": [rec("side")], "after": [rec("after", "exited")], "app": [rec("app")]})
    status = pod_status(p, obs, NOW, readiness=lambda _pod, name: name != "side")
    assert conditions(status)["Ready"] == "False"
    assert "side" in next(c.message for c in status.conditions or [] if c.type == "Ready") or ""
    p.status = status
    assert printers.pod_ready(p.to_dict()) == "1/2"


def test_never_pod_with_sidecar_succeeds_once_app_completed_and_sidecar_stopped() -> None:
    p = pod(SIDECAR, restartPolicy="Never")
    status = observe(p, rec("side"), rec("after", "exited"), rec("app", "exited"))
    assert status.phase == "Running"  # the sidecar still runs: the kubelet stops it next
    status = observe(p, rec("side", "exited", exit_code=143), rec("after", "exited"), rec("app", "exited"))
    assert status.phase == "Succeeded"  # a stopped sidecar's exit code does not fail the pod


def test_never_pod_fails_when_its_app_fails_even_with_a_sidecar() -> None:
    p = pod(SIDECAR, restartPolicy="Never")
    status = observe(p, rec("side", "exited", exit_code=143), rec("after", "exited"), rec("app", "exited", 1))
    assert status.phase == "Failed"


def test_sidecar_restarts_count_in_restarts_after_initialization() -> None:
    p = pod(SIDECAR)
    observe(p, rec("side", restarts=3), rec("after", "exited", restarts=1), rec("app"))
    assert columns(p)[2] == "3"  # the regular init container's restarts no longer count


# --- QoS and the scheduler's effective requests ----------------------------------------------------------------

def res(cpu: str, mem: str) -> dict[str, Any]:
    return {"resources": {"requests": {"cpu": cpu, "memory": mem}}}


def test_effective_requests_max_of_app_plus_sidecars_and_each_init_with_earlier_sidecars() -> None:
    p = pod([{"name": "big-init", **res("2", "64Mi")},
             {"name": "side", "restartPolicy": "Always", **res("500m", "256Mi")},
             {"name": "late-init", **res("1", "512Mi")}],
            [{"name": "app", **res("250m", "128Mi")}])
    cpu, mem = pod_requests(p)
    assert cpu == 2000  # big-init alone (2) beats app + sidecar (0.75) and late-init + sidecar (1.5)
    assert mem == (512 + 256) * 1024 * 1024  # late-init next to the sidecar declared before it


def test_requests_without_init_containers_are_the_sum() -> None:
    p = Pod.model_validate({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "a", "image": "x", **res("100m", "1Mi")}, {"name": "b", "image": "x", **res("200m", "1Mi")}]}})
    assert pod_requests(p) == (300, 2 * 1024 * 1024)


def test_qos_counts_init_containers() -> None:
    limits = {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    assert qos_class(pod([{"name": "i", **limits}], [{"name": "app", **limits}])) == "Guaranteed"
    assert qos_class(pod([{"name": "i"}], [{"name": "app", **limits}])) == "Burstable"
    assert qos_class(pod([{"name": "i", **limits}], [{"name": "app"}])) == "Burstable"


# --- validation ----------------------------------------------------------------------------------------------------

def test_restart_policy_on_an_app_container_is_refused() -> None:
    causes = validate_pod(pod([], [{"name": "app", "restartPolicy": "Always"}]))
    assert ("spec.containers[0].restartPolicy", "Forbidden: may not be set for non-init containers") in causes


def test_init_restart_policy_other_than_always_is_refused_naming_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        pod([{"name": "i", "restartPolicy": "Never"}])
    assert any(path == "spec.initContainers[0].restartPolicy" for path, _ in pydantic_causes(err.value))


@pytest.mark.parametrize("probe", ["livenessProbe", "readinessProbe", "startupProbe"])
def test_probes_refused_on_regular_init_containers_allowed_on_sidecars(probe: str) -> None:
    check = {probe: {"exec": {"command": ["true"]}}}
    causes = validate_pod(pod([{"name": "i", **check}]))
    assert [path for path, _ in causes] == [f"spec.initContainers[0].{probe}"]
    assert "may not be set for init containers" in causes[0][1]
    assert validate_pod(pod([{"name": "i", "restartPolicy": "Always", **check}])) == []


def test_sidecar_and_init_names_still_clash_with_app_names() -> None:
    causes = validate_pod(pod([{"name": "app", "restartPolicy": "Always"}]))
    assert ("spec.containers[0].name", 'Duplicate value: "app"') in causes


# --- describe, logs/exec container check ---------------------------------------------------------------------------

def test_describe_lists_init_containers_before_containers() -> None:
    p = pod(TWO_INITS)
    observe(p, rec("one", "exited"), rec("two"))
    lines: list[str] = []
    _describe_pod(p.to_dict(), lines)
    text = "\n".join(lines)
    assert text.index("Init Containers:") < text.index("  one:") < text.index("  two:") < text.index("\nContainers:\n")
    assert "Completed" in text and "Init Containers:" in text


class FakeResources:
    def __init__(self, p: Pod) -> None:
        self.pod = p.to_dict()
        self.node = {"metadata": {"name": "n1"}, "status": {
            "addresses": [{"type": "InternalIP", "address": "192.168.0.2"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}

    def get(self, kind: Any, namespace: str | None, name: str) -> dict[str, Any]:
        return self.pod if namespace is not None else self.node


def test_logs_and_exec_accept_init_container_names() -> None:
    resources = FakeResources(pod(TWO_INITS))
    assert kubelet_endpoint(resources, "ns", "p", "two").container == "two"
    assert kubelet_endpoint(resources, "ns", "p", "app").container == "app"
    assert kubelet_endpoint(resources, "ns", "p", None).container == "app"
    with pytest.raises(BadRequest, match="container nope is not valid for pod p"):
        kubelet_endpoint(resources, "ns", "p", "nope")


def test_sidecar_waiting_on_its_startup_probe_holds_the_next_init_container() -> None:
    p = pod([{"name": "side", "restartPolicy": "Always", "startupProbe": {"exec": {"command": ["true"]}}},
             {"name": "after"}])
    obs = PodObservation(containers={"side": [rec("side")]})
    status = pod_status(p, obs, NOW, started=lambda _pod, name: False)
    side = (status.initContainerStatuses or [])[0]
    assert side.state.running is not None and side.started is False  # type: ignore[union-attr]
    assert conditions(status)["Initialized"] == "False"
    p.status = status
    assert printers.pod_status(p.to_dict()) == "Init:0/2"
    status = pod_status(p, obs, NOW, started=lambda _pod, name: True)
    p.status = status
    assert printers.pod_status(p.to_dict()) == "Init:1/2"


def test_named_service_port_may_be_a_sidecars() -> None:
    p = pod([{"name": "side", "restartPolicy": "Always", "ports": [{"name": "metrics", "containerPort": 9100}]},
             {"name": "plain", "ports": [{"name": "setup", "containerPort": 9200}]}])
    assert resolve_port(p, "metrics", "TCP") == 9100
    assert resolve_port(p, "setup", "TCP") is None  # a regular init container serves nothing


def test_admission_qos_counts_init_containers() -> None:
    limits = {"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}
    spec = {"containers": [{"name": "app", **limits}], "initContainers": [{"name": "i"}]}
    assert registry_qos(spec) == "Burstable"
    spec["initContainers"] = [{"name": "i", **limits}]
    assert registry_qos(spec) == "Guaranteed"


# --- the prober sees sidecars ------------------------------------------------------------------------------------

class _InlineExecutor(Executor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


class _Runner:
    def __init__(self) -> None:
        self.ok = False

    def run(self, probe: Any, target: Any, timeout: float) -> tuple[bool, str]:
        return self.ok, ""


def test_sidecar_probes_gate_its_readiness_and_start() -> None:
    check = {"exec": {"command": ["true"]}, "periodSeconds": 1}
    p = pod([{"name": "side", "restartPolicy": "Always", "readinessProbe": check, "startupProbe": check}])
    runner = _Runner()
    clock = type("Clock", (), {"t": NOW, "now": lambda self: self.t})()
    prober = Prober(runner, clock=clock, executor=_InlineExecutor())
    prober.observe(p, PodObservation(containers={"side": [rec("side")]}))
    prober.tick()
    assert not prober.started(p, "side") and not prober.ready(p, "side")
    runner.ok = True
    for _ in range(3):
        clock.t += 1
        prober.tick()
    assert prober.started(p, "side") and prober.ready(p, "side")
