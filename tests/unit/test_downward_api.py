"""The downward API without a node: admission of fieldRef/resourceFieldRef and downwardAPI volumes, the values
the kubelet computes (divisors, the node's allocatable for a missing limit), downwardAPI files rewritten when
labels change, and enableServiceLinks."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from minik8s.api.types import Pod, ResourceFieldSelector
from minik8s.api.validation import validate_pod
from minik8s.errors import Unavailable
from minik8s.kubelet.downward import env_field_value, format_map, resource_value
from minik8s.kubelet.serviceenv import ServiceEnv
from minik8s.kubelet.spec import SpecError, environment
from minik8s.kubelet.volumes import has_config_volumes, prepare_volumes

NODE = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi"}


def a_pod(containers: list[dict[str, Any]] | None = None, volumes: list[dict[str, Any]] | None = None,
          **spec: Any) -> Pod:
    return Pod.model_validate({
        "metadata": {"name": "web-1", "namespace": "team", "uid": "u-1", "labels": {"app": "web", "tier": "a"},
                     "annotations": {"note": 'say "hi"'}},
        "spec": {"containers": containers or [{"name": "c", "image": "busybox"}], "nodeName": "node-1",
                 "serviceAccountName": "sa", **({"volumes": volumes} if volumes else {}), **spec}})


def env_var(name: str, **value_from: Any) -> dict[str, Any]:
    return {"name": name, "valueFrom": value_from}


def causes(pod: Pod) -> list[tuple[str, str]]:
    return validate_pod(pod)


# --- admission ---------------------------------------------------------------------------------------

def test_every_env_field_kubernetes_allows_is_admitted() -> None:
    paths = ["metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels['app']",
             "metadata.annotations['example.com/x']", "spec.nodeName", "spec.serviceAccountName", "status.hostIP",
             "status.hostIPs", "status.podIP", "status.podIPs"]
    env = [env_var(f"V{i}", fieldRef={"fieldPath": p}) for i, p in enumerate(paths)]
    assert causes(a_pod([{"name": "c", "image": "busybox", "env": env}])) == []


def test_an_unknown_env_field_is_refused_naming_it() -> None:
    found = causes(a_pod([{"name": "c", "image": "busybox", "env": [
        env_var("A", fieldRef={"fieldPath": "spec.hostname"}),
        env_var("B", fieldRef={"fieldPath": "metadata.labels"}),  # the whole map is for volumes only
        env_var("C", fieldRef={"fieldPath": "metadata.labels['bad key']"})]}]))
    assert [path for path, _ in found] == [f"spec.containers[0].env[{i}].valueFrom.fieldRef.fieldPath"
                                          for i in range(3)]
    assert 'Unsupported value: "spec.hostname"' in found[0][1] and '"status.podIPs"' in found[0][1]
    assert "not a valid label or annotation key" in found[2][1]


def test_resource_field_refs_are_checked() -> None:
    containers = [{"name": "c", "image": "busybox", "env": [
        env_var("A", resourceFieldRef={"resource": "limits.gpu"}),
        env_var("B", resourceFieldRef={"resource": "limits.cpu", "divisor": "2"}),
        env_var("C", resourceFieldRef={"resource": "requests.memory", "divisor": "1m"}),
        env_var("D", resourceFieldRef={"resource": "limits.memory", "containerName": "nope"}),
        env_var("E", resourceFieldRef={"resource": "limits.memory", "containerName": "side", "divisor": "1Mi"}),
        env_var("F", resourceFieldRef={"resource": "requests.cpu", "divisor": "1m"})]},
        {"name": "side", "image": "busybox"}]
    found = dict(causes(a_pod(containers)))
    base = "spec.containers[0].env"
    assert found.pop(f"{base}[0].valueFrom.resourceFieldRef.resource").startswith('Unsupported value: "limits.gpu"')
    assert "only divisor's values 1m, 1 are supported with the cpu" in found.pop(
        f"{base}[1].valueFrom.resourceFieldRef.divisor")
    assert "1Ki, 1Mi" in found.pop(f"{base}[2].valueFrom.resourceFieldRef.divisor")
    assert "must be the name of a container" in found.pop(f"{base}[3].valueFrom.resourceFieldRef.containerName")
    assert found == {}  # E and F are fine


def test_env_with_two_sources_is_refused() -> None:
    found = causes(a_pod([{"name": "c", "image": "busybox", "env": [
        env_var("A", fieldRef={"fieldPath": "metadata.name"}, resourceFieldRef={"resource": "limits.cpu"})]}]))
    assert found == [("spec.containers[0].env[0].valueFrom", 'Invalid value: "": must specify exactly one of: '
                      "`fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`")]


def test_downward_volume_items_are_checked() -> None:
    volume = {"name": "info", "downwardAPI": {"defaultMode": 0o1000, "items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "node", "fieldRef": {"fieldPath": "spec.nodeName"}},
        {"path": "both", "fieldRef": {"fieldPath": "metadata.name"}, "resourceFieldRef": {"resource": "limits.cpu",
                                                                                           "containerName": "c"}},
        {"path": "none"},
        {"path": "mem", "resourceFieldRef": {"resource": "limits.memory"}},
        {"path": "../x", "fieldRef": {"fieldPath": "metadata.uid"}},
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.annotations"}}]}}
    found = dict(causes(a_pod(volumes=[volume])))
    base = "spec.volumes[0].downwardAPI"
    assert "must be a number between 0 and 0777" in found.pop(f"{base}.defaultMode")
    assert found.pop(f"{base}.items[1].fieldRef.fieldPath").startswith('Unsupported value: "spec.nodeName"')
    assert "can not be specified simultaneously" in found.pop(f"{base}.items[2]")
    assert "one of fieldRef and resourceFieldRef is required" in found.pop(f"{base}.items[3]")
    assert found.pop(f"{base}.items[4].resourceFieldRef.containerName") == "Required value"
    assert "must not contain '..'" in found.pop(f"{base}.items[5].path")
    assert "conflicting duplicate paths" in found.pop(f"{base}.items[6].path")
    assert found == {}


def test_projected_downward_items_get_the_same_checks() -> None:
    volume = {"name": "p", "projected": {"sources": [{"downwardAPI": {"items": [
        {"path": "cpu", "resourceFieldRef": {"resource": "requests.cpu", "containerName": "ghost"}}]}}]}}
    assert causes(a_pod(volumes=[volume])) == [(
        "spec.volumes[0].projected.sources[0].downwardAPI.items[0].resourceFieldRef.containerName",
        'Invalid value: "ghost": must be the name of a container in the pod')]


# --- values ---------------------------------------------------------------------------------------------

def ref(resource: str, divisor: str | None = None, container: str | None = None) -> ResourceFieldSelector:
    return ResourceFieldSelector(resource=resource, divisor=divisor, containerName=container)


def resourced(limits: dict[str, str] | None = None, requests: dict[str, str] | None = None) -> Pod:
    res = {k: v for k, v in (("limits", limits), ("requests", requests)) if v}
    return a_pod([{"name": "c", "image": "busybox", "resources": res}, {"name": "side", "image": "busybox"}])


def test_resource_values_are_rounded_up_to_whole_divisors() -> None:
    pod = resourced({"cpu": "250m", "memory": "100Mi"}, {"cpu": "100m", "memory": "64M"})
    c = pod.spec.containers[0]
    assert resource_value(pod, c, ref("limits.cpu"), NODE) == "1"  # ceil(0.25)
    assert resource_value(pod, c, ref("limits.cpu", "1m"), NODE) == "250"
    assert resource_value(pod, c, ref("limits.memory"), NODE) == str(100 * 2**20)
    assert resource_value(pod, c, ref("limits.memory", "1Mi"), NODE) == "100"
    assert resource_value(pod, c, ref("limits.memory", "1Gi"), NODE) == "1"
    assert resource_value(pod, c, ref("requests.memory", "1Mi"), NODE) == "62"  # 64e6 / 2^20 = 61.04 -> 62
    assert resource_value(pod, c, ref("requests.cpu", "1m"), NODE) == "100"


def test_a_missing_limit_is_the_nodes_allocatable_and_a_missing_request_its_limit_or_zero() -> None:
    pod = resourced({"memory": "1Gi"})
    c = pod.spec.containers[0]
    assert resource_value(pod, c, ref("limits.cpu", "1m"), NODE) == "4000"
    assert resource_value(pod, c, ref("limits.ephemeral-storage", "1Gi"), NODE) == "100"
    assert resource_value(pod, c, ref("requests.memory", "1Mi"), NODE) == "1024"  # defaulted to the limit
    assert resource_value(pod, c, ref("requests.cpu"), NODE) == "0"
    assert resource_value(pod, c, ref("requests.ephemeral-storage"), NODE) == "0"
    # containerName picks another container: it has no limits, so the node's
    assert resource_value(pod, c, ref("limits.memory", "1Mi", "side"), NODE) == str(8 * 1024)


def test_env_gets_field_and_resource_values() -> None:
    pod = a_pod([{"name": "c", "image": "busybox", "resources": {"limits": {"memory": "128Mi"}}, "env": [
        env_var("NAME", fieldRef={"fieldPath": "metadata.name"}),
        env_var("NS", fieldRef={"fieldPath": "metadata.namespace"}),
        env_var("TIER", fieldRef={"fieldPath": "metadata.labels['tier']"}),
        env_var("NOTE", fieldRef={"fieldPath": "metadata.annotations['note']"}),
        env_var("MISSING", fieldRef={"fieldPath": "metadata.labels['nope']"}),
        env_var("IPS", fieldRef={"fieldPath": "status.podIPs"}),
        env_var("HOSTS", fieldRef={"fieldPath": "status.hostIPs"}),
        env_var("SA", fieldRef={"fieldPath": "spec.serviceAccountName"}),
        env_var("MEM", resourceFieldRef={"resource": "limits.memory", "divisor": "1Mi"}),
        env_var("CPU", resourceFieldRef={"resource": "requests.cpu", "divisor": "1m"})]}])
    env = environment(pod, pod.spec.containers[0], "10.244.1.5", "192.168.0.2", allocatable=NODE)
    assert env == {"NAME": "web-1", "NS": "team", "TIER": "a", "NOTE": 'say "hi"', "MISSING": "",
                   "IPS": "10.244.1.5", "HOSTS": "192.168.0.2", "SA": "sa", "MEM": "128", "CPU": "0"}


def test_the_kubelet_names_the_env_var_of_a_value_it_cannot_give() -> None:
    pod = a_pod([{"name": "c", "image": "busybox", "env": [env_var("X", fieldRef={"fieldPath": "spec.hostname"})]}])
    with pytest.raises(SpecError, match=r"containers\[c\]\.env\[0\]\.valueFrom\.fieldRef\.fieldPath"):
        environment(pod, pod.spec.containers[0], None, None)
    assert env_field_value(pod, "status.podIP", None, None) == ""  # no address yet: empty, as Kubernetes


def test_labels_file_format_is_sorted_quoted_lines() -> None:
    assert format_map({"b": "2", "a": 'x"y'}) == 'a="x\\"y"\nb="2"'
    assert format_map(None) == ""


# --- downwardAPI volumes ---------------------------------------------------------------------------------

def downward_volume() -> dict[str, Any]:
    return {"name": "info", "downwardAPI": {"defaultMode": 0o640, "items": [
        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
        {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}},
        {"path": "sub/name", "fieldRef": {"fieldPath": "metadata.name"}, "mode": 0o600},
        {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}]}}


def test_downward_volume_files_and_label_changes_rewrite_them_atomically(tmp_path: Path) -> None:
    pod = a_pod(volumes=[downward_volume()])
    assert has_config_volumes(pod)  # so each sync of a running pod republishes it
    paths = prepare_volumes(pod, tmp_path, allocatable=NODE)
    d = paths.paths["info"]
    assert "info" in paths.read_only
    assert (d / "labels").read_text() == 'app="web"\ntier="a"'
    assert (d / "annotations").read_text() == 'note="say \\"hi\\""'
    assert (d / "sub" / "name").read_text() == "web-1" and (d / "mem").read_text() == str(8 * 1024)
    assert (d / "labels").stat().st_mode & 0o777 == 0o640 and (d / "sub/name").stat().st_mode & 0o777 == 0o600
    before = os.readlink(d / "..data")
    relabelled = pod.model_copy(deep=True)
    assert relabelled.metadata.labels is not None
    relabelled.metadata.labels["tier"] = "x"
    prepare_volumes(relabelled, tmp_path, allocatable=NODE)
    assert (d / "labels").read_text() == 'app="web"\ntier="x"'
    assert os.readlink(d / "..data") != before  # a new payload directory swapped in by one rename
    assert os.readlink(d / "labels") == "..data/labels"


def test_projected_downward_resource_files(tmp_path: Path) -> None:
    volume = {"name": "p", "projected": {"sources": [{"downwardAPI": {"items": [
        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}}]}}]}}
    d = prepare_volumes(a_pod(volumes=[volume]), tmp_path, allocatable=NODE).paths["p"]
    assert (d / "cpu").read_text() == "4000"


# --- service links ----------------------------------------------------------------------------------------

class FakeServices:
    """`client.list("Service", namespace=...)` over a dict; `fail` makes the API unreachable."""

    def __init__(self, by_namespace: dict[str, dict[str, dict[str, Any]]]) -> None:
        self.by_namespace, self.calls, self.fail = by_namespace, 0, False

    def list(self, kind: str, namespace: str | None = None) -> Any:
        self.calls += 1
        if self.fail:
            raise Unavailable("api down")
        items = [SimpleNamespace(metadata=SimpleNamespace(name=name), to_dict=lambda spec=spec: {"spec": spec})
                 for name, spec in self.by_namespace.get(namespace or "", {}).items()]
        return SimpleNamespace(items=items)


SERVICES = {"default": {"kubernetes": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}},
            "team": {"redis-main": {"clusterIP": "10.96.0.7", "ports": [{"port": 6379}]},
                     "headless": {"clusterIP": "None", "ports": [{"port": 80}]}}}


def test_service_links_follow_enable_service_links() -> None:
    now = [0.0]
    api = FakeServices(SERVICES)
    links = ServiceEnv(api, ttl_s=2.0, clock=lambda: now[0])
    env = links(a_pod())
    assert env["REDIS_MAIN_SERVICE_HOST"] == "10.96.0.7" and env["REDIS_MAIN_PORT_6379_TCP_PORT"] == "6379"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert not any(k.startswith("HEADLESS_") for k in env)  # no ClusterIP, no variables
    quiet = links(a_pod(enableServiceLinks=False))
    assert quiet["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"  # the master Service always, as in Kubernetes
    assert not any(k.startswith("REDIS_MAIN") for k in quiet)
    calls = api.calls
    api.fail = True
    now[0] = 5.0
    assert links(a_pod()) == env  # the API away: the last lists are kept
    assert api.calls > calls
