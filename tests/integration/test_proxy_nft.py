"""The proxy's nftables rules on a real two-node testbed (root only): ClusterIP load-balancing,
NodePort from the root netns, hairpin, reject without endpoints, per-service diffs, idempotence.

Uses netns ``mk8ssv-*``, bridge ``mk8ssv0`` (10.204.0.0/24), pods 10.248.0.0/16, ClusterIPs
10.205.0.0/16, so it runs beside a real cluster. Tests share one testbed and run in file order.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest
from pyroute2 import IPRoute

from minik8s.api.services import Endpoints, Service
from minik8s.proxy import nft
from minik8s.proxy.proxy import Proxier, ensure_root_route
from minik8s.proxy.rules import ServiceRules, render_all, render_service
from minik8s.proxy.testbed import RULES, SERVICE_CIDR, ServiceBed, endpoints, service
from tests.conftest import requires

pytestmark = requires("nft", "nsenter")
CIP, OTHER_CIP, NODE_PORT = "10.205.0.5", "10.205.0.6", 30080


class World:
    def __init__(self, sb: ServiceBed) -> None:
        self.sb = sb
        self.proxiers = [Proxier(RULES, n.netns) for n in sb.bed.nodes]
        self.services = {"default/web": service("web", CIP, node_port=NODE_PORT),
                         "default/other": service("other", OTHER_CIP)}
        self.endpoints = {"default/web": endpoints("web", [sb.backend_a.ip, sb.backend_b.ip]),
                          "default/other": endpoints("other", [sb.backend_b.ip])}

    def desired(self) -> dict[str, ServiceRules]:
        return render_all(list(self.services.values()), self.endpoints, RULES)

    def sync(self) -> list[int]:
        """Apply the current world on every node; the number of script lines written on each."""
        desired = self.desired()
        out = []
        for p in self.proxiers:
            if p.applied is None:
                out.append(p.replace(desired).lines)
            else:
                changes: dict[str, ServiceRules | None] = dict(desired)
                changes.update({k: None for k in p.applied if k not in desired})
                out.append(p.update(changes).lines)
        return out


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    sb = ServiceBed()
    sb.build()
    try:
        ensure_root_route(SERVICE_CIDR, sb.node_a.ip)
        w = World(sb)
        w.sync()
        yield w
    finally:
        with IPRoute() as ipr:
            if ipr.route("get", dst=CIP)[0].get_attr("RTA_GATEWAY") == sb.node_a.ip:
                ipr.route("del", dst=SERVICE_CIDR, gateway=sb.node_a.ip)
        sb.teardown()
        assert sb.bed.leftovers() == []


def names(answers: list[str]) -> Counter[str]:
    return Counter(answers)


def test_cluster_ip_balances_over_both_backends(world: World) -> None:
    sb = world.sb
    answers, _ = sb.requests(sb.client_pod.netns, f"http://{CIP}:80/", 100)
    got = names(answers)
    assert set(got) == {sb.backend_a.netns, sb.backend_b.netns}, got
    assert min(got.values()) >= 25, got  # roughly even (binomial(100, .5): < 25 has p ~ 1e-6)


def test_cluster_ip_from_the_node_netns_and_the_root_netns(world: World) -> None:
    sb = world.sb
    answers, _ = sb.requests(sb.node_b.netns, f"http://{CIP}:80/", 20)  # OUTPUT hook
    assert set(answers) <= {sb.backend_a.netns, sb.backend_b.netns} and len(answers) == 20
    answers, _ = sb.requests(None, f"http://{CIP}:80/", 20)  # root netns, routed via node a
    assert set(answers) <= {sb.backend_a.netns, sb.backend_b.netns} and len(answers) == 20, answers


def test_node_port_from_the_root_netns(world: World) -> None:
    sb = world.sb
    for node in (sb.node_a, sb.node_b):
        answers, _ = sb.requests(None, f"http://{node.ip}:{NODE_PORT}/", 20)
        assert set(answers) == {sb.backend_a.netns, sb.backend_b.netns}, answers


def test_hairpin_a_pod_reaches_itself_through_its_service(world: World) -> None:
    sb = world.sb
    answers, _ = sb.requests(sb.backend_a.netns, f"http://{CIP}:80/", 40)
    assert "error TimeoutError" not in answers
    assert sb.backend_a.netns in answers and sb.backend_b.netns in answers, answers


UDP_NAME_SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5353))
print("ready", flush=True)
while True:
    _, peer = s.recvfrom(64)
    s.sendto(sys.argv[2].encode(), peer)
"""
UDP_CLIENT = """
import socket, sys
for _ in range(int(sys.argv[3])):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    s.sendto(b"?", (sys.argv[1], int(sys.argv[2])))
    try:
        print(s.recv(64).decode())
    except TimeoutError:
        print("timeout")
"""


