"""The lockdown tables (pods -> internal ports) and the Ray token file: rendering only, no nft."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from minik8s.cluster import lockdown, raytoken
from minik8s.cluster.config import ClusterConfig


def _rules(text: str, chain: str) -> list[str]:
    """The rule lines of one chain of a rendered table."""
    lines = text.splitlines()
    start = lines.index(f"\tchain {chain} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1:end]]


def test_a_local_node_refuses_pods_everything_internal_but_the_api_dns_and_gateway_config() -> None:
    cfg = ClusterConfig(state_dir=Path("/t"), nodes=3)
    text = lockdown.render(lockdown.node_spec(cfg, cfg.node(2)))
    assert text.startswith("table inet minik8s-lockdown {\n")
    assert _rules(text, "from-pods") == [
        "ct state established,related accept",
        "meta l4proto icmp accept",
        "ip daddr { 10.200.0.1 } tcp dport { 6443, 10280 } accept",
        "ip daddr { 10.200.0.1 } meta l4proto { tcp, udp } th dport 53 accept",
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx type admin-prohibited",
    ]
    # Every address of the node itself (underlay IP, docker0 gateway, wildcard listeners) from any pod,
    # and the pods' IPv6 link-local addresses (Docker 20.10 gives them one) on the pod bridge.
    assert _rules(text, "input")[1:] == [
        "ip saddr 10.244.0.0/16 jump from-pods",
        'iifname "docker0" meta nfproto ipv6 meta l4proto != ipv6-icmp drop',
    ]
    # Pods -> anything outside the pod network (the head, the other nodes, the machine's other addresses):
    # NodePorts anywhere but on the control plane, the rest checked; pod-to-pod traffic is left alone.
    assert _rules(text, "forward")[1:] == [
        "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr != { 10.200.0.1 } "
        "meta l4proto { tcp, udp } th dport 30000-32767 accept",
        "ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 jump from-pods",
    ]
    assert "priority filter - 10; policy accept;" in _rules(text, "forward")[0]
    # IPv4 is rejected, so it answers at once: a port sweep from a pod does not hang.
    assert "drop" not in text.replace("ipv6-icmp drop", "")


def test_the_control_plane_table_has_no_forward_chain_and_its_own_name() -> None:
    cfg = ClusterConfig(state_dir=Path("/t"), advertise_address="192.168.56.10")
    spec = lockdown.control_plane_spec(cfg)
    text = lockdown.render(spec)
    assert spec.table == "minik8s-lockdown-cp" != cfg.lockdown_table
    assert "chain forward" not in text and "ipv6" not in text  # no pod bridge there
    assert "ip daddr { 10.200.0.1, 192.168.56.10 } tcp dport { 6443, 10280 } accept" in text


def test_a_host_mode_node_guards_the_control_plane_not_its_lan() -> None:
    cfg = ClusterConfig(state_dir=Path("/t"), advertise_address="192.168.56.10")
    node = cfg.host_node("metal-1", "192.168.56.11", 24, "enp1s0", "10.244.7.0/24", "192.168.56.10")
    text = lockdown.render(lockdown.node_spec(cfg, node))
    forward = _rules(text, "forward")
    assert forward[-1] == ("ip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 ip daddr { 10.200.0.1, 192.168.56.10 } "
                           "jump from-pods")
    assert "192.168.56.0/24" not in text
    assert len(forward) == 2 and "30000-32767" not in text  # it guards no other node: no NodePorts to let through


def test_overlapping_destinations_are_merged_for_nft() -> None:
    spec = lockdown.LockdownSpec("t", "10.244.0.0/16", ("10.200.0.1",), guarded=("10.200.0.0/24", "10.200.0.1"))
    assert "ip daddr != 10.244.0.0/16 ip daddr { 10.200.0.0/24 } jump from-pods" in lockdown.render(spec)


def test_replace_script_swaps_only_our_table_atomically() -> None:
    cfg = ClusterConfig(state_dir=Path("/t"), nodes=1, lockdown_table="mk8stest-lockdown")
    script = lockdown.replace_script(lockdown.node_spec(cfg, cfg.node(1)))
    lines = script.splitlines()
    assert lines[:3] == ["table inet mk8stest-lockdown", "delete table inet mk8stest-lockdown",
                         "table inet mk8stest-lockdown {"]
    assert "flush ruleset" not in script


@pytest.mark.parametrize("bad", [
    {"pod_cidr": "10.244.0.1/16"},
    {"control_plane": ()},
    {"control_plane": ("not-an-ip",)},
    {"api_ports": (70000,)},
])
def test_bad_specs_are_refused(bad: dict[str, object]) -> None:
    args: dict[str, object] = {"table": "t", "pod_cidr": "10.244.0.0/16", "control_plane": ("10.200.0.1",), **bad}
    with pytest.raises(ValueError):
        lockdown.LockdownSpec(**args)  # type: ignore[arg-type]


def test_ray_token_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ray-auth-token"
    token = raytoken.ensure(path)
    assert len(token) == 64 and path.stat().st_mode & 0o777 == 0o600
    assert raytoken.ensure(path) == token  # the second `up` keeps it
    assert raytoken.env(path) == {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(path)}


def test_ray_token_write_tightens_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "tok"
    path.write_text("old")
    os.chmod(path, 0o644)
    raytoken.write(path, "new\n")
    assert path.read_text() == "new" and path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="empty"):
        raytoken.write(path, " ")


def test_the_ray_token_lives_in_the_state_dir_by_default(tmp_path: Path) -> None:
    assert ClusterConfig(state_dir=tmp_path).ray_token_path == tmp_path / "ray-auth-token"
    assert ClusterConfig(state_dir=tmp_path, ray_auth_token_file=Path("/x/t")).ray_token_path == Path("/x/t")
