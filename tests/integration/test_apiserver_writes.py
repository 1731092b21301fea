"""The API server's write fast paths against a real etcd: a create checks its namespace inside its own
transaction, and a binding compare-and-swaps on the pod as this server wrote it. Two `Resources` on one
etcd play two API servers, so one of them always works from a stale memory of what it wrote."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from minik8s.api import kinds as k
from minik8s.apiserver.resources import Resources, key_for
from minik8s.errors import Conflict, NotFound
from minik8s.store import EtcdStore

POD = k.lookup("Pod")
NAMESPACE = k.lookup("Namespace")


def _pod(name: str) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": [{"name": "main", "image": "busybox"}]}}


@pytest.fixture
def servers(etcd_endpoint: str) -> Iterator[tuple[Resources, Resources, EtcdStore]]:
    one, two = EtcdStore([etcd_endpoint]), EtcdStore([etcd_endpoint])
    a = Resources(one)
    a.ensure_system_namespaces()
    yield a, Resources(two), one
    one.close()
    two.close()


def test_create_in_a_namespace_deleted_since_it_was_last_seen_is_not_found(
        servers: tuple[Resources, Resources, EtcdStore]) -> None:
    a, b, _ = servers
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    b.create(NAMESPACE, None, {"metadata": {"name": ns}})
    a.create(POD, ns, _pod("first"))  # a has now seen the namespace live
    b.delete(NAMESPACE, None, ns)
    with pytest.raises(NotFound, match=f'namespaces "{ns}" not found'):
        a.create(POD, ns, _pod("second"))
    with pytest.raises(NotFound):
        a.get(POD, ns, "second")


def test_create_in_a_namespace_being_terminated_conflicts(servers: tuple[Resources, Resources, EtcdStore]) -> None:
    a, _, store = servers
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    created = a.create(NAMESPACE, None, {"metadata": {"name": ns}})
    a.create(POD, ns, _pod("first"))
    terminating = {**created, "metadata": {**created["metadata"], "deletionTimestamp": "2026-01-01T00:00:00Z"}}
    store.update(key_for(NAMESPACE, None, ns), terminating, int(created["metadata"]["resourceVersion"]))
    with pytest.raises(Conflict, match=f'namespace "{ns}" is being terminated'):
        a.create(POD, ns, _pod("second"))
    with pytest.raises(NotFound):
        a.get(POD, ns, "second")


def test_create_after_an_unrelated_namespace_change_succeeds(servers: tuple[Resources, Resources, EtcdStore]) -> None:
    a, b, _ = servers
    ns = f"ns-{uuid.uuid4().hex[:6]}"
    b.create(NAMESPACE, None, {"metadata": {"name": ns}})
    a.create(POD, ns, _pod("first"))
    b.patch(NAMESPACE, None, ns, {"metadata": {"labels": {"team": "x"}}})
    assert a.create(POD, ns, _pod("second"))["metadata"]["namespace"] == ns


def test_binding_keeps_a_change_made_through_another_server(servers: tuple[Resources, Resources, EtcdStore]) -> None:
    a, b, _ = servers
    name = f"p-{uuid.uuid4().hex[:6]}"
    a.create(POD, "default", _pod(name))  # a remembers the pod as it wrote it
    b.patch(POD, "default", name, {"metadata": {"labels": {"changed": "by-b"}}})
    a.strategy(POD).bind(POD, "default", name, {"target": {"name": "node-1"}})
    got = a.get(POD, "default", name)
    assert got["spec"]["nodeName"] == "node-1"
    assert got["metadata"]["labels"] == {"changed": "by-b"}  # not clobbered by a's stale copy
    assert [c["type"] for c in got["status"]["conditions"]] == ["PodScheduled"]
    with pytest.raises(Conflict, match='already assigned to node "node-1"'):
        b.strategy(POD).bind(POD, "default", name, {"target": {"name": "node-2"}})


def test_binding_a_pod_deleted_since_it_was_created_is_not_found(
        servers: tuple[Resources, Resources, EtcdStore]) -> None:
    a, b, _ = servers
    name = f"p-{uuid.uuid4().hex[:6]}"
    a.create(POD, "default", _pod(name))
    b.delete(POD, "default", name)
    with pytest.raises(NotFound, match=f'pods "{name}" not found'):
        a.strategy(POD).bind(POD, "default", name, {"target": {"name": "node-1"}})


def test_binding_a_fresh_pod_writes_once(servers: tuple[Resources, Resources, EtcdStore]) -> None:
    a, _, _ = servers
    name = f"p-{uuid.uuid4().hex[:6]}"
    created = a.create(POD, "default", _pod(name))
    a.strategy(POD).bind(POD, "default", name, {"target": {"name": "node-1"}})
    got = a.get(POD, "default", name)
    assert got["spec"]["nodeName"] == "node-1" and got["metadata"]["uid"] == created["metadata"]["uid"]
    assert int(got["metadata"]["resourceVersion"]) > int(created["metadata"]["resourceVersion"])


def test_admission_chain_runs_on_every_write_and_a_refusal_stores_nothing(
        etcd_endpoint: str) -> None:
    from minik8s.apiserver.admission import AdmissionChain, AdmissionRequest, ServiceAccountDefault
    from minik8s.errors import Forbidden

    class NoLatest:
        name = "NoLatest"

        def handles(self, req: AdmissionRequest) -> bool:
            return req.info.kind == "Pod"

        def admit(self, req: AdmissionRequest) -> None:
            if any(c["image"].endswith(":latest") for c in req.obj["spec"]["containers"]):
                raise Forbidden(f"{req.operation.lower()} refused: no :latest images")

    store = EtcdStore([etcd_endpoint])
    res = Resources(store, admission=AdmissionChain([ServiceAccountDefault()], [NoLatest()]))
    res.ensure_system_namespaces()
    name = f"p-{uuid.uuid4().hex[:6]}"
    created = res.create(POD, "default", _pod(name))
    assert created["spec"]["serviceAccountName"] == "default"  # mutated, then validated again
    with pytest.raises(Forbidden, match="create refused"):
        res.create(POD, "default", {**_pod(name + "x"), "spec": {"containers": [
            {"name": "main", "image": "busybox:latest"}]}})
    with pytest.raises(NotFound):
        res.get(POD, "default", name + "x")
    with pytest.raises(Forbidden, match="update refused"):
        res.patch(POD, "default", name, {"spec": {"containers": [{"name": "main", "image": "busybox:latest"}]}})
    assert res.get(POD, "default", name)["spec"]["containers"][0]["image"] == "busybox"
    store.close()
