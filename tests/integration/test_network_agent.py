"""Two NetworkAgents against a real apiserver converge the overlay from Node objects, and follow deletes.

Root only.  Its own testbed (netns ``mk8sna-*``, bridge ``mk8sna0``, 10.203.0.0/24, pods 10.244.201-202.0/24:
the apiserver only accepts podCIDRs inside the cluster's 10.244.0.0/16; no root-netns routes are added),
so it runs beside a real cluster and beside test_network_vxlan.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from minik8s import Client
from minik8s.api.types import Node, NodeSpec, ObjectMeta
from minik8s.network import vxlan as vx
from minik8s.network.agent import NetworkAgent, NetworkAgentConfig
from minik8s.network.plan import PUBLIC_IP_ANNOTATION, VTEP_MAC_ANNOTATION
from minik8s.network.testbed import PEER_CLIENT, PEER_SERVER, Testbed, TestbedConfig
from tests.conftest import TEST_TOKEN, requires

pytestmark = requires("nft", "nsenter")
PORT = 8081
CONVERGE_TIMEOUT_S = 20.0


def eventually(check: Callable[[], bool], timeout: float = CONVERGE_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not converged in {timeout}s: {check.__doc__ or check}")
        time.sleep(0.1)


@pytest.fixture
def bed() -> Iterator[Testbed]:
    tb = Testbed(TestbedConfig(prefix="mk8sna", underlay_cidr="10.203.0.0/24", pod_cidr="10.244.0.0/16",
                                    first_pod_subnet=201))
    tb.build()
    try:
        yield tb
    finally:
        tb.teardown()
        assert tb.leftovers() == []


def test_agents_converge_and_follow_node_deletion(bed: Testbed, apiserver: str) -> None:
    a, b = bed.nodes
    admin = Client(apiserver, TEST_TOKEN)
    for n in bed.nodes:
        admin.create(Node(apiVersion="v1", kind="Node", metadata=ObjectMeta(name=n.name),
                          spec=NodeSpec(podCIDR=n.pod_cidr)))
    cfg = NetworkAgentConfig(resync_seconds=1.0, retry_seconds=0.2, vxlan=bed.vxlan_config)
    clients = [Client(apiserver, TEST_TOKEN) for _ in bed.nodes]
    agents = [NetworkAgent(c, n.name, n.ip, n.pod_cidr, netns=n.netns, config=cfg)
              for c, n in zip(clients, bed.nodes, strict=True)]
    threads = [threading.Thread(target=ag.run, daemon=True) for ag in agents]
    server = bed.popen(b.pods[0].netns, [sys.executable, "-c", PEER_SERVER, b.pods[0].ip, str(PORT)],
                       stdout=subprocess.PIPE)
    try:
        for th in threads:
            th.start()

        def annotated() -> bool:
            """both Nodes carry their VTEP MAC and public IP"""
            anns = [admin.get("Node", n.name, None).metadata.annotations or {} for n in bed.nodes]
            return all(ann.get(VTEP_MAC_ANNOTATION) == n.local.vtep_mac and ann.get(PUBLIC_IP_ANNOTATION) == n.ip
                       for ann, n in zip(anns, bed.nodes, strict=True))

        def meshed() -> bool:
            """each node holds exactly one peer's route, neighbour and FDB entry"""
            states = [vx.read_peer_state(cfg.vxlan, n.netns) for n in bed.nodes]
            return all(len(s.routes) == len(s.neighs) == len(s.fdbs) == 1 for s in states)

        eventually(annotated)
        eventually(meshed)
        assert server.stdout is not None and server.stdout.readline().strip() == b"ready"
        r = bed.run(a.pods[0].netns, [sys.executable, "-c", PEER_CLIENT, "tcp", b.pods[0].ip, str(PORT)])
        assert r.returncode == 0 and r.stdout.strip() == a.pods[0].ip, r.stderr

        admin.delete("Node", b.name, None)

        def b_gone_from_a() -> bool:
            """node a dropped node b's entries"""
            s = vx.read_peer_state(cfg.vxlan, a.netns)
            return not s.routes and not s.neighs and not s.fdbs

        eventually(b_gone_from_a)
    finally:
        for ag in agents:
            ag.stop()
        for th in threads:
            th.join(10)
        server.kill()
        server.wait()
        for c in [admin, *clients]:
            c.close()
    assert not any(th.is_alive() for th in threads)
    # the agent leaves the kernel state in place when it stops (pods keep their network)
    assert vx.read_peer_state(cfg.vxlan, b.netns).routes
