"""The gateway's nginx.conf rendering: routes, stripping, 503s, conflicts, determinism, hostile input."""

from __future__ import annotations

import random
import re

from minik8s.gateway import config as gw
from minik8s.gateway.manifests import deployment, service

UP = gw.Backend("10.96.0.5", (80, 8080), 2)


def dns(name: str, host: str, paths: list[dict], ns: str = "default", created: str = "2024-01-01T00:00:00Z") -> dict:
    return {"apiVersion": "minik8s.io/v1", "kind": "DNS",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {"host": host, "paths": paths}}


def route(path: str, service: str = "web", port: int = 80, **kw: object) -> dict:
    return {"path": path, "service": service, "port": port, **kw}


def locations(text: str) -> dict[str, str]:
    """location match -> its body, from a rendered file."""
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"location (.+?) \{\n(.*?)\n        \}", text, re.S)}


def test_paths_become_exact_and_prefix_locations_and_strip_by_default() -> None:
    text = gw.render([dns("a", "shop.example.com", [route("/api"), route("/api/v2/", "v2", 8080)])],
                     {("default", "web"): UP, ("default", "v2"): UP})
    locs = locations(text)
    assert locs['= "/api"'] == "proxy_pass http://svc_default_web_80/;"
    assert locs['"/api/"'] == "proxy_pass http://svc_default_web_80/;"
    # the longer prefix has its own location: nginx's longest-prefix rule picks it for /api/v2/...
    assert locs['"/api/v2/"'] == "proxy_pass http://svc_default_v2_8080/;"
    assert locs["/"].startswith("return 404")
    assert "server 10.96.0.5:80;" in text and "server 10.96.0.5:8080;" in text
    assert "server_name shop.example.com;" in text


def test_keep_prefix_passes_the_uri_unchanged() -> None:
    locs = locations(gw.render([dns("a", "h.example", [route("/api", keepPrefix=True)])], {("default", "web"): UP}))
    assert locs['"/api/"'] == "proxy_pass http://svc_default_web_80;"


def test_root_path_is_one_location() -> None:
    locs = locations(gw.render([dns("a", "h.example", [route("/")])], {("default", "web"): UP}))
    assert locs == {'"/"': "proxy_pass http://svc_default_web_80/;"}


def test_missing_service_port_or_endpoints_answer_503_and_report() -> None:
    backends = {("default", "web"): UP, ("default", "idle"): gw.Backend("10.96.0.9", (80,), 0),
                ("default", "headless"): gw.Backend(None, (80,), 1)}
    obj = dns("a", "h.example", [route("/gone", "nope"), route("/port", "web", 81), route("/idle", "idle"),
                                 route("/hl", "headless"), route("/ok", "web")])
    p = gw.plan([obj], backends)
    text = gw.render_plan(p)
    locs = locations(text)
    assert locs['"/gone/"'] == r'return 503 "service default/nope does not exist\n";'
    assert locs['= "/port"'].startswith("return 503")
    assert locs['"/idle/"'].startswith("return 503")
    assert locs['"/hl/"'].startswith("return 503")
    st = {s.path: s for s in p.statuses[("default", "a")]}
    assert st["/ok"].ready and st["/ok"].message is None
    assert not st["/gone"].ready and "does not exist" in (st["/gone"].message or "")
    assert "no TCP port 81" in (st["/port"].message or "")
    assert "no ready endpoints" in (st["/idle"].message or "")
    assert set(p.upstreams) == {"svc_default_web_80"}  # nothing dangling for the 503 routes
    assert st["/ok"].to_dict() == {"path": "/ok", "service": "web", "ready": True}


def test_services_resolve_in_the_dns_objects_namespace() -> None:
    p = gw.plan([dns("a", "h.example", [route("/x")], ns="shop")], {("default", "web"): UP})
    assert not p.statuses[("shop", "a")][0].ready


def test_same_host_across_objects_merges_and_the_oldest_claim_wins() -> None:
    old = dns("old", "h.example", [route("/a")], created="2024-01-01T00:00:00Z")
    new = dns("new", "h.example", [route("/a/"), route("/b")], created="2024-02-01T00:00:00Z")
    p = gw.plan([new, old], {("default", "web"): UP})
    assert [r.path for r in p.servers["h.example"]] == ["/a", "/b"]
    lost = p.statuses[("default", "new")][0]
    assert not lost.ready and "already routed by DNS default/old" in (lost.message or "")
    assert gw.render_plan(p).count("server_name h.example;") == 1


