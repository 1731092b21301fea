"""The API protocol against a real etcd + apiserver, through the official kubernetes Python client and
plain HTTP: PATCH content types, list chunking (limit/continue), resourceVersionMatch, field selectors,
and the Status objects errors come back as."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from minik8s import Client
from minik8s.apiserver.listing import encode_continue
from minik8s.errors import MiniK8sError
from tests.conftest import TEST_TOKEN, uniq

PAGINATED_PODS = 2000


@pytest.fixture
def http(apiserver: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=apiserver, headers={"Authorization": f"Bearer {TEST_TOKEN}"}) as c:
        yield c


@pytest.fixture
def core(apiserver: str) -> Any:
    from kubernetes import client as k8s

    cfg = k8s.Configuration()
    cfg.host = apiserver
    cfg.api_key = {"authorization": f"Bearer {TEST_TOKEN}"}
    api = k8s.ApiClient(cfg)
    yield k8s.CoreV1Api(api)
    api.close()


@pytest.fixture
def namespace(client: Client) -> str:
    name = uniq("proto")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def service(name: str, ports: list[int]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": f"p{p}", "port": p} for p in ports]}}


def pod(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "main", "image": "busybox:1", "env": [{"name": "A", "value": "1"}]}]}}


def ports_of(obj: Any) -> list[int]:
    return sorted(p["port"] for p in obj["spec"]["ports"])


# --- PATCH -----------------------------------------------------------------------------------------

def test_python_client_patch_service_with_two_ports_keeps_both(core: Any, client: Client) -> None:
    name = uniq("svc")
    client.create(service(name, [80]))
    # the official client sends a strategic merge patch for a dict body
    core.patch_namespaced_service(name, "default", {"spec": {"ports": [{"name": "p80", "port": 80, "targetPort": 8080},
                                                                       {"name": "p443", "port": 443}]}})
    got = client.get("Service", name).to_dict()
    assert ports_of(got) == [80, 443]
    assert next(p for p in got["spec"]["ports"] if p["port"] == 80)["targetPort"] == 8080


def test_patch_content_types_over_http(http: httpx.Client, client: Client) -> None:
    name = uniq("svc")
    client.create(service(name, [80, 81]))
    url = f"/api/v1/namespaces/default/services/{name}"

    def patch(body: Any, ctype: str) -> httpx.Response:
        return http.patch(url, json=body, headers={"Content-Type": ctype})

    r = patch([{"op": "add", "path": "/spec/ports/-", "value": {"name": "p82", "port": 82}},
               {"op": "remove", "path": "/spec/ports/0"}], "application/json-patch+json")
    assert r.status_code == 200, r.text
    assert ports_of(r.json()) == [81, 82]
    r = patch([{"op": "test", "path": "/spec/selector/app", "value": "nope"}], "application/json-patch+json")
    assert r.status_code == 422 and r.json()["reason"] == "Invalid" and "test failed" in r.json()["message"]
    r = patch({"spec": {"ports": [{"name": "p90", "port": 90}]}}, "application/merge-patch+json")
    assert ports_of(r.json()) == [90]
    r = patch({"spec": {"ports": [{"$patch": "delete", "port": 90}, {"name": "p91", "port": 91}]}},
              "application/strategic-merge-patch+json")
    assert ports_of(r.json()) == [91]
    for ctype, message in (("application/apply-patch+yaml", "client-side apply"), ("text/plain", "unknown format")):
        r = patch({}, ctype)
        assert r.status_code == 415, r.text
        assert r.json()["reason"] == "UnsupportedMediaType" and message in r.json()["message"]
    assert ports_of(client.get("Service", name).to_dict()) == [91]


def test_strategic_patch_of_pod_containers_env(http: httpx.Client, client: Client) -> None:
    name = uniq("p")
    client.create(pod(name))
    r = http.patch(f"/api/v1/namespaces/default/pods/{name}", headers={
        "Content-Type": "application/strategic-merge-patch+json"},
        json={"spec": {"containers": [{"name": "main", "env": [{"name": "B", "value": "2"}]}]}})
    assert r.status_code == 200, r.text
    assert r.json()["spec"]["containers"][0]["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]


def test_patch_with_stale_resource_version_conflicts(http: httpx.Client, client: Client) -> None:
    name = uniq("svc")
    client.create(service(name, [80]))
    stale = {"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}}
    r = http.patch(f"/api/v1/namespaces/default/services/{name}", json=stale,
                   headers={"Content-Type": "application/merge-patch+json"})
    assert r.status_code == 409 and r.json()["reason"] == "Conflict"
    assert r.json()["details"] == {"name": name, "kind": "services"}  # Go's omitempty: no empty group


# --- lists -----------------------------------------------------------------------------------------

def create_pods(http: httpx.Client, namespace: str, names: list[str], labels: Any = None) -> None:
    for name in names:
        r = http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod(name, labels(name) if labels else None))
        assert r.status_code == 201, r.text


def test_two_thousand_pods_in_chunks(core: Any, http: httpx.Client, namespace: str) -> None:
    names = [f"p-{i:04d}" for i in range(PAGINATED_PODS)]
    create_pods(http, namespace, names, lambda n: {"even": str(int(n[2:]) % 2 == 0).lower()})
    seen: list[str] = []
    token, revision, pages = None, None, 0
    while True:
        page = core.list_namespaced_pod(namespace, limit=500, **({"_continue": token} if token else {}))
        pages += 1
        seen += [p.metadata.name for p in page.items]
        revision = revision or page.metadata.resource_version
        assert page.metadata.resource_version == revision  # every chunk is read at the first one's revision
        if pages == 1:
            assert page.metadata.remaining_item_count == PAGINATED_PODS - 500
            create_pods(http, namespace, ["p-9999"])  # written between chunks: not in this list
        token = page.metadata._continue
        if not token:
            break
    assert pages == 4 and seen == names
    assert page.metadata.remaining_item_count is None
    # selectors filter across chunk boundaries; remainingItemCount is left out, as Kubernetes does
    page = core.list_namespaced_pod(namespace, limit=300, label_selector="even=true")
    assert len(page.items) == 300 and page.metadata._continue and page.metadata.remaining_item_count is None
    rest = core.list_namespaced_pod(namespace, limit=1000, label_selector="even=true",
                                    _continue=page.metadata._continue)
    assert len(rest.items) == 700 and not rest.metadata._continue
    assert {p.metadata.name for p in page.items + rest.items} == set(names[::2])
    # as a Table (kubectl get's chunks) the continue token comes along
    table = http.get(f"/api/v1/namespaces/{namespace}/pods", params={"limit": 7},
                     headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert len(table["rows"]) == 7 and table["metadata"]["continue"]


def test_resource_version_match(http: httpx.Client, namespace: str) -> None:
    url = f"/api/v1/namespaces/{namespace}/pods"
    create_pods(http, namespace, ["a"])
    before = http.get(url).json()["metadata"]["resourceVersion"]
    create_pods(http, namespace, ["b"])
    exact = http.get(url, params={"resourceVersion": before, "resourceVersionMatch": "Exact"}).json()
    assert [p["metadata"]["name"] for p in exact["items"]] == ["a"] and exact["metadata"]["resourceVersion"] == before
    newer = http.get(url, params={"resourceVersion": before, "resourceVersionMatch": "NotOlderThan"}).json()
    assert [p["metadata"]["name"] for p in newer["items"]] == ["a", "b"]
    too_new = http.get(url, params={"resourceVersion": str(10**12)})
    assert too_new.status_code == 504 and "Too large resource version" in too_new.json()["message"]
    for params, message in (({"resourceVersionMatch": "Exact"}, "unless resourceVersion is provided"),
                            ({"resourceVersion": "0", "resourceVersionMatch": "Exact"}, "forbidden for"),
                            ({"resourceVersion": "1", "resourceVersionMatch": "Sometimes"}, "Unsupported value")):
        r = http.get(url, params=params)
        assert r.status_code == 422 and message in r.json()["message"], r.text


def test_expired_continue_is_410(http: httpx.Client, namespace: str, etcd_endpoint: str) -> None:
    from minik8s.store import EtcdStore

    url = f"/api/v1/namespaces/{namespace}/pods"
    create_pods(http, namespace, ["e-0", "e-1", "e-2"])
    first = http.get(url, params={"limit": 1}).json()
    create_pods(http, namespace, ["e-late"])
    store = EtcdStore([etcd_endpoint])
    try:
        store.compact(store.revision())
    finally:
        store.close()
    r = http.get(url, params={"limit": 1, "continue": first["metadata"]["continue"]})
    assert r.status_code == 410, r.text
    assert r.json()["reason"] == "Expired" and "too old" in r.json()["message"]
    bad = http.get(url, params={"continue": "garbage"})
    assert bad.status_code == 400 and "continue key is not valid" in bad.json()["message"]
    elsewhere = encode_continue(int(first["metadata"]["resourceVersion"]), "other-ns/x\x00")
    assert http.get(url, params={"continue": elsewhere}).status_code == 400
    with_rv = http.get(url, params={"continue": first["metadata"]["continue"], "resourceVersion": "5"})
    assert with_rv.status_code == 400 and "not allowed when using continue" in with_rv.json()["message"]


def test_field_selectors(http: httpx.Client, client: Client, namespace: str) -> None:
    url = f"/api/v1/namespaces/{namespace}/pods"
    create_pods(http, namespace, ["f-0", "f-1"])
    client.bind("f-1", "node-x", namespace)
    names = [p["metadata"]["name"] for p in http.get(url, params={"fieldSelector": "spec.nodeName=node-x"}).json()[
        "items"]]
    assert names == ["f-1"]
    unbound = http.get(url, params={"fieldSelector": "spec.nodeName=,metadata.name!=zzz"}).json()["items"]
    assert [p["metadata"]["name"] for p in unbound] == ["f-0"]
    assert len(http.get(url, params={"fieldSelector": "status.phase==Pending"}).json()["items"]) == 2
    r = http.get(url, params={"fieldSelector": "spec.containers=x"})
    assert r.status_code == 400 and r.json()["message"] == "field label not supported: spec.containers"
    with http.stream("GET", url, params={"fieldSelector": "spec.nodeName=x", "watch": "true"}) as stream:
        assert stream.status_code == 200  # a watch accepts the same labels ...
    r = http.get("/api/v1/services", params={"fieldSelector": "status.phase=x", "watch": "true"})
    assert r.status_code == 400 and "field label not supported: status.phase" in r.json()["message"]  # ... and refuses
    nodes = http.get("/api/v1/nodes", params={"fieldSelector": "spec.unschedulable=false"})
    assert nodes.status_code == 200


# --- Status objects --------------------------------------------------------------------------------

def test_error_status_shape(http: httpx.Client, namespace: str) -> None:
    r = http.get(f"/api/v1/namespaces/{namespace}/pods/missing")
    assert r.status_code == 404
    assert r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": 'pods "missing" not found', "reason": "NotFound",
                        "details": {"name": "missing", "kind": "pods"}, "code": 404}
    create_pods(http, namespace, ["dup"])
    r = http.post(f"/api/v1/namespaces/{namespace}/pods", json=pod("dup"))
    assert r.status_code == 409 and r.json()["reason"] == "AlreadyExists"
    assert r.json()["details"] == {"name": "dup", "kind": "pods"}
    r = http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/missing")
    assert r.json()["details"] == {"name": "missing", "group": "apps", "kind": "deployments"}
    r = http.post(f"/api/v1/namespaces/{namespace}/pods", json={"metadata": {"name": "bad"}, "spec": {}})
    status = r.json()
    assert r.status_code == 422 and status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Pod" and "group" not in status["details"]
    assert all({"reason", "message", "field"} <= set(c) for c in status["details"]["causes"])


# --- client-side apply (minik8s apply / the SDK) ---------------------------------------------------

def test_sdk_apply_twice_is_a_three_way_merge(client: Client, namespace: str) -> None:
    name = uniq("svc")
    manifest = {**service(name, [80, 443]), "metadata": {"name": name, "namespace": namespace,
                                                          "labels": {"tier": "web", "old": "yes"}}}
    created, outcome = client.apply_outcome(manifest)
    assert outcome == "created"
    cluster_ip = created.spec.clusterIP
    client.patch("Service", name, {"metadata": {"labels": {"by-someone-else": "1"}}}, namespace)
    edited = {**service(name, [80]), "metadata": {"name": name, "namespace": namespace, "labels": {"tier": "web"}}}
    out, outcome = client.apply_outcome(edited)
    got = out.to_dict()
    assert outcome == "configured"
    assert ports_of(got) == [80] and got["spec"]["clusterIP"] == cluster_ip
    assert got["metadata"]["labels"] == {"tier": "web", "by-someone-else": "1"}
    again, outcome = client.apply_outcome(edited)
    assert outcome == "unchanged" and again.metadata.resourceVersion == out.metadata.resourceVersion
    dry, outcome = client.apply_outcome(service(name, [81]) | {"metadata": {"name": name, "namespace": namespace}},
                                        dry_run=True)
    assert ports_of(dry.to_dict()) == [81] and ports_of(client.get("Service", name, namespace).to_dict()) == [80]
    with pytest.raises(MiniK8sError) as bad:  # a dry run of an update checks the patch the update would send
        client.apply_outcome(service(name, [0]) | {"metadata": {"name": name, "namespace": namespace}}, dry_run=True)
    assert bad.value.code == 422 and "spec.ports" in bad.value.message


def test_sdk_patch_types(client: Client) -> None:
    name = uniq("svc")
    client.create(service(name, [80]))
    client.patch("Service", name, {"spec": {"ports": [{"name": "b", "port": 81}]}}, patch_type="strategic")
    client.patch("Service", name, [{"op": "add", "path": "/spec/ports/-", "value": {"name": "c", "port": 82}}],
                 patch_type="json")
    assert ports_of(client.get("Service", name).to_dict()) == [80, 81, 82]
    with pytest.raises(MiniK8sError, match="unknown patch type"):
        client.patch("Service", name, {}, patch_type="apply")


# --- watch-list (sendInitialEvents) ----------------------------------------------------------------

def test_watch_sends_initial_events_then_the_end_bookmark_then_changes(http: httpx.Client, client: Client,
                                                                        namespace: str) -> None:
    """client-go's watch-list (kubectl 1.35+ `wait`, `rollout status`, `get -w`): the current objects as ADDED,
    a BOOKMARK annotated k8s.io/initial-events-end at their revision, then what changes after them."""
    url = f"/api/v1/namespaces/{namespace}/pods"
    create_pods(http, namespace, ["w-0", "w-1"])
    watch_list = {"watch": "true", "sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan",
                  "allowWatchBookmarks": "true", "fieldSelector": "metadata.name!=w-9"}
    with http.stream("GET", url, params=watch_list, timeout=30) as stream:
        lines = stream.iter_lines()
        first = [json.loads(next(lines)) for _ in range(3)]
        assert [(e["type"], e["object"]["metadata"].get("name")) for e in first] == [
            ("ADDED", "w-0"), ("ADDED", "w-1"), ("BOOKMARK", None)]
        mark = first[2]["object"]
        assert mark["kind"] == "Pod" and mark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
        assert int(mark["metadata"]["resourceVersion"]) >= max(
            int(e["object"]["metadata"]["resourceVersion"]) for e in first[:2])
        client.patch("Pod", "w-1", {"metadata": {"labels": {"seen": "yes"}}}, namespace)
        changed = json.loads(next(lines))
        assert changed["type"] == "MODIFIED" and changed["object"]["metadata"]["labels"] == {"seen": "yes"}


@pytest.mark.parametrize(("query", "field", "message"), [
    ({"sendInitialEvents": "true", "allowWatchBookmarks": "true"}, "resourceVersionMatch",
     "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"),
    ({"sendInitialEvents": "true", "resourceVersionMatch": "NotOlderThan"}, "allowWatchBookmarks",
     "allowWatchBookmarks must be set to true when sendInitialEvents is set"),
    ({"resourceVersionMatch": "NotOlderThan", "resourceVersion": "1"}, "resourceVersionMatch",
     "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"),
])
def test_watch_list_options_are_checked(http: httpx.Client, namespace: str, query: dict[str, str], field: str,
                                        message: str) -> None:
    r = http.get(f"/api/v1/namespaces/{namespace}/pods", params={"watch": "true", **query})
    assert r.status_code == 422, r.text
    assert r.json()["details"]["causes"][0]["field"] == field and message in r.json()["message"], r.json()
