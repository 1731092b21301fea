"""Chaos: a node's dockerd is SIGKILLed while traffic flows.

Nothing on the data path needs dockerd: the node's dockerd runs with `--live-restore`, so its
containers keep running, and pod networking and Service rules live in the kernel. Not one request
may fail. The kubelet notices at once (its Docker event stream breaks) and reports the node
NotReady ("container runtime is down"); the node's supervisor restarts dockerd two seconds later,
the new dockerd adopts the running containers, and the kubelet reports Ready again with the same
containers and restart counts. Without its supervisor the node stays NotReady until `minik8s up`,
which restarts both.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from minik8s import Client
from minik8s.cluster.config import ClusterConfig
from minik8s.cluster.local import _node_dockerd, _node_supervisor
from minik8s.errors import MiniK8sError
from tests.e2e.chaos.common import App, Traffic, app_containers, node_ready, served_app, summary
from tests.e2e.conftest import UP_ARGS, UP_TIMEOUT_S, run, wait_for

FAULT_NODE = 2
#: Kill to Ready again when the supervisor heals the node: its 2 s delay, about 1 s of dockerd start-up,
#: then the kubelet's reconnect; the bound leaves room for a busy 2-core machine.
SELF_HEAL_S = 30.0
#: Without a supervisor the node must still be NotReady this long after the kill (well past the 2 s delay).
UNSUPERVISED_HOLD_S = 6.0
#: `minik8s up` (which adopts everything else) to Ready again.
REPAIR_S = 120.0
AFTER_RECOVERY_S = 2.0  # traffic keeps flowing a little after recovery, and must not fail either
#: A node watch outlives its test by at most this long.
WATCH_S = int(UNSUPERVISED_HOLD_S + REPAIR_S + 30)


class ReadyLog:
    """The node's Ready condition as seen on a watch, so a NotReady spell of a second is not missed."""

    def __init__(self, client: Client, node: str) -> None:
        self.node = node
        self.seen: list[tuple[str, str]] = []  # (status, message)
        self.error: MiniK8sError | None = None
        rv = client.list("Node", None).resource_version
        self._events = client.watch("Node", None, rv, timeout_seconds=WATCH_S)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self) -> None:
        try:
            for ev in self._events:
                if ev.object.metadata.name != self.node:
                    continue
                ready = next((c for c in ev.object.status.conditions or [] if c.type == "Ready"), None)
                if ready is not None and (not self.seen or self.seen[-1][0] != ready.status):
                    self.seen.append((ready.status, ready.message or ""))
        except MiniK8sError as exc:  # the API went away (a later scenario kills it): the log ends here
            self.error = exc

    def __repr__(self) -> str:
        return f"ReadyLog({self.node}: {self.seen}{f', watch ended: {self.error}' if self.error else ''})"

    def not_ready_message(self) -> str | None:
        return next((msg for status, msg in self.seen if status != "True"), None)

    def recovered(self) -> bool:
        statuses = [s for s, _ in self.seen]
        return "False" in statuses and statuses[-1] == "True"

    def wait(self, what: str, probe: Callable[[], object], timeout: float) -> None:
        try:
            wait_for(f"{self.node} {what}", probe, timeout=timeout, interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; {self!r}") from None


@pytest.fixture(scope="module")
def app(client: Client) -> Iterator[App]:
    with served_app(client, "dockerd") as served:
        pods = client.list("Pod", "default", label_selector=f"app={served.name}").items
        assert f"node-{FAULT_NODE}" in {p.spec.nodeName for p in pods}, "no replica on the node whose dockerd dies"
        yield served


def kill_dockerd(cfg: ClusterConfig) -> float:
    pid = _node_dockerd(cfg, cfg.node(FAULT_NODE)).pid()
    assert pid is not None, "the node's dockerd is not running"
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


def test_killed_dockerd_is_restarted_by_the_node_supervisor(client: Client, app: App) -> None:
    cfg = ClusterConfig()
    node = cfg.node(FAULT_NODE).name
    before = app_containers(cfg, app.name)
    ready = ReadyLog(client, node)
    traffic = Traffic(app, cfg).start()
    time.sleep(1)
    killed = kill_dockerd(cfg)
    ready.wait("NotReady, then Ready again", ready.recovered, SELF_HEAL_S)
    healed_s = time.monotonic() - killed
    time.sleep(AFTER_RECOVERY_S)
    requests = traffic.stop()

    assert "container runtime is down" in (ready.not_ready_message() or ""), ready.seen
    assert not traffic.failures(), summary(traffic.failures(), len(requests))
    assert all(traffic.count(t) > 5 for t in app.targets), {t: traffic.count(t) for t in app.targets}
    assert app_containers(cfg, app.name) == before  # nothing restarted, nothing duplicated
    assert "UNHEALTHY" not in run("status").stdout
    print(f"dockerd on {node}: Ready again {healed_s:.1f}s after the kill; {len(requests)} requests, none failed")


def test_without_its_supervisor_the_node_stays_not_ready_until_up_repairs_it(client: Client, app: App) -> None:
    cfg = ClusterConfig()
    node = cfg.node(FAULT_NODE)
    before = app_containers(cfg, app.name)
    ready = ReadyLog(client, node.name)
    traffic = Traffic(app, cfg).start()
    supervisor = _node_supervisor(cfg, node).pid()
    assert supervisor is not None, "the node's supervisor is not running"
    os.kill(supervisor, signal.SIGKILL)
    time.sleep(1)
    killed = kill_dockerd(cfg)
    ready.wait("NotReady", ready.not_ready_message, SELF_HEAL_S)
    time.sleep(max(0.0, killed + UNSUPERVISED_HOLD_S - time.monotonic()))
    assert node_ready(client, node.name).status == "False"
    assert not _node_dockerd(cfg, node).running()

    up_at = time.monotonic()
    run(*UP_ARGS, timeout=UP_TIMEOUT_S)
    ready.wait("Ready again", ready.recovered, REPAIR_S)
    repaired_s = time.monotonic() - up_at
    time.sleep(AFTER_RECOVERY_S)
    requests = traffic.stop()

    assert not traffic.failures(), summary(traffic.failures(), len(requests))
    assert app_containers(cfg, app.name) == before
    status = run("status").stdout
    assert "UNHEALTHY" not in status and f"{node.name}/supervisor" in status, status
    print(f"{node.name}: `minik8s up` made it Ready in {repaired_s:.1f}s; {len(requests)} requests, none failed")
