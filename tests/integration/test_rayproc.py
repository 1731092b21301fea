"""A real Ray head and a real raylet started as `up` starts them (minik8s.cluster.local), without a resident
`ray start --block` parent: the pidfiles name a live gcs_server / raylet carrying the token settings, what
runs is measured (PSS, printed), and `stop` leaves no process of theirs.

Root not needed; loopback addresses (head 127.0.0.2, node 127.0.0.3: Ray swaps 127.0.0.1 for an
outside one) and free ports, a temporary state dir, so it runs beside a real cluster. Ray reads its
token from the state dir: nothing is written to ~/.ray.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s.cluster import local, raytoken
from minik8s.cluster.config import ClusterConfig, NodeConfig
from minik8s.cluster.procs import cmdline, pid_alive, pids_with_arg_containing, pss_bytes, session_members
from minik8s.cluster.rayproc import RayProcess, program_of
from tests.conftest import free_port

READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 15.0
HEAD_IP = "127.0.0.2"
NODE_IP = "127.0.0.3"
MIB = 1024 * 1024


@pytest.fixture
def cfg(monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterConfig]:
    # Short path: Ray puts unix sockets (<= 107 bytes) under it.
    state = Path(tempfile.mkdtemp(prefix="mk8sr", dir="/tmp"))
    c = ClusterConfig(
        state_dir=state, advertise_address=HEAD_IP, nodes=0,
        ray_port=free_port(), ray_client_server_port=free_port(), ray_dashboard_agent_port=free_port(),
        ray_dashboard_port=free_port(), ray_head_cpus=1, ray_node_cpus=1,
    )
    c.ray_dir.mkdir(parents=True)
    c.run_dir.mkdir(parents=True)
    raytoken.ensure(c.ray_token_path)
    # raytoken.use (the GCS probe) sets these in this process: let monkeypatch put them back afterwards
    for name, value in raytoken.env(c.ray_token_path).items():
        monkeypatch.setenv(name, value)
    try:
        yield c
    finally:
        shutil.rmtree(state, ignore_errors=True)


def node_of(cfg: ClusterConfig) -> NodeConfig:
    """A host-mode node on a second loopback address (no netns needed)."""
    return cfg.host_node("node-r", NODE_IP, 8, "lo", "10.250.0.0/24", cfg.control_plane_ip)


def programs(pids: list[int]) -> list[str]:
    return sorted(program_of(cmdline(p) or []) for p in pids)


def check_daemon(proc: RayProcess, program: str, token: Path) -> int:
    """The pidfile names a live `program` in the `ray start` session, started with the token settings."""
    pid = int(proc.pidfile.read_text())
    assert pid_alive(pid) and program_of(cmdline(pid) or []) == program, cmdline(pid)
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"RAY_AUTH_MODE=token" in environ
    assert f"RAY_AUTH_TOKEN_PATH={token}".encode() in environ
    assert "ray" not in programs(proc.members())  # the `ray start` CLI is gone
    return pid


def report(what: str, pids: list[int]) -> None:
    sizes = {p: pss_bytes(p) for p in pids}
    rows = ", ".join(f"{program_of(cmdline(p) or [])}={sizes[p] / MIB:.0f}" for p in sorted(pids))
    print(f"\n{what}: {sum(sizes.values()) / MIB:.0f} MiB PSS in {len(pids)} processes ({rows})")


def test_ray_head_and_raylet_run_without_a_resident_parent_and_stop_clean(cfg: ClusterConfig) -> None:
    home_token = Path.home() / ".ray" / "auth_token"
    had_home_token = home_token.exists()
    head, raylet = local._ray_head(cfg), local._node_raylet(cfg, node_of(cfg))
    assert "--block" not in head.argv
    started: set[int] = set()
    try:
        head.start()
        head.wait_ready(lambda: cfg.control_plane_ip in local.ray_alive_nodes(cfg), READY_TIMEOUT_S,
                        "registered in the GCS")
        gcs = check_daemon(head, "gcs_server", cfg.ray_token_path)
        assert head.pid() == gcs and head.running()
        assert {"gcs_server", "raylet"} <= set(programs(head.members()))

        raylet.start()
        raylet.wait_ready(lambda: NODE_IP in local.ray_alive_nodes(cfg), READY_TIMEOUT_S, "registered in the GCS")
        node_raylet = check_daemon(raylet, "raylet", cfg.ray_token_path)
        assert raylet.pid() == node_raylet

        # adopting, as a second `up` does, starts nothing and keeps the pidfiles
        assert head.start() == gcs and raylet.start() == node_raylet
        started = set(head.members()) | set(raylet.members())
        report("ray head", head.members())
        report("raylet", raylet.members())
        # `status --resources` counts the head as every Ray process of its session
        rows = {row.name: row for row in local.footprint(cfg)}
        assert set(rows) == {"ray-head"}  # nothing else of a cluster runs here (the node-r slot is no node-N)
        assert rows["ray-head"].pids == sorted(head.members()) and rows["ray-head"].pss_bytes > 0
    finally:
        started |= set(head.members()) | set(raylet.members())
        raylet_stopped = raylet.stop(STOP_TIMEOUT_S)
        head_stopped = head.stop(STOP_TIMEOUT_S)
    assert raylet_stopped and head_stopped
    assert not [p for p in started if pid_alive(p)]
    assert not pids_with_arg_containing(str(cfg.state_dir) + "/")
    assert not [*cfg.run_dir.glob("*.pid"), *cfg.run_dir.glob("*.session")]
    assert had_home_token or not home_token.exists()


def sigkill_session(pid: int) -> list[int]:
    """What the chaos tests' kill_control_plane does to the head: SIGKILL its whole session."""
    members = session_members(os.getsid(pid))
    for member in members:
        os.kill(member, signal.SIGKILL)
    return members