def test_output_is_deterministic_whatever_the_input_order() -> None:
    objs = [dns(f"d{i}", f"h{i % 3}.example", [route(f"/p{i}"), route(f"/q{i}", "v2", 8080)], created=f"2024-01-0{i}")
            for i in range(1, 8)]
    backends = {("default", "web"): UP, ("default", "v2"): UP}
    first = gw.render(objs, backends)
    for seed in range(5):
        shuffled = objs[:]
        random.Random(seed).shuffle(shuffled)
        assert gw.render(shuffled, dict(reversed(list(backends.items())))) == first
    assert gw.version_of(first) == gw.version_of(gw.render(objs, backends))
    assert gw.version_of(first) != gw.version_of(gw.render(objs[:-1], backends))


def test_odd_host_names_and_paths_are_left_out_not_injected() -> None:
    hostile = ["evil.example; include /etc/passwd", "~^(.*)$", "UPPER.example", "a..b", "", "x" * 300, "sp ace",
               "q\"uote", "*.wild.example", "-lead.example"]
    objs = [dns(f"d{i}", h, [route("/")]) for i, h in enumerate(hostile)]
    objs.append(dns("p", "ok.example", [route('/a"; }'), route("/b{"), route("/c d"), route("/e\\f"), route("//x"),
                                        route("/fine-._~!$&'()*+,;=:@%path")]))
    p = gw.plan(objs, {("default", "web"): UP})
    text = gw.render_plan(p)
    assert set(p.servers) == {"ok.example", "upper.example"}  # host names compare case-insensitively
    assert [r.path for r in p.servers["ok.example"]] == ["/fine-._~!$&'()*+,;=:@%path"]
    for i, _ in enumerate(hostile):
        st = p.statuses[("default", f"d{i}")][0]
        assert st.ready == (i == 2)
        if i != 2:
            assert "not a valid DNS name" in (st.message or "")
    bad = [s for s in p.statuses[("default", "p")] if not s.ready]
    assert len(bad) == 5 and all("does not route" in (s.message or "") for s in bad)
    assert "passwd" not in text and "~^" not in text
    # every quoted string closes on its own line: nothing can open a block or end a directive early
    for line in text.splitlines():
        assert line.count('"') % 2 == 0 or '\\"' in line


def test_render_options_and_default_server() -> None:
    text = gw.render([], {}, gw.RenderOptions(listen="127.0.0.1:8080", pid="/tmp/x.pid", user=None, temp_dir="/t"))
    assert "listen 127.0.0.1:8080 default_server;" in text and "pid /tmp/x.pid;" in text
    assert "user " not in text and "proxy_temp_path /t/proxy;" in text
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in text and "X-Forwarded-Proto $scheme" in text
    assert "user www-data;" in gw.render([], {})


def test_backend_of_wire_objects() -> None:
    svc = {"spec": {"clusterIP": "10.96.1.2", "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}}
    ep = {"subsets": [{"addresses": [{"ip": "10.244.1.2"}, {"ip": "10.244.2.2"}], "notReadyAddresses": [{"ip": "x"}]}]}
    assert gw.backend_of(svc, ep) == gw.Backend("10.96.1.2", (80,), 2)
    assert gw.backend_of({"spec": {"clusterIP": "None", "ports": []}}, None) == gw.Backend(None, (), 0)


def test_gateway_manifests_validate() -> None:
    from minik8s.api import apps, services

    dep = apps.Deployment.model_validate(deployment("http://10.200.0.1:10280/config"))
    assert dep.metadata.namespace == "kube-system" and dep.spec.replicas == 2
    assert [c.image for c in dep.spec.template.spec.containers] == ["nginx", "python:3.11"]
    svc = services.Service.model_validate(service())
    assert svc.spec.ports and svc.spec.ports[0].port == 80
    assert not apps.validate_deployment(dep) and not services.validate_service(svc)
