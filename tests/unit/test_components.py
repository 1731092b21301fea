"""The component registry and the loop watchdog (no cluster, no Ray)."""

from __future__ import annotations

import threading

import pytest

from minik8s.cluster import components as registry
from minik8s.health import MIN_IDLE_S, MISSED_PERIODS, Watchdog


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_idle_loops_are_healthy_and_a_long_step_is_stuck() -> None:
    clock = FakeClock()
    dog = Watchdog(clock, stuck_after_s=60)
    assert dog.verdict().healthy  # nothing running: idle is healthy
    with dog.busy("replicaset-worker"):
        clock.now += 59
        assert dog.verdict().healthy
        clock.now += 2
        verdict = dog.verdict()
        assert not verdict.healthy and "replicaset-worker: one step running for 61s" in verdict.detail
    assert dog.verdict().healthy and dog.steps == 1  # the step finished: progress again


def test_busy_is_per_thread() -> None:
    clock = FakeClock()
    dog = Watchdog(clock, stuck_after_s=10)
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with dog.busy("informer-Pod"):
            entered.set()
            release.wait(5)

    th = threading.Thread(target=other)
    th.start()
    entered.wait(5)
    with dog.busy("informer-Pod"):
        pass  # this thread's step ends; the other thread's is still running
    clock.now += 11
    assert not dog.verdict().healthy
    release.set()
    th.join(5)
    assert dog.verdict().healthy


def test_periodic_loop_missing_rounds_is_stuck() -> None:
    clock = FakeClock()
    dog = Watchdog(clock)
    dog.expect("kubelet-resync", 30)
    clock.now += 30 * MISSED_PERIODS
    assert dog.verdict().healthy
    dog.beat("kubelet-resync")
    clock.now += 30 * MISSED_PERIODS + 1
    verdict = dog.verdict()
    assert not verdict.healthy and "kubelet-resync: no round for 121s" in verdict.detail
    dog.expect("node-lifecycle", 2)  # a fast loop: slow passes up to MIN_IDLE_S are not stuck
    clock.now += MIN_IDLE_S
    dog.beat("kubelet-resync")
    assert dog.verdict().healthy
    clock.now += 1
    assert "node-lifecycle: no round" in dog.verdict().detail
    dog.forget("node-lifecycle")
    assert dog.verdict().healthy


def test_registry_declares_every_component_once() -> None:
    names = [c.name for c in registry.COMPONENTS]
    assert len(names) == len(set(names))
    assert [c.name for c in registry.control_plane()] == ["apiserver", "scheduler", "controller-manager", "gateway",
                                                          "dns"]
    assert [c.name for c in registry.control_plane() if c.bootstrap] == ["apiserver"]
    assert registry.node_actor_names("node-2") == ["kubelet-node-2", "network-node-2", "proxy-node-2"]
    assert registry.actor_names(["node-1"]) == ["apiserver", "scheduler", "controller-manager", "gateway", "dns",
                                                "kubelet-node-1", "network-node-1", "proxy-node-1"]
    with pytest.raises(ValueError, match="runs on a node"):
        registry.get("kubelet").actor_name()


def test_health_combines_the_probe_and_the_watchdog(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    dog = Watchdog(clock, stuck_after_s=5)
    monkeypatch.setattr(registry, "WATCHDOG", dog)
    up = {"ok": True}
    comp = registry.Component("thing", registry.CONTROL_PLANE, lambda _s: up, lambda r: r["ok"],
                              facts=lambda r: {"extra": 1})
    state = registry.health(comp, up)
    assert state["healthy"] and state["extra"] == 1 and state["pid"] > 0 and state["detail"] == ""
    up["ok"] = False
    state = registry.health(comp, up)
    assert not state["healthy"] and state["detail"] == "not running"
    up["ok"] = True
    with dog.busy("thing-loop"):
        clock.now += 6
        state = registry.health(comp, up)
    assert not state["healthy"] and "thing-loop: one step running" in state["detail"]


def test_reading_the_registry_imports_no_component() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom minik8s.cluster import components\n"
            "print(','.join(m for m in ('ray', 'docker', 'pyroute2', 'fastapi', 'minik8s.kubelet.kubelet') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_stuck_timer_restarts_only_after_a_continuous_unhealthy_spell() -> None:
    timer = registry.StuckTimer(restart_after_s=180)
    assert not timer.observe(False, 0.0)
    assert not timer.observe(False, 179.0)
    assert not timer.observe(True, 180.0)  # one healthy answer starts the count again
    assert not timer.observe(False, 200.0)
    assert timer.observe(False, 380.0)


def test_health_settings_come_from_the_components_settings() -> None:
    assert registry.HealthSettings.of({}) == registry.HealthSettings()
    limits = registry.HealthSettings.of({registry.HEALTH_KEY: {"stuck_after_s": 2, "restart_after_s": 3}})
    assert limits.stuck_after_s == 2.0 and limits.restart_after_s == 3.0
    assert limits.self_check_s == registry.SELF_CHECK_S
    with pytest.raises(ValueError, match="unknown setting stuck_s"):
        registry.HealthSettings.of({registry.HEALTH_KEY: {"stuck_s": 2}})
    with pytest.raises(ValueError, match="positive"):
        registry.HealthSettings.of({registry.HEALTH_KEY: {"restart_after_s": 0}})


def test_a_configured_watchdog_judges_by_its_new_thresholds() -> None:
    clock = FakeClock()
    dog = Watchdog(clock)
    dog.configure(stuck_after_s=2.0, min_idle_s=5.0)
    with dog.busy("worker"):
        clock.now += 3
        assert "worker: one step running for 3s" in dog.verdict().detail
    dog.expect("resync", 1.0)
    clock.now += 6
    assert "resync: no round for 6s" in dog.verdict().detail


def test_node_bootstrap_lives_in_the_cluster_package_and_imports_no_ray() -> None:
    """`actors/` only places actors: the join and a node's processes are minik8s.cluster's, without Ray."""
    import subprocess
    import sys

    import actors.cluster

    assert set(actors.cluster.__all__) == {"control_plane_specs", "node_specs", "place_control_plane", "place_nodes"}
    code = "import sys\nfrom minik8s.cluster import nodes\nprint('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
