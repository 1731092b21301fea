"""metadata.finalizers through the real API server and etcd: a DELETE only marks an object that has
finalizers, removing the last one deletes it, none may be added once deletion began, and a namespace
stays Terminating until the objects it holds by their finalizers are gone."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from minik8s.errors import MiniK8sError, NotFound

FINALIZER = "example.com/hold"


def _configmap(client: Any, ns: str, finalizers: list[str]) -> Any:
    name = f"cm-{uuid.uuid4().hex[:6]}"
    return client.create({"apiVersion": "v1", "kind": "ConfigMap",
                          "metadata": {"name": name, "namespace": ns, "finalizers": finalizers},
                          "data": {"k": "v"}})


def test_delete_marks_and_removing_the_last_finalizer_deletes(client: Any) -> None:
    cm = _configmap(client, "default", [FINALIZER, "example.com/other"])
    name = cm.metadata.name
    client.delete("ConfigMap", name)
    held = client.get("ConfigMap", name)
    assert held.metadata.deletionTimestamp and held.metadata.finalizers == [FINALIZER, "example.com/other"]
    client.delete("ConfigMap", name)  # a second DELETE changes nothing
    assert client.get("ConfigMap", name).metadata.deletionTimestamp == held.metadata.deletionTimestamp
    client.patch("ConfigMap", name, {"metadata": {"finalizers": ["example.com/other"]}})
    assert client.get("ConfigMap", name).metadata.finalizers == ["example.com/other"]
    client.patch("ConfigMap", name, {"metadata": {"finalizers": None}})
    with pytest.raises(NotFound):
        client.get("ConfigMap", name)


def test_no_new_finalizer_once_deleting(client: Any) -> None:
    cm = _configmap(client, "default", [FINALIZER])
    name = cm.metadata.name
    client.delete("ConfigMap", name)
    with pytest.raises(MiniK8sError, match="metadata.finalizers: Forbidden"):
        client.patch("ConfigMap", name, {"metadata": {"finalizers": [FINALIZER, "example.com/late"]}})
    client.patch("ConfigMap", name, {"metadata": {"finalizers": []}})
    with pytest.raises(NotFound):
        client.get("ConfigMap", name)


def test_without_finalizers_delete_is_immediate(client: Any) -> None:
    name = _configmap(client, "default", []).metadata.name
    client.delete("ConfigMap", name)
    with pytest.raises(NotFound):
        client.get("ConfigMap", name)


def test_namespace_waits_for_its_objects_finalizers(client: Any) -> None:
    ns = f"fin-{uuid.uuid4().hex[:6]}"
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    held = _configmap(client, ns, [FINALIZER]).metadata.name
    free = _configmap(client, ns, []).metadata.name
    client.delete("Namespace", ns, namespace=None)
    namespace = client.get("Namespace", ns, namespace=None)
    assert namespace.metadata.deletionTimestamp and namespace.status.phase == "Terminating"
    with pytest.raises(NotFound):
        client.get("ConfigMap", free, namespace=ns)
    assert client.get("ConfigMap", held, namespace=ns).metadata.deletionTimestamp
    with pytest.raises(MiniK8sError, match="being terminated"):
        _configmap(client, ns, [])
    client.patch("ConfigMap", held, {"metadata": {"finalizers": None}}, namespace=ns)
    with pytest.raises(NotFound):
        client.get("ConfigMap", held, namespace=ns)
    with pytest.raises(NotFound):
        client.get("Namespace", ns, namespace=None)
