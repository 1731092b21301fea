"""The API server against a real etcd: CRUD, 409, watches from a resourceVersion, selectors, auth."""

from __future__ import annotations

import threading

import httpx
import pytest

from minik8s import Client, errors
from tests.conftest import uniq


def pod(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "3600"]}]}}


def test_system_namespaces_exist(client: Client) -> None:
    names = {ns.metadata.name for ns in client.list("Namespace").items}
    assert {"default", "kube-system", "kube-node-lease"} <= names


def test_create_get_defaults_and_duplicate(client: Client) -> None:
    name = uniq("p")
    created = client.create(pod(name))
    assert created.metadata.uid and created.metadata.resourceVersion and created.metadata.creationTimestamp
    assert created.spec.restartPolicy == "Always"
    assert created.status.phase == "Pending"
    got = client.get("Pod", name)
    assert got.metadata.uid == created.metadata.uid
    with pytest.raises(errors.AlreadyExists, match=f'pods "{name}" already exists'):
        client.create(pod(name))


def test_stale_update_conflicts(client: Client) -> None:
    name = uniq("p")
    first = client.create(pod(name))
    fresh = client.patch("Pod", name, {"metadata": {"labels": {"a": "1"}}})
    assert fresh.metadata.resourceVersion != first.metadata.resourceVersion
    stale = first.to_dict()
    stale["metadata"]["labels"] = {"a": "2"}
    with pytest.raises(errors.Conflict):
        client.update(stale)
    assert client.get("Pod", name).metadata.labels == {"a": "1"}


def test_parallel_updates_never_silently_overwrite(client: Client) -> None:
    name = uniq("p")
    base = client.create(pod(name)).to_dict()
    results: list[str] = []

    def writer(i: int) -> None:
        obj = {**base, "metadata": {**base["metadata"], "labels": {"writer": str(i)}}}
        try:
            client.update(obj)
            results.append("ok")
        except errors.Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(5)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results.count("ok") == 1 and results.count("conflict") == 4


def test_status_subresource_and_main_resource_are_separate(client: Client) -> None:
    name = uniq("p")
    client.create(pod(name))
    client.patch("Pod", name, {"status": {"phase": "Running"}}, subresource="status")
    client.patch("Pod", name, {"status": {"phase": "Failed"}, "metadata": {"labels": {"x": "y"}}})
    got = client.get("Pod", name)
    assert got.status.phase == "Running" and got.metadata.labels == {"x": "y"}


def test_label_and_field_selectors(client: Client) -> None:
    tag = uniq("t")
    client.create(pod(uniq("a"), {"app": tag, "tier": "web"}))
    client.create(pod(uniq("b"), {"app": tag, "tier": "db"}))
    assert len(client.list("Pod", "default", label_selector=f"app={tag}").items) == 2
    web = client.list("Pod", "default", label_selector=f"app={tag},tier in (web)").items
    assert [p.metadata.labels["tier"] for p in web] == ["web"]
    assert len(client.list("Pod", "default", label_selector=f"app={tag},tier!=web").items) == 1
    name = web[0].metadata.name
    assert [p.metadata.name for p in client.list("Pod", field_selector=f"metadata.name={name}").items] == [name]


def test_watch_from_resource_version(client: Client) -> None:
    tag = uniq("w")
    start = client.list("Pod", "default").resource_version
    a = client.create(pod(uniq("a"), {"w": tag}))
    client.patch("Pod", a.metadata.name, {"metadata": {"labels": {"w": tag, "more": "1"}}})
    client.delete("Pod", a.metadata.name)
    events = []
    for ev in client.watch("Pod", "default", start, label_selector=f"w={tag}", timeout_seconds=3):
        events.append((ev.type, ev.object.metadata.name))
        if len(events) == 3:
            break
    assert [e[0] for e in events] == ["ADDED", "MODIFIED", "DELETED"]


def test_invalid_objects_are_rejected_with_field_paths(client: Client) -> None:
    bad = pod(uniq("bad"))
    bad["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "lots"}}
    with pytest.raises(errors.MiniK8sError) as info:
        client.create(bad)
    assert info.value.code == 422 and "spec.containers[0].resources.limits.cpu" in info.value.message
    unknown = pod(uniq("bad"))
    unknown["spec"]["containers"][0]["imagee"] = "x"
    with pytest.raises(errors.MiniK8sError, match='unknown field "imagee"'):
        client.create(unknown)
    dup = pod(uniq("bad"))
    dup["spec"]["containers"].append(dict(dup["spec"]["containers"][0]))
    with pytest.raises(errors.MiniK8sError, match="Duplicate value"):
        client.create(dup)


def test_missing_namespace_is_not_found(client: Client) -> None:
    with pytest.raises(errors.NotFound, match='namespaces "nope" not found'):
        client.create(pod(uniq("p")), namespace="nope")


def test_request_without_token_is_401(apiserver: str) -> None:
    resp = httpx.get(f"{apiserver}/api/v1/pods")
    assert resp.status_code == 401
    assert resp.json()["kind"] == "Status" and resp.json()["reason"] == "Unauthorized"


def test_binding_sets_node_once(client: Client) -> None:
    name = uniq("p")
    client.create(pod(name))
    client.bind(name, "node-1")
    got = client.get("Pod", name)
    assert got.spec.nodeName == "node-1"
    assert any(c.type == "PodScheduled" and c.status == "True" for c in got.status.conditions)
    with pytest.raises(errors.Conflict):
        client.bind(name, "node-2")


def test_graceful_delete_of_bound_pod_marks_it(client: Client) -> None:
    name = uniq("p")
    client.create(pod(name))
    client.bind(name, "node-1")
    client.delete("Pod", name)
    got = client.get("Pod", name)
    assert got.metadata.deletionTimestamp and got.metadata.deletionGracePeriodSeconds == 30
    client.delete("Pod", name, grace_period_seconds=0)
    with pytest.raises(errors.NotFound):
        client.get("Pod", name)


def test_discovery(apiserver: str) -> None:
    from tests.conftest import TEST_TOKEN

    h = {"Authorization": f"Bearer {TEST_TOKEN}"}
    res = httpx.get(f"{apiserver}/api/v1", headers=h).json()
    pods = next(r for r in res["resources"] if r["name"] == "pods")
    assert pods["namespaced"] and "po" in pods["shortNames"]
    groups = httpx.get(f"{apiserver}/apis", headers=h).json()
    assert "coordination.k8s.io" in [g["name"] for g in groups["groups"]]
