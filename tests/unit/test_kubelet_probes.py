"""Prober threshold and timing logic with a fake clock, fake probe results and an inline executor."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import pytest

from minik8s.api.types import Container, Pod, Probe
from minik8s.kubelet.probe_actions import ProbeTarget, http_get, resolve_port, tcp_socket
from minik8s.kubelet.probes import Prober
from minik8s.kubelet.status import ContainerRecord, PodObservation, format_time, pod_status

T0 = 1_800_000_000.0


class FakeClock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def now(self) -> float:
        return self.t


class InlineExecutor(Executor):
    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        fut.set_result(fn(*args, **kwargs))
        return fut


class FakeRunner:
    """Answers probes from ``results[(container, kind-ish handler)]``; records every call."""

    def __init__(self) -> None:
        self.ok: dict[str, bool] = {}
        self.calls: list[tuple[str, str]] = []

    def run(self, probe: Probe, target: ProbeTarget, timeout: float) -> tuple[bool, str]:
        cmd = (probe.exec.command or [""])[0] if probe.exec else ""
        self.calls.append((target.container_id, cmd))
        ok = self.ok.get(cmd, True)
        return ok, "" if ok else f"{cmd} said no"


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def event(self, pod: Pod, event_type: str, reason: str, message: str, container: str | None = None) -> None:
        self.seen.append((event_type, reason, message))


def probe(cmd: str, **fields: Any) -> dict[str, Any]:
    return {"exec": {"command": [cmd]}, **fields}


def make_pod(**probes: Any) -> Pod:
    return Pod.model_validate({
        "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
        "spec": {"nodeName": "n1", "containers": [{"name": "a", "image": "busybox", **probes}]},
    })


def obs(cid: str = "c1", running: bool = True, started: float = T0) -> PodObservation:
    rec = ContainerRecord(id=cid, name="a", restart_count=0, image_id="x", status="running" if running else "exited",
                          started_at=format_time(started))
    return PodObservation(pod_ip="10.244.1.5", containers={"a": [rec]})


class Harness:
    def __init__(self, pod: Pod) -> None:
        self.pod = pod
        self.clock = FakeClock()
        self.runner = FakeRunner()
        self.events = Events()
        self.changes: list[str] = []
        self.prober = Prober(self.runner, on_change=lambda p: self.changes.append(p.name), events=self.events,
                             clock=self.clock, executor=InlineExecutor())

    def at(self, t: float) -> None:
        """Advance to T0 + t and run whatever is due."""
        self.clock.t = T0 + t
        self.prober.tick()

    def ready(self) -> bool:
        return self.prober.ready(self.pod, "a")


def test_readiness_waits_for_initial_delay_then_runs_every_period() -> None:
    h = Harness(make_pod(readinessProbe=probe("r", initialDelaySeconds=5, periodSeconds=2)))
    h.prober.observe(h.pod, obs())
    h.at(0)
    h.at(4.9)
    assert h.runner.calls == [] and not h.ready()
    h.at(5)
    assert len(h.runner.calls) == 1 and h.ready() and h.changes == ["p"]
    h.at(6.5)
    assert len(h.runner.calls) == 1
    h.at(7)
    h.at(9)
    assert len(h.runner.calls) == 3
    assert h.changes == ["p"]  # only flips requeue the pod


def test_thresholds_count_consecutive_results() -> None:
    h = Harness(make_pod(readinessProbe=probe("r", periodSeconds=1, successThreshold=2, failureThreshold=3)))
    h.prober.observe(h.pod, obs())
    h.at(0)
    assert not h.ready()  # one success of two
    h.runner.ok["r"] = False
    h.at(1)
    h.runner.ok["r"] = True
    h.at(2)
    assert not h.ready()  # the run was broken by a failure
    h.at(3)
    assert h.ready()
    h.runner.ok["r"] = False
    h.at(4)
    h.at(5)
    assert h.ready()  # two failures of three
    h.at(6)
    assert not h.ready()
    assert h.changes == ["p", "p"]


def test_defaults_are_kubernetes() -> None:
    h = Harness(make_pod(readinessProbe=probe("r")))
    h.prober.observe(h.pod, obs())
    h.at(0)
    h.at(9.9)
    assert len(h.runner.calls) == 1  # period 10
    h.runner.ok["r"] = False
    h.at(10)
    h.at(20)
    assert h.ready()
    h.at(30)
    assert not h.ready()  # failure threshold 3


def test_readiness_failure_events_are_rate_limited() -> None:
    h = Harness(make_pod(readinessProbe=probe("r", periodSeconds=1)))
    h.runner.ok["r"] = False
    h.prober.observe(h.pod, obs())
    for t in range(40):
        h.at(t)
    assert h.events.seen.count(("Warning", "Unhealthy", "Readiness probe failed: r said no")) == 2


def test_liveness_failure_marks_unhealthy_once_and_restart_resets_state() -> None:
    h = Harness(make_pod(livenessProbe=probe("l", periodSeconds=1, failureThreshold=2)))
    h.prober.observe(h.pod, obs())
    assert h.ready()  # no readiness probe: a running container is ready
    h.at(0)
    assert h.prober.unhealthy("u1", "a", "c1") is None
    h.runner.ok["l"] = False
    h.at(1)
    assert h.prober.unhealthy("u1", "a", "c1") is None and h.changes == []
    h.at(2)
    assert h.prober.unhealthy("u1", "a", "c1") == "liveness" and h.changes == ["p"]
    h.at(3)
    assert len(h.runner.calls) == 3  # on hold until the container is replaced
    assert [m for _, r, m in h.events.seen if r == "Unhealthy"] == ["Liveness probe failed: l said no"] * 2
    h.runner.ok["l"] = True
    h.prober.observe(h.pod, obs(cid="c2", started=T0 + 4))
    assert h.prober.unhealthy("u1", "a", "c2") is None
    h.at(4)
    assert h.runner.calls[-1] == ("c2", "l")


def test_startup_probe_gates_readiness_and_liveness() -> None:
    h = Harness(make_pod(startupProbe=probe("s", periodSeconds=1, failureThreshold=5),
                         readinessProbe=probe("r", periodSeconds=1), livenessProbe=probe("l", periodSeconds=1)))
    h.runner.ok["s"] = False
    h.prober.observe(h.pod, obs())
    h.at(0)
    h.at(1)
    assert [c for _, c in h.runner.calls] == ["s", "s"] and not h.ready()
    assert not h.prober.started(h.pod, "a")
    h.runner.ok["s"] = True
    h.at(2)
    assert h.prober.started(h.pod, "a")
    h.at(2)  # the started container's readiness and liveness run right away
    assert sorted(c for _, c in h.runner.calls[3:]) == ["l", "r"] and h.ready()
    h.at(3)
    assert "s" not in [c for _, c in h.runner.calls[3:]]


def test_startup_failure_kills() -> None:
    h = Harness(make_pod(startupProbe=probe("s", periodSeconds=1, failureThreshold=2)))
    h.runner.ok["s"] = False
    h.prober.observe(h.pod, obs())
    h.at(0)
    h.at(1)
    assert h.prober.unhealthy("u1", "a", "c1") == "startup"


def test_exited_container_and_forgotten_pod_drop_state() -> None:
    h = Harness(make_pod(readinessProbe=probe("r", periodSeconds=1)))
    h.prober.observe(h.pod, obs())
    h.at(0)
    assert h.ready()
    h.prober.observe(h.pod, obs(running=False))
    h.prober.observe(h.pod, obs())  # same id running again is not possible, but state was dropped
    assert not h.ready()
    h.prober.forget("u1")
    h.at(1)
    assert len(h.runner.calls) == 1


def test_ready_feeds_pod_conditions() -> None:
    h = Harness(make_pod(readinessProbe=probe("r", periodSeconds=1)))
    o = obs()
    h.prober.observe(h.pod, o)
    st = pod_status(h.pod, o, T0, h.prober.ready)
    assert {c.type: c.status for c in st.conditions or []}["Ready"] == "False"
    h.at(0)
    st = pod_status(h.pod, o, T0, h.prober.ready)
    conds = {c.type: c.status for c in st.conditions or []}
    assert conds["Ready"] == conds["ContainersReady"] == "True"


def test_slow_probe_does_not_hold_others() -> None:
    """With the real thread pool, a hung probe of one pod leaves the others on schedule."""
    release = threading.Event()

    class Slow(FakeRunner):
        def run(self, probe: Probe, target: ProbeTarget, timeout: float) -> tuple[bool, str]:
            if target.container_id == "slow":
                release.wait(5)
            return super().run(probe, target, timeout)

    runner = Slow()
    changed: list[str] = []
    prober = Prober(runner, on_change=lambda p: changed.append(p.name))
    slow = make_pod(readinessProbe=probe("r", periodSeconds=1))
    fast = Pod.model_validate({**slow.to_dict(), "metadata": {"name": "q", "namespace": "ns", "uid": "u2"}})
    prober.start()
    try:
        prober.observe(slow, obs(cid="slow", started=time.time()))
        prober.observe(fast, obs(cid="fast", started=time.time()))
        deadline = time.monotonic() + 3
        while not prober.ready(fast, "a") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert prober.ready(fast, "a") and not prober.ready(slow, "a") and changed == ["q"]
    finally:
        release.set()
        prober.stop()


def test_ports_by_name_and_tcp_probe_on_loopback() -> None:
    c = Container.model_validate({"name": "a", "ports": [{"name": "http", "containerPort": 8080}]})
    assert resolve_port("http", c) == 8080 and resolve_port(81, c) == 81
    with pytest.raises(ValueError):
        resolve_port("nope", c)
    import socket

    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        p = Probe.model_validate({"tcpSocket": {"port": port}})
        assert tcp_socket(p, ProbeTarget("127.0.0.1", "c", c), 1.0) == (True, "")
    ok, message = tcp_socket(p, ProbeTarget("127.0.0.1", "c", c), 1.0)
    assert not ok and "connection refused" in message


def test_http_get_on_loopback_sends_headers_and_maps_status() -> None:
    import http.server

    seen: list[str | None] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            seen.append(self.headers.get("X-Probe"))
            self.send_response({"/ok": 200, "/moved": 302}.get(self.path, 500))
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    c = Container.model_validate({"name": "a", "ports": [{"name": "web", "containerPort": srv.server_address[1]}]})
    target = ProbeTarget("127.0.0.1", "c", c)
    try:
        def get(path: str) -> tuple[bool, str]:
            p = Probe.model_validate({"httpGet": {"path": path, "port": "web",
                                                  "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}})
            return http_get(p, target, 1.0)

        assert get("/ok") == (True, "") and get("/moved") == (True, "")
        assert get("/boom") == (False, "HTTP probe failed with statuscode: 500")
        assert seen == ["yes"] * 3
    finally:
        srv.shutdown()
        srv.server_close()
