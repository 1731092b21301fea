"""ClusterConfig / NodeConfig: addresses, ports, paths and node derivation (no root needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from minik8s.cluster.config import STATE_DIR_ENV, ClusterConfig


def test_defaults_match_the_design() -> None:
    cfg = ClusterConfig(state_dir=Path("/s"))
    assert cfg.head_ip == "10.200.0.1"
    assert cfg.underlay_bridge == "mk8s0"
    assert cfg.etcd_endpoints == ["http://127.0.0.1:12379"]  # loopback only: nothing off-host talks to etcd
    assert cfg.etcd_peer_url == "http://127.0.0.1:12380"
    assert cfg.registry_addr == "10.200.0.1:5000"
    assert cfg.registry_url == "http://10.200.0.1:5000"
    assert cfg.ray_address == "10.200.0.1:6379"
    assert cfg.ray_namespace == "minik8s"
    assert cfg.api_port == 6443
    assert cfg.dns_ip == "10.96.0.10"
    assert cfg.nodes == 1
    assert cfg.builder_socket == Path("/s/builder/docker.sock")
    assert cfg.ray_dir == Path("/s/ray")


def test_state_dir_default_and_env_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    assert ClusterConfig().state_dir == Path("/var/lib/minik8s")
    monkeypatch.setenv(STATE_DIR_ENV, "/tmp/elsewhere")
    assert ClusterConfig().state_dir == Path("/tmp/elsewhere")
    assert ClusterConfig().log_dir == Path("/tmp/elsewhere/logs")


def test_node_derivation() -> None:
    cfg = ClusterConfig(state_dir=Path("/s"), nodes=3)
    n = cfg.node(2)
    assert n.name == "node-2" and n.index == 2
    assert n.ip == "10.200.0.12" and n.prefixlen == 24 and n.gateway == "10.200.0.1"
    assert n.pod_cidr == "10.244.2.0/24" and n.pod_gateway == "10.244.2.1"
    assert n.netns == "mk8s-node-2" and n.netns_path == Path("/var/run/netns/mk8s-node-2")
    assert n.veth_host == "mk8s0n2" and n.veth_node == "eth0"
    assert n.docker_socket == Path("/s/nodes/node-2/docker.sock")
    assert n.docker_url == "unix:///s/nodes/node-2/docker.sock"
    assert n.docker_data_root == Path("/s/nodes/node-2/docker")
    assert n.ray_resource == "minik8s/node/node-2"
    assert [x.name for x in cfg.all_nodes()] == ["node-1", "node-2", "node-3"]
    # Every node gets distinct addresses and pod subnets.
    assert len({x.ip for x in cfg.all_nodes()}) == 3
    assert len({x.pod_cidr for x in cfg.all_nodes()}) == 3


def test_custom_ranges_move_every_address() -> None:
    cfg = ClusterConfig(
        state_dir=Path("/t"), underlay_bridge="mk8stest0", underlay_cidr="10.201.0.0/24",
        pod_cidr="10.245.0.0/16", etcd_client_port=22379, registry_port=5001, netns_prefix="mk8stest-",
    )
    assert cfg.head_ip == "10.201.0.1"
    assert cfg.registry_addr == "10.201.0.1:5001"
    assert cfg.etcd_endpoints == ["http://127.0.0.1:22379"]
    n = cfg.node(1)
    assert (n.ip, n.pod_cidr, n.pod_gateway) == ("10.201.0.11", "10.245.1.0/24", "10.245.1.1")
    assert n.netns == "mk8stest-node-1" and n.veth_host == "mk8stest0n1"


@pytest.mark.parametrize("index", [0, -1])
def test_node_index_starts_at_one(index: int) -> None:
    with pytest.raises(ValueError, match="starts at 1"):
        ClusterConfig().node(index)


def test_node_outside_pod_cidr_is_rejected() -> None:
    cfg = ClusterConfig(pod_cidr="10.244.0.0/22")  # room for /24s 0..3
    assert cfg.node(3).pod_cidr == "10.244.3.0/24"
    with pytest.raises(ValueError, match="pod CIDR"):
        cfg.node(4)


def test_node_outside_underlay_is_rejected() -> None:
    cfg = ClusterConfig(underlay_cidr="10.200.0.0/28")  # hosts .1-.14; node i is .(10+i)
    assert cfg.node(4).ip == "10.200.0.14"
    with pytest.raises(ValueError, match="underlay"):
        cfg.node(5)  # would be the broadcast address


def test_bad_names_and_counts_are_rejected() -> None:
    with pytest.raises(ValueError, match="underlay_bridge"):
        ClusterConfig(underlay_bridge="a-very-long-bridge-name")
    with pytest.raises(ValueError, match="nodes"):
        ClusterConfig(nodes=-1)
    with pytest.raises(ValueError, match="veth"):
        ClusterConfig(underlay_bridge="fifteen-chars-x").node(1)