def test_udp_service_by_cluster_ip_and_node_port(world: World) -> None:
    """UDP goes through its own backend map and pick chains (a map's value type fixes the protocol)."""
    sb = world.sb
    for pod in (sb.backend_a, sb.backend_b):
        p = sb.bed.popen(pod.netns, [sys.executable, "-c", UDP_NAME_SERVER, pod.ip, pod.netns], stdout=subprocess.PIPE)
        sb.procs.append(p)
        assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
    udp_cip, udp_node_port = "10.205.0.7", 30053
    world.services["default/dns"] = Service.model_validate({
        "metadata": {"name": "dns", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": udp_cip, "selector": {"app": "dns"},
                 "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353,
                            "nodePort": udp_node_port}]}})
    world.endpoints["default/dns"] = Endpoints.model_validate({
        "metadata": {"name": "dns", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": sb.backend_a.ip}, {"ip": sb.backend_b.ip}],
                     "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]}]})
    world.sync()
    try:
        both = {sb.backend_a.netns, sb.backend_b.netns}
        answers = sb.bed.run(sb.client_pod.netns, [sys.executable, "-c", UDP_CLIENT, udp_cip, "53", "30"]).stdout
        assert set(answers.split()) == both, answers
        answers = subprocess.run([sys.executable, "-c", UDP_CLIENT, sb.node_b.ip, str(udp_node_port), "30"],
                                 capture_output=True, text=True, timeout=120).stdout
        assert set(answers.split()) == both, answers
    finally:
        del world.services["default/dns"], world.endpoints["default/dns"]
        world.sync()


def test_removing_an_endpoint_touches_only_that_service(world: World) -> None:
    sb = world.sb
    before = nft.list_table(RULES.table, sb.node_a.netns) or ""
    other_before = [el for el in nft.listing_elements(before) if OTHER_CIP in el]
    world.endpoints["default/web"] = endpoints("web", [sb.backend_a.ip])
    desired = world.desired()
    script = world.proxiers[0].update({"default/web": desired["default/web"]})
    world.proxiers[1].update({"default/web": desired["default/web"]})
    assert script.changed == 1 and script.lines > 0
    after = nft.list_table(RULES.table, sb.node_a.netns) or ""
    assert [el for el in nft.listing_elements(after) if OTHER_CIP in el] == other_before
    assert f"{CIP} . 80 . 0 : {sb.backend_a.ip} . 8080" in nft.listing_elements(after)
    assert f"{CIP} . 80 . 1 :" not in after and f"{CIP} . tcp . 80 : goto pick-tcp-1" in nft.listing_elements(after)
    answers, _ = sb.requests(sb.client_pod.netns, f"http://{CIP}:80/", 20)
    assert set(answers) == {sb.backend_a.netns}


def test_same_input_writes_nothing_and_a_restart_rebuilds_identical_rules(world: World) -> None:
    assert world.sync() == [0, 0]
    before = nft.list_table(RULES.table, world.sb.node_a.netns)
    fresh = Proxier(RULES, world.sb.node_a.netns)
    fresh.replace(world.desired())
    assert nft.canonical_listing(nft.list_table(RULES.table, world.sb.node_a.netns)) == nft.canonical_listing(before)


def test_no_ready_endpoints_rejects_instead_of_hanging(world: World) -> None:
    sb = world.sb
    world.endpoints["default/web"] = endpoints("web", [])
    world.sync()
    answers, stats = sb.requests(sb.client_pod.netns, f"http://{CIP}:80/", 3)
    assert answers == ["error ConnectionRefusedError"] * 3, answers
    assert stats["p99_us"] < 1_000_000
    answers, _ = sb.requests(None, f"http://{sb.node_a.ip}:{NODE_PORT}/", 2)
    assert answers == ["error ConnectionRefusedError"] * 2, answers


def test_deleting_the_service_removes_its_rules(world: World) -> None:
    sb = world.sb
    world.endpoints["default/web"] = endpoints("web", [sb.backend_a.ip, sb.backend_b.ip])
    world.sync()
    listed = nft.listing_elements(nft.list_table(RULES.table, sb.node_a.netns) or "")
    assert f"{CIP} . tcp . 80 : goto pick-tcp-2" in listed
    del world.services["default/web"], world.endpoints["default/web"]
    world.sync()
    table = nft.list_table(RULES.table, sb.node_a.netns) or ""
    assert CIP not in table and str(NODE_PORT) not in table
    assert OTHER_CIP in table
    answers, _ = sb.requests(sb.client_pod.netns, f"http://{OTHER_CIP}:80/", 5)
    assert set(answers) == {sb.backend_b.netns}


def test_local_traffic_policies_keep_traffic_on_the_receiving_node(world: World) -> None:
    """externalTrafficPolicy Local: a NodePort answers only from its own node's endpoints (unmasqueraded);
    internalTrafficPolicy Local: the ClusterIP from a pod goes only to endpoints on the pod's node."""
    sb = world.sb
    local_cip, local_np = "10.205.0.7", 30081
    svc = service("local", local_cip, node_port=local_np)
    svc.spec.externalTrafficPolicy = "Local"
    svc.spec.internalTrafficPolicy = "Local"
    ep = endpoints("local", [sb.backend_a.ip, sb.backend_b.ip])
    assert ep.subsets
    for addr in ep.subsets[0].addresses or []:
        addr.nodeName = sb.node_a.netns if addr.ip == sb.backend_a.ip else sb.node_b.netns
    try:
        for node, proxier in zip(sb.bed.nodes, world.proxiers, strict=True):
            rules = render_service(svc, ep, replace(RULES, node_name=node.netns))
            proxier.update({"default/local": rules})
        for node, backend in ((sb.node_a, sb.backend_a), (sb.node_b, sb.backend_b)):
            answers, _ = sb.requests(None, f"http://{node.ip}:{local_np}/", 20)
            assert set(answers) == {backend.netns}, answers
        answers, _ = sb.requests(sb.client_pod.netns, f"http://{local_cip}:80/", 20)  # the client is on node a
        assert set(answers) == {sb.backend_a.netns}, answers
    finally:
        for proxier in world.proxiers:
            proxier.update({"default/local": None})
