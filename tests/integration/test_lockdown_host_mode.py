"""The host-mode lockdown table with real nft, in throwaway network namespaces (no cluster): a `host` netns
stands in for a machine that ran `minik8s join --host` (its pod bridge `docker0`, its LAN interface), a `pod`
netns for a pod on it, and a `head` netns for the control-plane machine on the same LAN (plus a second
address there for some other machine of the user's LAN). The table is the one `start_node` writes for a
host-mode node (:func:`lockdown.node_spec`), with the cluster's real ports listening. Root only."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from minik8s.cluster import lockdown
from minik8s.cluster.config import ClusterConfig
from minik8s.cluster.host import POD_BRIDGE
from minik8s.gateway.controller import DEFAULT_PORT as GATEWAY_CONFIG_PORT
from tests.integration.test_lockdown_rules import _connect, _listen, _ns

PREFIX = "mk8shm-"
POD, HOST, HEAD = f"{PREFIX}pod", f"{PREFIX}host", f"{PREFIX}head"
POD_CIDR, NODE_POD_CIDR = "10.97.0.0/16", "10.97.5.0/24"
POD_IP, POD_GW = "10.97.5.2", "10.97.5.1"
HOST_IP, HEAD_IP, LAN_OTHER = "192.168.77.11", "192.168.77.10", "192.168.77.20"
CFG = ClusterConfig(state_dir=Path("/nonexistent"), advertise_address=HEAD_IP, pod_cidr=POD_CIDR,
                    lockdown_table=f"{PREFIX}lockdown")
NODE = CFG.host_node("metal-1", HOST_IP, 24, "mk8shmu", NODE_POD_CIDR, HEAD_IP)
SPEC = lockdown.node_spec(CFG, NODE)
#: what pods may reach on the control plane: the API, DNS, the gateway's config endpoint
OPEN = (CFG.api_port, 53, GATEWAY_CONFIG_PORT)
#: the control plane's internal ports: etcd, the registry (its write path included), Ray's GCS, client
#: server and dashboard
LOCKED = (CFG.etcd_client_port, CFG.registry_port, CFG.ray_port, CFG.ray_client_server_port,
          CFG.ray_dashboard_port)
#: the host's own listeners on wildcard addresses: the kubelet, a raylet worker port, a NodePort
HOST_PORTS = (10250, 40000, 31000)


def _link(netns_a: str, dev_a: str, netns_b: str, dev_b: str) -> None:
    subprocess.run(["ip", "link", "add", dev_a, "netns", netns_a, "type", "veth", "peer", dev_b, "netns", netns_b],
                   check=True)


@pytest.fixture(scope="module")
def host_mode() -> Iterator[None]:
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, nftables)")
    assert NODE.host_mode and SPEC.guarded and lockdown.ANYWHERE not in SPEC.guarded  # really host mode's table
    for ns in (POD, HOST, HEAD):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    procs: list[subprocess.Popen[str]] = []
    try:
        _link(POD, "mk8shmp", HOST, "mk8shmn")
        _link(HOST, "mk8shmu", HEAD, "mk8shmh")
        _ns(HOST, "ip", "link", "add", POD_BRIDGE, "type", "bridge")
        _ns(HOST, "ip", "link", "set", "mk8shmn", "master", POD_BRIDGE)
        _ns(POD, "ip", "addr", "add", f"{POD_IP}/24", "dev", "mk8shmp")
        _ns(HOST, "ip", "addr", "add", f"{POD_GW}/24", "dev", POD_BRIDGE)
        _ns(HOST, "ip", "addr", "add", f"{HOST_IP}/24", "dev", "mk8shmu")
        _ns(HEAD, "ip", "addr", "add", f"{HEAD_IP}/24", "dev", "mk8shmh")
        _ns(HEAD, "ip", "addr", "add", f"{LAN_OTHER}/24", "dev", "mk8shmh")
        for ns, dev in ((POD, "mk8shmp"), (HOST, "mk8shmn"), (HOST, POD_BRIDGE), (HOST, "mk8shmu"), (HEAD, "mk8shmh")):
            _ns(ns, "ip", "link", "set", dev, "up")
        _ns(POD, "ip", "route", "add", "default", "via", POD_GW)
        _ns(HEAD, "ip", "route", "add", POD_CIDR, "via", HOST_IP)
        _ns(HOST, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        procs = [_listen(HEAD, HEAD_IP, (*OPEN, *LOCKED)), _listen(HEAD, LAN_OTHER, (CFG.etcd_client_port,)),
                 _listen(HOST, "0.0.0.0", HOST_PORTS), _listen(POD, POD_IP, (8080,))]
        lockdown.ensure(SPEC, HOST)
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
        for ns in (POD, HOST, HEAD):  # takes the veths, the bridge and the table with it
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_a_pod_on_a_host_mode_node_reaches_the_api_and_dns_only(host_mode: None) -> None:
    targets = [(HEAD_IP, p) for p in (*OPEN, *LOCKED)] + [(a, p) for a in (HOST_IP, POD_GW) for p in HOST_PORTS]
    got = {t: _connect(POD, *t) for t in targets}
    assert {t for t, v in got.items() if v == "open"} == {(HEAD_IP, p) for p in OPEN}, got
    # every locked port answers at once with a reset (a sweep never hangs)
    assert {v for t, v in got.items() if t[0] != HEAD_IP or t[1] not in OPEN} == {"ConnectionRefusedError"}, got


def test_the_rest_of_the_lan_is_the_users(host_mode: None) -> None:
    assert _connect(POD, LAN_OTHER, CFG.etcd_client_port) == "open"  # another machine: not ours to guard


def test_the_host_and_the_control_plane_are_not_affected(host_mode: None) -> None:
    for port in LOCKED:
        assert _connect(HOST, HEAD_IP, port) == "open"  # the node's raylet, dockerd pulling from the registry
    assert _connect(HEAD, HOST_IP, 10250) == "open"  # the API server reaching the kubelet
    assert _connect(HEAD, POD_IP, 8080) == "open"  # toward pods: the replies are established traffic
    assert _connect(HOST, POD_IP, 8080) == "open"


def test_the_table_is_what_refuses(host_mode: None) -> None:
    lockdown.remove(SPEC.table, HOST)
    try:
        assert not lockdown.present(SPEC.table, HOST)
        assert _connect(POD, HEAD_IP, CFG.etcd_client_port) == "open"  # the probe is a real one
        assert _connect(POD, HOST_IP, 10250) == "open"
    finally:
        lockdown.ensure(SPEC, HOST)
    assert _connect(POD, HEAD_IP, CFG.etcd_client_port) == "ConnectionRefusedError"
