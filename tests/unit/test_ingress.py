"""Ingress and IngressClass: validation as Kubernetes words it, class resolution, and the shared routing table."""

from __future__ import annotations

import random
import re
from typing import Any

import pytest

from minik8s.api import kinds
from minik8s.api import networking as net
from minik8s.gateway import config as gw
from minik8s.gateway import routes as rt
from minik8s.gateway.reporting import ConflictLog, dns_losses, ingress_status

UP = gw.Backend("10.96.0.5", (80, 8080), 2, (("http", 80), ("alt", 8080)))
BACKENDS = {("default", "web"): UP, ("default", "api"): UP}


def backend(service: str = "web", port: int | str = 80) -> dict[str, Any]:
    return {"service": {"name": service, "port": {"name": port} if isinstance(port, str) else {"number": port}}}


def path(p: str, path_type: str = "Prefix", service: str = "web", port: int | str = 80) -> dict[str, Any]:
    return {"path": p, "pathType": path_type, "backend": backend(service, port)}


def ingress(name: str, rules: list[dict[str, Any]] | None = None, created: str = "2024-01-01T00:00:00Z",
            ns: str = "default", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
            "spec": {**({"rules": rules} if rules is not None else {}), **spec}}


def rule(host: str | None, *paths: dict[str, Any]) -> dict[str, Any]:
    return {**({"host": host} if host else {}), "http": {"paths": list(paths)}}


def dns(name: str, host: str, paths: list[str], created: str = "2024-01-01T00:00:00Z") -> dict[str, Any]:
    return {"apiVersion": "minik8s.io/v1", "kind": "DNS",
            "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
            "spec": {"host": host, "paths": [{"path": p, "service": "api", "port": 80} for p in paths]}}


def causes(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return net.validate_ingress(net.Ingress.model_validate(obj))


def locations(text: str, server: str) -> dict[str, str]:
    block = re.search(r"server_name " + re.escape(server) + r";\n(.*?)\n    }\n", text, re.S)
    assert block, f"no server {server} in\n{text}"
    return {m.group(1): m.group(2).strip()
            for m in re.finditer(r"location (.+?) \{\n(.*?)\n        \}", block.group(1), re.S)}


# --- validation --------------------------------------------------------------------------------

def test_a_full_ingress_is_valid_and_registered_with_its_short_name() -> None:
    obj = ingress("shop", [rule("shop.example.com", path("/", "Prefix"), path("/api", "Exact", "api", "http")),
                           rule("*.example.com", path("/x", "ImplementationSpecific"))],
                  ingressClassName="minik8s", defaultBackend=backend())
    assert causes(obj) == []
    info = kinds.lookup("ing")
    assert (info.kind, info.api_version, info.plural, info.namespaced) == ("Ingress", "networking.k8s.io/v1",
                                                                            "ingresses", True)
    cls = kinds.lookup("ingressclasses")
    assert (cls.kind, cls.namespaced) == ("IngressClass", False)
    assert net.validate_ingress_class(net.IngressClass.model_validate(net.default_class_object())) == []


@pytest.mark.parametrize("mutate, field, words", [
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0].pop("pathType"),
     "spec.rules[0].http.paths[0].pathType", "Required value: pathType must be specified"),
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0].update(pathType="Regex"),
     "spec.rules[0].http.paths[0].pathType", 'Unsupported value: "Regex": supported values: "Exact", '
                                             '"ImplementationSpecific", "Prefix"'),
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0].update(path="api"),
     "spec.rules[0].http.paths[0].path", 'Invalid value: "api": must be an absolute path'),
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0].update(path="/a//b"),
     "spec.rules[0].http.paths[0].path", "must not contain '//'"),
    (lambda o: o["spec"]["rules"][0].update(host="Shop_Example"), "spec.rules[0].host",
     "a lowercase RFC 1123 subdomain"),
    (lambda o: o["spec"]["rules"][0].update(host="*.*.example.com"), "spec.rules[0].host",
     "a wildcard DNS-1123 subdomain must start with '*.'"),
    (lambda o: o["spec"]["rules"][0].update(host="10.0.0.1"), "spec.rules[0].host",
     "must be a DNS name, not an IP address"),
    (lambda o: o["spec"].update(tls=[{"hosts": ["shop.example.com"], "secretName": "cert"}]), "spec.tls",
     "does not terminate TLS"),
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0].update(
        backend={"resource": {"apiGroup": "k8s.example.com", "kind": "Bucket", "name": "b"}}),
     "spec.rules[0].http.paths[0].backend.resource", "resource backends are not supported"),
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"].update(name="http"),
     "spec.rules[0].http.paths[0].backend.service.port", "cannot set both port name & port number"),
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(port={}),
     "spec.rules[0].http.paths[0].backend.service.port", "port name or number is required"),
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(port={"number": 70000}),
     "spec.rules[0].http.paths[0].backend.service.port.number", "must be between 1 and 65535"),
    (lambda o: o["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"].update(name="9web"),
     "spec.rules[0].http.paths[0].backend.service.name", "DNS-1035 label"),
    (lambda o: o["spec"]["rules"][0]["http"].update(paths=[]), "spec.rules[0].http.paths", "Required value"),
    (lambda o: o["spec"].pop("rules"), "spec", "either `defaultBackend` or `rules` must be specified"),
    (lambda o: o["metadata"].update(annotations={net.LEGACY_CLASS_ANNOTATION: "nginx"}),
     f"metadata.annotations.{net.LEGACY_CLASS_ANNOTATION}", "can not be set when the class field is also set"),
])
def test_bad_ingresses_name_the_field(mutate: Any, field: str, words: str) -> None:
    obj = ingress("bad", [rule("shop.example.com", path("/api"))], ingressClassName="minik8s")
    assert causes(obj) == []
    mutate(obj)
    got = causes(obj)
    assert any(f == field and words in msg for f, msg in got), got


