"""The overlay's pure logic: peers from Nodes, desired entries, the diff, MAC derivation."""

from __future__ import annotations

import pytest

from minik8s.api.types import Node, NodeAddress, NodeSpec, NodeStatus, ObjectMeta
from minik8s.network.plan import (
    PUBLIC_IP_ANNOTATION,
    VTEP_MAC_ANNOTATION,
    Fdb,
    Neigh,
    Peer,
    PeerState,
    Route,
    desired_state,
    diff,
    normalize_mac,
    peers_from_nodes,
    vtep_ip,
    vtep_mac,
)


def peer(i: int, mac: str | None = None) -> Peer:
    return Peer(f"node-{i}", f"10.200.0.{10 + i}", f"10.244.{i}.0/24", mac or vtep_mac(f"node-{i}"))


def node(name: str, ip: str | None = "10.200.0.12", cidr: str | None = "10.244.2.0/24",
         ann: dict[str, str] | None = None) -> Node:
    return Node(metadata=ObjectMeta(name=name, annotations=ann),
                spec=NodeSpec(podCIDR=cidr),
                status=NodeStatus(addresses=[NodeAddress(type="InternalIP", address=ip)] if ip else None))


def test_vtep_mac_is_stable_unicast_and_local() -> None:
    mac = vtep_mac("node-1")
    assert mac == vtep_mac("node-1")
    assert mac != vtep_mac("node-2")
    first = int(mac.split(":")[0], 16)
    assert first & 0x01 == 0 and first & 0x02 == 0x02
    assert normalize_mac(mac) == mac
    # pinned: a change to the derivation would change every node's MAC across an upgrade
    assert mac == "6e:c7:e0:49:53:1a"


def test_vtep_mac_rejects_empty_name() -> None:
    with pytest.raises(ValueError):
        vtep_mac("")


def test_vtep_ip_is_network_address() -> None:
    assert vtep_ip("10.244.3.0/24") == "10.244.3.0"
    with pytest.raises(ValueError):
        vtep_ip("10.244.3.5/24")


def test_normalize_mac() -> None:
    assert normalize_mac("0E-AA-bb-cc-dd-EE") == "0e:aa:bb:cc:dd:ee"
    for bad in ("", "0e:aa:bb:cc:dd", "zz:aa:bb:cc:dd:ee", "0e:aa:bb:cc:dd:eee"):
        with pytest.raises(ValueError):
            normalize_mac(bad)


def test_desired_state_skips_self_and_has_three_entries_per_peer() -> None:
    s = desired_state("node-1", [peer(1), peer(2), peer(3)])
    assert s.routes == {Route("10.244.2.0/24", "10.244.2.0"), Route("10.244.3.0/24", "10.244.3.0")}
    assert s.neighs == {Neigh("10.244.2.0", vtep_mac("node-2")), Neigh("10.244.3.0", vtep_mac("node-3"))}
    assert s.fdbs == {Fdb(vtep_mac("node-2"), "10.200.0.12"), Fdb(vtep_mac("node-3"), "10.200.0.13")}


def test_desired_state_duplicate_cidr_first_name_wins() -> None:
    dup = Peer("node-0", "10.200.0.99", "10.244.2.0/24", vtep_mac("node-0"))
    s = desired_state("node-1", [peer(2), dup])
    assert s.routes == {Route("10.244.2.0/24", "10.244.2.0")}
    assert s.fdbs == {Fdb(vtep_mac("node-0"), "10.200.0.99")}


def test_diff_of_equal_states_is_empty() -> None:
    s = desired_state("node-1", [peer(2), peer(3)])
    plan = diff(s, s)
    assert plan.empty and plan.changes == 0


def test_diff_from_nothing_adds_everything() -> None:
    s = desired_state("node-1", [peer(2)])
    plan = diff(PeerState(), s)
    assert plan.add_routes == (Route("10.244.2.0/24", "10.244.2.0"),)
    assert len(plan.add_neighs) == 1 and len(plan.add_fdbs) == 1
    assert not (plan.del_routes or plan.del_neighs or plan.del_fdbs)


def test_departed_node_is_removed_others_untouched() -> None:
    before = desired_state("node-1", [peer(2), peer(3)])
    after = desired_state("node-1", [peer(2)])
    plan = diff(before, after)
    assert plan.del_routes == (Route("10.244.3.0/24", "10.244.3.0"),)
    assert plan.del_neighs == (Neigh("10.244.3.0", vtep_mac("node-3")),)
    assert plan.del_fdbs == (Fdb(vtep_mac("node-3"), "10.200.0.13"),)
    assert not (plan.add_routes or plan.add_neighs or plan.add_fdbs)


def test_changed_mac_replaces_neigh_and_fdb_but_keeps_route() -> None:
    new_mac = "0e:00:00:00:00:02"
    plan = diff(desired_state("node-1", [peer(2)]), desired_state("node-1", [peer(2, new_mac)]))
    assert plan.del_neighs == (Neigh("10.244.2.0", vtep_mac("node-2")),)
    assert plan.add_neighs == (Neigh("10.244.2.0", new_mac),)
    assert plan.add_fdbs == (Fdb(new_mac, "10.200.0.12"),)
    assert not plan.add_routes and not plan.del_routes


def test_peers_from_nodes_reads_annotations_and_falls_back_to_internal_ip() -> None:
    mac = vtep_mac("node-2")
    nodes = [
        node("node-1", "10.200.0.11", "10.244.1.0/24", {VTEP_MAC_ANNOTATION: vtep_mac("node-1")}),
        node("node-2", "10.200.0.12", "10.244.2.0/24", {VTEP_MAC_ANNOTATION: mac.upper()}),
        node("node-3", "10.200.0.13", "10.244.3.0/24",
             {VTEP_MAC_ANNOTATION: vtep_mac("node-3"), PUBLIC_IP_ANNOTATION: "10.200.1.13"}),
    ]
    peers, skipped = peers_from_nodes(nodes, "node-1")
    assert peers == [Peer("node-2", "10.200.0.12", "10.244.2.0/24", mac),
                     Peer("node-3", "10.200.1.13", "10.244.3.0/24", vtep_mac("node-3"))]
    assert skipped == []


@pytest.mark.parametrize("n,why", [
    (node("node-2", ann=None), "annotation"),
    (node("node-2", cidr=None, ann={VTEP_MAC_ANNOTATION: "0e:00:00:00:00:01"}), "podCIDR"),
    (node("node-2", ip=None, ann={VTEP_MAC_ANNOTATION: "0e:00:00:00:00:01"}), "public IP"),
    (node("node-2", ann={VTEP_MAC_ANNOTATION: "not-a-mac"}), "invalid"),
    (node("node-2", cidr="10.244.2.7/24", ann={VTEP_MAC_ANNOTATION: "0e:00:00:00:00:01"}), "invalid"),
])
def test_incomplete_nodes_are_skipped_with_reason(n: Node, why: str) -> None:
    peers, skipped = peers_from_nodes([n], "node-1")
    assert peers == []
    assert len(skipped) == 1 and any(why in m for m in skipped[0].missing)
