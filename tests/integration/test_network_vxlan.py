"""The VXLAN overlay on its own two-node testbed (no dockerd): pod to pod, to nodes, from the root netns.

Root only.  Uses bridge ``mk8snt0`` (10.202.0.0/24), netns ``mk8snt-*`` and pod CIDR
10.247.0.0/16, so it runs beside a real cluster.  Tests share one testbed and run in file order;
the last one tears it down and checks nothing is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from minik8s.network import nft
from minik8s.network import vxlan as vx
from minik8s.network.testbed import PEER_CLIENT, PEER_SERVER, PING, BedNode, Testbed
from tests.conftest import requires

pytestmark = requires("nft", "nsenter")
PORT = 8080


@pytest.fixture(scope="module")
def tb() -> Iterator[Testbed]:
    bed = Testbed()
    bed.build()
    procs: list[subprocess.Popen[bytes]] = []
    bed.procs = procs  # type: ignore[attr-defined]
    try:
        for node in bed.nodes:
            vx.setup_node(node.local, [n.peer for n in bed.nodes], bed.vxlan_config, node.netns)
        for ns, ip in [(bed.nodes[1].pods[0].netns, bed.nodes[1].pods[0].ip), (bed.nodes[1].netns, bed.nodes[1].ip)]:
            p = bed.popen(ns, [sys.executable, "-c", PEER_SERVER, ip, str(PORT)], stdout=subprocess.PIPE)
            procs.append(p)
            assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        yield bed
    finally:
        for p in procs:
            p.kill()
            p.wait()
        vx.remove_host_routes(bed.nodes)
        bed.teardown()


def client(tb: Testbed, ns: str, proto: str, ip: str) -> str:
    r = tb.run(ns, [sys.executable, "-c", PEER_CLIENT, proto, ip, str(PORT)])
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def a_b(tb: Testbed) -> tuple[BedNode, BedNode]:
    return tb.nodes[0], tb.nodes[1]


def test_pod_to_pod_tcp_across_nodes_keeps_pod_source(tb: Testbed) -> None:
    a, b = a_b(tb)
    assert client(tb, a.pods[0].netns, "tcp", b.pods[0].ip) == a.pods[0].ip


def test_pod_to_pod_udp_and_icmp(tb: Testbed) -> None:
    a, b = a_b(tb)
    assert client(tb, a.pods[0].netns, "udp", b.pods[0].ip) == f"hello {a.pods[0].ip}"
    r = tb.run(a.pods[0].netns, [sys.executable, "-c", PING, b.pods[0].ip])
    assert r.stdout.strip() == "reply", r.stderr


def test_pod_reaches_other_node_underlay_ip_masqueraded(tb: Testbed) -> None:
    a, b = a_b(tb)
    # leaving the pod CIDR: the source becomes node a's underlay address
    assert client(tb, a.pods[0].netns, "tcp", b.ip) == a.ip


def test_root_netns_reaches_pod_after_host_routes(tb: Testbed) -> None:
    a, b = a_b(tb)
    assert vx.ensure_host_routes(tb.nodes) == 2
    assert vx.ensure_host_routes(tb.nodes) == 0
    r = subprocess.run([sys.executable, "-c", PEER_CLIENT, "tcp", b.pods[0].ip, str(PORT)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    # from outside the pod network: not masqueraded on the way in, the pod sees the root's bridge address
    assert r.stdout.strip() == tb.cfg.gateway
    assert vx.remove_host_routes(tb.nodes) == 2
    assert vx.remove_host_routes(tb.nodes) == 0


def test_second_apply_changes_nothing(tb: Testbed) -> None:
    for node in tb.nodes:
        before = vx.read_peer_state(tb.vxlan_config, node.netns)
        rules = nft.current_ruleset(tb.vxlan_config.nft_table, node.netns)
        assert not vx.setup_node(node.local, [n.peer for n in tb.nodes], tb.vxlan_config, node.netns)
        assert vx.read_peer_state(tb.vxlan_config, node.netns) == before
        assert nft.current_ruleset(tb.vxlan_config.nft_table, node.netns) == rules
        assert len(before.routes) == len(before.neighs) == len(before.fdbs) == 1


def test_device_has_stable_mac_and_vtep_address(tb: Testbed) -> None:
    a, _ = a_b(tb)
    r = tb.run(a.netns, ["ip", "-d", "-o", "addr", "show", "dev", tb.vxlan_config.device])
    assert f"inet {a.local.vtep_ip}/32" in r.stdout
    r = tb.run(a.netns, ["ip", "-d", "-o", "link", "show", "dev", tb.vxlan_config.device])
    assert a.local.vtep_mac in r.stdout and "vxlan id 1" in r.stdout and "dstport 8472" in r.stdout
    assert "nolearning" in r.stdout


def test_removing_a_peer_removes_its_entries_and_cuts_traffic(tb: Testbed) -> None:
    a, b = a_b(tb)
    plan = vx.sync_peers(a.local, [a.peer], tb.vxlan_config, a.netns)
    assert (len(plan.del_routes), len(plan.del_neighs), len(plan.del_fdbs)) == (1, 1, 1)
    state = vx.read_peer_state(tb.vxlan_config, a.netns)
    assert not state.routes and not state.neighs and not state.fdbs
    r = tb.run(a.pods[0].netns, [sys.executable, "-c", PEER_CLIENT, "tcp", b.pods[0].ip, str(PORT)])
    assert r.returncode != 0
    # and back
    assert not vx.sync_peers(a.local, [a.peer, b.peer], tb.vxlan_config, a.netns).empty
    assert client(tb, a.pods[0].netns, "tcp", b.pods[0].ip) == a.pods[0].ip


def test_repairs_a_deleted_device(tb: Testbed) -> None:
    a, b = a_b(tb)
    vx.teardown_node(tb.vxlan_config, a.netns)
    assert nft.current_ruleset(tb.vxlan_config.nft_table, a.netns) is None
    assert vx.setup_node(a.local, [n.peer for n in tb.nodes], tb.vxlan_config, a.netns)
    assert client(tb, a.pods[0].netns, "tcp", b.pods[0].ip) == a.pods[0].ip


def test_missing_netns_is_an_error_not_created(tb: Testbed) -> None:
    with pytest.raises(FileNotFoundError):
        vx.read_peer_state(tb.vxlan_config, "mk8snt-missing")
    assert not os.path.exists("/var/run/netns/mk8snt-missing")


def test_teardown_leaves_nothing(tb: Testbed) -> None:
    for p in tb.procs:  # type: ignore[attr-defined]
        p.kill()
        p.wait()
    tb.teardown()
    assert tb.leftovers() == []
