"""Ingress through the in-process API server and the gateway controller: admission (default class,
refusals that name the field), status.loadBalancer, conflicts with DNS objects and other Ingresses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from minik8s import Client
from minik8s.errors import AlreadyExists, MiniK8sError, NotFound
from minik8s.gateway import manifests
from minik8s.gateway.controller import GatewayConfig, GatewayController
from minik8s.gateway.reporting import CONFLICT_REASON
from tests.conftest import free_port, uniq, wait_for

NS = "ing-test"
WAIT_S = 15.0


def ingress(name: str, host: str, paths: list[tuple[str, str]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": name, "namespace": NS},
            "spec": {"rules": [{"host": host, "http": {"paths": [
                {"path": p, "pathType": t, "backend": {"service": {"name": "web", "port": {"number": 80}}}}
                for p, t in paths]}}], **spec}}


@pytest.fixture
def gateway(client: Client) -> Iterator[tuple[GatewayController, str]]:
    for obj in ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}, manifests.service()):
        try:
            client.create(obj)
        except AlreadyExists:
            pass
    manifests.ensure_ingress_class(client)
    client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    client.create({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": NS},
                   "subsets": [{"addresses": [{"ip": "10.244.9.9"}], "ports": [{"port": 80}]}]})
    ctl = GatewayController(client, GatewayConfig(port=free_port(), resync_s=2.0))
    ctl.start(serve=False)
    ip = client.get("Service", manifests.NAME, manifests.NAMESPACE).spec.clusterIP
    yield ctl, ip
    ctl.stop()
    for kind in ("Ingress", "DNS", "Endpoints", "Service"):
        for obj in client.list(kind, NS).items:
            client.delete(kind, obj.metadata.name, NS)
    for kind, name, ns in (("IngressClass", "other", None), ("IngressClass", "minik8s", None),
                           ("Service", manifests.NAME, manifests.NAMESPACE)):
        try:
            client.delete(kind, name, ns)
        except NotFound:
            pass


def address(client: Client, name: str) -> list[str]:
    lb = (client.get("Ingress", name, NS).to_dict().get("status") or {}).get("loadBalancer") or {}
    return [i.get("ip") for i in lb.get("ingress") or []]


def warnings(client: Client, name: str) -> list[str]:
    return [e.message for e in client.list("Event", NS).items
            if e.involvedObject.name == name and e.reason == CONFLICT_REASON and e.type == "Warning"]


def test_refusals_name_the_field(client: Client, gateway: tuple[GatewayController, str]) -> None:
    bad = [
        (ingress("tls", "a.example.com", [("/", "Prefix")], tls=[{"hosts": ["a.example.com"], "secretName": "c"}]),
         "spec.tls"),
        (ingress("notype", "a.example.com", [("/", "")]), "spec.rules[0].http.paths[0].pathType"),
        (ingress("rel", "a.example.com", [("x", "Prefix")]), "spec.rules[0].http.paths[0].path"),
        (ingress("host", "A_B", [("/", "Prefix")]), "spec.rules[0].host"),
    ]
    bad[1][0]["spec"]["rules"][0]["http"]["paths"][0].pop("pathType")
    for obj, field in bad:
        with pytest.raises(MiniK8sError) as err:
            client.create(obj)
        assert err.value.code == 422 and field in err.value.message
    assert client.list("Ingress", NS).items == []  # nothing half-made

    cls = client.create({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "other"},
                         "spec": {"controller": "example.com/other"}}).to_dict()
    cls["spec"]["controller"] = "example.com/changed"
    with pytest.raises(MiniK8sError) as err:
        client.update(cls)
    assert err.value.code == 422 and "spec.controller" in err.value.message and "immutable" in err.value.message


def test_status_address_default_class_and_foreign_class(client: Client, gateway: tuple[GatewayController, str]
                                                        ) -> None:
    ctl, ip = gateway
    host = f"{uniq('shop')}.example.com"
    created = client.create(ingress("shop", host, [("/api", "Prefix"), ("/exact", "Exact")]))
    assert created.spec.ingressClassName == "minik8s"  # the default class, set at admission
    assert wait_for(lambda: address(client, "shop") == [ip], WAIT_S)
    assert wait_for(lambda: f"server_name {host};" in ctl.store.text, WAIT_S)

    client.create({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "other"},
                   "spec": {"controller": "example.com/other"}})
    other_host = f"{uniq('other')}.example.com"
    client.create(ingress("foreign", other_host, [("/", "Prefix")], ingressClassName="other"))
    client.create(ingress("marker", f"{uniq('m')}.example.com", [("/", "Prefix")]))  # processed after "foreign"
    assert wait_for(lambda: address(client, "marker") == [ip], WAIT_S)
    assert address(client, "foreign") == [] and other_host not in ctl.store.text


def test_conflicts_oldest_wins_loser_gets_event_and_no_address(client: Client,
                                                               gateway: tuple[GatewayController, str]) -> None:
    ctl, ip = gateway
    host = f"{uniq('claimed')}.example.com"
    client.create({"apiVersion": "minik8s.io/v1", "kind": "DNS", "metadata": {"name": "owner", "namespace": NS},
                   "spec": {"host": host, "paths": [{"path": "/x", "service": "web", "port": 80}]}})
    assert wait_for(lambda: "proxy_pass http://svc_ing_test_web_80/;" in ctl.store.text, WAIT_S)
    config = ctl.store.text
    client.create(ingress("late", host, [("/x", "Prefix")]))
    assert wait_for(lambda: warnings(client, "late"), WAIT_S) == [
        f'host "{host}" path "/x" (Prefix) is already routed by DNS {NS}/owner']
    assert address(client, "late") == []  # every route it asked for is held by someone else
    assert ctl.store.text == config  # the route did not move
    dns_paths = client.get("DNS", "owner", NS).to_dict()["status"]["paths"]
    assert [p["path"] for p in dns_paths] == ["/x"] and "already routed" not in str(dns_paths)

    client.delete("DNS", "owner", NS)  # the winner goes: the Ingress takes the route and gets its address
    assert wait_for(lambda: address(client, "late") == [ip], WAIT_S)
    # the Ingress's route keeps the URI, where the DNS object's stripped its prefix
    assert wait_for(lambda: "proxy_pass http://svc_ing_test_web_80;" in ctl.store.text, WAIT_S)
    assert "proxy_pass http://svc_ing_test_web_80/;" not in ctl.store.text
    client.create(ingress("later", host, [("/x", "Prefix"), ("/y", "Prefix")]))
    assert wait_for(lambda: warnings(client, "later"), WAIT_S) == [
        f'host "{host}" path "/x" (Prefix) is already routed by Ingress {NS}/late']
    assert wait_for(lambda: address(client, "later") == [ip], WAIT_S)  # /y is served
