"""Cluster DNS against the in-process API server: records follow Services and DNS objects,
over UDP and TCP; unknown and external names are NXDOMAIN at once; the DNS kind's rules."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, RCODE, DNSRecord

from minik8s import Client, errors
from minik8s.dns import ClusterDns, DnsConfig
from minik8s.dns.resolver import ResolverConf, lookup_names
from tests.conftest import uniq, wait_for

QUERY_TIMEOUT_S = 2.0


def service(name: str, ports: list[dict[str, Any]] | None = None, namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
            "spec": {"ports": ports or [{"name": "http", "port": 80}]}}


def dns_obj(name: str, host: str, paths: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "minik8s.io/v1", "kind": "DNS", "metadata": {"name": name},
            "spec": {"host": host, "paths": paths}}


@pytest.fixture
def cluster_dns(client: Client) -> Iterator[ClusterDns]:
    gateway = uniq("gw")
    client.create(service(gateway))
    dns = ClusterDns(client, DnsConfig(listen=["127.0.0.1:0"], gateway_service=f"default/{gateway}"))
    dns.start()
    dns.gateway = gateway  # type: ignore[attr-defined]
    yield dns
    dns.stop()
    client.delete("Service", gateway)


def query(dns: ClusterDns, name: str, qtype: str = "A", tcp: bool = False) -> DNSRecord:
    host, port = dns.server.bound[0]
    raw = DNSRecord.question(name, qtype).send(host, port, tcp=tcp, timeout=QUERY_TIMEOUT_S)
    return DNSRecord.parse(raw)


def a_records(reply: DNSRecord) -> list[str]:
    return [str(rr.rdata) for rr in reply.rr if rr.rtype == QTYPE.A]


def test_service_a_and_srv_records_over_udp_and_tcp(client: Client, cluster_dns: ClusterDns) -> None:
    name = uniq("web")
    ip = client.create(service(name, [{"name": "http", "port": 80}, {"name": "dns", "port": 53,
                                                                       "protocol": "UDP"}])).spec.clusterIP
    fqdn = f"{name}.default.svc.cluster.local"
    for tcp in (False, True):
        assert wait_for(lambda tcp=tcp: a_records(query(cluster_dns, fqdn, tcp=tcp)), 2.0) == [ip]
    srv = query(cluster_dns, f"_http._tcp.{fqdn}", "SRV")
    assert [(rr.rdata.port, str(rr.rdata.target)) for rr in srv.rr] == [(80, fqdn + ".")]
    assert a_records(DNSRecord(rr=srv.ar)) == [ip]
    assert [rr.rdata.port for rr in query(cluster_dns, f"_dns._udp.{fqdn}", "SRV").rr] == [53]
    # the name exists but has no AAAA: NODATA, not NXDOMAIN (a resolver asking A and AAAA keeps the A)
    aaaa = query(cluster_dns, fqdn, "AAAA")
    assert aaaa.header.rcode == RCODE.NOERROR and not aaaa.rr
    assert query(cluster_dns, fqdn.upper()).rr[0].rdata == query(cluster_dns, fqdn).rr[0].rdata
    client.delete("Service", name)
    assert wait_for(lambda: query(cluster_dns, fqdn).header.rcode == RCODE.NXDOMAIN, 1.0)


def test_change_is_served_within_a_second(client: Client, cluster_dns: ClusterDns) -> None:
    name = uniq("fresh")
    fqdn = f"{name}.default.svc.cluster.local"
    assert query(cluster_dns, fqdn).header.rcode == RCODE.NXDOMAIN
    start = time.monotonic()
    ip = client.create(service(name)).spec.clusterIP
    assert wait_for(lambda: a_records(query(cluster_dns, fqdn)), 1.0) == [ip]
    assert time.monotonic() - start < 1.0
    client.delete("Service", name)


def test_headless_service_answers_with_its_endpoints_and_their_hostnames(client: Client,
                                                                         cluster_dns: ClusterDns) -> None:
    name = uniq("hl")
    client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
                   "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}})
    fqdn = f"{name}.default.svc.cluster.local"
    client.create({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": "default"},
                   "subsets": [{"addresses": [{"ip": "10.244.1.3", "hostname": "db-0"}, {"ip": "10.244.1.4"}],
                                "notReadyAddresses": [{"ip": "10.244.1.5", "hostname": "db-2"}],
                                "ports": [{"name": "pg", "port": 5432}]}]})
    assert wait_for(lambda: sorted(a_records(query(cluster_dns, fqdn))), 2.0) == ["10.244.1.3", "10.244.1.4"]
    assert a_records(query(cluster_dns, f"db-0.{fqdn}")) == ["10.244.1.3"]
    assert query(cluster_dns, f"db-2.{fqdn}").header.rcode == RCODE.NXDOMAIN  # not ready: no record
    client.patch("Endpoints", name, {"subsets": [{"addresses": [{"ip": "10.244.1.5", "hostname": "db-2"}],
                                                  "ports": [{"name": "pg", "port": 5432}]}]})
    assert wait_for(lambda: a_records(query(cluster_dns, f"db-2.{fqdn}")), 2.0) == ["10.244.1.5"]
    client.delete("Service", name)
    client.delete("Endpoints", name)


def test_unknown_and_external_names_are_nxdomain_at_once(cluster_dns: ClusterDns) -> None:
    for name in ("nope.default.svc.cluster.local", "example.com", "www.google.com", "x.svc.cluster.local"):
        start = time.monotonic()
        reply = query(cluster_dns, name)
        assert reply.header.rcode == RCODE.NXDOMAIN, name
        assert time.monotonic() - start < 0.2, name  # answered here, never forwarded
    assert query(cluster_dns, "svc.cluster.local").header.rcode == RCODE.NOERROR  # an empty non-terminal


def test_dns_object_host_resolves_to_gateway(client: Client, cluster_dns: ClusterDns) -> None:
    gateway_ip = client.get("Service", cluster_dns.gateway).spec.clusterIP  # type: ignore[attr-defined]
    name, host = uniq("shop"), f"{uniq('shop')}.example.com"
    client.create(dns_obj(name, host, [{"path": "/api", "service": "missing-svc", "port": 80}]))
    assert wait_for(lambda: a_records(query(cluster_dns, host)), 1.0) == [gateway_ip]
    client.delete("DNS", name)
    assert wait_for(lambda: query(cluster_dns, host).header.rcode == RCODE.NXDOMAIN, 1.0)


def test_dns_kind_rejects_a_claimed_host_and_path(client: Client) -> None:
    host = f"{uniq('h')}.example.com"
    first, second = uniq("a"), uniq("b")
    client.create(dns_obj(first, host, [{"path": "/", "service": "web", "port": 80}]))
    with pytest.raises(errors.MiniK8sError) as err:
        client.create(dns_obj(second, host, [{"path": "/x", "service": "x", "port": 80},
                                             {"path": "/", "service": "other", "port": 8080}]))
    assert err.value.code == 422 and f'DNS "default/{first}"' in err.value.message
    assert "spec.paths[1].path" in err.value.message
    with pytest.raises(errors.NotFound):
        client.get("DNS", second)
    client.create(dns_obj(second, host, [{"path": "/x", "service": "x", "port": 80}]))  # another path is fine
    grown = client.get("DNS", second).to_dict()
    grown["spec"]["paths"].append({"path": "/", "service": "y", "port": 80})
    with pytest.raises(errors.MiniK8sError):
        client.update(grown)  # the update path is checked too
    updated = client.get("DNS", first).to_dict()
    updated["spec"]["paths"][0]["port"] = 81
    client.update(updated)  # re-claiming its own path is no clash
    with pytest.raises(errors.MiniK8sError) as bad:
        client.create(dns_obj(uniq("c"), "Bad_Host", [{"path": "nope", "service": "s", "port": 80},
                                                      {"path": "nope", "service": "s", "port": 80}]))
    text = bad.value.message
    assert "spec.host" in text and "spec.paths[0].path" in text and 'Duplicate value: "nope"' in text
    table = client.request("GET", f"/apis/minik8s.io/v1/namespaces/default/dnses/{first}",
                           headers={"accept": "application/json;as=Table;v=v1;g=meta.k8s.io"})
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Host", "Paths", "Age"]
    assert table["rows"][0]["cells"][1:3] == [host, "/"]
    for n in (first, second):
        client.delete("DNS", n)


def test_status_subresource_is_writable(client: Client) -> None:
    name = uniq("st")
    client.create(dns_obj(name, f"{name}.example.com", [{"path": "/", "service": "none", "port": 80}]))
    obj = client.get("DNS", name).to_dict()
    obj["status"] = {"paths": [{"path": "/", "service": "none", "ready": False,
                                "message": 'service "none" not found'}]}
    client.update_status(obj)
    assert client.get("DNS", name).status.paths[0].message == 'service "none" not found'
    client.delete("DNS", name)


def test_resolver_query_counts_match_the_search_path(client: Client, cluster_dns: ClusterDns) -> None:
    """What a pod's resolver sends for each kind of name, counted at the server."""
    name = uniq("cnt")
    client.create(service(name))
    wait_for(lambda: a_records(query(cluster_dns, f"{name}.default.svc.cluster.local")), 1.0)
    conf = ResolverConf.for_pod("default")
    host, port = cluster_dns.server.bound[0]
    # ndots:2: a bare name hits the first search domain, `svc.ns` the second, a full name is asked as-is;
    # a missing name walks all three search domains plus the name as-is
    for asked, expected in ((name, 1), (f"{name}.default", 2), (f"{name}.default.svc.cluster.local", 1),
                            ("example.com", 4), ("www.example.com", 4), ("nohost", 4)):
        before = len(cluster_dns.server.recent_names())
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sent = 0
            for candidate in lookup_names(asked, conf):
                sent += 1
                sock.sendto(DNSRecord.question(candidate).pack(), (host, port))
                reply = DNSRecord.parse(sock.recv(4096))
                if reply.header.rcode != RCODE.NXDOMAIN:
                    break
        finally:
            sock.close()
        assert sent == expected, asked
        assert len(cluster_dns.server.recent_names()) - before == expected, asked
    client.delete("Service", name)
