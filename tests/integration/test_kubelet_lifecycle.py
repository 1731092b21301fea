"""Lifecycle hooks and termination messages through DockerRuntime on a real dockerd (its own netns).

Uses the dockerd fixture of ``test_kubelet_runtime`` (root, dockerd and busybox-static are needed).
"""

from __future__ import annotations

import time
from typing import Any

from minik8s.api.types import Pod
from minik8s.kubelet.runtime import DockerRuntime
from tests.conftest import requires
from tests.integration.test_kubelet_runtime import cleanup, cstatus, make_pod, make_runtime, wait_for
from tests.integration.test_kubelet_runtime import dockerd as dockerd  # noqa: F401 (the fixture, reused)

pytestmark = requires("dockerd", "nsenter", "busybox")

LOOP = "while :; do sleep 0.1; done"


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str | None]] = []

    def event(self, pod: Pod, event_type: str, reason: str, message: str, container: str | None = None) -> None:
        self.events.append((event_type, reason, message, container))

    def reasons(self) -> list[str]:
        return [e[1] for e in self.events]


def _out(client: Any, pod: Pod, name: str) -> str:
    path = client.root / "pods" / (pod.metadata.uid or "") / "volumes" / "out" / name
    return path.read_text() if path.exists() else ""


def _with_out(pod_name: str, container: dict[str, Any], **spec: Any) -> Pod:
    container = {"name": "c", "image": "busybox", "volumeMounts": [{"name": "out", "mountPath": "/out"}], **container}
    return make_pod(pod_name, [container], volumes=[{"name": "out", "emptyDir": {}}], **spec)


def _rt(client: Any) -> tuple[DockerRuntime, RecordingSink]:
    sink = RecordingSink()
    return make_runtime(client, events=sink), sink


def test_post_start_runs_before_the_container_counts_as_running(dockerd: Any) -> None:
    rt, sink = _rt(dockerd)
    # the app waits for the hook's file and copies it where the test can see it
    pod = _with_out("poststart", {
        "command": ["sh", "-c", "until [ -f /out/hook ]; do sleep 0.1; done; "
                                f'echo "app saw $(cat /out/hook)" > /out/seen; {LOOP}'],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "sleep 1; echo from-hook > /out/hook"]}}},
    })
    try:
        started = time.monotonic()
        rt.sync_pod(pod)
        assert time.monotonic() - started >= 1  # the sync waited for the hook
        status = rt.pod_status(pod)  # what the kubelet writes right after that sync
        assert status.phase == "Running" and cstatus(status, "c").ready, sink.events
        wait_for(rt, pod, lambda s: _out(dockerd, pod, "seen") == "app saw from-hook\n", 10)
        assert "FailedPostStartHook" not in sink.reasons()
    finally:
        cleanup(rt, pod)


def test_failing_post_start_kills_the_container_and_records_the_event(dockerd: Any) -> None:
    rt, sink = _rt(dockerd)
    pod = _with_out("badstart", {
        "command": ["sh", "-c", f'trap "echo term >> /out/log; exit 2" TERM; {LOOP}'],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "echo nope; exit 1"]}}},
    }, restartPolicy="Never")
    try:
        status = wait_for(rt, pod, lambda s: s.phase == "Failed", 20)
        term = cstatus(status, "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.exitCode == 2
        assert cstatus(status, "c").restartCount == 0
        assert _out(dockerd, pod, "log") == "term\n"  # killed with SIGTERM, as a deliberate stop
        failed = [e for e in sink.events if e[1] == "FailedPostStartHook"]
        assert len(failed) == 1 and failed[0][0] == "Warning" and failed[0][3] == "c"
        assert "nope" in failed[0][2]
    finally:
        cleanup(rt, pod)


def test_failing_post_start_restarts_under_always(dockerd: Any) -> None:
    rt, sink = _rt(dockerd)
    pod = _with_out("restartstart", {
        "command": ["sh", "-c", f'trap "exit 2" TERM; {LOOP}'],
        "lifecycle": {"postStart": {"exec": {"command": ["false"]}}},
    })
    try:
        status = wait_for(rt, pod, lambda s: cstatus(s, "c").restartCount >= 1, 20)
        assert status.phase == "Running"  # restartPolicy Always: it keeps coming back
        assert sink.reasons().count("FailedPostStartHook") >= 2
    finally:
        cleanup(rt, pod)


def test_pre_stop_runs_before_sigterm(dockerd: Any) -> None:
    rt, sink = _rt(dockerd)
    pod = _with_out("prestop", {
        "command": ["sh", "-c", f'trap "echo sigterm >> /out/order; exit 0" TERM; {LOOP}'],
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /out/order; sleep 1"]}}},
    })
    try:
        wait_for(rt, pod, lambda s: s.phase == "Running", 10)
        rt.kill_pod(pod.metadata.uid or "", 10)
        assert _out(dockerd, pod, "order") == "prestop\nsigterm\n"
        term = cstatus(rt.pod_status(pod), "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.exitCode == 0
        assert "FailedPreStopHook" not in sink.reasons()
    finally:
        cleanup(rt, pod)


def test_failed_pre_stop_is_an_event_and_the_stop_proceeds(dockerd: Any) -> None:
    rt, sink = _rt(dockerd)
    pod = _with_out("badstop", {
        "command": ["sh", "-c", f'trap "echo sigterm >> /out/order; exit 0" TERM; {LOOP}'],
        "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /out/order; exit 5"]}}},
    })
    try:
        wait_for(rt, pod, lambda s: s.phase == "Running", 10)
        rt.kill_pod(pod.metadata.uid or "", 10)
        assert _out(dockerd, pod, "order") == "prestop\nsigterm\n"
        assert [(e[0], e[1], e[3]) for e in sink.events if e[1] == "FailedPreStopHook"] == [
            ("Warning", "FailedPreStopHook", "c")]
    finally:
        cleanup(rt, pod)


