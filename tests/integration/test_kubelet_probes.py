"""Readiness and liveness probes against a real dockerd (the fixtures of test_kubelet_runtime).

The pod IPs live in the test dockerd's private netns; the prober's threads enter it (setns is
per thread), as the kubelet itself runs in its node's netns.
"""

from __future__ import annotations

import ctypes
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from minik8s.api.types import Pod, PodStatus
from minik8s.kubelet.probe_actions import ProbeActions
from minik8s.kubelet.probes import Prober
from tests.integration.test_kubelet_runtime import (
    NETNS,
    Recorder,
    cleanup,
    cstatus,
    dockerd,
    make_pod,
    make_runtime,
)

__all__ = ["dockerd"]  # the module-scoped fixture, shared with test_kubelet_runtime

CLONE_NEWNET = 0x40000000
STEP_SECONDS = 0.1


def enter_test_netns() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/var/run/netns/{NETNS}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)


def drive(rt: Any, pod: Pod, predicate: Any, timeout: float) -> PodStatus:
    """Sync and compute status as the kubelet does, until predicate(status)."""
    deadline = time.monotonic() + timeout
    status = rt.pod_status(pod)
    while time.monotonic() < deadline:
        rt.sync_pod(pod)
        status = rt.pod_status(pod)
        if predicate(status):
            return status
        time.sleep(STEP_SECONDS)
    raise AssertionError(f"condition not reached; last status: {status.to_dict()}")


def test_readiness_http_and_tcp_and_liveness_exec(dockerd: Any) -> None:
    events = Recorder()
    requeued: list[float] = []
    pool = ThreadPoolExecutor(max_workers=4, initializer=enter_test_netns, thread_name_prefix="probe-test")
    prober = Prober(ProbeActions(dockerd), on_change=lambda p: requeued.append(time.monotonic()),
                    events=events, executor=pool)
    rt = make_runtime(dockerd, events=events, readiness=prober.ready, prober=prober)
    fast = {"periodSeconds": 1, "timeoutSeconds": 1, "failureThreshold": 1}
    pod = make_pod("probed", [
        {"name": "web", "image": "busybox", "command": ["sh", "-c", "mkdir -p /www; exec httpd -f -p 8080 -h /www"],
         "ports": [{"name": "http", "containerPort": 8080}],
         "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http",
                                        "httpHeaders": [{"name": "X-Probe", "value": "1"}]}, **fast}},
        {"name": "live", "image": "busybox",
         "command": ["sh", "-c", "mkdir -p /tmp; touch /tmp/alive; while :; do sleep 1; done"],
         "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2}},
        {"name": "tcp", "image": "busybox", "command": ["sh", "-c", "while :; do sleep 1; done"],
         "readinessProbe": {"tcpSocket": {"port": 9999}, **fast}},
    ], terminationGracePeriodSeconds=1)
    prober.start()
    try:
        status = drive(rt, pod, lambda s: s.phase == "Running" and cstatus(s, "live").ready, 20)
        # web serves 404 for /healthz until the file exists; the closed tcp port never answers
        assert not cstatus(status, "web").ready and not cstatus(status, "tcp").ready
        assert {c.type: c.status for c in status.conditions or []}["Ready"] == "False"
        time.sleep(2)  # a few probe periods
        status = drive(rt, pod, lambda s: True, 1)
        assert not cstatus(status, "web").ready
        assert any(r == "Unhealthy" and m.startswith("Readiness probe failed: HTTP probe failed with statuscode: 404")
                   and c == "web" for r, m, c in events.seen), events.seen

        assert rt.exec("default", "probed", "web", ["touch", "/www/healthz"])[0] == 0
        touched = time.monotonic()
        status = drive(rt, pod, lambda s: cstatus(s, "web").ready, 5)
        assert requeued and requeued[-1] - touched < 2.5  # the flip requeued the pod within a period or so
        assert not cstatus(status, "tcp").ready

        assert rt.exec("default", "probed", "live", ["rm", "/tmp/alive"])[0] == 0
        status = drive(rt, pod, lambda s: cstatus(s, "live").restartCount == 1
                       and cstatus(s, "live").state.running is not None, 15)  # type: ignore[union-attr]
        live = cstatus(status, "live")
        assert live.lastState and live.lastState.terminated and live.lastState.terminated.exitCode == 137
        messages = [(r, m) for r, m, c in events.seen if c == "live"]
        assert ("Unhealthy", "Liveness probe failed: cat: can't open '/tmp/alive': No such file or directory") \
            in messages, messages
        assert ("Killing", "Container live failed liveness probe, will be restarted") in messages
        # the new instance has /tmp/alive again: it stays up, and the others were not touched
        time.sleep(3)
        status = drive(rt, pod, lambda s: True, 1)
        assert cstatus(status, "live").restartCount == 1 and cstatus(status, "live").ready
        assert cstatus(status, "web").ready and cstatus(status, "web").restartCount == 0
        assert not cstatus(status, "tcp").ready
        assert any(m.startswith("Readiness probe failed: dial tcp") and m.endswith("connection refused")
                   for r, m, c in events.seen if c == "tcp"), events.seen
    finally:
        prober.stop()
        pool.shutdown(wait=True)
        cleanup(rt, pod)
    assert not [k for k in prober._workers if k[0] == pod.metadata.uid]


def test_probe_state_gone_with_pod(dockerd: Any) -> None:
    """remove_pod drops the pod's probes (the kill path of deleted pods)."""
    prober = Prober(ProbeActions(dockerd))
    rt = make_runtime(dockerd, readiness=prober.ready, prober=prober)
    pod = make_pod("gone", [{"name": "c", "image": "busybox", "command": ["sleep", "30"],
                             "readinessProbe": {"exec": {"command": ["true"]}}}])
    try:
        drive(rt, pod, lambda s: s.phase == "Running", 10)
        assert prober._workers
    finally:
        cleanup(rt, pod)
        prober.stop()
    assert not prober._workers
