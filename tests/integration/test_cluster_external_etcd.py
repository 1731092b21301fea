"""`up --etcd-endpoints`: the control plane on an etcd the test started; minik8s never starts or stops it.

Root only, like test_cluster_local: a temporary state dir, its own bridge (10.204.0.0/24) and free
ports, so it runs beside a real ``minik8s up`` cluster. Starts the real control plane (registry,
builder dockerd, Ray head) but no node.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors import cluster as boot
from minik8s.cluster import etcd_choice, local
from minik8s.cluster.bootstrap import ControlPlaneOptions
from minik8s.cluster.config import ClusterConfig
from minik8s.errors import BadRequest
from tests.conftest import free_port, requires, start_etcd, wait_etcd_healthy

REQUIRED_BINARIES = ("etcd", "dockerd", "docker-registry")
pytestmark = requires(*REQUIRED_BINARIES)


@pytest.fixture
def external_etcd(tmp_path: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = start_etcd(tmp_path, "external", port, free_port())
    url = f"http://127.0.0.1:{port}"
    try:
        wait_etcd_healthy(url, [proc], tmp_path)
        yield url, proc.pid
    finally:
        proc.kill()  # the test's own etcd, by its handle
        proc.wait(10)


@pytest.fixture
def cfg() -> Iterator[ClusterConfig]:
    # Short path: containerd and Ray put unix sockets (<= 107 bytes) under it.
    state = Path(tempfile.mkdtemp(prefix="mk8se", dir="/tmp"))
    c = ClusterConfig(
        state_dir=state, nodes=0, underlay_bridge="mk8setcd0", underlay_cidr="10.204.0.0/24",
        netns_prefix="mk8setcd-", pod_cidr="10.246.0.0/16", service_cidr="10.98.0.0/16",
        etcd_client_port=free_port(), etcd_peer_port=free_port(), registry_port=free_port(),
        ray_port=free_port(), ray_client_server_port=free_port(), ray_dashboard_agent_port=free_port(),
        ray_dashboard_port=free_port(), ray_head_cpus=1, ray_node_cpus=1,
    )
    try:
        yield c
    finally:
        local.down(c, purge=True)
        shutil.rmtree(state, ignore_errors=True)


def test_the_control_plane_uses_the_external_etcd_and_leaves_it_running(
        cfg: ClusterConfig, external_etcd: tuple[str, int]) -> None:
    url, pid = external_etcd
    assert local.start_control_plane(cfg, [url]) == [url]
    assert not (cfg.run_dir / "etcd.pid").exists()  # no managed etcd
    assert not any(cfg.etcd_dir.iterdir())
    assert etcd_choice.recorded(cfg) == [url] and local.etcd_endpoints(cfg) == [url]
    first, _ = boot.control_plane_specs(cfg, ControlPlaneOptions())
    assert first[0].settings["config"]["etcd_endpoints"] == [url]  # what the apiserver actor is created with

    rows = {r.component: r for r in local.status(cfg)}
    assert "etcd" not in rows
    assert rows["etcd-0"].healthy and rows["etcd-0"].detail.startswith(f"external {url} leader")

    assert local.start_control_plane(cfg) == [url]  # a later `up` without the flag keeps it
    assert not (cfg.run_dir / "etcd.pid").exists()
    with pytest.raises(BadRequest, match="keeps its objects in the etcd at"):
        local.start_control_plane(cfg, ["http://127.0.0.1:1"])
    assert etcd_choice.recorded(cfg) == [url]

    local.down(cfg)
    assert os.path.exists(f"/proc/{pid}") and etcd_choice.member_health(url).healthy
    assert etcd_choice.recorded(cfg) == [url]  # kept for the next `up`
    local.down(cfg, purge=True)
    assert etcd_choice.member_health(url).healthy
