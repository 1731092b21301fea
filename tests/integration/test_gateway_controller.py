"""The gateway controller against the in-process API server: long-poll config and DNS status."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from minik8s import Client
from minik8s.errors import AlreadyExists, NotFound
from minik8s.gateway import manifests
from minik8s.gateway.controller import VERSION_HEADER, GatewayConfig, GatewayController
from tests.conftest import free_port

NS = "gw-test"
WAIT_S = 15.0


def eventually(check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.fixture
def controller(client: Client) -> Iterator[tuple[GatewayController, str]]:
    try:
        client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    except AlreadyExists:
        pass
    ctl = GatewayController(client, GatewayConfig(port=free_port(), resync_s=2.0))
    ctl.start()
    yield ctl, f"http://127.0.0.1:{ctl.config.port}/config"
    ctl.stop()
    for kind, name in (("DNS", "shop"), ("Service", "web"), ("Endpoints", "web")):
        try:
            client.delete(kind, name, NS)
        except NotFound:
            pass


def dns_status(client: Client) -> list[dict[str, Any]]:
    obj = client.get("DNS", "shop", NS).to_dict()
    return list((obj.get("status") or {}).get("paths") or [])


def test_long_poll_pushes_changes_and_status_follows(client: Client, controller: tuple[GatewayController, str]) -> None:
    ctl, url = controller
    first = httpx.get(url, params={"timeout": 5}, timeout=10)  # no version yet: answers at once
    assert first.status_code == 200 and "server_name _;" in first.text
    v0 = first.headers[VERSION_HEADER]
    idle = httpx.get(url, params={"version": v0, "timeout": 0.3}, timeout=10)
    assert idle.status_code == 304 and idle.headers[VERSION_HEADER] == v0
    assert httpx.get(url, params={"timeout": "soon"}, timeout=10).status_code == 400

    held: dict[str, httpx.Response] = {}
    poller = threading.Thread(target=lambda: held.update(r=httpx.get(url, params={"version": v0, "timeout": 20},
                                                                         timeout=30)))
    poller.start()
    time.sleep(0.3)  # the poll is now parked on the server
    client.create({"apiVersion": "minik8s.io/v1", "kind": "DNS", "metadata": {"name": "shop", "namespace": NS},
                   "spec": {"host": "shop.example.com", "paths": [{"path": "/api", "service": "web", "port": 80}]}})
    started = time.monotonic()
    poller.join(25)
    assert time.monotonic() - started < 5, "the long poll should return on the change, not on its timeout"
    pushed = held["r"]
    assert pushed.status_code == 200 and pushed.headers[VERSION_HEADER] != v0
    assert "server_name shop.example.com;" in pushed.text and f"service {NS}/web does not exist" in pushed.text
    st = eventually(lambda: dns_status(client))
    assert st == [{"path": "/api", "service": "web", "ready": False, "message": f"service {NS}/web does not exist"}]

    svc = client.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": NS},
                         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    ip = svc.spec.clusterIP
    assert eventually(lambda: "no ready endpoints" in (dns_status(client)[0].get("message") or ""))
    client.create({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": NS},
                   "subsets": [{"addresses": [{"ip": "10.244.9.9"}], "ports": [{"port": 8080}]}]})
    assert eventually(lambda: dns_status(client) == [{"path": "/api", "service": "web", "ready": True}])
    text = eventually(lambda: f"server {ip}:80;" in ctl.store.text and ctl.store.text)
    latest = httpx.get(url, params={"version": pushed.headers[VERSION_HEADER], "timeout": 5}, timeout=10)
    assert latest.status_code == 200 and latest.text == text
    assert "proxy_pass http://svc_gw_test_web_80/;" in latest.text

    client.delete("Service", "web", NS)
    assert eventually(lambda: f"service {NS}/web does not exist" in ctl.store.text)
    assert eventually(lambda: not dns_status(client)[0]["ready"])


def test_ensure_gateway_creates_once_and_leaves_existing_alone(client: Client) -> None:
    url = "http://127.0.0.1:10280/config"
    try:
        client.delete("Deployment", manifests.NAME, manifests.NAMESPACE)
        client.delete("Service", manifests.NAME, manifests.NAMESPACE)
    except NotFound:
        pass
    try:
        assert sorted(manifests.ensure_gateway(client, url)) == ["Deployment kube-system/gateway",
                                                                 "Service kube-system/gateway"]
        client.patch("Deployment", manifests.NAME, {"spec": {"replicas": 1}}, manifests.NAMESPACE)
        assert manifests.ensure_gateway(client, url) == []
        assert client.get("Deployment", manifests.NAME, manifests.NAMESPACE).spec.replicas == 1
        assert client.get("Service", manifests.NAME, manifests.NAMESPACE).spec.clusterIP
    finally:
        for kind in ("Deployment", "Service"):
            try:
                client.delete(kind, manifests.NAME, manifests.NAMESPACE)
            except NotFound:
                pass
