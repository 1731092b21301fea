"""Process trees and their PSS, as `minik8s status --resources` adds them up (real processes, no cluster)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from minik8s.cluster.procs import process_trees, pss_bytes


def test_a_tree_holds_the_root_and_every_descendant_once() -> None:
    # a shell with two children of its own, and a grandchild
    script = "sleep 30 & (sleep 30 & wait) & wait"
    root = subprocess.Popen(["sh", "-c", script], start_new_session=True)  # its own group, to stop it whole
    other = subprocess.Popen(["sleep", "30"])
    try:
        deadline = time.monotonic() + 5
        trees: dict[str, list[int]] = {}
        while time.monotonic() < deadline:
            trees = process_trees({"shell": root.pid, "other": other.pid, "me": os.getpid()})
            if len(trees["shell"]) == 4:  # sh, sleep, the subshell, its sleep
                break
            time.sleep(0.05)
        assert len(trees["shell"]) == 4 and root.pid in trees["shell"]
        assert trees["other"] == [other.pid]
        # the shell is also under this test's process: each pid counts once, under its nearest root
        assert not set(trees["me"]) & set(trees["shell"]) and os.getpid() in trees["me"]
    finally:
        os.killpg(root.pid, signal.SIGKILL)
        other.kill()
        root.wait()
        other.wait()


def test_pss_is_counted_for_live_processes_only() -> None:
    assert pss_bytes(os.getpid()) > 1024 * 1024  # this interpreter
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert pss_bytes(dead.pid) == 0


def test_a_component_may_have_several_roots() -> None:
    # a Ray node: its daemons were orphaned by `ray start`, so the component is a set of roots
    a, b = subprocess.Popen(["sleep", "30"]), subprocess.Popen(["sleep", "30"])
    try:
        trees = process_trees({"ray-node": [a.pid, b.pid], "me": os.getpid()})
        assert sorted(trees["ray-node"]) == sorted([a.pid, b.pid])
        assert a.pid not in trees["me"] and b.pid not in trees["me"]
    finally:
        for p in (a, b):
            p.kill()
            p.wait()
