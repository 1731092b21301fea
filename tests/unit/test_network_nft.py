"""The nftables ruleset text of the node's own table."""

from __future__ import annotations

import pytest

from minik8s.network.nft import MasqueradeSpec, delete_script, render_ruleset, replace_script
from minik8s.network.testbed import TestbedConfig, plan_testbed

SPEC = MasqueradeSpec("minik8s-nat", "10.244.1.0/24", "10.244.0.0/16")


def test_ruleset_masquerades_only_pod_traffic_leaving_the_cluster() -> None:
    text = render_ruleset(SPEC)
    assert text.startswith("table ip minik8s-nat {\n")
    assert "type nat hook postrouting priority srcnat; policy accept;" in text
    assert "ip saddr 10.244.1.0/24 ip daddr != 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade" in text
    assert text.count("masquerade") == 1


def test_ruleset_accepts_pod_forwarding_without_dropping_anything() -> None:
    text = render_ruleset(SPEC)
    assert "type filter hook forward priority filter; policy accept;" in text
    assert "ip saddr 10.244.0.0/16 accept" in text and "ip daddr 10.244.0.0/16 accept" in text
    assert "drop" not in text


def test_replace_script_is_one_atomic_transaction_on_our_table_only() -> None:
    script = replace_script(SPEC)
    lines = script.splitlines()
    # declare (so delete never fails), delete, re-create: one `nft -f` transaction
    assert lines[:3] == ["table ip minik8s-nat", "delete table ip minik8s-nat", "table ip minik8s-nat {"]
    assert "flush ruleset" not in script
    tables = {line.split(" ip ")[1].split()[0] for line in lines if line.startswith(("table ", "delete table "))}
    assert tables == {"minik8s-nat"}
    assert delete_script("minik8s-nat") == "table ip minik8s-nat\ndelete table ip minik8s-nat\n"


def test_node_cidr_outside_cluster_cidr_is_rejected() -> None:
    with pytest.raises(ValueError, match="not inside"):
        render_ruleset(MasqueradeSpec("t", "10.245.1.0/24", "10.244.0.0/16"))
    with pytest.raises(ValueError):
        render_ruleset(MasqueradeSpec("t", "10.244.1.1/24", "10.244.0.0/16"))


def test_testbed_plan_names_and_addresses() -> None:
    nodes = plan_testbed(TestbedConfig(pods_per_node=2))
    a, b = nodes
    assert (a.netns, a.ip, a.pod_cidr, a.bridge_ip) == ("mk8snt-a", "10.202.0.11", "10.247.1.0/24", "10.247.1.1")
    assert (b.netns, b.ip, b.pod_cidr) == ("mk8snt-b", "10.202.0.12", "10.247.2.0/24")
    assert [(p.netns, p.ip) for p in a.pods] == [("mk8snt-pa", "10.247.1.2"), ("mk8snt-pa2", "10.247.1.3")]
    assert all(len(n) <= 15 for n in (a.root_veth + "p", a.pods[1].host_veth + "p"))
