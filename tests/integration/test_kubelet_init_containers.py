"""Init containers and native sidecars on a real dockerd (the same private dockerd and busybox image as
``test_kubelet_runtime``): order, the shared sandbox, failure under restartPolicy Never, sidecar lifetime."""

from __future__ import annotations

from typing import Any

from minik8s.api.types import ContainerStatus, PodStatus
from tests.integration import test_kubelet_runtime as base

pytestmark = base.pytestmark
dockerd = base.dockerd  # the module-scoped private dockerd fixture
make_runtime, make_pod, cstatus, wait_for, cleanup = (
    base.make_runtime, base.make_pod, base.cstatus, base.wait_for, base.cleanup)

LOOP = ["sh", "-c", 'trap "exit 0" TERM; while :; do sleep 1; done']


def istatus(status: PodStatus, name: str) -> ContainerStatus:
    return next(s for s in status.initContainerStatuses or [] if s.name == name)


def nanos(docker_time: str) -> tuple[str, str]:
    """A sortable form of Docker's RFC 3339 nanosecond time (it drops trailing zeros of the fraction)."""
    whole, _, fraction = docker_time.rstrip("Z").partition(".")
    return whole, fraction.ljust(9, "0")


def condition(status: PodStatus, ctype: str) -> str | None:
    return next((c.status for c in status.conditions or [] if c.type == ctype), None)


