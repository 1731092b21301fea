"""Pure kubelet logic: back-off timing, phase/conditions from container states, labels, docker args."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from minik8s.api.types import Pod
from minik8s.kubelet import labels as L
from minik8s.kubelet.backoff import Backoff
from minik8s.kubelet.spec import SpecError, VolumePaths, container_kwargs, sandbox_port_bindings
from minik8s.kubelet.status import ContainerRecord, PodObservation, docker_time, pod_status, qos_class

NOW = 1_800_000_000.0


class FakeClock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


def pod(containers: list[dict[str, Any]] | None = None, **spec: Any) -> Pod:
    return Pod.model_validate({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"nodeName": "n1", "containers": containers or [{"name": "a", "image": "busybox"}], **spec},
    })


def rec(name: str = "a", status: str = "running", restarts: int = 0, exit_code: int = 0, oom: bool = False,
        cid: str = "c1") -> ContainerRecord:
    return ContainerRecord(id=cid, name=name, restart_count=restarts, image_id="sha256:x", status=status,
                           exit_code=exit_code, oom_killed=oom, started_at="2027-01-15T08:00:00Z",
                           finished_at=None if status == "running" else "2027-01-15T08:00:05Z")


# --- back-off -----------------------------------------------------------------------------------

def test_backoff_first_restart_immediate_then_doubles_to_cap() -> None:
    clock = FakeClock()
    b = Backoff(base=10, cap=300, reset_after=600, clock=clock)
    delays = []
    for _ in range(8):
        delays.append(b.delay("k"))
        b.restarted("k")
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]


def test_backoff_remaining_counts_from_finish_and_resets_after_long_run() -> None:
    clock = FakeClock()
    b = Backoff(base=10, cap=300, reset_after=600, clock=clock)
    b.restarted("k")
    b.restarted("k")  # next delay 20 s
    assert b.remaining("k", finished_at=NOW - 5, ran_for=1) == pytest.approx(15)
    clock.t += 15
    assert b.remaining("k", finished_at=NOW - 5, ran_for=1) == 0
    assert b.remaining("k", finished_at=clock.t, ran_for=600) == 0  # ran 10 min: starts over
    assert b.delay("k") == 0


def test_backoff_forget_prefix_drops_only_that_pod() -> None:
    b = Backoff(base=1, cap=4, clock=FakeClock())
    b.restarted(("u1", "a"))
    b.restarted(("u2", "a"))
    b.forget_prefix("u1")
    assert b.delay(("u1", "a")) == 0 and b.delay(("u2", "a")) == 1


# --- status -------------------------------------------------------------------------------------

def conditions(status: Any) -> dict[str, str]:
    return {c.type: c.status for c in status.conditions}


def test_running_pod_is_ready() -> None:
    st = pod_status(pod(), PodObservation(pod_ip="10.244.1.5", host_ip="10.200.0.2",
                                          containers={"a": [rec()]}), NOW)
    assert st.phase == "Running" and st.podIP == "10.244.1.5" and st.hostIP == "10.200.0.2"
    assert conditions(st) == {"Initialized": "True", "Ready": "True", "ContainersReady": "True",
                              "PodScheduled": "True"}
    cs = st.containerStatuses[0]  # type: ignore[index]
    assert cs.ready and cs.started and cs.containerID == "docker://c1" and cs.imageID == "docker://sha256:x"
    assert st.qosClass == "BestEffort"


def test_no_containers_yet_is_pending_container_creating() -> None:
    st = pod_status(pod(), PodObservation(), NOW)
    assert st.phase == "Pending"
    assert st.containerStatuses[0].state.waiting.reason == "ContainerCreating"  # type: ignore[index,union-attr]
    ready = next(c for c in st.conditions or [] if c.type == "Ready")
    assert ready.status == "False" and ready.reason == "ContainersNotReady" and "[a]" in (ready.message or "")


def test_crash_loop_shows_waiting_and_last_terminated() -> None:
    obs = PodObservation(containers={"a": [rec(status="exited", restarts=3, exit_code=2)]},
                         waiting={"a": ("CrashLoopBackOff", "back-off 40s")})
    st = pod_status(pod(), obs, NOW)
    cs = st.containerStatuses[0]  # type: ignore[index]
    assert cs.state.waiting.reason == "CrashLoopBackOff"  # type: ignore[union-attr]
    assert cs.lastState.terminated.exitCode == 2 and cs.lastState.terminated.reason == "Error"  # type: ignore[union-attr]
    assert cs.restartCount == 3 and not cs.ready
    assert st.phase == "Running"  # restartPolicy Always: restarting


@pytest.mark.parametrize(("policy", "codes", "phase"), [
    ("Never", [0, 0], "Succeeded"),
    ("Never", [0, 1], "Failed"),
    ("OnFailure", [0, 0], "Succeeded"),
    ("Always", [0, 0], "Running"),
])
def test_phase_when_all_terminated(policy: str, codes: list[int], phase: str) -> None:
    p = pod([{"name": "a", "image": "x"}, {"name": "b", "image": "x"}], restartPolicy=policy)
    obs = PodObservation(containers={
        "a": [rec("a", "exited", exit_code=codes[0], cid="1")], "b": [rec("b", "exited", exit_code=codes[1], cid="2")]})
    st = pod_status(p, obs, NOW)
    assert st.phase == phase
    if phase in ("Succeeded", "Failed"):
        ready = next(c for c in st.conditions or [] if c.type == "Ready")
        assert ready.reason == "PodCompleted"


def test_oom_killed_reason_and_previous_instance_as_last_state() -> None:
    obs = PodObservation(containers={"a": [rec(restarts=1, cid="new"),
                                           rec(status="exited", exit_code=137, oom=True, cid="old")]})
    cs = pod_status(pod(), obs, NOW).containerStatuses[0]  # type: ignore[index]
    assert cs.state.running is not None  # type: ignore[union-attr]
    assert cs.lastState.terminated.reason == "OOMKilled"  # type: ignore[union-attr]
    assert cs.lastState.terminated.containerID == "docker://old"  # type: ignore[union-attr]


def test_readiness_hook_and_one_unready_container() -> None:
    p = pod([{"name": "a", "image": "x"}, {"name": "b", "image": "x"}])
    obs = PodObservation(containers={"a": [rec("a", cid="1")], "b": [rec("b", cid="2")]})
    st = pod_status(p, obs, NOW, readiness=lambda _pod, name: name == "a")
    assert conditions(st)["Ready"] == "False" and st.phase == "Running"


def test_transition_times_are_kept_while_status_unchanged() -> None:
    first = pod_status(pod(), PodObservation(containers={"a": [rec()]}), NOW)
    p = pod()
    p.status = first
    second = pod_status(p, PodObservation(containers={"a": [rec()]}), NOW + 100)
    assert second.to_dict() == first.to_dict()
    third = pod_status(p, PodObservation(containers={"a": [rec(status="exited")]}), NOW + 200)
    ready = next(c for c in third.conditions or [] if c.type == "Ready")
    assert ready.status == "False" and ready.lastTransitionTime != first.startTime


def test_qos_classes() -> None:
    guaranteed = pod([{"name": "a", "image": "x", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}])
    burstable = pod([{"name": "a", "image": "x", "resources": {"requests": {"cpu": "100m"}}}])
    assert qos_class(guaranteed) == "Guaranteed" and qos_class(burstable) == "Burstable"
    assert qos_class(pod()) == "BestEffort"


def test_docker_time() -> None:
    assert docker_time("2027-01-15T08:00:05.123456789Z") == "2027-01-15T08:00:05Z"
    assert docker_time("0001-01-01T00:00:00Z") is None


# --- labels -------------------------------------------------------------------------------------

def test_labels_round_trip_and_names() -> None:
    ref = L.PodRef(uid="u1", namespace="ns", name="p")
    labels = L.container_labels(ref, "n1", "web", 3, "h", 30)
    assert labels[L.MANAGED] == "true" and labels[L.CONTAINER_TYPE] == L.TYPE_CONTAINER
    assert L.pod_ref_from_labels(labels) == ref and L.restart_count_of(labels) == 3
    assert L.container_labels(ref, "n1", L.SANDBOX_NAME, 0, "", 30)[L.CONTAINER_TYPE] == L.TYPE_SANDBOX
    assert L.pod_ref_from_labels({**labels, L.MANAGED: "false"}) is None
    assert L.docker_name(ref, "web", 3) == "k8s_web_p_ns_u1_3"
    assert L.label_filter(uid="u1") == {"label": [f"{L.MANAGED}=true", f"{L.POD_UID}=u1"]}
    assert L.spec_hash({"a": 1, "b": 2}) == L.spec_hash({"b": 2, "a": 1}) != L.spec_hash({"a": 2})


# --- docker arguments ---------------------------------------------------------------------------

def test_container_kwargs(tmp_path: Path) -> None:
    p = pod([{
        "name": "a", "image": "x", "command": ["sh"], "args": ["-c", "true"], "workingDir": "/w",
        "env": [{"name": "A", "value": "1"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "resources": {"limits": {"cpu": "250m", "memory": "20Mi"}, "requests": {"cpu": "100m"}},
        "volumeMounts": [{"name": "d", "mountPath": "/d", "readOnly": True},
                         {"name": "d", "mountPath": "/s", "subPath": "sub"}],
        "ports": [{"containerPort": 80, "hostPort": 8080}],
    }])
    vols = VolumePaths(paths={"d": tmp_path / "d"}, owned=frozenset({"d"}))
    kw = container_kwargs(p, p.spec.containers[0], "sb", vols, "10.244.1.5", "10.200.0.2")
    assert kw["network_mode"] == "container:sb" and kw["ipc_mode"] == "container:sb"
    assert kw["entrypoint"] == ["sh"] and kw["command"] == ["-c", "true"] and kw["working_dir"] == "/w"
    assert kw["environment"] == {"A": "1", "POD": "p", "IP": "10.244.1.5"}
    assert kw["nano_cpus"] == 250_000_000 and kw["mem_limit"] == 20 * 2**20 and kw["cpu_shares"] == 102
    assert kw["volumes"] == [f"{tmp_path}/d:/d:ro", f"{tmp_path}/d/sub:/s:rw"]
    assert (tmp_path / "d" / "sub").is_dir()
    assert kw["privileged"] is False
    assert sandbox_port_bindings(p) == {"80/tcp": 8080}


def test_privileged_only_when_asked_and_bad_mounts_rejected(tmp_path: Path) -> None:
    p = pod([{"name": "a", "image": "x", "securityContext": {"privileged": True}}])
    vols = VolumePaths(paths={}, owned=frozenset())
    assert container_kwargs(p, p.spec.containers[0], "sb", vols, None, None)["privileged"] is True
    bad = pod([{"name": "a", "image": "x", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}])
    with pytest.raises(SpecError, match="no volume named 'nope'"):
        container_kwargs(bad, bad.spec.containers[0], "sb", vols, None, None)
    escape = pod([{"name": "a", "image": "x", "volumeMounts": [{"name": "d", "mountPath": "/x", "subPath": "../.."}]}])
    with pytest.raises(SpecError, match="subPath"):
        container_kwargs(escape, escape.spec.containers[0], "sb",
                         VolumePaths(paths={"d": tmp_path}, owned=frozenset({"d"})), None, None)


@pytest.mark.parametrize("obs", [
    PodObservation(),
    PodObservation(waiting={"a": ("ImagePullBackOff", 'Back-off pulling image "busybx"')}),
    PodObservation(containers={"a": [rec(status="exited", restarts=3, exit_code=2)]},
                   waiting={"a": ("CrashLoopBackOff", "back-off 40s")}),
], ids=["creating", "image-pull-backoff", "crash-loop"])
def test_the_official_client_reads_every_pod_status(obs: PodObservation) -> None:
    """Kubernetes always sets the fields its schema requires (imageID is "" before a pull); the official
    client's typed models refuse a whole pod list otherwise."""
    from kubernetes.client import V1Pod

    p = pod()
    wire = {**p.to_dict(), "apiVersion": "v1", "kind": "Pod", "status": pod_status(p, obs, NOW).to_dict()}
    typed = V1Pod.from_dict(wire)
    assert typed.status.container_statuses[0].image_id is not None
