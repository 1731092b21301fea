"""Cluster DNS without a server: records from Services and DNS objects, wire answers, the DNS kind's
validation and host+path claims, the resolver's query order and a pod's resolv.conf."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dnslib import QTYPE, RCODE, DNSRecord

from minik8s.api.dns import DNS, validate_dns
from minik8s.api.services import Service
from minik8s.api.types import Pod
from minik8s.apiserver.dnshosts import conflicts
from minik8s.dns.bootstrap import kube_dns_objects
from minik8s.dns.records import build_snapshot
from minik8s.dns.resolver import ResolverConf, lookup_names
from minik8s.kubelet.podnet import DnsConfig, pod_dns_config


def svc(name: str, ns: str, ip: str | None, ports: list[dict[str, Any]] | None = None) -> Service:
    return Service.model_validate({"metadata": {"name": name, "namespace": ns},
                                   "spec": {"clusterIP": ip, "ports": ports or [{"port": 80}]}})


def dns(name: str, host: str, paths: list[dict[str, Any]], ns: str = "default") -> DNS:
    return DNS.model_validate({"metadata": {"name": name, "namespace": ns}, "spec": {"host": host, "paths": paths}})


SERVICES = [svc("web", "prod", "10.96.0.20", [{"name": "http", "port": 80}, {"name": "dns", "port": 53,
                                                                              "protocol": "UDP"}]),
            svc("headless", "prod", "None"), svc("gateway", "kube-system", "10.96.0.30")]


def ask(name: str, qtype: str = "A", ident: int = 4242) -> DNSRecord:
    snap = build_snapshot(SERVICES, [dns("shop", "Shop.Example.com", [{"path": "/", "service": "web", "port": 80}])])
    q = DNSRecord.question(name, qtype)
    q.header.id = ident
    raw = snap.respond(q.pack())
    assert raw is not None
    return DNSRecord.parse(raw)


def test_service_a_record_and_srv_for_named_ports() -> None:
    reply = ask("web.prod.svc.cluster.local")
    assert reply.header.id == 4242 and reply.header.rcode == RCODE.NOERROR and reply.header.aa
    assert [str(rr.rdata) for rr in reply.rr] == ["10.96.0.20"] and reply.rr[0].ttl == 5
    srv = ask("_http._tcp.web.prod.svc.cluster.local", "SRV")
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in srv.rr] == [(80, "web.prod.svc.cluster.local.")]
    assert [str(rr.rdata) for rr in srv.ar] == ["10.96.0.20"]
    assert [rr.rdata.port for rr in ask("_dns._udp.web.prod.svc.cluster.local", "SRV").rr] == [53]
    assert ask("_dns._tcp.web.prod.svc.cluster.local", "SRV").header.rcode == RCODE.NXDOMAIN


def test_dns_object_host_points_at_the_gateway_and_case_is_kept() -> None:
    reply = ask("SHOP.example.COM")
    assert [str(rr.rdata) for rr in reply.rr] == ["10.96.0.30"]
    assert str(reply.q.qname) == "SHOP.example.COM."  # the asker's letters echoed back (0x20-safe)
    no_gateway = build_snapshot(SERVICES[:2], [dns("shop", "shop.example.com", [])])
    assert "shop.example.com" not in no_gateway.a


def test_nxdomain_nodata_and_empty_non_terminals() -> None:
    for name in ("nope.prod.svc.cluster.local", "example.com", "headless.prod.svc.cluster.local.x"):
        assert ask(name).header.rcode == RCODE.NXDOMAIN, name
    assert ask("example.com").auth == []  # not our zone: no SOA
    nx = ask("nope.prod.svc.cluster.local")
    assert nx.auth[0].rtype == QTYPE.SOA and nx.auth[0].ttl == 5  # negative answers are cacheable for the TTL
    for name, qtype in (("web.prod.svc.cluster.local", "AAAA"), ("prod.svc.cluster.local", "A"),
                        ("headless.prod.svc.cluster.local", "A")):
        reply = ask(name, qtype)
        assert reply.header.rcode == RCODE.NOERROR and reply.rr == [], name


def test_garbage_and_responses_are_not_answered_and_cache_is_bounded() -> None:
    snap = build_snapshot(SERVICES, [])
    assert snap.respond(b"\x00\x01") is None
    reply = DNSRecord.question("web.prod.svc.cluster.local").reply().pack()
    assert snap.respond(reply) is None  # a response (QR set) never gets an answer: no reflection loops
    snap.max_cached = 3
    for i in range(10):
        snap.respond(DNSRecord.question(f"n{i}.example.com").pack())
    assert len(snap._cache) <= 3


def test_truncation_over_udp_limit() -> None:
    ports = [{"name": f"p{i}", "port": 1000 + i} for i in range(40)]
    snap = build_snapshot([svc("big", "prod", "10.96.0.40", ports)], [])
    raw = snap.respond(DNSRecord.question("_p1._tcp.big.prod.svc.cluster.local", "SRV").pack(), max_len=40)
    assert raw is not None and DNSRecord.parse(raw).header.tc


def test_dns_validation() -> None:
    assert validate_dns(dns("ok", "shop.example.com", [{"path": "/", "service": "web", "port": 80},
                                                      {"path": "/api", "service": "api", "port": 8080,
                                                       "keepPrefix": True}])) == []
    causes = dict(validate_dns(dns("bad", "Not_A_Host", [{"path": "api", "service": "Web", "port": 0},
                                                         {"path": "api", "service": "web", "port": 80}])))
    assert set(causes) == {"spec.host", "spec.paths[0].path", "spec.paths[0].service", "spec.paths[0].port",
                           "spec.paths[1].path"}
    assert causes["spec.paths[1].path"] == 'Duplicate value: "api"'


def test_host_and_path_claims_cross_objects() -> None:
    first = dns("a", "shop.example.com", [{"path": "/", "service": "web", "port": 80}]).to_dict()
    second = dns("b", "SHOP.example.com", [{"path": "/x", "service": "x", "port": 80},
                                           {"path": "/", "service": "y", "port": 80}], ns="other").to_dict()
    found = conflicts(second, [first])
    assert [path for path, _ in found] == ["spec.paths[1].path"]
    assert 'claimed by DNS "default/a"' in found[0][1]
    assert conflicts(first, [first]) == []  # an update re-claiming its own paths
    assert conflicts(dns("c", "other.example.com", [{"path": "/", "service": "w", "port": 80}]).to_dict(),
                     [first]) == []


def test_resolver_order_with_ndots_2() -> None:
    conf = ResolverConf.for_pod("prod")
    assert lookup_names("web", conf)[0] == "web.prod.svc.cluster.local"
    assert lookup_names("web.prod", conf)[:2] == ["web.prod.prod.svc.cluster.local", "web.prod.svc.cluster.local"]
    assert lookup_names("web.prod.svc.cluster.local", conf)[0] == "web.prod.svc.cluster.local"
    assert lookup_names("shop.example.com", conf)[0] == "shop.example.com"
    assert lookup_names("example.com.", conf) == ["example.com"]
    assert len(lookup_names("missing", conf)) == 4
    assert conf.render() == ("nameserver 10.96.0.10\nsearch prod.svc.cluster.local svc.cluster.local cluster.local\n"
                             "options ndots:2\n")


def pod(ns: str = "prod", **spec: Any) -> Pod:
    return Pod.model_validate({"metadata": {"name": "p", "namespace": ns},
                               "spec": {"containers": [{"name": "c", "image": "busybox"}], **spec}})


def test_pod_resolv_conf_gets_cluster_dns_for_cluster_first_pods() -> None:
    node = DnsConfig(["192.168.1.1"], ["corp.example"], ["timeout:2"])
    conf = pod_dns_config(pod(), ["10.96.0.10"], "cluster.local", node)
    assert conf.render() == ("search prod.svc.cluster.local svc.cluster.local cluster.local corp.example\n"
                             "nameserver 10.96.0.10\noptions ndots:2\n")
    assert pod_dns_config(pod(dnsPolicy="Default"), ["10.96.0.10"], "cluster.local", node) == node
    assert pod_dns_config(pod(hostNetwork=True), ["10.96.0.10"], "cluster.local", node) == node
    assert pod_dns_config(pod(hostNetwork=True, dnsPolicy="ClusterFirstWithHostNet"), ["10.0.0.2"],
                          "c.local", node).nameservers == ["10.0.0.2"]
    assert pod_dns_config(pod(), [], "cluster.local", node) == node  # no cluster DNS: the node's


def test_kube_dns_objects_are_selectorless_and_point_at_the_head() -> None:
    service, endpoints = kube_dns_objects("10.96.0.10", "10.200.0.1")
    assert "selector" not in service["spec"] and service["spec"]["clusterIP"] == "10.96.0.10"
    assert [(p["name"], p["protocol"]) for p in service["spec"]["ports"]] == [("dns", "UDP"), ("dns-tcp", "TCP")]
    assert endpoints["subsets"][0]["addresses"] == [{"ip": "10.200.0.1"}]


def test_node_resolv_conf(tmp_path: Path) -> None:
    from minik8s.cluster.config import ClusterConfig
    from minik8s.cluster.netns import write_node_resolv_conf

    cfg = ClusterConfig()
    node = cfg.node(1)
    path = write_node_resolv_conf(cfg, node, tmp_path)
    assert path == tmp_path / node.netns / "resolv.conf"
    assert path.read_text().splitlines()[:2] == [f"nameserver {cfg.dns_ip}", "search svc.cluster.local cluster.local"]
