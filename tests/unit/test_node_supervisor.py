"""The node supervisor's restart policy (fake daemon, fake clock), and a real managed process it restarts."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from minik8s.cluster.procs import ManagedProcess, pid_alive
from minik8s.cluster.supervise import RestartPolicy, Supervisor, main

POLICY = RestartPolicy(delay_s=2.0, max_delay_s=8.0, reset_after_s=60.0, check_interval_s=1.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeDaemon:
    """Up until `die()`; `restart()` brings it up, or raises while `broken`."""

    name = "node-1/dockerd"

    def __init__(self) -> None:
        self.up = True
        self.broken = False
        self.restart_calls = 0

    def running(self) -> bool:
        return self.up

    def die(self) -> None:
        self.up = False

    def restart(self) -> None:
        self.restart_calls += 1
        if self.broken:
            raise RuntimeError("dockerd exited before it was answering ping")
        self.up = True


def advance_until_restarted(sup: Supervisor, clock: Clock, daemon: FakeDaemon) -> float:
    """Step as the loop would; return how long after the death the restart came."""
    died, calls = clock.now, daemon.restart_calls
    while daemon.restart_calls == calls:
        clock.now += sup.step()
        assert clock.now - died < 1000, "never restarted"
    return clock.now - died


def test_a_running_daemon_is_left_alone() -> None:
    daemon, clock = FakeDaemon(), Clock()
    sup = Supervisor(daemon, POLICY, clock)
    for _ in range(100):
        clock.now += sup.step()
    assert daemon.restart_calls == 0 and sup.restarts == 0


def test_a_dead_daemon_is_restarted_after_the_delay_not_before() -> None:
    daemon, clock = FakeDaemon(), Clock()
    sup = Supervisor(daemon, POLICY, clock)
    sup.step()
    daemon.die()
    waits = []
    while daemon.restart_calls == 0:
        wait = sup.step()
        waits.append(wait)
        if daemon.restart_calls == 0:
            clock.now += wait
    assert clock.now - 1000.0 == pytest.approx(POLICY.delay_s)
    assert all(w <= POLICY.check_interval_s for w in waits)
    assert daemon.up and sup.restarts == 1


def test_a_crash_loop_backs_off_up_to_the_cap_and_a_stable_run_resets_it() -> None:
    daemon, clock = FakeDaemon(), Clock()
    sup = Supervisor(daemon, POLICY, clock)
    delays = []
    for _ in range(4):  # each restart dies at once
        daemon.die()
        delays.append(advance_until_restarted(sup, clock, daemon))
        clock.now += sup.step()  # seen up once
    assert delays == pytest.approx([2.0, 4.0, 8.0, 8.0], abs=POLICY.check_interval_s)
    for _ in range(int(POLICY.reset_after_s) + 1):  # now it stays up
        clock.now += sup.step()
    daemon.die()
    assert advance_until_restarted(sup, clock, daemon) == pytest.approx(2.0, abs=POLICY.check_interval_s)


def test_a_failing_restart_is_retried_later() -> None:
    daemon, clock = FakeDaemon(), Clock()
    sup = Supervisor(daemon, POLICY, clock)
    daemon.die()
    daemon.broken = True
    advance_until_restarted(sup, clock, daemon)
    assert not daemon.up and sup.restarts == 0
    daemon.broken = False
    assert advance_until_restarted(sup, clock, daemon) == pytest.approx(4.0, abs=POLICY.check_interval_s)
    assert daemon.up and sup.restarts == 1


class SleepTarget:
    """A real managed process (``sleep``), restarted the way the dockerd target is."""

    def __init__(self, proc: ManagedProcess) -> None:
        self.proc = proc
        self.name = proc.name
        self.prepared = 0

    def running(self) -> bool:
        return self.proc.running()

    def restart(self) -> None:
        self.proc.start(prepare=self._prepare)

    def _prepare(self) -> None:
        self.prepared += 1


def test_a_killed_process_is_restarted_by_the_supervisor_loop(tmp_path: Path) -> None:
    proc = ManagedProcess("node-1/sleeper", ["sleep", "300"], tmp_path)
    target = SleepTarget(proc)
    first = proc.start()
    stop = threading.Event()
    sup = Supervisor(target, RestartPolicy(delay_s=0.1, check_interval_s=0.05))
    loop = threading.Thread(target=sup.run, args=(stop,), daemon=True)
    loop.start()
    try:
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (proc.pid() in (None, first)) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = proc.pid()
        assert second is not None and second != first and pid_alive(second)
        assert sup.restarts == 1 and target.prepared == 1
    finally:
        stop.set()
        loop.join(5)
        proc.stop(timeout=5)


def test_concurrent_starts_make_one_process(tmp_path: Path) -> None:
    """`up` and a supervisor may both find the daemon down: the start lock lets only one start it."""
    procs = [ManagedProcess("node-1/sleeper", ["sleep", "300"], tmp_path) for _ in range(4)]
    pids: list[int] = []
    barrier = threading.Barrier(len(procs))

    def start(p: ManagedProcess) -> None:
        barrier.wait()
        pids.append(p.start())

    threads = [threading.Thread(target=start, args=(p,)) for p in procs]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    try:
        assert len(pids) == len(procs) and len(set(pids)) == 1
    finally:
        procs[0].stop(timeout=5)


def test_the_command_line_needs_the_daemon_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--name", "node-1/dockerd", "--state-dir", "/tmp/x", "--socket", "/tmp/x/docker.sock"])
    assert exc.value.code == 2
    assert "the daemon's command line is missing" in capsys.readouterr().err
