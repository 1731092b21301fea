"""Real-machine mode without a cluster: the advertised address, host-mode nodes, the serving
certificate's names, node.yaml for host mode, and the address a machine joins with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.cluster import load_join_config
from cli.main import cli
from minik8s.cluster import host
from minik8s.cluster.bootstrap import control_plane_hosts, dns_settings, gateway_settings
from minik8s.cluster.config import ADVERTISE_ADDRESS_FILE, STATE_DIR_ENV, ClusterConfig
from minik8s.errors import BadRequest
from minik8s.pki import cert_sans, ensure_pki

TOKEN = "K10" + "0" * 64 + "::node:s"


def test_advertised_address_moves_what_other_machines_reach(tmp_path: Path) -> None:
    local = ClusterConfig(state_dir=tmp_path)
    assert local.control_plane_ip == local.head_ip == "10.200.0.1" and local.advertise_address is None
    cfg = ClusterConfig(state_dir=tmp_path, advertise_address="192.168.56.10")
    assert cfg.ray_address == "192.168.56.10:6379" and cfg.registry_addr == "192.168.56.10:5000"
    assert cfg.head_ip == "10.200.0.1"  # local nodes' underlay is unchanged
    assert control_plane_hosts(cfg) == ["127.0.0.1", "10.200.0.1", "192.168.56.10"]
    assert control_plane_hosts(local) == ["127.0.0.1", "10.200.0.1"]
    assert dns_settings(cfg)["listen"] == ["10.200.0.1:53", "192.168.56.10:53", "127.0.0.1:5353"]
    assert gateway_settings(cfg)["config_url"].startswith("http://192.168.56.10:")
    # recorded by `up`, read back by every later command's ClusterConfig()
    assert not (tmp_path / ADVERTISE_ADDRESS_FILE).exists()
    cfg.save_advertise_address()
    assert ClusterConfig(state_dir=tmp_path).ray_address == "192.168.56.10:6379"


def test_advertise_address_must_be_an_ipv4_address(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match='advertise address must be an IPv4 address, got "head.example"'):
        ClusterConfig(state_dir=tmp_path, advertise_address="head.example")
    result = CliRunner().invoke(cli, ["up", "--advertise-address", "999.1.1.1"], env={STATE_DIR_ENV: str(tmp_path)})
    assert result.exit_code == 1 and "advertise address must be an IPv4 address" in result.output
    assert list(tmp_path.iterdir()) == []  # refused before anything was made


def test_host_node_has_no_netns_and_keeps_state_like_a_local_node(tmp_path: Path) -> None:
    cfg = ClusterConfig(state_dir=tmp_path)
    node = cfg.host_node("metal-1", "192.168.56.11", 24, "enp1s0", "10.244.7.0/24", "192.168.56.10")
    assert node.host_mode and node.netns is None and node.veth_host is None and not cfg.node(1).host_mode
    assert node.interface == "enp1s0" and cfg.node(1).interface == "eth0"
    assert node.pod_gateway == "10.244.7.1" and node.ray_resource == "minik8s/node/metal-1"
    assert node.docker_socket == tmp_path / "nodes/metal-1/docker.sock"
    with pytest.raises(ValueError, match="host-mode node"):
        _ = node.netns_path
    with pytest.raises(ValueError, match="has host bits set"):
        cfg.host_node("m", "192.168.56.11", 24, "eth0", "10.244.7.1/24", "192.168.56.10")


def test_cluster_view_takes_the_heads_addresses_from_the_join_reply(tmp_path: Path) -> None:
    view = host.cluster_view(ClusterConfig(state_dir=tmp_path), "192.168.56.10:6380", "192.168.56.10:5001")
    assert view.ray_address == "192.168.56.10:6380" and view.registry_url == "http://192.168.56.10:5001"
    assert view.state_dir == tmp_path and view.nodes == 0
    with pytest.raises(BadRequest, match="different hosts"):
        host.cluster_view(ClusterConfig(state_dir=tmp_path), "192.168.56.10:6379", "192.168.56.99:5000")
    with pytest.raises(BadRequest, match="without a port"):
        host.cluster_view(ClusterConfig(state_dir=tmp_path), "192.168.56.10", "192.168.56.10:5000")


def test_join_record_round_trips_with_mode_0600(tmp_path: Path) -> None:
    cfg = ClusterConfig(state_dir=tmp_path)
    record = host.HostNodeRecord("metal-1", "192.168.56.11", 24, "enp1s0", "10.244.7.0/24",
                                 "https://192.168.56.10:6443", "192.168.56.10:6379", "192.168.56.10:5000", "CA",
                                 ray_token="raytok")
    path = record.save(cfg)
    assert path.stat().st_mode & 0o777 == 0o600
    assert host.load_record(cfg, "metal-1") == record and host.recorded_nodes(cfg) == ["metal-1"]
    assert "token" not in json.loads(path.read_text())  # no API credential (the node's are in pki/)
    assert record.node(cfg).ip == "192.168.56.11" and record.cluster(cfg).ray_address == "192.168.56.10:6379"
    # The raylet and drivers of this node read the cluster's Ray token from the node dir, 0600.
    token_file = record.cluster(cfg).ray_token_path
    assert token_file == tmp_path / "nodes" / "metal-1" / "ray-auth-token"
    assert token_file.read_text() == "raytok" and token_file.stat().st_mode & 0o777 == 0o600
    host.forget(cfg, "metal-1")
    assert host.load_record(cfg, "metal-1") is None and host.recorded_nodes(cfg) == []
    assert not token_file.exists()


def test_join_record_without_a_ray_token_is_refused(tmp_path: Path) -> None:
    cfg = ClusterConfig(state_dir=tmp_path)
    record = host.HostNodeRecord("metal-1", "192.168.56.11", 24, "enp1s0", "10.244.7.0/24",
                                 "https://192.168.56.10:6443", "192.168.56.10:6379", "192.168.56.10:5000", "CA")
    with pytest.raises(BadRequest, match="no Ray token"):
        record.save(cfg)
    assert host.recorded_nodes(cfg) == []


def test_serving_cert_is_issued_again_for_a_new_address_by_the_same_ca(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path, ["127.0.0.1", "10.200.0.1"], ["localhost"])
    assert cert_sans(pki.server_cert) == {"IP:127.0.0.1", "IP:10.200.0.1", "DNS:localhost"}
    ca, first = pki.ca_pem(), pki.server_cert.read_text()
    ensure_pki(tmp_path, ["127.0.0.1", "10.200.0.1"], ["localhost"])
    assert pki.server_cert.read_text() == first  # nothing new asked: nothing reissued
    ensure_pki(tmp_path, ["127.0.0.1", "10.200.0.1", "192.168.56.10"], ["localhost"])
    assert "IP:192.168.56.10" in cert_sans(pki.server_cert) and pki.ca_pem() == ca
    assert pki.server_key.stat().st_mode & 0o777 == 0o600


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "node.yaml"
    path.write_text("apiVersion: minik8s.io/v1\nkind: NodeJoinConfig\nserver: https://192.168.56.10:6443\n" + body)
    return path


def test_host_mode_join_config(tmp_path: Path) -> None:
    (tmp_path / "token").write_text(TOKEN + "\n")
    req = load_join_config(write(tmp_path, "mode: host\nname: metal-1\ntokenFile: token\naddress: 192.168.56.11\n"
                                           "interface: enp1s0\npodCIDR: 10.244.7.0/24\n"))
    assert req.host and req.token == TOKEN and req.address == "192.168.56.11" and req.interface == "enp1s0"
    assert req.pod_cidr == "10.244.7.0/24"
    assert not load_join_config(write(tmp_path, f"name: node-4\ntoken: {TOKEN}\n")).host  # local is the default


@pytest.mark.parametrize(("body", "message"), [
    (f"mode: metal\nname: m\ntoken: {TOKEN}\n", "mode: Invalid value: 'metal': Input should be 'local' or 'host'"),
    (f"mode: host\nname: m\ntoken: {TOKEN}\ntokenFile: t\n", "give exactly one of token and tokenFile"),
    ("mode: host\nname: m\n", "give exactly one of token and tokenFile"),
    ("mode: host\nname: m\ntokenFile: missing\n", "tokenFile: cannot read"),
    (f"name: node-4\ntoken: {TOKEN}\ninterface: eth1\n", "interface is for mode: host"),
    (f"token: {TOKEN}\n", "name: Field required"),
])
def test_bad_join_configs_are_refused_clearly(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        load_join_config(write(tmp_path, body))


def test_the_address_a_machine_joins_with() -> None:
    assert host.resolve_address("127.0.0.1") == host.HostAddress("127.0.0.1", "lo", 8)
    assert host.resolve_address("127.0.0.1", "127.0.0.1", "lo").interface == "lo"
    with pytest.raises(BadRequest, match="is not an address of this machine on lo"):
        host.resolve_address("127.0.0.1", "192.0.2.250", "lo")
    with pytest.raises(BadRequest, match="leaves through lo, not nosuch0"):
        host.resolve_address("127.0.0.1", None, "nosuch0")


def test_serving_cert_names_the_kubernetes_service_as_pods_reach_it(tmp_path: Path) -> None:
    """Pods verify the API at the `kubernetes` Service's ClusterIP or `kubernetes.default.svc`."""
    from minik8s.cluster import bootstrap

    cfg = ClusterConfig(state_dir=tmp_path)
    sans = cert_sans(bootstrap.pki(cfg).server_cert)
    assert {"IP:10.96.0.1", "DNS:kubernetes", "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local", "IP:10.200.0.1", "IP:127.0.0.1"} <= sans
    api = bootstrap.control_plane_settings(cfg, bootstrap.ControlPlaneOptions())["apiserver"]["config"]
    assert api["advertise_address"] == "10.200.0.1"
    assert api["service_account_key_file"] == str(tmp_path / "pki" / "sa.key")
