"""Services without servers: allocation, validation, endpoint computation, nft rendering and diff."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from minik8s.api import types as t
from minik8s.api.services import Service, endpoints_list, service_ports, validate_service
from minik8s.apiserver.services import ServiceAllocator, pick_cluster_ip, pick_node_port
from minik8s.controllers.endpoints import compute_subsets
from minik8s.errors import Invalid
from minik8s.proxy.proxy import Proxier
from minik8s.proxy.rules import ProxyRulesConfig, chain_hash, diff_script, full_script, render_all
from minik8s.proxy.testbed import endpoints, service

CFG = ProxyRulesConfig(cluster_cidr="10.244.0.0/16")


def svc_obj(name: str, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"ports": [{"port": 80, "protocol": "TCP"}], **spec}}


# --- allocation --------------------------------------------------------------------------------

def test_cluster_ip_skips_reserved_and_taken() -> None:
    net = ipaddress.IPv4Network("10.96.0.0/16")
    assert pick_cluster_ip(net, {}, "a") == "10.96.0.2"
    taken = {f"10.96.0.{i}": "x" for i in range(2, 10)}
    assert pick_cluster_ip(net, taken, "a") == "10.96.0.11"  # .10 is the DNS address
    assert pick_cluster_ip(net, taken, "a", "10.96.0.10") == "10.96.0.10"
    with pytest.raises(Invalid, match="already allocated"):
        pick_cluster_ip(net, taken, "a", "10.96.0.3")
    with pytest.raises(Invalid, match="valid range"):
        pick_cluster_ip(net, taken, "a", "10.97.0.3")


def test_node_port_lowest_free_and_clash_names_the_owner() -> None:
    taken = {(30000, "TCP"): "default/a"}
    assert pick_node_port(taken, "TCP", "b", "p") == 30001
    assert pick_node_port(taken, "UDP", "b", "p") == 30000
    with pytest.raises(Invalid, match='to service "default/a"'):
        pick_node_port(taken, "TCP", "b", "p", 30000)


def test_allocator_keeps_allocations_on_update_and_refuses_changes() -> None:
    stored: list[dict[str, Any]] = []
    alloc = ServiceAllocator("10.96.0.0/24", lambda: stored)
    first = svc_obj("a", type="NodePort")
    alloc.allocate(first)
    stored.append(first)
    assert first["spec"]["clusterIP"] == "10.96.0.2" and first["spec"]["ports"][0]["nodePort"] == 30000
    update = svc_obj("a", type="NodePort")
    alloc.allocate(update, first)
    assert update["spec"]["clusterIP"] == "10.96.0.2" and update["spec"]["ports"][0]["nodePort"] == 30000
    with pytest.raises(Invalid, match="immutable"):
        alloc.allocate(svc_obj("a", clusterIP="10.96.0.9"), first)
    second = svc_obj("b", type="NodePort")
    alloc.allocate(second)
    assert second["spec"]["clusterIP"] == "10.96.0.3" and second["spec"]["ports"][0]["nodePort"] == 30001
    to_cluster_ip = svc_obj("a", type="ClusterIP")
    alloc.allocate(to_cluster_ip, first)
    assert "nodePort" not in to_cluster_ip["spec"]["ports"][0]


# --- validation and printing --------------------------------------------------------------------

def causes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    return validate_service(Service.model_validate({"metadata": {"name": "s"}, "spec": spec}))


def test_validation_paths() -> None:
    assert causes({"ports": [{"port": 80}]}) == []
    assert causes({"ports": [{"port": 0}]})[0][0] == "spec.ports[0].port"
    assert causes({"ports": [{"port": 80}, {"port": 81, "name": "b"}]})[0][0] == "spec.ports[0].name"
    assert causes({"type": "NodePort", "ports": [{"port": 80, "nodePort": 29999}]})[0][0] == "spec.ports[0].nodePort"
    assert causes({"ports": [{"port": 80, "nodePort": 30000}]})[0][0] == "spec.ports[0].nodePort"
    assert causes({"clusterIP": "nope", "ports": [{"port": 80}]})[0][0] == "spec.clusterIP"
    assert causes({"ports": [{"port": 80, "targetPort": "Bad_Name"}]})[0][0] == "spec.ports[0].targetPort"


def test_printer_columns() -> None:
    obj = {"spec": {"ports": [{"port": 80, "protocol": "TCP", "nodePort": 30080}, {"port": 53, "protocol": "UDP"}]}}
    assert service_ports(obj) == "80:30080/TCP,53/UDP"
    ep = {"subsets": [{"addresses": [{"ip": f"10.244.1.{i}"} for i in range(2, 7)], "ports": [{"port": 8080}]}]}
    assert endpoints_list(ep) == "10.244.1.2:8080,10.244.1.3:8080,10.244.1.4:8080 + 2 more..."


# --- endpoints ------------------------------------------------------------------------------------

def pod(name: str, ip: str | None, ready: bool, port_name: str | None = "http", labels: dict[str, str] | None = None,
        deleting: bool = False) -> t.Pod:
    ports = [{"containerPort": 8080, **({"name": port_name} if port_name else {})}]
    return t.Pod.model_validate({
        "metadata": {"name": name, "namespace": "default", "labels": labels or {"app": "web"},
                     **({"deletionTimestamp": "2024-01-01T00:00:00Z"} if deleting else {})},
        "spec": {"containers": [{"name": "c", "image": "x", "ports": ports}], "nodeName": "n1"},
        "status": {"phase": "Running", **({"podIP": ip} if ip else {}),
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})


def test_compute_subsets_ready_not_ready_and_named_ports() -> None:
    web = Service.model_validate({"metadata": {"name": "web", "namespace": "default"},
                                  "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}})
    pods = [pod("b", "10.244.1.4", True), pod("a", "10.244.1.3", True), pod("c", "10.244.2.3", False),
            pod("d", None, True), pod("e", "10.244.2.9", True, deleting=True),
            pod("f", "10.244.2.5", True, port_name=None), pod("g", "10.244.2.6", True, labels={"app": "x"})]
    subsets, missing = compute_subsets(web, pods)
    assert missing == [("f", "http")]
    assert len(subsets) == 1
    assert [a["ip"] for a in subsets[0]["addresses"]] == ["10.244.1.3", "10.244.1.4"]
    assert [a["ip"] for a in subsets[0]["notReadyAddresses"]] == ["10.244.2.3"]
    assert subsets[0]["ports"] == [{"port": 8080, "protocol": "TCP"}]


# --- nft rendering and diff -------------------------------------------------------------------------

def world(ips_web: list[str]) -> dict[str, Any]:
    services = [service("web", "10.96.0.5", node_port=30080), service("other", "10.96.0.6")]
    eps = {"default/web": endpoints("web", ips_web), "default/other": endpoints("other", ["10.244.2.2"])}
    return render_all(services, eps, CFG)


def test_render_random_choice_dnat_hairpin_and_node_port() -> None:
    script = full_script(world(["10.244.1.2", "10.244.2.2"]), CFG)
    h = chain_hash("default", "web", "http", "TCP")
    assert script.startswith("table ip minik8s-proxy\ndelete table ip minik8s-proxy\n")
    assert f"add rule ip minik8s-proxy svc-{h} numgen random mod 2 vmap {{ 0 : goto ep-{h}-0, 1 : goto ep-{h}-1 }}" \
        in script
    assert f"add rule ip minik8s-proxy ep-{h}-0 ip saddr 10.244.1.2 meta mark set meta mark | 0x4000" in script
    assert f"add rule ip minik8s-proxy ep-{h}-1 meta l4proto tcp dnat to 10.244.2.2:8080" in script
    assert f"add element ip minik8s-proxy svc-ips {{ 10.96.0.5 . tcp . 80 : goto svc-{h} }}" in script
    assert f"add element ip minik8s-proxy svc-nodeports {{ tcp . 30080 : goto np-{h} }}" in script
    assert "flush table" not in script and "flush ruleset" not in script


def test_no_endpoints_goes_to_the_reject_sets() -> None:
    script = full_script(world([]), CFG)
    assert "add element ip minik8s-proxy no-ep-ips { 10.96.0.5 . tcp . 80 }" in script
    assert "add element ip minik8s-proxy no-ep-nodeports { tcp . 30080 }" in script


def test_diff_touches_only_the_changed_service_and_is_empty_when_equal() -> None:
    old, new = world(["10.244.1.2", "10.244.2.2"]), world(["10.244.1.2"])
    assert diff_script(old, world(["10.244.1.2", "10.244.2.2"]), CFG) == ""
    script = diff_script(old, new, CFG)
    h, other = chain_hash("default", "web", "http", "TCP"), chain_hash("default", "other", "http", "TCP")
    assert other not in script
    lines = script.splitlines()
    assert f"flush chain ip minik8s-proxy svc-{h}" in lines
    assert lines[-1] == f"delete chain ip minik8s-proxy ep-{h}-1"
    assert f"add rule ip minik8s-proxy svc-{h} goto ep-{h}-0" in lines
    assert not any(f"ep-{h}-0" in line and "flush" in line for line in lines)  # unchanged chain left alone
    gone = diff_script(old, {"default/other": old["default/other"]}, CFG).splitlines()
    assert gone[0].startswith("delete element") and all(other not in line for line in gone)
    assert lines.index(f"flush chain ip minik8s-proxy svc-{h}") < lines.index(f"delete chain ip minik8s-proxy ep-{h}-1")


def test_proxier_writes_nothing_for_the_same_input() -> None:
    scripts: list[str] = []
    p = Proxier(CFG, None, lambda script, _ns: scripts.append(script))
    p.replace(world(["10.244.1.2"]))
    assert p.update(dict(world(["10.244.1.2"]))).lines == 0 and len(scripts) == 1
    stats = p.update({"default/web": world(["10.244.1.3"])["default/web"]})
    assert stats.changed == 1 and len(scripts) == 2 and "10.244.1.3" in scripts[1]
    p.update({"default/web": None})
    assert "default/web" not in (p.applied or {})
