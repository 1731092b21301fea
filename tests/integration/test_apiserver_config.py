"""ConfigMaps, Secrets and ServiceAccounts through the real API server (etcd): create, update, patch,
stringData, immutability, bad base64 (422 naming the key), the pod defaults, and the default
ServiceAccount the serviceaccounts controller keeps in every namespace."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator

import httpx
import pytest

from minik8s import Client, errors
from minik8s.controllers.serviceaccounts import ServiceAccountsController
from tests.conftest import TEST_TOKEN, uniq, wait_for


@contextlib.contextmanager
def invalid(match: str) -> Iterator[None]:
    """The write is refused with 422 Invalid and a message matching `match`."""
    with pytest.raises(errors.MiniK8sError, match=match) as info:
        yield
    assert info.value.code == 422


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def decoded(secret: object) -> dict[str, str]:
    return {key: base64.b64decode(v).decode() for key, v in (secret.data or {}).items()}  # type: ignore[attr-defined]


def configmap(name: str, data: dict[str, str], **extra: object) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data, **extra}


def secret(name: str, **fields: object) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, **fields}


def test_configmap_create_update_patch_and_immutable(client: Client) -> None:
    name = uniq("cm")
    created = client.create(configmap(name, {"a": "1"}))
    assert created.data == {"a": "1"}
    updated = client.update({**created.to_dict(), "data": {"a": "2", "b": "3"}})
    assert updated.data == {"a": "2", "b": "3"}
    patched = client.patch("ConfigMap", name, {"data": {"b": None, "c": "4"}, "immutable": True})
    assert patched.data == {"a": "2", "c": "4"} and patched.immutable is True
    with invalid("data: Forbidden: field is immutable when `immutable` is set"):
        client.patch("ConfigMap", name, {"data": {"a": "9"}})
    with invalid("immutable: Forbidden"):
        client.patch("ConfigMap", name, {"immutable": False})
    labelled = client.patch("ConfigMap", name, {"metadata": {"labels": {"team": "x"}}})
    assert labelled.metadata.labels == {"team": "x"} and client.get("ConfigMap", name).data == {"a": "2", "c": "4"}


def test_configmap_bad_keys_and_binary_data_are_422(apiserver: str, client: Client) -> None:
    with invalid(r"data\[bad key\]: Invalid value"):
        client.create(configmap(uniq("cm"), {"bad key": "1"}))
    resp = httpx.post(f"{apiserver}/api/v1/namespaces/default/configmaps",
                      headers={"Authorization": f"Bearer {TEST_TOKEN}"},
                      json=configmap(uniq("cm"), {}, binaryData={"blob": "%%%"}))
    assert resp.status_code == 422
    assert resp.json()["details"]["causes"][0]["field"] == "binaryData[blob]"


def test_secret_string_data_is_merged_on_create_update_and_patch_and_never_stored(client: Client) -> None:
    name = uniq("s")
    created = client.create(secret(name, data={"user": b64("admin")}, stringData={"password": "pw1"}))
    assert created.type == "Opaque" and decoded(created) == {"user": "admin", "password": "pw1"}
    assert "stringData" not in created.to_dict()
    cur = client.get("Secret", name).to_dict()
    updated = client.update({**cur, "stringData": {"password": "pw2", "token": "t"}})
    assert decoded(updated) == {"user": "admin", "password": "pw2", "token": "t"}
    patched = client.patch("Secret", name, {"stringData": {"user": "root"}})
    assert decoded(patched) == {"user": "root", "password": "pw2", "token": "t"}
    raw = client.request("GET", f"/api/v1/namespaces/default/secrets/{name}")
    assert "stringData" not in raw and raw["type"] == "Opaque"


def test_secret_bad_base64_is_422_naming_the_key_and_nothing_is_written(apiserver: str, client: Client) -> None:
    name = uniq("s")
    resp = httpx.post(f"{apiserver}/api/v1/namespaces/default/secrets",
                      headers={"Authorization": f"Bearer {TEST_TOKEN}"},
                      json=secret(name, data={"ok": b64("x"), "password": "not*base64"}))
    assert resp.status_code == 422
    body = resp.json()
    assert body["reason"] == "Invalid" and "data[password]" in body["message"] and "not*base64" not in body["message"]
    with pytest.raises(errors.NotFound):
        client.get("Secret", name)


def test_secret_types_validation_and_immutability(client: Client) -> None:
    with invalid(r"data\[tls.key\]: Required value"):
        client.create(secret(uniq("s"), type="kubernetes.io/tls", stringData={"tls.crt": "c"}))
    with invalid(r"data\[.dockerconfigjson\]: Invalid value"):
        client.create(secret(uniq("s"), type="kubernetes.io/dockerconfigjson",
                             stringData={".dockerconfigjson": "{nope"}))
    name = uniq("s")
    tls = client.create(secret(name, type="kubernetes.io/tls", stringData={"tls.crt": "c", "tls.key": "k"}))
    assert tls.type == "kubernetes.io/tls"
    with invalid('type: Invalid value: "Opaque": field is immutable'):
        client.patch("Secret", name, {"type": "Opaque"})
    frozen = uniq("s")
    client.create(secret(frozen, stringData={"a": "1"}, immutable=True))
    with invalid("data: Forbidden: field is immutable"):
        client.patch("Secret", frozen, {"stringData": {"a": "2"}})
    assert decoded(client.get("Secret", frozen)) == {"a": "1"}


def test_pods_get_service_account_and_volume_mode_defaults(client: Client) -> None:
    pod = client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": uniq("p")}, "spec": {
        "volumes": [{"name": "c", "configMap": {"name": "x"}}, {"name": "s", "secret": {"secretName": "y"}}],
        "containers": [{"name": "a", "image": "busybox", "volumeMounts": [{"name": "c", "mountPath": "/c"}],
                        "env": [{"name": "E", "valueFrom": {"secretKeyRef": {"name": "y", "key": "k"}}}]}]}})
    assert pod.spec.serviceAccountName == "default" and pod.spec.serviceAccount == "default"
    assert pod.spec.volumes[0].configMap.defaultMode == 0o644 and pod.spec.volumes[1].secret.defaultMode == 0o644
    with invalid(r"spec.volumes\[0\].configMap.name: Required value"):
        client.create({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": uniq("p")}, "spec": {
            "volumes": [{"name": "c", "configMap": {}}], "containers": [{"name": "a", "image": "busybox"}]}})


@pytest.fixture
def sa_controller(client: Client) -> Iterator[ServiceAccountsController]:
    ctl = ServiceAccountsController(client)
    ctl.start()
    yield ctl
    ctl.stop()


def test_default_service_account_in_every_namespace(client: Client, sa_controller: ServiceAccountsController) -> None:
    assert wait_for(lambda: _exists(client, "default", "default"), timeout=10)
    ns = uniq("ns")
    client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    assert wait_for(lambda: _exists(client, ns, "default"), timeout=10)
    client.delete("ServiceAccount", "default", ns)
    assert wait_for(lambda: _exists(client, ns, "default"), timeout=10)
    names = [sa.metadata.name for sa in client.list("ServiceAccount", ns).items]
    assert names == ["default"]


def _exists(client: Client, namespace: str, name: str) -> bool:
    try:
        client.get("ServiceAccount", name, namespace)
        return True
    except errors.NotFound:
        return False
