"""A real local cluster (control plane + one node) on its own underlay, then ``down`` leaves nothing.

Root only.  Uses a temporary state dir, bridge ``mk8stest0`` on 10.201.0.0/24, pod CIDR
10.245.0.0/16 and free ports, so it runs beside a real ``minik8s up`` cluster.  The tests share
one cluster (module fixture) and run in file order; the last one tears it down and checks.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s.cluster import local, netns, raytoken
from minik8s.cluster.config import ClusterConfig
from minik8s.cluster.procs import pid_alive, pids_in_cgroups
from tests.conftest import free_port, requires

REQUIRED_BINARIES = ("etcd", "dockerd", "docker-registry", "nsenter", "busybox")  # busybox: a test image
pytestmark = requires(*REQUIRED_BINARIES)

BUSYBOX = Path("/bin/busybox")
RAY_CHECK_TIMEOUT_S = 60

# ICMP echo from inside a netns, so the test needs no `ping` binary.
PING_SCRIPT = """
import socket, struct, sys
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
hdr = struct.pack('!BBHHH', 8, 0, 0, 0x4d6b, 1) + b'minik8s!'
pkt = hdr[:2] + struct.pack('!H', csum(hdr)) + hdr[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(2)
s.sendto(pkt, (sys.argv[1], 0))
while True:
    data, (src, _) = s.recvfrom(1500)
    ihl = (data[0] & 0x0f) * 4
    if src == sys.argv[1] and data[ihl] == 0:
        print('reply'); break
"""

RAY_NODES_SCRIPT = """
import json, sys, ray
ray.init(address=sys.argv[1], _node_ip_address=sys.argv[2], namespace=sys.argv[3], logging_level='ERROR')
alive = [n for n in ray.nodes() if n['Alive']]
print(json.dumps([{'ip': n['NodeManagerAddress'], 'resources': n['Resources']} for n in alive]))
"""


@pytest.fixture(scope="module")
def cfg() -> Iterator[ClusterConfig]:
    # Short path: containerd and Ray put unix sockets (<= 107 bytes) under it.
    state = Path(tempfile.mkdtemp(prefix="mk8st", dir="/tmp"))
    c = ClusterConfig(
        state_dir=state, nodes=1, underlay_bridge="mk8stest0", underlay_cidr="10.201.0.0/24",
        netns_prefix="mk8stest-", lockdown_table="mk8stest-lockdown", pod_cidr="10.245.0.0/16",
        service_cidr="10.97.0.0/16",
        etcd_client_port=free_port(), etcd_peer_port=free_port(), registry_port=free_port(),
        ray_port=free_port(), ray_client_server_port=free_port(), ray_dashboard_agent_port=free_port(),
        ray_dashboard_port=free_port(), ray_head_cpus=1, ray_node_cpus=1,
    )
    try:
        local.start_control_plane(c)
        local.start_node(c, c.node(1))
        yield c
    finally:
        local.down(c, purge=True)
        shutil.rmtree(state, ignore_errors=True)


def _pids(cfg: ClusterConfig) -> dict[str, int]:
    return {p.name: int(p.read_text()) for p in cfg.run_dir.glob("*.pid")}


def test_start_twice_adopts_everything(cfg: ClusterConfig) -> None:
    before = _pids(cfg)
    assert set(before) == {"etcd.pid", "registry.pid", "builder-dockerd.pid", "ray-head.pid",
                           "node-1_dockerd.pid", "node-1_raylet.pid", "node-1_supervisor.pid"}
    local.start_control_plane(cfg)
    local.start_node(cfg, cfg.node(1))
    assert _pids(cfg) == before
    assert all(pid_alive(p) for p in before.values())


def test_node_netns_reaches_the_head(cfg: ClusterConfig) -> None:
    node = cfg.node(1)
    out = subprocess.run(
        ["nsenter", f"--net={node.netns_path}", "--", sys.executable, "-c", PING_SCRIPT, cfg.head_ip],
        capture_output=True, text=True, timeout=10,
    )
    assert out.stdout.strip() == "reply", out.stderr


def test_node_dockerd_answers_with_the_node_pod_bridge(cfg: ClusterConfig) -> None:
    import docker
    from pyroute2 import IPRoute

    node = cfg.node(1)
    client = docker.DockerClient(base_url=node.docker_url)
    try:
        assert client.ping()
    finally:
        client.close()
    with IPRoute(netns=node.netns) as ipr:
        idx = ipr.link_lookup(ifname="docker0")
        assert idx, "no docker0 in the node netns"
        addrs = {(a.get("address"), a["prefixlen"]) for a in ipr.get_addr(index=idx[0])}
    assert ("10.245.1.1", 24) in addrs


def test_raylet_joined_the_head(cfg: ClusterConfig) -> None:
    out = subprocess.run(
        [sys.executable, "-c", RAY_NODES_SCRIPT, cfg.ray_address, cfg.head_ip, cfg.ray_namespace],
        capture_output=True, text=True, timeout=RAY_CHECK_TIMEOUT_S,
        env={**os.environ, **local.RAY_ENV, **raytoken.env(cfg.ray_token_path)},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    nodes = {n["ip"]: n["resources"] for n in json.loads(out.stdout.strip().splitlines()[-1])}
    node = cfg.node(1)
    assert set(nodes) == {cfg.head_ip, node.ip}
    assert nodes[cfg.head_ip].get(cfg.ray_control_plane_resource) == cfg.ray_resource_amount
    assert nodes[node.ip].get(node.ray_resource) == cfg.ray_resource_amount


def test_status_reports_every_component_healthy(cfg: ClusterConfig) -> None:
    rows = local.status(cfg)
    assert [r.component for r in rows] == [
        "underlay", "etcd", "registry", "builder", "ray-head",
        "node-1/netns", "node-1/docker", "node-1/supervisor", "node-1/raylet",
    ]
    assert all(r.healthy for r in rows), [r for r in rows if not r.healthy]


def _busybox_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(BUSYBOX, arcname="bin/busybox")
        for name in ("sh", "sleep"):
            link = tarfile.TarInfo(f"bin/{name}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
    return buf.getvalue()


def test_node_runs_a_container_on_its_pod_subnet(cfg: ClusterConfig) -> None:
    """Also leaves a running container behind, for the last test to prove that ``down`` stops it."""
    import docker

    node = cfg.node(1)
    client = docker.DockerClient(base_url=node.docker_url)
    try:
        client.api.import_image_from_data(_busybox_tar(), repository="mk8stest/busybox", tag="latest")
        c = client.containers.run("mk8stest/busybox:latest", ["sleep", "600"], detach=True)
        c.reload()
        assert c.status == "running"
        assert c.attrs["NetworkSettings"]["IPAddress"].startswith("10.245.1.")
    finally:
        client.close()


def test_down_leaves_nothing(cfg: ClusterConfig) -> None:
    pids = _pids(cfg)
    node = cfg.node(1)
    cdir = node.docker_data_root / "containers"
    container_ids = {d.name for d in cdir.iterdir()} if cdir.is_dir() else set()

    local.down(cfg, purge=True)

    assert not [n for n in netns.node_netns_names(cfg)]
    for link in (cfg.underlay_bridge, node.veth_host):
        assert not netns.link_exists(link), link
    assert not [name for name, pid in pids.items() if pid_alive(pid)]
    state = os.path.realpath(cfg.state_dir)
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if state in line]
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _cmdline_mentions(p, state)]
    assert not leftovers
    assert not pids_in_cgroups(container_ids)
    assert not cfg.state_dir.exists()
    # down twice is fine
    local.down(cfg, purge=True)


def _cmdline_mentions(proc: Path, needle: str) -> bool:
    try:
        return needle in (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