def test_init_containers_run_in_order_in_the_sandbox_before_the_app(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    mount = [{"name": "work", "mountPath": "/work"}]
    pod = make_pod("init", [
        {"name": "app", "image": "busybox", "command": ["sh", "-c", "cat /work/log; exec sleep 300"],
         "volumeMounts": mount},
    ], volumes=[{"name": "work", "emptyDir": {}}], initContainers=[
        {"name": "first", "image": "busybox", "volumeMounts": mount,
         "command": ["sh", "-c", "sleep 1; ifconfig eth0 | sed -n 's/.*inet addr:\\([0-9.]*\\).*/\\1/p' > /work/ip; "
                    "echo first >> /work/log; echo first-done"]},
        {"name": "second", "image": "busybox", "volumeMounts": mount,
         "command": ["sh", "-c", "test -s /work/ip && echo second >> /work/log"]},
    ])
    try:
        rt.sync_pod(pod)
        status = rt.pod_status(pod)
        assert status.phase == "Pending"
        assert condition(status, "Initialized") == "False"
        assert istatus(status, "first").state.running is not None  # type: ignore[union-attr]
        assert istatus(status, "second").state.waiting.reason == "PodInitializing"  # type: ignore[union-attr]
        assert cstatus(status, "app").state.waiting.reason == "PodInitializing"  # type: ignore[union-attr]
        status = wait_for(rt, pod, lambda s: s.phase == "Running", 20)
        assert condition(status, "Initialized") == "True"
        for name in ("first", "second"):
            term = istatus(status, name).state.terminated  # type: ignore[union-attr]
            assert term is not None and term.exitCode == 0 and istatus(status, name).ready
        wait_for(rt, pod, lambda s: b"".join(rt.logs("default", "init", "app")) == b"first\nsecond\n", 10)
        # the init containers ran in the pod's network namespace: the address they saw is the pod IP
        assert b"".join(rt.logs("default", "init", "first")) == b"first-done\n"
        code, out = rt.exec("default", "init", "app", ["cat", "/work/ip"])
        assert code == 0 and out.decode().strip() == status.podIP
        # a finished init container is not run again while the sandbox lives
        rt.sync_pod(pod)
        assert istatus(rt.pod_status(pod), "first").restartCount == 0
    finally:
        cleanup(rt, pod)
    assert not dockerd.containers.list(all=True, filters={"label": f"io.kubernetes.pod.uid={pod.metadata.uid}"})


def test_failing_init_container_fails_a_never_pod_and_the_app_never_starts(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("initfail", [{"name": "app", "image": "busybox", "command": ["sleep", "300"]}],
                   restartPolicy="Never",
                   initContainers=[{"name": "bad", "image": "busybox", "command": ["sh", "-c", "exit 4"]}])
    try:
        status = wait_for(rt, pod, lambda s: s.phase == "Failed", 15)
        term = istatus(status, "bad").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.exitCode == 4 and term.reason == "Error"
        assert cstatus(status, "app").state.waiting.reason == "PodInitializing"  # type: ignore[union-attr]
        rt.sync_pod(pod)
        assert istatus(rt.pod_status(pod), "bad").restartCount == 0
        assert not dockerd.containers.list(all=True, filters={"label": [
            f"io.kubernetes.pod.uid={pod.metadata.uid}", "io.kubernetes.container.name=app"]})
    finally:
        cleanup(rt, pod)


def test_failing_init_container_is_restarted_with_back_off_under_always(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("initloop", [{"name": "app", "image": "busybox", "command": ["sleep", "300"]}],
                   initContainers=[{"name": "bad", "image": "busybox", "command": ["sh", "-c", "exit 2"]}])
    try:
        status = wait_for(rt, pod, lambda s: istatus(s, "bad").restartCount >= 1 and istatus(s, "bad").state.waiting
                          is not None and istatus(s, "bad").state.waiting.reason == "CrashLoopBackOff", 15)
        assert status.phase == "Pending"
        assert cstatus(status, "app").state.waiting is not None  # type: ignore[union-attr]
    finally:
        cleanup(rt, pod)


def test_sidecar_runs_alongside_the_app_and_stops_when_a_never_pod_completes(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    mount = [{"name": "work", "mountPath": "/work"}]
    pod = make_pod("side", [
        {"name": "app", "image": "busybox", "volumeMounts": mount,
         "command": ["sh", "-c", "until test -s /work/beat; do sleep 0.2; done; sleep 2; cat /work/seen"]},
    ], restartPolicy="Never", terminationGracePeriodSeconds=2, volumes=[{"name": "work", "emptyDir": {}}],
        initContainers=[
        {"name": "sidecar", "image": "busybox", "restartPolicy": "Always", "volumeMounts": mount,
         "command": ["sh", "-c", 'trap "exit 0" TERM; while :; do date > /work/beat; sleep 0.5; done']},
        {"name": "after", "image": "busybox", "volumeMounts": mount,
         "command": ["sh", "-c", "until test -s /work/beat; do sleep 0.2; done; echo sidecar-was-up > /work/seen"]},
    ])
    try:
        status = wait_for(rt, pod, lambda s: cstatus(s, "app").state.running is not None, 20)  # type: ignore[union-attr]
        assert istatus(status, "sidecar").state.running is not None  # type: ignore[union-attr]
        assert istatus(status, "sidecar").ready
        assert istatus(status, "after").state.terminated is not None  # type: ignore[union-attr]
        assert status.phase == "Running"
        status = wait_for(rt, pod, lambda s: s.phase == "Succeeded", 20)
        assert b"".join(rt.logs("default", "side", "app")) == b"sidecar-was-up\n"
        # the sidecar was stopped once the app completed, and its exit did not fail the pod
        assert istatus(status, "sidecar").state.terminated is not None  # type: ignore[union-attr]
        labels = [f"io.kubernetes.pod.uid={pod.metadata.uid}", "io.minik8s.container.type=sidecar"]
        assert [c.status for c in dockerd.containers.list(all=True, filters={"label": labels})] == ["exited"]
    finally:
        cleanup(rt, pod)


def test_sidecar_that_exits_is_restarted_while_the_app_runs(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("sidecrash", [{"name": "app", "image": "busybox", "command": LOOP}],
                   restartPolicy="Never", terminationGracePeriodSeconds=1, initContainers=[
                       {"name": "flaky", "image": "busybox", "restartPolicy": "Always",
                        "command": ["sh", "-c", "sleep 1; exit 1"]}])
    try:
        status = wait_for(rt, pod, lambda s: istatus(s, "flaky").restartCount >= 1, 20)
        assert cstatus(status, "app").state.running is not None  # type: ignore[union-attr]
        assert status.phase == "Running"
        assert cstatus(status, "app").restartCount == 0
    finally:
        cleanup(rt, pod)


def test_new_sandbox_runs_the_init_containers_again(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("resandbox", [{"name": "app", "image": "busybox", "command": LOOP}],
                   terminationGracePeriodSeconds=1,
                   initContainers=[{"name": "setup", "image": "busybox", "command": ["sh", "-c", "echo ran"]}])
    uid = pod.metadata.uid or ""
    try:
        wait_for(rt, pod, lambda s: s.phase == "Running", 20)
        sandbox = dockerd.containers.list(filters={"label": [
            f"io.kubernetes.pod.uid={uid}", "io.minik8s.container.type=sandbox"]})[0]
        sandbox.kill()
        sandbox.wait()
        status = wait_for(rt, pod, lambda s: istatus(s, "setup").restartCount >= 1
                          and cstatus(s, "app").state.running is not None, 30)  # type: ignore[union-attr]
        assert istatus(status, "setup").state.terminated.exitCode == 0  # type: ignore[union-attr]
        new_sandbox = dockerd.containers.list(filters={"label": [
            f"io.kubernetes.pod.uid={uid}", "io.minik8s.container.type=sandbox"]})
        assert len(new_sandbox) == 1 and new_sandbox[0].id != sandbox.id
        setup = dockerd.containers.get(istatus(status, "setup").containerID.removeprefix("docker://"))  # type: ignore[union-attr]
        assert setup.attrs["HostConfig"]["NetworkMode"] == f"container:{new_sandbox[0].id}"
    finally:
        cleanup(rt, pod)


def test_kill_stops_sidecars_after_the_app_in_reverse_order(dockerd: Any) -> None:
    rt = make_runtime(dockerd)
    pod = make_pod("sideorder", [{"name": "app", "image": "busybox", "command": LOOP}],
                   terminationGracePeriodSeconds=5, initContainers=[
                       {"name": "side-a", "image": "busybox", "restartPolicy": "Always", "command": LOOP},
                       {"name": "side-b", "image": "busybox", "restartPolicy": "Always", "command": LOOP}])
    uid = pod.metadata.uid or ""
    try:
        status = wait_for(rt, pod, lambda s: cstatus(s, "app").state.running is not None, 20)  # type: ignore[union-attr]
        assert [istatus(status, n).state.running is not None for n in ("side-a", "side-b")] == [True, True]  # type: ignore[union-attr]
        rt.kill_pod(uid)
        finished = {}
        for c in dockerd.containers.list(all=True, filters={"label": f"io.kubernetes.pod.uid={uid}"}):
            assert c.status == "exited", c.name
            finished[c.labels["io.kubernetes.container.name"]] = nanos(c.attrs["State"]["FinishedAt"])
        assert finished["app"] <= finished["side-b"] <= finished["side-a"] <= finished["POD"]
    finally:
        cleanup(rt, pod)
