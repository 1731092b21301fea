"""Lifecycle hooks and termination messages: validation, handler choice, grace arithmetic, message rules."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from minik8s.api import types as t
from minik8s.api.validation import validate_pod
from minik8s.kubelet import labels as L
from minik8s.kubelet import lifecycle, termination
from minik8s.kubelet.probe_actions import ProbeTarget, http_get
from minik8s.kubelet.status import ContainerRecord


def _pod(container: dict[str, Any], **spec: Any) -> t.Pod:
    return t.Pod.model_validate({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
        "spec": {"containers": [{"name": "c", "image": "busybox", **container}], **spec},
    })


def _causes(container: dict[str, Any], **spec: Any) -> dict[str, str]:
    return dict(validate_pod(_pod(container, **spec)))


# --- validation ------------------------------------------------------------------------------------


def test_valid_hooks_are_accepted() -> None:
    assert _causes({"lifecycle": {
        "postStart": {"exec": {"command": ["sh", "-c", "true"]}},
        "preStop": {"httpGet": {"path": "/stop", "port": "http"}},
    }, "ports": [{"name": "http", "containerPort": 80}]}) == {}
    assert _causes({"lifecycle": {"preStop": {"sleep": {"seconds": 0}}}}) == {}


def test_lifecycle_was_an_unknown_field_and_now_parses() -> None:
    pod = _pod({"lifecycle": {"preStop": {"sleep": {"seconds": 5}}}})
    assert pod.spec.containers[0].lifecycle is not None
    assert pod.spec.containers[0].lifecycle.preStop is not None
    assert pod.spec.containers[0].to_dict()["lifecycle"] == {"preStop": {"sleep": {"seconds": 5}}}


def test_tcp_socket_hook_is_refused_naming_the_field() -> None:
    causes = _causes({"lifecycle": {"preStop": {"tcpSocket": {"port": 80}}}})
    path = "spec.containers[0].lifecycle.preStop.tcpSocket"
    assert list(causes) == [path]
    assert "not supported" in causes[path]


def test_a_handler_needs_exactly_one_action() -> None:
    none = _causes({"lifecycle": {"postStart": {}}})
    assert list(none) == ["spec.containers[0].lifecycle.postStart"]
    assert none["spec.containers[0].lifecycle.postStart"].startswith("Required value")
    two = _causes({"lifecycle": {"postStart": {"exec": {"command": ["true"]}, "sleep": {"seconds": 1}}}})
    assert list(two) == ["spec.containers[0].lifecycle.postStart.sleep"]
    assert two["spec.containers[0].lifecycle.postStart.sleep"].startswith("Forbidden")


@pytest.mark.parametrize(("handler", "path"), [
    ({"exec": {}}, "preStop.exec.command"),
    ({"exec": {"command": []}}, "preStop.exec.command"),
    ({"httpGet": {"port": 0}}, "preStop.httpGet.port"),
    ({"httpGet": {"port": 70000}}, "preStop.httpGet.port"),
    ({"httpGet": {"port": "Not_A_Name"}}, "preStop.httpGet.port"),
    ({"sleep": {"seconds": -1}}, "preStop.sleep.seconds"),
    ({"sleep": {"seconds": 31}}, "preStop.sleep.seconds"),
])
def test_bad_handler_fields_name_their_path(handler: dict[str, Any], path: str) -> None:
    assert list(_causes({"lifecycle": {"preStop": handler}})) == [f"spec.containers[0].lifecycle.{path}"]


def test_sleep_is_bounded_by_the_pods_grace_period() -> None:
    assert _causes({"lifecycle": {"preStop": {"sleep": {"seconds": 50}}}}, terminationGracePeriodSeconds=60) == {}
    causes = _causes({"lifecycle": {"preStop": {"sleep": {"seconds": 50}}}}, terminationGracePeriodSeconds=10)
    assert "(10)" in causes["spec.containers[0].lifecycle.preStop.sleep.seconds"]


def test_init_containers_take_no_hooks() -> None:
    pod = t.Pod.model_validate({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}],
                 "initContainers": [{"name": "i", "image": "busybox",
                                     "lifecycle": {"postStart": {"exec": {"command": ["true"]}}}}]},
    })
    assert [path for path, _ in validate_pod(pod)] == ["spec.initContainers[0].lifecycle"]


def test_termination_message_fields_are_checked() -> None:
    causes = _causes({"terminationMessagePolicy": "Always", "terminationMessagePath": "relative/log"})
    assert "Unsupported value" in causes["spec.containers[0].terminationMessagePolicy"]
    assert "absolute" in causes["spec.containers[0].terminationMessagePath"]
    assert _causes({"terminationMessagePolicy": "FallbackToLogsOnError", "terminationMessagePath": "/tmp/m"}) == {}


# --- handlers and grace ---------------------------------------------------------------------------


def _handler(raw: dict[str, Any]) -> t.LifecycleHandler:
    return t.LifecycleHandler.model_validate(raw)


def test_handler_kind() -> None:
    assert lifecycle.handler_kind(_handler({"exec": {"command": ["x"]}})) == "exec"
    assert lifecycle.handler_kind(_handler({"httpGet": {"port": 1}})) == "httpGet"
    assert lifecycle.handler_kind(_handler({"sleep": {"seconds": 1}})) == "sleep"
    assert lifecycle.handler_kind(_handler({"tcpSocket": {"port": 1}})) is None
    assert lifecycle.handler_kind(_handler({})) is None


@pytest.mark.parametrize(("grace", "elapsed", "left"), [
    (30, 0.0, 30), (30, 5.7, 25), (30, 27.9, 3), (30, 28.0, 2), (30, 29.9, 2), (3, 10.0, 2), (1, 0.2, 2),
])
def test_remaining_grace_keeps_whole_seconds_and_a_minimum(grace: int, elapsed: float, left: int) -> None:
    assert lifecycle.remaining_grace(grace, elapsed) == left


def test_pre_stop_labels_resolve_named_ports_and_keep_the_pod_ip() -> None:
    spec = t.Container.model_validate({
        "name": "c", "ports": [{"name": "web", "containerPort": 8080}],
        "lifecycle": {"preStop": {"httpGet": {"path": "/bye", "port": "web"}}},
    })
    found = lifecycle.pre_stop_labels(spec, "10.0.0.5")
    assert json.loads(found[lifecycle.PRE_STOP_LABEL]) == {"httpGet": {"path": "/bye", "port": 8080}}
    assert found[lifecycle.POD_IP_LABEL] == "10.0.0.5"
    assert lifecycle.pre_stop_labels(t.Container(name="plain"), "10.0.0.5") == {}


class FakeActions:
    """Records the handlers run; each takes ``takes`` seconds of the fake clock and fails with ``error``."""

    def __init__(self, clock: list[float], takes: float = 0.0, error: str | None = None) -> None:
        self.clock, self.takes, self.error = clock, takes, error
        self.runs: list[tuple[str | None, ProbeTarget, float]] = []

    def run(self, handler: t.LifecycleHandler, target: ProbeTarget, timeout: float) -> str | None:
        self.runs.append((lifecycle.handler_kind(handler), target, timeout))
        self.clock[0] += min(self.takes, timeout)
        return self.error


class RecordingSink:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, str, str | None]] = []

    def event(self, pod: t.Pod, event_type: str, reason: str, message: str, container: str | None = None) -> None:
        self.events.append((pod.name, event_type, reason, message, container))


def _hooks(takes: float = 0.0, error: str | None = None) -> tuple[lifecycle.LifecycleHooks, FakeActions, RecordingSink]:
    clock = [100.0]
    actions, sink = FakeActions(clock, takes, error), RecordingSink()
    return lifecycle.LifecycleHooks(actions, sink, monotonic=lambda: clock[0]), actions, sink


def _stop_labels(handler: dict[str, Any]) -> dict[str, str]:
    spec = t.Container.model_validate({"name": "c", "lifecycle": {"preStop": handler}})
    ref = L.PodRef(uid="u1", namespace="ns", name="victim")
    return {**L.container_labels(ref, "node", "c", 0, "h", 30), **lifecycle.pre_stop_labels(spec, "10.1.2.3")}


def test_pre_stop_takes_its_time_out_of_the_grace_period() -> None:
    hooks, actions, sink = _hooks(takes=12.4)
    assert hooks.pre_stop("cid", _stop_labels({"exec": {"command": ["true"]}}), 30) == 18
    kind, target, timeout = actions.runs[0]
    assert (kind, target.container_id, target.pod_ip, timeout) == ("exec", "cid", "10.1.2.3", 30.0)
    assert sink.events == []


def test_a_pre_stop_that_outlasts_the_grace_period_leaves_the_minimum() -> None:
    hooks, _, _ = _hooks(takes=100.0)
    assert hooks.pre_stop("cid", _stop_labels({"sleep": {"seconds": 100}}), 10) == lifecycle.MIN_GRACE_SECONDS


def test_a_failed_pre_stop_is_an_event_and_the_stop_goes_on() -> None:
    hooks, _, sink = _hooks(takes=1.0, error="boom")
    assert hooks.pre_stop("cid", _stop_labels({"exec": {"command": ["false"]}}), 30) == 29
    assert [(e[0], e[1], e[2], e[4]) for e in sink.events] == [("victim", "Warning", "FailedPreStopHook", "c")]
    assert "boom" in sink.events[0][3]


def test_no_hook_or_no_grace_runs_nothing() -> None:
    hooks, actions, _ = _hooks()
    ref = L.PodRef(uid="u1", namespace="ns", name="victim")
    assert hooks.pre_stop("cid", L.container_labels(ref, "node", "c", 0, "h", 30), 30) == 30
    assert hooks.pre_stop("cid", _stop_labels({"exec": {"command": ["true"]}}), 0) == 0
    assert actions.runs == []


def test_post_start_failure_is_an_event_and_reported() -> None:
    hooks, actions, sink = _hooks(error="exit 1")
    spec = t.Container.model_validate({"name": "c", "lifecycle": {"postStart": {"exec": {"command": ["false"]}}}})
    pod = _pod({})
    error = hooks.post_start(pod, spec, "cid", "10.9.9.9")
    assert error is not None and "exit 1" in error
    assert [(e[2], e[4]) for e in sink.events] == [("FailedPostStartHook", "c")]
    assert actions.runs[0][1].pod_ip == "10.9.9.9"
    hooks_ok, _, sink_ok = _hooks()
    assert hooks_ok.post_start(pod, spec, "cid", None) is None
    assert sink_ok.events == []
    assert hooks_ok.post_start(pod, t.Container(name="c"), "cid", None) is None


def test_sleep_action_is_bounded_by_the_timeout() -> None:
    slept: list[float] = []
    actions = lifecycle.DockerHookActions.__new__(lifecycle.DockerHookActions)
    actions.sleep = slept.append
    target = ProbeTarget(None, "cid", t.Container(name="c"))
    assert actions.run(_handler({"sleep": {"seconds": 20}}), target, 5.0) is None
    assert actions.run(_handler({"sleep": {"seconds": 3}}), target, 5.0) is None
    assert slept == [5.0, 3.0]
    assert actions.run(_handler({"tcpSocket": {"port": 1}}), target, 5.0) is not None


@pytest.fixture()
def http_server() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A real HTTP server on localhost that answers 500 and records each request's headers."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
            self.send_response(500)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], seen
    finally:
        server.shutdown()
        server.server_close()


def test_http_hook_needs_an_answer_not_a_2xx(http_server: tuple[int, list[dict[str, str]]]) -> None:
    port, seen = http_server
    actions = lifecycle.DockerHookActions.__new__(lifecycle.DockerHookActions)
    target = ProbeTarget("127.0.0.1", "cid", t.Container(name="c"))
    assert actions.run(_handler({"httpGet": {"path": "/prestop", "port": port}}), target, 5.0) is None
    assert seen[0]["path"] == "/prestop"
    assert seen[0]["user-agent"] == lifecycle.USER_AGENT
    # the wording the hook relies on to tell "answered" from "unreachable"
    ok, message = http_get(t.Probe(httpGet=t.HTTPGetAction(port=port)), target, 5.0)
    assert not ok and message.startswith(lifecycle.HTTP_STATUS_FAILURE_PREFIX)


def test_http_hook_to_nobody_fails() -> None:
    actions = lifecycle.DockerHookActions.__new__(lifecycle.DockerHookActions)
    target = ProbeTarget("127.0.0.1", "cid", t.Container(name="c"))
    error = actions.run(_handler({"httpGet": {"path": "/x", "port": 1}}), target, 2.0)
    assert error is not None and "HTTP lifecycle hook" in error


# --- termination messages -------------------------------------------------------------------------


def test_prepare_makes_an_empty_writable_file_per_instance(tmp_path: Path) -> None:
    spec = t.Container(name="c", terminationMessagePath="/tmp/msg", terminationMessagePolicy="FallbackToLogsOnError")
    binds = [termination.prepare(tmp_path, "u1", spec, n) for n in range(4)]
    bind, found = binds[3]
    host = tmp_path / "u1" / "containers" / "c" / "3"
    assert bind == f"{host}:/tmp/msg:rw"
    assert found == {termination.FILE_LABEL: str(host), termination.POLICY_LABEL: "FallbackToLogsOnError"}
    assert host.read_bytes() == b""
    assert os.stat(host).st_mode & 0o777 == 0o666
    assert sorted(p.name for p in host.parent.iterdir()) == ["2", "3"]  # older instances' files are pruned
    default_bind, default_labels = termination.prepare(tmp_path, "u1", t.Container(name="d"), 0)
    assert default_bind.endswith(":/dev/termination-log:rw")
    assert default_labels[termination.POLICY_LABEL] == "File"


def test_message_is_the_files_last_4096_bytes(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(b"a" * 10 + b"b" * 4096)
    labels = {termination.FILE_LABEL: str(path), termination.POLICY_LABEL: "File"}
    assert termination.message(labels, 1, lambda: b"logs") == "b" * 4096
    assert termination.read_tail(str(tmp_path / "gone")) == ""


@pytest.mark.parametrize(("policy", "content", "exit_code", "expected"), [
    ("File", b"", 3, ""),
    ("File", b"bye", 3, "bye"),
    ("FallbackToLogsOnError", b"", 3, "log line\n"),
    ("FallbackToLogsOnError", b"", 0, ""),
    ("FallbackToLogsOnError", b"from file", 3, "from file"),
])
def test_fallback_to_logs_only_for_an_empty_file_and_an_error(
        tmp_path: Path, policy: str, content: bytes, exit_code: int, expected: str) -> None:
    path = tmp_path / "m"
    path.write_bytes(content)
    labels = {termination.FILE_LABEL: str(path), termination.POLICY_LABEL: policy}
    assert termination.message(labels, exit_code, lambda: b"log line\n") == expected


def test_log_tail_keeps_80_lines_and_2048_bytes() -> None:
    raw = b"".join(f"line {i}\n".encode() for i in range(200))
    tail = termination.log_tail(raw)
    assert tail.startswith("line 120\n") and tail.endswith("line 199\n")
    long_lines = b"".join(bytes([65 + i % 26]) * 99 + b"\n" for i in range(100))
    cut = termination.log_tail(long_lines)
    assert len(cut) == termination.MAX_LOG_BYTES
    assert cut.startswith("U" * 99)  # the 21st line of 100: the first of the last 80


def test_exited_message_is_read_once_per_container(tmp_path: Path) -> None:
    path = tmp_path / "m"
    path.write_bytes(b"first")
    labels = {termination.FILE_LABEL: str(path), termination.POLICY_LABEL: "File"}
    assert termination.exited_message("cid-once", labels, 1, lambda: b"") == "first"
    path.write_bytes(b"second")
    assert termination.exited_message("cid-once", labels, 1, lambda: b"") == "first"
    assert termination.exited_message("cid-other", {}, 1, lambda: b"logs") == ""


def test_message_cache_is_bounded() -> None:
    cache = termination.MessageCache(size=2)
    for key in ("a", "b", "c"):
        cache.get(key, lambda key=key: key)  # type: ignore[misc]
    assert cache.get("a", lambda: "recomputed") == "recomputed"
    assert cache.get("c", lambda: "recomputed") == "c"


def test_terminated_state_carries_the_message_after_the_runtime_error() -> None:
    rec = ContainerRecord(id="x", name="c", restart_count=0, image_id="", status="exited", exit_code=3,
                          termination_message="disk full")
    assert rec.terminated_state().message == "disk full"
    rec.error = "oci error"
    assert rec.terminated_state().message == "oci error: disk full"
    assert ContainerRecord(id="x", name="c", restart_count=0, image_id="", status="exited").terminated_state() \
        .message is None