def test_pre_stop_time_comes_out_of_the_grace_period(dockerd: Any) -> None:
    rt, _ = _rt(dockerd)
    # ignores SIGTERM: the stop lasts the hook plus what is left of the grace (at least 2 s) before SIGKILL
    pod = _with_out("slowstop", {
        "command": ["sh", "-c", f'trap "echo sigterm >> /out/order" TERM; {LOOP}'],
        "lifecycle": {"preStop": {"sleep": {"seconds": 3}}},
    }, terminationGracePeriodSeconds=4)
    try:
        wait_for(rt, pod, lambda s: s.phase == "Running", 10)
        started = time.monotonic()
        rt.kill_pod(pod.metadata.uid or "")  # the grace recorded on the container: 4 s
        took = time.monotonic() - started
        assert 5 <= took < 9, took  # 3 s of hook, then max(2, 4 - 3) s before SIGKILL
        assert _out(dockerd, pod, "order") == "sigterm\n"
        term = cstatus(rt.pod_status(pod), "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.exitCode == 137
    finally:
        cleanup(rt, pod)


def test_termination_message_from_the_file(dockerd: Any) -> None:
    rt, _ = _rt(dockerd)
    default = make_pod("msgfile", [{"name": "c", "image": "busybox",
                                    "command": ["sh", "-c", "printf 'disk full' > /dev/termination-log; exit 3"]}],
                       restartPolicy="Never")
    # a custom path, written by a non-root user
    custom = make_pod("msgcustom", [{"name": "c", "image": "busybox", "terminationMessagePath": "/tmp/why",
                                     "securityContext": {"runAsUser": 1000},
                                     "command": ["sh", "-c", "printf 'bye' > /tmp/why"]}], restartPolicy="Never")
    try:
        status = wait_for(rt, default, lambda s: s.phase == "Failed", 15)
        term = cstatus(status, "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.exitCode == 3 and term.message == "disk full"
        status = wait_for(rt, custom, lambda s: s.phase == "Succeeded", 15)
        term = cstatus(status, "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.message == "bye"
    finally:
        cleanup(rt, default)
        cleanup(rt, custom)


def test_termination_message_falls_back_to_the_log_tail_on_error(dockerd: Any) -> None:
    rt, _ = _rt(dockerd)
    failing = make_pod("fallback", [{"name": "c", "image": "busybox",
                                     "terminationMessagePolicy": "FallbackToLogsOnError",
                                     "command": ["sh", "-c", "seq 1 100; exit 4"]}], restartPolicy="Never")
    succeeding = make_pod("fallbackok", [{"name": "c", "image": "busybox",
                                          "terminationMessagePolicy": "FallbackToLogsOnError",
                                          "command": ["sh", "-c", "echo fine"]}], restartPolicy="Never")
    try:
        status = wait_for(rt, failing, lambda s: s.phase == "Failed", 15)
        term = cstatus(status, "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.message == "".join(f"{i}\n" for i in range(21, 101))  # last 80 lines
        status = wait_for(rt, succeeding, lambda s: s.phase == "Succeeded", 15)
        term = cstatus(status, "c").state.terminated  # type: ignore[union-attr]
        assert term is not None and term.message is None  # exit 0: no fallback
    finally:
        cleanup(rt, failing)
        cleanup(rt, succeeding)


def test_last_state_keeps_the_previous_instances_message(dockerd: Any) -> None:
    rt, _ = _rt(dockerd)
    pod = make_pod("msgrestart", [{"name": "c", "image": "busybox", "command": [
        "sh", "-c", "cat /dev/termination-log; printf 'run-%s' $(hostname) > /dev/termination-log; exit 1"]}])
    try:
        def restarted(s: Any) -> bool:
            st = cstatus(s, "c")
            return st.restartCount >= 1 and st.lastState is not None and st.lastState.terminated is not None

        status = wait_for(rt, pod, restarted, 20)
        last = cstatus(status, "c").lastState.terminated  # type: ignore[union-attr]
        assert last is not None and last.message and last.message.startswith("run-")
        # each instance starts with an empty file: nothing of the previous run is in the new one's log
        logs = b"".join(rt.logs("default", "msgrestart", "c"))
        assert b"run-" not in logs
    finally:
        cleanup(rt, pod)
