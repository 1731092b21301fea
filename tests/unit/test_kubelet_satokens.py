"""The kubelet's side of ServiceAccount tokens: when a token is refreshed, what a projected volume holds,
and the KUBERNETES_* variables (test doubles stand in for the API)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from minik8s.api.types import Pod
from minik8s.apiserver.tokenvolume import token_volume
from minik8s.errors import Unavailable
from minik8s.kubelet.configrefs import ConfigError
from minik8s.kubelet.satokens import TokenManager
from minik8s.kubelet.serviceenv import service_env_vars
from minik8s.kubelet.volumes import prepare_volumes

T0 = 1_800_000_000.0


class FakeApi:
    """Answers TokenRequests with numbered tokens; `fail` makes the next requests fail."""

    def __init__(self, clock: list[float]) -> None:
        self.clock, self.calls, self.fail = clock, [], False

    def request(self, method: str, path: str, json: Any = None, **_: Any) -> dict:
        if self.fail:
            raise Unavailable("api down")
        self.calls.append((method, path, json))
        exp = self.clock[0] + json["spec"]["expirationSeconds"]
        return {"status": {"token": f"tok-{len(self.calls)}",
                           "expirationTimestamp": datetime.fromtimestamp(exp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}}


class Objects:
    def configmap(self, namespace: str, name: str) -> Any:
        from minik8s.api.config import ConfigMap

        return ConfigMap.model_validate({"metadata": {"name": name, "namespace": namespace},
                                         "data": {"ca.crt": "PEM"}}) if name == "kube-root-ca.crt" else None

    def secret(self, namespace: str, name: str) -> Any:
        return None


def a_pod(volumes: list[dict] | None = None) -> Pod:
    return Pod.model_validate({"metadata": {"name": "web", "namespace": "team", "uid": "pod-uid",
                                            "labels": {"b": "2", "a": "1"}},
                               "spec": {"serviceAccountName": "builder", "volumes": volumes or [],
                                        "containers": [{"name": "c", "image": "busybox"}]}})


@pytest.fixture
def clock() -> list[float]:
    return [T0]


def test_token_is_bound_to_the_pod_and_refreshed_at_80_percent(clock: list[float]) -> None:
    api = FakeApi(clock)
    tokens = TokenManager(api, clock=lambda: clock[0])
    pod = a_pod()
    assert tokens.token(pod, None, 3600) == "tok-1"
    method, path, body = api.calls[0]
    assert (method, path) == ("POST", "/api/v1/namespaces/team/serviceaccounts/builder/token")
    assert body["spec"] == {"audiences": [], "expirationSeconds": 3600,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "pod-uid"}}
    clock[0] = T0 + 0.8 * 3600 - 1
    assert tokens.token(pod, None, 3600) == "tok-1" and len(api.calls) == 1
    clock[0] = T0 + 0.8 * 3600
    assert tokens.token(pod, None, 3600) == "tok-2"
    assert tokens.token(pod, "vault", 3600) == "tok-3"  # another audience is another token
    assert api.calls[2][2]["spec"]["audiences"] == ["vault"]


def test_failed_refresh_keeps_the_valid_token_then_gives_up(clock: list[float]) -> None:
    api = FakeApi(clock)
    tokens = TokenManager(api, clock=lambda: clock[0])
    pod = a_pod()
    tokens.token(pod, None, 1000)
    api.fail = True
    clock[0] = T0 + 900
    assert tokens.token(pod, None, 1000) == "tok-1"
    clock[0] = T0 + 1000
    with pytest.raises(Exception, match="failed to fetch token"):
        tokens.token(pod, None, 1000)


def test_projected_volume_files(tmp_path: Path, clock: list[float]) -> None:
    tokens = TokenManager(FakeApi(clock), clock=lambda: clock[0])
    vol = token_volume("kube-api-access-abcde")
    vol["projected"]["sources"].append({"downwardAPI": {"items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "a", "fieldRef": {"fieldPath": "metadata.labels['a']"}, "mode": 0o600}]}})
    pod = a_pod([vol])
    paths = prepare_volumes(pod, tmp_path, Objects(), tokens)
    d = paths.paths["kube-api-access-abcde"]
    assert "kube-api-access-abcde" in paths.read_only
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith("..")) == \
        ["a", "ca.crt", "labels", "namespace", "token"]
    assert (d / "token").read_text() == "tok-1" and (d / "namespace").read_text() == "team"
    assert (d / "ca.crt").read_text() == "PEM" and (d / "labels").read_text() == 'a="1"\nb="2"'
    assert (d / "token").stat().st_mode & 0o777 == 0o644 and (d / "a").stat().st_mode & 0o777 == 0o600
    clock[0] = T0 + 3000  # past 80% of 3607 s: the next sync writes a fresh token into the same directory
    prepare_volumes(pod, tmp_path, Objects(), tokens)
    assert (d / "token").read_text() == "tok-2"


def test_a_token_volume_without_an_api_waits_with_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="token"):
        prepare_volumes(a_pod([token_volume("kube-api-access-x")]), tmp_path, Objects(), None)


def test_master_service_variables() -> None:
    env = service_env_vars("kubernetes", {"clusterIP": "10.96.0.1", "ports": [
        {"name": "https", "port": 443, "targetPort": 6443, "protocol": "TCP"}]})
    assert env == {
        "KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": "tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP": "tcp://10.96.0.1:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
        "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1"}
    assert service_env_vars("headless", {"clusterIP": "None", "ports": [{"port": 80}]}) == {}


def test_projected_sources_are_references_so_their_changes_resync_the_pod() -> None:
    from minik8s.kubelet.configrefs import references

    assert ("ConfigMap", "team", "kube-root-ca.crt") in references(a_pod([token_volume("kube-api-access-x")]))
