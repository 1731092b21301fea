"""PATCH bodies without servers: strategic merge (each merge key, each directive), JSON patch, merge patch."""

from __future__ import annotations

import json
from typing import Any

import pytest

from minik8s.api import mergekeys
from minik8s.api.lastapplied import LAST_APPLIED, last_applied, three_way_patch, with_last_applied
from minik8s.apiserver.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    apply_patch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from minik8s.errors import BadRequest, Unprocessable, UnsupportedMediaType


def smp(kind: str, original: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    return strategic_merge_patch(kind, original, patch)


def pod(**spec: Any) -> dict[str, Any]:
    return {"kind": "Pod", "metadata": {"name": "p"}, "spec": spec}


# --- strategic merge: merge keys -----------------------------------------------------------------

def test_service_ports_merge_by_port() -> None:
    svc = {"spec": {"ports": [{"port": 80, "name": "http"}], "selector": {"app": "a"}}}
    out = smp("Service", svc, {"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443, "name": "https"}]}})
    assert out["spec"]["ports"] == [{"port": 80, "name": "http", "targetPort": 8080}, {"port": 443, "name": "https"}]
    assert out["spec"]["selector"] == {"app": "a"}


@pytest.mark.parametrize("lst", ["containers", "initContainers", "ephemeralContainers"])
def test_containers_merge_by_name(lst: str) -> None:
    original = pod(**{lst: [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]})
    out = smp("Pod", original, {"spec": {lst: [{"name": "b", "image": "y:2"}, {"name": "c", "image": "z"}]}})
    assert out["spec"][lst] == [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:2"},
                                {"name": "c", "image": "z"}]


@pytest.mark.parametrize(("field", "key", "a", "b"), [
    ("ports", "containerPort", 80, 81),
    ("env", "name", "A", "B"),
    ("volumeMounts", "mountPath", "/a", "/b"),
    ("volumeDevices", "devicePath", "/dev/a", "/dev/b"),
])
def test_container_lists_merge_by_key(field: str, key: str, a: Any, b: Any) -> None:
    original = pod(containers=[{"name": "c", field: [{key: a, "x": 1}]}])
    out = smp("Pod", original, {"spec": {"containers": [{"name": "c", field: [{key: a, "y": 2}, {key: b}]}]}})
    assert out["spec"]["containers"][0][field] == [{key: a, "x": 1, "y": 2}, {key: b}]


@pytest.mark.parametrize(("field", "key"), [
    ("volumes", "name"), ("imagePullSecrets", "name"), ("hostAliases", "ip"),
    ("topologySpreadConstraints", "topologyKey"), ("schedulingGates", "name"),
])
def test_pod_spec_lists_merge_by_key(field: str, key: str) -> None:
    out = smp("Pod", pod(**{field: [{key: "one", "a": 1}]}), {"spec": {field: [{key: "two"}]}})
    assert out["spec"][field] == [{key: "one", "a": 1}, {key: "two"}]


def test_pod_template_keys_for_every_workload_kind() -> None:
    for kind in ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "ReplicationController"):
        original = {"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "1"}]}]}}}}  # noqa: E501
        patch = {"spec": {"template": {"spec": {"containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}}}
        env = smp(kind, original, patch)["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}], kind
    assert mergekeys.strategy("CronJob", "spec.jobTemplate.spec.template.spec.containers") == mergekeys.BY_KEY("name")
    assert mergekeys.pod_template("spec.x")["spec.x.spec.containers.env"].key == "name"


def test_atomic_lists_are_replaced() -> None:
    original = pod(tolerations=[{"key": "a"}], containers=[{"name": "c", "envFrom": [{"configMapRef": {"name": "x"}}],
                                                          "args": ["1", "2"]}])
    out = smp("Pod", original, {"spec": {"tolerations": [{"key": "b"}],
                                         "containers": [{"name": "c", "envFrom": [{"secretRef": {"name": "s"}}],
                                                         "args": ["3"]}]}})
    assert out["spec"]["tolerations"] == [{"key": "b"}]
    assert out["spec"]["containers"][0]["envFrom"] == [{"secretRef": {"name": "s"}}]
    assert out["spec"]["containers"][0]["args"] == ["3"]
    node = {"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]}}
    assert smp("Node", node, {"spec": {"taints": [{"key": "b", "effect": "NoExecute"}]}})["spec"]["taints"] == [
        {"key": "b", "effect": "NoExecute"}]
    ep = {"subsets": [{"addresses": [{"ip": "10.0.0.1"}]}]}
    assert smp("Endpoints", ep, {"subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}) == {
        "subsets": [{"addresses": [{"ip": "10.0.0.2"}]}]}


def test_conditions_merge_by_type() -> None:
    for kind in ("Pod", "Node", "Deployment", "ReplicaSet", "Namespace", "HorizontalPodAutoscaler", "Service"):
        original = {"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "False"}]}}
        out = smp(kind, original, {"status": {"conditions": [{"type": "B", "status": "True"}]}})
        assert out["status"]["conditions"] == [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}], kind
    node = {"status": {"addresses": [{"type": "InternalIP", "address": "1.1.1.1"}]}}
    out = smp("Node", node, {"status": {"addresses": [{"type": "Hostname", "address": "n"}]}})
    assert len(out["status"]["addresses"]) == 2


def test_object_meta_owner_references_and_finalizers() -> None:
    original = {"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}], "finalizers": ["x", "y"]}}
    out = smp("ConfigMap", original, {"metadata": {"ownerReferences": [{"uid": "2", "name": "b"}],
                                                   "finalizers": ["y", "z", "z"]}})
    assert out["metadata"]["ownerReferences"] == [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]
    assert out["metadata"]["finalizers"] == ["x", "y", "z"]


def test_null_deletes_a_key_and_maps_merge() -> None:
    labels = {"metadata": {"labels": {"a": "1", "b": "2"}}}
    out = smp("Service", labels, {"metadata": {"labels": {"a": None, "c": "3"}}})
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    # null inside a merged list element deletes that element's field
    original = pod(containers=[{"name": "c", "image": "x", "command": ["sh"]}])
    out = smp("Pod", original, {"spec": {"containers": [{"name": "c", "command": None}]}})
    assert out["spec"]["containers"] == [{"name": "c", "image": "x"}]


def test_missing_merge_key_is_a_bad_request() -> None:
    with pytest.raises(BadRequest, match='merge key "port"'):
        smp("Service", {"spec": {"ports": []}}, {"spec": {"ports": [{"name": "x"}]}})


# --- strategic merge: directives -------------------------------------------------------------------

def test_patch_delete_in_a_list() -> None:
    svc = {"spec": {"ports": [{"port": 80}, {"port": 443}]}}
    out = smp("Service", svc, {"spec": {"ports": [{"$patch": "delete", "port": 80}]}})
    assert out["spec"]["ports"] == [{"port": 443}]


def test_patch_replace_in_a_list_and_a_map() -> None:
    svc = {"spec": {"ports": [{"port": 80}, {"port": 443}], "selector": {"a": "1"}}}
    out = smp("Service", svc, {"spec": {"ports": [{"port": 8080}, {"$patch": "replace"}],
                                        "selector": {"b": "2", "$patch": "replace"}}})
    assert out["spec"]["ports"] == [{"port": 8080}]
    assert out["spec"]["selector"] == {"b": "2"}


def test_patch_replace_on_an_atomic_list() -> None:
    out = smp("Pod", pod(tolerations=[{"key": "a"}]), {"spec": {"tolerations": [{"key": "b"}, {"$patch": "replace"}]}})
    assert out["spec"]["tolerations"] == [{"key": "b"}]


def test_patch_delete_and_merge_on_a_map() -> None:
    assert smp("Pod", pod(nodeSelector={"a": "1"}), {"spec": {"nodeSelector": {"$patch": "delete"}}})[
        "spec"]["nodeSelector"] == {}
    assert smp("Pod", pod(nodeSelector={"a": "1"}), {"spec": {"nodeSelector": {"$patch": "merge", "b": "2"}}})[
        "spec"]["nodeSelector"] == {"a": "1", "b": "2"}
    with pytest.raises(BadRequest, match="unknown patch type"):
        smp("Pod", pod(), {"spec": {"$patch": "bogus"}})


def test_delete_from_primitive_list() -> None:
    original = {"metadata": {"finalizers": ["a", "b", "c"]}}
    out = smp("Pod", original, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}})
    assert out["metadata"]["finalizers"] == ["a", "c"]


def test_set_element_order() -> None:
    original = pod(containers=[{"name": "a"}, {"name": "b"}, {"name": "c"}])
    out = smp("Pod", original, {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}],
                                         "containers": [{"name": "c", "image": "z"}]}})
    # server-only "b" keeps its place relative to the others on the server, as mergeSortedSlice does
    assert [c["name"] for c in out["spec"]["containers"]] == ["b", "c", "a"]
    out = smp("Pod", original, {"spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]}})
    assert [c["name"] for c in out["spec"]["containers"]] == ["c", "a", "b"]
    prim = smp("Node", {"spec": {"podCIDRs": ["x", "y"]}}, {"spec": {"$setElementOrder/podCIDRs": ["y", "x"]}})
    assert prim["spec"]["podCIDRs"] == ["y", "x"]


def test_retain_keys() -> None:
    original = {"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}
    out = smp("Deployment", original, {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}})
    assert out["spec"]["strategy"] == {"type": "Recreate"}


def test_original_is_not_modified() -> None:
    original = pod(containers=[{"name": "a", "env": [{"name": "X", "value": "1"}]}])
    before = json.dumps(original)
    smp("Pod", original, {"spec": {"containers": [{"name": "a", "env": [{"name": "X", "value": "2"}]}]}})
    assert json.dumps(original) == before


# --- JSON patch ------------------------------------------------------------------------------------

def test_json_patch_operations() -> None:
    doc = {"a": {"b": [1, 2]}, "c~d": 1, "e/f": 2}
    ops = [
        {"op": "add", "path": "/a/b/-", "value": 3},
        {"op": "add", "path": "/a/b/0", "value": 0},
        {"op": "replace", "path": "/c~0d", "value": 5},
        {"op": "remove", "path": "/e~1f"},
        {"op": "copy", "from": "/a/b", "path": "/copied"},
        {"op": "move", "from": "/a/b/3", "path": "/moved"},
        {"op": "test", "path": "/moved", "value": 3},
    ]
    assert json_patch(doc, ops) == {"a": {"b": [0, 1, 2]}, "c~d": 5, "copied": [0, 1, 2, 3], "moved": 3}
    assert doc["a"]["b"] == [1, 2]  # untouched


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/a", "value": 2}],
    [{"op": "remove", "path": "/missing"}],
    [{"op": "replace", "path": "/missing", "value": 1}],
    [{"op": "add", "path": "/x/y", "value": 1}],
    [{"op": "add", "path": "/l/5", "value": 1}],
    [{"op": "add", "path": "/l/01", "value": 1}],
    [{"op": "frobnicate", "path": "/a"}],
    [{"op": "add", "path": "/a"}],
    [{"op": "add", "path": "a", "value": 1}],
    [{"op": "move", "from": "/l", "path": "/l/0"}],
])
def test_json_patch_errors_are_422(ops: list[dict[str, Any]]) -> None:
    with pytest.raises(Unprocessable) as err:
        json_patch({"a": 1, "l": [1]}, ops)
    assert err.value.code == 422 and err.value.to_status()["reason"] == "Invalid"


def test_json_patch_test_failure_message() -> None:
    with pytest.raises(Unprocessable, match="testing value /a failed"):
        json_patch({"a": 1}, [{"op": "test", "path": "/a", "value": 2}])


def test_json_patch_must_be_a_list() -> None:
    with pytest.raises(BadRequest):
        json_patch({}, {"op": "add"})


# --- merge patch and dispatch ----------------------------------------------------------------------

def test_merge_patch_replaces_lists() -> None:
    svc = {"spec": {"ports": [{"port": 80}, {"port": 443}], "type": "ClusterIP"}}
    assert merge_patch(svc, {"spec": {"ports": [{"port": 81}], "type": None}}) == {"spec": {"ports": [{"port": 81}]}}


def test_apply_patch_dispatches_on_content_type() -> None:
    svc = {"spec": {"ports": [{"port": 80}]}}
    body = json.dumps({"spec": {"ports": [{"port": 443}]}}).encode()
    assert len(apply_patch(svc, body, STRATEGIC_MERGE_PATCH, "Service")["spec"]["ports"]) == 2
    assert len(apply_patch(svc, body, MERGE_PATCH + "; charset=utf-8", "Service")["spec"]["ports"]) == 1
    ops = json.dumps([{"op": "add", "path": "/spec/ports/-", "value": {"port": 1}}]).encode()
    assert len(apply_patch(svc, ops, JSON_PATCH, "Service")["spec"]["ports"]) == 2


def test_apply_patch_refuses_server_side_apply_and_unknown_types() -> None:
    with pytest.raises(UnsupportedMediaType, match="client-side apply") as err:
        apply_patch({}, b"{}", APPLY_PATCH, "Pod")
    assert err.value.code == 415 and err.value.to_status()["reason"] == "UnsupportedMediaType"
    with pytest.raises(UnsupportedMediaType, match="unknown format"):
        apply_patch({}, b"{}", "application/json", "Pod")
    with pytest.raises(BadRequest, match="not valid JSON"):
        apply_patch({}, b"{", MERGE_PATCH, "Pod")
    with pytest.raises(BadRequest, match="JSON object"):
        apply_patch({}, b"[]", STRATEGIC_MERGE_PATCH, "Pod")


# --- client-side apply: the three-way patch from the last-applied manifest ---------------------------

def applied(kind: str, live: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """`live` after `apply -f manifest`: the patch kubectl/minik8s computes, applied as the server does."""
    desired = with_last_applied(manifest)
    return smp(kind, live, three_way_patch(kind, last_applied(live), desired))


def deployment(env: list[dict[str, str]], containers: int = 1) -> dict[str, Any]:
    main = [{"name": "main", "image": "nginx:1", "env": env}]
    extra = [{"name": f"side{i}", "image": "busybox:1"} for i in range(1, containers)]
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": main + extra}}}}


def test_apply_twice_shrinks_service_ports_and_keeps_server_fields() -> None:
    v1 = {"kind": "Service", "metadata": {"name": "s", "annotations": {"a": "1"}},
          "spec": {"ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}]}}
    live = with_last_applied(v1)
    live["spec"]["clusterIP"] = "10.96.0.5"  # set by the server
    live["metadata"]["annotations"]["controller"] = "x"  # set by someone else
    v2 = {"kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"name": "http", "port": 80}]}}
    out = applied("Service", live, v2)
    assert out["spec"] == {"ports": [{"name": "http", "port": 80}], "clusterIP": "10.96.0.5"}
    assert out["metadata"]["annotations"].keys() == {"controller", LAST_APPLIED}
    assert last_applied(out) == v2


def test_apply_twice_edits_env_and_adds_a_container() -> None:
    live = with_last_applied(deployment([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]))
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"  # a default
    out = applied("Deployment", live, deployment([{"name": "C", "value": "4"}, {"name": "A", "value": "3"}], 2))
    containers = out["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["main", "side1"]
    assert containers[0]["env"] == [{"name": "C", "value": "4"}, {"name": "A", "value": "3"}]
    assert containers[0]["imagePullPolicy"] == "IfNotPresent"
    back = applied("Deployment", out, deployment([{"name": "A", "value": "3"}]))
    assert [c["name"] for c in back["spec"]["template"]["spec"]["containers"]] == ["main"]


def test_kubectl_apply_patch_body_for_env_change() -> None:
    """The body kubectl 1.32 sends for `apply` after an env edit (captured shape)."""
    live = deployment([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
    patch = {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "main"}],
        "containers": [{"$setElementOrder/env": [{"name": "A"}, {"name": "C"}], "name": "main",
                        "env": [{"name": "A", "value": "3"}, {"name": "C", "value": "4"},
                                {"$patch": "delete", "name": "B"}]}]}}}}
    env = smp("Deployment", live, patch)["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "A", "value": "3"}, {"name": "C", "value": "4"}]


def test_apply_without_last_applied_deletes_nothing() -> None:
    live = {"metadata": {"name": "s", "labels": {"x": "1"}}, "spec": {"ports": [{"port": 1}]}}
    out = applied("Service", live, {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 2}]}})
    assert out["metadata"]["labels"] == {"x": "1"} and [p["port"] for p in out["spec"]["ports"]] == [1, 2]


def test_apply_finalizers_as_a_set() -> None:
    live = with_last_applied({"metadata": {"name": "x", "finalizers": ["a", "b"]}})
    live["metadata"]["finalizers"].append("other")
    out = applied("Pod", live, {"metadata": {"name": "x", "finalizers": ["b", "c"]}})
    assert out["metadata"]["finalizers"] == ["b", "other", "c"]  # server-only "other" before the new "c"
