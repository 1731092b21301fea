"""Ingress routes through a real Debian nginx: URIs kept, Exact vs Prefix, wildcard hosts, default backends,
and a DNS object's older route that a newer Ingress cannot take (fixtures from test_gateway_nginx)."""

from __future__ import annotations

from http.server import ThreadingHTTPServer
from typing import Any

from minik8s.gateway import config as gw
from minik8s.gateway.localrun import LocalNginx
from tests.integration.test_gateway_nginx import backend, get, nginx, port_of, pytestmark, upstreams  # noqa: F401


def ingress_path(path: str, path_type: str, service: str, port: int) -> dict[str, Any]:
    return {"path": path, "pathType": path_type, "backend": {"service": {"name": service, "port": {"number": port}}}}


def test_ingress_routes_through_nginx(upstreams: dict[str, ThreadingHTTPServer],  # noqa: F811
                                      nginx: LocalNginx) -> None:  # noqa: F811
    web, api = port_of(upstreams["web"]), port_of(upstreams["api"])
    backends = {("default", "web"): backend(upstreams["web"]), ("default", "api"): backend(upstreams["api"])}
    meta = {"namespace": "default", "creationTimestamp": "2024-02-01T00:00:00Z"}
    shop = {"metadata": {"name": "shop", **meta}, "spec": {"rules": [
        {"host": "shop.example.com", "http": {"paths": [
            ingress_path("/api", "Prefix", "api", api), ingress_path("/exact", "Exact", "web", web),
            ingress_path("/docs", "ImplementationSpecific", "web", web),
            ingress_path("/dns", "Prefix", "web", web)]}},
        {"host": "*.apps.example.com", "http": {"paths": [ingress_path("/", "Prefix", "web", web)]}}]}}
    catch_all = {"metadata": {"name": "fallback", **meta},
                 "spec": {"defaultBackend": {"service": {"name": "api", "port": {"number": api}}}}}
    older_dns = {"metadata": {"name": "legacy", "namespace": "default", "creationTimestamp": "2024-01-01T00:00:00Z"},
                 "spec": {"host": "shop.example.com", "paths": [{"path": "/dns", "service": "api", "port": api}]}}
    plan = gw.plan([older_dns], backends, [shop, catch_all])
    nginx.start(gw.render_plan(plan, nginx.options))

    status, body = get(nginx, "shop.example.com", "/api/v1/items?x=1")
    assert status == 200 and body["name"] == "api" and body["path"] == "/api/v1/items?x=1"  # the URI is kept
    assert get(nginx, "shop.example.com", "/api")[1]["path"] == "/api"
    assert get(nginx, "shop.example.com", "/apix")[0] == 404  # element-wise prefix
    assert get(nginx, "shop.example.com", "/exact")[1]["name"] == "web"
    assert get(nginx, "shop.example.com", "/exact/more")[0] == 404  # Exact is exact
    assert get(nginx, "shop.example.com", "/docs/x")[1]["path"] == "/docs/x"  # ImplementationSpecific = Prefix
    # the DNS object is older: its route (stripping, to api) stands, the Ingress's claim is reported
    status, body = get(nginx, "shop.example.com", "/dns/x")
    assert status == 200 and body["name"] == "api" and body["path"] == "/x"
    assert plan.ingresses[("default", "shop")].lost == [
        'host "shop.example.com" path "/dns" (Prefix) is already routed by DNS default/legacy']
    # wildcard: one label below, as Kubernetes matches; deeper names fall to the catch-all default backend
    assert get(nginx, "web.apps.example.com", "/anything")[1]["name"] == "web"
    assert get(nginx, "a.b.apps.example.com", "/anything")[1]["name"] == "api"
    status, body = get(nginx, "unknown.example.org", "/z")
    assert status == 200 and body["name"] == "api" and body["path"] == "/z"