def test_a_killed_head_is_seen_down_and_comes_back_with_its_node(cfg: ClusterConfig) -> None:
    head, raylet = local._ray_head(cfg), local._node_raylet(cfg, node_of(cfg))
    head_ready = lambda: cfg.control_plane_ip in local.ray_alive_nodes(cfg)  # noqa: E731
    node_ready = lambda: NODE_IP in local.ray_alive_nodes(cfg)  # noqa: E731
    started: set[int] = set()
    try:
        head.start()
        head.wait_ready(head_ready, READY_TIMEOUT_S, "registered in the GCS")
        raylet.start()
        raylet.wait_ready(node_ready, READY_TIMEOUT_S, "registered in the GCS")
        started |= set(head.members()) | set(raylet.members())

        assert {"gcs_server", "raylet"} <= set(programs(head.members()))
        killed = sigkill_session(int(head.pidfile.read_text()))
        assert set(head.members()) <= set(killed)
        wait_gone(killed)
        assert not head.running() and raylet.running()  # the node's raylet outlived its head

        # as start_control_plane does: the orphaned raylet goes, a new head starts, the raylet comes back
        old_raylet = raylet.pid()
        raylet.stop(STOP_TIMEOUT_S)
        head.start()
        head.wait_ready(head_ready, READY_TIMEOUT_S, "registered in the GCS")
        raylet.start()
        raylet.wait_ready(node_ready, READY_TIMEOUT_S, "registered in the GCS")
        started |= set(head.members()) | set(raylet.members())
        check_daemon(head, "gcs_server", cfg.ray_token_path)
        assert check_daemon(raylet, "raylet", cfg.ray_token_path) != old_raylet

        # one required daemon dying (the head's raylet) takes the head down; a start clears what is left
        rec = json.loads(head.sessionfile.read_text())
        os.kill(rec["daemons"]["raylet"], signal.SIGKILL)
        wait_gone([rec["daemons"]["raylet"]])
        assert not head.running()
        leftover = head.members()
        assert "gcs_server" in programs(leftover)
        raylet.stop(STOP_TIMEOUT_S)  # it would not survive its head's replacement anyway
        head.start()
        head.wait_ready(head_ready, READY_TIMEOUT_S, "registered in the GCS")
        started |= set(head.members())
        assert not [p for p in leftover if pid_alive(p)]
        assert check_daemon(head, "gcs_server", cfg.ray_token_path) != rec["daemons"]["gcs_server"]
    finally:
        started |= set(head.members()) | set(raylet.members())
        raylet.stop(STOP_TIMEOUT_S)
        head.stop(STOP_TIMEOUT_S)
    assert not [p for p in started if pid_alive(p)]
    assert not pids_with_arg_containing(str(cfg.state_dir) + "/")


def wait_gone(pids: list[int], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids):
        assert time.monotonic() < deadline, [p for p in pids if pid_alive(p)]
        time.sleep(0.05)
