"""Services without servers: allocation, validation, endpoint computation, nft rendering and diff."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from minik8s.api import types as t
from minik8s.api.services import Service, endpoints_list, service_defaults, service_ports, validate_service
from minik8s.apiserver.services import ServiceAllocator, pick_cluster_ip, pick_node_port
from minik8s.controllers.endpoints import compute_subsets
from minik8s.errors import Invalid
from minik8s.proxy.proxy import Proxier
from minik8s.proxy.rules import (
    ProxyRulesConfig,
    diff_script,
    full_script,
    pick_chain,
    pick_chain_rules,
    render_all,
    render_service,
)
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


def test_render_elements_shared_pick_chains_hairpin_and_node_port() -> None:
    rendered = world(["10.244.1.2", "10.244.2.2"])
    web = {(e.map, e.key, e.value) for e in rendered["default/web"].elements}
    assert web == {
        ("svc-ips", "10.96.0.5 . tcp . 80", "goto pick-tcp-2"),
        ("ip-backends-tcp", "10.96.0.5 . 80 . 0", "10.244.1.2 . 8080"),
        ("ip-backends-tcp", "10.96.0.5 . 80 . 1", "10.244.2.2 . 8080"),
        ("hairpin", "10.96.0.5 . 10.244.1.2 . 10.244.1.2", None),
        ("hairpin", "10.96.0.5 . 10.244.2.2 . 10.244.2.2", None),
        ("svc-nodeports", "tcp . 30080", "goto np-pick-tcp-2"),
        ("np-backends-tcp", "30080 . 0", "10.244.1.2 . 8080"),
        ("np-backends-tcp", "30080 . 1", "10.244.2.2 . 8080"),
    }
    assert rendered["default/web"].chains == {"pick-tcp-2", "np-pick-tcp-2"}
    assert rendered["default/other"].chains == {"pick-tcp-1"}
    script = full_script(rendered, CFG)
    assert script.startswith("table ip minik8s-proxy\ndelete table ip minik8s-proxy\n")
    t = "ip minik8s-proxy"
    assert f"add element {t} svc-ips {{ 10.96.0.5 . tcp . 80 : goto pick-tcp-2, " \
        "10.96.0.6 . tcp . 80 : goto pick-tcp-1 }" in script  # one command per map
    # one chain per protocol and endpoint count, shared by every Service port with that many endpoints
    assert f"add rule {t} pick-tcp-2 dnat ip to ip daddr . tcp dport . numgen random mod 2 map @ip-backends-tcp" \
        in script
    assert f"add rule {t} pick-tcp-2 ip saddr != 10.244.0.0/16 meta mark set meta mark | 0x4000" in script
    assert f"add rule {t} np-pick-tcp-2 meta mark set meta mark | 0x4000" in script
    assert script.count("add chain ip minik8s-proxy pick-") == 2  # pick-1, pick-2
    assert "flush table" not in script and "flush ruleset" not in script


def test_pick_chain_names_round_trip_to_their_rules() -> None:
    assert pick_chain(3, "udp", node_port=False, affinity=True) == "pick-udp-aff-3"
    assert pick_chain_rules("pick-udp-aff-3", CFG)[-1] == \
        "dnat ip to ip daddr . udp dport . jhash ip saddr mod 3 seed 0x0 map @ip-backends-udp"
    assert pick_chain_rules("np-pick-tcp-12", CFG)[-1] == \
        "dnat ip to tcp dport . numgen random mod 12 map @np-backends-tcp"
    assert pick_chain_rules("pick-tcp-1", ProxyRulesConfig(cluster_cidr=None)) == \
        ["dnat ip to ip daddr . tcp dport . numgen random mod 1 map @ip-backends-tcp"]


def test_no_endpoints_goes_to_the_reject_sets() -> None:
    script = full_script(world([]), CFG)
    assert "add element ip minik8s-proxy no-ep-ips { 10.96.0.5 . tcp . 80 }" in script
    assert "add element ip minik8s-proxy no-ep-nodeports { tcp . 30080 }" in script
    assert "10.96.0.5 . tcp . 80 :" not in script


def test_diff_is_element_changes_of_the_changed_service_only() -> None:
    old, new = world(["10.244.1.2", "10.244.2.2"]), world(["10.244.1.2"])
    assert diff_script(old, world(["10.244.1.2", "10.244.2.2"]), CFG) == ""
    lines = diff_script(old, new, CFG, add_chains=["np-pick-tcp-1"], del_chains=["np-pick-tcp-2"]).splitlines()
    t = "ip minik8s-proxy"
    assert all("10.96.0.6" not in line for line in lines)  # the other Service is untouched
    assert lines == [  # a changed value is a delete and an add
        f"delete element {t} hairpin {{ 10.96.0.5 . 10.244.2.2 . 10.244.2.2 }}",
        f"delete element {t} ip-backends-tcp {{ 10.96.0.5 . 80 . 1 }}",
        f"delete element {t} np-backends-tcp {{ 30080 . 1 }}",
        f"delete element {t} svc-ips {{ 10.96.0.5 . tcp . 80 }}",
        f"delete element {t} svc-nodeports {{ tcp . 30080 }}",
        f"add chain {t} np-pick-tcp-1",
        f"add rule {t} np-pick-tcp-1 meta mark set meta mark | 0x4000",
        f"add rule {t} np-pick-tcp-1 dnat ip to tcp dport . numgen random mod 1 map @np-backends-tcp",
        f"add element {t} svc-ips {{ 10.96.0.5 . tcp . 80 : goto pick-tcp-1 }}",
        f"add element {t} svc-nodeports {{ tcp . 30080 : goto np-pick-tcp-1 }}",
        f"flush chain {t} np-pick-tcp-2",
        f"delete chain {t} np-pick-tcp-2",
    ]
    gone = diff_script(old, {"default/other": old["default/other"]}, CFG).splitlines()
    assert gone and all(line.startswith("delete element") and "10.96.0.6" not in line for line in gone)


def test_proxier_creates_a_pick_chain_with_its_first_user_and_deletes_it_with_its_last() -> None:
    scripts: list[str] = []
    p = Proxier(CFG, None, lambda script, _ns: scripts.append(script))
    p.replace(world(["10.244.1.2", "10.244.2.2"]))  # web: 2 endpoints + NodePort, other: 1
    assert dict(p.chain_refs) == {"pick-tcp-2": 1, "np-pick-tcp-2": 1, "pick-tcp-1": 1}
    p.update({"default/web": world(["10.244.1.2"])["default/web"]})
    assert dict(p.chain_refs) == {"pick-tcp-1": 2, "np-pick-tcp-1": 1}
    assert "add chain ip minik8s-proxy np-pick-tcp-1" in scripts[-1]
    assert "add chain ip minik8s-proxy pick-tcp-1" not in scripts[-1]  # "other" already made it
    assert "delete chain ip minik8s-proxy pick-tcp-2" in scripts[-1]
    assert "delete chain ip minik8s-proxy np-pick-tcp-2" in scripts[-1]
    p.update({"default/other": None})
    assert dict(p.chain_refs) == {"pick-tcp-1": 1, "np-pick-tcp-1": 1} and "delete chain" not in scripts[-1]
    # what a restarted proxy writes for the same Services: the same chains
    fresh: list[str] = []
    Proxier(CFG, None, lambda script, _ns: fresh.append(script)).replace(dict(p.applied or {}))
    assert sorted(line for line in fresh[0].splitlines() if "chain ip minik8s-proxy" in line and "pick" in line) == \
        ["add chain ip minik8s-proxy np-pick-tcp-1", "add chain ip minik8s-proxy pick-tcp-1"]


def test_proxier_writes_nothing_for_the_same_input() -> None:
    scripts: list[str] = []
    p = Proxier(CFG, None, lambda script, _ns: scripts.append(script))
    p.replace(world(["10.244.1.2"]))
    assert p.update(dict(world(["10.244.1.2"]))).lines == 0 and len(scripts) == 1
    stats = p.update({"default/web": world(["10.244.1.3"])["default/web"]})
    assert stats.changed == 1 and len(scripts) == 2 and "10.244.1.3" in scripts[1]
    p.update({"default/web": None})
    assert "default/web" not in (p.applied or {})


# --- traffic policies and IP families (no silent fields) ---------------------------------------------

def _two_node_endpoints() -> Any:
    ep = endpoints("web", ["10.244.1.2", "10.244.2.2"])
    assert ep.subsets
    for addr in ep.subsets[0].addresses or []:
        addr.nodeName = "n1" if addr.ip.startswith("10.244.1.") else "n2"
    return ep


def _backends(rendered: Any, table: str) -> set[str]:
    return {e.value or "" for e in rendered.elements if e.map == table}


def test_internal_traffic_policy_local_keeps_this_nodes_endpoints_for_the_cluster_ip() -> None:
    svc = service("web", "10.96.0.5", node_port=30080)
    n1 = ProxyRulesConfig(cluster_cidr="10.244.0.0/16", node_name="n1")
    assert _backends(render_service(svc, _two_node_endpoints(), n1), "ip-backends-tcp") == \
        {"10.244.1.2 . 8080", "10.244.2.2 . 8080"}  # Cluster (the default): every endpoint
    svc.spec.internalTrafficPolicy = "Local"
    rendered = render_service(svc, _two_node_endpoints(), n1)
    assert _backends(rendered, "ip-backends-tcp") == {"10.244.1.2 . 8080"}
    assert len(_backends(rendered, "np-backends-tcp")) == 2  # NodePort follows externalTrafficPolicy
    no_local = render_service(svc, _two_node_endpoints(), ProxyRulesConfig(node_name="n3"))
    assert any(e.map == "no-ep-ips" for e in no_local.elements)


def test_external_traffic_policy_local_keeps_this_nodes_endpoints_for_the_node_port_unmasqueraded() -> None:
    svc = service("web", "10.96.0.5", node_port=30080)
    svc.spec.externalTrafficPolicy = "Local"
    rendered = render_service(svc, _two_node_endpoints(), ProxyRulesConfig(node_name="n2"))
    assert _backends(rendered, "np-backends-tcp") == {"10.244.2.2 . 8080"}
    assert len(_backends(rendered, "ip-backends-tcp")) == 2
    assert "npl-pick-tcp-1" in rendered.chains
    assert pick_chain_rules("npl-pick-tcp-1", CFG) == \
        ["dnat ip to tcp dport . numgen random mod 1 map @np-backends-tcp"]
    elsewhere = render_service(svc, _two_node_endpoints(), ProxyRulesConfig(node_name="n3"))
    assert any(e.map == "no-ep-nodeports" for e in elsewhere.elements)


def test_ip_families_default_to_ipv4_single_stack_and_ipv6_or_dual_stack_is_refused() -> None:
    obj = svc_obj("web")
    service_defaults(obj)
    assert obj["spec"]["ipFamilies"] == ["IPv4"] and obj["spec"]["ipFamilyPolicy"] == "SingleStack"
    assert obj["spec"]["internalTrafficPolicy"] == "Cluster"
    assert causes({"ports": [{"port": 80}], "ipFamilies": ["IPv6"]})[0][0] == "spec.ipFamilies[0]"
    assert causes({"ports": [{"port": 80}], "ipFamilyPolicy": "RequireDualStack"})[0][0] == "spec.ipFamilyPolicy"
    assert causes({"ports": [{"port": 80}], "ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv4"]}) == []
    assert causes({"ports": [{"port": 80}], "internalTrafficPolicy": "Nearby"})[0][0] == "spec.internalTrafficPolicy"
    assert causes({"ports": [{"port": 80}], "externalTrafficPolicy": "Local"})[0][0] == "spec.externalTrafficPolicy"
    was_node_port = svc_obj("web", externalTrafficPolicy="Cluster")  # type changed from NodePort
    service_defaults(was_node_port)
    assert "externalTrafficPolicy" not in was_node_port["spec"]