def test_ingress_class_validation() -> None:
    def check(spec: dict[str, Any]) -> list[tuple[str, str]]:
        return net.validate_ingress_class(net.IngressClass.model_validate(
            {"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "metadata": {"name": "c"}, "spec": spec}))

    assert check({"controller": "example.com/other", "parameters": {"kind": "Params", "name": "p"}}) == []
    assert check({})[0] == ("spec.controller", "Required value")
    assert "domain-prefixed path" in check({"controller": "nginx"})[0][1]
    assert check({"controller": net.CONTROLLER, "parameters": {"kind": "P", "name": "p"}})[0][0] == "spec.parameters"
    assert check({"controller": "a.io/b", "parameters": {"kind": "P", "name": "p", "scope": "Namespace"}})[0][0] == \
        "spec.parameters.namespace"


def test_printer_columns() -> None:
    obj = ingress("shop", [rule("a.example.com", path("/")), rule(None, path("/x"))], ingressClassName="minik8s")
    obj["status"] = {"loadBalancer": {"ingress": [{"ip": "10.96.0.20"}]}}
    row = {c.name: c.get(obj) for c in net.INGRESS_COLUMNS}
    assert {k: v for k, v in row.items() if k != "AGE"} == {"NAME": "shop", "CLASS": "minik8s",
                                                             "HOSTS": "a.example.com,*", "ADDRESS": "10.96.0.20",
                                                             "PORTS": "80"}
    cls = {c.name: c.get(net.default_class_object()) for c in net.INGRESS_CLASS_COLUMNS}
    assert (cls["NAME"], cls["CONTROLLER"], cls["PARAMETERS"]) == ("minik8s", "minik8s.io/gateway", "<none>")


# --- class resolution --------------------------------------------------------------------------

def test_class_resolution_default_named_legacy_and_foreign() -> None:
    ours = net.default_class_object()
    other = {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}}
    plain = ingress("a", [])
    assert net.served_by(plain, [ours, other])
    assert not net.served_by(plain, [other])  # no default class: nobody serves a class-less Ingress
    assert not net.served_by(ingress("b", [], ingressClassName="nginx"), [ours, other])
    assert not net.served_by(ingress("c", [], ingressClassName="missing"), [ours, other])
    legacy = ingress("d", [])
    legacy["metadata"]["annotations"] = {net.LEGACY_CLASS_ANNOTATION: "minik8s"}
    assert net.served_by(legacy, [ours])
    fresh = ingress("e", [])
    net.default_ingress_class(fresh, lambda: [other, ours])
    assert fresh["spec"]["ingressClassName"] == "minik8s"
    named = ingress("f", [], ingressClassName="nginx")
    net.default_ingress_class(named, lambda: [ours])
    assert named["spec"]["ingressClassName"] == "nginx"


# --- the routing table -------------------------------------------------------------------------

def test_prefix_exact_and_implementation_specific_paths_keep_the_uri() -> None:
    obj = ingress("shop", [rule("shop.example.com", path("/api", "Prefix", "api"), path("/api", "Exact", "web"),
                                path("/docs", "ImplementationSpecific"), path("/only", "Exact"))])
    text = gw.render([], BACKENDS, ingresses=[obj])
    locs = locations(text, "shop.example.com")
    assert locs['= "/api"'] == "proxy_pass http://svc_default_web_80;"  # Exact wins the exact URL
    assert locs['"/api/"'] == "proxy_pass http://svc_default_api_80;"
    assert locs['= "/docs"'] == locs['"/docs/"'] == "proxy_pass http://svc_default_web_80;"
    assert '"/only/"' not in locs and locs['= "/only"'] == "proxy_pass http://svc_default_web_80;"
    assert locs["/"].startswith("return 404")


def test_named_ports_wildcards_and_hostless_rules() -> None:
    obj = ingress("w", [rule("*.apps.example.com", path("/", port="alt")), rule(None, path("/any", port="nope"))])
    p = gw.plan([], BACKENDS, [obj])
    text = gw.render_plan(p)
    assert r"server_name ~^[^.]+\.apps\.example\.com$;" in text
    assert "server 10.96.0.5:8080;" in text
    default = locations(text, "_")
    assert default['"/any/"'].startswith("return 503") and 'no TCP port named \\"nope\\"' in default['"/any/"']
    report = p.ingresses[("default", "w")]
    assert report.served == 2 and report.lost == [] and len(report.unready) == 1


def test_default_backend_catches_unmatched_paths_and_hosts() -> None:
    with_rules = ingress("r", [rule("a.example.com", path("/x", service="api"))], defaultBackend=backend())
    catch_all = ingress("c", defaultBackend=backend("api"))
    text = gw.render([], BACKENDS, ingresses=[with_rules, catch_all])
    assert locations(text, "a.example.com")['"/"'] == "proxy_pass http://svc_default_web_80;"
    assert locations(text, "_")['"/"'] == "proxy_pass http://svc_default_api_80;"
    # an explicit "/" of any age wins over a default backend, silently
    explicit = ingress("e", [rule("a.example.com", path("/", service="api"))], created="2025-01-01T00:00:00Z")
    p = gw.plan([], BACKENDS, [with_rules, explicit])
    assert locations(gw.render_plan(p), "a.example.com")['"/"'] == "proxy_pass http://svc_default_api_80;"
    assert p.ingresses[("default", "r")].lost == []


def test_ingress_and_dns_conflicts_oldest_wins_and_loser_is_reported() -> None:
    older_dns = dns("shop", "shop.example.com", ["/api"], created="2024-01-01T00:00:00Z")
    newer_ing = ingress("hijack", [rule("shop.example.com", path("/api/", service="web"), path("/new"))],
                        created="2024-06-01T00:00:00Z")
    p = gw.plan([older_dns], BACKENDS, [newer_ing])
    locs = locations(gw.render_plan(p), "shop.example.com")
    assert locs['"/api/"'] == "proxy_pass http://svc_default_api_80/;"  # the DNS route, stripping as DNS does
    assert locs['"/new/"'] == "proxy_pass http://svc_default_web_80;"
    report = p.ingresses[("default", "hijack")]
    assert report.served == 1
    assert report.lost == ['host "shop.example.com" path "/api/" (Prefix) is already routed by DNS default/shop']
    assert [s.ready for s in p.statuses[("default", "shop")]] == [True]

    # the other way round: an older Ingress keeps the route, the DNS path reports who holds it
    older_ing = ingress("first", [rule("shop.example.com", path("/api", service="web"))],
                        created="2023-01-01T00:00:00Z")
    p = gw.plan([older_dns], BACKENDS, [older_ing])
    status = p.statuses[("default", "shop")][0]
    assert not status.ready and "already routed by Ingress default/first" in (status.message or "")
    assert dns_losses(p, "default", "shop") == [status.message]
    assert locations(gw.render_plan(p), "shop.example.com")['"/api/"'] == "proxy_pass http://svc_default_web_80;"


def test_two_ingresses_on_one_path_and_an_ingress_that_loses_everything() -> None:
    a = ingress("a", [rule("h.example.com", path("/p", service="web"))], created="2024-01-01T00:00:00Z")
    b = ingress("b", [rule("h.example.com", path("/p", service="api"))], created="2024-01-02T00:00:00Z")
    p = gw.plan([], BACKENDS, [b, a])
    assert p.ingresses[("default", "a")].served == 1
    assert p.ingresses[("default", "b")].served == 0 and "Ingress default/a" in p.ingresses[("default", "b")].lost[0]
    assert ingress_status(p.ingresses[("default", "b")], "10.96.0.20") == {}
    assert ingress_status(p.ingresses[("default", "a")], "10.96.0.20") == {
        "ingress": [{"ip": "10.96.0.20", "ports": [{"port": 80, "protocol": "TCP"}]}]}
    assert ingress_status(p.ingresses[("default", "a")], None) == {}
    # same creation second: the tie is broken by namespace/name, whatever the input order
    t1 = ingress("t1", [rule("t.example.com", path("/"))], created="2024-01-01T00:00:00Z", ns="zz")
    t2 = ingress("t2", [rule("t.example.com", path("/"))], created="2024-01-01T00:00:00Z", ns="aa")
    for order in ([t1, t2], [t2, t1]):
        assert gw.plan([], BACKENDS, order).ingresses[("zz", "t1")].served == 0


def test_rendering_is_deterministic_with_both_kinds() -> None:
    objs = [ingress(f"i{i}", [rule(f"h{i % 3}.example.com", path(f"/p{i % 4}"), path(f"/e{i}", "Exact"))],
                    created=f"2024-01-0{i}T00:00:00Z") for i in range(1, 8)]
    dnses = [dns(f"d{i}", f"h{i % 3}.example.com", [f"/p{i % 5}"], created=f"2024-01-0{i}T00:00:01Z")
             for i in range(1, 6)]
    first = gw.render(dnses, BACKENDS, ingresses=objs)
    for seed in range(5):
        rng = random.Random(seed)
        shuffled_i, shuffled_d = objs[:], dnses[:]
        rng.shuffle(shuffled_i)
        rng.shuffle(shuffled_d)
        assert gw.render(shuffled_d, BACKENDS, ingresses=shuffled_i) == first


def test_hostile_ingress_paths_are_left_out() -> None:
    obj = ingress("x", [rule("ok.example.com", path('/a"; }', "ImplementationSpecific"), path("/b{"),
                             path("/fine"))])
    p = gw.plan([], BACKENDS, [obj])
    assert [r.path for r in p.servers["ok.example.com"]] == ["/fine"]
    assert len(p.ingresses[("default", "x")].lost) == 2
    assert all(loss.winner is None for loss in p.lost)


def test_claims_of_both_kinds() -> None:
    claims = rt.ingress_claims(ingress("c", [rule("A.Example.com.", path("/x", "Exact", port="http"))],
                                       defaultBackend=backend("api")))
    assert [(c.host, c.path, c.exact, c.port, c.default) for c in claims] == [
        ("a.example.com", "/x", True, "http", False), ("a.example.com", "/", False, 80, True)]
    assert [c.strip for c in rt.dns_claims(dns("d", "h.example", ["/a"]))] == [True]


def test_conflict_log_says_each_message_once_while_it_lasts() -> None:
    log = ConflictLog()
    assert log.new_messages("Ingress default/b", ["m1"]) == ["m1"]
    assert log.new_messages("Ingress default/b", ["m1"]) == []
    assert log.new_messages("Ingress default/b", ["m1", "m2"]) == ["m2"]
    assert log.new_messages("Ingress default/b", []) == []
    assert log.new_messages("Ingress default/b", ["m1"]) == ["m1"]  # resolved, then back: said again


def test_ingress_hosts_resolve_to_the_gateway_and_wildcards_match_one_label() -> None:
    from dnslib import QTYPE, RCODE

    from minik8s.api.services import Service
    from minik8s.dns.records import build_snapshot

    gateway = Service.model_validate({"metadata": {"name": "gateway", "namespace": "kube-system"},
                                      "spec": {"clusterIP": "10.96.0.20", "ports": [{"port": 80}]}})
    snap = build_snapshot([gateway], [], ingress_hosts=["Shop.Example.com", "*.apps.example.com"])

    def a(name: str, qtype: int = QTYPE.A) -> tuple[int, list[str]]:
        reply = snap.answer(name, qtype)
        return reply.header.rcode, [str(r.rdata) for r in reply.rr]

    assert a("shop.example.com") == (RCODE.NOERROR, ["10.96.0.20"])
    assert a("web.apps.example.com") == (RCODE.NOERROR, ["10.96.0.20"])
    assert a("web.apps.example.com", QTYPE.AAAA) == (RCODE.NOERROR, [])  # the name exists: NODATA
    assert a("a.b.apps.example.com")[0] == RCODE.NXDOMAIN  # one label only, as Kubernetes matches
    assert a("apps.example.com")[0] == RCODE.NXDOMAIN
    assert build_snapshot([], [], ingress_hosts=["shop.example.com"]).answer("shop.example.com", QTYPE.A).rr == []
